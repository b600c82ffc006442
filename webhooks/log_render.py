"""A build log line as HTML: terminal colours rendered, everything else escaped.

Colours go through ansi2html (a maintained converter, ``escaped=True``: the text is HTML-escaped,
and its output is spans with ``ansi<code>`` classes, styled in ``static/app.css``; no inline
styles, which the Content-Security-Policy would refuse). OSC sequences (terminal titles,
hyperlinks) are dropped first: a build's output must not become a link on the page. A line
without an escape byte is only escaped. ``static/app.js`` renders lines that arrive live with
the same classes.
"""

from __future__ import annotations

from ansi2html import Ansi2HTMLConverter
from markupsafe import Markup, escape

from builder.builds.run.ansi import OSC
from builder.builds.history import is_error_line
from builder.db.models import BuildLogLine


def ansi_html(text: str) -> Markup:
    if "\x1b" not in text:
        return escape(text)
    converter = Ansi2HTMLConverter(inline=False, escaped=True, linkify=False, dark_bg=True)
    return Markup(converter.convert(OSC.sub("", text), full=False, ensure_trailing_newline=False))


def first_error_seq(lines: list[BuildLogLine]) -> int | None:
    """The line a failed log opens at: its first error line."""
    return next((line.seq for line in lines if is_error_line(line.text)), None)
