"""Which engine builds images, and the BuildKit client it drives.

``BUILDHOOK_BUILD_ENGINE=buildkit`` (the default) builds with BuildKit through a ``docker``
CLI that has it built in (``builder/builds/image/buildkit.py``): the 20.10 CLI of Debian's
``docker.io`` does (``DOCKER_BUILDKIT=1 docker build``), a newer one only with the buildx
plugin. ``classic`` keeps docker-py's ``POST /build`` (``builder/builds/image/classic.py``) for engines
without BuildKit. Everything else (push, inspect, containers, deploys) is docker-py either way.

The client is ``BUILDHOOK_DOCKER_CLI`` when set, else the first ``docker`` on PATH, then
``/usr/bin/docker``, that accepts ``DOCKER_BUILDKIT=1 docker build``: a newer CLI without
buildx refuses it ("BuildKit is enabled but the buildx component is missing or broken"). The
worker names the engine and client when it starts and refuses to start without one.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from builder.settings import ConfigError, Settings

BUILDKIT = "buildkit"
CLASSIC = "classic"
FALLBACK_CLI = "/usr/bin/docker"  # Debian's docker.io: the 20.10 CLI, BuildKit built in


@dataclass(frozen=True)
class BuildEngine:
    """How images are built: ``kind`` (buildkit or classic), and for BuildKit the CLI that drives it."""

    kind: str = CLASSIC
    cli: str | None = None
    cli_version: str = ""
    cgroup: str = "docker/buildkit"  # where the engine runs BuildKit's steps, below each cgroup root

    @property
    def buildkit(self) -> bool:
        return self.kind == BUILDKIT

    def describe(self) -> str:
        if not self.buildkit:
            return "the classic builder (docker-py, POST /build without BuildKit)"
        return f"BuildKit through {self.cli} (Docker CLI {self.cli_version})"


CLASSIC_ENGINE = BuildEngine(CLASSIC)


def engine_for(settings: Settings) -> BuildEngine:
    """The engine the settings ask for; ``ConfigError`` (saying why) when BuildKit has no usable client."""
    if settings.build_engine == CLASSIC:
        return CLASSIC_ENGINE
    cli, version = buildkit_client(settings.docker_cli)
    return BuildEngine(BUILDKIT, cli, version, settings.buildkit_cgroup)


@lru_cache(maxsize=8)
def buildkit_client(configured: str | None = None) -> tuple[str, str]:
    """(path, version) of the docker CLI that drives BuildKit; ``ConfigError`` listing what was tried."""
    tried: list[str] = []
    for candidate in _candidates(configured):
        version, refusal = _probe(candidate)
        if refusal is None:
            return candidate, version
        tried.append(f"{candidate}: {refusal}")
    where = "BUILDHOOK_DOCKER_CLI" if configured else "PATH and /usr/bin/docker"
    raise ConfigError(
        "BUILDHOOK_BUILD_ENGINE=buildkit needs a docker CLI that builds with BuildKit (the 20.10 CLI of "
        f"Debian's docker.io, or a newer one with the buildx plugin); none found in {where}"
        + (": " + "; ".join(tried) if tried else "")
        + ". Install docker.io, set BUILDHOOK_DOCKER_CLI, or set BUILDHOOK_BUILD_ENGINE=classic.")


def _candidates(configured: str | None) -> list[str]:
    if configured:
        return [configured]
    found: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep) + [str(Path(FALLBACK_CLI).parent)]:
        path = Path(directory or ".") / "docker"
        if path.is_file() and os.access(path, os.X_OK) and not any(
                os.path.samefile(path, seen) for seen in found):
            found.append(str(path))
    return found


def _probe(cli: str) -> tuple[str, str | None]:
    """(client version, None) if ``cli`` builds with BuildKit; else ("", why not)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    try:
        helped = subprocess.run([cli, "build", "--help"], env=env, capture_output=True, text=True, timeout=20)
        version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], env=env,
                                 capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return "", str(exc)
    if helped.returncode != 0 or "--secret" not in helped.stdout:
        reason = (helped.stderr.strip().splitlines() or ["no --secret option in `docker build --help`"])[0]
        return "", reason
    return (version[0] if version else "unknown version"), None


def default_engine() -> BuildEngine:
    """The engine ``BUILDHOOK_BUILD_ENGINE`` / ``BUILDHOOK_DOCKER_CLI`` of this process's environment."""
    if (os.environ.get("BUILDHOOK_BUILD_ENGINE") or BUILDKIT) == CLASSIC:
        return CLASSIC_ENGINE
    cli, version = buildkit_client(os.environ.get("BUILDHOOK_DOCKER_CLI") or None)
    return BuildEngine(BUILDKIT, cli, version, (os.environ.get("BUILDHOOK_BUILDKIT_CGROUP") or "docker/buildkit")
                       .strip("/"))
