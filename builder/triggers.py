"""Creating, finding and describing triggers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from builder.errors import InputError, NotFound
from builder.models import Trigger
from builder.providers import PROVIDERS
from builder.secrets import SecretBox
from builder.tags import image_repository


@dataclass(frozen=True)
class TriggerSpec:
    provider: str
    repository: str
    clone_url: str
    secret: str
    image: str
    dockerfile: str = "Dockerfile"
    context: str = "."
    default_branch: str = "main"

    @classmethod
    def from_json(cls, data: Any) -> "TriggerSpec":
        if not isinstance(data, dict):
            raise InputError("expected a JSON object")
        required = ("provider", "repository", "clone_url", "secret", "image")
        missing = [key for key in required if not isinstance(data.get(key), str) or not data[key]]
        if missing:
            raise InputError(f"missing or empty fields: {', '.join(missing)}")
        optional = ("dockerfile", "context", "default_branch")
        bad = [key for key in optional if key in data and not isinstance(data[key], str)]
        if bad:
            raise InputError(f"fields must be strings: {', '.join(bad)}")
        return cls(**{key: data[key] for key in required + optional if key in data})


def _inside_repository(path: str, what: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise InputError(f"{what} {path!r} must be a relative path inside the repository")
    return str(pure)


def create_trigger(session: Session, box: SecretBox, spec: TriggerSpec, registry: str) -> Trigger:
    if spec.provider not in PROVIDERS:
        raise InputError(f"unknown provider {spec.provider!r}; known: {', '.join(sorted(PROVIDERS))}")
    if "/" not in spec.repository.strip("/"):
        raise InputError("repository must be OWNER/NAME as the Git host names it")
    image_repository(spec.image, registry)  # validates the name
    trigger = Trigger(
        provider=spec.provider,
        repository=spec.repository.strip("/"),
        clone_url=spec.clone_url,
        secret_enc=box.seal(spec.secret),
        image=spec.image,
        dockerfile=_inside_repository(spec.dockerfile, "dockerfile"),
        context=_inside_repository(spec.context, "context"),
        default_branch=spec.default_branch,
    )
    session.add(trigger)
    session.flush()
    return trigger


def find_triggers(session: Session, provider: str, repository: str) -> list[Trigger]:
    query = (
        select(Trigger)
        .where(Trigger.provider == provider, func.lower(Trigger.repository) == repository.lower())
        .order_by(Trigger.id)
    )
    return list(session.scalars(query))


def get_trigger(session: Session, trigger_id: int) -> Trigger:
    trigger = session.get(Trigger, trigger_id)
    if trigger is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return trigger


def webhook_url(public_url: str, provider: str) -> str:
    return f"{public_url.rstrip('/')}/hooks/{provider}"


def trigger_to_dict(trigger: Trigger, public_url: str) -> dict[str, Any]:
    """What the API and CLI show: everything but the secret."""
    return {
        "id": trigger.id,
        "provider": trigger.provider,
        "repository": trigger.repository,
        "clone_url": trigger.clone_url,
        "image": trigger.image,
        "dockerfile": trigger.dockerfile,
        "context": trigger.context,
        "default_branch": trigger.default_branch,
        "enabled": trigger.enabled,
        "webhook_url": webhook_url(public_url, trigger.provider),
        "created_at": trigger.created_at.isoformat(),
    }
