"""Build logs as the page shows them: colours from real `docker build` output (classic builder
and BuildKit) rendered as escaped HTML, error lines found after colour codes, a link to every
line, per-line times, search without JavaScript, a failed log pointing at its failing line."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from builder.builds.run.ansi import strip_ansi
from builder.builds.history import is_error_line
from tests.payloads import FIXTURES
from tests.webhooks.test_pages import add_build, add_lines, make_trigger
from webhooks.log_render import ansi_html

ANSI = FIXTURES / "ansi"


def classic_lines() -> list[str]:
    chunks = json.loads((ANSI / "classic-build-stream.json").read_text())
    return "".join(chunk.get("stream", "") for chunk in chunks).splitlines()


def buildkit_lines() -> list[str]:
    return (ANSI / "buildkit-plain-progress.txt").read_text().splitlines()


def test_colours_of_a_real_classic_build_become_classes_and_the_text_stays_escaped():
    [failing] = [line for line in classic_lines() if line.startswith("\x1b[91m")]
    assert failing.startswith("\x1b[91mERROR")
    html = str(ansi_html(failing))
    assert html == '<span class="ansi91">ERROR: 1 test failed: test_login &lt;b&gt;bold&lt;/b&gt;</span>'
    [ok] = [line for line in classic_lines() if line.startswith("\x1b[1m")]
    assert str(ansi_html(ok)).endswith('<span class="ansi1 ansi32">ok</span> 12 passed')


def test_colours_of_real_buildkit_plain_output_render_too():
    [failing] = [line for line in buildkit_lines() if "1 test failed" in line and line.startswith("#5 0.")]
    html = str(ansi_html(failing))
    assert re.fullmatch(r'#5 0\.\d+ <span class="ansi91">ERROR: 1 test failed: test_login &lt;b&gt;bold&lt;/b&gt;</span>',
                        html), html
    assert "\x1b" not in "".join(str(ansi_html(line)) for line in buildkit_lines())


def test_the_error_line_is_found_after_its_colour_code():
    [failing] = [line for line in classic_lines() if line.startswith("\x1b[91m")]
    assert is_error_line(failing)  # "\x1b[91mERROR": no word boundary before ERROR until the code is gone
    assert strip_ansi(failing) == "ERROR: 1 test failed: test_login <b>bold</b>"
    assert not is_error_line("\x1b[1m\x1b[32mok\x1b[0m 12 passed")


def test_no_markup_or_link_gets_through_a_log_line():
    assert str(ansi_html("<script>alert(1)</script>")) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    hyperlink = "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 \x1b[31m<img src=x onerror=alert(1)>"
    html = str(ansi_html(hyperlink))
    assert "<a" not in html and "evil.example" not in html and "<img" not in html and "&lt;img" in html


def test_the_build_page_links_every_line_shows_its_time_and_opens_a_failed_log_at_its_error(app, client):
    trigger = make_trigger(app)
    build_id = add_build(app, trigger, state="failed", error="docker build failed")
    add_lines(app, build_id, classic_lines())
    page = client.get(f"/builds/{build_id}").text
    lines = classic_lines()
    error_seq = next(seq for seq, text in enumerate(lines, 1) if is_error_line(text))
    assert f'href="#L{error_seq}">Go to line {error_seq}</a>' in page
    assert f'data-first-error="{error_seq}"' in page
    row = re.search(rf'<div class="line err" id="L{error_seq}" data-seq="{error_seq}">(.*?)</div>', page).group(1)
    assert f'<a class="ln" href="#L{error_seq}" aria-label="Line {error_seq}">{error_seq}</a>' in row
    assert re.search(r'<time class="ts" datetime="[^"]+">\d\d:\d\d:\d\d</time>', row)
    assert '<span class="ansi91">ERROR: 1 test failed' in row and "\x1b" not in page
    assert page.count('class="ln"') == len(lines)  # fold heads: a plain number in the summary


def test_searching_the_log_without_javascript_lists_the_matching_lines(app, client):
    trigger = make_trigger(app)
    build_id = add_build(app, trigger, state="failed", error="boom")
    add_lines(app, build_id, classic_lines())
    page = client.get(f"/builds/{build_id}?q=test_login").text
    shown = re.findall(r'<div class="line[^"]*" id="L(\d+)"', page)
    assert len(shown) == 2 and f"2 of {len(classic_lines())} lines" in page  # the RUN line and the output
    nothing = client.get(f"/builds/{build_id}?q=no-such-words").text
    assert "No line contains" in nothing and 'id="L' not in nothing


def test_a_buildkit_log_folds_by_its_step_headers_and_the_failing_step_is_marked():
    from builder.builds.history import fold_log
    from builder.db.models import BuildLogLine

    text = (FIXTURES / "ansi" / "buildkit-plain-progress.txt").read_text()
    lines = [BuildLogLine(seq=n, text=line) for n, line in enumerate(text.splitlines(), 1)]
    folds = [group for group in fold_log(lines) if group.head is not None]
    assert [strip_ansi(g.head.text).split("] ", 1)[0] for g in folds] == ["#4 [1/2", "#5 [2/2"]
    copy, run = folds
    assert not copy.error and run.error  # the RUN step printed ERROR and exited 1
