"""Retention on the real worker and registry: a rule's "retention": {"keep": N} deletes older per-commit tags
(and manifests no tag points at), records each deletion, and a registry that refuses deletes is recorded once."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from builder.db.models import Build, BuildLogLine, Delivery, RetentionDeletion, TriggerRule, utcnow
from builder.db.pruning import prune_old
from builder.registries.retention import prune_rule
from builder.settings import Settings
from buildhook.redis_server import free_port
from tests.conftest import finished_build, wait_for
from tests.workers.test_pipeline_e2e import SECRET, push


def records(app, rule_id: int) -> list[tuple[str, str | None, str]]:
    with app.extensions["buildhook"].sessions() as session:
        return [(r.kind, r.tag, r.outcome) for r in session.scalars(
            select(RetentionDeletion).where(RetentionDeletion.rule_id == rule_id).order_by(RetentionDeletion.id))]


def test_older_per_commit_tags_are_deleted_from_the_registry_and_recorded(client, app, worker, registry, make_repo):
    repo = make_repo()
    name = f"acme/keep-{uuid.uuid4().hex[:8]}"
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET, "image": name,
        "rules": [{"source": "branch", "tags": ["{branch}", "{short_sha}"], "retention": {"keep": 2}}]})
    assert trigger.status_code == 201, trigger.json
    trigger = trigger.json
    assert trigger["rules"][0]["retention"] == {"keep": 2}
    shas, builds = [], []
    for n in range(3):
        shas.append(repo.commit({"README.md": f"version {n}\n"}, f"version {n}"))
        builds.append(finished_build(client, push(client, trigger, "refs/heads/main", shas[-1]).json["builds"][0]))
        assert builds[-1]["state"] == "succeeded"

    wait_for(lambda: registry.tags(name) == sorted(["main", shas[1][:7], shas[2][:7]]), 30,
             "the oldest per-commit tag to be deleted")
    rule_id = builds[0]["rule"]
    # The worker records the deletions in the transaction it commits after the registry answered.
    wait_for(lambda: records(app, rule_id), 10, "the deletions to be recorded")
    assert sorted(records(app, rule_id)) == [("manifest", None, "deleted"), ("tag", shas[0][:7], "deleted")]
    with app.extensions["buildhook"].sessions() as session:
        tag_row = session.scalar(select(RetentionDeletion).where(RetentionDeletion.rule_id == rule_id,
                                                                 RetentionDeletion.kind == "tag"))
        assert tag_row.build_id == builds[0]["id"] and tag_row.digest == builds[0]["digest"]
        assert tag_row.repository == builds[0]["image"]
    assert registry.digest(name, "main") == builds[2]["digest"], "tags of kept builds are untouched"
    gone = client.get(f"/builds/{builds[0]['id']}").text
    assert "Removed by retention" in gone and f'<code class="tag">{shas[0][:7]}</code>' in gone
    assert "no longer pullable" in gone and f"docker pull {builds[0]['image']}@" not in gone
    kept = client.get(f"/builds/{builds[2]['id']}").text
    assert "Removed by retention" not in kept and f"docker pull {builds[2]['image']}@{builds[2]['digest']}" in kept


@pytest.fixture
def refusing_registry(tmp_path):
    """A registry with deletes disabled (the distribution registry's default)."""
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([shutil.which("docker-registry"), "serve", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return True
        except OSError:
            return False

    wait_for(up, 15, "the refusing registry")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_a_registry_that_refuses_deletes_is_recorded_once_and_not_asked_again(app, client, settings, docker_client,
                                                                             refusing_registry, tmp_path, make_repo):
    image = f"{refusing_registry}/acme/refuse"
    context = tmp_path / "ctx"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    for tag in ("aaaaaaa", "bbbbbbb"):
        (context / "Dockerfile").write_text(f"FROM scratch\nCOPY busybox /bin/busybox\nLABEL v={tag}\n")
        docker_client.images.build(path=str(context), tag=f"{image}:{tag}")
        docker_client.images.push(image, tag=tag)
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/refuse-{uuid.uuid4().hex[:6]}", "clone_url": make_repo().url,
        "secret": SECRET, "image": image,
        "rules": [{"source": "branch", "tags": ["{short_sha}"], "retention": {"keep": 1}}]}).json
    sessions = app.extensions["buildhook"].sessions
    with sessions() as session:
        rule = session.scalar(select(TriggerRule).where(TriggerRule.trigger_id == trigger["id"]))
        for n, sha in enumerate(("a" * 40, "b" * 40)):
            session.add(Build(trigger_id=trigger["id"], rule_id=rule.id, provider="github", repository="acme/x",
                              clone_url="file:///x", ref="refs/heads/main", ref_type="branch", ref_name="main",
                              commit=sha, image=image, tags=[sha[:7]], dockerfile="Dockerfile", context=".",
                              state="succeeded", digest=f"sha256:{n}", created_at=utcnow()))
        session.commit()
        rule_id = rule.id
    untrusted = prune_rule(sessions, settings, rule_id)
    assert [(r.kind, r.tag, r.outcome) for r in untrusted] == [("tag", "aaaaaaa", "refused")]
    assert "is not trusted" in untrusted[0].detail
    assert prune_rule(sessions, settings, rule_id) == [], "not asked again while it is not trusted"
    trusting = settings.with_(trusted_registries=(refusing_registry,))
    first = prune_rule(sessions, trusting, rule_id)  # the operator trusts it now: the registry is asked
    assert [(r.kind, r.tag, r.outcome) for r in first] == [("tag", "aaaaaaa", "refused")]
    assert "405" in first[0].detail
    assert prune_rule(sessions, trusting, rule_id) == [], "the registry's own refusal is not retried"
    assert prune_rule(sessions, settings, rule_id) == [], "nothing new, even where the registry is not trusted"


def test_logs_and_deliveries_older_than_keep_days_are_pruned_and_recorded(app):
    sessions = app.extensions["buildhook"].sessions
    old = utcnow() - timedelta(days=40)
    with sessions() as session:
        delivery = Delivery(provider="github", outcome="ignored", status_code=202, received_at=old)
        session.add(delivery)
        session.flush()
        build = Build(provider="github", repository="acme/old", clone_url="file:///x", ref="refs/heads/main",
                      ref_type="branch", ref_name="main", commit="c" * 40, image="x/y", tags=["t"],
                      dockerfile="Dockerfile", context=".", state="succeeded", created_at=old, finished_at=old,
                      delivery_id=delivery.id)
        session.add(build)
        session.flush()
        session.add_all([BuildLogLine(build_id=build.id, seq=n, text=f"line {n}") for n in (1, 2, 3)])
        session.commit()
        build_id, delivery_id = build.id, delivery.id
    assert prune_old(sessions, 0) == []
    longest = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_KEEP_DAYS": "36500"}).keep_days
    assert prune_old(sessions, longest) == [], "a century ago is a date; nothing is that old"
    made = prune_old(sessions, 30)
    assert {r.kind for r in made} >= {"build_logs", "deliveries"}
    assert next(r for r in made if r.kind == "build_logs").count >= 3
    with sessions() as session:
        assert session.get(Build, build_id).delivery_id is None, "the build stays, without its old delivery"
        assert session.get(Delivery, delivery_id) is None
        assert session.scalars(select(BuildLogLine).where(BuildLogLine.build_id == build_id)).all() == []
        assert session.scalar(select(RetentionDeletion).where(RetentionDeletion.kind == "deliveries")).count >= 1


def test_a_backlog_larger_than_a_batch_is_pruned_in_one_pass(app):
    sessions = app.extensions["buildhook"].sessions
    old = utcnow() - timedelta(days=40)
    with sessions() as session:
        builds = [Build(provider="github", repository="acme/backlog", clone_url="file:///x", ref="refs/heads/main",
                        ref_type="branch", ref_name="main", commit=f"{n:040x}", image="x/y", tags=["t"],
                        dockerfile="Dockerfile", context=".", state="failed", created_at=old, finished_at=old)
                  for n in range(5)]
        session.add_all(builds)
        session.flush()
        session.add_all([BuildLogLine(build_id=b.id, seq=n, text=f"line {n}") for b in builds for n in (1, 2, 3)])
        session.commit()
        ids = [b.id for b in builds]

    made = [r for r in prune_old(sessions, 30, batch=4) if r.kind == "build_logs"]

    assert len(made) >= 4 and sum(r.count for r in made) >= 15, "15 lines, 4 at a time, in one pass"
    with sessions() as session:
        assert session.scalars(select(BuildLogLine).where(BuildLogLine.build_id.in_(ids))).all() == []


@pytest.fixture
def three_pushed_builds(app, client, settings, registry, docker_client, tmp_path, make_repo):
    """A rule keeping 1 per-commit tag, and three succeeded builds of it whose images are in the registry."""
    name = f"acme/lease-{uuid.uuid4().hex[:8]}"
    image = f"{registry.host}/{name}"
    context = tmp_path / "ctx"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": make_repo().url, "secret": SECRET, "image": name,
        "rules": [{"source": "branch", "tags": ["{short_sha}"], "retention": {"keep": 1}}]}).json
    sessions = app.extensions["buildhook"].sessions
    with sessions() as session:
        rule = session.scalar(select(TriggerRule).where(TriggerRule.trigger_id == trigger["id"]))
        for letter in "abc":
            tag = letter * 7
            (context / "Dockerfile").write_text(f"FROM scratch\nCOPY busybox /bin/busybox\nLABEL v={tag}\n")
            docker_client.images.build(path=str(context), tag=f"{image}:{tag}")
            docker_client.images.push(image, tag=tag)
            session.add(Build(trigger_id=trigger["id"], rule_id=rule.id, provider="github", repository=name,
                              clone_url="file:///x", ref="refs/heads/main", ref_type="branch", ref_name="main",
                              commit=letter * 40, image=image, tags=[tag], dockerfile="Dockerfile", context=".",
                              state="succeeded", digest=registry.digest(name, tag), created_at=utcnow()))
        session.commit()
        return sessions, name, rule.id


