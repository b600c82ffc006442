"""GET /metrics in one process: who may read it, what the webhook intake counts, the series there before
any count, cancelled queued builds and the phase a build ended in."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from builder.db.models import Build
from builder.metrics import measured
from webhooks import create_app


def test_the_metrics_token_reads_metrics_and_nothing_else(settings):
    app = create_app(settings.with_(metrics_token="scrape-me-" + "x" * 20))
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-" + "x" * 20})
    assert answer.status_code == 200
    assert "buildhook_queue_depth " in answer.get_data(as_text=True)
    assert "# TYPE buildhook_builds_total counter" in answer.get_data(as_text=True)
    # the metrics token is not an API token
    assert client.get("/api/builds", headers={"Authorization": "Bearer scrape-me-" + "x" * 20}).status_code == 401


def test_an_api_token_reads_metrics_too(client):
    assert client.get("/metrics").status_code == 200


def _rejected(client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "buildhook_webhook_deliveries_total"
               and sample.labels == {"provider": "github", "outcome": "rejected"})


def test_a_rejected_webhook_is_counted(client):
    before = _rejected(client)
    answer = client.post("/hooks/github", data=b"{not json", headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": "metrics-1", "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert _rejected(client) == before + 1


# --- what a scrape shows before anything is counted, cancelled queued builds, phase durations ---------


def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of GET /metrics, as Prometheus reads it."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = client.get("/metrics")
    assert answer.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for sample in family.samples}


def sample(samples, name: str, **labels: str) -> float | None:
    """The sample's value, or None when the scrape has no such series."""
    return samples.get((name, tuple(sorted(labels.items()))))


def make_trigger(client) -> dict:
    name = f"acme/metrics-{uuid.uuid4().hex[:8]}"
    made = client.post("/api/triggers", json={"provider": "github", "repository": name, "clone_url": f"file:///{name}",
                                             "secret": "metrics-secret", "image": name})
    assert made.status_code == 201, made.json
    return made.json


def add_build(app, trigger: dict, **fields: Any) -> int:
    """A build row as the pipeline leaves it; ``dispatched_at`` is set, so the relay never sends it."""
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = dict(
        trigger_id=trigger["id"], provider="github", repository=trigger["repository"],
        clone_url=trigger["clone_url"], ref="refs/heads/main", ref_type="branch", ref_name="main",
        commit=uuid.uuid4().hex + "abcdefgh", image=trigger["image"], tags=["main"], dockerfile="Dockerfile",
        context=".", state="queued", created_at=now, dispatched_at=now)
    values.update(fields)
    with app.extensions["buildhook"].sessions() as session:
        build = Build(**values)
        session.add(build)
        session.commit()
        return build.id


def test_every_known_series_is_scraped_at_0_before_its_first_count(client):
    """rate() and increase() need a sample before the first count: the series are there from the start."""
    from builder.forges.registry import provider_names
    from builder.intake.inbound import OUTCOMES

    samples = scrape(client)
    for provider in provider_names():
        for outcome in OUTCOMES:
            assert sample(samples, "buildhook_webhook_deliveries_total", provider=provider, outcome=outcome) \
                is not None, (provider, outcome)
    for outcome in ("succeeded", "retry", "failed"):
        assert sample(samples, "buildhook_outbound_deliveries_total", outcome=outcome) is not None, outcome
    for phase in ("clone", "build", "push", "total"):
        assert sample(samples, "buildhook_build_duration_seconds_count", phase=phase) is not None, phase


def test_a_new_trigger_and_environment_are_scraped_at_0(client):
    trigger = make_trigger(client)
    environment = f"metrics-{uuid.uuid4().hex[:8]}"
    rule = client.post("/api/deploy-rules", json={"repository": trigger["image"], "tag": "main",
                                                  "environment": environment,
                                                  "targets": [{"kind": "webhook", "url": "http://127.0.0.1:1/deploy"}]})
    assert rule.status_code == 201, rule.json
    samples = scrape(client)
    for state in ("succeeded", "failed", "cancelled", "skipped", "superseded"):
        assert sample(samples, "buildhook_builds_total", state=state, trigger=str(trigger["id"])) == 0, state
    for state in ("succeeded", "failed"):
        assert sample(samples, "buildhook_deployments_total", environment=environment, state=state) == 0, state


