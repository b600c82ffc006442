"""Report a build's state back to the Git host as a commit status.

Each forge (``builder/forges/``) names the states in its own words and sends
the status; ``builder/forges/status_http.py`` holds what they share.

Errors follow the shared taxonomy: a 5xx, 408, 429, a connection error or a
timeout raise ``TransientError``; any other refusal (4xx, redirects, an
unknown provider or state) raises ``PermanentError`` carrying the host's
message. The token never appears in a message or a log line.

``report_with_retry`` is what the pipeline calls: it retries transient errors
with backoff and jitter, logs, and answers ``False`` instead of raising, since
a failing status call must never fail a build.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

from builder.errors import PermanentError, TransientError
from builder.forges.registry import forge_for_status
from builder.forges.status_http import CommitStatus, StatusTarget, redact

__all__ = ["CommitStatus", "StatusTarget", "host_state", "report_status", "report_with_retry"]

log = logging.getLogger(__name__)

# buildhook state -> phase; each host names the phases in its own words.
_PHASES: dict[str, str] = {
    "queued": "pending",
    "running": "running",
    "cloning": "running",
    "building": "running",
    "pushing": "running",
    "succeeded": "success",
    "failed": "failure",
    "cancelled": "cancelled",
    "superseded": "cancelled",
}


def host_state(provider: str, state: str) -> str:
    """The host's word for buildhook ``state``; ``PermanentError`` if either is unknown."""
    forge = forge_for_status(provider)
    words = forge.status_words_for(provider) if forge else None
    if words is None:
        raise PermanentError(f"unknown commit status provider {provider!r}")
    phase = _PHASES.get(str(getattr(state, "value", state)))
    if phase is None:
        raise PermanentError(f"unknown build state {state!r}")
    return words[phase]


def report_status(target: StatusTarget, status: CommitStatus, timeout: float = 10) -> None:
    """Set the commit status once. Raises ``TransientError`` or ``PermanentError``."""
    state = host_state(target.provider, status.state)
    if not status.sha:
        raise PermanentError("commit status without a commit sha")
    forge = forge_for_status(target.provider)
    assert forge is not None  # host_state found it
    forge.send_status(target, status, state, timeout)


def report_with_retry(
    target: StatusTarget,
    status: CommitStatus,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    base_delay: float = 1.0,
    timeout: float = 10,
) -> bool:
    """Report, retrying transient errors; ``True`` once set, ``False`` (logged) if not."""
    what = f"{target.provider} status {status.state!r} for {target.repository}@{status.sha[:12]}"
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            report_status(target, status, timeout=timeout)
            return True
        except PermanentError as exc:
            log.error("Could not set %s: %s", what, redact(str(exc), target.token))
            return False
        except TransientError as exc:
            message = redact(str(exc), target.token)
            if attempt >= attempts:
                log.error("Gave up setting %s after %d attempts: %s", what, attempt, message)
                return False
            delay = base_delay * 2 ** (attempt - 1)
            delay += random.uniform(0, delay / 2)
            log.warning("Setting %s failed (attempt %d of %d), retrying in %.1fs: %s",
                        what, attempt, attempts, delay, message)
            sleep(delay)
        except Exception as exc:  # a bug or a library surprise must not fail the build either
            log.error("Could not set %s: unexpected %s: %s", what, type(exc).__name__,
                      redact(str(exc), target.token))
            return False
    return False
