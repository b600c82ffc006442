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
