"""``buildhook triggers add`` and ``triggers list`` as a user runs them: build timeout, limit, schedule, retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from builder.db.engine import make_engine
from builder.db.models import Trigger

BUILDHOOK = str(Path(sys.executable).with_name("buildhook"))


def add(service_env, *extra: str) -> subprocess.CompletedProcess[str]:
    name = f"acme/cli-timeout-{uuid.uuid4().hex[:6]}"
    return subprocess.run([BUILDHOOK, "triggers", "add", "--provider", "github", "--repository", name,
                           "--clone-url", f"https://github.com/{name}.git", "--secret", "cli-timeout-secret",
                           "--image", name, *extra], env={**os.environ, **service_env}, capture_output=True,
                          text=True, timeout=60)


def test_triggers_add_stores_the_build_timeout_and_list_shows_it(service_env, client):
    added = add(service_env, "--build-timeout", "900", "--json")
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert shown["build_timeout"] == 900 and "cli-timeout-secret" not in added.stdout
    assert client.get(f"/api/triggers/{shown['id']}").json["build_timeout"] == 900
    listed = subprocess.run([BUILDHOOK, "triggers", "list"], env={**os.environ, **service_env}, capture_output=True,
                            text=True, timeout=60)
    assert "build timeout: 900 s" in listed.stdout
    default = add(service_env, "--json")
    assert default.returncode == 0 and json.loads(default.stdout)["build_timeout"] is None


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon"])
def test_a_bad_build_timeout_is_a_clear_error(service_env, value):
    refused = add(service_env, f"--build-timeout={value}")
    assert refused.returncode == 2
    assert "build" in refused.stderr and "timeout" in refused.stderr and "Traceback" not in refused.stderr


def test_triggers_list_shows_the_limit_the_schedule_and_each_rules_retention(service_env):
    rule = json.dumps({"source": "branch", "match": "exact", "pattern": "main", "tags": ["{branch}-{short_sha}"],
                       "retention": {"keep": 3}, "rebuild": "always"})
    added = add(service_env, "--max-concurrent", "2", "--schedule", "0 3 * * 1", "--rule", rule, "--json")
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    listed = subprocess.run([BUILDHOOK, "triggers", "list"], env={**os.environ, **service_env}, capture_output=True,
                            text=True, timeout=60).stdout
    ours = listed[listed.index(shown["repository"]):]
    assert "max concurrent: 2" in ours and "schedule: 0 3 * * 1 UTC" in ours
    assert f"next {shown['schedule_next_at']}" in ours and "rebuild always, keep 3" in ours

    engine = make_engine(service_env["BUILDHOOK_DATABASE_URL"])  # disabled (as the API or a page does)
    with engine.begin() as connection:
        connection.execute(update(Trigger).where(Trigger.id == shown["id"]).values(enabled=False))
    engine.dispose()
    listed = subprocess.run([BUILDHOOK, "triggers", "list"], env={**os.environ, **service_env}, capture_output=True,
                            text=True, timeout=60).stdout
    ours = listed[listed.index(shown["repository"]):]
    assert "schedule: 0 3 * * 1 UTC (paused: the trigger is disabled)" in ours and "(next " not in ours.split("\n")[2]
