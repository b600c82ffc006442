"""Running one deployment on the worker: claim it, resolve its digest, then call its webhook or
recreate its container. The web side (``deployments.py``) records events and deployments without
importing any engine code."""

from __future__ import annotations

from typing import Callable

import docker
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.image.classic import connect
from builder.db.models import Build, Deployment, DeployTarget, utcnow
from builder.deploys.deployments import deployment_payload, finish
from builder.deploys.docker_target import deploy_container
from builder.errors import BuildhookError
from builder.notify.deliveries import new_delivery
from builder.notify.targets import check_docker_host
from builder.notify.urls import SealedUrl
from builder.registries.api import resolve_digest
from builder.registries.credentials import RegistryAccess
from builder.settings import Settings


def run_deployment(sessions: sessionmaker[Session], settings: Settings, deployment_id: int, *,
                   engine: Callable[[str | None], docker.DockerClient] = connect,
                   stable_seconds: float = 5.0) -> list[int]:
    """Run a pending deployment; return the ids of outbound deliveries it queued.

    Only a trusted registry is contacted (to resolve the digest, and by the engine to pull),
    with its own credentials and no other's.
    """
    registries = RegistryAccess(settings)
    with sessions() as session:
        if not _claim(session, deployment_id):
            return []
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        target = session.get(DeployTarget, deployment.target_id) if deployment.target_id else None
        build = session.get(Build, deployment.build_id) if deployment.build_id else None
        try:
            docker_host = check_docker_host(target.docker_host, settings.target_policy()) \
                if target is not None and target.kind == "docker" else None  # refused: failed, before anything
            host = deployment.registry_host or settings.registry
            if not registries.trusts(host):
                raise BuildhookError(f"registry {host} is not trusted (BUILDHOOK_REGISTRY or "
                                     "BUILDHOOK_TRUSTED_REGISTRIES): nothing was deployed")
            if deployment.cause == "event" and not (deployment.decided_at and deployment.digest):
                # an event's tag, read back; a promotion, rollback or approved event deploys the digest it names
                deployment.digest = resolve_digest(registries, host, deployment.repository, deployment.tag)
            if target is None:
                raise BuildhookError("the deploy target was deleted")
            if target.kind == "webhook":
                url = SealedUrl(target.url_enc or "", target.url_redacted or "")
                delivery = new_delivery("deployment.requested", url, deployment_payload(deployment, build),
                                        target.secret_enc, max_attempts=settings.delivery_attempts,
                                        deployment_id=deployment.id, build_id=deployment.build_id)
                session.add(delivery)
                session.commit()
                return [delivery.id]
            client = engine(docker_host or settings.docker_host)
            reference = f"{deployment.registry_host}/{deployment.repository}@{deployment.digest}"
            outcome = deploy_container(client, target.container or "", reference, stable_seconds=stable_seconds,
                                       auth=registries.docker_auth(host))
            deployment.log = "\n".join(outcome.log)
            if outcome.rolled_back:
                raise BuildhookError(f"container {outcome.container} did not stay up; the old one was put back")
            return finish(session, deployment, "succeeded", None, settings)
        except BuildhookError as exc:
            return finish(session, deployment, "failed", str(exc), settings)


def _claim(session: Session, deployment_id: int) -> bool:
    result = session.execute(
        update(Deployment).where(Deployment.id == deployment_id, Deployment.state == "pending")
        .values(state="running", started_at=utcnow()))
    session.commit()
    return result.rowcount == 1
