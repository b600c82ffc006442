"""GET /metrics of a real ``buildhook web`` after real builds, webhooks, deployments and deliveries.

The webhook is posted to the running ``buildhook web`` (gunicorn), the build runs on the real
``buildhook worker`` (Celery prefork), the image goes to a registry that notifies the web app, and a
deploy webhook goes to a local receiver: each process group counts in its own directory and the web
app's scrape merges them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import busybox_dockerfile, finished_build, wait_for
from tests.payloads import github_headers, github_push

SECRET = "metrics-e2e-secret"


def scrape(base: str, token: str | None) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of GET /metrics."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/metrics", headers=headers), timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def post_hook(base: str, trigger: dict, sha: str, clone_url: str) -> dict:
    payload = github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main", sha=sha,
                          clone_url=clone_url)
    body = json.dumps(payload).encode()
    request = urllib.request.Request(f"{base}/hooks/github", data=body, headers=github_headers(body, SECRET),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_a_scrape_of_the_web_app_counts_what_web_and_worker_did(client, admin_token, web_server, worker,
                                                                 notifying_registry, make_repo, receiver):
    name = f"acme/metrics-{uuid.uuid4().hex[:8]}"
    repo = make_repo()
    trigger = client.post("/api/triggers", json={
        "provider": "github", "repository": name, "clone_url": repo.url, "secret": SECRET,
        "image": f"{notifying_registry.host}/{name}", "rules": [{"source": "branch", "tags": ["{branch}"]}]}).json
    rule = client.post("/api/deploy-rules", json={
        "repository": name, "tag": "main", "environment": "metrics-env", "registry": notifying_registry.host,
        "targets": [{"kind": "webhook", "url": f"{receiver.url}/deploy"}]})
    assert rule.status_code == 201, rule.json
    before = scrape(web_server, admin_token)

    sha = repo.commit({"Dockerfile": busybox_dockerfile(uuid.uuid4().hex)}, "count me")
    answer = post_hook(web_server, trigger, sha, repo.url)
    build = finished_build(client, answer["builds"][0])
    assert build["state"] == "succeeded", build["error"]
    wait_for(lambda: any(d["state"] == "succeeded" for d in
                         client.get(f"/api/deployments?build={build['id']}").json["deployments"]),
             60, "the deployment to succeed")

    def counted():
        now = scrape(web_server, admin_token)
        return now if value(now, "buildhook_deployments_total", environment="metrics-env", state="succeeded") else None

    after = wait_for(counted, 30, "the deployment to be counted")
    trigger_id = str(trigger["id"])
    assert value(after, "buildhook_builds_total", state="succeeded", trigger=trigger_id) == 1
    assert (value(after, "buildhook_webhook_deliveries_total", provider="github", outcome="accepted")
            - value(before, "buildhook_webhook_deliveries_total", provider="github", outcome="accepted")) >= 1
    assert (value(after, "buildhook_outbound_deliveries_total", outcome="succeeded")
            - value(before, "buildhook_outbound_deliveries_total", outcome="succeeded")) >= 1
    for phase in ("clone", "build", "push", "total"):
        assert (value(after, "buildhook_build_duration_seconds_count", phase=phase)
                - value(before, "buildhook_build_duration_seconds_count", phase=phase)) >= 1, phase
    assert value(after, "buildhook_queue_wait_seconds_count") - value(before, "buildhook_queue_wait_seconds_count") >= 1
    assert ("buildhook_queue_depth", ()) in after


def test_metrics_need_an_api_token_or_the_metrics_token(web_server, admin_token):
    for token in (None, "not-a-token"):
        try:
            scrape(web_server, token)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        else:
            raise AssertionError(f"/metrics answered token {token!r}")
    assert ("buildhook_queue_depth", ()) in scrape(web_server, admin_token)
