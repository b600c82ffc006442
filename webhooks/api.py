"""The JSON API under /api/: builds and the overview here; triggers in ``webhooks.api_triggers``,
users and tokens in ``webhooks.api_accounts`` (their views join this blueprint)."""

from __future__ import annotations

from typing import Iterator

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.queries import build_to_dict, get_build, log_lines
from builder.errors import InputError
from builder.ids import MAX_ID, parse_id
from builder.builds.history import BuildQuery, history
from builder.builds.overview import OVERVIEW_DAYS, overview, overview_to_dict
from webhooks.context import db, services

bp = Blueprint("api", __name__, url_prefix="/api")

PAGE_DEFAULT, PAGE_MAX, OVERVIEW_MAX_DAYS = 50, 500, 90
TEXT_LOG_PAGE = 5000  # lines read per query while the text log is sent


def int_arg(name: str, default: int | None = None, maximum: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = parse_id(raw, f"query parameter {name!r} must be a whole number from 0 to {MAX_ID}")
    return min(value, maximum) if maximum is not None else value


def page_size(default: int = PAGE_DEFAULT) -> int:
    """``limit``: 1 to 500 (more is 500), ``default`` when absent; anything else, 0 included, is a 400."""
    refusal = f"query parameter 'limit' must be a whole number from 1 to {PAGE_MAX}"
    raw = request.args.get("limit")
    size = default if raw is None or raw == "" else min(parse_id(raw, refusal), PAGE_MAX)
    if not size:
        raise InputError(refusal)
    return size


@bp.get("/builds")
def builds_index():  # type: ignore[no-untyped-def]
    """Builds newest first, filtered like the history page: {"builds": [...], "next": cursor or null}."""
    wanted = BuildQuery.from_args(request.args)
    builds, next_cursor = history(db(), wanted, before=int_arg("before"), limit=page_size())
    return jsonify({"builds": [build_to_dict(b) for b in builds], "next": next_cursor})


@bp.get("/builds/<int:build_id>")
def builds_show(build_id: int):  # type: ignore[no-untyped-def]
    return jsonify(build_to_dict(get_build(db(), build_id)))


@bp.get("/builds/<int:build_id>/log")
def builds_log(build_id: int):  # type: ignore[no-untyped-def]
    session = db()
    build = get_build(session, build_id)
    if request.args.get("format") == "text":
        response = Response(_text_log(services().sessions, build_id, int_arg("after", 0) or 0),
                            mimetype="text/plain")
        if request.args.get("download") == "1":
            response.headers["Content-Disposition"] = f'attachment; filename="build-{build.id}.log"'
        return response
    lines = log_lines(session, build_id, after=int_arg("after", 0) or 0)
    return jsonify(
        {
            "build": build.id,
            "state": build.state,
            "lines": [{"seq": line.seq, "text": line.text} for line in lines],
            "next_after": lines[-1].seq if lines else int_arg("after", 0),
        }
    )


def _text_log(sessions: sessionmaker[Session], build_id: int, after: int) -> Iterator[str]:
    """Every line after ``after``, streamed a page at a time (each page a short session of its own:
    the request's is closed once the view returns), so the whole log is sent, its last line (e.g.
    the log limit's) included, whatever its length."""
    while True:
        with sessions() as session:
            page = [(line.seq, line.text) for line in log_lines(session, build_id, after=after, limit=TEXT_LOG_PAGE)]
        if page:
            yield "".join(f"{text}\n" for _seq, text in page)
            after = page[-1][0]
        if len(page) < TEXT_LOG_PAGE:
            return


@bp.get("/overview")
def overview_show():  # type: ignore[no-untyped-def]
    """The overview page's numbers: builds per day and state, success rate, median build and queue times."""
    days = int_arg("days", OVERVIEW_DAYS)
    if not days or days > OVERVIEW_MAX_DAYS:
        raise InputError(f"days must be between 1 and {OVERVIEW_MAX_DAYS}")
    return jsonify(overview_to_dict(overview(db(), days=days)))


from webhooks import api_accounts, api_triggers  # noqa: E402,F401  (their views join the blueprint)
