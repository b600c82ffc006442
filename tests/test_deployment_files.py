"""docker-compose.yml, the registry config and the Dockerfile describe a deployment that fits together.

The compose file is read by Debian's ``docker-compose`` (``config`` works offline), so what is
checked is what Compose itself makes of it; every buildhook command in it must parse with the CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from buildhook.cli import parser

ROOT = Path(__file__).resolve().parent.parent
DOTENV = {"POSTGRES_PASSWORD": "pg-pass", "BUILDHOOK_SECRET_KEY": "secret-key",
          "BUILDHOOK_REGISTRY_EVENTS_TOKEN": "events-token", "DOCKER_GID": "998"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed (apt-get install docker-compose; scripts/system-setup does)")
    clean = {k: v for k, v in os.environ.items() if k not in DOTENV and not k.startswith("BUILDHOOK_")}
    return subprocess.run([binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "config"], env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config(DOTENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def buildhook_commands(service: dict) -> list[list[str]]:
    """The buildhook invocations of a service's command (``sh -c "a && exec b"`` included)."""
    words = service["command"]
    text = words[-1] if words[:2] == ["sh", "-c"] else shlex.join(words)
    commands = [shlex.split(part.strip()) for part in text.split("&&")]
    return [c[1:] if c[0] == "exec" else c for c in commands]


@pytest.mark.parametrize("missing", sorted(DOTENV))
def test_compose_refuses_to_start_without_each_secret(missing):
    result = compose_config({k: v for k, v in DOTENV.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_compose_runs_web_worker_redis_postgres_and_a_registry(compose):
    services = compose["services"]
    assert set(services) == {"web", "worker", "redis", "postgres", "registry"}
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert env["BUILDHOOK_DATABASE_URL"] == "postgresql+psycopg://buildhook:pg-pass@postgres/buildhook"
        assert env["BUILDHOOK_BROKER_URL"] == "redis://redis:6379/0"
        assert env["BUILDHOOK_REGISTRY_EVENTS_TOKEN"] == "events-token"
    assert "/var/run/docker.sock:/var/run/docker.sock" in " ".join(services["worker"]["volumes"])
    assert services["worker"]["group_add"] == ["998"]
    assert services["redis"]["command"][-2:] == ["--appendonly", "yes"]


@pytest.mark.parametrize("service, first", [("web", "migrate"), ("web", "web"), ("worker", "worker")])
def test_compose_commands_are_commands_of_the_cli(compose, service, first):
    commands = buildhook_commands(compose["services"][service])
    assert all(c[0] == "buildhook" for c in commands)
    [command] = [c for c in commands if c[1] == first]
    parsed = parser().parse_args(command[1:])  # exits (fails the test) on an unknown command or flag
    assert parsed.command == first


def test_registry_notifications_reach_the_web_service_with_the_events_token(compose, tmp_path):
    """Run the registry service's own start-up line (sed) on the config it mounts."""
    registry = compose["services"]["registry"]
    assert registry["entrypoint"] == ["/bin/sh", "-c"]
    script = registry["command"][0].replace("$$", "$")
    mounted = {v.split(":")[1]: v.split(":")[0] for v in registry["volumes"] if v.startswith("/")}
    assert mounted["/etc/docker/registry/buildhook.yml"] == str(ROOT / "deploy" / "registry-config.yml")
    script = script.replace("/etc/docker/registry/buildhook.yml", str(ROOT / "deploy" / "registry-config.yml"))
    script = script.replace("/tmp/config.yml", str(tmp_path / "config.yml"))
    script = re.sub(r"&& exec registry serve .*$", "", script)
    subprocess.run(["sh", "-c", script], env={"BUILDHOOK_REGISTRY_EVENTS_TOKEN": registry["environment"][
        "BUILDHOOK_REGISTRY_EVENTS_TOKEN"], "PATH": os.environ["PATH"]}, check=True)
    config = yaml.safe_load((tmp_path / "config.yml").read_text())
    [endpoint] = config["notifications"]["endpoints"]
    assert endpoint["url"] == "http://web:8000/registry/events"
    assert endpoint["headers"]["Authorization"] == ["Bearer events-token"]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined), split into stages."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest))
    return stages


def test_the_image_installs_the_wheel_with_everything_it_serves_and_runs_unprivileged():
    stages = dockerfile_stages()
    build, final = stages[0], stages[-1]
    copied = {rest.split()[0] for word, rest in build if word == "COPY"}
    assert {"templates", "static", "builder", "webhooks", "workers", "buildhook"} <= copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not copied & set(ignored), "the build context must not leave out what the wheel needs"
    assert any(word == "RUN" and "pip wheel" in rest for word, rest in build)
    installs = [rest for word, rest in final if word == "RUN" and "pip install" in rest]
    assert installs and all(".whl" in rest and " -e " not in rest for rest in installs)
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    [healthcheck] = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck


def test_every_environment_variable_in_settings_is_documented_in_the_readme():
    settings = (ROOT / "builder" / "settings.py").read_text()
    readme = (ROOT / "README.md").read_text()
    variables = set(re.findall(r'"((?:BUILDHOOK_|DOCKER_)[A-Z_]+)"', settings))
    assert variables, "settings.py names no variables?"
    assert sorted(v for v in variables if f"`{v}`" not in readme) == []
