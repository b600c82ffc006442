"""The forges buildhook knows, by public name. ``register`` adds one (tests add made-up forges)."""

from __future__ import annotations

from builder.forges.base import Forge
from builder.forges.bitbucket import BitbucketForge
from builder.forges.gitea import GiteaForge
from builder.forges.github import GitHubForge
from builder.forges.gitlab import GitLabForge

FORGES: dict[str, Forge] = {forge.name: forge for forge in (GitHubForge(), GitLabForge(), BitbucketForge(), GiteaForge())}


def forge_for(name: str) -> Forge | None:
    """The forge called ``name`` (the API's ``provider`` value), or None."""
    return FORGES.get(name)


def provider_names() -> list[str]:
    return sorted(FORGES)


def display_names() -> list[tuple[str, str]]:
    """``(name, display name)`` pairs, sorted by name: what forms offer."""
    return [(name, FORGES[name].display_name) for name in provider_names()]


def register(forge: Forge) -> None:
    FORGES[forge.name] = forge


def unregister(name: str) -> None:
    FORGES.pop(name, None)


def forge_for_status(key: str) -> Forge | None:
    """The forge whose commit statuses go by ``key`` (a ``StatusTarget.provider``), or None."""
    return next((forge for forge in FORGES.values() if key in forge.status_keys), None)
