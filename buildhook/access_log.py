"""gunicorn's access log without the secrets some clients put in query strings.

Registries that cannot send headers (Docker Hub, Quay) call ``/registry/...?token=TOKEN``;
gunicorn would write that request line, token and all, to the access log. ``RedactingLogger``
(gunicorn's ``logger_class`` for ``buildhook web``) replaces the value of every query parameter
named ``token``, ``access_token``, ``secret``, ``key`` or ``password`` (any case, percent-encoded
names too) with ``****`` in the request line, the query string and the referrer it logs.

With gunicorn's default format (the one ``buildhook web`` uses), the line is written directly: the
same text gunicorn's ``access`` writes, without the table of every header and environ variable it
builds for any format (two thirds of the access log's CPU per request). Another format goes
through gunicorn's own code.
"""

from __future__ import annotations

import traceback
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

# gunicorn's default ``access_log_format``, which ``access`` writes without gunicorn's atoms.
DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
SECRET_PARAMETERS = frozenset({"token", "access_token", "secret", "key", "password"})
REDACTED = "****"


def redact_query(query: str) -> str:
    """``query`` (``a=1&token=x``) with the values of secret parameters replaced by ``****``."""
    parts = []
    for part in query.split("&"):
        name, equals, _value = part.partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def redact_target(target: str) -> str:
    """A request target or URL (``/path?query#fragment``) with its query's secrets redacted."""
    base, question, rest = target.partition("?")
    if not question:
        return target
    query, hash_, fragment = rest.partition("#")
    return f"{base}?{redact_query(query)}{hash_}{fragment}"


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with secret query parameters redacted from every access log line."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if self.cfg.access_log_format != DEFAULT_FORMAT:
            super().access(resp, req, environ, request_time)
        elif self.access_log_enabled:
            try:
                self.access_log.info(self._default_line(resp, environ))
            except Exception:
                self.error(traceback.format_exc())

    def _default_line(self, resp: Any, environ: dict[str, Any]) -> str:
        """The line gunicorn writes in its default format (its atoms, quotes escaped as its own are)."""
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        target = environ["RAW_URI"]
        referer = environ.get("HTTP_REFERER", "-")
        if "?" in target or "?" in referer:
            target, referer = redact_target(target), redact_target(referer)
        fields = (environ.get("REMOTE_ADDR", "-"), self._get_user(environ) or "-",
                  f"{environ['REQUEST_METHOD']} {target} {environ['SERVER_PROTOCOL']}", referer,
                  environ.get("HTTP_USER_AGENT", "-"))
        address, user, request_line, referer, agent = (
            value.replace('"', '\\"') for value in fields)
        return (f'{address} - {user} {self.now()} "{request_line}" {status} '
                f'{"-" if sent is None else sent} "{referer}" "{agent}"')

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        if "?" not in environ.get("RAW_URI", "?") and "?" not in environ.get("HTTP_REFERER", ""):
            return atoms  # no query anywhere in the line (every webhook): nothing to redact
        method, _space, rest = str(atoms.get("r", "")).partition(" ")
        target, _space, protocol = rest.rpartition(" ") if rest.count(" ") else (rest, "", "")
        atoms["r"] = " ".join(part for part in (method, redact_target(target), protocol) if part)
        if atoms.get("q"):
            atoms["q"] = redact_query(atoms["q"])
        for name in ("f", "{referer}i"):
            if atoms.get(name):
                atoms[name] = redact_target(atoms[name])
        return atoms
