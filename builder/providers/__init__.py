"""Git host webhook formats, one pure module each, picked from an explicit dict.

Every module offers the same three functions:

* ``describe(headers, body) -> HookInfo``: event name, delivery id and
  repository, read before the signature is checked (to find the trigger);
* ``verify(headers, body, secret)``: raises ``BadSignature``;
* ``parse(headers, body) -> tuple[PushEvent, ...]``: raises ``Ignored``.

Nothing outside these modules reads a provider's payload.
"""

from __future__ import annotations

from types import ModuleType

from builder.providers import bitbucket, gitea, github, gitlab

PROVIDERS: dict[str, ModuleType] = {
    "github": github,
    "gitlab": gitlab,
    "bitbucket": bitbucket,
    "gitea": gitea,
}
