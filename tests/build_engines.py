"""The build engines tests run over: BuildKit (the default) and the classic builder.

``build_engine`` is a fixture parametrized over both; a test module imports it
(``from tests.build_engines import build_engine  # noqa: F401``) where an outcome must hold
for either engine, and asserts an engine's own wording where the two differ.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from builder.builds.image.context import BuildLimits
from builder.builds.image.engines import BUILDKIT, CLASSIC_ENGINE, BuildEngine, buildkit_client
from builder.builds.image.buildkit_limits import apply_cap


def buildkit_engine() -> BuildEngine:
    cli, version = buildkit_client()
    return BuildEngine(BUILDKIT, cli, version)


@pytest.fixture(params=["buildkit", "classic"])
def build_engine(request) -> BuildEngine:
    if request.param == "classic":
        yield CLASSIC_ENGINE
        return
    engine = buildkit_engine()
    yield engine
    # A test's small cap must not stay on the engine's BuildKit cgroup: open it again.
    apply_cap(BuildLimits(memory=0, cpus=0), engine.cgroup, local=True)


def step_processes(marker: str) -> list[int]:
    """Processes on this host whose command line carries ``marker``: a build step's, whichever engine
    runs it (a classic step's container, a BuildKit step's runc process). The shell of ``RUN a; b`` runs
    ``b`` in place of itself when it is the last command: a step to be found keeps a command after it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def step_output(lines: list[str]) -> list[str]:
    """The build log's lines as the steps printed them: BuildKit's "#5 0.123 " prefix taken off."""
    return [re.sub(r"^#\d+ \d+\.\d+ ", "", line) for line in lines]
