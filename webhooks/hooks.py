"""Inbound Git host webhooks, ``POST /hooks/<provider>``: verify, parse, record, enqueue, answer.

Served in front of Flask (``HookFront``, the app's outermost WSGI layer) rather than as a Flask
view. It is the one endpoint Git hosts call in bursts, and at saturation Flask's request machinery
around it (the app and request contexts, routing, the access check and audit hooks, the session,
``jsonify``) was about a tenth of the web process's CPU per delivery (``bench/README.md``). The
front answers as the app would: the same JSON, statuses from the same mapping
(``webhooks/errors.py``: 400, 401, 404, 413, 503 with ``Retry-After``, 500 for a bug, logged with
its traceback), the same security headers. Any other path, including ``/hooks/a/b``, goes to Flask.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import InternalServerError, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream, get_path_info

from builder.builds.dispatcher import Dispatcher
from builder.builds.outbox import DispatchMarks
from builder.db.group_commit import GroupCommit
from builder.db.models import BuildState
from builder.errors import NotFound
from builder.forges.registry import forge_for
from builder.intake.receive import HookRejected, HookResult, receive_hook
from builder.metrics import WEBHOOK_DELIVERIES, count_build_end
from builder.triggers.lookup import IntakeConfig
from webhooks import Services
from webhooks.errors import JsonError, json_error
from webhooks.security_headers import headers_for

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PREFIX = "/hooks/"
ROUTE = PREFIX + "<provider>"  # as Flask would write it (the OpenAPI document lists it)
_MARKS_KEY = "buildhook.dispatch_marks"
_GROUP_COMMIT_KEY = "buildhook.group_commit"
_DISPATCHER_KEY = "buildhook.dispatcher"
_INTAKE_CONFIG_KEY = "buildhook.intake_config"
_per_app_lock = threading.RLock()  # a maker may ask for another per-app object
T = TypeVar("T")


def _per_app(app: Flask, key: str, make: Callable[[], T]) -> T:
    """The app's one ``key`` object, made on first use (so after a fork, in each worker)."""
    found = app.extensions.get(key)
    if found is None:
        with _per_app_lock:
            found = app.extensions.get(key)
            if found is None:
                found = app.extensions[key] = make()
    return found  # type: ignore[no-any-return]


def dispatch_marks(app: Flask, ctx: Services) -> DispatchMarks:
    """This app's batched ``dispatched_at`` writer."""
    return _per_app(app, _MARKS_KEY, lambda: DispatchMarks(ctx.sessions))


def dispatcher(app: Flask, ctx: Services) -> Dispatcher:
    """This app's sender of accepted builds to the broker, from a background thread."""
    return _per_app(app, _DISPATCHER_KEY, lambda: Dispatcher(ctx.sessions, ctx.send, dispatch_marks(app, ctx).add))


def intake_config(app: Flask) -> IntakeConfig:
    """This app's triggers and subscriptions as intake reads them, kept while unchanged."""
    return _per_app(app, _INTAKE_CONFIG_KEY, IntakeConfig)


def group_commit(app: Flask, ctx: Services) -> GroupCommit:
    """This app's writer of accepted deliveries, a transaction per batch."""
    return _per_app(app, _GROUP_COMMIT_KEY, lambda: GroupCommit(ctx.sessions))


