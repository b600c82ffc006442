"""Typed settings, mapped by hand from environment variables.

Every variable is listed here and in the README. Tests build a ``Settings``
directly and hand it to ``create_app`` / ``make_celery``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping


class ConfigError(Exception):
    """A setting is missing or malformed."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str = field(repr=False)
    broker_url: str | None = None
    registry: str = "127.0.0.1:5000"
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path(".buildhook")
    work_dir: Path | None = None
    max_body_bytes: int = 5 * 1024 * 1024
    build_timeout: int = 3600
    dispatch_grace_seconds: int = 10
    docker_host: str | None = None
    registry_events_token: str | None = field(default=None, repr=False)
    delivery_backoff: float = 2.0
    delivery_attempts: int = 8
    deploy_stable_seconds: float = 5.0
    trusted_registries: tuple[str, ...] = ()

    @property
    def effective_work_dir(self) -> Path:
        return self.work_dir or self.data_dir / "work"

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        data_dir = Path(env.get("BUILDHOOK_DATA_DIR") or ".buildhook")
        secret_key = env.get("BUILDHOOK_SECRET_KEY", "")
        if not secret_key:
            raise ConfigError(
                "BUILDHOOK_SECRET_KEY is not set: it encrypts stored secrets "
                "(`buildhook serve` creates one in the data directory for you)"
            )
        work_dir = env.get("BUILDHOOK_WORK_DIR")
        return cls(
            database_url=env.get("BUILDHOOK_DATABASE_URL")
            or f"sqlite:///{(data_dir / 'buildhook.db').resolve()}",
            secret_key=secret_key,
            broker_url=env.get("BUILDHOOK_BROKER_URL") or None,
            registry=env.get("BUILDHOOK_REGISTRY") or "127.0.0.1:5000",
            registry_username=env.get("BUILDHOOK_REGISTRY_USERNAME") or None,
            registry_password=env.get("BUILDHOOK_REGISTRY_PASSWORD") or None,
            public_url=(env.get("BUILDHOOK_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            data_dir=data_dir,
            work_dir=Path(work_dir) if work_dir else None,
            max_body_bytes=_int(env, "BUILDHOOK_MAX_BODY_BYTES", 5 * 1024 * 1024),
            build_timeout=_int(env, "BUILDHOOK_BUILD_TIMEOUT", 3600),
            dispatch_grace_seconds=_int(env, "BUILDHOOK_DISPATCH_GRACE", 10),
            docker_host=env.get("DOCKER_HOST") or None,
            registry_events_token=env.get("BUILDHOOK_REGISTRY_EVENTS_TOKEN") or None,
            delivery_backoff=_float(env, "BUILDHOOK_DELIVERY_BACKOFF", 2.0),
            delivery_attempts=_int(env, "BUILDHOOK_DELIVERY_ATTEMPTS", 8),
            deploy_stable_seconds=_float(env, "BUILDHOOK_DEPLOY_STABLE_SECONDS", 5.0),
            trusted_registries=tuple(h.strip() for h in env.get("BUILDHOOK_TRUSTED_REGISTRIES", "").split(",")
                                     if h.strip()),
        )

    def trusts_registry(self, host: str | None) -> bool:
        """Registries buildhook may contact to resolve digests and pull: its own, loopback, and those listed."""
        if not host:
            return False
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return (host == self.registry or host in self.trusted_registries or name == "localhost"
                or name.startswith("127."))

    def own_origins(self) -> list[str]:
        """Where buildhook itself answers: outbound notifications must not point there."""
        return [self.public_url]
