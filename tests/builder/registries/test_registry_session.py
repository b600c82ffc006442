"""One registry HTTP client (``builder.registries.api.RegistrySession``) for digests, pushes and deletes.

Basic auth: a real ``docker-registry`` asking for an htpasswd user; a manifest pushed with
``registry_upload``'s client is read back with ``resolve_digest`` and deleted with retention's
``registry_deletes.Registry``. Bearer tokens: a loopback HTTP server that plays the token dance
(``/v2/`` paths answer 401 ``WWW-Authenticate: Bearer realm=...`` until a token from its ``/token``
endpoint comes) and then answers manifest HEAD and DELETE as a registry does.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import bcrypt
import pytest

from builder.errors import PermanentError
from builder.registries.api import resolve_digest
from builder.registries.credentials import RegistryAccess
from builder.registries.deletes import DeleteRefused, Registry
from builder.registries.upload import CONFIG_TYPE, MANIFEST_TYPE, RegistryClient, manifest_digest
from builder.settings import Settings
from tests.challenging_registry import LoopbackServer
from tests.conftest import run_registry

USER, PASSWORD = "robot", f"pw-{uuid.uuid4().hex}"
TOKEN = f"token-{uuid.uuid4().hex}"
DIGEST = "sha256:" + "ab" * 32


def settings_for(host: str, username: str | None = USER, password: str | None = PASSWORD) -> Settings:
    env = {"BUILDHOOK_SECRET_KEY": "registry-session", "BUILDHOOK_DATABASE_URL": "sqlite://",
           "BUILDHOOK_REGISTRY": host}
    if username and password:
        env |= {"BUILDHOOK_REGISTRY_USERNAME": username, "BUILDHOOK_REGISTRY_PASSWORD": password}
    return Settings.from_env(env)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """A docker-registry on loopback that asks for USER / PASSWORD (htpasswd, bcrypt)."""
    root = tmp_path_factory.mktemp("session-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    yield from run_registry(root, htpasswd=htpasswd)


def push_manifest(registries: RegistryAccess, image: str, tag: str) -> str:
    """A tiny image (a config, no layers) under ``tag``; its digest."""
    client = RegistryClient(registries, image)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {}, "nonce": uuid.uuid4().hex}).encode()
    client.upload_blob(manifest_digest(config), io.BytesIO(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "layers": [],
                           "config": {"mediaType": CONFIG_TYPE, "size": len(config),
                                      "digest": manifest_digest(config)}}).encode()
    return client.put_manifest(tag, manifest)


def test_digests_pushes_and_deletes_send_basic_credentials(auth_registry):
    registries = RegistryAccess(settings_for(auth_registry.host))
    name = f"acme/session-{uuid.uuid4().hex[:8]}"
    digest = push_manifest(registries, f"{auth_registry.host}/{name}", "v1")

    assert resolve_digest(registries, auth_registry.host, name, "v1") == digest
    registry = Registry(registries, auth_registry.host, name)
    assert registry.tags() == ["v1"] and registry.digest("v1") == digest
    registry.delete_manifest(digest)
    assert registry.digest("v1") is None


def test_without_credentials_the_registry_refuses(auth_registry):
    registries = RegistryAccess(settings_for(auth_registry.host, username=None, password=None))
    with pytest.raises(PermanentError, match="refused"):
        resolve_digest(registries, auth_registry.host, "acme/none", "v1", attempts=1)
    with pytest.raises(DeleteRefused, match="401"):
        Registry(registries, auth_registry.host, "acme/none").delete_manifest(DIGEST)


class TokenRegistry(LoopbackServer):
    """A registry's token dance on loopback: 401 Bearer challenges, a /token endpoint, then answers."""

    def __init__(self) -> None:
        self.scopes: list[str] = []
        self.deleted: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _token(self) -> None:
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._answer(401, {})
                owner.scopes += parse_qs(urlparse(self.path).query)["scope"]
                self._answer(200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode())

            def _registry(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    realm = f"http://127.0.0.1:{owner.port}/token"
                    return self._answer(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'})
                if self.command == "DELETE":
                    owner.deleted.append(self.path)
                    return self._answer(202, {})
                self._answer(200, {"Docker-Content-Digest": DIGEST})

            def do_GET(self) -> None:
                return self._token() if self.path.startswith("/token") else self._registry()

            do_HEAD = do_DELETE = _registry

        super().__init__(Handler)


@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    registry = TokenRegistry()
    yield registry
    registry.stop()


def test_digests_and_deletes_answer_a_bearer_challenge_with_a_token(token_registry):
    registries = RegistryAccess(settings_for(token_registry.host))

    assert resolve_digest(registries, token_registry.host, "acme/widget", "v1") == DIGEST
    registry = Registry(registries, token_registry.host, "acme/widget")
    assert registry.digest("v1") == DIGEST
    registry.delete_manifest(DIGEST)

    assert token_registry.deleted == [f"/v2/acme/widget/manifests/{DIGEST}"]
    assert token_registry.scopes == ["repository:acme/widget:pull", "repository:acme/widget:pull,delete"]


def test_a_bearer_registry_refuses_a_delete_without_credentials(token_registry):
    registries = RegistryAccess(settings_for(token_registry.host, username=None, password=None))
    with pytest.raises(DeleteRefused, match="401"):
        Registry(registries, token_registry.host, "acme/widget").delete_manifest(DIGEST)
    assert token_registry.deleted == []
