"""The interface every Git host ("forge") offers, Woodpecker ``server/forge/`` style.

A forge knows its host's webhook format (``describe``, ``verify``, ``parse``),
where its API lives for commit statuses and what the trigger page tells the
user to click. The forges in use are listed in ``builder.forges.registry``;
nothing outside ``builder/forges/`` names a Git host.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping
from urllib.parse import urlsplit

from builder.errors import PermanentError
from builder.forges.request import HookInfo
from builder.forges.status_http import CommitStatus, StatusTarget
from builder.forges.web_links import web_location
from builder.intake.events import PushEvent

# The user name sent with a clone token when the trigger names none, the same for every host
# (GitLab documents "oauth2", Bitbucket "x-token-auth": a trigger's clone_username sets those).
CLONE_USERNAME = "x-access-token"


class Forge(ABC):
    """One Git host. Subclasses set the class attributes and the three payload methods."""

    name: str
    """The API's ``provider`` value and the ``/hooks/<name>`` path segment."""
    display_name: str
    """How pages name the host."""
    signature_header: str = ""
    """Which header signs a delivery, in words (the OpenAPI description of ``/hooks/{provider}``)."""
    setup_steps: tuple[str, ...] = ()
    """What to click on the host to send deliveries here (the trigger page)."""
    repository_hint: str = ""
    """How the host spells a repository when it is not OWNER/NAME (the new-trigger form)."""
    commit_path: str = "/commit/{sha}"
    """A commit's page, below the repository's."""
    secret_headers: tuple[str, ...] = ()
    """Request headers that carry the secret or a signature of it: never shown (stored deliveries)."""
    default_api_url: str | None = None
    """The API used for commit statuses when a trigger names none; None: derived from the clone URL."""
    status_words: Mapping[str, str] = {}
    """The host's word for each phase (pending, running, success, failure, cancelled)."""

    @property
    def status_keys(self) -> tuple[str, ...]:
        """The ``StatusTarget.provider`` values this forge's commit statuses go by."""
        return (self.name,)

    @abstractmethod
    def describe(self, headers: Mapping[str, str], body: bytes) -> HookInfo:
        """Event, delivery id and repository, read before the signature is checked."""

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        """Raises ``BadSignature`` unless the delivery was signed with ``secret``."""

    @abstractmethod
    def parse(self, headers: Mapping[str, str], body: bytes) -> tuple[PushEvent, ...]:
        """The pushes to build; raises ``Ignored`` for anything else."""

    def api_url(self, configured: str | None, clone_url: str) -> str:
        """The API for commit statuses: the trigger's, the default, else ``https://host/api/v1``."""
        url = configured or self.default_api_url
        if url is None:  # https://user@host/owner/repo.git -> https://host/api/v1
            parts = urlsplit(clone_url)
            url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/api/v1"
        return url.rstrip("/")

    def repository_url(self, clone_url: str) -> str | None:
        """The repository's web page, or None when the clone URL has none (file://, a local path)."""
        location = web_location(clone_url)
        return location.url if location else None

    def commit_url(self, clone_url: str, sha: str) -> str | None:
        base = self.repository_url(clone_url)
        return base + self.commit_path.format(sha=sha) if base else None

    def status_key(self, api_url: str) -> str:
        """Which of ``status_keys`` serves this forge at ``api_url``."""
        return self.name

    def status_words_for(self, key: str) -> Mapping[str, str] | None:
        return self.status_words or None

    def send_status(self, target: StatusTarget, status: CommitStatus, state: str, timeout: float) -> None:
        """Set one commit status; raises ``TransientError`` or ``PermanentError``."""
        raise PermanentError(f"{self.name} has no commit statuses")