def test_two_workers_pruning_a_rule_at_once_delete_and_record_each_tag_once(app, settings, registry,
                                                                            three_pushed_builds):
    sessions, name, rule_id = three_pushed_builds
    start = threading.Barrier(2)

    def prune() -> list:
        start.wait()
        return prune_rule(sessions, settings, rule_id)

    with ThreadPoolExecutor(2) as pool:
        passes = [future.result() for future in [pool.submit(prune), pool.submit(prune)]]

    assert registry.tags(name) == ["ccccccc"]
    assert sorted(records(app, rule_id), key=str) == sorted(
        [("manifest", None, "deleted"), ("manifest", None, "deleted"),
         ("tag", "aaaaaaa", "deleted"), ("tag", "bbbbbbb", "deleted")], key=str), "each deletion recorded once"
    assert sorted(len(recorded) for recorded in passes) == [0, 4], "the second found nothing left to do"


def test_a_rule_another_worker_is_pruning_is_left_to_it_and_a_dead_workers_lease_runs_out(
        app, settings, registry, three_pushed_builds):
    sessions, name, rule_id = three_pushed_builds

    def lease(until) -> None:
        with sessions() as session:
            session.get(TriggerRule, rule_id).retention_lease_until = until
            session.commit()

    lease(utcnow() + timedelta(minutes=5))
    assert prune_rule(sessions, settings, rule_id, wait=0.5) == []
    assert registry.tags(name) == ["aaaaaaa", "bbbbbbb", "ccccccc"], "nothing deleted beside the holder"
    lease(utcnow() - timedelta(seconds=1))  # its worker died mid-pass: the lease ran out
    assert len(prune_rule(sessions, settings, rule_id, wait=0)) == 4
    assert registry.tags(name) == ["ccccccc"]
    with sessions() as session:
        assert session.get(TriggerRule, rule_id).retention_lease_until is None, "released after the pass"