class HookFront:
    """WSGI middleware: answers ``/hooks/<provider>`` itself and hands every other request to ``inner``."""

    def __init__(self, app: Flask, inner: WSGIApplication, https: bool) -> None:
        self._app = app
        self._inner = inner
        self._headers = headers_for(https)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = get_path_info(environ)  # decoded as Flask decodes it (UTF-8)
        provider = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if not provider or "/" in provider:
            return self._inner(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":  # as Flask answers it for a POST route
            return self._send(environ, start_response, 200, b"", (("Allow", "OPTIONS, POST"),))
        try:
            if method != "POST":
                raise MethodNotAllowed(valid_methods=["POST"])
            result = self._receive(environ, provider)
        except Exception as error:
            answer = json_error(error) or self._bug(error, path, method)
            return self._send_json(environ, start_response, answer.status, answer.body, answer.headers)
        return self._send_json(environ, start_response, result.status, result.as_json())

    def _receive(self, environ: WSGIEnvironment, provider: str) -> HookResult:
        forge = forge_for(provider)
        if forge is None:
            raise NotFound(f"unknown provider {provider!r}")
        app = self._app
        ctx: Services = app.extensions["buildhook"]
        # Read one byte past the limit, so an oversized body is recorded as such.
        body = get_input_stream(environ).read(ctx.settings.max_body_bytes + 1)
        try:
            result = receive_hook(ctx.sessions, forge, EnvironHeaders(environ), body, ctx.settings, ctx.box,
                                  commit=group_commit(app, ctx).commit, config=intake_config(app))
        except HookRejected:
            WEBHOOK_DELIVERIES.labels(provider=provider, outcome="rejected").inc()
            raise
        WEBHOOK_DELIVERIES.labels(provider=provider, outcome=result.outcome).inc()
        for trigger_id, superseded in result.superseded.items():
            count_build_end(BuildState.SUPERSEDED.value, trigger_id, superseded)
        if result.build_ids:
            # Stored and committed: "queued" is announced for the builds someone listens to, then
            # the builds go to the broker from the dispatcher's thread (those still queued by then).
            for build_id in result.announce:
                ctx.report(build_id, "queued")
            dispatcher(app, ctx).add(result.build_ids)
        return result

    def _bug(self, error: Exception, path: str, method: str) -> JsonError:
        """An error no mapping knows: raised in debug or testing (as Flask would), else logged and a 500."""
        app = self._app
        propagate = app.config["PROPAGATE_EXCEPTIONS"]
        if propagate if propagate is not None else (app.testing or app.debug):
            raise error
        app.logger.error("Exception on %s [%s]", path, method, exc_info=(type(error), error, error.__traceback__))
        answer = json_error(InternalServerError())
        assert answer is not None
        return answer

    def _send_json(self, environ: WSGIEnvironment, start_response: StartResponse, status: int,
                   payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Iterable[bytes]:
        """``payload`` as Flask's ``jsonify`` writes it outside debug mode (compact, a newline at the end)."""
        body = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        return self._send(environ, start_response, status, body, (("Content-Type", "application/json"), *headers))

    def _send(self, environ: WSGIEnvironment, start_response: StartResponse, status: int, body: bytes,
              headers: tuple[tuple[str, str], ...]) -> Iterable[bytes]:
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}",
                       [*headers, ("Content-Length", str(len(body))), *self._headers])
        return OneSegment.of(environ, body)


class OneSegment(list[bytes]):
    """An answer's body that leaves with its headers in one TCP segment.

    gunicorn writes a response's headers and its body with a send each; with ``TCP_NODELAY`` each
    is a segment of its own, and a client wakes for each. Corking the connection's socket (which
    gunicorn puts in the environ) until the body is written lets the kernel send them together.
    ``close``, which the server calls once the body is written, uncorks it, unless the request
    asked for ``Connection: close`` (as Git hosts do): then the server's shutdown of the socket
    sends the answer, and the end of the connection goes with it.
    """

    _socket: Any = None

    @classmethod
    def of(cls, environ: WSGIEnvironment, body: bytes) -> list[bytes]:
        sock = environ.get("gunicorn.socket")
        if not body or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return [body]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        except (OSError, AttributeError):
            return [body]
        answer = cls([body])
        # gunicorn closes the connection after this answer when the request's (first) Connection
        # header says close; the shutdown that starts it flushes what is corked.
        if environ.get("HTTP_CONNECTION", "").strip(" \t").lower() != "close":
            answer._socket = sock
        return answer

    def close(self) -> None:
        if self._socket is None:
            return
        try:
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        except OSError:
            pass  # closed already: nothing is left corked


def install(app: Flask, https: bool) -> None:
    """Put the webhook front before the app's own WSGI callable (and whatever wraps it)."""
    app.wsgi_app = HookFront(app, app.wsgi_app, https)  # type: ignore[method-assign]

