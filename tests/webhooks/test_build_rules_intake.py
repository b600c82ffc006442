"""Build rules at intake: which pushes build, with which tags; skip markers, path filters, superseding."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from builder.db.models import Build
from tests.payloads import github_headers, github_push
from webhooks.hooks import dispatcher


def trigger_with(client, rules=None, **extra):
    name = f"acme/rules-{uuid.uuid4().hex[:8]}"
    body = {"provider": "github", "repository": name, "clone_url": "file:///x.git", "secret": "s",
            "image": name, **extra}
    if rules is not None:
        body["rules"] = rules
    response = client.post("/api/triggers", json=body)
    assert response.status_code == 201, response.json
    return response.json


def push(client, trigger, ref, sha=None, message="Update README", files=None, fixture="push_branch", before=None):
    sha = sha or uuid.uuid4().hex + "abcdef01"
    payload = github_push(fixture, repository=trigger["repository"], ref=ref, sha=sha, clone_url="file:///x.git")
    if before:
        payload["before"] = before
    if payload.get("head_commit"):
        payload["head_commit"]["message"] = message
    if files is not None:
        payload["created"] = False
        payload["commits"] = [{"id": sha, "message": message, "added": files, "modified": [], "removed": []}]
    body = json.dumps(payload).encode()
    return client.post("/hooks/github", data=body, headers=github_headers(body, "s"))


def builds(app, trigger):
    with app.extensions["buildhook"].sessions() as session:
        return list(session.scalars(select(Build).where(Build.trigger_id == trigger["id"]).order_by(Build.id)))


def test_each_matching_rule_builds_once_in_order(app, client):
    trigger = trigger_with(client, rules=[
        {"source": "branch", "match": "exact", "pattern": "main", "tags": ["{branch}"], "dockerfile": "Dockerfile"},
        {"source": "branch", "pattern": "*", "tags": ["dev-{short_sha}"], "dockerfile": "Dockerfile.dev",
         "build_args": {"MODE": "dev"}, "target": "debug"},
    ])
    response = push(client, trigger, "refs/heads/main", sha="1234567" + "0" * 33)
    first, second = builds(app, trigger)
    assert response.json["builds"] == [first.id, second.id]
    assert (first.tags, first.dockerfile) == (["main"], "Dockerfile")
    assert (second.tags, second.dockerfile, second.build_args, second.target) == (
        ["dev-1234567"], "Dockerfile.dev", {"MODE": "dev"}, "debug")


def test_a_push_no_rule_matches_is_ignored_with_the_reason(app, client):
    trigger = trigger_with(client, rules=[{"source": "branch", "match": "regex", "pattern": "release-.*",
                                           "tags": ["{branch}"]}])
    response = push(client, trigger, "refs/heads/main")
    assert response.status_code == 202 and response.json["outcome"] == "ignored"
    assert "no rule of trigger" in response.json["reason"]
    assert builds(app, trigger) == []


def test_tag_push_builds_semver_tags_and_latest_only_for_the_highest_release(app, client):
    trigger = trigger_with(client, rules=[{"source": "tag", "match": "regex", "pattern": r"v\d+\.\d+\.\d+.*",
                                           "tags": ["{version}", "{major}.{minor}", "latest"]}])
    for tag in ("v1.4.0", "v1.3.9", "v2.0.0-rc.1", "v2.0.0"):
        push(client, trigger, f"refs/tags/{tag}", fixture="push_tag")
    assert [b.tags for b in builds(app, trigger)] == [
        ["1.4.0", "1.4", "latest"],
        ["1.3.9", "1.3"],
        ["2.0.0-rc.1", "2.0"],
        ["2.0.0", "2.0", "latest"],
    ]


@pytest.mark.parametrize("message", ["Fix typo [skip ci]", "[CI SKIP] docs", "wip [skip build]",
                                     "[build skip]"])
def test_skip_markers_in_the_head_commit_message_build_nothing(app, client, message):
    trigger = trigger_with(client)
    response = push(client, trigger, "refs/heads/main", message=message)
    assert response.json["outcome"] == "ignored"
    assert "the commit message says" in response.json["reason"]
    assert builds(app, trigger) == []


def test_path_filters_use_the_files_the_payload_lists(app, client):
    trigger = trigger_with(client, rules=[{"source": "branch", "tags": ["{branch}"],
                                           "included_files": ["src/**"], "ignored_files": ["**/*.md"]}])
    docs = push(client, trigger, "refs/heads/main", files=["src/README.md", "docs/x.txt"])
    assert docs.json["outcome"] == "ignored"
    # src/README.md is ignored, docs/x.txt is not included
    assert "no changed file matches the included files" in docs.json["reason"]
    code = push(client, trigger, "refs/heads/main", files=["src/app.py"])
    assert code.json["outcome"] == "accepted"
    [build] = builds(app, trigger)
    assert (build.included_files, build.ignored_files) == ([], []), "already checked: nothing left for the worker"


def test_path_filters_are_left_to_the_worker_when_the_payload_cannot_tell(app, client):
    trigger = trigger_with(client, rules=[{"source": "branch", "tags": ["{branch}"],
                                           "included_files": ["src/**"]}])
    response = push(client, trigger, "refs/heads/main", fixture="push_branch_created")  # new branch: no list
    assert response.json["outcome"] == "accepted"
    [build] = builds(app, trigger)
    assert build.included_files == ["src/**"]


def test_a_newer_push_supersedes_queued_builds_of_the_same_branch_and_rule(app, client):
    trigger = trigger_with(client)
    older = uuid.uuid4().hex + "abcdef01"
    push(client, trigger, "refs/heads/main", sha=older)
    push(client, trigger, "refs/heads/feature")
    push(client, trigger, "refs/heads/main", before=older)  # the payload says it was pushed on top of it
    first, other_branch, newest = builds(app, trigger)
    assert (first.state, newest.state, other_branch.state) == ("superseded", "queued", "queued")
    assert first.reason == f"superseded by a newer push of {newest.commit[:7]}"
    assert first.finished_at is not None


def test_an_older_commit_arriving_after_a_newer_one_is_superseded_and_supersedes_nothing(app, client):
    trigger = trigger_with(client)
    older, newer = uuid.uuid4().hex + "abcdef01", uuid.uuid4().hex + "abcdef02"
    push(client, trigger, "refs/heads/main", sha=newer, before=older)
    late = push(client, trigger, "refs/heads/main", sha=older)  # a redelivery of the older push
    assert late.json["outcome"] == "accepted"
    newest, redelivered = builds(app, trigger)
    assert (newest.state, redelivered.state) == ("queued", "superseded")
    assert redelivered.reason == (f"superseded: commit {older[:7]} is older than {newer[:7]} (build #{newest.id}), "
                                  "whose webhook came first")
    assert "is older than" in late.json["reason"]


def test_pushes_the_payloads_cannot_order_are_left_for_the_worker_to_order(app, client):
    trigger = trigger_with(client)
    push(client, trigger, "refs/heads/main")
    push(client, trigger, "refs/heads/main")  # unrelated commits, no before -> commit chain between them
    assert [b.state for b in builds(app, trigger)] == ["queued", "queued"]


def test_a_push_supersedes_every_queued_build_down_its_chain_and_nothing_off_it(app, client):
    """Queued builds linked by their payloads (left queued while superseding was off) are followed
    link by link: a push on top of the last supersedes them all; an unrelated push stays queued."""
    trigger = trigger_with(client, supersede=False)
    first, second = uuid.uuid4().hex + "abcdef01", uuid.uuid4().hex + "abcdef02"
    push(client, trigger, "refs/heads/main", sha=first)
    push(client, trigger, "refs/heads/main")  # unrelated: no link to the others
    push(client, trigger, "refs/heads/main", sha=second, before=first)
    dispatcher(app, app.extensions["buildhook"]).flush()  # sent now, while their trigger did not supersede
    assert client.patch(f"/api/triggers/{trigger['id']}", json={"supersede": True}).status_code == 200
    push(client, trigger, "refs/heads/main", before=second)
    oldest, unrelated, middle, newest = builds(app, trigger)
    assert (oldest.state, middle.state, unrelated.state, newest.state) == \
        ("superseded", "superseded", "queued", "queued")
    assert oldest.reason == middle.reason == f"superseded by a newer push of {newest.commit[:7]}"


def test_superseding_can_be_turned_off_per_trigger(app, client):
    trigger = trigger_with(client, supersede=False)
    push(client, trigger, "refs/heads/main")
    push(client, trigger, "refs/heads/main")
    assert [b.state for b in builds(app, trigger)] == ["queued", "queued"]


@pytest.mark.parametrize("rules, message", [
    ([{"source": "tag", "tags": ["{branch}"]}], "cannot be rendered for tag pushes"),
    ([{"source": "branch", "match": "regex", "pattern": "(", "tags": ["x"]}], "not a valid regular expression"),
    ([{"source": "branch", "tags": [r"{\1}"]}], "capture group"),
    ([{"source": "branch", "dockerfile": "../../etc/passwd"}], "inside the repository"),
    ("not a list", "rules must be a list"),
])
def test_a_rule_that_cannot_work_is_refused_when_the_trigger_is_created(client, rules, message):
    response = client.post("/api/triggers", json={
        "provider": "github", "repository": "acme/bad", "clone_url": "file:///x", "secret": "s",
        "image": "acme/bad", "rules": rules})
    assert response.status_code == 400
    assert message in response.json["error"]


@pytest.mark.parametrize("cancel_running", [True, False])
def test_a_push_on_top_of_a_running_build_asks_it_to_stop_only_when_the_rule_says_so(app, client, cancel_running):
    trigger = trigger_with(client, rules=[{"source": "branch", "tags": ["{branch}"], "cancel_running": cancel_running}])
    first = uuid.uuid4().hex + "abcdef01"
    push(client, trigger, "refs/heads/main", sha=first)
    [running] = builds(app, trigger)
    with app.extensions["buildhook"].sessions() as session:  # a worker took it
        session.get(Build, running.id).state = "building"
        session.commit()
    response = push(client, trigger, "refs/heads/main", before=first)
    assert response.status_code == 202, response.json
    running, newest = builds(app, trigger)
    assert newest.state == "queued"
    if cancel_running:
        assert running.cancel_requested_at is not None
        assert running.reason == f"cancelled: superseded by a newer push of {newest.commit[:7]}"
    else:
        assert (running.cancel_requested_at, running.reason) == (None, None)