def test_a_rule_without_retention_is_never_leased_or_written(app, settings, registry, three_pushed_builds):
    sessions, name, rule_id = three_pushed_builds
    expired = utcnow() - timedelta(minutes=1)  # free to take: a pass over the rule would take and release it
    with sessions() as session:
        rule = session.get(TriggerRule, rule_id)
        rule.retention_keep, rule.retention_lease_until = None, expired
        session.commit()

    assert prune_rule(sessions, settings, rule_id) == []

    assert registry.tags(name) == ["aaaaaaa", "bbbbbbb", "ccccccc"], "every tag kept"
    with sessions() as session:
        assert session.get(TriggerRule, rule_id).retention_lease_until == expired, "the rule's row was not written"


def test_a_tag_whose_manifest_another_tag_holds_is_kept_then_deleted_once_that_tag_moves(
        app, client, settings, registry, docker_client, three_pushed_builds):
    sessions, name, rule_id = three_pushed_builds
    image = f"{registry.host}/{name}"

    def pin(tag: str) -> None:  # a tag outside the rule (as a branch tag would be) points at tag's manifest
        docker_client.images.get(f"{image}:{tag}").tag(image, "pinned")
        docker_client.images.push(image, tag="pinned")

    pin("aaaaaaa")
    prune_rule(sessions, settings, rule_id)
    prune_rule(sessions, settings, rule_id)  # still in the way: not recorded again
    assert registry.tags(name) == ["aaaaaaa", "ccccccc", "pinned"]
    shown = client.get("/api/retention-deletions?outcome=kept&limit=500").json["retention_deletions"]
    [kept] = [row for row in shown if row["rule"] == rule_id]
    assert (kept["kind"], kept["tag"], kept["repository"]) == ("tag", "aaaaaaa", f"{registry.host}/{name}")
    assert kept["detail"].endswith("and pinned still points at its manifest: tried again on a later pass")

    pin("ccccccc")  # the other tag moves on
    prune_rule(sessions, settings, rule_id)

    assert registry.tags(name) == ["ccccccc", "pinned"]
    assert ("tag", "aaaaaaa", "deleted") in records(app, rule_id)


