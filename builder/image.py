"""Build an image from a checked-out commit and push its tags, with docker-py."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import docker
from docker.errors import APIError, DockerException

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


def build_image(client: docker.DockerClient, spec: BuildSpec, log: Log) -> str:
    """Build and tag the image; return its id. The build's output goes to ``log``."""
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
    image_id: str | None = None
    try:
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
        image_id, steps, cache_hits = _follow_build(stream, log)
    except APIError as exc:
        raise _classify(exc, "build") from None
    except (DockerException, OSError) as exc:
        raise EngineUnavailable(f"Docker Engine failed during the build: {exc}") from None
    for tag in spec.tags[1:]:
        client.api.tag(image_id, spec.repository, tag)
    log(f"Layer cache: {cache_hits} of {steps} steps from cache")
    log(f"Built {image_id}, tagged {', '.join(spec.tags)}")
    return image_id


def _follow_build(stream: Iterable[dict[str, Any]], log: Log) -> tuple[str, int, int]:
    """Log the build's output; return the image id, the number of steps and of cache hits."""
    image_id: str | None = None
    steps = cache_hits = 0
    for chunk in stream:
        if "stream" in chunk:
            text = str(chunk["stream"])
            steps += text.startswith("Step ")
            cache_hits += "---> Using cache" in text
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
    return image_id, steps, cache_hits


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
) -> str:
    """Push every tag of ``repository``; return the manifest digest the registry reported."""
    digest: str | None = None
    for tag in tags:
        log(f"Pushing {repository}:{tag}")
        try:
            for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk:
                    raise TransientError(f"registry refused the push of {repository}:{tag}: {chunk['error']}")
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
