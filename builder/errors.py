"""The error taxonomy shared by the web app and the workers.

``PermanentError``s are never retried (a bad Dockerfile, a missing commit);
``TransientError``s are retried with backoff (engine or registry unreachable).
The web layer maps ``InputError`` subclasses to HTTP statuses in one place.
"""

from __future__ import annotations


class BuildhookError(Exception):
    """Base of every error buildhook raises on purpose."""


class PermanentError(BuildhookError):
    """Retrying will not help."""


class TransientError(BuildhookError):
    """Retrying later may help."""


class InputError(BuildhookError):
    """A request or command was malformed; carries the HTTP status to answer."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadSignature(InputError):
    status = 401


class NotFound(InputError):
    status = 404


class Conflict(InputError):
    status = 409


class PayloadTooLarge(InputError):
    status = 413
