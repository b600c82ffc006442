"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against ``buildhook web``
(gunicorn) and the session's Celery worker, sharing the test database.

A person signs in, creates a trigger with the form, a signed GitHub push starts a slow build, the
history shows it without a reload, its page streams the log as it grows, Cancel stops it, Rebuild
starts it again, and the trigger's page lists the delivery. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from builder.accounts.users import add_user
from tests.conftest import busybox_dockerfile
from tests.payloads import github_headers, github_push


CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SECRET = "browser-webhook-secret"
TICKS = "for i in $(seq 1 80); do echo tick $i; sleep 0.5; done"


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's Chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: pip install playwright (no browser download)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def person(app) -> tuple[str, str]:
    name, password = f"ada-{uuid.uuid4().hex[:6]}", "browser-test-password"
    with app.extensions["buildhook"].sessions() as session:
        add_user(session, name, password, "admin")
        session.commit()
    return name, password


def send_push(base: str, repository: str, clone_url: str, sha: str, delivery: str) -> dict:
    payload = github_push("push_branch", repository=repository, ref="refs/heads/main", sha=sha, clone_url=clone_url)
    payload["head_commit"]["message"] = "Tick slowly\n\nEighty ticks, half a second apart."
    body = json.dumps(payload).encode()
    request = urllib.request.Request(f"{base}/hooks/github", data=body, method="POST",
                                     headers=github_headers(body, SECRET, delivery=delivery))
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.load(response)


def line_count(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator("#log .line").count()


def test_a_person_follows_a_build_from_push_to_cancel_and_rebuild(
        chromium, web_server, worker, registry, make_repo, person, client):
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel build #n?"
    try:
        # sign in
        page.goto(f"{web_server}/")
        assert "/login" in page.url
        page.fill("input[name=name]", person[0])
        page.fill("input[name=password]", person[1])
        page.click("form.login button[type=submit]")
        page.wait_for_url(f"{web_server}/")
        assert page.locator("header nav a", has_text="Triggers").is_visible()

        # create a trigger with the form
        repo = make_repo()
        suffix = uuid.uuid4().hex[:8]
        repository, image = f"acme/browser-{suffix}", f"acme/browser-{suffix}"
        page.click("header nav a:has-text('Triggers')")
        page.click("a:has-text('New trigger')")
        page.select_option("select[name=provider]", "github")
        page.fill("input[name=repository]", repository)
        page.fill("input[name=clone_url]", repo.url)
        page.fill("input[name=secret]", SECRET)
        page.fill("input[name=image]", image)
        page.click("button:has-text('Create trigger')")
        assert page.locator("#hook-secret").inner_text() == SECRET  # shown this once
        assert page.locator("#hook-url").inner_text() == "http://buildhook.test/hooks/github"
        assert page.locator(".setup-steps li").first.inner_text().startswith("Open the repository on GitHub")
        page.click("a:has-text('Done')")
        trigger_id = int(re.search(r"/triggers/(\d+)$", page.url).group(1))
        assert SECRET not in page.content()

        # the history is open when the push comes: the build appears without a reload
        page.goto(f"{web_server}/")
        page.evaluate("window.__sameDocument = true")
        sha = repo.commit({"Dockerfile": busybox_dockerfile(suffix, extra=f"RUN {TICKS}\n")}, "Tick slowly")
        delivery = f"browser-{uuid.uuid4()}"
        [build_id] = send_push(web_server, repository, repo.url, sha, delivery)["builds"]
        row = page.locator(f"tr[data-build='{build_id}']")
        row.wait_for(timeout=30_000)
        row.locator(".pill[data-state='building']").wait_for(timeout=90_000)
        assert page.evaluate("window.__sameDocument") is True
        assert sha[:7] in row.inner_text() and "Tick slowly" in row.inner_text() and repository in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-history.png"))

        # its page: the log grows while we watch
        row.locator("a.build-link").click()
        page.wait_for_url(f"{web_server}/builds/{build_id}")
        page.evaluate("window.__sameDocument = true")
        # functions, not expressions: Playwright evaluates an expression with eval, which the page's CSP refuses
        page.wait_for_function("() => document.querySelectorAll('#log .line').length > 0")
        page.wait_for_function("() => [...document.querySelectorAll('#log .line .text')].some(l => /^(#\\d+ [\\d.]+ )?tick/.test(l.textContent))",
                               timeout=60_000)
        before = line_count(page)
        page.wait_for_function(f"() => document.querySelectorAll('#log .line').length >= {before + 4}", timeout=30_000)
        assert line_count(page) >= before + 4
        assert page.evaluate("window.__sameDocument") is True, "the log grew by reloading the page"
        assert page.locator("#log details.fold[open] summary", has_text=f"RUN {TICKS}").count() == 1
        assert page.locator(".step-running .step-name").inner_text().lower() == "building"
        page.screenshot(path=str(ARTIFACTS / "dashboard-build-running.png"))

        # Cancel stops it; the page follows without a reload
        page.click("#build-head button:has-text('Cancel')")
        page.locator("#build-head .pill[data-state='cancelled']").wait_for(timeout=90_000)
        assert page.evaluate("window.__sameDocument") is True
        page.locator("#log-status", has_text="finished").wait_for()
        assert client.get(f"/api/builds/{build_id}").json["state"] == "cancelled"
        page.screenshot(path=str(ARTIFACTS / "dashboard-build-cancelled.png"), full_page=True)

        # Rebuild a finished build: off to the new build's page
        page.click("#build-head button:has-text('Rebuild')")
        page.wait_for_url(re.compile(rf"{re.escape(web_server)}/builds/(?!{build_id}$)\d+$"))
        rebuilt = int(page.url.rsplit("/", 1)[1])
        assert rebuilt > build_id and sha[:7] in page.locator(".commit-line").inner_text()
        page.locator("#build-head .pill").wait_for()
        # and stop that one too: the worker is shared with other tests
        page.locator("#build-head button:has-text('Cancel')").click()
        page.locator("#build-head .pill[data-state='cancelled']").wait_for(timeout=90_000)

        # the trigger's recent deliveries show the push
        page.goto(f"{web_server}/triggers/{trigger_id}")
        delivery_row = page.locator("table.deliveries-in tr", has_text=delivery)
        assert delivery_row.count() == 1
        assert delivery_row.locator(".pill").get_attribute("data-state") == "accepted"
        assert "202" in delivery_row.inner_text() and "queued 1 build" in delivery_row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-trigger.png"), full_page=True)

        # the other pages answer and read as a whole
        for path, heading in [("/deployments", "Deployments"), ("/deliveries", "Outbound deliveries"),
                              ("/overview", "Overview"), ("/triggers", "Triggers")]:
            page.goto(f"{web_server}{path}")
            assert page.locator("h1").first.inner_text().startswith(heading)
        page.screenshot(path=str(ARTIFACTS / "dashboard-triggers.png"))
        assert errors == [], errors
    finally:
        context.close()
