"""The pages' buttons as plain forms: every change works without JavaScript.

Each action is a ``POST`` with the page's CSRF token (checked for every change in
``webhooks/auth.py``) and is answered with a ``303`` redirect to a page to read
(post/redirect/get), so reloading never repeats it; the outcome is a flashed message. A
destructive action (cancel, disable, delete) first answers with a confirmation page unless the
form says ``confirmed=1``: JavaScript's ``confirm()`` adds that field, a browser without
JavaScript gets the page. JavaScript only enhances: ``static/app.js`` sends the same buttons to
the JSON API and updates the page in place.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from builder.notify.deliveries import redeliver
from builder.errors import InputError, TransientError
from builder.builds.manual_runs import check_choice, start_run
from builder.triggers.services import get_trigger
from webhooks.auth import current_user, local_next
from webhooks.build_actions import cancel_and_announce, rebuild_and_dispatch
from webhooks.context import db, services
from webhooks.pages import bp

RUN_KINDS = ("branch", "tag", "sha")


def see_other(location: str) -> Response:
    """The answer to a form: 303, so the browser GETs the page and a reload does not post again."""
    return redirect(location, code=303)


def needs_confirmation(question: str, button: str, back: str) -> Any:
    """A confirmation page for this form, unless it was confirmed already (``confirmed=1``);
    ``back``: where "No" leads."""
    if request.form.get("confirmed") == "1":
        return None
    fields = {key: value for key, value in request.form.items() if key not in ("csrf_token", "confirmed")}
    return render_template("confirm.html", question=question, button=button, action=request.path,
                           fields=fields, back=local_next(back))


def attempt(action: Callable[[], str], failed_to: str) -> Response:
    """Run ``action`` (it returns where to go); a refusal (a finished build, a disabled trigger)
    is flashed and the person goes back to ``failed_to``."""
    try:
        return see_other(action())
    except (InputError, TransientError) as exc:
        db().rollback()
        flash(str(exc), "error")
        return see_other(failed_to)


@bp.post("/builds/<int:build_id>/cancel")
def build_cancel(build_id: int):  # type: ignore[no-untyped-def]
    page = url_for("dashboard.build_page", build_id=build_id)
    asked = needs_confirmation(f"Cancel build #{build_id}?", "Cancel the build", page)
    if asked is not None:
        return asked

    def cancel() -> str:
        build = cancel_and_announce(build_id)
        flash(f"Build #{build_id} cancelled." if build.state == "cancelled"
              else f"Cancel requested: the worker stops build #{build_id} at its next step.")
        return page
    return attempt(cancel, page)


@bp.post("/builds/<int:build_id>/rebuild")
def build_rebuild(build_id: int):  # type: ignore[no-untyped-def]
    def again() -> str:
        build = rebuild_and_dispatch(build_id)
        flash(f"Build #{build.id} queued: a rebuild of #{build_id}.")
        return url_for("dashboard.build_page", build_id=build.id)
    return attempt(again, url_for("dashboard.build_page", build_id=build_id))


@bp.post("/deliveries/<int:delivery_id>/redeliver")
def delivery_redeliver(delivery_id: int):  # type: ignore[no-untyped-def]
    back = local_next(request.form.get("back") or url_for("dashboard.deliveries"))

    def again() -> str:
        session = db()
        delivery = redeliver(session, delivery_id)
        session.commit()
        services().send_deliveries([delivery.id])
        flash(f"Delivery #{delivery_id} queued to be sent again.")
        return back
    return attempt(again, back)


@bp.post("/triggers/<int:trigger_id>/runs")
def trigger_run(trigger_id: int):  # type: ignore[no-untyped-def]
    """Run now: a branch, a tag or a commit (``kind`` + ``ref``), as ``POST /api/triggers/<id>/runs``."""
    page = url_for("dashboard.trigger_page", trigger_id=trigger_id)

    def run() -> str:
        kind = request.form.get("kind") or "branch"
        ref = (request.form.get("ref") or "").strip()
        if kind not in RUN_KINDS:
            raise InputError(f"run a branch, a tag or a commit, not {kind!r}")
        choice = {kind: ref}
        check_choice(**choice)
        ctx = services()
        session = db()
        user = current_user()
        builds = start_run(session, get_trigger(session, trigger_id), ctx.settings, **choice,
                           by=user.name if user is not None else None)
        ctx.start_builds([build.id for build in builds])
        numbers = ", ".join(f"#{build.id}" for build in builds)
        flash(f"Started {numbers} from {kind} {ref}.")
        return url_for("dashboard.build_page", build_id=builds[0].id) if len(builds) == 1 else \
            url_for("dashboard.history", trigger=trigger_id)
    return attempt(run, page)
