"""``buildhook deploy-rules``, ``deliveries`` and ``subscriptions`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

BUILDHOOK = str(Path(sys.executable).with_name("buildhook"))


def run(service_env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDHOOK, *args], env={**os.environ, **service_env}, capture_output=True, text=True,
                          timeout=60)


def test_deploy_rules_add_and_list(service_env):
    repository = f"acme/cli-{uuid.uuid4().hex[:6]}"
    added = run(service_env, "deploy-rules", "add", "--repository", repository, "--tag", ">=1.2 <2",
                "--environment", "staging", "--webhook-url", "http://127.0.0.1:9/deploy",
                "--webhook-secret", "cli-deploy-secret", "--json")
    assert added.returncode == 0, added.stderr
    rule = json.loads(added.stdout)
    assert (rule["tag_match"], rule["environment"], rule["targets"][0]["signed"]) == ("semver", "staging", True)
    listed = run(service_env, "deploy-rules", "list")
    assert f"{repository}:>=1.2 <2 (semver) -> staging" in listed.stdout
    assert "cli-deploy-secret" not in listed.stdout + added.stdout


def test_deploy_rules_add_without_a_target_or_with_a_bad_range_is_a_clear_error(service_env):
    no_target = run(service_env, "deploy-rules", "add", "--repository", "acme/x", "--tag", "main",
                    "--environment", "staging")
    assert no_target.returncode == 2 and "needs a target" in no_target.stderr
    bad = run(service_env, "deploy-rules", "add", "--repository", "acme/x", "--tag", ">=one",
              "--environment", "staging", "--container", "web")
    assert bad.returncode == 2 and "not a version comparator" in bad.stderr


def test_deploy_rules_add_names_its_registry_which_must_be_trusted(service_env):
    repository = f"acme/cli-registry-{uuid.uuid4().hex[:6]}"
    trusted = service_env["BUILDHOOK_TRUSTED_REGISTRIES"]
    added = run(service_env, "deploy-rules", "add", "--repository", repository, "--tag", "main",
                "--environment", "staging", "--registry", trusted, "--container", "web", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["registry"] == trusted
    default = run(service_env, "deploy-rules", "add", "--repository", repository, "--tag", "v*",
                  "--environment", "staging", "--container", "web", "--json")
    assert json.loads(default.stdout)["registry"] == service_env["BUILDHOOK_REGISTRY"]
    assert f"{repository}:main (exact) -> staging  [registry {trusted}]" in run(
        service_env, "deploy-rules", "list").stdout
    refused = run(service_env, "deploy-rules", "add", "--repository", repository, "--tag", "main",
                  "--environment", "staging", "--registry", "evil.example:5000", "--container", "web")
    assert refused.returncode == 2
    assert "registry evil.example:5000 is not trusted" in refused.stderr


def test_redelivering_an_unknown_delivery_says_so(service_env):
    result = run(service_env, "deliveries", "redeliver", "999999")
    assert result.returncode == 2
    assert "delivery 999999 not found" in result.stderr


def test_subscriptions_add_refuses_unknown_events_and_lists_the_good_ones(service_env):
    bad = run(service_env, "subscriptions", "add", "--url", "http://127.0.0.1:9/x", "--event", "build.exploded")
    assert bad.returncode == 2 and "unknown: build.exploded" in bad.stderr
    good = run(service_env, "subscriptions", "add", "--url", "http://127.0.0.1:9/cli-sub", "--event", "build.failed",
               "--style", "slack")
    assert good.returncode == 0, good.stderr
    assert "http://127.0.0.1:9/cli-sub" in run(service_env, "subscriptions", "list").stdout
