"""Build an image from a checked-out commit with docker-py, and the engine plumbing it shares.

Connecting to the Docker Engine and naming it in errors, ``build_image`` (within the
spec's ``BuildLimits``; see ``builder.builds.image.context``), and the stream machinery a
cancel request uses: ``stop_on_cancel`` shuts the HTTP response docker-py reads down
from the cancel check's thread, the engine sees its client go and aborts (a classic
build kills and removes the step's container), and the build's "Running in"
containers are removed here too if the engine left one behind. Pushing is in
``builder.builds.image.push``.

Errors name the component that failed: the Docker Engine (with its address), and why.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import docker
import urllib3.exceptions
from docker.errors import APIError, DockerException, NotFound

from builder.builds.image.context import BuildLimits, context_archive, describe_limits, mb
from builder.builds.image.engines import BuildEngine, default_engine
from builder.builds.run.log import CancelCheck
from builder.builds.run.stops import BuildCancelled
from builder.errors import PermanentError, TransientError
from builder.registries.credentials import Credentials
from builder.builds.run.repo_paths import inside_checkout
from builder.builds.run.step_containers import RUNNING_IN

Log = Callable[[str], None]

# What a broken connection to the engine raises: docker-py's and requests' errors (OSErrors),
# and urllib3's, which docker-py's stream reading lets through (e.g. ProtocolError "Connection broken").
CONNECTION_ERRORS = (DockerException, OSError, urllib3.exceptions.HTTPError)


class EngineUnavailable(TransientError):
    pass


def connect(docker_host: str | None = None, timeout: int = 600) -> docker.DockerClient:
    """A client for the engine at ``docker_host`` (or DOCKER_HOST / the local socket)."""
    where = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = (
            docker.DockerClient(base_url=docker_host, timeout=timeout)
            if docker_host
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except CONNECTION_ERRORS as exc:
        raise EngineUnavailable(f"Docker Engine unreachable at {where}: {connection_error_reason(exc)}") from None
    client.buildhook_address = where  # named in error messages
    return client


def connection_error_reason(exc: BaseException) -> str:
    """The root cause of a connection error, without the layers of requests and urllib3 around it."""
    text = str(exc)
    errno = (re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)  # "[Errno 111] Connection refused"
             or re.search(r"Error\(-?\d+, '([^']+)'\)", text))  # "FileNotFoundError(2, 'No such file ...')"
    if errno:
        return errno[1].strip()
    if "Connection broken" in text or "IncompleteRead" in text:
        return "the connection broke off in the middle of the answer"
    return text


def engine_name(client: docker.DockerClient) -> str:
    """"Docker Engine at <address>", for error messages."""
    where = getattr(client, "buildhook_address", None) or getattr(getattr(client, "api", None), "base_url", None)
    return f"Docker Engine at {where}" if where else "Docker Engine"


def engine_address(client: docker.DockerClient) -> str:
    """The engine's address as a docker CLI takes it in DOCKER_HOST."""
    where = getattr(client, "buildhook_address", None) or os.environ.get("DOCKER_HOST")
    return where or "unix:///var/run/docker.sock"


def engine_ping_error(client: docker.DockerClient) -> str | None:
    """Why the engine does not answer now; None when it does."""
    try:
        client.ping()
    except CONNECTION_ERRORS as exc:
        return connection_error_reason(exc)
    return None


@dataclass(frozen=True)
class BuildSpec:
    checkout: Path
    dockerfile: str
    context: str
    repository: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    cache_from: tuple[str, ...] = ()
    limits: BuildLimits = BuildLimits()
    engine: BuildEngine = field(default_factory=default_engine)
    secret_names: tuple[str, ...] = ()  # which build args are secret: BuildKit also mounts them as secrets
    # (registry host, credentials) BuildKit may pull the cache with (builder/builds/image/buildkit_auth.py)
    registry_logins: tuple[tuple[str, Credentials], ...] = field(default=(), repr=False)
    platform: str | None = None  # os/arch[/variant] to build for (BuildKit; builder/builds/image/platforms.py)
    pull: bool = False  # fetch the FROM images again (scheduled "rebuild": "always": base-image fixes)


