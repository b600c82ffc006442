"""Registry hosts, loopback, and which registry gets which credentials (builder/registries/credentials.py)."""

from __future__ import annotations

import base64
import json

import pytest

from builder.registries.credentials import (
    Credentials,
    RegistryAccess,
    canonical_host,
    is_loopback,
    load_docker_config,
    parse_host,
)
from builder.settings import ConfigError, Settings


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("host, parsed", [
    ("registry.example.com", ("registry.example.com", None)),
    ("Registry.Example.com:5000", ("registry.example.com", 5000)),
    ("127.0.0.1:5399", ("127.0.0.1", 5399)),
    ("[::1]:5000", ("::1", 5000)),
    ("::1", ("::1", None)),
    ("https://index.docker.io/v1/", ("index.docker.io", None)),
])
def test_hosts_are_parsed(host, parsed):
    assert parse_host(host) == parsed


@pytest.mark.parametrize("host", ["", "host:", "host:port", "user@host", "[not-v6]:5000", "host:99999", "not a host",
                                  "host..example", "host?x=1"])
def test_what_is_not_a_host_is_refused(host):
    with pytest.raises(ValueError):
        parse_host(host)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1:5399", True),
    ("127.1.2.3", True),
    ("[::1]:5000", True),
    ("::1", True),
    ("localhost:5000", True),  # as the Docker Engine treats it
    ("127.attacker.example:5000", False),  # the probe: a name, whatever its prefix
    ("127.0.0.1.attacker.example", False),
    ("localhost.attacker.example:5000", False),
    ("128.0.0.1:5000", False),
    ("evil.example:5000", False),
    ("not a host", False),
])
def test_loopback_is_an_address_after_parsing_never_a_name_prefix(host, loopback):
    assert is_loopback(host) is loopback


def test_names_of_one_registry_compare_equal():
    assert canonical_host("Registry.Example.com:5000") == "registry.example.com:5000"
    assert canonical_host("https://index.docker.io/v1/") == canonical_host("registry-1.docker.io") == "docker.io"
    assert canonical_host("::1") == canonical_host("[::1]") == "[::1]"


def access(**fields) -> RegistryAccess:
    return RegistryAccess(Settings(database_url="sqlite://", secret_key="k", **fields))


def test_credentials_go_to_their_own_registry_only():
    registries = access(
        registry="registry.example.com:5000", registry_username="robot", registry_password="hunter2",
        trusted_registries=("mirror.example.com",),
        registry_credentials=(("mirror.example.com", Credentials("mirror-bot", "m1rror")),
                              ("elsewhere.example", Credentials("other", "not-for-buildhook"))))
    assert registries.credentials_for("Registry.Example.com:5000") == Credentials("robot", "hunter2")
    assert registries.credentials_for("mirror.example.com") == Credentials("mirror-bot", "m1rror")
    for other in ("127.0.0.1:5399", "127.attacker.example:5000", "evil.example:5000", "registry.example.com",
                  "elsewhere.example", None):  # elsewhere.example is in the file, but not trusted
        assert registries.credentials_for(other) is None, other
    assert registries.docker_auth("127.0.0.1:5399") is None
    assert registries.docker_auth("registry.example.com:5000") == {
        "username": "robot", "password": "hunter2", "serveraddress": "registry.example.com:5000"}
    assert "hunter2" not in repr(registries.credentials_for("registry.example.com:5000"))


def test_the_own_registry_takes_its_file_entry_without_username_and_password():
    registries = access(registry="registry.example.com",
                        registry_credentials=(("registry.example.com", Credentials("from-file", "pw")),))
    assert registries.credentials_for("registry.example.com") == Credentials("from-file", "pw")


def test_only_the_own_registry_and_the_listed_ones_are_trusted():
    registries = access(registry="127.0.0.1:5000", trusted_registries=("mirror.example.com:443",))
    assert registries.trusts("127.0.0.1:5000") and registries.trusts("Mirror.Example.com:443")
    for other in ("127.0.0.1:5399", "localhost:5000", "127.attacker.example:5000", "evil.example:5000", "", None):
        assert not registries.trusts(other), other


def test_https_unless_loopback_or_listed_as_insecure():
    registries = access(insecure_registries=("lab.internal:5000",))
    assert registries.base_url("127.0.0.1:5399") == "http://127.0.0.1:5399"
    assert registries.base_url("[::1]:5000") == "http://[::1]:5000"
    assert registries.base_url("lab.internal:5000") == "http://lab.internal:5000"
    assert registries.base_url("127.attacker.example:5000") == "https://127.attacker.example:5000"
    assert registries.base_url("evil.example:5000") == "https://evil.example:5000"
    assert registries.base_url("docker.io") == "https://registry-1.docker.io"


def test_docker_config_json_is_read_by_host(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "registry.example.com:5000": {"auth": b64("robot:pa:ss")},
        "https://index.docker.io/v1/": {"username": "hubuser", "password": "hubpass"},
        "helper.example.com": {},  # a credential helper's entry: nothing to send
    }, "credsStore": "desktop"}))
    assert load_docker_config(path) == {
        "registry.example.com:5000": Credentials("robot", "pa:ss"),
        "docker.io": Credentials("hubuser", "hubpass"),
    }


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"),
    ('{"credsStore": "desktop"}', 'no "auths" object'),
    (json.dumps({"auths": {"registry.example.com": {"auth": "%%%"}}}), "not base64 of user:password"),
    (json.dumps({"auths": {"registry.example.com": {"auth": b64("no-colon")}}}), "not base64 of user:password"),
    (json.dumps({"auths": {"bad host:x": {"auth": b64("a:b")}}}), "is not a registry host"),
])
def test_an_unusable_credentials_file_stops_the_service_at_start(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="BUILDHOOK_REGISTRY_CREDENTIALS") as raised:
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_REGISTRY_CREDENTIALS": str(path)})
    assert message in str(raised.value)


def test_settings_read_the_credentials_file_and_insecure_registries(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"mirror.example.com": {"auth": b64("bot:s3cret")}}}))
    settings = Settings.from_env({
        "BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_REGISTRY_CREDENTIALS": str(path),
        "BUILDHOOK_TRUSTED_REGISTRIES": "mirror.example.com",
        "BUILDHOOK_INSECURE_REGISTRIES": "lab.internal:5000, x:1"})
    assert settings.insecure_registries == ("lab.internal:5000", "x:1")
    assert RegistryAccess(settings).credentials_for("mirror.example.com") == Credentials("bot", "s3cret")
    assert "s3cret" not in repr(settings)
    with pytest.raises(ConfigError, match="BUILDHOOK_TRUSTED_REGISTRIES"):
        Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_TRUSTED_REGISTRIES": "evil.example:port"})
