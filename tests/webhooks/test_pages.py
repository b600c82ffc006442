"""The pages, through Flask's test client: history filters and cursor pages, the build page, the
live log as server-sent events, trigger forms, deployments and deliveries, the overview's numbers,
and that no secret is ever rendered. The big-history test runs on its own SQLite database."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from builder.accounts.users import add_user
from builder.db.engine import make_engine, make_sessionmaker, migrate
from builder.builds.history import commit_url, fold_log
from builder.notify.urls import seal_url
from builder.builds.overview import overview
from builder.db.models import Build, BuildLogLine, Deployment, OutboundDelivery, RetentionDeletion, Trigger
from builder.settings import Settings
from builder.triggers.services import TriggerSpec, create_trigger
from tests.payloads import fixture, github_headers, github_push
from webhooks import create_app

SECRET = "pages-webhook-secret-value"


def sessions(app):
    return app.extensions["buildhook"].sessions


def make_trigger(app, secret: str = SECRET, **extra: Any) -> Trigger:
    name = f"acme/pages-{uuid.uuid4().hex[:8]}"
    spec = TriggerSpec(provider="github", repository=name, clone_url=f"https://github.com/{name}.git",
                       secret=secret, image=name, **extra)
    with sessions(app)() as session:
        trigger = create_trigger(session, app.extensions["buildhook"].box, spec,
                                 app.extensions["buildhook"].settings.registry)
        session.commit()
        return trigger


def add_build(app, trigger: Trigger, **fields: Any) -> int:
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = dict(
        trigger_id=trigger.id, provider=trigger.provider, repository=trigger.repository,
        clone_url=trigger.clone_url, ref="refs/heads/main", ref_type="branch", ref_name="main",
        commit=uuid.uuid4().hex + "abcdefgh", commit_message="Change something\n\nThe long story.",
        author="Octo Cat", image=f"127.0.0.1:5000/{trigger.image}", tags=["main"], dockerfile="Dockerfile",
        context=".", state="succeeded", created_at=now)
    values.update(fields)
    if "ref_name" in fields and "ref" not in fields:
        kind = values["ref_type"]
        values["ref"] = f"refs/{'tags' if kind == 'tag' else 'heads'}/{fields['ref_name']}"
    with sessions(app)() as session:
        build = Build(**values)
        session.add(build)
        session.commit()
        return build.id


def add_lines(app, build_id: int, texts: list[str], start: int = 1) -> None:
    with sessions(app)() as session:
        for offset, line in enumerate(texts):
            session.add(BuildLogLine(build_id=build_id, seq=start + offset, text=line))
        session.commit()


def set_build(app, build_id: int, **fields: Any) -> None:
    with sessions(app)() as session:
        build = session.get(Build, build_id)
        for key, value in fields.items():
            setattr(build, key, value)
        session.commit()


def listed(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-build="(\d+)"', page)]


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">Older', page)
    return found.group(1).replace("&amp;", "&") if found else None


def signed_in_browser(app, role: str = "admin"):
    """A test client with a session cookie (as a person has), and the page's CSRF token."""
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    with sessions(app)() as session:
        add_user(session, name, "pages-password", role)
        session.commit()
    browser = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
    response = browser.post("/login", data={"name": name, "password": "pages-password", "csrf_token": token})
    assert response.status_code == 302
    page = browser.get("/").text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    return browser, csrf


# --- the history -----------------------------------------------------------------------------


def test_history_filters_by_trigger_repository_ref_state_and_dates(app, client):
    trigger, other = make_trigger(app), make_trigger(app)
    now = datetime.now(timezone.utc)
    main_ok = add_build(app, trigger, created_at=now - timedelta(days=3))
    feature_failed = add_build(app, trigger, ref_name="feature/x", state="failed", error="boom",
                               created_at=now - timedelta(days=1))
    tag_ok = add_build(app, trigger, ref_type="tag", ref_name="v1.2.0", tags=["v1.2.0"], created_at=now)
    elsewhere = add_build(app, other, state="failed", created_at=now)

    page = client.get(f"/?trigger={trigger.id}").text
    assert listed(page) == [tag_ok, feature_failed, main_ok]  # newest first
    assert listed(client.get(f"/?repository={other.repository}").text) == [elsewhere]
    assert listed(client.get(f"/?trigger={trigger.id}&state=failed").text) == [feature_failed]
    assert listed(client.get(f"/?trigger={trigger.id}&ref=feature/x").text) == [feature_failed]
    assert listed(client.get(f"/?trigger={trigger.id}&ref=v1.2.0").text) == [tag_ok]
    day = (now - timedelta(days=1)).date().isoformat()
    assert listed(client.get(f"/?trigger={trigger.id}&since={day}&until={day}").text) == [feature_failed]
    assert listed(client.get(f"/?trigger={trigger.id}&since={day}").text) == [tag_ok, feature_failed]
    assert listed(client.get(f"/?trigger={trigger.id}&until={(now - timedelta(days=2)).date()}").text) == [main_ok]
    # the row: state, repository, ref, short sha linked to the commit on GitHub, first line, tags, age
    row = page[page.index(f'data-build="{feature_failed}"'):]
    row = row[:row.index("</tr>")]
    assert 'data-state="failed"' in row and "feature/x" in row and "Change something" in row
    assert "The long story" not in row and "boom" in row and "ago" in row
    with sessions(app)() as session:
        sha = session.get(Build, feature_failed).commit
    assert f'href="https://github.com/{trigger.repository}/commit/{sha}"' in row and f">{sha[:7]}<" in row
    # the form keeps the filter; the rows-only fragment the page refreshes itself with
    filtered = client.get(f"/?trigger={trigger.id}&state=failed").text
    assert f'<option value="{trigger.id}" selected>' in filtered and "<option selected>failed</option>" in filtered
    fragment = client.get(f"/?trigger={trigger.id}&partial=rows")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert listed(fragment.text) == [tag_ok, feature_failed, main_ok]


