"""``buildhook users`` (add, list, remove) and ``buildhook tokens`` (add, list, revoke) as an admin
uses them from a shell: what they print, and that the API honours the tokens they make."""

from __future__ import annotations

import json

import pytest

from tests.buildhook.test_cli import run, user_env

PASSWORD = "violet-harbour-lantern-93"


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    return user_env(tmp_path, BUILDHOOK_SECRET_KEY="cli-accounts-key")


def ok(args: list[str], env: dict[str, str], cwd) -> str:  # type: ignore[no-untyped-def]
    done = run(args, env, cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_users_add_list_and_remove(env, tmp_path):
    assert "No users yet" in ok(["users", "list"], env, tmp_path)
    assert "User ada (admin) added" in ok(["users", "add", "ada", "--role", "admin", "--password", PASSWORD],
                                           env, tmp_path)
    ok(["users", "add", "vic", "--role", "viewer", "--password", PASSWORD], env, tmp_path)
    listed = json.loads(ok(["users", "list", "--json"], env, tmp_path))["users"]
    assert [(u["name"], u["role"]) for u in listed] == [("ada", "admin"), ("vic", "viewer")]
    assert "ada" in ok(["users", "list"], env, tmp_path)

    assert "User vic removed" in ok(["users", "remove", "vic"], env, tmp_path)
    assert [u["name"] for u in json.loads(ok(["users", "list", "--json"], env, tmp_path))["users"]] == ["ada"]


def test_the_last_admin_cannot_be_removed(env, tmp_path):
    ok(["users", "add", "ada", "--role", "admin", "--password", PASSWORD], env, tmp_path)
    refused = run(["users", "remove", "ada"], env, tmp_path)
    assert refused.returncode == 2
    assert "the last admin cannot be deleted" in refused.stderr


def test_removing_an_unknown_user_says_so(env, tmp_path):
    refused = run(["users", "remove", "nobody"], env, tmp_path)
    assert refused.returncode == 2 and "nobody" in refused.stderr


@pytest.mark.parametrize("verb", ["add", "create"])
def test_tokens_add_prints_a_token_once_and_list_and_revoke_follow(env, tmp_path, verb):
    from builder.settings import Settings
    from webhooks import create_app

    ok(["users", "add", "ada", "--role", "admin", "--password", PASSWORD], env, tmp_path)
    made = run(["tokens", verb, "--user", "ada"], env, tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "shown once" in made.stderr and token not in made.stderr

    app = create_app(Settings.from_env(env))
    client = app.test_client()
    assert client.get("/api/builds", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    listed = ok(["tokens", "list"], env, tmp_path)
    assert "ada" in listed and "active" in listed and token not in listed
    token_id = listed.split()[0]
    assert f"Token {token_id} revoked" in ok(["tokens", "revoke", token_id], env, tmp_path)
    assert "revoked" in ok(["tokens", "list"], env, tmp_path)
    assert client.get("/api/builds", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_commands_changes_are_in_the_audit_log(env, tmp_path):
    from builder.settings import Settings
    from webhooks import create_app

    ok(["users", "add", "ada", "--role", "admin", "--password", PASSWORD], env, tmp_path)
    ok(["users", "add", "vic", "--role", "viewer", "--password", PASSWORD], env, tmp_path)
    token = ok(["tokens", "add", "--user", "ada"], env, tmp_path).strip()
    ok(["users", "remove", "vic"], env, tmp_path)
    client = create_app(Settings.from_env(env)).test_client()
    entries = client.get("/api/audit", headers={"Authorization": f"Bearer {token}"}).json["audit"]
    seen = [(e["action"], e["subject"]) for e in reversed(entries)]
    assert seen[:2] == [("user.created", "user ada"), ("user.created", "user vic")]
    assert seen[2][0] == "token.created" and seen[3] == ("user.removed", "user vic")
    assert all(e["actor"].startswith("cli") for e in entries)
    assert token not in str(entries)