def test_a_queued_build_cancelled_is_counted_once(app, client):
    trigger = make_trigger(client)
    label = str(trigger["id"])
    queued = add_build(app, trigger)
    answer = client.post(f"/api/builds/{queued}/cancel")
    assert answer.status_code == 202 and answer.json["state"] == "cancelled"
    assert sample(scrape(client), "buildhook_builds_total", state="cancelled", trigger=label) == 1
    assert client.post(f"/api/builds/{queued}/cancel").status_code == 409  # finished: nothing more
    # a running build is only asked to stop: its worker counts it when it does
    now = datetime.now(timezone.utc)
    running = add_build(app, trigger, state="building", started_at=now, cloning_at=now, building_at=now,
                        attempts=1, worker="elsewhere:1", heartbeat_at=now)
    assert client.post(f"/api/builds/{running}/cancel").status_code == 202
    assert sample(scrape(client), "buildhook_builds_total", state="cancelled", trigger=label) == 1


def phase_samples(client) -> dict[str, tuple[float, float]]:
    samples = scrape(client)
    return {phase: (sample(samples, "buildhook_build_duration_seconds_count", phase=phase) or 0.0,
                    sample(samples, "buildhook_build_duration_seconds_sum", phase=phase) or 0.0)
            for phase in ("clone", "build", "push", "total")}


def ended(app, trigger: dict, state: str, **times: datetime) -> None:
    """A build that ended in ``state``, heard by the worker's listener (``measured``)."""
    build_id = add_build(app, trigger, state=state, attempts=1, **times)
    measured(lambda _build_id, _state: None, app.extensions["buildhook"].sessions)(build_id, state)


def test_the_phase_a_build_ended_in_has_its_duration(app, client):
    trigger = make_trigger(client)
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    at = {seconds: start + timedelta(seconds=seconds) for seconds in (0, 2, 7, 10, 19)}

    before = phase_samples(client)
    ended(app, trigger, "failed", cloning_at=at[0], building_at=at[2], finished_at=at[7])  # failed building
    after = phase_samples(client)
    assert {phase: (after[phase][0] - before[phase][0], round(after[phase][1] - before[phase][1], 3))
            for phase in after} == {"clone": (1, 2.0), "build": (1, 5.0), "push": (0, 0.0), "total": (1, 7.0)}

    before = after
    ended(app, trigger, "cancelled", cloning_at=at[0], building_at=at[2], pushing_at=at[7], finished_at=at[19])
    after = phase_samples(client)
    assert {phase: (after[phase][0] - before[phase][0], round(after[phase][1] - before[phase][1], 3))
            for phase in after} == {"clone": (1, 2.0), "build": (1, 5.0), "push": (1, 12.0), "total": (1, 19.0)}

    # a second attempt that failed cloning: the first attempt's later phase starts are not its
    before = after
    ended(app, trigger, "failed", building_at=at[0], pushing_at=at[2], cloning_at=at[7], finished_at=at[10])
    after = phase_samples(client)
    assert {phase: (after[phase][0] - before[phase][0], round(after[phase][1] - before[phase][1], 3))
            for phase in after} == {"clone": (1, 3.0), "build": (0, 0.0), "push": (0, 0.0), "total": (1, 3.0)}


def test_builds_superseded_at_intake_are_counted(client):
    """A push on top of a queued one supersedes it; its older commit redelivered afterwards is born superseded."""
    import json

    from tests.payloads import github_headers, github_push

    trigger = make_trigger(client)
    label = str(trigger["id"])
    first, second = "1" * 40, "2" * 40

    def push(sha: str, before: str) -> dict:
        payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                              clone_url=trigger["clone_url"])
        payload["before"] = before
        body = json.dumps(payload).encode()
        answer = client.post("/hooks/github", data=body, headers=github_headers(body, "metrics-secret"))
        assert answer.status_code == 202 and answer.json["outcome"] == "accepted", answer.json
        return answer.json

    push(first, "0" * 40)
    assert sample(scrape(client), "buildhook_builds_total", state="superseded", trigger=label) == 0
    push(second, first)
    assert sample(scrape(client), "buildhook_builds_total", state="superseded", trigger=label) == 1
    push(first, "0" * 40)  # the older push again, under a new delivery id: superseded at once
    assert sample(scrape(client), "buildhook_builds_total", state="superseded", trigger=label) == 2
