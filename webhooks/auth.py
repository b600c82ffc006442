"""Sign-in and access: sessions with CSRF for people, bearer tokens for scripts, two roles.

Webhook and registry endpoints keep their own signature checks; ``/healthz`` and
``/login`` stay open. Everything else needs a signed-in user; changes need an admin.
A browser's session lives in the database (``builder/accounts/sign_in_sessions.py``): Flask's signed
cookie carries its token and the CSRF token, nothing that would outlive a sign-out.
"""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Flask, Request, abort, g, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from builder.accounts.users import authenticate, find_token, note_token_use
from builder.db.models import User
from builder.accounts.sign_in_sessions import end_session, session_user, start_session
from builder.accounts.sign_in_throttle import claim_attempt, sign_in_succeeded
from webhooks.badges import public_badge
from webhooks.context import db, services

bp = Blueprint("auth", __name__)

OPEN_PREFIXES = ("/hooks/", "/registry/", "/static/")
OPEN_PATHS = ("/healthz", "/login", "/metrics")  # /metrics checks its own bearer token (webhooks/metrics.py)
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
    elif session.get("token"):
        user, seen = session_user(db(), session["token"])
        if user is None:
            session.clear()  # signed out, expired, or ended by a new password or the user's removal
        elif seen:
            db().commit()  # last_seen_at, at most once a minute per session
    if request.endpoint == "badges.badge":
        if user is None and not public_badge(db(), (request.view_args or {}).get("trigger_id", -1)):
            abort(404, "no such badge")  # a private trigger's badge: not disclosed, as if none existed
        g.user = user
        return None
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


def local_next(target: str) -> str:
    """``target`` if it is a path on this site, else "/": after percent-decoding (repeatedly),
    a path starting with one "/", no scheme or host, no backslash, control or space characters
    (browsers drop a tab or newline, so "/%09/evil.example" would lead off-site)."""
    decoded = target
    for _ in range(3):
        decoded = unquote(decoded)
    for text in (target, decoded):
        if not text.startswith("/") or text.startswith("//") or "\\" in text:
            return "/"
        if any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in text):
            return "/"
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return "/"
    return target


def _client_address() -> str:
    """Who is signing in, for the per-address backoff: the connection's address, or behind
    ``BUILDHOOK_PROXY_HOPS`` trusted proxies the one they forwarded."""
    return request.remote_addr or "unknown"


def _too_many(wait: int, name: str) -> Any:
    minutes = f"{wait // 60} min {wait % 60} s" if wait >= 60 else f"{wait} s"
    error = (f"Too many failed sign-ins for this user or from this address: try again in {minutes}.")
    return render_template("login.html", error=error, name=name), 429, {"Retry-After": str(wait)}


def _sign_in(name: str, password: str) -> Any:
    """The password check behind the backoff; a redirect when it holds, else the page again."""
    address = _client_address()
    wait = claim_attempt(db(), name, address)
    if wait is not None:
        db().rollback()
        return _too_many(wait, name)
    db().commit()  # the attempt counts as a failure until the password proves right
    user = authenticate(db(), name, password)
    if user is None:
        return render_template("login.html", error="Wrong user name or password.", name=name), 401
    db().commit()  # end the read: on SQLite the writes below must start a transaction of their own
    sign_in_succeeded(db(), name, address)
    lifetime = timedelta(seconds=services().settings.session_lifetime)
    token = start_session(db(), user, lifetime)
    db().commit()
    session.clear()
    session["token"] = token
    session.permanent = True  # the cookie expires with the session (PERMANENT_SESSION_LIFETIME)
    return redirect(local_next(request.args.get("next", "")))


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            return render_template("login.html", error="The form expired: please sign in again.",
                                   name=request.form.get("name", "")), 401
        return _sign_in(request.form.get("name", ""), request.form.get("password", ""))
    return render_template("login.html", error=None)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    if session.get("token"):
        end_session(db(), session["token"])
        db().commit()
    session.clear()
    return redirect(url_for("auth.login"))


class SessionWhenSent(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, but a request without the cookie (every webhook) gets an empty
    session without building the cookie's signer first (about 3 % of a webhook's CPU, for nothing)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def register(app: Flask) -> None:
    app.session_interface = SessionWhenSent()
    app.before_request(check_access)
    app.jinja_env.globals.update(csrf_token=csrf_token, current_user=current_user)
    app.register_blueprint(bp)
