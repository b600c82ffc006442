"""The one HTTP client of a Docker v2 registry (``RegistrySession``), and reading a tag's digest.

``RegistrySession`` sends requests to one repository of one registry and answers its auth
challenges: basic credentials, or a bearer token fetched from the realm a 401 challenge names
(Docker Hub, GitLab, Harbor). Which credentials go with the requests, and whether they are
HTTPS, is ``builder.registries.credentials``'s answer for that host: only the registry's own.
Pushes (``builder/registries/upload.py``) and deletes (``builder/registries/deletes.py``) use it too.

A registry may notify before the manifest can be read back (distribution#2625),
so ``resolve_digest`` retries a few times before giving up.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable
from urllib.parse import urljoin

import requests

from builder.errors import PermanentError, TransientError
from builder.registries.credentials import Credentials, RegistryAccess

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


class RegistrySession:
    """Requests to one repository (``path``) of registry ``host``, answering its auth challenges.

    ``actions`` is the scope a bearer token is asked for ("pull", "pull,push", "pull,delete").
    """

    def __init__(self, registries: RegistryAccess, host: str, path: str, actions: str = "pull",
                 timeout: float = 60.0) -> None:
        self.host, self.path, self.actions, self.timeout = host, path, actions, timeout
        self.base = registries.base_url(host)
        self.credentials: Credentials | None = registries.credentials_for(host)
        self.http = requests.Session()

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``url`` relative to the repository (``manifests/<tag>``) or absolute; the answer whatever
        its status. Raises ``requests.RequestException`` when the registry cannot be reached."""
        url = urljoin(f"{self.base}/v2/{self.path}/", url)
        response = self.http.request(method, url, timeout=self.timeout, **kwargs)
        if response.status_code == 401 and self._authenticate(response):
            if hasattr(kwargs.get("data"), "seek"):
                kwargs["data"].seek(0)  # a file sent once already
            response = self.http.request(method, url, timeout=self.timeout, **kwargs)
        return response

    def _authenticate(self, challenge: requests.Response) -> bool:
        """Answer a 401: basic credentials, or a bearer token from the challenge's realm. False if none helps."""
        header = challenge.headers.get("WWW-Authenticate", "")
        scheme, _space, rest = header.partition(" ")
        if scheme.lower() == "basic" and self.credentials and self.http.auth is None:
            self.http.auth = (self.credentials.username, self.credentials.password)
            return True
        if scheme.lower() != "bearer" or "Authorization" in self.http.headers:
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if not params.get("realm"):
            return False
        query = {"service": params.get("service", ""), "scope": f"repository:{self.path}:{self.actions}"}
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        answer = requests.get(params["realm"], params=query, auth=auth, timeout=self.timeout)
        if answer.status_code != 200:
            return False
        token = answer.json().get("token") or answer.json().get("access_token")
        self.http.headers["Authorization"] = f"Bearer {token}"
        return bool(token)


def resolve_digest(registries: RegistryAccess, host: str, repository: str, tag: str, *, attempts: int = 6,
                   delay: float = 0.5, timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """The digest of ``repository:tag`` in registry ``host``, sending only that registry's own credentials."""
    registry = RegistrySession(registries, host, repository, "pull", timeout)
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = registry.send("HEAD", f"manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
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
