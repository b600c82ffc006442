"""Typed settings, mapped by hand from environment variables.

Every variable is listed here and in the README. Tests build a ``Settings``
directly and hand it to ``create_app``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, TypeVar

from builder.notify.targets import TargetPolicy, parse_allow_list
from builder.registries.credentials import Credentials, canonical_host, load_docker_config


_N = TypeVar("_N", int, float)


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


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _at_least(minimum: float, name: str, value: _N) -> _N:
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value!r}")
    return value


# The longest duration a setting may give: dates that far from now are still dates (datetime ends
# in the year 9999), so "now minus the TTL" or "now plus the lifetime" never overflows.
CENTURY_DAYS = 36_500
CENTURY_SECONDS = CENTURY_DAYS * 86_400


def _duration(minimum: int, maximum: int, name: str, value: int) -> int:
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be from {minimum} to {maximum}, got {value!r}")
    return value


def _cpus(value: float) -> float:
    """0 (no limit), or at least 0.01 CPU: the engine's CPU quota cannot be smaller."""
    if value != 0 and not value >= 0.01:
        raise ConfigError(f"BUILDHOOK_BUILD_CPUS must be 0 (no limit) or at least 0.01, got {value!r}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _bytes(env: Mapping[str, str], name: str, default: int) -> int:
    """A size in bytes, or with a k/m/g suffix as Docker writes them ("512m", "2g"); 0 means no limit."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    number, unit = (raw[:-1], raw[-1]) if raw[-1] in "bkmg" else (raw, "")
    try:
        value = int(float(number) * _UNITS[unit])
    except (ValueError, OverflowError):
        raise ConfigError(f"{name} must be a size such as 536870912, 512m or 2g, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated registry hosts, each ``host[:port]``."""
    hosts = tuple(h.strip() for h in env.get(name, "").split(",") if h.strip())
    for host in hosts:
        try:
            canonical_host(host)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return hosts


def _registry_credentials(env: Mapping[str, str]) -> tuple[tuple[str, Credentials], ...]:
    """``BUILDHOOK_REGISTRY_CREDENTIALS``: a Docker config.json, read once at start."""
    path = env.get("BUILDHOOK_REGISTRY_CREDENTIALS")
    if not path:
        return ()
    try:
        return tuple(load_docker_config(Path(path)).items())
    except ValueError as exc:
        raise ConfigError(f"BUILDHOOK_REGISTRY_CREDENTIALS: {exc}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no setting: 1, true, yes, on, or 0, false, no, off (unset: no)."""
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


BUILD_NETWORKS = ("none", "host", "default")
BUILD_ENGINES = ("buildkit", "classic")


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
    # Registries reached over plain HTTP besides loopback ones; credentials per registry (host, Credentials).
    insecure_registries: tuple[str, ...] = ()
    registry_credentials: tuple[tuple[str, Credentials], ...] = field(default=(), repr=False)
    # Limits for each build (0: no limit). Builds get no network unless the operator allows it.
    build_memory: int = 4 * 1024**3
    build_cpus: float = 0.0
    build_network: str = "none"
    max_log_bytes: int = 10 * 1024**2
    max_context_bytes: int = 500 * 1024**2
    # A running build whose worker has not been heard from for this long is reaped.
    heartbeat_ttl: int = 60
    # Seconds a sign-in lasts (then the browser signs in again); X-Forwarded-For hops trusted (0: none).
    session_lifetime: int = 12 * 3600
    proxy_hops: int = 0
    # Outbound targets allowed despite a loopback/private/... address (builder/notify/targets.py).
    allow_private_targets: tuple[str, ...] = ()
    listen_address: str | None = None  # host:port the web app listens on, when known
    # file:// clone URLs and local paths (tests, local use); off: only network URLs.
    allow_file_clones: bool = False
    # What builds images: BuildKit through a docker CLI (builder/builds/image/buildkit.py), or docker-py's classic builder.
    build_engine: str = "buildkit"
    docker_cli: str | None = None  # unset: the first docker on PATH (or /usr/bin/docker) that accepts BuildKit
    buildkit_cgroup: str = "docker/buildkit"  # the engine's BuildKit cgroup, below each cgroup root
    # GET /metrics also answers this bearer token (besides API tokens); days logs and deliveries are kept (0: forever).
    metrics_token: str | None = field(default=None, repr=False)
    keep_days: int = 90

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
            max_body_bytes=_at_least(1, "BUILDHOOK_MAX_BODY_BYTES",
                                     _int(env, "BUILDHOOK_MAX_BODY_BYTES", 5 * 1024 * 1024)),
            build_timeout=_at_least(0, "BUILDHOOK_BUILD_TIMEOUT", _int(env, "BUILDHOOK_BUILD_TIMEOUT", 3600)),
            dispatch_grace_seconds=_duration(1, CENTURY_SECONDS, "BUILDHOOK_DISPATCH_GRACE",
                                             _int(env, "BUILDHOOK_DISPATCH_GRACE", 10)),
            docker_host=env.get("DOCKER_HOST") or None,
            registry_events_token=env.get("BUILDHOOK_REGISTRY_EVENTS_TOKEN") or None,
            delivery_backoff=_at_least(0, "BUILDHOOK_DELIVERY_BACKOFF", _float(env, "BUILDHOOK_DELIVERY_BACKOFF", 2.0)),
            delivery_attempts=_at_least(1, "BUILDHOOK_DELIVERY_ATTEMPTS", _int(env, "BUILDHOOK_DELIVERY_ATTEMPTS", 8)),
            deploy_stable_seconds=_at_least(0, "BUILDHOOK_DEPLOY_STABLE_SECONDS",
                                            _float(env, "BUILDHOOK_DEPLOY_STABLE_SECONDS", 5.0)),
            trusted_registries=_hosts(env, "BUILDHOOK_TRUSTED_REGISTRIES"),
            insecure_registries=_hosts(env, "BUILDHOOK_INSECURE_REGISTRIES"),
            registry_credentials=_registry_credentials(env),
            build_memory=_bytes(env, "BUILDHOOK_BUILD_MEMORY", 4 * 1024**3),
            build_cpus=_cpus(_float(env, "BUILDHOOK_BUILD_CPUS", 0.0)),
            build_network=_choice(env, "BUILDHOOK_BUILD_NETWORK", BUILD_NETWORKS),
            max_log_bytes=_bytes(env, "BUILDHOOK_MAX_LOG_BYTES", 10 * 1024**2),
            max_context_bytes=_bytes(env, "BUILDHOOK_MAX_CONTEXT_BYTES", 500 * 1024**2),
            heartbeat_ttl=_duration(2, CENTURY_SECONDS, "BUILDHOOK_HEARTBEAT_TTL",
                                    _int(env, "BUILDHOOK_HEARTBEAT_TTL", 60)),
            session_lifetime=_duration(60, CENTURY_SECONDS, "BUILDHOOK_SESSION_LIFETIME",
                                       _int(env, "BUILDHOOK_SESSION_LIFETIME", 12 * 3600)),
            proxy_hops=_at_least(0, "BUILDHOOK_PROXY_HOPS", _int(env, "BUILDHOOK_PROXY_HOPS", 0)),
            allow_private_targets=_allow_list(env),
            listen_address=env.get("BUILDHOOK_LISTEN_ADDRESS") or None,
            allow_file_clones=_flag(env, "BUILDHOOK_ALLOW_FILE_CLONES"),
            build_engine=_choice(env, "BUILDHOOK_BUILD_ENGINE", BUILD_ENGINES),
            docker_cli=env.get("BUILDHOOK_DOCKER_CLI") or None,
            buildkit_cgroup=(env.get("BUILDHOOK_BUILDKIT_CGROUP") or "docker/buildkit").strip("/"),
            metrics_token=env.get("BUILDHOOK_METRICS_TOKEN") or None,
            keep_days=_duration(0, CENTURY_DAYS, "BUILDHOOK_KEEP_DAYS", _int(env, "BUILDHOOK_KEEP_DAYS", 90)),
        )

    def own_origins(self) -> list[str]:
        """Where buildhook itself answers: outbound notifications must not point there."""
        return [self.public_url] + ([self.listen_address] if self.listen_address else [])

    def target_policy(self) -> TargetPolicy:
        """Where outbound webhooks and docker deploys may go."""
        return TargetPolicy(parse_allow_list(self.allow_private_targets), tuple(self.own_origins()))


def _allow_list(env: Mapping[str, str]) -> tuple[str, ...]:
    entries = tuple(e.strip() for e in env.get("BUILDHOOK_ALLOW_PRIVATE_TARGETS", "").split(",") if e.strip())
    try:
        parse_allow_list(entries)
    except ValueError as exc:
        raise ConfigError(f"BUILDHOOK_ALLOW_PRIVATE_TARGETS: {exc}") from None
    return entries
