"""Docker registry notifications, one pure module each, picked from an explicit dict.

Every module offers ``parse(headers, body) -> list[ImagePushed | IgnoredEvent]``:
one entry per event the delivery describes (an ``ImagePushed`` for each tagged
image manifest that landed, an ``IgnoredEvent`` with a reason for everything
else). A body that is not JSON, or not that registry's shape, raises
``builder.errors.InputError`` (400; 415 for a distribution delivery with
another ``Content-Type``); no other exception escapes for any body.

No Flask, Celery, database or network here: the web layer authenticates the
delivery, and what to deploy is decided elsewhere.
"""

from __future__ import annotations

from types import ModuleType

from builder.registries import acr, distribution, dockerhub, harbor, quay
from builder.registries.common import IgnoredEvent, ImagePushed, Parsed

__all__ = ["PARSERS", "IgnoredEvent", "ImagePushed", "Parsed"]

PARSERS: dict[str, ModuleType] = {
    "distribution": distribution,
    "dockerhub": dockerhub,
    "quay": quay,
    "harbor": harbor,
    "acr": acr,
}