def test_a_rule_that_pushes_nothing_deletes_nothing_another_rule_pushed(app, settings, registry, three_pushed_builds):
    """A "push": false rule's builds render the same per-commit tags as a pushing rule's, but never pushed them."""
    sessions, name, rule_id = three_pushed_builds
    with sessions() as session:
        for build in session.scalars(select(Build).where(Build.rule_id == rule_id)):
            build.push, build.digest = False, None
        session.commit()

    assert prune_rule(sessions, settings, rule_id) == []
    assert registry.tags(name) == ["aaaaaaa", "bbbbbbb", "ccccccc"]


def test_expired_tags_of_one_manifest_go_with_it_and_every_build_sharing_it_says_so(
        app, client, settings, registry, docker_client, three_pushed_builds):
    """Two builds whose images are the same (an unchanged Dockerfile at two commits): one manifest, two tags."""
    sessions, name, rule_id = three_pushed_builds
    image = f"{registry.host}/{name}"
    docker_client.images.get(f"{image}:aaaaaaa").tag(image, "bbbbbbb")
    docker_client.images.push(image, tag="bbbbbbb")
    with sessions() as session:
        builds = {b.tags[0]: b for b in session.scalars(select(Build).where(Build.rule_id == rule_id))}
        builds["bbbbbbb"].digest = builds["aaaaaaa"].digest
        session.commit()
        ids = {tag: build.id for tag, build in builds.items()}

    prune_rule(sessions, settings, rule_id)

    assert registry.tags(name) == ["ccccccc"]
    assert sorted(records(app, rule_id), key=str) == sorted(
        [("manifest", None, "deleted"), ("tag", "aaaaaaa", "deleted"), ("tag", "bbbbbbb", "deleted")], key=str)
    assert prune_rule(sessions, settings, rule_id) == [], "nothing left: no tag recorded missing later"
    for tag in ("aaaaaaa", "bbbbbbb"):
        page = client.get(f"/builds/{ids[tag]}").text
        assert "no longer pullable" in page and f"docker pull {image}@" not in page, tag


def test_a_rebuild_keeps_its_originals_timestamp_tag_and_retention_deletes_it_in_turn(
        app, settings, registry, docker_client, tmp_path, client, make_repo):
    """A rebuild pushes the tags its original rendered, ``{timestamp}`` included: that tag expires like any."""
    name = f"acme/stamp-{uuid.uuid4().hex[:8]}"
    image = f"{registry.host}/{name}"
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": make_repo().url, "secret": SECRET, "image": name,
        "rules": [{"source": "branch", "tags": ["{timestamp}"], "retention": {"keep": 1}}]}).json
    context = tmp_path / "ctx"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    first, newest = utcnow() - timedelta(hours=2), utcnow() - timedelta(minutes=5)
    stamps = [first.strftime("%Y%m%d%H%M%S"), newest.strftime("%Y%m%d%H%M%S")]
    for stamp in stamps:
        (context / "Dockerfile").write_text(f"FROM scratch\nCOPY busybox /bin/busybox\nLABEL v={stamp}\n")
        docker_client.images.build(path=str(context), tag=f"{image}:{stamp}")
        docker_client.images.push(image, tag=stamp)
    sessions = app.extensions["buildhook"].sessions
    with sessions() as session:
        rule = session.scalar(select(TriggerRule).where(TriggerRule.trigger_id == trigger["id"]))
        row = dict(trigger_id=trigger["id"], rule_id=rule.id, provider="github", repository=name,
                   clone_url="file:///x", ref="refs/heads/main", ref_type="branch", ref_name="main", image=image,
                   dockerfile="Dockerfile", context=".")
        original = Build(**row, commit="a" * 40, tags=[stamps[0]], state="failed", created_at=first)
        session.add(original)
        session.flush()
        session.add_all([  # the failed build's rebuild pushed its tag an hour later; then a newer commit
            Build(**row, commit="a" * 40, tags=[stamps[0]], state="succeeded", origin="rebuild",
                  rebuild_of=original.id, digest=registry.digest(name, stamps[0]), created_at=first + timedelta(hours=1)),
            Build(**row, commit="b" * 40, tags=[stamps[1]], state="succeeded",
                  digest=registry.digest(name, stamps[1]), created_at=newest)])
        session.commit()
        rule_id = rule.id

    prune_rule(sessions, settings, rule_id)

    assert registry.tags(name) == [stamps[1]]
    assert ("tag", stamps[0], "deleted") in records(app, rule_id)
