"""From a registry's image-pushed event to deployments, and running one deployment.

``receive_registry_events`` records every event (deduplicated on its id), links
images buildhook built itself to their build, and creates one ``Deployment`` per
matching rule target, in one transaction. ``run_deployment`` resolves the tag
to its digest and deploys that digest: a signed webhook to a deploy system, or
a container recreated on a Docker Engine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from builder.deploys.rules import matching_rules
from builder.metrics import DEPLOYMENTS
from builder.db.models import Build, DeployRule, Deployment, OutboundDelivery, RegistryEvent, utcnow
from builder.notify.subscriptions import notify
from builder.deploys.promotions import hold_for_approval
from builder.registries import IgnoredEvent, ImagePushed
from builder.registries.credentials import RegistryAccess
from builder.settings import Settings


@dataclass
class RegistryResult:
    accepted: int = 0
    ignored: int = 0
    duplicates: int = 0
    deployments: list[int] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "ignored": self.ignored, "duplicates": self.duplicates,
                "deployments": self.deployments}


def receive_registry_events(sessions: sessionmaker[Session], source: str, events: list[ImagePushed | IgnoredEvent],
                            settings: Settings) -> RegistryResult:
    for attempt in (1, 2):  # a concurrent delivery of the same events loses the race once, then sees them
        with sessions() as session:
            try:
                result = _receive(session, source, events, settings)
                session.commit()
                return result
            except IntegrityError:
                session.rollback()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _receive(session: Session, source: str, events: list[ImagePushed | IgnoredEvent],
             settings: Settings) -> RegistryResult:
    result = RegistryResult()
    registries = RegistryAccess(settings)
    created: list[Deployment] = []
    notified: list[OutboundDelivery] = []
    seen: set[str] = set()
    for event in events:
        event_id = event.event_id or f"no-id-{uuid.uuid4().hex}"
        if event_id in seen or session.scalar(select(RegistryEvent.id).where(
                RegistryEvent.source == source, RegistryEvent.event_id == event_id)):
            result.duplicates += 1
            continue
        seen.add(event_id)
        if isinstance(event, IgnoredEvent):
            session.add(RegistryEvent(source=source, event_id=event_id, action=event.action,
                                      repository=event.repository, outcome="ignored", reason=event.reason))
            result.ignored += 1
            continue
        if not registries.trusts(event.registry):
            session.add(RegistryEvent(source=source, event_id=event_id, action="push", registry_host=event.registry,
                                      repository=event.repository, tag=event.tag, digest=event.digest,
                                      outcome="ignored", reason=_untrusted(event.registry)))
            result.ignored += 1
            continue
        build = _built_by_us(session, event)
        named = matching_rules(session, event.repository, event.tag or "")
        rules = [rule for rule in named if registries.same(rule.registry_host or settings.registry, event.registry)]
        outcome, reason = _outcome(event, named, rules, settings)
        record = RegistryEvent(
            source=source, event_id=event_id, action="push", registry_host=event.registry,
            repository=event.repository, tag=event.tag, digest=event.digest,
            build_id=build.id if build else None, outcome=outcome, reason=reason)
        session.add(record)
        session.flush()
        if outcome == "ignored":
            result.ignored += 1
        else:
            result.accepted += 1
        payload = {"repository": event.repository, "tag": event.tag, "digest": event.digest,
                   "registry": event.registry, "build": build.id if build else None,
                   "commit": build.commit if build else None}
        notified += notify(session, "image.pushed", payload, max_attempts=settings.delivery_attempts,
                           trigger_id=build.trigger_id if build else None,
                           ref_name=build.ref_name if build else None, build_id=build.id if build else None)
        for rule in rules:
            for target in rule.targets:
                deployment = Deployment(
                    rule_id=rule.id, target_id=target.id, registry_event_id=record.id,
                    build_id=build.id if build else None, environment=rule.environment, kind=target.kind,
                    registry_host=rule.registry_host or settings.registry, repository=event.repository,
                    tag=event.tag or "", digest=event.digest)
                session.add(deployment)
                created.append(deployment)
    session.flush()
    notified += hold_for_approval(session, created, settings)
    session.flush()
    result.deployments = [d.id for d in created]
    result.deliveries = [d.id for d in notified]
    return result


def _untrusted(registry: str | None) -> str:
    named = f"registry {registry}" if registry else "an event that names no registry"
    return (f"{named} is not trusted: images are deployed only from BUILDHOOK_REGISTRY and "
            "BUILDHOOK_TRUSTED_REGISTRIES")


def _outcome(event: ImagePushed, named: list[DeployRule], rules: list[DeployRule],
             settings: Settings) -> tuple[str, str | None]:
    """accepted (a rule of this registry matches), ignored (only rules of other registries do) or no_rule."""
    if rules:
        return "accepted", None
    if named:
        theirs = sorted({rule.registry_host or settings.registry for rule in named})
        return "ignored", (f"registry {event.registry} is not the registry of the deploy rules for "
                           f"{event.repository}:{event.tag} ({', '.join(theirs)})")
    return "no_rule", f"no deploy rule for {event.repository}:{event.tag}"


def _built_by_us(session: Session, event: ImagePushed) -> Build | None:
    """The build that pushed this image: same repository and digest, or still pushing that tag.

    The registry notifies as soon as the manifest lands, often before the worker
    has recorded the digest; ``link_pushed_build`` fills in what is missed here.
    """
    candidates = session.scalars(
        select(Build).where(Build.image.like(f"%/{event.repository}"), Build.state.in_(("pushing", "succeeded")))
        .order_by(Build.id.desc()).limit(50))
    for build in candidates:
        if build.image.split("/", 1)[1] != event.repository:
            continue
        if event.digest and build.digest == event.digest:
            return build
        if build.state == "pushing" and event.tag in build.tags:
            return build
    return None


def link_pushed_build(session: Session, build: Build) -> None:
    """Link registry events and deployments of a just-pushed image to its build."""
    if not build.digest:
        return
    repository = build.image.split("/", 1)[1]
    session.execute(update(RegistryEvent).where(
        RegistryEvent.repository == repository, RegistryEvent.digest == build.digest,
        RegistryEvent.build_id.is_(None)).values(build_id=build.id))
    session.execute(update(Deployment).where(
        Deployment.repository == repository, Deployment.digest == build.digest,
        Deployment.build_id.is_(None)).values(build_id=build.id))


def deployment_payload(deployment: Deployment, build: Build | None) -> dict[str, Any]:
    return {
        "deployment": deployment.id,
        "environment": deployment.environment,
        "registry": deployment.registry_host,
        "repository": deployment.repository,
        "tag": deployment.tag,
        "digest": deployment.digest,
        "image": f"{deployment.registry_host}/{deployment.repository}@{deployment.digest}",
        "build": build.id if build else None,
        "commit": build.commit if build else None,
        "ref": build.ref if build else None,
        "ref_name": build.ref_name if build else None,
        "state": deployment.state,
    }


def finish(session: Session, deployment: Deployment, state: str, error: str | None,
           settings: Settings) -> list[int]:
    """Mark a deployment done and queue its deployment.succeeded / .failed notifications."""
    deployment.state, deployment.error, deployment.finished_at = state, error, utcnow()
    DEPLOYMENTS.labels(environment=deployment.environment, state=state).inc()
    build = session.get(Build, deployment.build_id) if deployment.build_id else None
    payload = {**deployment_payload(deployment, build), "error": error}
    deliveries = notify(session, f"deployment.{state}", payload, max_attempts=settings.delivery_attempts,
                        trigger_id=build.trigger_id if build else None,
                        ref_name=build.ref_name if build else None, deployment_id=deployment.id,
                        build_id=deployment.build_id)
    session.commit()
    return [d.id for d in deliveries]


def delivery_finished(settings: Settings) -> Callable[[Session, OutboundDelivery], None]:
    """When a deploy webhook is delivered (or gives up), its deployment is done."""
    def finished(session: Session, delivery: OutboundDelivery) -> None:
        if delivery.deployment_id is None or delivery.event != "deployment.requested":
            return
        deployment = session.get(Deployment, delivery.deployment_id)
        if deployment is None:
            return
        if delivery.state == "succeeded" and deployment.state in ("running", "failed"):  # a redelivery too
            finish(session, deployment, "succeeded", None, settings)
        elif deployment.state == "running":
            refused = (delivery.last_response or "").startswith("refused: ")
            code = delivery.last_status_code or (delivery.last_response if refused else "no answer")
            finish(session, deployment, "failed", f"deploy webhook failed after {delivery.attempts} attempts "
                                                  f"({code})", settings)
    return finished


def deployment_to_dict(deployment: Deployment) -> dict[str, Any]:
    return {
        "id": deployment.id, "environment": deployment.environment, "kind": deployment.kind,
        "rule": deployment.rule_id, "target": deployment.target_id, "build": deployment.build_id,
        "registry_event": deployment.registry_event_id, "registry": deployment.registry_host,
        "repository": deployment.repository, "tag": deployment.tag, "digest": deployment.digest,
        "state": deployment.state, "error": deployment.error, "log": deployment.log,
        "created_at": deployment.created_at.isoformat(),
        "finished_at": deployment.finished_at.isoformat() if deployment.finished_at else None,
        "cause": deployment.cause, "source_deployment": deployment.source_deployment_id,
        "requested_by": deployment.requested_by, "decided_by": deployment.decided_by,
        "decided_at": deployment.decided_at.isoformat() if deployment.decided_at else None,
    }
