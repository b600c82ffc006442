"""Real provider payloads from tests/fixtures/, rewritten to a test repository and signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

# The one place the tests find their payload files (tests/fixtures/README.md says where they come from).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())


def github_push(name: str, *, repository: str, ref: str, sha: str | None, clone_url: str) -> dict[str, Any]:
    """The real GitHub push payload ``name``, pointed at ``repository`` and commit ``sha``."""
    payload = fixture(f"github/{name}.json")
    payload["ref"] = ref
    payload["repository"]["full_name"] = repository
    payload["repository"]["name"] = repository.split("/", 1)[1]
    payload["repository"]["clone_url"] = clone_url
    if sha is not None:
        payload["after"] = sha
        if payload.get("head_commit"):
            payload["head_commit"]["id"] = sha
    return payload


def sign_github(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, secret: str, event: str = "push", delivery: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "4242",
        "X-Hub-Signature-256": sign_github(body, secret),
    }


def hmac_hex(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(provider: str, event: dict[str, str], body: bytes, secret: str) -> dict[str, str]:
    """The headers each host sends with a delivery signed (or tokened) with ``secret``."""
    delivery = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", **event}
    if provider == "github":
        headers.update({"X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": "4242",
                        "X-Hub-Signature-256": sign_github(body, secret)})
    elif provider == "gitlab":
        headers.update({"X-Gitlab-Token": secret, "Idempotency-Key": delivery,
                        "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Instance": "https://gitlab.example.com"})
    elif provider == "bitbucket":
        key = "X-Request-Id" if event.get("X-Event-Key") == "repo:refs_changed" else "X-Request-UUID"
        headers.update({key: delivery, "X-Hub-Signature": "sha256=" + hmac_hex(body, secret)})
    elif provider == "gitea":
        headers.update({"X-Gitea-Delivery": delivery, "X-Gitea-Signature": hmac_hex(body, secret)})
    else:
        raise ValueError(provider)
    return headers


def add_github_trigger(client, secret: str, prefix: str = "acme/widget") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A GitHub trigger for a new repository ``<prefix>-<random>``, added through the API; its JSON."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    response = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": "file:///nonexistent/repo.git",
        "secret": secret, "image": name})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]
