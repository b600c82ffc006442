"""A build rule's test: run in the built image, by its digest, before any tag moves.

``push_tested`` is the pipeline's step between the build and the tags: with a rule
that has a ``test`` (``{"command": [...], "timeout": seconds}``), the image is pushed
by digest only (``builder.registries.upload``: the registry's event names no tag, so
nothing deploys), the engine pulls ``image@digest`` and runs the command in a
container of it (network none, the build's memory and CPU limits, the test's own
timeout; its output goes to the build log), and only on exit 0 are the tags pointed
at that very manifest. Without a test it is the plain tag push (``push_image``).
A failing test fails the build with an error naming the test and its exit code.
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import docker
import requests
from sqlalchemy.orm import Session
from docker.errors import APIError, NotFound

from builder.builds.image.context import CPU_PERIOD_US, BuildLimits
from builder.builds.run.log import CancelCheck
from builder.builds.run.stops import BuildCancelled
from builder.errors import PermanentError, TransientError
from builder.builds.image.classic import EngineUnavailable, Log, engine_name
from builder.builds.image import local_images
from builder.builds.image.push import push_image
from builder.registries.image_names import registry_host
from builder.db.models import TriggerRule
from builder.triggers.rule_tests import ImageTest
from builder.registries.credentials import RegistryAccess
from builder.registries.upload import push_by_digest, tag_manifest

def rule_test(session: Session, rule_id: int | None) -> ImageTest | None:
    """The test of a build's rule (read when the build runs, as its secret build args are)."""
    rule = session.get(TriggerRule, rule_id) if rule_id is not None else None
    return ImageTest.from_json(rule.test) if rule is not None else None


def push_tested(client: docker.DockerClient, image_id: str, image: str, tags: tuple[str, ...], test: ImageTest | None,
                registries: RegistryAccess, limits: BuildLimits, scratch: Path, log: Log,
                cancel: CancelCheck | None = None) -> str:
    """Push ``image``'s tags; with a ``test``, only once it passed in the pushed digest. Returns the digest."""
    auth = registries.docker_auth(registry_host(image))
    if test is None:
        return push_image(client, image, tags, log, auth, cancel=cancel)
    pushed = push_by_digest(client, image_id, image, registries, scratch, log)
    if cancel is not None:
        cancel.raise_if_requested()
    run_test(client, f"{image}@{pushed.digest}", test, limits, log, auth, cancel)
    if cancel is not None:
        cancel.raise_if_requested()
    return tag_manifest(pushed, tags, registries, log)


def run_test(client: docker.DockerClient, reference: str, test: ImageTest, limits: BuildLimits, log: Log,
             auth: dict[str, str] | None = None, cancel: CancelCheck | None = None) -> None:
    """Pull ``reference`` (``image@digest``) and run the test in it; ``PermanentError`` unless it exits 0."""
    log(f"Testing {reference}: {test.name} (timeout {test.timeout} s, network none)")
    try:
        error = local_images.pull(client, reference, auth)
        if error is not None:
            raise TransientError(f"could not pull {reference} to test it: {error}")
        container = client.api.create_container(reference, command=list(test.command), entrypoint=[],
                                                host_config=client.api.create_host_config(**_limits(limits)),
                                                labels={"buildhook.test": reference})
    except APIError as exc:
        raise TransientError(f"could not start the test in {reference}: {exc.explanation or exc}") from None
    container_id = container["Id"]
    try:
        code = _wait(client, container_id, test, log, cancel)
    finally:
        try:
            client.api.remove_container(container_id, force=True)
        except (APIError, NotFound):
            pass
    if code != 0:
        raise PermanentError(f"test {test.name!r} failed with exit code {code}: no tag was pushed")
    log(f"Test {test.name!r} passed (exit code 0)")


def _limits(limits: BuildLimits) -> dict[str, Any]:
    """The build's memory and CPU limits for the test's container, and no network at all."""
    params: dict[str, Any] = {"network_mode": "none"}
    if limits.memory:
        params.update(mem_limit=limits.memory, memswap_limit=limits.memory)
    if limits.cpus:
        params.update(cpu_period=CPU_PERIOD_US, cpu_quota=max(round(limits.cpus * CPU_PERIOD_US), 1000))
    return params


def _wait(client: docker.DockerClient, container_id: str, test: ImageTest, log: Log,
          cancel: CancelCheck | None) -> int:
    """Start the container, copy its output to the log, return its exit code (killed past the timeout)."""
    client.api.start(container_id)
    reader = threading.Thread(target=_copy_output, args=(client, container_id, log), daemon=True)
    reader.start()
    deadline = time.monotonic() + test.timeout
    stopped = threading.Event()

    def kill() -> None:
        stopped.set()
        try:
            client.api.kill(container_id)
        except APIError:
            pass

    with cancel.aborting(kill) if cancel is not None else nullcontext():
        while True:
            try:
                status = client.api.wait(container_id, timeout=1)
                break
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout) as exc:  # the 1 s poll
                if "timed out" not in str(exc):  # over a unix socket a read timeout is a ConnectionError
                    raise EngineUnavailable(f"{engine_name(client)} unreachable during the test: {exc}") from None
                if stopped.is_set() and cancel is not None:
                    raise BuildCancelled(cancel.reason) from None
                if time.monotonic() > deadline:
                    kill()
                    reader.join(5)
                    raise PermanentError(f"test {test.name!r} timed out after {test.timeout} s: "
                                         "no tag was pushed") from None
    reader.join(5)
    if stopped.is_set() and cancel is not None:
        raise BuildCancelled(cancel.reason)
    return int(status.get("StatusCode", -1))


def _copy_output(client: docker.DockerClient, container_id: str, log: Log) -> None:
    pending = b""
    try:
        for chunk in client.api.logs(container_id, stream=True, follow=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                log(f"test: {line.decode(errors='replace').rstrip()}")
    except Exception:  # the container was removed under the reader: nothing more to copy
        pass
    if pending:
        log(f"test: {pending.decode(errors='replace').rstrip()}")
