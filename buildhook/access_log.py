"""gunicorn's access log without the secrets some clients put in query strings.

Registries that cannot send headers (Docker Hub, Quay) call ``/registry/...?token=TOKEN``;
gunicorn would write that request line, token and all, to the access log. ``RedactingLogger``
(gunicorn's ``logger_class`` for ``buildhook web``) replaces the value of every query parameter
named ``token``, ``access_token``, ``secret``, ``key`` or ``password`` (any case, percent-encoded
names too) with ``****`` in the request line, the query string and the referrer it logs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

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
