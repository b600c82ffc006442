"""Build an image with BuildKit: the docker CLI (``DOCKER_BUILDKIT=1 docker build``) as a subprocess.

docker-py cannot drive BuildKit (its build call has no session: docker/docker-py#2230), so
the worker runs the CLI chosen by ``builder.builds.image.engines`` with the context buildhook packed
and measured (``builder.builds.image.context.context_archive``) on its stdin, ``--progress=plain``
output read line by line into the build log, and the image id from ``--iidfile``.

- Build args go in ``argv``; secret build args only in the CLI's environment, as
  ``--build-arg NAME`` (the CLI reads the value from its environment) and as the BuildKit
  secret ``--secret id=NAME,env=NAME`` (``RUN --mount=type=secret,id=NAME`` reads
  ``/run/secrets/NAME``): never in the process list or a file.
- The CLI runs in its own process group and dies with the worker (``PR_SET_PDEATHSIG``). A
  stop (cancel, timeout, log limit) kills that group: the engine sees the build's session go
  and cancels the solve, its running step with it.
- ``BUILDKIT_INLINE_CACHE=1``: the image carries its cache metadata, so a later build on any
  engine can use it as ``--cache-from`` straight from the registry.
"""

from __future__ import annotations

import ctypes
import gzip
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

import docker

from builder.builds.image.context import context_archive, describe_limits, mb
from builder.builds.image.buildkit_auth import private_docker_config
from builder.builds.run.log import CancelCheck
from builder.builds.run.stops import BuildCancelled
from builder.builds.image.buildkit_limits import apply_cap, oom_kills
from builder.registries.credentials import is_loopback
from builder.errors import PermanentError
from builder.builds.image.classic import (BuildSpec, EngineUnavailable, StepFailed, engine_address, engine_name, engine_ping_error,
                           stopped_by)

Log = Callable[[str], None]

