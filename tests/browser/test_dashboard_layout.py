"""Every page in Chromium at a laptop's and a phone's size (1366x900 and 390x844): no page is
wider than the screen, the navigation is reachable, the Content-Security-Policy blocks nothing
the pages need, and axe-core finds no accessibility violation. Screenshots go to
``test-artifacts/``. The data is made directly in the database ``buildhook web`` reads; no worker.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from builder.accounts.users import add_user
from builder.db.models import Build, BuildLogLine, Deployment, OutboundDelivery
from builder.notify.urls import seal_url
from builder.triggers.services import TriggerSpec, create_trigger
from tests.browser.test_dashboard import ARTIFACTS, chromium  # noqa: F401  (the browser fixture)
from tests.payloads import github_headers, github_push

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
SECRET = "layout-webhook-secret"
FAILING_LOG = [
    "Fetching https://github.com/acme/x.git at main",
    *[f"\x1b[2mdownloading layer {n} of 60\x1b[0m" for n in range(1, 61)],
    "Step 1/3 : FROM scratch",
    " ---> Using cache",
    "Step 2/3 : COPY busybox /bin/busybox",
    " ---> 1f2e3d4c5b6a",
    "Step 3/3 : RUN /bin/busybox sh -c 'printf \"\\033[91mERROR: tests failed\\033[0m\\n\"; exit 1'",
    " ---> Running in 0a1b2c3d4e5f",
    "\x1b[91mERROR: tests failed\x1b[0m",
    "\x1b[1m\x1b[32mok\x1b[0m 12 passed, \x1b[31m1 failed\x1b[0m <script>alert(1)</script>",
    "The command '/bin/sh -c printf ...' returned a non-zero code: 1",
]


@pytest.fixture(scope="module")
def seeded(app) -> Iterator[dict]:
    """A trigger with a long name, builds in every state, a failed log with colours, an inbound
    delivery no trigger took, outbound deliveries and a deployment."""
    services = app.extensions["buildhook"]
    suffix = uuid.uuid4().hex[:8]
    name = f"acme-platform-team/very-long-service-name-for-layout-{suffix}"
    now = datetime.now(timezone.utc)
    with services.sessions() as session:
        trigger = create_trigger(session, services.box, TriggerSpec(
            provider="github", repository=name, clone_url=f"https://github.com/{name}.git", secret=SECRET,
            image=name), services.settings.registry)
        session.flush()
        builds = {}
        for state in ("succeeded", "failed", "building", "queued", "cancelled"):
            build = Build(trigger_id=trigger.id, provider="github", repository=name, clone_url=trigger.clone_url,
                          ref="refs/heads/feature/a-rather-long-branch-name-that-goes-on", ref_type="branch",
                          ref_name="feature/a-rather-long-branch-name-that-goes-on", commit=uuid.uuid4().hex + "abcdefgh",
                          commit_message="Make the layout hold on a phone: a commit message long enough to wrap twice",
                          author="Octo Cat", image=f"127.0.0.1:5000/{name}", tags=["feature-a-rather-long", "abc1234"],
                          dockerfile="Dockerfile", context=".", state=state, created_at=now - timedelta(minutes=5),
                          started_at=now - timedelta(minutes=4), error="docker build failed: The command returned "
                          "a non-zero code: 1" if state == "failed" else None,
                          digest="sha256:" + "b" * 64 if state == "succeeded" else None,
                          finished_at=now if state in ("succeeded", "failed", "cancelled") else None)
            session.add(build)
            session.flush()
            builds[state] = build.id
        for seq, text in enumerate(FAILING_LOG, 1):
            session.add(BuildLogLine(build_id=builds["failed"], seq=seq, text=text,
                                     created_at=now - timedelta(seconds=60 - seq)))
        deployment = Deployment(build_id=builds["succeeded"], environment="staging", kind="webhook",
                                repository=name, tag="feature-a-rather-long", state="failed", error="target said no")
        session.add(deployment)
        session.flush()
        url = seal_url(services.box, "https://deploy.example.com/a/rather/long/path/to/the/deploy/hook")
        session.add(OutboundDelivery(uuid=uuid.uuid4().hex, event="deployment.requested",
                                     url_enc=url.enc, url_redacted=url.redacted,
                                     body="{}", deployment_id=deployment.id, build_id=builds["succeeded"],
                                     state="failed", attempts=3, max_attempts=3, last_status_code=503,
                                     last_response="upstream unavailable"))
        session.commit()
        trigger_id = trigger.id
    typo = json.dumps(github_push("push_branch", repository=f"acme/typo-{suffix}", ref="refs/heads/main",
                                  sha="c" * 40, clone_url="https://github.com/acme/typo.git")).encode()
    client = app.test_client()  # hooks need no sign-in
    answer = client.post("/hooks/github", data=typo, headers=github_headers(typo, SECRET, delivery=f"typo-{suffix}"))
    assert answer.json["outcome"] == "no_trigger"
    user, password = f"lay-{suffix}", "layout-test-password"
    with services.sessions() as session:
        add_user(session, user, password, "admin")
        session.commit()
    yield {"trigger": trigger_id, "builds": builds, "user": user, "password": password,
           "delivery": answer.json["delivery"]}


def pages(seeded: dict) -> list[str]:
    builds = seeded["builds"]
    return ["/", f"/builds/{builds['failed']}", f"/builds/{builds['succeeded']}", f"/builds/{builds['building']}",
            "/triggers", f"/triggers/{seeded['trigger']}", "/triggers/new", "/inbound",
            f"/inbound/{seeded['delivery']}", "/deployments", "/deliveries", "/overview", "/no/such/page"]


def sign_in(page, base: str, seeded: dict) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/login")
    page.fill("input[name=name]", seeded["user"])
    page.fill("input[name=password]", seeded["password"])
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{base}/")


def axe_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:4]}"
            for v in result["violations"]]


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_every_page_fits_the_screen_shows_its_navigation_and_passes_axe(chromium, web_server, seeded, size):
    ARTIFACTS.mkdir(exist_ok=True)
    viewport = VIEWPORTS[size]
    context = chromium.new_context(viewport=viewport, bypass_csp=False)  # type: ignore[attr-defined]
    context.add_init_script(path=str(AXE))  # before the page's own scripts; the page's CSP does not apply
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" else None)
    try:
        page.goto(f"{web_server}/login")
        assert axe_violations(page) == [], "the sign-in page"
        sign_in(page, web_server, seeded)
        for path in pages(seeded):
            page.goto(f"{web_server}{path}")
            page.wait_for_load_state("load")
            shot = ARTIFACTS / f"layout-{size}-{path.strip('/').replace('/', '-') or 'history'}.png"
            page.screenshot(path=str(shot), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{path} is {width} px wide on a {viewport['width']} px screen"
            nav = page.locator("nav[aria-label=Main]")
            for label in ("Builds", "Triggers", "Inbound", "Deployments", "Deliveries", "Overview"):
                link = nav.locator("a", has_text=label)
                link.scroll_into_view_if_needed()
                box = link.bounding_box()
                assert box and box["width"] > 20 and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], \
                    f"{label} not reachable on {path}"
            assert axe_violations(page) == [], path
            if path == "/no/such/page":  # the browser reports the page's own 404 status
                problems[:] = [p for p in problems if "status of 404" not in p]
            assert problems == [], (path, problems)  # e.g. "Refused to ... Content Security Policy"
    finally:
        context.close()


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_a_failed_log_opens_at_its_error_links_lines_renders_colours_and_searches(chromium, web_server, seeded, size):
    viewport = VIEWPORTS[size]
    context = chromium.new_context(viewport=viewport)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        sign_in(page, web_server, seeded)
        build = seeded["builds"]["failed"]
        error_seq = next(n for n, text in enumerate(FAILING_LOG, 1) if text.startswith("\x1b[91m"))
        page.goto(f"{web_server}/builds/{build}")
        page.wait_for_load_state("load")
        error_line = page.locator(f"#L{error_seq}")
        assert "err" in error_line.get_attribute("class")
        coloured = error_line.locator(".text .ansi91")
        assert coloured.inner_text() == "ERROR: tests failed"
        assert page.evaluate("() => getComputedStyle(document.querySelector('#L%d .ansi91')).color" % error_seq) \
            == "rgb(255, 161, 152)"
        assert "<script>" in page.locator(f"#L{error_seq + 1} .text").inner_text()  # shown as text, never run
        # the log box scrolled to the failing line; the page itself stays at the top
        assert page.evaluate("() => document.getElementById('log').scrollTop") > 0
        box = page.locator("#log").bounding_box()
        line = error_line.bounding_box()
        assert box["y"] <= line["y"] and line["y"] + line["height"] <= box["y"] + box["height"]
        assert page.evaluate("() => window.scrollY") == 0
        page.screenshot(path=str(ARTIFACTS / f"log-{size}-failed.png"), full_page=True)
        # a link to a line inside a closed fold opens it and shows the line
        hidden = FAILING_LOG.index(" ---> Using cache") + 1
        assert not page.locator(f"#L{hidden}").is_visible()
        page.goto(f"{web_server}/builds/{build}#L{hidden}")
        assert page.locator(f"#L{hidden}").is_visible()
        assert page.evaluate(f"() => document.querySelector('#L{hidden}').matches(':target')")
        # the search filters in place
        page.fill("#log-search", "layer 42 of")
        assert page.locator("#log .line:not(.miss)").count() == 1
        page.fill("#log-search", "tests failed")
        visible = page.locator("#log .line:not(.miss) .text").all_inner_texts()
        assert any("ERROR: tests failed" in text for text in visible) and len(visible) == 2
        assert "2 of" in page.locator("#log-matches").inner_text()
        assert errors == [], errors
    finally:
        context.close()
