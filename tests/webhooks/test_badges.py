"""Status badges for READMEs: ``/badge/<trigger>.svg?branch=``, public only when the trigger says so."""

from __future__ import annotations

import re

from tests.webhooks.test_pages import add_build, make_trigger, signed_in_browser


def badge_text(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_each_state_of_the_branch_s_latest_build_is_drawn(app, client):
    trigger = make_trigger(app, public_badge=True)
    url = f"/badge/{trigger.id}.svg?branch=main"
    assert badge_text(client.get(url).text) == ["build", "unknown"]
    for state, shown in (("succeeded", "passing"), ("failed", "failing"), ("building", "running"),
                         ("queued", "running"), ("cancelled", "running"), ("succeeded", "passing")):
        add_build(app, trigger, state=state)  # a cancelled build says nothing: the one before counts
        answer = client.get(url)
        assert answer.status_code == 200 and badge_text(answer.text) == ["build", shown], state
    assert answer.mimetype == "image/svg+xml" and answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert '<title>build (main): passing</title>' in answer.text and 'fill="#2e7d32"' in answer.text


def test_the_branch_filter_picks_that_branch_and_defaults_to_the_default_branch(app, client):
    trigger = make_trigger(app, public_badge=True)
    add_build(app, trigger, state="succeeded")
    add_build(app, trigger, ref="refs/heads/feature/x", ref_name="feature/x", state="failed")
    add_build(app, trigger, ref_type="tag", ref="refs/tags/main", ref_name="main", state="failed")
    assert badge_text(client.get(f"/badge/{trigger.id}.svg?branch=feature/x").text)[1] == "failing"
    assert badge_text(client.get(f"/badge/{trigger.id}.svg?branch=main").text)[1] == "passing"
    assert badge_text(client.get(f"/badge/{trigger.id}.svg").text)[1] == "passing"
    assert badge_text(client.get(f"/badge/{trigger.id}.svg?branch=nope").text)[1] == "unknown"


def test_a_public_badge_needs_no_sign_in_and_a_private_one_is_not_disclosed(app, client):
    public, private = make_trigger(app, public_badge=True), make_trigger(app)
    anyone = app.test_client()
    assert anyone.get(f"/badge/{public.id}.svg?branch=main").status_code == 200
    hidden = anyone.get(f"/badge/{private.id}.svg?branch=main")
    missing = anyone.get("/badge/999999.svg")
    # 404 both: a private trigger cannot be told from one that does not exist
    assert hidden.status_code == missing.status_code == 404 and "<svg" not in hidden.text
    assert anyone.get(f"/badge/{private.id}.svg", headers={"Authorization": "Bearer nope"}).status_code == 404
    assert client.get(f"/badge/{private.id}.svg?branch=main").status_code == 200  # an API token
    browser, _csrf = signed_in_browser(app, role="viewer")
    assert browser.get(f"/badge/{private.id}.svg").status_code == 200  # a signed-in person
    assert client.get("/badge/999999.svg").status_code == 404


def test_a_branch_name_cannot_inject_markup_into_the_svg(app, client):
    trigger = make_trigger(app, public_badge=True)
    evil = '"><script>alert(1)</script><x a="'
    add_build(app, trigger, ref=f"refs/heads/{evil}", ref_name=evil, state="failed")
    svg = client.get(f"/badge/{trigger.id}.svg", query_string={"branch": evil}).text
    assert "<script" not in svg and "&lt;script&gt;" in svg and "&quot;&gt;" in svg
    assert badge_text(svg) == ["build", "failing"]


def test_the_trigger_api_form_and_page_set_and_show_the_public_badge(app, client):
    made = client.post("/api/triggers", json={
        "provider": "github", "repository": "acme/badge-api", "clone_url": "https://github.com/acme/badge-api.git",
        "secret": "s", "image": "acme/badge-api", "public_badge": True}).json
    assert made["public_badge"] is True
    assert client.patch(f"/api/triggers/{made['id']}", json={"public_badge": False}).json["public_badge"] is False
    assert client.patch(f"/api/triggers/{made['id']}", json={"public_badge": "yes"}).status_code == 400
    assert app.test_client().get(f"/badge/{made['id']}.svg").status_code == 404
    browser, csrf = signed_in_browser(app)
    saved = browser.post(f"/triggers/{made['id']}", data={"csrf_token": csrf, "image": "acme/badge-api",
                                                          "default_branch": "main", "enabled": "on",
                                                          "public_badge": "on"})
    assert saved.status_code == 303
    assert app.test_client().get(f"/badge/{made['id']}.svg").status_code == 200
    page = browser.get(f"/triggers/{made['id']}").text
    assert "[![build](http://" in page and f"/badge/{made['id']}.svg?branch=main)](" in page
    assert f'<img src="/badge/{made["id"]}.svg?branch=main"' in page
