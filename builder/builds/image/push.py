"""Push an image's tags to its registry with docker-py.

A cancel request (``CancelCheck``) stops the push under way: the stream's HTTP response
is shut down from the cancel check's thread and the engine stops before the manifest is
written. Errors name the registry (its host) and why: one that cannot be reached or
answers 5xx is transient, one that refuses the credentials permanent. The caller passes the
credentials of the image's registry only (``builder.registries.credentials``).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import docker
from docker.errors import APIError

from builder.builds.run.log import CancelCheck
from builder.errors import PermanentError, TransientError
from builder.registries.image_names import registry_host
from builder.builds.image.classic import (
    CONNECTION_ERRORS,
    EngineUnavailable,
    Log,
    connection_error_reason,
    engine_api_error,
    engine_name,
    stop_on_cancel,
)


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
    ``BuildCancelled``; tags pushed before stay in the registry. A registry that cannot be
    reached or answers 5xx is a ``TransientError``, one that refuses the credentials a
    ``PermanentError``; both name the registry.
    """
    registry = registry_host(repository)
    digest: str | None = None
    countdowns: dict[str, int] = {}
    for tag in tags:
        if cancel is not None:
            cancel.raise_if_requested()
        log(f"Pushing {repository}:{tag}")
        digest = None
        try:
            with _responses(client) as responses:
                stream = client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth)
            with stop_on_cancel(cancel, _response_to(responses, "/push")):
                for chunk in stream:
                    if "error" in chunk:
                        error = str(chunk["error"]).strip()
                        log(f"ERROR: {error}")
                        raise _push_error(registry, f"{repository}:{tag}", error, sent_credentials=auth is not None)
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = aux["Digest"]
                    elif chunk.get("status") and not chunk.get("progressDetail"):
                        if _ticking(chunk, countdowns):
                            continue
                        log(f"{chunk.get('id', '')} {chunk['status']}".strip())
                if digest is None:  # the engine always ends a push with an error or the digest
                    raise ConnectionError(f"the push of {repository}:{tag} ended before the registry's answer")
        except APIError as exc:
            raise engine_api_error(exc, "push", client) from None
        except CONNECTION_ERRORS as exc:
            raise EngineUnavailable(f"{engine_name(client)} unreachable during the push to registry "
                                    f"{registry}: {connection_error_reason(exc)}") from None
    if digest is None:
        raise PermanentError(f"no tags to push for {repository}")
    log(f"Pushed {repository}@{digest}")
    return digest


_RETRYING = re.compile(r"Retrying in (\d+) seconds?")


def _ticking(chunk: dict[str, Any], countdowns: dict[str, int]) -> bool:
    """Whether ``chunk`` is one more second of an upload retry's countdown already logged.

    The engine retries a failed layer upload itself (after 5, 10, 15, 20 s) and sends
    "Retrying in N seconds" every second: the log keeps the first line of each wait.
    """
    found = _RETRYING.fullmatch(str(chunk.get("status", "")))
    if not found:
        return False
    layer, seconds = str(chunk.get("id", "")), int(found[1])
    previous = countdowns.get(layer)
    countdowns[layer] = seconds
    return previous is not None and seconds < previous


_UNREACHABLE = ("connection refused", "dial tcp", "no such host", "i/o timeout", "timeout", "eof",
                "connection reset", "no route to host", "network is unreachable", "tls handshake")
_CREDENTIALS = ("unauthorized", "authentication required", "denied", "incorrect username or password",
                "no basic auth credentials")


def _push_error(registry: str, reference: str, error: str, sent_credentials: bool = True) -> Exception:
    """The engine's push error, naming the registry: transient unless the registry refused the credentials."""
    text = error.lower()
    status = re.search(r"status(?: code)?:? ([1-5]\d\d)\b", text)  # "unexpected HTTP status: 503 ..."
    if any(marker in text for marker in _CREDENTIALS) or (status and status.group(1) in ("401", "403")):
        hint = ("check BUILDHOOK_REGISTRY_USERNAME/PASSWORD or BUILDHOOK_REGISTRY_CREDENTIALS" if sent_credentials
                else "buildhook sends credentials only to BUILDHOOK_REGISTRY and BUILDHOOK_TRUSTED_REGISTRIES")
        return PermanentError(f"registry {registry} refused the push of {reference} ({hint}): {error}")
    if status and status.group(1).startswith("5"):
        return TransientError(f"registry {registry} failed during the push of {reference} "
                              f"(HTTP {status.group(1)}): {error}")
    if any(marker in text for marker in _UNREACHABLE):
        return TransientError(f"registry {registry} unreachable during the push of {reference}: {error}")
    return TransientError(f"registry {registry} refused the push of {reference}: {error}")


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
    """The last response to a request whose path ends with ``path`` (e.g. ``/push``)."""
    for response in reversed(responses):
        request = getattr(response, "request", None)
        if request is not None and request.path_url.split("?", 1)[0].endswith(path):
            return response
    return None
