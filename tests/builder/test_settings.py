"""Settings from environment variables, and the secret box."""

from __future__ import annotations

import pytest

from builder.secrets import SecretBox
from builder.settings import ConfigError, Settings


def test_every_documented_variable_is_read():
    settings = Settings.from_env({
        "BUILDHOOK_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1/bh",
        "BUILDHOOK_BROKER_URL": "redis://127.0.0.1:6390/1",
        "BUILDHOOK_REGISTRY": "registry.example.com:5000",
        "BUILDHOOK_REGISTRY_USERNAME": "robot",
        "BUILDHOOK_REGISTRY_PASSWORD": "hunter2",
        "BUILDHOOK_PUBLIC_URL": "https://ci.example.com/",
        "BUILDHOOK_SECRET_KEY": "k",
        "BUILDHOOK_MAX_BODY_BYTES": "1000",
        "BUILDHOOK_BUILD_TIMEOUT": "60",
    })
    assert settings.database_url == "postgresql+psycopg://u@127.0.0.1/bh"
    assert settings.broker_url == "redis://127.0.0.1:6390/1"
    assert settings.registry == "registry.example.com:5000"
    assert (settings.registry_username, settings.registry_password) == ("robot", "hunter2")
    assert settings.public_url == "https://ci.example.com"
    assert (settings.max_body_bytes, settings.build_timeout) == (1000, 60)
    assert "hunter2" not in repr(settings) and "'k'" not in repr(settings)


def test_defaults_are_sqlite_in_the_data_dir_and_no_broker(tmp_path):
    settings = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'buildhook.db'}"
    assert settings.broker_url is None


def test_missing_secret_key_is_a_clear_error():
    with pytest.raises(ConfigError, match="BUILDHOOK_SECRET_KEY"):
        Settings.from_env({})


def test_malformed_number_is_a_clear_error():
    with pytest.raises(ConfigError, match="BUILDHOOK_BUILD_TIMEOUT"):
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_BUILD_TIMEOUT": "soon"})


def test_sealed_secrets_open_only_with_the_same_key():
    token = SecretBox("one").seal("webhook-secret")
    assert "webhook-secret" not in token
    assert SecretBox("one").open(token) == "webhook-secret"
    with pytest.raises(ValueError, match="BUILDHOOK_SECRET_KEY"):
        SecretBox("two").open(token)


@pytest.mark.parametrize("name, value", [
    ("BUILDHOOK_HEARTBEAT_TTL", "0"),  # every running build would be reaped at once
    ("BUILDHOOK_HEARTBEAT_TTL", "-60"),
    ("BUILDHOOK_BUILD_CPUS", "0.001"),  # below the engine's smallest CPU quota: every build would fail
    ("BUILDHOOK_BUILD_CPUS", "-1"),
    ("BUILDHOOK_BUILD_MEMORY", "inf"),
    ("BUILDHOOK_BUILD_MEMORY", "-1g"),
    ("BUILDHOOK_MAX_LOG_BYTES", "lots"),
    ("BUILDHOOK_BUILD_NETWORK", "bridge"),
    ("BUILDHOOK_BUILD_TIMEOUT", "-5"),
    ("BUILDHOOK_DELIVERY_ATTEMPTS", "0"),
    ("BUILDHOOK_DELIVERY_BACKOFF", "nan"),
    ("BUILDHOOK_DISPATCH_GRACE", "0"),
    ("BUILDHOOK_MAX_BODY_BYTES", "0"),
    # Durations past a century: "now" minus or plus them is no date (datetime ends in the year 9999).
    ("BUILDHOOK_KEEP_DAYS", "36501"),
    ("BUILDHOOK_KEEP_DAYS", "800000"),
    ("BUILDHOOK_HEARTBEAT_TTL", "3153600001"),
    ("BUILDHOOK_DISPATCH_GRACE", "99999999999999999999"),
    ("BUILDHOOK_SESSION_LIFETIME", "3153600001"),
])
def test_a_value_the_service_cannot_work_with_is_refused_at_start(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", name: value})


def test_limits_accept_docker_style_sizes_and_zero_for_none():
    settings = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_BUILD_MEMORY": "512m",
                                  "BUILDHOOK_MAX_LOG_BYTES": "0", "BUILDHOOK_BUILD_CPUS": "1.5",
                                  "BUILDHOOK_BUILD_NETWORK": "host"})
    assert (settings.build_memory, settings.max_log_bytes, settings.build_cpus, settings.build_network) == (
        512 * 1024**2, 0, 1.5, "host")


def test_session_lifetime_and_proxy_hops():
    defaults = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k"})
    assert (defaults.session_lifetime, defaults.proxy_hops) == (12 * 3600, 0)
    set_ = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_SESSION_LIFETIME": "3600",
                              "BUILDHOOK_PROXY_HOPS": "1"})
    assert (set_.session_lifetime, set_.proxy_hops) == (3600, 1)
    with pytest.raises(ConfigError, match="BUILDHOOK_SESSION_LIFETIME must be from 60 to 3153600000"):
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_SESSION_LIFETIME": "30"})
    with pytest.raises(ConfigError, match="BUILDHOOK_PROXY_HOPS"):
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_PROXY_HOPS": "-1"})
