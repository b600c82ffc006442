"""The webhook front (``webhooks/hooks.py``): ``/hooks/<provider>`` answered before Flask, as the app would.

Every answer, accepted or refused, is JSON with the security headers every page carries; other
methods get 405 (OPTIONS its ``Allow``), and a path deeper than ``/hooks/<provider>`` is Flask's
JSON 404. The intake itself (signatures, replays, sizes, the database down) is tested through this
front by ``test_github_hook.py``, ``test_provider_hooks.py`` and ``test_database_unavailable.py``.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.payloads import add_github_trigger, github_headers, github_push

SECRET = "front-secret"


@pytest.fixture
def trigger(client):
    return add_github_trigger(client, SECRET, "acme/front")


def signed_push(trigger, secret=SECRET):
    body = json.dumps(github_push("push_branch", repository=trigger["repository"], ref="refs/heads/main",
                                  sha=uuid.uuid4().hex[:40].ljust(40, "0"), clone_url=trigger["clone_url"])).encode()
    return body, github_headers(body, secret, "push", None)


def assert_secured_json(response):
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # served over http here


@pytest.mark.parametrize("secret, status, outcome", [(SECRET, 202, "accepted"), ("wrong", 401, None)])
def test_accepted_and_refused_deliveries_are_json_with_the_security_headers(client, trigger, secret, status,
                                                                             outcome):
    body, headers = signed_push(trigger, secret)
    response = client.post("/hooks/github", data=body, headers=headers)
    assert response.status_code == status
    assert_secured_json(response)
    assert response.json["delivery"] > 0
    if outcome:
        assert response.json["outcome"] == outcome and len(response.json["builds"]) == 1
    else:
        assert response.json == {"error": "signature does not match any trigger for this repository",
                                 "status": 401, "delivery": response.json["delivery"]}


@pytest.mark.parametrize("path, name", [("/hooks/svn", "svn"), ("/hooks/l%C3%A4b", "läb")])
def test_an_unknown_provider_is_a_json_404(client, path, name):
    response = client.post(path, data=b"{}")
    assert response.status_code == 404
    assert_secured_json(response)
    assert response.json == {"error": f"unknown provider {name!r}", "status": 404}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_other_methods_get_405(client, method):
    response = client.open("/hooks/github", method=method)
    assert response.status_code == 405
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if method != "HEAD":
        assert response.json["status"] == 405


def test_options_says_post_is_allowed(client):
    response = client.options("/hooks/gitlab")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


@pytest.mark.parametrize("path", ["/hooks/github/extra", "/hooks/"])
def test_paths_beyond_a_provider_are_flasks_json_404(client, path):
    response = client.post(path, data=b"{}")
    assert response.status_code == 404
    assert response.json["status"] == 404
    assert response.headers["X-Frame-Options"] == "DENY"


def test_https_deployments_add_strict_transport_security(settings, trigger):
    from webhooks import create_app

    app = create_app(settings.with_(public_url="https://buildhook.example"))
    body, headers = signed_push(trigger)
    response = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert response.status_code == 202
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    app.extensions["buildhook"].engine.dispose()
