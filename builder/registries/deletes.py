"""Deleting tags and manifests from a Docker v2 registry (for retention, ``builder/registries/retention.py``).

Requests go only to a trusted registry, through ``builder.registries.api.RegistrySession`` (that
registry's own credentials and scheme, basic or bearer-token auth, as the digest lookup and pushes).
The OCI distribution spec lets a registry delete a tag alone (``DELETE /v2/<name>/manifests/<tag>``);
one that cannot (distribution 2.x answers 400 ``DIGEST_INVALID``: it takes the tag for a digest) can
only delete the manifest (``DELETE .../manifests/<digest>``), which removes every tag pointing at it. A registry that refuses deletes (``storage.delete.enabled: false``: 405, or
401/403) raises ``DeleteRefused``: the caller records it and does not ask again. No answer or a 5xx
is a ``TransientError``: tried again on a later pass.
"""

from __future__ import annotations

import requests

from builder.errors import TransientError
from builder.registries.api import MANIFEST_TYPES, RegistrySession
from builder.registries.credentials import RegistryAccess

TIMEOUT = 10.0


class DeleteRefused(Exception):
    """The registry will not delete this (deletes disabled, no permission): recorded, not retried."""


class TagDeleteUnsupported(Exception):
    """The registry deletes manifests only, not a tag alone."""


# In a refusal's detail: buildhook's own settings refused, not the registry (retention asks again once trusted).
NOT_TRUSTED = "is not trusted"


class Registry:
    """One repository of one trusted registry."""

    def __init__(self, registries: RegistryAccess, host: str, repository: str) -> None:
        if not registries.trusts(host):
            raise DeleteRefused(f"registry {host} {NOT_TRUSTED} (BUILDHOOK_REGISTRY, BUILDHOOK_TRUSTED_REGISTRIES): "
                                "buildhook deletes nothing there")
        self._session = RegistrySession(registries, host, repository, "pull,delete", TIMEOUT)
        self.host, self.repository = host, repository

    def _call(self, method: str, path: str) -> requests.Response:
        try:
            response = self._session.send(method, path, headers={"Accept": MANIFEST_TYPES})
        except requests.RequestException as exc:
            raise TransientError(f"registry {self.host} unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise TransientError(f"registry {self.host} answered {response.status_code} to {method} /{path}")
        return response

    def tags(self) -> list[str]:
        response = self._call("GET", "tags/list?n=10000")
        if response.status_code == 404:
            return []
        self._refused(response, "list the tags of")
        return list(response.json().get("tags") or [])

    def digest(self, tag: str) -> str | None:
        """The manifest digest ``tag`` points at, or None when the tag is gone."""
        response = self._call("HEAD", f"manifests/{tag}")
        if response.status_code == 404:
            return None
        self._refused(response, f"read {tag} of")
        return response.headers.get("Docker-Content-Digest")

    def delete_tag(self, tag: str) -> None:
        response = self._call("DELETE", f"manifests/{tag}")
        if response.status_code in (200, 202, 404):
            return
        if response.status_code == 400:  # distribution 2.x takes the tag for a digest: DIGEST_INVALID
            raise TagDeleteUnsupported(f"registry {self.host} cannot delete a tag alone")
        self._refused(response, f"delete tag {tag} of")  # 405: deletes are disabled

    def delete_manifest(self, digest: str) -> None:
        response = self._call("DELETE", f"manifests/{digest}")
        if response.status_code in (200, 202, 404):
            return
        self._refused(response, f"delete manifest {digest} of")

    def _refused(self, response: requests.Response, what: str) -> None:
        if response.status_code >= 400:
            detail = response.text.strip().replace("\n", " ")[:300]
            raise DeleteRefused(f"registry {self.host} refused to {what} {self.repository} "
                                f"({response.status_code}): {detail}")
