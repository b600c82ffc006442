"""The OpenAPI cases of environments, promotion, approval, rollback and the audit log (test_openapi.py runs them).

Each makes the rows it needs on the module's world: a succeeded deployment of the world's image
(as a worker would have finished it), deploy rules of an environment of its own.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from builder.db.models import Deployment, utcnow

CLOSED = "http://127.0.0.1:1"
MISSING = 987654321
E, DEP = "/api/environments/{name}", "/api/deployments/{deployment_id}"


def _client(c):
    return getattr(c, "client", c)  # the recording client's own, so only the case's request is recorded


def environment(c, w: SimpleNamespace, approval: bool = False, auto: bool = False) -> str:
    """A new environment for the world's image: a deploy rule names it."""
    name = f"openapi-env-{uuid.uuid4().hex[:8]}"
    made = _client(c).post("/api/deploy-rules", json={
        "repository": w.image, "tag": "main", "environment": name, "auto": auto,
        "targets": [{"kind": "webhook", "url": f"{CLOSED}/deploy"}]})
    assert made.status_code == 201, made.json
    if approval:
        assert _client(c).put(f"/api/environments/{name}", json={"requires_approval": True}).status_code == 200
    return name


def succeeded(w: SimpleNamespace, environment: str = "staging", digest: str | None = None) -> int:
    with w.sessions() as session:
        deployment = Deployment(environment=environment, kind="webhook", registry_host=None, repository=w.image,
                                tag="main", digest=digest or "sha256:" + uuid.uuid4().hex * 2, state="succeeded",
                                build_id=w.build_ok, finished_at=utcnow())
        session.add(deployment)
        session.commit()
        return deployment.id


def awaiting(c, w: SimpleNamespace) -> int:
    promoted = _client(c).post(f"/api/deployments/{succeeded(w)}/promote",
                               json={"environment": environment(c, w, approval=True)})
    assert promoted.status_code == 202, promoted.json
    return promoted.json["deployments"][0]["id"]


def rollback(c, w: SimpleNamespace):
    name = environment(c, w)
    succeeded(w, name)
    succeeded(w, name)
    return c.post(f"/api/environments/{name}/rollback", json={"repository": w.image})


ENVIRONMENT_CASES = [
    ("get", "/api/environments", 200, lambda c, w: c.get("/api/environments"), ""),
    ("put", E, 200, lambda c, w: c.put(f"/api/environments/{environment(c, w)}", json={"requires_approval": True}),
     ""),
    ("put", E, 400, lambda c, w: c.put(f"/api/environments/{environment(c, w)}", json={"requires_approval": "y"}),
     ""),
    ("put", E, 403, lambda c, w: w.viewer.put("/api/environments/staging", json={"requires_approval": True}),
     "viewer"),
    ("put", E, 404, lambda c, w: c.put("/api/environments/nowhere", json={"requires_approval": True}), ""),
    ("post", f"{E}/rollback", 202, rollback, ""),
    ("post", f"{E}/rollback", 202, lambda c, w: c.post(f"/api/environments/{environment(c, w)}/rollback",
                                                       json={"repository": w.image, "to": succeeded(w)}), "to"),
    ("post", f"{E}/rollback", 400, lambda c, w: c.post("/api/environments/staging/rollback", json={}), ""),
    ("post", f"{E}/rollback", 404, lambda c, w: c.post("/api/environments/nowhere/rollback",
                                                       json={"repository": w.image}), ""),
    ("post", f"{E}/rollback", 409, lambda c, w: c.post(f"/api/environments/{environment(c, w)}/rollback",
                                                       json={"repository": w.image}), "nothing ran"),
    ("post", f"{DEP}/promote", 202, lambda c, w: c.post(f"/api/deployments/{succeeded(w)}/promote",
                                                        json={"environment": environment(c, w)}), ""),
    ("post", f"{DEP}/promote", 202, lambda c, w: c.post(f"/api/deployments/{succeeded(w)}/promote",
                                                        json={"environment": environment(c, w, True)}), "approval"),
    ("post", f"{DEP}/promote", 400, lambda c, w: c.post(f"/api/deployments/{succeeded(w)}/promote", json={}), ""),
    ("post", f"{DEP}/promote", 403, lambda c, w: w.viewer.post(f"/api/deployments/{w.deployment}/promote",
                                                               json={"environment": "staging"}), "viewer"),
    ("post", f"{DEP}/promote", 404, lambda c, w: c.post(f"/api/deployments/{MISSING}/promote",
                                                        json={"environment": "staging"}), ""),
    ("post", f"{DEP}/promote", 409, lambda c, w: c.post(f"/api/deployments/{w.deployment}/promote",
                                                        json={"environment": environment(c, w)}), "not succeeded"),
    ("post", f"{DEP}/approve", 200, lambda c, w: c.post(f"/api/deployments/{awaiting(c, w)}/approve"), ""),
    ("post", f"{DEP}/approve", 404, lambda c, w: c.post(f"/api/deployments/{MISSING}/approve"), ""),
    ("post", f"{DEP}/approve", 409, lambda c, w: c.post(f"/api/deployments/{w.deployment}/approve"), "not waiting"),
    ("post", f"{DEP}/reject", 200, lambda c, w: c.post(f"/api/deployments/{awaiting(c, w)}/reject"), ""),
    ("post", f"{DEP}/reject", 403, lambda c, w: w.viewer.post(f"/api/deployments/{w.deployment}/reject"), "viewer"),
    ("post", f"{DEP}/reject", 404, lambda c, w: c.post(f"/api/deployments/{MISSING}/reject"), ""),
    ("post", f"{DEP}/reject", 409, lambda c, w: c.post(f"/api/deployments/{w.deployment}/reject"), "not waiting"),
    ("get", "/api/audit", 200, lambda c, w: c.get("/api/audit?limit=500"), ""),
    ("get", "/api/audit", 200, lambda c, w: c.get("/api/audit?action=deployment.approved&before=999999"), "filter"),
    ("get", "/api/audit", 400, lambda c, w: c.get("/api/audit?limit=x"), ""),
    ("get", "/api/audit", 403, lambda c, w: w.viewer.get("/api/audit"), "viewer"),
]
