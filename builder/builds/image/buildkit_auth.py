"""Registry credentials for a BuildKit build: a private ``DOCKER_CONFIG`` for the docker CLI.

BuildKit pulls the rule's previous image (its inline cache, ``--cache-from``) itself, and asks
the CLI's session for credentials, which the CLI reads from ``$DOCKER_CONFIG/config.json``. So
a build whose image lives in a registry buildhook has credentials for gets a config directory
of its own: mode 0700, inside the build's private directory (removed with it after the build),
holding a ``config.json`` (0600) with one entry, the image's registry and its credentials
(``builder.registries.credentials``: no other registry ever gets them). The values never reach
the CLI's arguments or environment. The CLI's plugins (``cli-plugins``, e.g. buildx) of the
config directory it would otherwise use are linked in, so the same CLI still finds them.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from builder.registries.image_names import registry_host
from builder.registries.credentials import DOCKER_HUB, Credentials, RegistryAccess

# The key the docker CLI looks Docker Hub's credentials up by.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def registry_logins(registries: RegistryAccess, image: str) -> tuple[tuple[str, Credentials], ...]:
    """The image's registry and its credentials, if buildhook has any for it; else nothing."""
    host = registry_host(image)
    credentials = registries.credentials_for(host)
    return ((host, credentials),) if credentials is not None else ()


def private_docker_config(directory: Path, logins: tuple[tuple[str, Credentials], ...]) -> Path | None:
    """Write ``directory/docker-config/config.json`` with ``logins``; its path (None: no logins)."""
    if not logins:
        return None
    config = directory / "docker-config"
    config.mkdir(mode=0o700)
    auths = {DOCKER_HUB_KEY if host == DOCKER_HUB else host:
             {"auth": base64.b64encode(f"{login.username}:{login.password}".encode()).decode()}
             for host, login in logins}
    descriptor = os.open(config / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"auths": auths}, out)
    plugins = _usual_config_dir() / "cli-plugins"
    if plugins.is_dir():
        (config / "cli-plugins").symlink_to(plugins)
    return config


def _usual_config_dir() -> Path:
    configured = os.environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"
