"""Path filters like Cloud Build's ``includedFiles`` / ``ignoredFiles``, with ``**`` globs."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from builder.errors import InputError


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` crosses directories, ``*`` and ``?`` stay within one, ``[...]`` is a class."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise InputError(f"path glob {pattern!r} has an unclosed '['")
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def check_globs(patterns: Iterable[str]) -> None:
    for pattern in patterns:
        if not pattern:
            raise InputError("path globs must not be empty")
        glob_regex(pattern)


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(glob_regex(pattern).fullmatch(path) for pattern in patterns)


def filter_reason(changed: Iterable[str], included: tuple[str, ...], ignored: tuple[str, ...]) -> str | None:
    """None when the change should build, else why not (Cloud Build's semantics).

    Files matching ``ignored`` do not count; if ``included`` is set, one of the
    remaining files must match it.
    """
    if not included and not ignored:
        return None
    files = [path for path in changed if not matches(path, ignored)]
    if not files:
        return "every changed file matches the ignored files"
    if included and not any(matches(path, included) for path in files):
        return "no changed file matches the included files"
    return None