def build_image(client: docker.DockerClient, spec: BuildSpec, log: Log, cancel: CancelCheck | None = None) -> str:
    """Build and tag the image; return its id. The build's output goes to ``log``.

    The context is packed and measured before the engine is contacted: one over
    ``spec.limits.max_context_bytes`` fails the build (``PermanentError``). A step that
    runs out of memory fails it with a message that says so.
    A cancel request stops the build and raises ``BuildCancelled`` once its container is gone.
    """
    root = spec.checkout.resolve()
    context = inside_checkout(root, spec.context, "build context")
    dockerfile = inside_checkout(root, spec.dockerfile, "Dockerfile")
    if not context.is_dir():
        raise PermanentError(f"build context {spec.context!r} is not a directory in the commit")
    if not dockerfile.is_file():
        raise PermanentError(f"Dockerfile {spec.dockerfile!r} is not in the commit")
    # docker-py wants the Dockerfile relative to the context, or absolute when outside it.
    relative = dockerfile.relative_to(context) if context in dockerfile.parents else dockerfile
    if spec.engine.buildkit:
        from builder.builds.image.buildkit import build_with_buildkit

        return build_with_buildkit(client, spec, context, str(relative), log, cancel)
    first = f"{spec.repository}:{spec.tags[0]}"
    limit_params = spec.limits.engine_params()
    log(f"Building {first} from {spec.dockerfile} (context {spec.context})")
    log(f"Limits: {describe_limits(spec.limits)}")
    progress = _Progress()
    started = time.time()
    with context_archive(context, str(relative), spec.limits.max_context_bytes, spec.checkout.parent,
                         root) as (archive, dockerfile_name, size):
        log(f"Sending the build context to the {engine_name(client)} ({mb(size)})")
        params = {
            "t": [f"{spec.repository}:{tag}" for tag in spec.tags],  # every tag in the one request
            "rm": True,
            "forcerm": True,
            "dockerfile": dockerfile_name,
            "labels": json.dumps(spec.labels) if spec.labels else None,
            "cachefrom": json.dumps(list(spec.cache_from)) if spec.cache_from else None,
            "target": spec.target,
            "pull": "1" if spec.pull else None,
            **limit_params,
        }
        try:
            response = _post_build(client, archive, params, dict(spec.build_args))
            with stop_on_cancel(cancel, response):
                image_id = _follow_build(client.api._stream_helper(response, decode=True), log, progress)
        except BuildCancelled:
            remove_build_containers(client, progress.containers, log)
            raise
        except StepFailed as exc:
            if spec.limits.memory and _out_of_memory(client, progress.containers, started):
                raise PermanentError(
                    f"a build step ran out of memory: it needed more than the {mb(spec.limits.memory)} limit "
                    f"(BUILDHOOK_BUILD_MEMORY) and was killed; {exc}") from None
            raise
        except APIError as exc:
            raise engine_api_error(exc, "build", client) from None
        except CONNECTION_ERRORS as exc:
            raise EngineUnavailable(f"{engine_name(client)} unreachable during the build: "
                                    f"{connection_error_reason(exc)}") from None
    log(f"Layer cache: {progress.cache_hits} of {progress.steps} steps from cache")
    log(f"Built {image_id}, tagged {', '.join(spec.tags)}")
    return image_id


def _post_build(client: docker.DockerClient, archive: IO[bytes], params: dict[str, Any],
                build_args: dict[str, str]) -> Any:
    """``POST /build`` with the context, through docker-py's client; the streaming response.

    What ``APIClient.build(fileobj=..., custom_context=True)`` does, with one difference:
    docker-py 7 refuses the ``cpuperiod``/``cpuquota`` parameters the Engine's build
    endpoint has taken since API 1.19 (its limit keys are memory, memswap, cpushares and
    cpusetcpus; docker/docker-py#3249), so the request is made here with the same client
    helpers (URL, registry auth header, proxy build args, timeouts, stream decoding).
    """
    api = client.api
    for key, value in api._proxy_configs.get_environment().items():  # as use_config_proxy=True
        build_args.setdefault(key, value)
    if build_args:
        params["buildargs"] = json.dumps(build_args)
    headers = {"Content-Type": "application/tar"}
    api._set_auth_headers(headers)  # X-Registry-Config, for FROM images of private registries
    response = api._post(api._url("/build"), data=archive, params={k: v for k, v in params.items() if v is not None},
                         headers=headers, stream=True, timeout=None)
    return response


def _out_of_memory(client: docker.DockerClient, containers: list[str], since: float) -> bool:
    """Whether the engine reported an ``oom`` event for one of the build's step containers."""
    if not containers:
        return False
    try:
        events = client.api.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                                   filters={"type": "container", "event": "oom"})
        return any(str(event.get("id", "")).startswith(tuple(containers)) for event in events)
    except CONNECTION_ERRORS:
        return False