def test_bad_filters_are_explained_on_the_page(client):
    response = client.get("/?since=yesterday")
    assert response.status_code == 400 and "since must be a date" in response.text and "<form" in response.text
    assert client.get("/?state=exploded").status_code == 400
    assert client.get("/?before=abc").status_code == 400


def test_history_pages_backwards_with_a_cursor_and_never_counts(app, client):
    trigger = make_trigger(app)
    made = [add_build(app, trigger) for _ in range(123)]
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        statements.append(statement.lower())

    engine = app.extensions["buildhook"].engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        seen: list[int] = []
        url: str | None = f"/?trigger={trigger.id}"
        pages = 0
        while url:
            page = client.get(url).text
            rows = listed(page)
            assert rows == sorted(rows, reverse=True)
            assert len(rows) <= 50
            seen += rows
            url = older_link(page)
            pages += 1
            if url:
                assert f"before={rows[-1]}" in url and f"trigger={trigger.id}" in url
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert pages == 3 and seen == sorted(made, reverse=True)
    assert not [s for s in statements if "count(" in s and "builds" in s], "a page must not count builds"


# --- the big history (its own database) ------------------------------------------------------


@pytest.fixture(scope="module")
def big_history(tmp_path_factory):
    """A migrated SQLite database with 100,000 builds over 10 triggers, and an app on it."""
    data = tmp_path_factory.mktemp("big-history")
    url = f"sqlite:///{data / 'big.db'}"
    migrate(url)
    engine = make_engine(url)
    made = make_sessionmaker(engine)
    now = datetime.now(timezone.utc)
    with made() as session:
        triggers = [Trigger(provider="github", repository=f"big/repo-{n}", clone_url=f"https://github.com/big/repo-{n}",
                            secret_enc="x", image=f"big/repo-{n}") for n in range(10)]
        session.add_all(triggers)
        session.flush()
        states = ["succeeded"] * 8 + ["failed", "superseded"]
        ids = [t.id for t in triggers]
        stamp = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores UTC datetimes in SQLite
        rows = []
        for number in range(100_000):
            branch = "main" if number % 4 else f"feature/topic-{number % 97}"
            created = now - timedelta(seconds=(100_000 - number) * 30)
            rows.append((
                ids[number % 10], "github", f"big/repo-{number % 10}", f"https://github.com/big/repo-{number % 10}",
                f"refs/heads/{branch}", "branch", branch, f"{number:040x}", f"Change {number}",
                "127.0.0.1:5000/big/repo", json.dumps([branch]), "Dockerfile", ".", "{}", "[]", "[]",
                states[(number // 7) % 10], 1, created.strftime(stamp),
                (created + timedelta(seconds=2)).strftime(stamp), (created + timedelta(seconds=62)).strftime(stamp)))
        session.connection().exec_driver_sql(
            "INSERT INTO builds (trigger_id, provider, repository, clone_url, ref, ref_type, ref_name, \"commit\", "
            "commit_message, image, tags, dockerfile, context, build_args, included_files, ignored_files, state, "
            "attempts, created_at, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?)", rows)
        session.commit()
        session.execute(text("ANALYZE"))
        session.commit()
    env = {"BUILDHOOK_DATA_DIR": str(data), "BUILDHOOK_DATABASE_URL": url, "BUILDHOOK_SECRET_KEY": "big-history-key",
           "BUILDHOOK_BROKER_URL": "redis://127.0.0.1:9/0"}
    big_app = create_app(Settings.from_env(env))
    with big_app.extensions["buildhook"].sessions() as session:
        add_user(session, "big-admin", "big-admin-password", "admin")
        session.commit()
    yield big_app, made, [t.id for t in triggers], now
    engine.dispose()
    big_app.extensions["buildhook"].engine.dispose()


def test_every_history_filter_reads_an_index_in_id_order(big_history):
    """With 100,000 builds, no filter sorts or scans the table: each reads one page of an index."""
    _app, made, trigger_ids, _now = big_history
    with made() as session:
        def plan(where: str) -> str:
            rows = session.execute(text(f"EXPLAIN QUERY PLAN SELECT * FROM builds WHERE {where} "
                                        "ORDER BY id DESC LIMIT 51")).fetchall()
            return " | ".join(row[-1] for row in rows)

        for where, index in [
            (f"trigger_id = {trigger_ids[3]}", "ix_builds_trigger_id_id"),
            ("repository = 'big/repo-3'", "ix_builds_repository_id"),
            ("ref_name = 'feature/topic-5'", "ix_builds_ref_name_id"),
            ("state = 'failed'", "ix_builds_state_id"),
            (f"trigger_id = {trigger_ids[3]} AND id < 50000", "ix_builds_trigger_id_id"),
        ]:
            found = plan(where)
            assert index in found and "TEMP B-TREE" not in found, (where, found)
        assert "TEMP B-TREE" not in plan("id < 50000")


def test_a_page_of_a_big_history_is_fast_whatever_the_filter(big_history):
    big_app, made, trigger_ids, now = big_history
    browser = big_app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
    browser.post("/login", data={"name": "big-admin", "password": "big-admin-password", "csrf_token": token})
    week_ago = (now - timedelta(days=7)).date().isoformat()
    urls = ["/", "/?before=50000", f"/?trigger={trigger_ids[2]}", "/?state=failed", "/?ref=feature/topic-5",
            "/?repository=big/repo-4", f"/?since={week_ago}", f"/?trigger={trigger_ids[2]}&state=failed",
            f"/?trigger={trigger_ids[2]}&before=40000", "/overview"]
    for url in urls:
        browser.get(url)  # warm
        started = time.perf_counter()
        response = browser.get(url)
        took = time.perf_counter() - started
        assert response.status_code == 200, url
        assert took < 1.5, f"{url} took {took:.2f}s with 100,000 builds"
        if url != "/overview":
            assert len(listed(response.text)) == 50, url
    with made() as session:  # the overview counted the window's builds: 14 days of one build per 30 s
        numbers = overview(session, now=now)
    assert 14 * 2880 - 2880 <= numbers.total <= 14 * 2880 + 1
    assert numbers.median_build_seconds == pytest.approx(60, abs=0.01)
    assert numbers.median_queue_seconds == pytest.approx(2, abs=0.01)


# --- links and folding -----------------------------------------------------------------------


@pytest.mark.parametrize("provider, clone_url, expected", [
    ("github", "https://github.com/acme/widget.git", "https://github.com/acme/widget/commit/SHA"),
    ("github", "git@github.com:acme/widget.git", "https://github.com/acme/widget/commit/SHA"),
    ("github", "https://x-access-token:secret@github.example.com/acme/widget", "https://github.example.com/acme/widget/commit/SHA"),
    ("gitea", "https://git.example.com:3000/acme/widget.git", "https://git.example.com:3000/acme/widget/commit/SHA"),
    ("gitea", "ssh://git@git.example.com:2222/acme/widget.git", "https://git.example.com/acme/widget/commit/SHA"),
    ("gitlab", "https://gitlab.com/group/sub/widget.git", "https://gitlab.com/group/sub/widget/-/commit/SHA"),
    ("gitlab", "git@gitlab.example.com:group/widget.git", "https://gitlab.example.com/group/widget/-/commit/SHA"),
    ("bitbucket", "https://bitbucket.org/acme/widget.git", "https://bitbucket.org/acme/widget/commits/SHA"),
    ("bitbucket", "https://bitbucket.example.com/scm/PROJ/widget.git",
     "https://bitbucket.example.com/projects/PROJ/repos/widget/commits/SHA"),
    ("github", "file:///srv/git/widget", None),
    ("github", "/srv/git/widget", None),
    ("unknown", "https://example.com/acme/widget.git", None),
])
def test_commit_links_follow_the_host(provider, clone_url, expected):
    assert commit_url(provider, clone_url, "SHA") == expected


def test_docker_steps_fold_and_errors_stand_out():
    lines = [BuildLogLine(seq=n, text=t) for n, t in enumerate([
        "Fetching abc", "Step 1/2 : FROM scratch", " ---> ", "Step 2/2 : RUN false", " ---> Running in 1",
        "ERROR: The command '/bin/sh -c false' returned a non-zero code: 1", "FAILED: docker build failed"], 1)]
    groups = fold_log(lines)
    assert [(g.head.text if g.head else None, [line.seq for line in g.lines]) for g in groups] == [
        (None, [1]), ("Step 1/2 : FROM scratch", [3]), ("Step 2/2 : RUN false", [5, 6]), (None, [7])]
    assert [g.error for g in groups] == [False, False, True, True]


# --- one build --------------------------------------------------------------------------------


def test_build_page_shows_steps_with_durations_the_pull_command_and_the_log(app, client):
    trigger = make_trigger(app)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    digest = "sha256:" + "d" * 64
    build_id = add_build(
        app, trigger, state="succeeded", tags=["main", "1234567", "latest"], digest=digest, created_at=start,
        started_at=start + timedelta(seconds=4), cloning_at=start + timedelta(seconds=4),
        building_at=start + timedelta(seconds=7), pushing_at=start + timedelta(seconds=97),
        finished_at=start + timedelta(seconds=102))
    add_lines(app, build_id, ["Fetching", "Step 1/1 : FROM scratch", " ---> abc", "Successfully built abc",
                              "Pushed it"])
    page = client.get(f"/builds/{build_id}").text
    steps = re.findall(r'<li class="step step-(\w+)">\s*<span class="step-name">(\w+)</span>\s*'
                       r'<span class="step-time">\s*([^<]+?)\s*</span>', page)
    assert steps == [("done", "queued", "4.0 s"), ("done", "cloning", "3.0 s"),
                     ("done", "building", "1 min 30 s"), ("done", "pushing", "5.0 s")]
    assert f"docker pull 127.0.0.1:5000/{trigger.image}@{digest}" in page
    assert f'data-copy="docker pull 127.0.0.1:5000/{trigger.image}@{digest}"' in page
    assert f"/api/builds/{build_id}/log?format=text&amp;download=1" in page
    assert f'href="/triggers/{trigger.id}"' in page and "The long story." in page
    assert page.count('class="line') == 5 and '<details class="fold"' in page
    assert "data-stream" not in page  # finished: nothing to stream
    # admins get Rebuild on a finished build; a running one offers Cancel and streams its log
    assert f'data-api="/api/builds/{build_id}/rebuild"' in page and "/cancel" not in page
    running = add_build(app, trigger, state="building", started_at=datetime.now(timezone.utc),
                        cloning_at=datetime.now(timezone.utc), building_at=datetime.now(timezone.utc))
    live = client.get(f"/builds/{running}").text
    assert f'data-api="/api/builds/{running}/cancel"' in live and "/rebuild" not in live
    assert f'action="/builds/{running}/cancel"' in live  # a form: it works without JavaScript
    assert f'data-stream="/api/builds/{running}/log/stream"' in live and 'step step-running' in live


def test_viewers_see_no_buttons(app):
    trigger = make_trigger(app)
    build_id = add_build(app, trigger, state="building")
    viewer, _csrf = signed_in_browser(app, "viewer")
    page = viewer.get(f"/builds/{build_id}").text
    assert "data-api" not in page and "/cancel" not in page and "Download log" in page


def test_the_log_downloads_as_a_file(app, client):
    build_id = add_build(app, make_trigger(app))
    add_lines(app, build_id, ["one", "two"])
    response = client.get(f"/api/builds/{build_id}/log?format=text&download=1")
    assert response.text == "one\ntwo\n"
    assert response.headers["Content-Disposition"] == f'attachment; filename="build-{build_id}.log"'
    assert "Content-Disposition" not in client.get(f"/api/builds/{build_id}/log?format=text").headers


# --- the live log ------------------------------------------------------------------------------


def parse_events(raw: str) -> list[dict[str, str]]:
    events = []
    for block in raw.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name in fields and name == "data" else value
        if fields and set(fields) != {"retry"}:
            events.append(fields)
    return events


def test_the_log_stream_sends_every_line_with_its_seq_and_ends_when_the_build_is_finished(app, client):
    build_id = add_build(app, make_trigger(app), state="failed")
    add_lines(app, build_id, [f"line {n}" for n in range(1, 6)])
    response = client.get(f"/api/builds/{build_id}/log/stream")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = parse_events(response.text)
    assert [(e.get("id"), e["data"]) for e in events if "event" not in e] == [
        (str(n), f"line {n}") for n in range(1, 6)]
    assert [e["event"] for e in events if "event" in e] == ["state", "end"]
    assert json.loads(events[-1]["data"]) == {"state": "failed", "last": 5}


def test_the_log_stream_resumes_after_last_event_id_or_after(app, client):
    build_id = add_build(app, make_trigger(app), state="succeeded")
    add_lines(app, build_id, [f"line {n}" for n in range(1, 6)])

    def ids(response) -> list[str]:  # type: ignore[no-untyped-def]
        return [e["id"] for e in parse_events(response.text) if "id" in e]

    assert ids(client.get(f"/api/builds/{build_id}/log/stream", headers={"Last-Event-ID": "3"})) == ["4", "5"]
    assert ids(client.get(f"/api/builds/{build_id}/log/stream?after=4")) == ["5"]
    # a reconnect sends both: the later wins
    assert ids(client.get(f"/api/builds/{build_id}/log/stream?after=1", headers={"Last-Event-ID": "4"})) == ["5"]
    assert client.get(f"/api/builds/{build_id}/log/stream?after=x").status_code == 400
    assert client.get("/api/builds/987654321/log/stream").status_code == 404


def test_the_log_stream_follows_a_running_build(app, client):
    build_id = add_build(app, make_trigger(app), state="building")
    add_lines(app, build_id, ["first"])

    def run_the_build() -> None:
        time.sleep(0.5)
        add_lines(app, build_id, ["second", "third"], start=2)
        time.sleep(0.5)
        add_lines(app, build_id, ["multi\nline"], start=4)
        set_build(app, build_id, state="succeeded", finished_at=datetime.now(timezone.utc))

    worker = threading.Thread(target=run_the_build)
    started = time.monotonic()
    worker.start()
    response = client.get(f"/api/builds/{build_id}/log/stream", buffered=False)
    raw = "".join(chunk.decode() if isinstance(chunk, bytes) else chunk for chunk in response.response)
    worker.join()
    assert time.monotonic() - started < 10
    events = parse_events(raw)
    assert [(e["id"], e["data"]) for e in events if "id" in e] == [
        ("1", "first"), ("2", "second"), ("3", "third"), ("4", "multi\nline")]
    states = [json.loads(e["data"])["state"] for e in events if e.get("event") == "state"]
    assert states == ["building", "succeeded"] and events[-1]["event"] == "end"


def test_a_log_stream_connection_has_a_bounded_lifetime(app, client):
    build_id = add_build(app, make_trigger(app), state="queued")
    started = time.monotonic()
    raw = client.get(f"/api/builds/{build_id}/log/stream?lifetime=0.5").text
    assert time.monotonic() - started < 5
    assert "event: end" not in raw  # the browser reconnects and goes on
    capped = client.get(f"/api/builds/{build_id}/log/stream?lifetime=99999", buffered=False)
    assert capped.status_code == 200  # capped at 10 minutes; not read here
    capped.close()


def test_past_the_held_streams_a_stream_answers_once_and_the_browser_polls(app, client):
    from webhooks import dashboard

    build_id = add_build(app, make_trigger(app), state="building")
    add_lines(app, build_id, ["one", "two"])
    taken = [dashboard._held_streams.acquire(blocking=False) for _ in range(dashboard.STREAM_MAX_HELD)]
    try:
        assert all(taken)
        started = time.monotonic()
        raw = client.get(f"/api/builds/{build_id}/log/stream").text
        assert time.monotonic() - started < 3
    finally:
        for _ in taken:
            dashboard._held_streams.release()
    events = parse_events(raw)
    assert [e["id"] for e in events if "id" in e] == ["1", "2"] and "event: end" not in raw
    assert raw.startswith("retry: 2000")


# --- triggers -----------------------------------------------------------------------------------


def test_creating_a_trigger_with_the_form_shows_the_secret_once(app):
    browser, csrf = signed_in_browser(app)
    name = f"acme/form-{uuid.uuid4().hex[:8]}"
    form = {"provider": "gitlab", "repository": name, "clone_url": f"https://gitlab.com/{name}.git",
            "secret": "form-secret-shown-once", "image": name, "dockerfile": "Dockerfile", "context": ".",
            "default_branch": "trunk"}
    assert browser.post("/triggers", data=form).status_code == 403  # no CSRF token
    posted = browser.post("/triggers", data={**form, "csrf_token": csrf})
    assert posted.status_code == 303  # post/redirect/get: a reload shows, never creates again
    created = browser.get(posted.headers["Location"])
    assert created.status_code == 200
    assert "form-secret-shown-once" in created.text and "http://buildhook.test/hooks/gitlab" in created.text
    assert "Secret token" in created.text  # GitLab's own words in the setup steps
    assert created.headers["Cache-Control"] == "no-store"
    trigger_id = int(re.search(r'href="/triggers/(\d+)">Done', created.text).group(1))
    page = browser.get(f"/triggers/{trigger_id}").text
    assert name in page and "form-secret-shown-once" not in page and "trunk" in page
    assert "form-secret-shown-once" not in browser.get("/triggers").text
    # a generated secret when none is given
    generated = browser.post("/triggers", data={**form, "secret": "", "repository": name + "-2", "csrf_token": csrf},
                             follow_redirects=True)
    assert generated.status_code == 200
    assert re.search(r'<code class="copy-text" id="hook-secret">[0-9a-f]{40}</code>', generated.text)
    # an error keeps what was typed (but not the secret)
    refused = browser.post("/triggers", data={**form, "image": "Not A Valid Image", "csrf_token": csrf})
    assert refused.status_code == 400 and "not a valid repository name" in refused.text
    assert name in refused.text and "form-secret-shown-once" not in refused.text


def test_the_trigger_page_shows_and_edits_its_limit_schedule_and_retention(app):
    browser, csrf = signed_in_browser(app)
    name = f"acme/pages-{uuid.uuid4().hex[:8]}"
    spec = TriggerSpec.from_json({
        "provider": "github", "repository": name, "clone_url": f"https://github.com/{name}.git", "secret": SECRET,
        "image": name, "rules": [{"source": "branch", "tags": ["{short_sha}"], "retention": {"keep": 3},
                                  "rebuild": "always"}]})
    with sessions(app)() as session:
        trigger = create_trigger(session, app.extensions["buildhook"].box, spec,
                                 app.extensions["buildhook"].settings.registry)
        session.add(RetentionDeletion(kind="tag", trigger_id=trigger.id, repository=f"127.0.0.1:5000/{name}",
                                      tag="abc1234", outcome="kept", detail="main still points at its manifest"))
        session.commit()
    page = browser.get(f"/triggers/{trigger.id}").text
    assert "no limit of its own" in page and re.search(r'id="schedule"><span class="muted">none', page)
    assert "retention keeps 3" in page and "rebuilds unchanged commits on schedule" in page
    table = re.search(r'<table class="retention" id="retention">(.*?)</table>', page, re.S).group(1)
    assert "kept" in table and "abc1234" in table and "main still points at its manifest" in table

    saved = browser.post(f"/triggers/{trigger.id}", data={
        "image": name, "default_branch": "main", "enabled": "on", "max_concurrent": "2", "schedule": "0 3 * * 1",
        "csrf_token": csrf})
    assert saved.status_code == 303
    page = browser.get(f"/triggers/{trigger.id}").text
    assert re.search(r'id="max-concurrent">at most 2 ', page)
    assert re.search(r'id="schedule"><code>0 3 \* \* 1</code> \(UTC\) · next run .+ of <code>main</code>', page)
    browser.post(f"/triggers/{trigger.id}/enabled", data={"enabled": "0", "confirmed": "1", "csrf_token": csrf})
    assert "paused: the trigger is disabled" in browser.get(f"/triggers/{trigger.id}").text
    browser.post(f"/triggers/{trigger.id}/enabled", data={"enabled": "1", "csrf_token": csrf})
    assert "paused" not in browser.get(f"/triggers/{trigger.id}").text
    with sessions(app)() as session:
        saved_trigger = session.get(Trigger, trigger.id)
        assert (saved_trigger.max_concurrent, saved_trigger.schedule) == (2, "0 3 * * 1")
        assert saved_trigger.schedule_next_at.weekday() == 0 and saved_trigger.schedule_next_at.hour == 3

    bad = browser.post(f"/triggers/{trigger.id}", data={
        "image": name, "default_branch": "main", "max_concurrent": "0", "csrf_token": csrf})
    assert bad.status_code == 400
    assert "max_concurrent must be a whole number from 1 to 1000 (empty: no limit)" in bad.text  # no null in a form
    bad = browser.post(f"/triggers/{trigger.id}", data={
        "image": name, "default_branch": "main", "schedule": "every day", "max_concurrent": "5", "csrf_token": csrf})
    assert bad.status_code == 400 and "must have five fields" in bad.text
    assert 'name="schedule" value="every day"' in bad.text, "the form shows what was typed, to correct it"
    assert re.search(r'name="max_concurrent"[^>]*value="5"', bad.text)
    assert not re.search(r'name="enabled"[^>]*checked', bad.text), "the box as it was sent: unchecked"
    cleared = browser.post(f"/triggers/{trigger.id}", data={"image": name, "default_branch": "main",
                                                            "enabled": "on", "csrf_token": csrf})
    assert cleared.status_code == 303
    with sessions(app)() as session:
        assert (session.get(Trigger, trigger.id).max_concurrent, session.get(Trigger, trigger.id).schedule) == \
            (None, None)


def test_editing_disabling_and_deleting_a_trigger(app):
    browser, csrf = signed_in_browser(app)
    trigger = make_trigger(app)
    saved = browser.post(f"/triggers/{trigger.id}", data={"image": "acme/renamed", "default_branch": "develop",
                                                          "enabled": "on", "csrf_token": csrf})
    assert saved.status_code == 303
    page = browser.get(f"/triggers/{trigger.id}").text
    assert "Trigger saved." in page and 'value="acme/renamed"' in page and 'value="develop"' in page
    bad = browser.post(f"/triggers/{trigger.id}", data={"image": "acme/x", "default_branch": "a b", "csrf_token": csrf})
    assert bad.status_code == 400 and "not a valid branch name" in bad.text
    asked = browser.post(f"/triggers/{trigger.id}/enabled", data={"enabled": "0", "csrf_token": csrf})
    assert asked.status_code == 200 and "Disable trigger" in asked.text  # a confirmation page first
    with sessions(app)() as session:
        assert session.get(Trigger, trigger.id).enabled is True
    assert browser.post(f"/triggers/{trigger.id}/enabled",
                        data={"enabled": "0", "confirmed": "1", "csrf_token": csrf}).status_code == 303
    with sessions(app)() as session:
        assert session.get(Trigger, trigger.id).enabled is False
    assert "Enable</button>" in browser.get(f"/triggers/{trigger.id}").text
    # deleting keeps the builds (their trigger becomes null) but not while one runs
    running = add_build(app, trigger, state="building")
    refused = browser.post(f"/triggers/{trigger.id}/delete", data={"csrf_token": csrf, "confirmed": "1"},
                           follow_redirects=True)
    assert f"build {running}" in refused.text and "flash-error" in refused.text
    set_build(app, running, state="failed")
    assert browser.post(f"/triggers/{trigger.id}/delete", data={"csrf_token": csrf, "confirmed": "1"}).status_code == 303
    with sessions(app)() as session:
        assert session.get(Trigger, trigger.id) is None
        assert session.get(Build, running).trigger_id is None
    assert browser.get(f"/triggers/{trigger.id}").status_code == 404
    assert f"/builds/{running}" in browser.get("/?state=failed").text


def test_viewers_cannot_change_triggers(app):
    viewer, csrf = signed_in_browser(app, "viewer")
    trigger = make_trigger(app)
    assert viewer.get("/triggers").status_code == 200
    page = viewer.get(f"/triggers/{trigger.id}").text
    assert f'action="/triggers/{trigger.id}/delete"' not in page and "Only admins" in page
    assert viewer.post(f"/triggers/{trigger.id}/delete", data={"csrf_token": csrf}).status_code == 403


def test_recent_deliveries_list_every_inbound_webhook_of_the_trigger(app, client):
    trigger = make_trigger(app)
    payload = fixture("github/ping.json")
    payload["repository"]["full_name"] = trigger.repository
    ping = json.dumps(payload).encode()
    assert client.post("/hooks/github", data=ping, headers=github_headers(ping, SECRET, "ping", "ping-1")).status_code == 200
    deleted = json.dumps(github_push("push_branch_deleted", repository=trigger.repository, ref="refs/heads/old",
                                     sha=None, clone_url=trigger.clone_url)).encode()
    assert client.post("/hooks/github", data=deleted, headers=github_headers(deleted, SECRET, delivery="del-2")).status_code == 202
    assert client.post("/hooks/github", data=deleted, headers=github_headers(deleted, "wrong", delivery="bad-3")).status_code == 401
    page = client.get(f"/triggers/{trigger.id}").text
    section = page[page.index("Recent deliveries"):]
    assert section.index("bad-3") < section.index("del-2") < section.index("ping-1")  # newest first
    assert 'data-state="rejected"' in section and "401" in section and "signature" in section
    assert 'data-state="ignored"' in section and 'data-state="ping"' in section


# --- deployments, deliveries, overview ---------------------------------------------------------


def test_deployments_and_deliveries_show_attempts_answers_and_a_redeliver_button(app, client):
    trigger = make_trigger(app)
    build_id = add_build(app, trigger)
    with sessions(app)() as session:
        deployment = Deployment(build_id=build_id, environment="staging-pages", kind="webhook",
                                repository=trigger.image, tag="main", state="failed", error="target said no")
        session.add(deployment)
        session.flush()
        url = seal_url(app.extensions["buildhook"].box, "https://deploy.example.com/hook?token=abc123")
        delivery = OutboundDelivery(
            uuid=uuid.uuid4().hex, event="deployment.requested", url_enc=url.enc, url_redacted=url.redacted,
            body="{}", deployment_id=deployment.id, build_id=build_id, state="failed", attempts=3, max_attempts=3,
            last_status_code=503, last_response="upstream unavailable", last_duration_ms=12)
        session.add(delivery)
        session.commit()
        delivery_id, deployment_id = delivery.id, deployment.id
    deployments = client.get("/deployments").text
    row = deployments[deployments.index("staging-pages"):]
    row = row[:row.index("</tr>")]
    assert "3/3" in row and "503" in row and "upstream unavailable" in row and "target said no" in row
    assert f'action="/deliveries/{delivery_id}/redeliver"' in row and "token=abc123" not in row
    deliveries = client.get("/deliveries?state=failed").text
    assert f'data-api="/api/deliveries/{delivery_id}/redeliver"' in deliveries and "503" in deliveries
    assert f"deployment #{deployment_id}" in deliveries and "https://deploy.example.com/hook?token=****<" in deliveries
    assert client.get("/deliveries?state=bogus").status_code == 400


def test_overview_numbers_from_hand_made_builds(tmp_path):
    url = f"sqlite:///{tmp_path / 'overview.db'}"
    migrate(url)
    engine = make_engine(url)
    made = make_sessionmaker(engine)
    now = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)

    def build(days_ago: float, state: str, queued: float | None, ran: float | None) -> dict[str, Any]:
        created = now - timedelta(days=days_ago)
        started = created + timedelta(seconds=queued) if queued is not None else None
        return {"provider": "github", "repository": "a/b", "clone_url": "x", "ref": "refs/heads/main",
                "ref_type": "branch", "ref_name": "main", "commit": "c" * 40, "image": "a/b", "tags": [],
                "dockerfile": "Dockerfile", "context": ".", "state": state, "created_at": created,
                "started_at": started, "cloning_at": started,
                "finished_at": started + timedelta(seconds=ran) if started and ran is not None else None}

    with made() as session:
        session.execute(insert(Build), [
            build(0.1, "succeeded", 10, 100), build(0.2, "failed", 20, 50), build(0.3, "building", 30, None),
            build(2, "succeeded", 40, 300), build(2, "skipped", 5, 1), build(2.1, "superseded", None, None),
            build(20, "succeeded", 1, 1),  # outside the window
        ])
        session.commit()
        numbers = overview(session, now=now)
    engine.dispose()
    assert numbers.total == 6 and (numbers.succeeded, numbers.failed) == (2, 1)
    assert numbers.success_rate == pytest.approx(2 / 3)
    assert numbers.median_build_seconds == pytest.approx(100)  # of 50, 100, 300: succeeded and failed only
    assert numbers.median_queue_seconds == pytest.approx(20)  # of 5, 10, 20, 30, 40
    assert len(numbers.days) == 14 and numbers.days[-1].day == now.date()
    assert numbers.days[-1].total == 3 and numbers.days[-1].by_state == {"succeeded": 1, "failed": 1, "building": 1}
    assert numbers.days[-3].total == 3 and sum(d.total for d in numbers.days) == 6


def test_overview_page_shows_the_numbers(tmp_path):
    url = f"sqlite:///{tmp_path / 'overview-page.db'}"
    migrate(url)
    env = {"BUILDHOOK_DATA_DIR": str(tmp_path), "BUILDHOOK_DATABASE_URL": url, "BUILDHOOK_SECRET_KEY": "ov-key",
           "BUILDHOOK_BROKER_URL": "redis://127.0.0.1:9/0"}
    own = create_app(Settings.from_env(env))
    now = datetime.now(timezone.utc)
    with own.extensions["buildhook"].sessions() as session:
        add_user(session, "ov-admin", "ov-admin-password", "admin")
        trigger = Trigger(provider="github", repository="ov/app", clone_url="x", secret_enc="x", image="ov/app")
        session.add(trigger)
        session.flush()
        for queued, ran, state in [(2, 60, "succeeded"), (4, 120, "succeeded"), (6, 90, "failed"), (8, 30, "succeeded")]:
            created = now - timedelta(hours=1)
            session.add(Build(trigger_id=trigger.id, provider="github", repository="ov/app", clone_url="x",
                              ref="refs/heads/main", ref_type="branch", ref_name="main", commit="e" * 40,
                              image="ov/app", tags=[], dockerfile="Dockerfile", context=".", state=state,
                              created_at=created, started_at=created + timedelta(seconds=queued),
                              finished_at=created + timedelta(seconds=queued + ran)))
        session.commit()
    browser = own.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
    browser.post("/login", data={"name": "ov-admin", "password": "ov-admin-password", "csrf_token": token})
    page = browser.get("/overview").text
    own.extensions["buildhook"].engine.dispose()
    assert '<span class="stat-value" id="stat-total">4</span>' in page
    assert '<span class="stat-value" id="stat-success">75%</span>' in page
    assert '<span class="stat-value" id="stat-build-time">1 min 15 s</span>' in page  # median of 30, 60, 90, 120
    assert '<span class="stat-value" id="stat-queue">5.0 s</span>' in page  # median of 2, 4, 6, 8
    assert f'data-day="{(now - timedelta(hours=1)).date()}" data-total="4"' in page  # the day they were created


# --- secrets ---------------------------------------------------------------------------------------


def test_no_page_shows_a_secret(app, client, admin_token):
    box = app.extensions["buildhook"].box
    secrets = {
        "webhook": "whsec-never-shown-" + uuid.uuid4().hex,
        "status": "ghp_statustoken" + uuid.uuid4().hex,
        "clone": "glpat-clonetoken" + uuid.uuid4().hex,
        "ssh": "-----BEGIN OPENSSH PRIVATE KEY-----" + uuid.uuid4().hex,
        "password": "pa55word" + uuid.uuid4().hex[:8],
        "outbound": "outbound-secret-" + uuid.uuid4().hex,
        "slack": "XoXoXoXoSlackPathToken" + uuid.uuid4().hex[:8].upper(),
        "query": "querytoken" + uuid.uuid4().hex,
    }
    name = f"acme/secret-{uuid.uuid4().hex[:8]}"
    spec = TriggerSpec(provider="github", repository=name, clone_url=f"https://deploy:{secrets['password']}@github.com/{name}.git",
                       secret=secrets["webhook"], image=name, status_token=secrets["status"],
                       clone_token=secrets["clone"])
    ssh_spec = TriggerSpec(provider="gitea", repository=name + "-ssh", clone_url="git@git.example.com:acme/x.git",
                           secret=secrets["webhook"], image=name + "-ssh", ssh_key=secrets["ssh"],
                           ssh_known_hosts="git.example.com ssh-ed25519 AAAA")
    with sessions(app)() as session:
        trigger = create_trigger(session, box, spec, "127.0.0.1:5000")
        create_trigger(session, box, ssh_spec, "127.0.0.1:5000")
        session.commit()
    build_id = add_build(app, trigger, clone_url=trigger.clone_url, state="failed",
                         error="fatal: could not read from remote")
    slack = seal_url(box, f"https://hooks.slack.com/services/T000/B000/{secrets['slack']}")
    query = seal_url(box, f"https://hooks.example.com/ci?token={secrets['query']}")
    with sessions(app)() as session:
        session.add(OutboundDelivery(uuid=uuid.uuid4().hex, event="build.failed", body="{}", build_id=build_id,
                                     url_enc=slack.enc, url_redacted=slack.redacted,
                                     secret_enc=box.seal(secrets["outbound"]), state="failed", attempts=1))
        session.add(OutboundDelivery(uuid=uuid.uuid4().hex, event="build.failed", body="{}", build_id=build_id,
                                     url_enc=query.enc, url_redacted=query.redacted,
                                     secret_enc=box.seal(secrets["outbound"]), state="succeeded", attempts=1))
        session.commit()
    pages = ["/", f"/?trigger={trigger.id}", f"/builds/{build_id}", "/triggers", f"/triggers/{trigger.id}", "/inbound",
             "/triggers/new", "/deployments", "/deliveries", "/overview", f"/?trigger={trigger.id}&partial=rows"]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        for what, value in [*secrets.items(), ("api token", admin_token)]:
            assert value not in response.text, f"{what} shown on {path}"
    assert "hooks.slack.com/services/****" in client.get("/deliveries").text
