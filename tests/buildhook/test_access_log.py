"""``buildhook web``'s access log (``buildhook/access_log.py``): gunicorn's lines, secrets redacted.

The default format's line is written without gunicorn's atoms table: it must be the very line
gunicorn's own code writes from the (redacted) atoms, for every kind of request.
"""

from __future__ import annotations

import base64
import datetime

import pytest
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from buildhook.access_log import DEFAULT_FORMAT, RedactingLogger

NOW = "[07/Dec/2026:21:00:00 +0000]"


class Answer:
    def __init__(self, status: str | int, sent: int | None, headers: list[tuple[str, str]]) -> None:
        self.status, self.sent, self.headers = status, sent, headers


class Request:
    def __init__(self, environ: dict[str, str]) -> None:  # gunicorn's request: its headers upper-cased
        self.headers = [(name[5:].replace("_", "-"), value) for name, value in environ.items()
                        if name.startswith("HTTP_")]


def logger_writing_to(path, access_log_format: str | None = None) -> RedactingLogger:
    config = Config()
    config.set("accesslog", str(path))
    if access_log_format is not None:
        config.set("access_log_format", access_log_format)
    logger = RedactingLogger(config)
    logger.now = lambda: NOW  # one clock for both lines
    return logger


def environ_of(method: str, target: str, **headers: str) -> dict[str, str]:
    return {"REQUEST_METHOD": method, "RAW_URI": target, "PATH_INFO": target.partition("?")[0],
            "QUERY_STRING": target.partition("?")[2], "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            **{f"HTTP_{name.upper()}": value for name, value in headers.items()}}


BASIC = "Basic " + base64.b64encode(b"alice:pw").decode()
REQUESTS = {
    "a webhook": (environ_of("POST", "/hooks/github", user_agent="GitHub-Hookshot/6f1b"), Answer("202 ACCEPTED", 96, [])),
    "a token in the query": (environ_of("POST", "/registry/events?token=SECRET-1&x=1"), Answer("401 UNAUTHORIZED", 40, [])),
    "secrets in the referrer": (environ_of("GET", "/api/builds?limit=5", referer="http://h/?key=SECRET-2#top"),
                                Answer(200, 1024, [("Content-Type", "application/json")])),
    "quotes in the user agent": (environ_of("GET", '/a"b', user_agent='say "hi"'), Answer("404 NOT FOUND", 0, [])),
    "a basic-auth user": (environ_of("GET", "/healthz", authorization=BASIC), Answer("200 OK", None, [])),
    "no headers at all": ({"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.0"}, Answer("200 OK", 5, [])),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_the_default_line_is_the_one_gunicorn_writes_from_the_redacted_atoms(tmp_path, name):
    environ, answer = REQUESTS[name]
    logger = logger_writing_to(tmp_path / "access.log")
    took = datetime.timedelta(microseconds=3500)

    logger.access(answer, Request(environ), environ, took)

    written = (tmp_path / "access.log").read_text()
    gunicorns = DEFAULT_FORMAT % SafeAtoms(logger.atoms(answer, Request(environ), environ, took))
    assert written == gunicorns + "\n"
    assert "SECRET" not in written


def test_another_format_goes_through_gunicorn_and_is_redacted_too(tmp_path):
    logger = logger_writing_to(tmp_path / "access.log", '%(r)s %(s)s %({x-request}i)s')
    environ = environ_of("POST", "/registry/events?Token=SECRET-3", x_request="r-1")

    logger.access(Answer("202 ACCEPTED", 2, []), Request(environ), environ, datetime.timedelta(0))

    assert (tmp_path / "access.log").read_text() == "POST /registry/events?Token=**** HTTP/1.1 202 r-1\n"
