"""Users and API tokens in the JSON API. Users: admins only. Tokens: a viewer lists their own;
creating and revoking need the admin role. Neither a password nor a token is ever shown,
except a new token, once, in the answer that creates it."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from builder.accounts.users import (add_user, create_token, delete_user, get_user, list_tokens, list_users, revoke_token,
                              set_password, token_to_dict, user_to_dict)
from builder.errors import InputError
from webhooks.api import bp
from webhooks.auth import current_user, require_admin
from webhooks.context import db


def _object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("expected a JSON object")
    return body


def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"{key} must be a non-empty string")
    return value


@bp.get("/users")
def users_index():  # type: ignore[no-untyped-def]
    require_admin()
    return jsonify({"users": [user_to_dict(user) for user in list_users(db())]})


@bp.post("/users")
def users_create():  # type: ignore[no-untyped-def]
    """{"name", "role": "admin" | "viewer", "password"} → 201 the user; 409 if the name is taken."""
    body = _object()
    unknown = sorted(set(body) - {"name", "role", "password"})
    if unknown:
        raise InputError(f"unknown fields: {', '.join(unknown)}")
    session = db()
    user = add_user(session, _string(body, "name") or "", _string(body, "password") or "", _string(body, "role") or "")
    session.commit()
    return jsonify(user_to_dict(user)), 201


@bp.patch("/users/<name>")
def users_update(name: str):  # type: ignore[no-untyped-def]
    """{"password"} → 200 the user: the new password (checked like a new user's) ends every
    session of theirs; their API tokens stay. 404 for an unknown user."""
    body = _object()
    unknown = sorted(set(body) - {"password"})
    if unknown:
        raise InputError(f"unknown fields: {', '.join(unknown)}")
    session = db()
    user = set_password(session, name, _string(body, "password") or "")
    session.commit()
    return jsonify(user_to_dict(user))


@bp.delete("/users/<name>")
def users_delete(name: str):  # type: ignore[no-untyped-def]
    """204: the user, their tokens and their sessions are gone. 409 for yourself or the last admin."""
    session = db()
    delete_user(session, name, acting=require_admin())
    session.commit()
    return "", 204


@bp.get("/tokens")
def tokens_index():  # type: ignore[no-untyped-def]
    """An admin sees every token; a viewer their own."""
    user = current_user()
    mine = None if user is not None and user.role == "admin" else user
    return jsonify({"tokens": [token_to_dict(row) for row in list_tokens(db(), mine)]})


@bp.post("/tokens")
def tokens_create():  # type: ignore[no-untyped-def]
    """{"user": NAME} (default: yourself) → 201 the token's fields and "token", shown this once."""
    body = request.get_json(silent=True)
    body = {} if body is None else body
    if not isinstance(body, dict) or set(body) - {"user"}:
        raise InputError('expected a JSON object with at most "user"')
    session = db()
    name = _string(body, "user", required=False)
    owner = get_user(session, name) if name else require_admin()
    row, token = create_token(session, owner)
    session.commit()
    return jsonify({**token_to_dict(row), "token": token}), 201, {"Cache-Control": "no-store"}


@bp.delete("/tokens/<int:token_id>")
def tokens_revoke(token_id: int):  # type: ignore[no-untyped-def]
    """204: the token is revoked (it stays listed, with revoked_at); requests with it get 401."""
    session = db()
    revoke_token(session, token_id)
    session.commit()
    return "", 204
