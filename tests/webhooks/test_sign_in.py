"""Sign-in resists abuse (issue 13, finding 5): the backoff per account and per address, the
password policy, a `next` that never leads off-site, server-side sessions that end at once,
and the session lifetime."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from builder.accounts.users import add_user
from builder.db.models import LoginFailure, SignInSession
from webhooks import create_app

PASSWORD = "a-strong-enough-passphrase"
BUILDHOOK = str(Path(sys.executable).with_name("buildhook"))


def new_address() -> str:
    """A client address of its own (TEST-NET-2), so each test's failures count only for it."""
    value = uuid.uuid4().int
    return f"198.51.{value % 250}.{(value >> 8) % 250 + 1}"


def new_user(app, role: str = "viewer") -> str:
    name = f"signin-{role}-{uuid.uuid4().hex[:8]}"
    with app.extensions["buildhook"].sessions() as session:
        add_user(session, name, PASSWORD, role)
        session.commit()
    return name


class Browser:
    """A test client from one address, with the sign-in form's CSRF token."""

    def __init__(self, app, address: str | None = None) -> None:
        self.client = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = address or new_address()
        page = self.client.get("/login").text
        self.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def sign_in(self, name: str, password: str, query: str = ""):
        return self.client.post(f"/login{query}", data={"name": name, "password": password, "csrf_token": self.csrf})


def signed_in(app, name: str, address: str | None = None) -> Browser:
    browser = Browser(app, address)
    assert browser.sign_in(name, PASSWORD).status_code == 302
    assert browser.client.get("/api/builds").status_code == 200
    return browser


def move_back(app, kind: str, subject: str, seconds: float) -> None:
    """As if the last failure of ``kind``/``subject`` were ``seconds`` older."""
    with app.extensions["buildhook"].sessions() as session:
        row = session.get(LoginFailure, (kind, subject))
        row.last_failure_at -= timedelta(seconds=seconds)
        session.commit()


def test_sixty_wrong_passwords_then_the_right_one_is_429_with_retry_after(app):
    name = new_user(app)
    browser = Browser(app)
    answers = [browser.sign_in(name, f"wrong-guess-{n}").status_code for n in range(60)]
    assert answers == [401] * 5 + [429] * 55
    right = browser.sign_in(name, PASSWORD)
    assert right.status_code == 429
    assert 1 <= int(right.headers["Retry-After"]) <= 15
    assert "Too many failed sign-ins" in right.text and "try again in" in right.text
    # the account is held back from any address, not only the one that guessed
    assert Browser(app).sign_in(name, PASSWORD).status_code == 429

    move_back(app, "account", name, 16)  # the 15 s are over
    assert browser.sign_in(name, PASSWORD).status_code == 302
    with app.extensions["buildhook"].sessions() as session:
        assert session.get(LoginFailure, ("account", name)) is None  # a success starts the count over


def test_the_wait_doubles_with_each_failure_and_stops_at_fifteen_minutes(app):
    name = new_user(app)
    browser = Browser(app)
    for n in range(5):
        assert browser.sign_in(name, f"wrong-{n}").status_code == 401
    waits = []
    for n in range(9):
        move_back(app, "account", name, 15 * 60 + 1)
        assert browser.sign_in(name, f"still-wrong-{n}").status_code == 401
        waits.append(int(browser.sign_in(name, PASSWORD).headers["Retry-After"]))
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900, 900]


def test_wrong_passwords_to_many_accounts_from_one_address_are_429(app):
    address = new_address()
    browser = Browser(app, address)
    answers = [browser.sign_in(f"nobody-{uuid.uuid4().hex[:8]}", "wrong-guess").status_code for _ in range(60)]
    assert answers == [401] * 20 + [429] * 40
    name = new_user(app)
    refused = browser.sign_in(name, PASSWORD)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 15
    assert Browser(app).sign_in(name, PASSWORD).status_code == 302  # the account itself is fine elsewhere


