"""Read a tag's manifest digest from a Docker v2 registry, retrying briefly.

A registry may notify before the manifest can be read back (distribution#2625),
so ``resolve_digest`` retries a few times before giving up. Which credentials go with the
request, and whether it is HTTPS, is ``builder.registry_credentials``'s answer for that host.
"""

from __future__ import annotations

import time
from typing import Callable

import requests

from builder.errors import PermanentError, TransientError
from builder.registry_credentials import RegistryAccess

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def resolve_digest(registries: RegistryAccess, host: str, repository: str, tag: str, *, attempts: int = 6,
                   delay: float = 0.5, timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """The digest of ``repository:tag`` in registry ``host``, sending only that registry's own credentials."""
    credentials = registries.credentials_for(host)
    auth = (credentials.username, credentials.password) if credentials else None
    url = f"{registries.base_url(host)}/v2/{repository}/manifests/{tag}"
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = requests.head(url, headers={"Accept": MANIFEST_TYPES}, auth=auth, timeout=timeout,
                                     allow_redirects=True)
        except requests.RequestException as exc:
            last = f"registry {host} unreachable: {type(exc).__name__}"
        else:
            digest = response.headers.get("Docker-Content-Digest")
            if response.status_code == 200 and digest:
                return digest
            if response.status_code in (401, 403):
                raise PermanentError(f"registry {host} refused to show {repository}:{tag} ({response.status_code})")
            last = f"registry {host} answered {response.status_code} for {repository}:{tag}"
        if attempt < attempts:
            sleep(delay * attempt)
    raise TransientError(f"could not resolve {repository}:{tag} to a digest: {last}")
