"""Push a built image to its registry by digest alone, and tag that very manifest later.

The Docker Engine (20.10's classic image store) pushes only tags: every push moves a
tag and makes the registry send a tag event. A tested build must not move a tag before
its test passes, so ``push_by_digest`` exports the image from the engine (``docker
save``), uploads its config and gzipped layers as blobs (skipping blobs the registry
has) and PUTs the manifest under its digest only (the registry's event names no tag,
so nothing deploys). ``tag_manifest`` then PUTs the same manifest bytes under each tag:
the digest that was tested is exactly the digest every tag points at.

Registry API v2 through ``builder.registries.api.RegistrySession``: basic credentials, or a bearer
token fetched from the realm a 401 challenge names (Docker Hub, GitLab, Harbor). Only the image's
own registry gets credentials (``builder.registries.credentials``).
"""

from __future__ import annotations

import gzip
import io
import hashlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import requests

from builder.errors import PermanentError, TransientError
from builder.registries.image_names import registry_host, repository_path
from builder.registries.api import RegistrySession
from builder.registries.credentials import RegistryAccess

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PushedManifest:
    """A manifest in the registry under its digest: what ``tag_manifest`` tags."""

    image: str  # host/path as the build names it
    digest: str
    body: bytes
    media_type: str = MANIFEST_TYPE  # or an image index's (builder/builds/image/platforms.py)


class RegistryClient:
    """Pushes to one repository of one registry (``builder.registries.api.RegistrySession``'s requests)."""

    def __init__(self, registries: RegistryAccess, image: str, timeout: float = 60.0) -> None:
        self.session = RegistrySession(registries, registry_host(image), repository_path(image), "pull,push", timeout)
        self.host, self.path = self.session.host, self.session.path

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.send(method, url, **kwargs)
        except requests.RequestException as exc:
            raise TransientError(f"registry {self.host} unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403):
            hint = ("check BUILDHOOK_REGISTRY_USERNAME/PASSWORD or BUILDHOOK_REGISTRY_CREDENTIALS"
                    if self.session.credentials
                    else "buildhook sends credentials only to BUILDHOOK_REGISTRY and BUILDHOOK_TRUSTED_REGISTRIES")
            raise PermanentError(f"registry {self.host} refused the push of {self.path} ({hint}): "
                                 f"{response.status_code} {response.text[:200]}")
        if response.status_code >= 500:
            raise TransientError(f"registry {self.host} failed during the push of {self.path} "
                                 f"(HTTP {response.status_code})")
        return response

    def expect(self, response: requests.Response, *codes: int) -> requests.Response:
        if response.status_code not in codes:
            raise TransientError(f"registry {self.host} answered {response.status_code} during the push of "
                                 f"{self.path}: {response.text[:200]}")
        return response

    def upload_blob(self, digest: str, body: IO[bytes]) -> bool:
        """Upload one blob unless the registry has it; True if it was uploaded."""
        if self.request("HEAD", f"blobs/{digest}").status_code == 200:
            return False
        started = self.expect(self.request("POST", "blobs/uploads/"), 202)
        location = started.headers["Location"]
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        self.expect(self.request("PUT", location, data=body, headers={"Content-Type": "application/octet-stream"}),
                    201)
        return True

    def put_manifest(self, reference: str, body: bytes, media_type: str = MANIFEST_TYPE) -> str:
        answer = self.expect(self.request("PUT", f"manifests/{reference}", data=body,
                                          headers={"Content-Type": media_type}), 201)
        return answer.headers.get("Docker-Content-Digest") or manifest_digest(body)


def manifest_digest(data: bytes) -> str:
    """The digest a registry gives these bytes (a manifest or a blob)."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def push_by_digest(client: docker.DockerClient, image_id: str, image: str, registries: RegistryAccess,
                   scratch: Path, log: Any) -> PushedManifest:
    """Upload the engine's image ``image_id`` to ``image``'s repository under its digest only (no tag)."""
    registry = RegistryClient(registries, image)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="save-") as work:
        saved = Path(work) / "image.tar"
        with saved.open("wb") as out:
            for chunk in client.api.get_image(image_id):
                out.write(chunk)
        with tarfile.open(saved) as archive:
            entry = json.load(_member(archive, "manifest.json"))[0]
            config = _member(archive, entry["Config"]).read()
            registry.upload_blob(manifest_digest(config), io.BytesIO(config))
            layers = []
            for name in entry["Layers"]:
                digest, size, uploaded = _upload_layer(registry, _member(archive, name), Path(work))
                layers.append({"mediaType": LAYER_TYPE, "size": size, "digest": digest})
                log(f"{digest[7:19]} {'Pushed' if uploaded else 'Layer already exists'}")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                           "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": manifest_digest(config)},
                           "layers": layers}, indent=3).encode()
    digest = registry.put_manifest(manifest_digest(manifest), manifest)
    log(f"Pushed {image}@{digest} (by digest, no tag yet)")
    return PushedManifest(image=image, digest=digest, body=manifest)


def tag_manifest(pushed: PushedManifest, tags: tuple[str, ...], registries: RegistryAccess, log: Any) -> str:
    """Point each tag at the pushed manifest (the same bytes, so the same digest); return the digest."""
    registry = RegistryClient(registries, pushed.image)
    for tag in tags:
        digest = registry.put_manifest(tag, pushed.body, pushed.media_type)
        if digest != pushed.digest:
            raise PermanentError(f"registry {registry.host} stored {pushed.image}:{tag} as {digest}, "
                                 f"not the tested {pushed.digest}")
        log(f"Tagged {pushed.image}:{tag} -> {digest}")
    return pushed.digest


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    found = archive.extractfile(name)
    if found is None:
        raise PermanentError(f"the engine's image export has no {name}")
    return found


def _upload_layer(registry: RegistryClient, layer: IO[bytes], work: Path) -> tuple[str, int, bool]:
    """Gzip one layer (reproducibly: no name, no time) into a file, hash it, upload it."""
    with tempfile.TemporaryFile(dir=work) as packed:
        hashing = _Hashing(packed)
        with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0, filename="") as zipped:
            shutil.copyfileobj(layer, zipped, _CHUNK)
        packed.seek(0)
        digest = f"sha256:{hashing.sha.hexdigest()}"
        return digest, hashing.size, registry.upload_blob(digest, packed)


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()
