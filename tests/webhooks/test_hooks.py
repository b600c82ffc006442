"""The webhook front (``webhooks/hooks.py``): ``/hooks/<provider>`` answered before Flask, as the app would.

Every answer, accepted or refused, is JSON with the security headers every page carries; other
methods get 405 (OPTIONS its ``Allow``), and a path deeper than ``/hooks/<provider>`` is Flask's
JSON 404. Under gunicorn an answer leaves in one TCP segment, and kept-alive connections get
theirs at once. The intake itself (signatures, replays, sizes, the database down) is tested through this
front by ``test_github_hook.py``, ``test_provider_hooks.py`` and ``test_database_unavailable.py``.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid

import pytest

from bench.common import raw_request
from tests.payloads import add_github_trigger, github_headers, github_push

SECRET = "front-secret"


@pytest.fixture
def trigger(client):
    return add_github_trigger(client, SECRET, "acme/front")


def signed_push(trigger, secret=SECRET):
    body = json.dumps(github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main",
                                  sha=uuid.uuid4().hex[:40].ljust(40, "0"), clone_url=trigger["clone_url"])).encode()
    return body, github_headers(body, secret, "push", None)


def assert_secured_json(response):
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # served over http here


@pytest.mark.parametrize("secret, status, outcome", [(SECRET, 202, "accepted"), ("wrong", 401, None)])
def test_accepted_and_refused_deliveries_are_json_with_the_security_headers(client, trigger, secret, status,
                                                                             outcome):
    body, headers = signed_push(trigger, secret)
    response = client.post("/hooks/github", data=body, headers=headers)
    assert response.status_code == status
    assert_secured_json(response)
    assert response.json["delivery"] > 0
    if outcome:
        assert response.json["outcome"] == outcome and len(response.json["builds"]) == 1
    else:
        assert response.json == {"error": "signature does not match any trigger for this repository",
                                 "status": 401, "delivery": response.json["delivery"]}


@pytest.mark.parametrize("path, name", [("/hooks/svn", "svn"), ("/hooks/l%C3%A4b", "läb")])
def test_an_unknown_provider_is_a_json_404(client, path, name):
    response = client.post(path, data=b"{}")
    assert response.status_code == 404
    assert_secured_json(response)
    assert response.json == {"error": f"unknown provider {name!r}", "status": 404}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_other_methods_get_405(client, method):
    response = client.open("/hooks/github", method=method)
    assert response.status_code == 405
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if method != "HEAD":
        assert response.json["status"] == 405


def test_options_says_post_is_allowed(client):
    response = client.options("/hooks/gitlab")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


@pytest.mark.parametrize("path", ["/hooks/github/extra", "/hooks/"])
def test_paths_beyond_a_provider_are_flasks_json_404(client, path):
    response = client.post(path, data=b"{}")
    assert response.status_code == 404
    assert response.json["status"] == 404
    assert response.headers["X-Frame-Options"] == "DENY"


def test_https_deployments_add_strict_transport_security(settings, trigger):
    from webhooks import create_app

    app = create_app(settings.with_(public_url="https://buildhook.example"))
    body, headers = signed_push(trigger)
    response = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert response.status_code == 202
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    app.extensions["buildhook"].engine.dispose()


@pytest.fixture
def gunicorn_port(web_server):
    """The port of the tests' ``buildhook web`` (gunicorn, on the tests' database)."""
    return int(web_server.rpartition(":")[2])


# Linux's ``struct tcp_info`` (linux/tcp.h): ``tcpi_data_segs_in``, the segments received that carried data.
TCP_INFO_DATA_SEGS_IN = 152


@pytest.mark.parametrize("secret, status, field, value", [(SECRET, 202, "outcome", "accepted"),
                                                      ("wrong", 401, "status", 401)])
def test_under_gunicorn_an_answer_arrives_in_one_segment(gunicorn_port, trigger, secret, status, field, value):
    """gunicorn sends a response's headers and its body with a send each; the front has them leave
    together, so a Git host gets the whole answer in one TCP segment, not the headers and then the body."""
    body, headers = signed_push(trigger, secret)
    answer = b""
    with socket.create_connection(("127.0.0.1", gunicorn_port), timeout=10) as connection:
        connection.sendall(raw_request("POST", "/hooks/github", gunicorn_port, body, headers))  # Connection: close
        while chunk := connection.recv(65536):  # to the end: the server closes
            answer += chunk
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)

    head, _, json_body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(json_body)[field] == value
    assert struct.unpack_from("I", info, TCP_INFO_DATA_SEGS_IN)[0] == 1


def test_under_gunicorn_kept_alive_connections_get_their_answers_at_once(gunicorn_port):
    """Without ``Connection: close`` the front uncorks once the body is written: each answer on a
    kept-alive connection comes at once, not when the kernel gives up waiting for more (200 ms)."""
    request = f"POST /hooks/nohost HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn_port}\r\nContent-Length: 2\r\n\r\n{{}}"
    took = []
    with socket.create_connection(("127.0.0.1", gunicorn_port), timeout=10) as connection:
        for _ in range(5):  # one connection, one request after another
            started = time.monotonic()
            connection.sendall(request.encode())
            answer = b""
            while not answer.endswith(b"}\n"):
                answer += connection.recv(65536)
            took.append(time.monotonic() - started)
            assert answer.startswith(b"HTTP/1.1 404 ") and b'"unknown provider' in answer
    assert min(took) < 0.1, took
