"""Multi-platform images: one build per platform, then one OCI image index per tag.

A rule's ``"platforms": ["linux/amd64", "linux/arm64"]`` (each ``os/arch[/variant]``) asks for
an image that runs on each. dockerd 20.10's BuildKit (the docker driver) cannot put a
multi-platform image in the engine's image store, so each platform is built on its own
(``docker build --platform P``, untagged), each platform's image is pushed by its digest
(``builder.registries.upload.push_by_digest``, no tag), and an OCI image index listing them is
composed here and PUT through the registry's HTTP API: under its digest first, then (after the
rule's test, when it has one) under each tag. The build's digest is the index's.

``RUN`` steps of a platform the engine's host cannot run natively run under qemu-user-static
through binfmt_misc (``scripts/system-setup`` installs and registers it); a Dockerfile that
cross-builds (``FROM --platform=$BUILDPLATFORM``) needs no emulation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import docker
from sqlalchemy.orm import Session

from builder.builds.run.log import CancelCheck
from builder.errors import PermanentError
from builder.builds.image.classic import BuildSpec, Log, build_image
from builder.builds.image.local_images import remove_untagged
from builder.builds.image.test import run_test
from builder.triggers.rule_tests import ImageTest
from builder.registries.image_names import registry_host
from builder.db.models import TriggerRule
from builder.builds.image.platform_names import PLATFORM
from builder.registries.credentials import RegistryAccess
from builder.registries.upload import PushedManifest, RegistryClient, push_by_digest, manifest_digest, tag_manifest

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
def rule_platforms(session: Session, rule_id: int | None) -> tuple[str, ...]:
    """The platforms of a build's rule (read when the build runs, as its test is); () for one image."""
    rule = session.get(TriggerRule, rule_id) if rule_id is not None else None
    return tuple(rule.platforms or ()) if rule is not None else ()


def build_platforms(client: docker.DockerClient, spec: BuildSpec, platforms: tuple[str, ...], test: ImageTest | None,
                    registries: RegistryAccess, scratch: Path, log: Log, cancel: CancelCheck | None,
                    pushing: Callable[[], None]) -> str:
    """Build ``spec`` for each platform, push them and their index (see the module); the index digest."""
    if not spec.engine.buildkit:
        raise PermanentError("a rule with platforms needs BUILDHOOK_BUILD_ENGINE=buildkit: the classic builder "
                             "builds for the engine's own platform only")
    images = []
    for number, platform in enumerate(platforms, 1):
        log(f"Platform {platform} ({number} of {len(platforms)})")
        images.append((platform, build_image(client, replace(spec, platform=platform, tags=()), log, cancel)))
        _check(cancel)
    pushing()
    manifests = []
    for platform, image_id in images:
        pushed = push_by_digest(client, image_id, spec.repository, registries, scratch, log)
        manifests.append(_entry(pushed, platform))
        _check(cancel)
    body = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests}, indent=3).encode()
    index = push_by_digest_index(spec.repository, body, registries, log)
    if test is not None:
        run_test(client, f"{spec.repository}@{index.digest}", test, spec.limits, log,
                 registries.docker_auth(registry_host(spec.repository)), cancel)
        _check(cancel)
    digest = tag_manifest(index, spec.tags, registries, log)
    remove_untagged(client, [image_id for _platform, image_id in images])  # pushed; BuildKit keeps its cache
    return digest


def push_by_digest_index(image: str, body: bytes, registries: RegistryAccess, log: Log) -> PushedManifest:
    """PUT the index under its digest only (no tag yet)."""
    digest = RegistryClient(registries, image).put_manifest(manifest_digest(body), body, INDEX_TYPE)
    log(f"Pushed the image index {image}@{digest} ({len(json.loads(body)['manifests'])} platforms, no tag yet)")
    return PushedManifest(image=image, digest=digest, body=body, media_type=INDEX_TYPE)


def _entry(pushed: PushedManifest, platform: str) -> dict[str, Any]:
    found = PLATFORM.fullmatch(platform)
    assert found is not None  # checked when the rule was stored
    described = {"architecture": found["architecture"], "os": found["os"]}
    if found["variant"]:
        described["variant"] = found["variant"]
    return {"mediaType": pushed.media_type, "digest": pushed.digest, "size": len(pushed.body), "platform": described}


def _check(cancel: CancelCheck | None) -> None:
    if cancel is not None:
        cancel.raise_if_requested()
