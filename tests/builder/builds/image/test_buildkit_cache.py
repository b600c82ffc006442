"""BuildKit's caches on the real engines: cache mounts, and the rule's previous image as the layer cache
of a build on another engine (its inline cache, pulled from the registry).

Builds run in this process (``pipeline.run_build``), as the worker's task runs them. The "other host"
is a second Docker Engine on this machine (tests/second_engine.py) that holds no image at all: a
worker whose ``DOCKER_HOST`` points at it still finds every step in the cache.
"""

from __future__ import annotations

import base64
import json
import stat
import uuid


from sqlalchemy import update

from builder.builds.run import pipeline
from builder.builds.image.buildkit_auth import private_docker_config, registry_logins
from builder.db.models import Build
from builder.registries.api import resolve_digest
from builder.registries.credentials import RegistryAccess
from builder.settings import Settings
from tests.build_engines import step_output
from tests.builder.builds.run.test_build_limits import queued_build, run, stored
from tests.builder.registries.test_registry_push_credentials import PASSWORD, USER, auth_registry  # noqa: F401 - a fixture
from tests.conftest import busybox_dockerfile
from tests.second_engine import empty_engine, second_engine  # noqa: F401 - fixtures

def cache_mount_step(marker: str, run_name: str) -> str:
    return (f"RUN --mount=type=cache,id={marker},target=/cache "
            f"echo {run_name} >> /cache/runs && echo runs: $(cat /cache/runs) && true\n")


def new_trigger(client, repo, name: str) -> dict:
    suffix = uuid.uuid4().hex[:8]
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/{name}-{suffix}", "clone_url": repo.url,
        "secret": "cache-webhook-secret", "image": f"acme/{name}-{suffix}"})
    assert created.status_code == 201, created.json
    return created.json


def test_a_cache_mount_keeps_what_an_earlier_build_left_in_it(app, settings, client, make_repo, registry):
    settings = settings.with_(build_engine="buildkit")
    marker = uuid.uuid4().hex
    repo = make_repo(busybox_dockerfile(marker, cache_mount_step(marker, "first-run")))
    trigger = new_trigger(client, repo, "cache-mount")
    first = queued_build(app, trigger["id"], repo.commit({"a.txt": "1"}))
    assert run(app, settings, first)[0] is pipeline.Outcome.SUCCEEDED, stored(app, first)[1][-10:]

    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, cache_mount_step(marker, "second-run"))})
    second = queued_build(app, trigger["id"], sha)
    outcome, _states, _took = run(app, settings, second)

    _build, lines = stored(app, second)
    assert outcome is pipeline.Outcome.SUCCEEDED, lines[-10:]
    assert "runs: first-run second-run" in step_output(lines), "the second build's step saw the first's file"


def queued_for(app, settings, trigger: dict, sha: str) -> int:
    """A queued build of the trigger's rule whose image is in ``settings.registry``."""
    build_id = queued_build(app, trigger["id"], sha)
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Build).where(Build.id == build_id)
                        .values(image=f"{settings.registry}/{trigger['image']}"))
        session.commit()
    return build_id


def built_elsewhere(app, settings, client, make_repo, second_engine):  # noqa: F811
    """Build a rule's commit on the machine's engine, then the same commit on the empty second engine."""
    repo = make_repo(busybox_dockerfile(uuid.uuid4().hex, "RUN echo more > /more.txt\n"))
    trigger = new_trigger(client, repo, "cache-from")
    sha = repo.commit({"a.txt": "1"})
    first = queued_for(app, settings, trigger, sha)
    assert run(app, settings, first)[0] is pipeline.Outcome.SUCCEEDED, stored(app, first)[1][-10:]
    assert second_engine.images() == [], "the other engine holds no image"

    second = queued_for(app, settings, trigger, sha)
    outcome, _states, _took = run(app, settings.with_(docker_host=second_engine.url), second)
    build, lines = stored(app, second)
    assert outcome is pipeline.Outcome.SUCCEEDED, lines[-15:]
    return stored(app, first)[0], build, lines


def test_a_build_on_an_engine_that_holds_no_image_finds_every_step_in_the_previous_images_cache(
        app, settings, client, make_repo, registry, empty_engine):  # noqa: F811
    settings = settings.with_(build_engine="buildkit")

    first, second, lines = built_elsewhere(app, settings, client, make_repo, empty_engine)

    assert f"Using {first.image}@{first.digest} (build {first.id}) as the layer cache" in "\n".join(lines)
    assert "Layer cache: 4 of 4 steps from cache" in lines, "\n".join(lines)
    assert registry.digest(second.image.split("/", 1)[1], "main") == second.digest


def test_the_cache_is_pulled_with_the_registrys_credentials_which_are_left_nowhere(
        app, settings, client, make_repo, auth_registry, empty_engine, tmp_path):  # noqa: F811
    work = tmp_path / "work"
    settings = settings.with_(build_engine="buildkit", registry=auth_registry.host, registry_username=USER,
                              registry_password=PASSWORD, work_dir=work)

    _first, second, lines = built_elsewhere(app, settings, client, make_repo, empty_engine)

    assert "Layer cache: 4 of 4 steps from cache" in lines, "\n".join(lines)
    path = second.image.split("/", 1)[1]
    assert second.digest and resolve_digest(RegistryAccess(settings), auth_registry.host, path, "main") == second.digest
    assert not any(PASSWORD in line for line in lines)
    assert list(work.iterdir()) == [], "the private DOCKER_CONFIG went with the build's work directory"


def test_the_clis_private_config_holds_only_the_images_registry_in_a_0700_directory(tmp_path):
    settings = Settings(database_url="sqlite://", secret_key="k", registry="127.0.0.1:5999",
                        registry_username=USER, registry_password=PASSWORD)
    registries = RegistryAccess(settings)

    assert private_docker_config(tmp_path, registry_logins(registries, "127.0.0.1:6000/acme/x")) is None
    config = private_docker_config(tmp_path, registry_logins(registries, "127.0.0.1:5999/acme/x"))

    assert config is not None and stat.S_IMODE(config.stat().st_mode) == 0o700
    assert stat.S_IMODE((config / "config.json").stat().st_mode) == 0o600
    auths = json.loads((config / "config.json").read_text())["auths"]
    assert auths == {"127.0.0.1:5999": {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}
