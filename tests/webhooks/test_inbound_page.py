"""The Inbound page: every webhook received, including a push no trigger took."""

from __future__ import annotations

import json
import uuid

from tests.payloads import github_headers, github_push
from tests.webhooks.test_pages import SECRET, make_trigger, set_build


def test_a_push_for_a_repository_no_trigger_matches_is_shown_with_its_reason(app, client):
    typo = f"acme/tyop-{uuid.uuid4().hex[:6]}"
    body = json.dumps(github_push("push_branch", repository=typo, ref="refs/heads/main", sha="d" * 40,
                                  clone_url=f"https://github.com/{typo}.git")).encode()
    answer = client.post("/hooks/github", data=body, headers=github_headers(body, SECRET, delivery="typo-1"))
    assert answer.json["outcome"] == "no_trigger"
    trigger = make_trigger(app)
    pushed = json.dumps(github_push("push_branch", repository=trigger.repository, ref="refs/heads/main",
                                    sha="e" * 40, clone_url=trigger.clone_url)).encode()
    accepted = client.post("/hooks/github", data=pushed, headers=github_headers(pushed, SECRET, delivery="ok-1")).json
    [build_id] = accepted["builds"]
    set_build(app, build_id, state="cancelled")  # the session's worker must not pick it up
    page = client.get("/inbound").text
    assert f'data-delivery="{answer.json["delivery"]}"' in page and typo in page
    assert f"no trigger for github repository {typo}" in page and 'data-state="no_trigger"' in page
    assert f'href="/builds/{build_id}"' in page
    only = client.get("/inbound?outcome=no_trigger").text
    assert typo in only and f'href="/builds/{build_id}"' not in only
    one = client.get(f"/inbound/{answer.json['delivery']}").text
    assert "none took it" in one and typo in one
    assert client.get("/inbound?outcome=bogus").status_code == 400
