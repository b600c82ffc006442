"""Build an image from a checked-out commit and push its tags, with docker-py.

A cancel request (``CancelCheck``) stops the engine's build or push: docker-py's
streams read an HTTP response, which the cancel check shuts down from its thread.
The engine sees its client go and aborts: a classic build kills and removes the
step's container, a push stops before the manifest is written. The build's
"Running in" containers are removed here too if the engine left one behind.
"""

from __future__ import annotations

import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import docker
from docker.errors import APIError, DockerException, NotFound

from builder.build_log import BuildCancelled, CancelCheck
from builder.errors import PermanentError, TransientError

Log = Callable[[str], None]


class EngineUnavailable(TransientError):
    pass


def connect(docker_host: str | None = None, timeout: int = 600) -> docker.DockerClient:
    """A client for the engine at ``docker_host`` (or DOCKER_HOST / the local socket)."""
    try:
        client = (
            docker.DockerClient(base_url=docker_host, timeout=timeout)
            if docker_host
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except (DockerException, OSError) as exc:
        where = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise EngineUnavailable(f"Docker Engine unreachable at {where}: {exc}") from None
    return client


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


def _inside(root: Path, relative: str, what: str) -> Path:
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise PermanentError(f"{what} {relative!r} is outside the repository")
    return path


def build_image(client: docker.DockerClient, spec: BuildSpec, log: Log, cancel: CancelCheck | None = None) -> str:
    """Build and tag the image; return its id. The build's output goes to ``log``.

    A cancel request stops the build and raises ``BuildCancelled`` once its container is gone.
    """
    root = spec.checkout.resolve()
    context = _inside(root, spec.context, "build context")
    dockerfile = _inside(root, spec.dockerfile, "Dockerfile")
    if not context.is_dir():
        raise PermanentError(f"build context {spec.context!r} is not a directory in the commit")
    if not dockerfile.is_file():
        raise PermanentError(f"Dockerfile {spec.dockerfile!r} is not in the commit")
    # docker-py wants the Dockerfile relative to the context, or absolute when outside it.
    relative = dockerfile.relative_to(context) if context in dockerfile.parents else dockerfile
    first = f"{spec.repository}:{spec.tags[0]}"
    log(f"Building {first} from {spec.dockerfile} (context {spec.context})")
    progress = _Progress()
    try:
        with _responses(client) as responses:
            stream = client.api.build(
                path=str(context),
                dockerfile=str(relative),
                tag=first,
                labels=spec.labels,
                buildargs=spec.build_args or None,
                target=spec.target,
                cache_from=list(spec.cache_from) or None,
                rm=True,
                forcerm=True,
                decode=True,
            )
        with _stop_on_cancel(cancel, _response_to(responses, "/build")):
            image_id = _follow_build(stream, log, progress)
    except BuildCancelled:
        _remove_containers(client, progress.containers, log)
        raise
    except APIError as exc:
        raise _classify(exc, "build") from None
    except (DockerException, OSError) as exc:
        raise EngineUnavailable(f"Docker Engine failed during the build: {exc}") from None
    for tag in spec.tags[1:]:
        client.api.tag(image_id, spec.repository, tag)
    log(f"Layer cache: {progress.cache_hits} of {progress.steps} steps from cache")
    log(f"Built {image_id}, tagged {', '.join(spec.tags)}")
    return image_id


@dataclass
class _Progress:
    steps: int = 0
    cache_hits: int = 0
    containers: list[str] = field(default_factory=list)  # each step's "Running in" container


_RUNNING_IN = re.compile(r"---> Running in ([0-9a-f]{12,64})")


def _follow_build(stream: Iterable[dict[str, Any]], log: Log, progress: _Progress) -> str:
    """Log the build's output; return the image id. Counts steps and cache hits in ``progress``."""
    image_id: str | None = None
    for chunk in stream:
        if "stream" in chunk:
            text = str(chunk["stream"])
            progress.steps += text.startswith("Step ")
            progress.cache_hits += "---> Using cache" in text
            progress.containers += _RUNNING_IN.findall(text)
            _log_text(text, log)
        if "error" in chunk:
            message = str(chunk.get("error", "")).strip()
            log(f"ERROR: {message}")
            raise PermanentError(f"docker build failed: {message}")
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = aux["ID"]
    if image_id is None:
        raise PermanentError("docker build ended without producing an image")
    return image_id


@contextmanager
def _responses(client: docker.DockerClient) -> Iterator[list[Any]]:
    """The HTTP responses of the requests made in the block (a requests response hook)."""
    seen: list[Any] = []

    def hook(response: Any, *_args: Any, **_kwargs: Any) -> None:
        seen.append(response)

    hooks = client.api.hooks.setdefault("response", [])
    hooks.append(hook)
    try:
        yield seen
    finally:
        hooks.remove(hook)


def _response_to(responses: list[Any], path: str) -> Any:
    """The last response to a request whose path ends with ``path`` (e.g. ``/build``)."""
    for response in reversed(responses):
        request = getattr(response, "request", None)
        if request is not None and request.path_url.split("?", 1)[0].endswith(path):
            return response
    return None


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
def _stop_on_cancel(cancel: CancelCheck | None, response: Any) -> Iterator[None]:
    """Read a stream in the block; a cancel request shuts its response down and raises ``BuildCancelled``.

    Whatever the stream raises once the cancel was requested (a broken connection, an
    incomplete build) means "cancelled", not a failure.
    """
    try:
        if cancel is None or response is None:
            yield
        else:
            with cancel.aborting(_shutdown(response)):
                yield
    except Exception:
        if cancel is not None and cancel.requested:
            raise BuildCancelled(cancel.reason) from None
        raise
    finally:
        if response is not None:
            response.close()


def _remove_containers(client: docker.DockerClient, containers: list[str], log: Log,
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


def push_image(
    client: docker.DockerClient,
    repository: str,
    tags: Iterable[str],
    log: Log,
    auth: dict[str, str] | None = None,
    cancel: CancelCheck | None = None,
) -> str:
    """Push every tag of ``repository``; return the manifest digest the registry reported.

    A cancel request stops the push under way (the engine writes no manifest) and raises
    ``BuildCancelled``; tags pushed before stay in the registry.
    """
    digest: str | None = None
    for tag in tags:
        if cancel is not None:
            cancel.raise_if_requested()
        log(f"Pushing {repository}:{tag}")
        try:
            with _responses(client) as responses:
                stream = client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth)
            with _stop_on_cancel(cancel, _response_to(responses, "/push")):
                for chunk in stream:
                    if "error" in chunk:
                        raise TransientError(
                            f"registry refused the push of {repository}:{tag}: {chunk['error']}")
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = aux["Digest"]
                    elif chunk.get("status") and not chunk.get("progressDetail"):
                        log(f"{chunk.get('id', '')} {chunk['status']}".strip())
        except APIError as exc:
            raise _classify(exc, "push") from None
        except (DockerException, OSError) as exc:
            raise EngineUnavailable(f"Docker Engine failed during the push: {exc}") from None
    if digest is None:
        raise TransientError(f"the registry reported no digest for {repository}")
    log(f"Pushed {repository}@{digest}")
    return digest


def _log_text(text: str, log: Log) -> None:
    for line in text.splitlines():
        if line.strip():
            log(line.rstrip())


def _classify(exc: APIError, step: str) -> Exception:
    message = exc.explanation or str(exc)
    if exc.status_code is not None and 400 <= exc.status_code < 500:
        return PermanentError(f"docker {step} rejected: {message}")
    return TransientError(f"Docker Engine error during the {step}: {message}")
