"""A rule's secret build args reach the build's steps on the real Engine, and its log shows them as ****.

Run in this process (``pipeline.run_build``), as the worker's task does. The step checks the value by
its SHA-256, so the value is in neither the repository nor the Dockerfile: only the stored rule has it.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import text

from builder import pipeline
from tests.builder.test_build_limits import queued_build, run, stored
from tests.conftest import busybox_dockerfile


def test_a_step_sees_the_secret_build_arg_and_the_log_masks_it(app, settings, client, make_repo, registry):
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
    assert "token=****" in lines, "the step saw a value, masked in the log"
    assert "matched" in lines, "the step saw the stored value"
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
