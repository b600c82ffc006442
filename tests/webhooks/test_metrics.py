"""GET /metrics in one process: who may read it, and what the webhook intake counts."""

from __future__ import annotations

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
