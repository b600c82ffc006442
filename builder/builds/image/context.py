"""The limits each build runs within, and the build context packed and measured against them.

``BuildLimits`` (from the settings) gives every step's container a memory limit (swap
included), a CPU quota and a network mode; ``context_archive`` packs the context as
docker-py would send it (``.dockerignore`` applied) and refuses one over the size limit
before anything is sent to the engine.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from docker.api.build import process_dockerfile
from docker.utils.build import exclude_paths, tar

from builder.errors import PermanentError
from builder.builds.run.repo_paths import inside_checkout
from builder.settings import Settings

# The CFS period each step's CPU quota is counted in: 100 ms, as `docker run --cpus` uses.
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class BuildLimits:
    """What each build may use (0: no limit). The defaults are the settings' defaults.

    ``memory`` (bytes) limits every step's container, swap included (memswap = memory:
    a step that needs more is killed, never swapped); ``cpus`` becomes a CFS quota of
    ``cpus`` × 100 ms per 100 ms period, as ``docker run --cpus``; ``network`` is the
    steps' network mode (``none``, ``host``, or ``default``: the engine's default
    network, not sent); ``max_context_bytes`` bounds the build context sent to the engine.
    """

    memory: int = 4 * 1024**3
    cpus: float = 0.0
    network: str = "none"
    max_context_bytes: int = 500 * 1024**2

    @classmethod
    def from_settings(cls, settings: Settings) -> BuildLimits:
        return cls(memory=settings.build_memory, cpus=settings.build_cpus, network=settings.build_network,
                   max_context_bytes=settings.max_context_bytes)

    def engine_params(self) -> dict[str, Any]:
        """The ``POST /build`` query parameters that apply these limits to every step's container."""
        params: dict[str, Any] = {}
        if self.memory:
            params.update(memory=self.memory, memswap=self.memory)
        if self.cpus:
            quota = round(self.cpus * CPU_PERIOD_US)
            if quota < 1000:  # the kernel's and the engine's minimum: 1 ms per period
                raise PermanentError(f"BUILDHOOK_BUILD_CPUS is {self.cpus:g}: the smallest CPU limit is 0.01")
            params.update(cpuperiod=CPU_PERIOD_US, cpuquota=quota)
        if self.network != "default":
            params["networkmode"] = self.network
        return params


def describe_limits(limits: BuildLimits) -> str:
    memory = f"memory {mb(limits.memory)}" if limits.memory else "memory unlimited"
    cpus = f"{limits.cpus:g} CPUs" if limits.cpus else "CPUs unlimited"
    return f"{memory}, {cpus}, network {limits.network}"


def mb(size: int) -> str:
    """Bytes in MB (MiB, as Docker counts them): "500 MB", "0.2 MB"."""
    value = size / 1024**2
    return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"


def _too_large(size: int, limit: int) -> PermanentError:
    return PermanentError(f"build context is {mb(size)}, over the limit of {mb(limit)} "
                          "(BUILDHOOK_MAX_CONTEXT_BYTES)")


@contextmanager
def context_archive(context: Path, dockerfile: str, limit: int, scratch: Path, checkout: Path
                     ) -> Iterator[tuple[IO[bytes], str, int]]:
    """The build context as the tar docker-py would send (``.dockerignore`` applied), its size checked.

    Yields the archive (a temporary file in ``scratch``), the Dockerfile's name in it, and
    its size. A Dockerfile outside the context is added to it under a random name, as
    docker-py does. With ``limit``, the files' sizes are added up first, so a context far
    over the limit is refused without being packed; the packed size is checked too.
    ``context`` lies in ``checkout``; a ``.dockerignore`` that leads outside it is refused.
    """
    ignore = inside_checkout(checkout, str(context.relative_to(checkout.resolve()) / ".dockerignore"),
                             ".dockerignore")
    exclude: list[str] = []
    if ignore.is_file():
        exclude = [line.strip() for line in ignore.read_text(errors="replace").splitlines()
                   if line.strip() and not line.strip().startswith("#")]
    name, contents = process_dockerfile(dockerfile, str(context))
    if limit:
        total = 0
        for path in exclude_paths(str(context), list(exclude), dockerfile=name):
            stat = os.lstat(context / path)
            total += stat.st_size if (stat.st_mode & 0o170000) == 0o100000 else 0  # regular files
        if total > limit:
            raise _too_large(total, limit)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=scratch, prefix="context-") as archive:
        try:
            tar(str(context), exclude=list(exclude), dockerfile=(name, contents), fileobj=archive)
        except OSError as exc:
            raise PermanentError(f"could not pack the build context: {exc}") from None
        size = archive.seek(0, os.SEEK_END)
        archive.seek(0)
        if limit and size > limit:
            raise _too_large(size, limit)
        yield archive, name, size
