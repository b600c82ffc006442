"""Semantic versions in tag names (``v1.2.3``, ``1.2.3-rc.1``) and their order."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEMVER = re.compile(
    r"v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?"
)


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: str = ""

    @classmethod
    def parse(cls, text: str) -> "Version | None":
        found = _SEMVER.fullmatch(text)
        if not found:
            return None
        return cls(int(found["major"]), int(found["minor"]), int(found["patch"]), found["pre"] or "")

    @property
    def is_release(self) -> bool:
        return not self.prerelease

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        """Sort key: a release sorts after its prereleases; numeric identifiers compare as numbers."""
        parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease.split(".")) if self.prerelease else ()
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, parts)  # type: ignore[return-value]

    def fields(self) -> dict[str, str]:
        version = f"{self.major}.{self.minor}.{self.patch}" + (f"-{self.prerelease}" if self.prerelease else "")
        return {"version": version, "major": str(self.major), "minor": str(self.minor), "patch": str(self.patch)}


_COMPARATOR = re.compile(r"(>=|<=|>|<|==|=|\^|~)?\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_range(text: str) -> list[tuple[str, tuple[int, int, int]]]:
    """``">=1.2 <2"`` -> [(">=", (1, 2, 0)), ("<", (2, 0, 0))]; ValueError if malformed.

    Comparators are ANDed; ``^1.2`` means ``>=1.2.0 <2.0.0`` and ``~1.2`` ``>=1.2.0 <1.3.0``.
    """
    parts = text.replace(",", " ").split()
    if not parts:
        raise ValueError("empty version range")
    out: list[tuple[str, tuple[int, int, int]]] = []
    for part in parts:
        found = _COMPARATOR.fullmatch(part)
        if not found:
            raise ValueError(f"{part!r} is not a version comparator like >=1.2 or <2")
        op = found.group(1) or "="
        nums = tuple(int(n) if n is not None else 0 for n in found.groups()[1:])
        version = (nums[0], nums[1], nums[2])
        if op == "^":
            out += [(">=", version), ("<", (version[0] + 1, 0, 0))]
        elif op == "~":
            out += [(">=", version), ("<", (version[0], version[1] + 1, 0))]
        else:
            out.append(("=" if op == "==" else op, version))
    return out


def satisfies(version: Version, range_text: str) -> bool:
    """Whether a release ``version`` is inside the range (prereleases never are)."""
    if not version.is_release:
        return False
    have = (version.major, version.minor, version.patch)
    checks = {">=": have.__ge__, "<=": have.__le__, ">": have.__gt__, "<": have.__lt__, "=": have.__eq__}
    return all(checks[op](bound) for op, bound in parse_range(range_text))