def test_x_forwarded_for_is_not_believed_by_default(app):
    """Without BUILDHOOK_PROXY_HOPS a client cannot pick a new address for each guess."""
    browser = Browser(app)
    answers = [browser.client.post("/login", data={"name": f"nobody-{n}-{uuid.uuid4().hex[:6]}", "password": "x",
                                                   "csrf_token": browser.csrf},
                                   headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(21)]
    assert answers == [401] * 20 + [429]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(app, settings):
    proxied = create_app(settings.with_(proxy_hops=1))
    try:
        browser = Browser(proxied, address="127.0.0.1")  # every request comes from the proxy
        forwarded = new_address()
        name = f"nobody-{uuid.uuid4().hex[:8]}"
        response = browser.client.post("/login", data={"name": name, "password": "x", "csrf_token": browser.csrf},
                                       headers={"X-Forwarded-For": forwarded})
        assert response.status_code == 401
        with app.extensions["buildhook"].sessions() as session:
            assert session.get(LoginFailure, ("address", forwarded)).failures == 1
    finally:
        proxied.extensions["buildhook"].engine.dispose()


def test_parallel_guesses_get_no_more_tries_than_sequential_ones(app):
    """Every attempt is counted before its password is checked: a burst cannot slip past the count."""
    name = new_user(app)
    browsers = [Browser(app) for _ in range(30)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda b: b.sign_in(name, "parallel-wrong-guess").status_code, browsers))
    assert sorted(answers) == [401] * 5 + [429] * 25


@pytest.mark.parametrize("target", [
    "/%09/evil.example/phish",
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "/%0a/evil.example",
    "/%0d%0aSet-Cookie:%20x=y",
    "/%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/%5Cevil.example",
    "http:evil.example",
    "%2F%2Fevil.example",
    "/ /evil.example",
])
def test_a_next_that_is_not_a_local_path_leads_home(app, target):
    name = new_user(app)
    answer = Browser(app).sign_in(name, PASSWORD, query=f"?next={target}")
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


def test_a_local_next_is_followed(app):
    name = new_user(app)
    answer = Browser(app).sign_in(name, PASSWORD, query="?next=/builds/7%3Fx%3Dy")
    assert answer.status_code == 302 and answer.headers["Location"] == "/builds/7?x=y"
    answer = Browser(app).sign_in(name, PASSWORD, query="?next=/%3Fstate%3Dfailed%26trigger%3D3")
    assert answer.headers["Location"] == "/?state=failed&trigger=3"


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app):
    name = new_user(app)
    browser = signed_in(app, name)
    copied = browser.client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/api/builds").status_code == 200
    page_csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.client.get("/").text).group(1)
    assert browser.client.post("/logout", data={"csrf_token": page_csrf}).status_code == 302
    assert thief.get("/api/builds").status_code == 401
    assert thief.get("/").status_code == 302


def test_the_database_holds_only_a_hash_of_the_sessions_token(app):
    name = new_user(app)
    browser = signed_in(app, name)
    cookie = app.session_interface.get_signing_serializer(app).loads(browser.client.get_cookie("session").value)
    with app.extensions["buildhook"].sessions() as session:
        rows = session.scalars(select(SignInSession).where(SignInSession.user.has(name=name))).all()
    assert [row.token_hash for row in rows] == [hashlib.sha256(cookie["token"].encode()).hexdigest()]


def test_a_new_password_ends_every_session_of_the_user(app, client):
    name = new_user(app)
    first, second = signed_in(app, name), signed_in(app, name)
    other = signed_in(app, new_user(app))
    changed = client.patch(f"/api/users/{name}", json={"password": "a-brand-new-passphrase"})
    assert changed.status_code == 200 and changed.json["name"] == name
    assert first.client.get("/api/builds").status_code == 401
    assert second.client.get("/api/builds").status_code == 401
    assert other.client.get("/api/builds").status_code == 200
    assert Browser(app).sign_in(name, PASSWORD).status_code == 401
    assert Browser(app).sign_in(name, "a-brand-new-passphrase").status_code == 302


