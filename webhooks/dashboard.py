"""Server-rendered pages: the build history and one build."""

from __future__ import annotations

from flask import Blueprint, render_template

from sqlalchemy import select

from builder.builds import get_build, list_builds, log_lines
from builder.models import Deployment, OutboundDelivery
from webhooks.context import db

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def history():  # type: ignore[no-untyped-def]
    return render_template("history.html", builds=list_builds(db(), limit=100))


@bp.get("/builds/<int:build_id>")
def build_page(build_id: int):  # type: ignore[no-untyped-def]
    session = db()
    build = get_build(session, build_id)
    deployments = session.scalars(select(Deployment).where(Deployment.build_id == build_id).order_by(Deployment.id))
    deliveries = session.scalars(
        select(OutboundDelivery).where(OutboundDelivery.build_id == build_id).order_by(OutboundDelivery.id))
    return render_template("build.html", build=build, lines=log_lines(session, build_id),
                           deployments=list(deployments), deliveries=list(deliveries))
