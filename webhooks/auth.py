"""Sign-in and access: sessions with CSRF for people, bearer tokens for scripts, two roles.

Webhook and registry endpoints keep their own signature checks; ``/healthz`` and
``/login`` stay open. Everything else needs a signed-in user; changes need an admin.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Blueprint, Flask, abort, g, jsonify, redirect, render_template, request, session, url_for

from builder.accounts import authenticate, find_token, note_token_use, session_key
from builder.models import User
from webhooks.context import db

bp = Blueprint("auth", __name__)

OPEN_PREFIXES = ("/hooks/", "/registry/", "/static/")
OPEN_PATHS = ("/healthz", "/login")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def current_user() -> User | None:
    return g.get("user")


def require_admin() -> User:
    """For reads only admins may see (users, everyone's tokens): 403 for anyone else."""
    user = current_user()
    if user is None or user.role != "admin":
        abort(403, "this needs the admin role")
    return user


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _deny(status: int, message: str) -> Any:
    if _wants_json() or request.headers.get("Authorization"):
        return jsonify({"error": message, "status": status}), status
    if status == 401:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    abort(status, message)


def check_access() -> Any:
    """Runs before every request: who is this, and may they do it?"""
    if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
        return None
    header = request.headers.get("Authorization", "")
    user: User | None = None
    by_token = header.lower().startswith("bearer ")
    if by_token:
        row = find_token(db(), header[7:].strip())
        if row is not None:
            user = row.user
            if note_token_use(row):
                db().commit()  # last_used_at, at most once a minute per token
    elif session.get("user_id"):
        user = db().get(User, session["user_id"])
        if user is not None and not hmac.compare_digest(session.get("user_key", ""), session_key(user)):
            user = None  # the session was for a user since deleted (its id reused) or re-passworded
            session.clear()
    if user is None:
        return _deny(401, "sign in, or send Authorization: Bearer TOKEN")
    g.user = user
    if request.method not in SAFE_METHODS:
        if not by_token:
            sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                return _deny(403, "missing or wrong CSRF token: reload the page and try again")
        if user.role != "admin" and request.endpoint != "auth.logout":
            return _deny(403, "this needs the admin role")
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    error = None
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            error = "The form expired: please sign in again."
        else:
            user = authenticate(db(), request.form.get("name", ""), request.form.get("password", ""))
            if user is None:
                error = "Wrong user name or password."
            else:
                session.clear()
                session["user_id"] = user.id
                session["user_key"] = session_key(user)
                session.permanent = True
                target = request.args.get("next", "")
                return redirect(target if target.startswith("/") and not target.startswith("//") else "/")
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    session.clear()
    return redirect(url_for("auth.login"))


def register(app: Flask) -> None:
    app.before_request(check_access)
    app.jinja_env.globals.update(csrf_token=csrf_token, current_user=current_user)
    app.register_blueprint(bp)
