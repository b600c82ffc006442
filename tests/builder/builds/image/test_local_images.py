"""What a pushed build leaves on the worker's engine (``builder.builds.image.local_images``).

Builds run in this process through ``pipeline.run_build`` on the real Engine and registry, with
the default branch tags (``{branch}``, ``{short_sha}``, ``latest``): the registry gets every tag,
the engine keeps one image of the repository, under the branch's tag.
"""

from __future__ import annotations

import uuid

import docker

from builder.builds.image.local_images import keep_first_tag, remove_untagged
from builder.builds.run import pipeline
from builder.db.models import Build
from tests.build_engines import build_engine  # noqa: F401 - the engine fixture
from tests.builder.builds.run.test_build_limits import project, queued_build, stored  # noqa: F401 - a fixture
from tests.conftest import busybox_dockerfile


def built(app, settings, trigger: dict, sha: str) -> tuple[object, list[str]]:
    """Build and push ``sha`` with the default branch tags; the stored build and its log."""
    build_id = queued_build(app, trigger["id"], sha)
    with app.extensions["buildhook"].sessions() as session:
        session.get(Build, build_id).tags = ["main", sha[:7], "latest"]
        session.commit()
    outcome = pipeline.run_build(app.extensions["buildhook"].sessions, settings, build_id, cancel_poll=0.2)
    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.SUCCEEDED, "\n".join(lines)
    return build, lines


def engine_images(docker_client, repository: str) -> dict[str, list[str]]:
    """The engine's images of ``repository`` (untagged ones included): id -> tags."""
    return {image["Id"]: sorted(image.get("RepoTags") or []) for image in docker_client.api.images(name=repository)} | {
        image["Id"]: [] for image in docker_client.api.images(filters={"dangling": True})
        if any(digest.startswith(f"{repository}@") for digest in image.get("RepoDigests") or [])}


def test_the_engine_keeps_the_last_image_under_the_branch_tag_and_the_registry_keeps_every_tag(
        app, settings, project, docker_client, registry, build_engine):
    settings = settings.with_(build_engine=build_engine.kind)
    repo, trigger = project
    first, _ = built(app, settings, trigger, repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)}, "one"))
    second, lines = built(app, settings, trigger, repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)},
                                                              "two"))

    assert registry.tags(trigger["image"]) == sorted(["main", "latest", first.commit[:7], second.commit[:7]])
    assert registry.digest(trigger["image"], "main") == second.digest
    image = second.image
    kept = docker_client.api.inspect_image(f"{image}:main")["Id"]
    assert engine_images(docker_client, image) == {kept: [f"{image}:main"]}
    assert any(line.startswith(f"Removed 1 older image(s) of {image} from the engine: ") for line in lines), lines
    assert f"Using {image}" in "\n".join(lines)  # the first image was still the second build's layer cache


def test_an_older_image_a_container_uses_stays_on_the_engine(app, settings, project, docker_client, registry):
    settings = settings.with_(build_engine="classic")
    repo, trigger = project
    first, _ = built(app, settings, trigger, repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)}, "one"))
    image = first.image
    older = docker_client.api.inspect_image(f"{image}:main")["Id"]
    container = docker_client.api.create_container(older, ["/bin/true"], network_disabled=True)
    try:
        second, lines = built(app, settings, trigger,
                              repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)}, "two"))
        newer = docker_client.api.inspect_image(f"{image}:main")["Id"]
        assert newer != older
        assert engine_images(docker_client, image) == {newer: [f"{image}:main"], older: []}
        assert not any(line.startswith("Removed ") for line in lines), lines
    finally:
        docker_client.api.remove_container(container["Id"], force=True)


def test_an_engine_gone_after_the_push_leaves_the_images_and_fails_nothing(tmp_path):
    gone = docker.DockerClient(base_url=f"unix://{tmp_path / 'gone.sock'}", version="1.41")
    lines: list[str] = []

    keep_first_tag(gone, "127.0.0.1:5000/acme/gone", ("main", "abc1234", "latest"), {"sha256:" + "0" * 64},
                   lines.append)
    remove_untagged(gone, ["sha256:" + "1" * 64])

    assert len(lines) == 1 and lines[0].startswith("Older images stay on the engine for now: "), lines
