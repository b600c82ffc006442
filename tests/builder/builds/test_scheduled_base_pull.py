"""A scheduled build of a ``"rebuild": "always"`` rule picks up a fixed base image; other builds keep the local one.

No image can come from Docker Hub here, so the base lives in the test registry: base v1 is built and
pushed, then v2 is pushed while the engine's local copy of the tag stays v1 (a stale base, as on a
long-lived build host). Each build runs in this process (``pipeline.run_build``), over both engines.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import update

from builder.builds.run import pipeline
from builder.db.models import Build, utcnow
from tests.builder.builds.run.test_build_limits import queued_build
from tests.build_engines import build_engine  # noqa: F401 - the engine fixture

SECRET = "base-pull-webhook-secret"


def base_image(docker_client, context: Path, reference: str, version: str) -> str:
    """Build a FROM scratch base whose /version.txt says ``version``; tag it ``reference``; its id."""
    context.mkdir()
    (context / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (context / "busybox").chmod(0o755)
    (context / "version.txt").write_text(f"{version}\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\nCOPY version.txt /version.txt\n")
    image, _ = docker_client.images.build(path=str(context), tag=reference, rm=True)
    return image.id


def build_of(app, trigger_id: int, sha: str, origin: str) -> int:
    build_id = queued_build(app, trigger_id, sha)
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Build).where(Build.id == build_id).values(
            origin=origin, scheduled_for=utcnow() if origin == "schedule" else None))
        session.commit()
    return build_id


def version_in(docker_client, image: str) -> str:
    output = docker_client.containers.run(image, ["/bin/busybox", "cat", "/version.txt"], network_mode="none",
                                          remove=True)
    return output.decode().strip()


def test_a_scheduled_rebuild_always_pulls_the_fixed_base(app, settings, client, docker_client, registry, make_repo,
                                                         tmp_path, build_engine):  # noqa: F811
    settings = settings.with_(build_engine=build_engine.kind)
    suffix = uuid.uuid4().hex[:8]
    base = f"{registry.host}/acme/base-{suffix}:latest"
    v1 = base_image(docker_client, tmp_path / "v1", base, "v1")
    docker_client.images.push(base.rsplit(":", 1)[0], tag="latest")
    base_image(docker_client, tmp_path / "v2", base, "v2")  # the fix, pushed ...
    docker_client.images.push(base.rsplit(":", 1)[0], tag="latest")
    docker_client.images.get(v1).tag(base)  # ... while this engine still has v1 under the tag

    repo = make_repo(dockerfile=f"FROM {base}\nRUN [\"/bin/busybox\", \"true\"]\n")
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/rebased-{suffix}", "clone_url": repo.url, "secret": SECRET,
        "image": f"acme/rebased-{suffix}",
        "rules": [{"source": "branch", "pattern": "main", "tags": ["main"], "rebuild": "always"}]}).json
    sessions = app.extensions["buildhook"].sessions
    sha = repo.commit({"README.md": "rebased\n"})
    image = f"{settings.registry}/acme/rebased-{suffix}:main"

    pushed = build_of(app, trigger["id"], sha, "push")
    assert pipeline.run_build(sessions, settings, pushed) == pipeline.Outcome.SUCCEEDED
    assert version_in(docker_client, image) == "v1"  # an ordinary build uses the engine's copy

    scheduled = build_of(app, trigger["id"], sha, "schedule")
    assert pipeline.run_build(sessions, settings, scheduled) == pipeline.Outcome.SUCCEEDED
    assert version_in(docker_client, image) == "v2"
    assert client.get(f"/api/builds/{scheduled}").json["state"] == "succeeded"
