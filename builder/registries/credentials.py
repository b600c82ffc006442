"""Which registries buildhook trusts, which credentials each one gets, and how each is reached.

Credentials are bound to registries: ``BUILDHOOK_REGISTRY`` gets
``BUILDHOOK_REGISTRY_USERNAME``/``_PASSWORD`` (else its entry of the
``BUILDHOOK_REGISTRY_CREDENTIALS`` file), each of ``BUILDHOOK_TRUSTED_REGISTRIES``
gets its entry of that file, and every other registry gets none. Hosts are
compared after parsing (``Registry.example.com:5000`` is ``registry.example.com:5000``;
``index.docker.io`` is ``docker.io``). A registry is spoken to over plain HTTP only
when it is loopback (an IP address in 127.0.0.0/8 or ``::1`` after parsing, or the
name ``localhost`` as the Docker Engine treats it; never a name prefix) or listed in
``BUILDHOOK_INSECURE_REGISTRIES``; HTTPS otherwise.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from builder.settings import Settings

DOCKER_HUB = "docker.io"
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*")
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def as_docker_auth(self, host: str) -> dict[str, str]:
        """The ``auth_config`` docker-py sends the engine (``X-Registry-Auth``) for a push or pull."""
        return {"username": self.username, "password": self.password, "serveraddress": host}


def parse_host(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[::1]:port``, ``::1`` or a URL (``https://host/v1/``) -> (name, port).

    The name is lower case and without brackets. ``ValueError`` for anything else.
    """
    raw = text.strip()
    if "://" in raw:
        raw = urlsplit(raw).netloc
    raw = raw.split("/", 1)[0]
    if raw.count(":") > 1 and not raw.startswith("["):  # a bare IPv6 address
        raw = f"[{raw}]"
    try:
        parts = urlsplit(f"//{raw}")
        name, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not a registry host[:port]") from None
    if not name or raw.endswith(":") or any(c in raw for c in "@?#\\ "):
        raise ValueError(f"{text!r} is not a registry host[:port]")
    if raw.startswith("["):
        ipaddress.IPv6Address(name.split("%", 1)[0])  # ValueError unless an IPv6 address in brackets
    elif not _NAME.fullmatch(name):
        raise ValueError(f"{text!r} is not a registry host[:port]")
    return name, port


def canonical_host(text: str) -> str:
    """The form two names of one registry share: lower case, ``[v6]:port``, Docker Hub's names as ``docker.io``."""
    name, port = parse_host(text)
    if name in _DOCKER_HUB_NAMES and port is None:
        return DOCKER_HUB
    shown = f"[{name}]" if ":" in name else name
    return f"{shown}:{port}" if port is not None else shown


def is_loopback(host: str) -> bool:
    """An IP address in 127.0.0.0/8 or ``::1`` after parsing, or exactly ``localhost``; never by a name's prefix."""
    try:
        name, _port = parse_host(host)
    except ValueError:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_or_none(text: str) -> str | None:
    try:
        return canonical_host(text)
    except ValueError:
        return None


def load_docker_config(path: Path) -> dict[str, Credentials]:
    """Docker's ``config.json``: ``{"auths": {"host:port": {"auth": base64("user:pass")}}}`` (or
    ``"username"``/``"password"``), keyed by canonical host. Entries without either (a credential
    helper's) are skipped. ``ValueError`` naming the file when it cannot be used; never a secret."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise ValueError(f'{path} has no "auths" object (Docker\'s config.json format)')
    found: dict[str, Credentials] = {}
    for key, entry in auths.items():
        try:
            host = canonical_host(key)
        except ValueError:
            raise ValueError(f"{path}: {key!r} is not a registry host[:port]") from None
        credentials = _entry_credentials(entry, f"{path}: the entry of {key}")
        if credentials is not None:
            found[host] = credentials
    return found


def _entry_credentials(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f'{where}: "auth" is not base64 of user:password') from None
        username, colon, password = decoded.partition(":")
        if not colon or not username:
            raise ValueError(f'{where}: "auth" is not base64 of user:password')
        return Credentials(username, password)
    if isinstance(entry.get("username"), str) and entry["username"]:
        password = entry.get("password")
        return Credentials(entry["username"], password if isinstance(password, str) else "")
    return None


class RegistryAccess:
    """Trust, credentials and scheme of each registry, from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.own = canonical_host(settings.registry)
        self._trusted = {self.own} | {h for h in map(_same_or_none, settings.trusted_registries) if h}
        self._insecure = {h for h in map(_same_or_none, settings.insecure_registries) if h}
        self._credentials = {host: found for host, found in settings.registry_credentials if host in self._trusted}
        if settings.registry_username:
            self._credentials[self.own] = Credentials(settings.registry_username, settings.registry_password or "")

    def trusts(self, host: str | None) -> bool:
        """``BUILDHOOK_REGISTRY`` or one of ``BUILDHOOK_TRUSTED_REGISTRIES``."""
        return bool(host) and _same_or_none(host or "") in self._trusted

    def same(self, one: str | None, other: str | None) -> bool:
        first = _same_or_none(one or "")
        return first is not None and first == _same_or_none(other or "")

    def credentials_for(self, host: str | None) -> Credentials | None:
        """The credentials of this registry, if it is trusted and has some; None for every other one."""
        canonical = _same_or_none(host or "")
        return self._credentials.get(canonical) if canonical else None

    def docker_auth(self, host: str) -> dict[str, str] | None:
        credentials = self.credentials_for(host)
        return credentials.as_docker_auth(host) if credentials else None

    def base_url(self, host: str) -> str:
        """``http://host`` for loopback and ``BUILDHOOK_INSECURE_REGISTRIES``, else ``https://host``."""
        canonical = canonical_host(host)
        if canonical == DOCKER_HUB:
            return "https://registry-1.docker.io"
        plain = is_loopback(canonical) or canonical in self._insecure
        return f"{'http' if plain else 'https'}://{canonical}"
