"""What a person sees when something is not there or not right: tag chips only for pushed tags,
a styled 404, a bad filter that lists nothing under its message."""

from __future__ import annotations

import re

from tests.webhooks.test_pages import add_build, listed, make_trigger


def test_tag_chips_only_for_tags_that_were_pushed(app, client):
    trigger = make_trigger(app)
    pushed = add_build(app, trigger, state="succeeded", tags=["main", "abc1234"], digest="sha256:" + "a" * 64)
    failed = add_build(app, trigger, state="failed", error="boom", tags=["main", "def5678"])
    running = add_build(app, trigger, state="building", tags=["main", "fed4321"])
    history = client.get(f"/?trigger={trigger.id}").text
    rows = dict(re.findall(r'<tr class="row-\w+" data-build="(\d+)">(.*?)</tr>', history, re.S))
    assert '<code class="tag">abc1234</code>' in rows[str(pushed)]
    assert 'class="tag"' not in rows[str(failed)] and "not pushed" in rows[str(failed)]
    assert 'class="tag"' not in rows[str(running)] and "pushed when done" in rows[str(running)]
    page = client.get(f"/builds/{failed}").text
    assert 'class="tag"' not in page and "Would have been tagged main, def5678" in page


def test_an_unknown_page_is_a_styled_404_with_the_navigation(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert '<nav class="nav" aria-label="Main">' in response.text and "There is no page at /no/such/page" in response.text
    assert client.get("/builds/999999999").status_code == 404
    api = client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.is_json


def test_a_bad_filter_lists_no_build_under_its_message(app, client):
    trigger = make_trigger(app)
    add_build(app, trigger)
    response = client.get(f"/?trigger={trigger.id}&since=yesterday")
    assert response.status_code == 400 and "since must be a date" in response.text
    assert listed(response.text) == []
