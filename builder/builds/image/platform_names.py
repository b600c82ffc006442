"""A platform's name as Docker and OCI write it: ``os/arch[/variant]`` (``linux/amd64``, ``linux/arm/v7``)."""

from __future__ import annotations

import re
from typing import Any

from builder.errors import InputError

MAX_PLATFORMS = 8
PLATFORM = re.compile(r"(?P<os>[a-z0-9]+)/(?P<architecture>[a-z0-9_]+)(?:/(?P<variant>[a-z0-9]+))?")


def check_platforms(given: Any) -> tuple[str, ...]:
    """A rule's ``platforms``: a list of distinct ``os/arch[/variant]`` (``InputError`` saying why not)."""
    if given is None:
        return ()
    if not isinstance(given, list) or not all(isinstance(item, str) for item in given):
        raise InputError('rule field \'platforms\' must be a list of strings like "linux/amd64"')
    for platform in given:
        if not PLATFORM.fullmatch(platform):
            raise InputError(f"platform {platform!r} is not os/arch[/variant] (e.g. linux/amd64, linux/arm64, "
                             "linux/arm/v7)")
    if len(set(given)) != len(given):
        raise InputError("rule field 'platforms' lists a platform twice")
    if len(given) > MAX_PLATFORMS:
        raise InputError(f"a rule builds at most {MAX_PLATFORMS} platforms")
    return tuple(given)
