"""docker-compose.yml and the registry config describe a deployment that fits together."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_web_worker_redis_postgres_and_a_registry():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "redis", "postgres", "registry"}
    assert services["registry"]["image"] == "registry:2"
    assert "buildhook web" in " ".join(services["web"]["command"])
    assert services["worker"]["command"][:2] == ["buildhook", "worker"]
    env = services["worker"]["environment"]
    assert env["BUILDHOOK_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["BUILDHOOK_BROKER_URL"] == "redis://redis:6379/0"
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["worker"]["volumes"]


def test_registry_notifications_point_at_the_web_service():
    config = yaml.safe_load((ROOT / "deploy" / "registry-config.yml").read_text())
    [endpoint] = config["notifications"]["endpoints"]
    assert endpoint["url"] == "http://web:8000/registry/events"
    assert endpoint["headers"]["Authorization"][0].startswith("Bearer ")


def test_every_environment_variable_in_settings_is_documented_in_the_readme():
    import re

    settings = (ROOT / "builder" / "settings.py").read_text()
    readme = (ROOT / "README.md").read_text()
    variables = set(re.findall(r'"((?:BUILDHOOK_|DOCKER_)[A-Z_]+)"', settings))
    assert variables, "settings.py names no variables?"
    assert sorted(v for v in variables if f"`{v}`" not in readme) == []