# What the CLI may see of the worker's environment (never its settings or secrets).
_PASSED_ENV = ("PATH", "HOME", "TMPDIR", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
               "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_OWN_ENV = ("DOCKER_BUILDKIT", "DOCKER_HOST")

_VERTEX = re.compile(r"#(\d+) (.*)$")
_HEADER = re.compile(r"\[([^\]]*\d+/\d+)\] (.*)$")  # "[2/4] RUN ...", "[build 2/3] COPY ..."
_DIGEST_LINE = re.compile(r"sha256:[0-9a-f]{64}$")

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux: no parent-death signal
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # in the child, before exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class BuildKitProgress:
    """What the plain progress output told: steps, cache hits, the failing step and the last error."""

    names: dict[str, str] = field(default_factory=dict)  # vertex -> "[2/4] RUN ..."
    cached: set[str] = field(default_factory=set)
    failed: tuple[str, str] | None = None  # (step name, its error)
    last_error: str = ""

    @property
    def steps(self) -> int:
        return len(self.names)

    def read(self, line: str) -> bool:
        """Take one output line; False when it is noise not worth logging (a vertex's digest)."""
        found = _VERTEX.match(line)
        if not found:
            if line.startswith(("error:", "ERROR:")) or "failed to solve" in line:
                self.last_error = line.split(":", 1)[1].strip() if line.startswith(("error:", "ERROR:")) else line
            return True
        vertex, text = found.groups()
        header = _HEADER.match(text)
        if header and not text.startswith("[internal]"):
            self.names.setdefault(vertex, f"[{header[1]}] {header[2]}")
        elif text == "CACHED":
            self.cached.add(vertex)
        elif text.startswith("ERROR: "):
            if self.failed is None:
                self.failed = (self.names.get(vertex, f"#{vertex}"), text[len("ERROR: "):])
        elif _DIGEST_LINE.fullmatch(text):
            return False
        return True


def buildkit_command(spec: BuildSpec, dockerfile: str, iidfile: Path) -> list[str]:
    """The CLI's arguments: everything but the secret values (those are in its environment)."""
    assert spec.engine.cli is not None
    argv = [spec.engine.cli, "build", "--progress=plain", "--iidfile", str(iidfile), "-f", dockerfile]
    for tag in spec.tags:
        argv += ["-t", f"{spec.repository}:{tag}"]
    for name, value in spec.labels.items():
        argv += ["--label", f"{name}={value}"]
    for name, value in spec.build_args.items():
        argv += ["--build-arg", name if name in spec.secret_names else f"{name}={value}"]
    for name in spec.secret_names:
        argv += ["--secret", f"id={name},env={name}"]
    argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    for reference in spec.cache_from:
        argv += ["--cache-from", reference]
    if spec.target:
        argv += ["--target", spec.target]
    if spec.platform:
        argv += ["--platform", spec.platform]
    if spec.pull:
        argv.append("--pull")
    if spec.limits.network != "default":
        argv += ["--network", spec.limits.network]
    return argv + ["-"]  # the context: the tar on stdin


def buildkit_env(spec: BuildSpec, docker_host: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    for name in spec.secret_names:
        if name in env or name in _OWN_ENV or name.startswith("DOCKER_"):
            raise PermanentError(f"secret build arg {name} cannot be given to BuildKit: the docker CLI "
                                 "reads that name from its environment for itself; rename it")
        env[name] = spec.build_args[name]
    return {**env, "DOCKER_BUILDKIT": "1", "DOCKER_HOST": docker_host}


def build_with_buildkit(client: docker.DockerClient, spec: BuildSpec, context: Path, dockerfile: str,
                        log: Log, cancel: CancelCheck | None) -> str:
    """Build and tag ``spec`` with BuildKit; return the image id (see the module's docstring)."""
    shown = f"{spec.repository}:{spec.tags[0]}" if spec.tags else spec.repository
    log(f"Building {shown}{f' for {spec.platform}' if spec.platform else ''} from {spec.dockerfile} "
        f"(context {spec.context})")
    log(f"Engine: {spec.engine.describe()}")
    progress = BuildKitProgress()
    scratch = spec.checkout.parent
    with context_archive(context, dockerfile, spec.limits.max_context_bytes, scratch,
                         spec.checkout.resolve()) as (archive, name, size):
        address = engine_address(client)  # the engine is contacted once the context is within its limit
        log(f"Limits: {describe_limits(spec.limits)}{apply_cap(spec.limits, spec.engine.cgroup, _is_local(address))}")
        log(f"Sending the build context to the {engine_name(client)} ({mb(size)})")
        with tempfile.TemporaryDirectory(prefix="buildkit-", dir=scratch) as private:  # 0700
            iidfile = Path(private) / "image-id"
            ooms = oom_kills()
            env = buildkit_env(spec, address)
            config = private_docker_config(Path(private), spec.registry_logins)
            if config is not None:
                env["DOCKER_CONFIG"] = str(config)
            returncode = _run(buildkit_command(spec, name, iidfile), env, archive, progress, log, cancel)
            image_id = iidfile.read_text().strip() if returncode == 0 and iidfile.exists() else ""
    if not image_id:
        if progress.failed is not None:
            step, error = progress.failed
            message = f"docker build failed: step {step}: {error}"
            if spec.limits.memory and error.endswith("exit code: 137") and _killed_for_memory(ooms):
                raise PermanentError(f"a build step ran out of memory: it needed more than the "
                                     f"{mb(spec.limits.memory)} limit (BUILDHOOK_BUILD_MEMORY) and was killed; "
                                     f"{message}")
            raise StepFailed(message)
        broken = engine_ping_error(client)
        if broken is not None or _connection_lost(progress.last_error):
            raise EngineUnavailable(f"{engine_name(client)} unreachable during the build: "
                                    f"{broken or progress.last_error}")
        raise StepFailed(f"docker build failed: {progress.last_error or f'the docker CLI exited with {returncode}'}")
    log(f"Layer cache: {len(progress.cached & set(progress.names))} of {progress.steps} steps from cache")
    log(f"Built {image_id}" + (f", tagged {', '.join(spec.tags)}" if spec.tags else ""))
    return image_id


def _run(argv: list[str], env: dict[str, str], stdin: IO[bytes], progress: BuildKitProgress, log: Log,
         cancel: CancelCheck | None) -> int:
    """Run the CLI to its end, each output line read into ``progress`` and logged; its exit status."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True, preexec_fn=_die_with_parent)
    assert process.stdout is not None
    feeding = threading.Thread(target=_feed, args=(stdin, process.stdin), name="buildkit-context", daemon=True)
    feeding.start()
    with _killed_on_stop(process, cancel):
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line.strip() and progress.read(line):
                log(line)
        return process.wait()


def _feed(archive: IO[bytes], pipe: IO[bytes] | None) -> None:
    """Write the context to the CLI's stdin, wrapped in gzip without compression (level 0).

    The CLI recognises a tar on stdin from its first 512 bytes, which Python's tar (a PAX header
    first) does not satisfy; a gzip header it always recognises.
    """
    assert pipe is not None
    try:
        with gzip.GzipFile(fileobj=pipe, mode="wb", compresslevel=0, mtime=0) as wrapped:
            shutil.copyfileobj(archive, wrapped, 1024 * 1024)
    except OSError:  # the CLI ended (or was killed) before it read everything: its output says why
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


@contextmanager
def _killed_on_stop(process: subprocess.Popen[bytes], cancel: CancelCheck | None) -> Iterator[None]:
    """A stop kills the CLI's process group (the engine then cancels the solve) and raises
    ``BuildCancelled``; whatever the block raises, the CLI does not outlive it."""
    def kill() -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    try:
        with stopped_by(cancel, kill):
            yield
    finally:
        if process.poll() is None:
            kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    if cancel is not None and cancel.requested:
        raise BuildCancelled(cancel.reason)


def _killed_for_memory(before: int | None) -> bool:
    """Whether the kernel killed a process for memory since ``before`` (unknown: assume so on exit 137)."""
    after = oom_kills()
    return before is None or after is None or after > before


_CONNECTION_LOST = ("connection reset", "connection refused", "eof", "broken pipe", "transport is closing",
                    "error reading from server", "cannot connect to the docker daemon", "error during connect")


def _connection_lost(error: str) -> bool:
    text = error.lower()
    return any(marker in text for marker in _CONNECTION_LOST)


def _is_local(address: str) -> bool:
    """Whether the engine runs on this host (a unix socket, or TCP to loopback)."""
    if address.startswith("unix://") or address.startswith("/"):
        return True
    return is_loopback(re.sub(r"^[a-z]+://", "", address).split("/")[0])  # by address, never a name's prefix
