"""Promotion, rollback and approval: moving a digest that already ran between environments.

``promote`` deploys exactly a deployment's digest (never a rebuild) through the deploy
rules of another environment for that repository (rules with ``auto: false`` included);
``rollback`` deploys the digest an environment ran before (or a named deployment's).
In an environment that requires approval, every new deployment (event, promotion or
rollback) waits in ``awaiting_approval`` (``hold_for_approval``, which also tells
subscriptions: ``deployment.awaiting_approval``) until an admin approves or rejects it.
Each of these is recorded in the audit log, in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.accounts.audit import record
from builder.deploys.environments import require_environment, requires_approval
from builder.errors import Conflict, InputError, NotFound
from builder.db.models import Build, DeployRule, Deployment, OutboundDelivery, utcnow
from builder.notify.subscriptions import notify
from builder.registries.credentials import RegistryAccess
from builder.settings import Settings

AWAITING = "awaiting_approval"


def hold_for_approval(session: Session, deployments: list[Deployment],
                      settings: Settings) -> list[OutboundDelivery]:
    """New deployments in environments that require approval wait for it; subscribers hear of each."""
    from builder.deploys.deployments import deployment_payload  # deployments imports this module

    queued: list[OutboundDelivery] = []
    for deployment in deployments:
        if not requires_approval(session, deployment.environment):
            continue
        deployment.state = AWAITING
        build = session.get(Build, deployment.build_id) if deployment.build_id else None
        queued += notify(session, "deployment.awaiting_approval", deployment_payload(deployment, build),
                         max_attempts=settings.delivery_attempts, trigger_id=build.trigger_id if build else None, ref_name=build.ref_name if build else None,
                         deployment_id=deployment.id, build_id=deployment.build_id)
    return queued


def _deployment(session: Session, deployment_id: int) -> Deployment:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFound(f"deployment {deployment_id} not found")
    return deployment


def _rules(session: Session, settings: Settings, environment: str, source: Deployment) -> list[DeployRule]:
    """The enabled deploy rules of ``environment`` for the source's repository and registry."""
    registries = RegistryAccess(settings)
    rules = session.scalars(select(DeployRule).where(
        DeployRule.environment == environment, DeployRule.repository == source.repository,
        DeployRule.enabled.is_(True)).order_by(DeployRule.id))
    found = [rule for rule in rules
             if registries.same(rule.registry_host or settings.registry, source.registry_host or settings.registry)]
    if not found:
        raise Conflict(f"no deploy rule of environment {environment!r} deploys {source.repository} "
                       f"from {source.registry_host}")
    return found


def _redeploy(session: Session, settings: Settings, source: Deployment, environment: str, cause: str,
              actor: str) -> tuple[list[Deployment], list[OutboundDelivery]]:
    """One deployment of ``source``'s digest per target of ``environment``'s rules, held for approval if needed."""
    if source.state != "succeeded" or not source.digest:
        raise Conflict(f"deployment {source.id} is {source.state}: only a succeeded deployment's digest is deployed "
                       "again")
    created = []
    for rule in _rules(session, settings, environment, source):
        for target in rule.targets:
            created.append(Deployment(
                rule_id=rule.id, target_id=target.id, build_id=source.build_id, environment=environment,
                kind=target.kind, registry_host=rule.registry_host or settings.registry,
                repository=source.repository, tag=source.tag, digest=source.digest, cause=cause,
                source_deployment_id=source.id, requested_by=actor))
    session.add_all(created)
    session.flush()
    return created, hold_for_approval(session, created, settings)


def promote(session: Session, settings: Settings, deployment_id: int, environment: Any,
            actor: str) -> tuple[list[Deployment], list[OutboundDelivery]]:
    if not isinstance(environment, str) or not environment:
        raise InputError('expected {"environment": "production"}')
    source = _deployment(session, deployment_id)
    require_environment(session, environment)
    if environment == source.environment:
        raise InputError(f"deployment {source.id} is already in {environment}: promote it to another environment")
    created, queued = _redeploy(session, settings, source, environment, "promotion", actor)
    record(session, actor, "deployment.promoted", f"deployment {source.id}", environment=environment,
           digest=source.digest, repository=source.repository, deployments=[d.id for d in created])
    return created, queued


def rollback_source(session: Session, environment: str, repository: str, to: Any) -> Deployment:
    """The deployment whose digest a rollback deploys: ``to``, or the one before what runs now."""
    if to is not None:
        if isinstance(to, bool) or not isinstance(to, int):
            raise InputError("to must be a deployment id")
        chosen = _deployment(session, to)
        if chosen.repository != repository:
            raise InputError(f"deployment {to} deployed {chosen.repository}, not {repository}")
        return chosen
    ran = list(session.scalars(select(Deployment).where(
        Deployment.environment == environment, Deployment.repository == repository,
        Deployment.state == "succeeded", Deployment.digest.is_not(None)).order_by(Deployment.id.desc()).limit(200)))
    if not ran:
        raise Conflict(f"nothing of {repository} has run in {environment}")
    for earlier in ran[1:]:
        if earlier.digest != ran[0].digest:
            return earlier
    raise Conflict(f"{environment} has run only {ran[0].digest} of {repository}: nothing to roll back to")


def rollback(session: Session, settings: Settings, environment: str, data: Any,
             actor: str) -> tuple[list[Deployment], list[OutboundDelivery]]:
    if not isinstance(data, dict) or not isinstance(data.get("repository"), str):
        raise InputError('expected {"repository": "acme/widget", "to": deployment id (optional)}')
    require_environment(session, environment)
    source = rollback_source(session, environment, data["repository"], data.get("to"))
    created, queued = _redeploy(session, settings, source, environment, "rollback", actor)
    record(session, actor, "environment.rolled_back", environment, repository=source.repository,
           digest=source.digest, to=source.id, deployments=[d.id for d in created])
    return created, queued


def decide(session: Session, deployment_id: int, approve: bool, actor: str) -> Deployment:
    """Approve (it is queued to run) or reject (it ends ``rejected``) a deployment awaiting approval."""
    deployment = _deployment(session, deployment_id)
    if deployment.state != AWAITING:
        raise Conflict(f"deployment {deployment_id} is {deployment.state}, not awaiting approval")
    deployment.decided_by, deployment.decided_at = actor, utcnow()
    if approve:
        deployment.state, deployment.dispatched_at = "pending", None
    else:
        deployment.state, deployment.finished_at = "rejected", utcnow()
        deployment.error = f"rejected by {actor}"
    record(session, actor, "deployment.approved" if approve else "deployment.rejected", f"deployment {deployment.id}",
           environment=deployment.environment, repository=deployment.repository, digest=deployment.digest)
    return deployment
