"""The text log download (``GET /api/builds/<id>/log?format=text``) is the whole log, however long."""

from __future__ import annotations

from builder.builds.run.log import BuildLog, log_limit_message
from builder.db.models import Build


def test_a_log_over_10000_lines_downloads_whole_ending_with_the_log_limit_line(app, client):
    services = app.extensions["buildhook"]
    with services.sessions() as session:
        build = Build(provider="github", repository="acme/chatty", clone_url="https://git.example.com/acme/chatty.git",
                      ref="refs/heads/main", ref_type="branch", ref_name="main", commit="e" * 40,
                      image="127.0.0.1:5000/acme/chatty", tags=["main"], dockerfile="Dockerfile", context=".",
                      state="failed")
        session.add(build)
        session.commit()
        build_id = build.id
    limit = 11 * 12_000 + 5  # "line 00001\n" is 11 bytes: the 12,001st line passes the limit
    build_log = BuildLog(services.sessions, build_id, batch=2000, max_bytes=limit)
    for number in range(1, 12_101):
        build_log(f"line {number:05d}")  # the real writer: past the limit it writes its line, then nothing
    build_log.flush()

    response = client.get(f"/api/builds/{build_id}/log?format=text&download=1")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"] == f'attachment; filename="build-{build_id}.log"'
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == 12_001
    assert lines[0] == "line 00001" and lines[11_999] == "line 12000"
    assert lines[-1] == log_limit_message(limit)

    later = client.get(f"/api/builds/{build_id}/log?format=text&after=11990").get_data(as_text=True).splitlines()
    assert later[0] == "line 11991" and later[-1] == log_limit_message(limit) and len(later) == 11
    # the JSON form stays paged: 10,000 lines at most, and where to go on from
    page = client.get(f"/api/builds/{build_id}/log").json
    assert len(page["lines"]) == 10_000 and page["next_after"] == 10_000