@dataclass
class _Progress:
    steps: int = 0
    cache_hits: int = 0
    containers: list[str] = field(default_factory=list)  # each step's "Running in" container


class StepFailed(PermanentError):
    """The Dockerfile failed: a step's command, an instruction, a missing file."""


def _follow_build(stream: Iterable[dict[str, Any]], log: Log, progress: _Progress) -> str:
    """Log the build's output; return the image id. Counts steps and cache hits in ``progress``.

    The engine ends every build with an error or the image's id: a stream that stops
    before either was cut (the engine or the connection to it went away).
    """
    image_id: str | None = None
    for chunk in stream:
        if "stream" in chunk:
            text = str(chunk["stream"])
            progress.steps += text.startswith("Step ")
            progress.cache_hits += "---> Using cache" in text
            progress.containers += RUNNING_IN.findall(text)
            _log_text(text, log)
        if "error" in chunk:
            message = str(chunk.get("error", "")).strip()
            log(f"ERROR: {message}")
            raise StepFailed(f"docker build failed: {message}")
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = aux["ID"]
    if image_id is None:
        raise ConnectionError("the build's output ended before the image was built")
    return image_id


def _shutdown(response: Any) -> Callable[[], None]:
    """Shut the response's socket down: a read blocked on it (in another thread) ends at once.

    ``close()`` would not wake a blocked read; ``shutdown`` does, and the engine sees its
    client go.
    """
    def stop() -> None:
        raw = response.raw
        try:
            raw.shutdown()  # urllib3 >= 2.3
            return
        except (AttributeError, ValueError, RuntimeError, OSError):
            pass
        sock = getattr(getattr(raw, "_connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                return
            except OSError:
                pass
        response.close()

    return stop


@contextmanager
def stop_on_cancel(cancel: CancelCheck | None, response: Any) -> Iterator[None]:
    """Read a stream in the block; a cancel request shuts its response down and raises ``BuildCancelled``.

    Whatever the stream raises once the cancel was requested (a broken connection, an
    incomplete build) means "cancelled", not a failure.
    """
    try:
        with stopped_by(cancel if response is not None else None, _shutdown(response)):
            yield
    finally:
        if response is not None:
            response.close()


@contextmanager
def stopped_by(cancel: CancelCheck | None, abort: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a stop calls ``abort``; whatever the block raises once the build was stopped
    (a broken stream, a killed process) becomes ``BuildCancelled``."""
    try:
        if cancel is None:
            yield
        else:
            with cancel.aborting(abort):
                yield
    except Exception:
        if cancel is not None and cancel.requested:
            raise BuildCancelled(cancel.reason) from None
        raise


def remove_build_containers(client: docker.DockerClient, containers: list[str], log: Log,
                       grace: float = 5.0) -> None:
    """Make sure a stopped build's containers are gone.

    The engine kills and removes the running step's container when the client goes;
    one still there after ``grace`` seconds is removed by force.
    """
    deadline = time.monotonic() + grace
    for container in dict.fromkeys(containers):
        while _container_exists(client, container):
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            try:
                client.api.remove_container(container, force=True)
                log(f"Removed the build's container {container}")
            except NotFound:
                pass
            except APIError as exc:  # e.g. "removal already in progress": look again
                if exc.status_code != 409:
                    log(f"Could not remove the build's container {container}: {exc.explanation or exc}")
                    break
                time.sleep(0.2)
            except (DockerException, OSError) as exc:
                log(f"Could not remove the build's container {container}: {exc}")
                break


def _container_exists(client: docker.DockerClient, container: str) -> bool:
    try:
        client.api.inspect_container(container)
    except NotFound:
        return False
    except (DockerException, OSError):
        return False  # the engine is gone: nothing more to do here
    return True


def local_image(client: docker.DockerClient, reference: str) -> bool:
    """Whether the engine has ``reference`` (to use it as a layer cache)."""
    try:
        client.images.get(reference)
    except DockerException:
        return False
    return True


def _log_text(text: str, log: Log) -> None:
    for line in text.splitlines():
        if line.strip():
            log(line.rstrip())


def engine_api_error(exc: APIError, step: str, client: docker.DockerClient | None = None) -> Exception:
    """An error answer of the engine's API: 4xx means the request was wrong, anything else may pass."""
    message = exc.explanation or str(exc)
    engine = engine_name(client) if client is not None else "Docker Engine"
    if exc.status_code is not None and 400 <= exc.status_code < 500:
        return PermanentError(f"the {engine} rejected the {step}: {message}")
    return TransientError(f"{engine} error during the {step}: {message}")
