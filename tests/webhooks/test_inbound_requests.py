"""The Inbound page shows what each delivery carried (secrets redacted, payload capped), and an
admin can redeliver an accepted delivery to self: a new delivery, marked so, that builds again."""

from __future__ import annotations

import html
import json
import re
import uuid

from sqlalchemy import select

from builder.db.models import Build, Delivery
from tests.payloads import github_headers, github_push
from tests.webhooks.test_page_forms import flashed
from tests.webhooks.test_pages import SECRET, make_trigger, sessions, set_build, signed_in_browser


def cancel_builds(app, build_ids: list[int]) -> None:
    for build_id in build_ids:
        set_build(app, build_id, state="cancelled")  # no worker is to pick them up


def test_a_real_github_push_shows_its_headers_and_payload_without_the_signature(app, client):
    trigger = make_trigger(app)
    sha = uuid.uuid4().hex + "abcdef01"
    body = json.dumps(github_push("push_branch", repository=trigger.repository, ref="refs/heads/main",
                                  sha=sha, clone_url=trigger.clone_url)).encode()
    headers = github_headers(body, SECRET, delivery=f"inbound-{uuid.uuid4()}")
    accepted = client.post("/hooks/github", data=body, headers=headers).json
    assert accepted["outcome"] == "accepted", accepted
    cancel_builds(app, accepted["builds"])
    page = html.unescape(client.get(f"/inbound/{accepted['delivery']}").text)
    assert headers["X-Hub-Signature-256"] not in page and headers["X-Hub-Signature-256"][7:] not in page
    assert re.search(r"<code>X-Hub-Signature-256</code></th><td><code>\*\*\*\*</code>", page)
    assert f"<code>{headers['X-GitHub-Delivery']}</code>" in page and "GitHub-Hookshot/test" in page
    assert body.decode() in page and f"{len(body)} bytes" in page and 'id="truncated"' not in page
    # a rejected one (wrong secret) is kept too, its signature redacted as well
    forged = github_headers(body, "not-the-secret")
    rejected = client.post("/hooks/github", data=body, headers=forged).json
    shown = html.unescape(client.get(f"/inbound/{rejected['delivery']}").text)
    assert forged["X-Hub-Signature-256"] not in shown and body.decode() in shown
    assert "Redeliver to self" not in shown  # only an accepted delivery


def test_a_payload_over_256_kb_is_kept_cut_and_says_so(app, client):
    typo = f"acme/big-{uuid.uuid4().hex[:6]}"
    payload = github_push("push_branch", repository=typo, ref="refs/heads/main", sha="a" * 40,
                          clone_url=f"https://github.com/{typo}.git")
    payload["padding"] = "x" * 300_000
    body = json.dumps(payload).encode()
    answer = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET)).json
    page = client.get(f"/inbound/{answer['delivery']}").text
    assert 'id="truncated"' in page and f"first {256 * 1024} of {len(body)} bytes" in page
    assert "x" * 1000 in page and "x" * 300_000 not in page


def test_redeliver_to_self_makes_a_new_delivery_that_builds_again(app, client):
    trigger = make_trigger(app)
    sha = uuid.uuid4().hex + "abcdef01"
    body = json.dumps(github_push("push_branch", repository=trigger.repository, ref="refs/heads/main",
                                  sha=sha, clone_url=trigger.clone_url)).encode()
    first = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET)).json
    cancel_builds(app, first["builds"])
    browser, csrf = signed_in_browser(app)
    page = browser.get(f"/inbound/{first['delivery']}").text
    assert first["outcome"] == "accepted", first
    assert f'action="/inbound/{first["delivery"]}/redeliver"' in page
    assert browser.post(f"/inbound/{first['delivery']}/redeliver").status_code == 403  # no CSRF token
    done = browser.post(f"/inbound/{first['delivery']}/redeliver", data={"csrf_token": csrf})
    assert done.status_code == 303
    new_id = int(done.headers["Location"].rsplit("/", 1)[1])
    assert new_id != first["delivery"]
    with sessions(app)() as session:
        again = session.get(Delivery, new_id)
        assert (again.outcome, again.redelivery_of, again.trigger_id) == ("accepted", first["delivery"], trigger.id)
        builds = list(session.scalars(select(Build).where(Build.delivery_id == new_id)))
    assert builds and {b.commit for b in builds} == {sha} and {b.state for b in builds} == {"queued"}
    assert all(b.dispatched_at is not None for b in builds)  # handed to the workers
    cancel_builds(app, [b.id for b in builds])
    shown = browser.get(done.headers["Location"]).text
    assert f"Delivery #{first['delivery']} redelivered as #{new_id}" in " ".join(flashed(shown))
    assert f'href="/inbound/{first["delivery"]}"' in shown and "redelivered to self" in shown
    for build in builds:
        assert f'href="/builds/{build.id}"' in shown
    # a viewer cannot; a delivery that was not accepted cannot be redelivered
    viewer, viewer_csrf = signed_in_browser(app, role="viewer")
    assert viewer.post(f"/inbound/{first['delivery']}/redeliver", data={"csrf_token": viewer_csrf}).status_code == 403
    forged = client.post("/hooks/github", data=body, headers=github_headers(body, "wrong")).json
    refused = browser.post(f"/inbound/{forged['delivery']}/redeliver", data={"csrf_token": csrf},
                           follow_redirects=True)
    assert "only an accepted delivery can be redelivered" in refused.text