def test_removing_a_user_ends_their_sessions(app, client):
    name = new_user(app)
    browser = signed_in(app, name)
    assert client.delete(f"/api/users/{name}").status_code == 204
    assert browser.client.get("/api/builds").status_code == 401
    with app.extensions["buildhook"].sessions() as session:
        assert session.scalars(select(SignInSession).where(SignInSession.user.has(name=name))).all() == []


def test_a_session_lasts_the_configured_lifetime(app, settings):
    short = create_app(settings.with_(session_lifetime=2))
    try:
        name = new_user(short)
        browser = signed_in(short, name)
        cookie = browser.client.get_cookie("session")
        assert cookie.expires is not None and 0 < cookie.expires.timestamp() - time.time() <= 3
        with short.extensions["buildhook"].sessions() as session:
            row = session.scalars(select(SignInSession).where(SignInSession.user.has(name=name))).one()
            assert row.expires_at - row.created_at == timedelta(seconds=2)
        time.sleep(2.2)
        thief = short.test_client()  # even a client that kept the cookie past its expiry
        thief.set_cookie("session", cookie.value)
        assert thief.get("/api/builds").status_code == 401
    finally:
        short.extensions["buildhook"].engine.dispose()


def test_the_default_lifetime_is_twelve_hours(app):
    name = new_user(app)
    cookie = signed_in(app, name).client.get_cookie("session")
    assert abs(cookie.expires.timestamp() - time.time() - 12 * 3600) < 60


WEAK = [("password", "at least 10 characters"), ("aaaaaaaa", "at least 10 characters"),
        ("password12", "most common passwords"), ("Qwertyuiop", "most common passwords"),
        ("aaaaaaaaaaaa", "too easy to guess"), ("Password123!", "too easy to guess")]


@pytest.mark.parametrize("password, reason", WEAK)
def test_weak_passwords_are_refused_by_the_api(client, password, reason):
    name = f"weak-{uuid.uuid4().hex[:8]}"
    refused = client.post("/api/users", json={"name": name, "role": "viewer", "password": password})
    assert refused.status_code == 400 and reason in refused.json["error"], refused.json
    assert name not in [user["name"] for user in client.get("/api/users").json["users"]]
    changed = client.patch("/api/users/test-admin", json={"password": password})
    assert changed.status_code == 400 and reason in changed.json["error"], changed.json


def test_a_password_made_of_the_users_name_is_too_easy(client):
    refused = client.post("/api/users", json={"name": "margaret", "role": "viewer", "password": "margaret1234"})
    assert refused.status_code == 400 and "too easy to guess" in refused.json["error"]


def test_weak_passwords_are_refused_on_the_command_line(service_env, app):
    env = {**os.environ, **service_env}
    name = f"cli-weak-{uuid.uuid4().hex[:6]}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BUILDHOOK, *args], env=env, capture_output=True, text=True, timeout=60)

    for password, reason in WEAK[:2]:
        refused = run("users", "add", name, "--role", "viewer", "--password", password)
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr
    assert run("users", "add", name, "--role", "viewer", "--password", PASSWORD).returncode == 0
    browser = signed_in(app, name)
    refused = run("users", "set-password", name, "--password", "password")
    assert refused.returncode == 2 and "at least 10 characters" in refused.stderr
    assert browser.client.get("/api/builds").status_code == 200  # nothing changed
    changed = run("users", "set-password", name, "--password", "another-strong-passphrase")
    assert changed.returncode == 0, changed.stderr
    assert browser.client.get("/api/builds").status_code == 401
    assert Browser(app).sign_in(name, "another-strong-passphrase").status_code == 302


def test_a_new_password_clears_the_accounts_backoff(app, client):
    name = new_user(app)
    browser = Browser(app)
    for n in range(5):
        assert browser.sign_in(name, f"wrong-{n}").status_code == 401
    assert browser.sign_in(name, PASSWORD).status_code == 429
    assert client.patch(f"/api/users/{name}", json={"password": "an-admin-given-passphrase"}).status_code == 200
    assert Browser(app).sign_in(name, "an-admin-given-passphrase").status_code == 302
