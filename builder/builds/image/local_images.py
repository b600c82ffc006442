"""What a pushed build leaves on the worker's engine: its image under its first tag, nothing else.

``docker build -t`` leaves the image under every tag it was given, and a tag a later build takes
leaves the older image untagged. Left alone, a worker's engine keeps every image it ever built:
with the default tags (``{branch}``, ``{short_sha}``, ``latest``) one more per commit. Its disk fills,
and the classic builder's cache lookup for a ``FROM scratch`` step reads every image on the engine
(seconds per build once there are a thousand).

So once a build is pushed, the worker removes its other local tags (the registry has them) and
the images its tags were taken from, unless something still uses them: a container (the engine
refuses), another tag, or a child image. The image under the first tag stays: it is the next
build's layer cache (``cache.cache_sources``) and what an unchanged rebuild pushes again
(``cache.keep_unchanged``). A multi-platform build's per-platform images, pushed by digest and
never tagged, are removed too (BuildKit keeps its own cache). The build is pushed by then: an
engine that cannot be asked leaves the images for the next build, and never fails this one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

Log = Callable[[str], None]


def tagged(client: docker.DockerClient, repository: str, tags: Iterable[str]) -> set[str]:
    """The ids of the images the engine has under ``repository:tag`` for these tags."""
    found = set()
    for tag in tags:
        try:
            found.add(client.api.inspect_image(f"{repository}:{tag}")["Id"])
        except (DockerException, RequestException):  # not on this engine (or no engine: the build says so)
            continue
    return found


def keep_first_tag(client: docker.DockerClient, repository: str, tags: tuple[str, ...], displaced: set[str],
                   log: Log) -> None:
    """After the push of ``repository`` under ``tags``: untag all but the first, and remove the images in
    ``displaced`` (what the tags named before the build) that no tag names any more."""
    removed: list[str] = []
    with _left_for_later(log):
        for tag in tags[1:]:
            _remove(client, f"{repository}:{tag}")
        kept = tagged(client, repository, tags[:1])
        removed = [image for image in sorted(displaced - kept) if _untagged(client, image) and _remove(client, image)]
    if removed:
        log(f"Removed {len(removed)} older image(s) of {repository} from the engine: "
            f"{', '.join(image.removeprefix('sha256:')[:12] for image in removed)}")


def pull(client: docker.DockerClient, reference: str, auth: dict[str, str] | None) -> str | None:
    """Pull ``reference`` onto the engine; the registry's error, or None once the engine has it."""
    for chunk in client.api.pull(reference, auth_config=auth, stream=True, decode=True):
        if "error" in chunk:
            return str(chunk["error"]).strip()
    return None


def remove_untagged(client: docker.DockerClient, images: Iterable[str]) -> None:
    """Remove these images unless a tag or a container still uses them."""
    with _left_for_later(lambda _line: None):
        for image in images:
            if _untagged(client, image):
                _remove(client, image)


@contextmanager
def _left_for_later(log: Log) -> Iterator[None]:
    try:
        yield
    except (DockerException, RequestException, OSError) as exc:  # the engine went away after the push
        log(f"Older images stay on the engine for now: {exc}")


def _untagged(client: docker.DockerClient, image: str) -> bool:
    try:
        tags = client.api.inspect_image(image).get("RepoTags") or []
    except DockerException:  # gone already
        return False
    return not [tag for tag in tags if tag != "<none>:<none>"]


def _remove(client: docker.DockerClient, name: str) -> bool:
    """Remove a tag, or an untagged image and its untagged parents; False if the engine refuses (in use)."""
    try:
        client.api.remove_image(name)
    except DockerException:
        return False
    return True
