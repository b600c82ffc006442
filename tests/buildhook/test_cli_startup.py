"""One start-up path for every command: read-only commands never migrate, writing ones do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.buildhook.test_cli import run, user_env

READ_ONLY = (["users", "list"], ["tokens", "list"], ["triggers", "list"], ["deploy-rules", "list"],
             ["deliveries", "list"], ["subscriptions", "list"], ["environments", "list"], ["--help"],
             ["users", "--help"])


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_leaves_a_fresh_database_untouched(tmp_path: Path, args: list[str]) -> None:
    database = tmp_path / "db" / "buildhook.db"
    env = user_env(tmp_path, BUILDHOOK_SECRET_KEY="startup-key", BUILDHOOK_DATABASE_URL=f"sqlite:///{database}")
    done = run(args, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not database.exists() or tables(database) == set()


def test_a_writing_command_still_migrates(tmp_path: Path) -> None:
    database = tmp_path / "db" / "buildhook.db"
    env = user_env(tmp_path, BUILDHOOK_SECRET_KEY="startup-key", BUILDHOOK_DATABASE_URL=f"sqlite:///{database}")
    done = run(["users", "add", "ada", "--role", "admin", "--password", "violet-harbour-lantern-93"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert {"alembic_version", "users", "api_tokens"} <= tables(database)
    listed = run(["users", "list"], env, tmp_path)
    assert listed.returncode == 0 and "ada" in listed.stdout, listed.stderr
