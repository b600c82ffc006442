"""Every way a build starts announces it as queued: a subscription to ``build.queued`` hears of a build
started by a push, a run (API, trigger page, ``buildhook run``), a rebuild or the trigger's schedule.

The real web app, worker (which sends the outbound webhooks) and git repository; the subscriber is a
local HTTP receiver.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.conftest import busybox_dockerfile, finished_build, wait_for
from tests.buildhook.test_cli_run import buildhook
from tests.webhooks.test_page_forms import signed_in_browser
from tests.workers.test_pipeline_e2e import SECRET, push
from tests.workers.test_schedules_e2e import make_due


def start_by_push(ctx) -> list[int]:
    return push(ctx.client, ctx.trigger, "refs/heads/main", ctx.sha).json["builds"]


def start_by_api_run(ctx) -> list[int]:
    response = ctx.client.post(f"/api/triggers/{ctx.trigger['id']}/runs", json={"branch": "main"})
    assert response.status_code == 201, response.json
    return [build["id"] for build in response.json["builds"]]


def start_by_page_run(ctx) -> list[int]:
    browser, csrf = signed_in_browser(ctx.app)
    done = browser.post(f"/triggers/{ctx.trigger['id']}/runs", data={"csrf_token": csrf, "kind": "branch",
                                                                     "ref": "main"})
    assert done.status_code == 303, done.text
    return [int(done.headers["Location"].rsplit("/", 1)[1])]


def start_by_cli_run(ctx) -> list[int]:
    result = buildhook(["run", str(ctx.trigger["id"]), "--branch", "main", "--json"],
                       {**os.environ, **ctx.service_env}, ctx.tmp_path)
    assert result.returncode == 0, result.stderr
    return [build["id"] for build in json.loads(result.stdout)["builds"]]


def start_by_rebuild(ctx) -> list[int]:
    [first] = start_by_push(ctx)
    finished_build(ctx.client, first)
    ctx.announced_before = announced(ctx)  # the push's own announcement is not the rebuild's
    response = ctx.client.post(f"/api/builds/{first}/rebuild")
    assert response.status_code == 201, response.json
    return [response.json["build"]["id"]]


def start_by_schedule(ctx) -> list[int]:
    assert ctx.client.patch(f"/api/triggers/{ctx.trigger['id']}", json={"schedule": "0 0 1 1 *"}).status_code == 200
    make_due(ctx.app, ctx.trigger["id"])
    return wait_for(lambda: [b["id"] for b in ctx.client.get(f"/api/builds?trigger={ctx.trigger['id']}")
                             .json["builds"] if b["origin"] == "schedule"], 30, "the scheduled build")


def announced(ctx) -> list[int]:
    """The build ids of the ``build.queued`` events the subscriber received."""
    return [json.loads(post.body)["data"]["build"] for post in ctx.receiver.posts(ctx.path)
            if post.headers.get("X-Buildhook-Event") == "build.queued"]


class Context:
    def __init__(self, **values) -> None:
        self.__dict__.update(values)
        self.announced_before: list[int] = []


@pytest.mark.parametrize("start", [start_by_push, start_by_api_run, start_by_page_run, start_by_cli_run,
                                   start_by_rebuild, start_by_schedule], ids=lambda f: f.__name__[9:])
def test_a_started_build_is_announced_as_queued_to_its_subscribers(start, app, client, worker, registry,
                                                                   receiver, make_repo, service_env, tmp_path):
    repo = make_repo()
    sha = repo.commit({"Dockerfile": busybox_dockerfile(f"queued {uuid.uuid4()}")}, "announce me")
    name = f"acme/queued-{uuid.uuid4().hex[:8]}"
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET, "image": name,
        "default_branch": "main"}).json
    path = f"/queued-{trigger['id']}"
    subscription = client.post("/api/subscriptions", json={"url": f"{receiver.url}{path}", "events": ["build.queued"],
                                                           "trigger": trigger["id"]})
    assert subscription.status_code == 201, subscription.json
    ctx = Context(app=app, client=client, trigger=trigger, sha=sha, receiver=receiver, path=path,
                  service_env=service_env, tmp_path=tmp_path)

    build_ids = start(ctx)

    assert build_ids, "a build was started"
    wait_for(lambda: sorted(set(announced(ctx)) - set(ctx.announced_before)) == sorted(build_ids), 30,
             f"build.queued for {build_ids}")
    for build_id in build_ids:
        assert finished_build(client, build_id)["state"] == "succeeded"
