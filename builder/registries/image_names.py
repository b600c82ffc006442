"""Where an image name points: its registry's host and its repository's path there (no Docker code)."""

from __future__ import annotations


def registry_host(repository: str) -> str:
    """The registry a repository name points at: its first component when that is a host, else Docker Hub."""
    first, slash, _rest = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def repository_path(image: str) -> str:
    """The repository's path in its registry: ``127.0.0.1:5000/acme/widget`` -> ``acme/widget``."""
    host = registry_host(image)
    if image.startswith(f"{host}/"):
        return image[len(host) + 1:]
    return image if "/" in image else f"library/{image}"
