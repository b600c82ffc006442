"""What every page shares: the ``dashboard`` blueprint, the static files, Jinja filters.

The page modules (``dashboard``, ``pages_triggers``, ``pages_ops``) add their views to
this one blueprint, so ``url_for('dashboard.<view>')`` names them all. Static files are
served from ``static/`` at the project root, next to ``templates/`` (``webhooks/assets.py``),
compressed and cached by version (``webhooks/static_assets.py``).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, jsonify, render_template, request
from markupsafe import Markup

from builder.builds.queries import started_by_text
from builder.triggers.git_access import redact_url
from builder.errors import InputError
from builder.builds.history import commit_url, is_active, is_error_line, repository_web_url
from builder.db.models import Build
from webhooks.log_render import ansi_html
from webhooks.static_assets import asset, serve_static_files

bp = Blueprint("dashboard", __name__)


bp.record_once(lambda state: serve_static_files(state.app))


@bp.errorhandler(InputError)
def page_input_error(error: InputError):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return jsonify({"error": str(error), "status": error.status}), error.status
    return render_template("error.html", status=error.status, message=str(error)), error.status


# --- filters ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """``3 min ago`` (or ``in 3 min`` for a time to come), a date after 30 days."""
    if value is None:
        return ""
    seconds = ((now or _now()) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 45:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{max(1, round(seconds / 60))} min"
    elif seconds < 86400:
        text = f"{round(seconds / 3600)} h"
    elif seconds < 30 * 86400:
        text = f"{round(seconds / 86400)} d"
    else:
        return value.strftime("%Y-%m-%d")
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def build_seconds(build: Build, now: datetime | None = None) -> float | None:
    """Started → finished, or → now while it runs."""
    if build.started_at is None:
        return None
    end = build.finished_at or (now or _now() if is_active(build.state) else None)
    return max(0.0, (end - build.started_at).total_seconds()) if end else None


def utc(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def clock(value: datetime | None) -> str:
    """``15:48:12``, UTC: a log line's time."""
    return value.astimezone(timezone.utc).strftime("%H:%M:%S") if value else ""


def iso(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).isoformat() if value else ""


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


_TOKENISH = re.compile(r"^(?:(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-.~+=]{16,}|[A-Za-z0-9]{20,})$")


def shown_url(url: str | None) -> str:
    """A URL fit to show: no user or password, no query (tokens hide there), no
    token-like path parts (a Slack webhook's path is its secret)."""
    if not url:
        return ""
    parts = urlsplit(redact_url(url))
    if not parts.scheme or not parts.netloc:
        return redact_url(url)
    path = "/".join(part[:4] + "…" if _TOKENISH.match(part) else part for part in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


PILL = {
    "succeeded": "ok", "delivered": "ok", "accepted": "ok", "ping": "info",
    "failed": "bad", "rejected": "bad", "error": "bad",
    "cloning": "run", "building": "run", "pushing": "run", "running": "run",
    "queued": "wait", "pending": "wait",
    "skipped": "dim", "superseded": "dim", "cancelled": "dim", "ignored": "dim", "duplicate": "dim",
    "no_trigger": "dim", "disabled": "dim", "enabled": "ok",
}


def pill(state: str | None, label: str | None = None) -> Markup:
    state = state or "unknown"
    kind = PILL.get(state, "dim")
    return Markup('<span class="pill pill-{}" data-state="{}">{}</span>').format(kind, state, label or state)


def short_digest(digest: str | None) -> str:
    if not digest:
        return ""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def register_filters(state: Any) -> None:
    app = state.app
    app.jinja_env.filters.update(ago=ago, duration=duration, utc=utc, iso=iso, first_line=first_line,
                                 shown_url=shown_url, short_digest=short_digest)
    app.jinja_env.globals.update(pill=pill, asset=asset, commit_url=commit_url, build_seconds=build_seconds,
                                 repository_web_url=repository_web_url, is_active=is_active,
                                 is_error_line=is_error_line, started_by_text=started_by_text)
    app.jinja_env.filters.update(ansi_html=ansi_html, clock=clock)


bp.record_once(register_filters)
