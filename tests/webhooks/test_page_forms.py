"""Every change on the pages is a plain form (no JavaScript): CSRF-checked, confirmed on a page of
its own when it destroys something, answered with a 303 redirect (post/redirect/get), the
outcome flashed on the page it leads to; and what started each build is shown."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, select

from builder.db.models import Build, OutboundDelivery, Trigger
from builder.notify.urls import seal_url
from builder.triggers.services import TriggerSpec, create_trigger
from tests.webhooks.test_pages import add_build, make_trigger, sessions, set_build, signed_in_browser


def flashed(page: str) -> list[str]:
    return re.findall(r'<p class="flash[^"]*">([^<]+)</p>', page)


def test_reloading_the_trigger_created_page_creates_no_second_trigger(app):
    browser, csrf = signed_in_browser(app)
    name = f"acme/reload-{uuid.uuid4().hex[:8]}"
    form = {"provider": "github", "repository": name, "clone_url": f"https://github.com/{name}.git",
            "secret": "reload-secret-once", "image": name, "csrf_token": csrf}
    posted = browser.post("/triggers", data=form)
    assert posted.status_code == 303
    created_url = posted.headers["Location"]
    first = browser.get(created_url)
    assert "reload-secret-once" in first.text and first.headers["Cache-Control"] == "no-store"
    again = browser.get(created_url)  # what a reload does after post/redirect/get
    assert again.status_code == 200 and "reload-secret-once" not in again.text
    assert "shown once" in again.text
    with sessions(app)() as session:
        assert session.scalar(select(func.count()).select_from(Trigger).where(Trigger.repository == name)) == 1
    # the secret never travels in the clear in the cookie that carried it to the page
    cookie = posted.headers.get("Set-Cookie", "")
    assert "reload-secret-once" not in cookie


def test_cancel_asks_on_a_page_then_redirects_and_a_reload_does_nothing_more(app):
    browser, csrf = signed_in_browser(app)
    trigger = make_trigger(app)
    build_id = add_build(app, trigger, state="queued")
    asked = browser.post(f"/builds/{build_id}/cancel", data={"csrf_token": csrf})
    assert asked.status_code == 200 and f"Cancel build #{build_id}?" in asked.text
    assert 'name="confirmed" value="1"' in asked.text
    with sessions(app)() as session:
        assert session.get(Build, build_id).state == "queued"
    done = browser.post(f"/builds/{build_id}/cancel", data={"csrf_token": csrf, "confirmed": "1"})
    assert done.status_code == 303 and done.headers["Location"] == f"/builds/{build_id}"
    page = browser.get(done.headers["Location"]).text
    assert f"Build #{build_id} cancelled." in flashed(page)
    assert 'data-state="cancelled"' in page
    # without the token: refused
    assert browser.post(f"/builds/{build_id}/cancel", data={"confirmed": "1"}).status_code == 403
    # cancelling a finished build again: the reason on the page, not a bare error
    refused = browser.post(f"/builds/{build_id}/cancel", data={"csrf_token": csrf, "confirmed": "1"},
                           follow_redirects=True)
    assert "already finished" in refused.text and "flash flash-error" in refused.text


def test_rebuild_without_javascript_leads_to_the_new_build_which_says_who_started_it(app):
    browser, csrf = signed_in_browser(app)
    trigger = make_trigger(app)
    build_id = add_build(app, trigger, state="failed", error="boom")
    done = browser.post(f"/builds/{build_id}/rebuild", data={"csrf_token": csrf})
    assert done.status_code == 303
    new_id = int(done.headers["Location"].rsplit("/", 1)[1])
    assert new_id > build_id
    page = browser.get(done.headers["Location"]).text
    assert f"a rebuild of #{build_id}" in flashed(page)[0]
    who = re.search(r'data-started-by>([^<]+)<', page).group(1)
    assert who.startswith(f"rebuild of #{build_id} by admin-")
    with sessions(app)() as session:
        build = session.get(Build, new_id)
        assert (build.origin, build.rebuild_of) == ("rebuild", build_id) and build.started_by.startswith("admin-")
        set_build(app, new_id, state="cancelled")  # the session's worker must not pick it up


def test_redeliver_without_javascript_goes_back_to_the_list(app):
    browser, csrf = signed_in_browser(app)
    trigger = make_trigger(app)
    build_id = add_build(app, trigger)
    with sessions(app)() as session:
        url = seal_url(app.extensions["buildhook"].box, "https://example.com/x")
        delivery = OutboundDelivery(uuid=uuid.uuid4().hex, event="build.failed", url_enc=url.enc,
                                    url_redacted=url.redacted,
                                    body="{}", build_id=build_id, state="failed", attempts=3, max_attempts=3)
        session.add(delivery)
        session.commit()
        delivery_id = delivery.id
    page = browser.get("/deliveries?state=failed").text
    assert f'action="/deliveries/{delivery_id}/redeliver"' in page
    done = browser.post(f"/deliveries/{delivery_id}/redeliver",
                        data={"csrf_token": csrf, "back": "/deliveries?state=failed"})
    assert done.status_code == 303 and done.headers["Location"] == "/deliveries?state=failed"
    assert f"Delivery #{delivery_id} queued to be sent again." in flashed(browser.get(done.headers["Location"]).text)
    off_site = browser.post(f"/deliveries/{delivery_id}/redeliver",
                            data={"csrf_token": csrf, "back": "https://evil.example/"})
    assert off_site.headers["Location"] == "/"


def test_copy_needs_no_javascript_the_text_selects_at_once(app, client):
    trigger = make_trigger(app)
    page = client.get(f"/triggers/{trigger.id}").text
    box = re.search(r'<div class="copy-box">(.*?)</div>', page).group(1)
    assert '<code class="copy-text">http://buildhook.test/hooks/github</code>' in box
    assert "hidden>Copy</button>" in box  # the button appears only when JavaScript can copy


def test_a_failed_sign_in_keeps_the_user_name(app):
    browser = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
    failed = browser.post("/login", data={"name": "grace-kept", "password": "wrong", "csrf_token": token})
    assert failed.status_code == 401 and 'value="grace-kept"' in failed.text


def test_run_now_from_the_trigger_page_starts_a_build_that_says_who_ran_it(app, make_repo):
    browser, csrf = signed_in_browser(app)
    repo = make_repo()
    sha = repo.commit({"README": "run me\n"}, "run me")
    name = f"acme/run-{uuid.uuid4().hex[:8]}"
    with sessions(app)() as session:
        trigger = create_trigger(session, app.extensions["buildhook"].box,
                                 TriggerSpec(provider="github", repository=name, clone_url=repo.url, secret="s" * 12,
                                             image=name), "127.0.0.1:5000", allow_file_clones=True)
        session.commit()
    page = browser.get(f"/triggers/{trigger.id}").text
    assert f'action="/triggers/{trigger.id}/runs"' in page and "Run now</button>" in page
    done = browser.post(f"/triggers/{trigger.id}/runs", data={"csrf_token": csrf, "kind": "branch", "ref": "main"})
    assert done.status_code == 303, done.text
    build_id = int(done.headers["Location"].rsplit("/", 1)[1])
    build_page = browser.get(done.headers["Location"]).text
    set_build(app, build_id, state="cancelled")  # the session's worker must not pick it up
    who = re.search(r'data-started-by>([^<]+)<', build_page).group(1)
    assert who.startswith("manual run by admin-") and sha[:7] in build_page
    history = browser.get(f"/?trigger={trigger.id}").text
    assert "(no message)" not in history and "manual run by admin-" in history
    # a branch that does not exist: the reason on the trigger's page
    missing = browser.post(f"/triggers/{trigger.id}/runs", data={"csrf_token": csrf, "kind": "branch",
                                                                 "ref": "no-such-branch"}, follow_redirects=True)
    assert "no-such-branch" in missing.text and "flash flash-error" in missing.text
