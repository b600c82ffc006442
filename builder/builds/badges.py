"""Status badges for READMEs: the state of a branch's latest build, as a shields.io-like SVG.

``GET /badge/<trigger>.svg?branch=main`` (``webhooks/badges.py``). The state is that of the
latest build of the branch that ran or runs: ``passing`` (succeeded), ``failing`` (failed),
``running`` (queued or under way), ``unknown`` (no such build). Cancelled, skipped and
superseded builds say nothing about the code and are passed over.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.builds.history import ACTIVE_STATES
from builder.db.models import Build, Trigger

BADGE_STATES = {"succeeded": "passing", "failed": "failing", **{state: "running" for state in ACTIVE_STATES}}
COLOURS = {"passing": "#2e7d32", "failing": "#c62828", "running": "#1565c0", "unknown": "#616161"}
LABEL = "build"
CHAR_WIDTH, PADDING = 7, 10  # Verdana 11 px, near enough for lower-case words


def badge_state(session: Session, trigger: Trigger, branch: str) -> str:
    """passing, failing, running or unknown: the branch's latest build that ran or runs."""
    state = session.scalar(
        select(Build.state).where(Build.trigger_id == trigger.id, Build.ref_type == "branch",
                                  Build.ref_name == branch, Build.state.in_(tuple(BADGE_STATES)))
        .order_by(Build.id.desc()).limit(1))
    return BADGE_STATES.get(state or "", "unknown")


def badge_svg(state: str, branch: str) -> str:
    """A two-part badge, "build | passing"; the branch (escaped) names it for screen readers."""
    left, right = len(LABEL) * CHAR_WIDTH + PADDING, len(state) * CHAR_WIDTH + PADDING
    width = left + right
    title = escape(f"{LABEL} ({branch}): {state}", quote=True)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        f'<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{COLOURS[state]}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{LABEL}</text>'
        f'<text x="{left + right / 2}" y="14">{state}</text></g></svg>'
    )


def badge_markdown(public_url: str, trigger: Trigger) -> str:
    """What to paste into a README: the badge of the default branch, linking to the trigger's builds."""
    base = public_url.rstrip("/")
    branch = quote(trigger.default_branch, safe="/")
    return f"[![build]({base}/badge/{trigger.id}.svg?branch={branch})]({base}/?trigger={trigger.id})"
