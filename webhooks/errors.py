"""The one place that maps exceptions to HTTP answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from builder.db.engine import WriteLockTimeout, database_unavailable
from builder.errors import InputError, TransientError
from webhooks.context import close_db

log = logging.getLogger(__name__)


ERROR_TITLES = {400: "Cannot do that", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
                409: "Cannot do that now", 429: "Too many requests", 500: "Something broke"}


def error_page(error: HTTPException):  # type: ignore[no-untyped-def]
    """A page like the others (navigation, styles) for a status a person meets."""
    if error.code is None or error.code < 400:
        return error
    message = error.description if error.code != 404 else f"There is no page at {request.path}."
    title = ERROR_TITLES.get(error.code, error.name)
    return render_template("error.html", status=error.code, title=title, message=message), error.code


@dataclass(frozen=True)
class JsonError:
    """An error's JSON answer: ``{"error": ..., "status": ...}`` (and what else it says), its status, headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def json_error(error: BaseException) -> JsonError | None:
    """The JSON answer for ``error``; None when it is a bug (then it is logged and answered 500).

    Used by the Flask app's handlers below and by the webhook front (``webhooks/hooks.py``), which
    answers ``POST /hooks/<provider>`` before Flask does: one mapping for both."""
    if isinstance(error, (DBAPIError, PoolTimeout, WriteLockTimeout)):
        # 503 while the database is unavailable (a Git host retries); any other database error is a bug
        if not database_unavailable(error):
            return None
        log.warning("database unavailable: %s", getattr(error, "orig", None) or error)
        return JsonError(503, {"error": "database unavailable, retry later", "status": 503}, (("Retry-After", "5"),))
    if isinstance(error, InputError):
        body: dict[str, Any] = {"error": str(error), "status": error.status}
        delivery = getattr(error, "delivery", None)
        if delivery is not None:
            body["delivery"] = delivery
        return JsonError(error.status, body)
    if isinstance(error, TransientError):
        log.warning("temporarily unavailable: %s", error)
        return JsonError(503, {"error": str(error), "status": 503})
    if isinstance(error, HTTPException):
        code = error.code or 500
        return JsonError(code, {"error": error.description, "status": code})
    return None


def _response(answer: JsonError):  # type: ignore[no-untyped-def]
    response = jsonify(answer.body)
    response.headers.extend(answer.headers)
    return response, answer.status


def register(app: Flask) -> None:
    app.teardown_appcontext(close_db)

    @app.errorhandler(InputError)
    @app.errorhandler(TransientError)
    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(WriteLockTimeout)
    def json_error_handler(error: Exception):  # type: ignore[no-untyped-def]
        answer = json_error(error)
        if answer is None:
            raise error  # a bug: Flask logs it with its traceback and answers 500
        return _response(answer)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        if not request.path.startswith(("/api/", "/hooks/", "/registry/", "/badge/")):
            return error_page(error)
        return _response(json_error(error))  # type: ignore[arg-type]
