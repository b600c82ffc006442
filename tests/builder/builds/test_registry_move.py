"""Unfinished builds follow a registry that moved; finished ones, and other registries' builds, keep their names."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from builder.builds.registry_move import follow_registry
from builder.db.models import Build
from tests.builder.builds.run.test_build_limits import queued_build



@pytest.fixture()
def trigger_id(client) -> int:
    response = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/moved-{uuid.uuid4().hex[:8]}", "clone_url": "https://example.test/x.git",
        "secret": "s", "image": "acme/app"})
    assert response.status_code == 201, response.json
    return response.json["id"]


def build_in(app, trigger_id: int, image: str, state: str) -> int:
    build_id = queued_build(app, trigger_id, uuid.uuid4().hex + "00000000")
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Build).where(Build.id == build_id).values(image=image, state=state))
        session.commit()
    return build_id


def test_queued_and_running_builds_push_to_the_registry_s_new_address(app, client, trigger_id):
    host = f"registry-{uuid.uuid4().hex[:8]}.test"  # the test database is shared: an address of this test's own
    old, new = f"{host}:5000", f"{host}:41234"
    moving = {build_in(app, trigger_id, f"{old}/acme/app", state): f"{new}/acme/app"
              for state in ("queued", "cloning", "building", "pushing")}
    staying = {
        build_in(app, trigger_id, f"{old}/acme/app", "succeeded"): f"{old}/acme/app",  # its name is what was pushed
        build_in(app, trigger_id, f"{old}/acme/app", "failed"): f"{old}/acme/app",
        build_in(app, trigger_id, f"{old}1/acme/app", "queued"): f"{old}1/acme/app",  # port 50001: another registry
        build_in(app, trigger_id, f"{host}/acme/app", "queued"): f"{host}/acme/app",
    }
    sessions = app.extensions["buildhook"].sessions

    assert follow_registry(sessions, old, new) == 4
    with sessions() as session:
        assert {build_id: session.get(Build, build_id).image for build_id in {**moving, **staying}} == \
            {**moving, **staying}
    assert follow_registry(sessions, old, new) == 0  # nothing left at the old address
