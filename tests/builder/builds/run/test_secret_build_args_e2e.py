"""A rule's secret build args reach the build's steps on the real Engine, and its log shows them as ****.

Run in this process (``pipeline.run_build``), as the worker's task does. The step checks the value by
its SHA-256, so the value is in neither the repository nor the Dockerfile: only the stored rule has it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import uuid
from pathlib import Path

from sqlalchemy import text

from builder.builds.run import pipeline
from tests.build_engines import build_engine, step_output  # noqa: F401 - the engine fixture
from tests.builder.builds.run.test_build_limits import queued_build, run, stored
from tests.conftest import busybox_dockerfile


def test_a_step_sees_the_secret_build_arg_and_the_log_masks_it(app, settings, client, make_repo, registry,
                                                               build_engine):
    settings = settings.with_(build_engine=build_engine.kind)
    value = f"npm-secret-{uuid.uuid4().hex}"
    digest = hashlib.sha256(value.encode()).hexdigest()
    marker = f"secret-args-{uuid.uuid4().hex}"
    steps = ("ARG NPM_TOKEN\n"
             "RUN echo token=$NPM_TOKEN\n"
             f'RUN test "$(printf %s "$NPM_TOKEN" | sha256sum | cut -d" " -f1)" = "{digest}" && echo matched\n')
    repo = make_repo()
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker, steps)}, "use a secret build arg")
    suffix = uuid.uuid4().hex[:8]
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/secret-args-{suffix}", "clone_url": repo.url,
        "secret": "secret-args-webhook-secret", "image": f"acme/secret-args-{suffix}",
        "rules": [{"source": "branch", "build_args": {"CHANNEL": "stable"},
                   "secret_build_args": {"NPM_TOKEN": value}}]})
    assert created.status_code == 201, created.json
    build_id = queued_build(app, created.json["id"], sha)

    outcome, states, _took = run(app, settings, build_id)

    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.SUCCEEDED, lines[-10:]
    assert "token=****" in step_output(lines), "the step saw a value, masked in the log"
    assert "matched" in step_output(lines), "the step saw the stored value"
    assert not any(value in line for line in lines)
    assert states == [(build_id, "running"), (build_id, "succeeded")]
    assert value not in repr(build.build_args) and "NPM_TOKEN" not in build.build_args
    with app.extensions["buildhook"].sessions() as session:
        row = session.execute(text("SELECT * FROM builds WHERE id = :id"), {"id": build_id}).one()
    assert value not in repr(tuple(row))
    assert registry.tags(f"acme/secret-args-{suffix}") == build.tags


def test_secret_build_args_sealed_with_another_key_fail_the_build_with_a_clear_error(app, settings, client,
                                                                                      make_repo):
    repo = make_repo()
    sha = repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex, "ARG NPM_TOKEN\n")}, "secret arg")
    suffix = uuid.uuid4().hex[:8]
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/secret-key-{suffix}", "clone_url": repo.url,
        "secret": "s", "image": f"acme/secret-key-{suffix}",
        "rules": [{"source": "branch", "secret_build_args": {"NPM_TOKEN": "value"}}]})
    assert created.status_code == 201, created.json
    build_id = queued_build(app, created.json["id"], sha)

    outcome, _states, _took = run(app, settings.with_(secret_key="a-different-key"), build_id)

    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.FAILED, lines
    assert build.error == "the rule's secret build args cannot be decrypted: was BUILDHOOK_SECRET_KEY changed?"
    assert build.attempts == 1  # a permanent error: never retried


class ProcessListWatch:
    """Looks for ``value`` in every process's command line on this host, every 20 ms, while it runs."""

    def __init__(self, value: str) -> None:
        self.value = value.encode()
        self.seen: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "ProcessListWatch":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._done.wait(0.02):
            for entry in os.scandir("/proc"):
                try:
                    if entry.name.isdigit() and self.value in Path(entry.path, "cmdline").read_bytes():
                        self.seen.append(Path(entry.path, "cmdline").read_bytes().decode(errors="replace"))
                except OSError:
                    continue


def saved_image_files(docker_client, reference: str) -> dict[str, bytes]:
    """Every file of ``docker save``: the manifest, the image config, and every layer tarball's files."""
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(docker_client.images.get(reference).save())))
    files: dict[str, bytes] = {}
    for member in archive.getmembers():
        if not member.isfile():
            continue
        data = archive.extractfile(member).read()
        files[member.name] = data
        if member.name.endswith("layer.tar"):
            layer = tarfile.open(fileobj=io.BytesIO(data))
            for inner in layer.getmembers():
                if inner.isfile():
                    files[f"{member.name}:{inner.name}"] = layer.extractfile(inner).read()
    return files


def test_a_secret_build_arg_is_mounted_as_a_buildkit_secret_and_left_nowhere(app, settings, client, make_repo,
                                                                              registry, docker_client):
    """``RUN --mount=type=secret,id=NPM_TOKEN`` reads the value from /run/secrets/NPM_TOKEN; it is in no
    process's command line while the build runs, and in no layer, history entry, image config or log line."""
    value = f"npm-secret-{uuid.uuid4().hex}"
    digest = hashlib.sha256(value.encode()).hexdigest()
    steps = (f'RUN --mount=type=secret,id=NPM_TOKEN test "$(sha256sum < /run/secrets/NPM_TOKEN | cut -d" " -f1)" = '
             f'"{digest}" && echo mounted && cp /run/secrets/NPM_TOKEN /copied-by-mistake 2>/dev/null; sleep 1; '
             "rm -f /copied-by-mistake; ls /run/secrets > /listed\n")
    repo = make_repo()
    sha = repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex, steps)}, "mount a secret")
    suffix = uuid.uuid4().hex[:8]
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/secret-mount-{suffix}", "clone_url": repo.url,
        "secret": "secret-mount-webhook-secret", "image": f"acme/secret-mount-{suffix}",
        "rules": [{"source": "branch", "secret_build_args": {"NPM_TOKEN": value}}]})
    assert created.status_code == 201, created.json
    build_id = queued_build(app, created.json["id"], sha)

    with ProcessListWatch(value) as watch:
        outcome, _states, _took = run(app, settings.with_(build_engine="buildkit"), build_id)

    build, lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.SUCCEEDED, lines[-10:]
    assert "mounted" in step_output(lines), "the step read the value from /run/secrets/NPM_TOKEN"
    assert watch.seen == [], "the value was in a command line"
    assert not any(value in line for line in lines), "the value is in the log"
    image = docker_client.images.get(f"{build.image}:{build.tags[0]}")
    history = repr(image.history())
    assert "NPM_TOKEN" in history and value not in history, "the history names the mount, never the value"
    assert value not in repr(image.attrs)
    files = saved_image_files(docker_client, f"{build.image}:{build.tags[0]}")
    assert any(name.endswith(":listed") for name in files), "the layers were read"
    assert [name for name, data in files.items() if value.encode() in data] == []
    assert registry.tags(f"acme/secret-mount-{suffix}") == build.tags
