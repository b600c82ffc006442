"""Environments: what runs in each, per repository, its history, and whether it requires approval.

An environment exists once a deploy rule names it; its settings (``requires_approval``)
are an ``environments`` row, made when first set. What runs there now is, per repository,
the digest of its newest succeeded deployment.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from builder.accounts.audit import record
from builder.errors import InputError, NotFound
from builder.db.models import Build, DeployRule, Deployment, Environment, utcnow


def environment_names(session: Session) -> list[str]:
    return sorted(session.scalars(select(DeployRule.environment).distinct()))


def require_environment(session: Session, name: str) -> None:
    if not session.scalar(select(DeployRule.id).where(DeployRule.environment == name).limit(1)):
        raise NotFound(f"environment {name!r} not found: an environment exists once a deploy rule names it")


def requires_approval(session: Session, name: str) -> bool:
    settings = session.get(Environment, name)
    return bool(settings and settings.requires_approval)


def set_requires_approval(session: Session, name: str, value: Any, actor: str) -> Environment:
    require_environment(session, name)
    if not isinstance(value, bool):
        raise InputError('expected {"requires_approval": true|false}')
    settings = session.get(Environment, name) or Environment(name=name)
    before = bool(settings.requires_approval)
    settings.requires_approval, settings.updated_at, settings.updated_by = value, utcnow(), actor
    session.add(settings)
    record(session, actor, "environment.updated", name, requires_approval=value, was=before)
    return settings


def current_deployments(session: Session, name: str) -> list[Deployment]:
    """Per repository, the newest succeeded deployment in environment ``name``: what runs there now."""
    newest = (select(func.max(Deployment.id)).where(Deployment.environment == name, Deployment.state == "succeeded")
              .group_by(Deployment.repository))
    return list(session.scalars(select(Deployment).where(Deployment.id.in_(newest)).order_by(Deployment.repository)))


def history(session: Session, name: str, limit: int = 20) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.environment == name)
                                .order_by(Deployment.id.desc()).limit(limit)))


def running_to_dict(session: Session, deployment: Deployment) -> dict[str, Any]:
    build = session.get(Build, deployment.build_id) if deployment.build_id else None
    return {
        "repository": deployment.repository, "registry": deployment.registry_host, "tag": deployment.tag,
        "digest": deployment.digest, "deployment": deployment.id, "build": deployment.build_id,
        "commit": build.commit if build else None, "cause": deployment.cause,
        "deployed_at": (deployment.finished_at or deployment.created_at).isoformat(),
        "deployed_by": deployment.requested_by or ("registry event" if deployment.cause == "event" else None),
        "approved_by": deployment.decided_by,
    }


def environment_to_dict(session: Session, name: str) -> dict[str, Any]:
    settings = session.get(Environment, name)
    waiting = session.scalar(select(func.count(Deployment.id)).where(
        Deployment.environment == name, Deployment.state == "awaiting_approval"))
    return {"name": name, "requires_approval": bool(settings and settings.requires_approval),
            "awaiting_approval": waiting or 0,
            "running": [running_to_dict(session, d) for d in current_deployments(session, name)]}
