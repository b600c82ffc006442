"""The steps of one build attempt (``builder/builds/run/pipeline.py`` runs them in order): prepare, check out,
build and push, clean up, record the success.

The steps share one ``Attempt``: its inputs (read once after the claim), its fence, log, watcher
(``CancelCheck``) and work directory. A step that finds the build no longer this attempt's (a
reaper took it) raises at once; one stopped by a cancel request, a timeout or the log limit raises
``BuildCancelled``. ``builder/builds/run/outcome.py`` decides what either means.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import docker
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.image.cache import cache_sources, keep_unchanged, previous_build
from builder.builds.image.context import BuildLimits
from builder.builds.image.engines import BuildEngine, engine_for
from builder.builds.run.log import BuildLog, CancelCheck
from builder.builds.run.outcome import final_write, lost, set_state
from builder.builds.run.processes import git_stopped_on
from builder.builds.run.stops import Fence
from builder.builds.image.buildkit_auth import registry_logins
from builder.builds.run.clone import GitAuth, changed_files, clone_commit, commit_time, redact_url
from builder.triggers.clone_urls import clone_url_problem
from builder.builds.commit_order import Claimed, history_fetch, settle
from builder.deploys.deployments import link_pushed_build
from builder.errors import PermanentError
from builder.builds.image.classic import BuildSpec, build_image
from builder.builds.image.test import push_tested
from builder.builds.image import local_images
from builder.triggers.rule_tests import ImageTest
from builder.db.models import Build, BuildState, utcnow
from builder.triggers.path_filters import filter_reason
from builder.builds.image.platforms import build_platforms
from builder.registries.credentials import RegistryAccess
from builder.registries.image_names import registry_host
from builder.builds.request_builds import full_commit, not_pushed
from builder.settings import ConfigError, Settings
from builder.builds.run.step_containers import attempt_containers, remove_containers

log = logging.getLogger(__name__)

Engine = Callable[[str | None], docker.DockerClient]


def oci_labels(build: Build, created: datetime) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.revision": build.commit,
        "org.opencontainers.image.source": redact_url(build.clone_url),
        "org.opencontainers.image.created": created.isoformat(),
        "org.opencontainers.image.ref.name": build.ref_name,
    }
    if build.ref_type == "tag":
        labels["org.opencontainers.image.version"] = build.ref_name
    return labels


@dataclass
class AttemptInputs:
    """What one attempt reads once, right after its claim."""

    build: Build  # detached: read in the claim's transaction
    auth: GitAuth | None
    trigger_timeout: int | None
    secret_args: dict[str, str]
    unreadable: str | None  # why the secret build args cannot be read
    test: ImageTest | None
    pull: bool
    order: Claimed
    platforms: tuple[str, ...]


@dataclass
class Attempt:
    """One claimed attempt, as its steps share it."""

    sessions: sessionmaker[Session]
    settings: Settings
    inputs: AttemptInputs
    fence: Fence
    build_log: BuildLog
    cancel: CancelCheck
    workdir: Path
    engine: Engine
    client: docker.DockerClient | None = None

    @property
    def build(self) -> Build:
        return self.inputs.build


@dataclass
class Result:
    """What an attempt that ran through leaves for the decision."""

    skip: str | None = None  # why the path filters skip it
    superseded: str | None = None  # why a newer commit supersedes it
    digest: str = ""


def prepare(attempt: Attempt) -> BuildEngine:
    """Refuse early what cannot build; connect to the engine; remove what a previous attempt left."""
    attempt.cancel.raise_if_requested()
    if attempt.inputs.unreadable:
        raise PermanentError(attempt.inputs.unreadable)
    build_engine = _build_engine(attempt.settings)
    attempt.client = attempt.engine(attempt.settings.docker_host)
    if attempt.build.attempts > 1:
        _remove_previous_attempt(attempt.sessions, attempt.settings, attempt.engine, attempt.fence.build_id,
                                 attempt.build.attempts - 1, attempt.build_log)
    return build_engine


def check_out(attempt: Attempt) -> tuple[Path, str | None, str | None]:
    """Fetch the commit; (checkout, why it is superseded, why the path filters skip it)."""
    build, build_log = attempt.build, attempt.build_log
    filters = (tuple(build.included_files), tuple(build.ignored_files))
    refused = clone_url_problem(build.clone_url, attempt.settings.allow_file_clones)
    if refused:  # e.g. a trigger stored before clone URLs were checked: git never sees it
        raise PermanentError(refused)
    auth = attempt.inputs.auth
    with git_stopped_on(attempt.cancel, attempt.workdir):
        checkout = clone_commit(build.clone_url, build.commit, build.ref, attempt.workdir / "src", build_log,
                                auth=auth, before=build.before if any(filters) else None)
        build.commit = full_commit(attempt.sessions, attempt.fence, checkout, build.commit)
        superseded = settle(attempt.sessions, attempt.inputs.order.at(build.commit), checkout,
                            history_fetch(build.clone_url, auth, checkout, build_log), build_log)
        skip = None if superseded else _path_filter(checkout, build, filters, build_log)
    return checkout, superseded, skip


def build_and_push(attempt: Attempt, checkout: Path, build_engine: BuildEngine) -> str:
    """Build the image (one, or one per platform) and push it unless the build does not push; its digest."""
    build, inputs, client = attempt.build, attempt.inputs, attempt.client
    assert client is not None  # connected by prepare
    if not set_state(attempt.sessions, attempt.fence, state=BuildState.BUILDING.value, building_at=utcnow(),
                     platforms=list(inputs.platforms) or None):
        raise lost(attempt.cancel, attempt.fence)
    previous = previous_build(attempt.sessions, build)
    spec = build_spec(attempt, checkout, build_engine, cache_sources(client, previous, build_engine, attempt.build_log))
    registries = RegistryAccess(attempt.settings)
    if inputs.platforms and build.push:
        return build_platforms(client, spec, inputs.platforms, inputs.test, registries, attempt.workdir,
                               attempt.build_log, attempt.cancel, lambda: pushing(attempt))
    # one image; a build that does not push (a request's) is built for the engine's platform
    displaced = local_images.tagged(client, build.image, build.tags) if build.push else set()
    image_id = build_image(client, spec, attempt.build_log, attempt.cancel)
    if build_engine.buildkit:
        keep_unchanged(client, image_id, build, previous, attempt.build_log,
                       registries.docker_auth(registry_host(build.image)))
    if not build.push:
        attempt.build_log(not_pushed(build))
        return ""
    pushing(attempt)
    digest = push_tested(client, image_id, build.image, tuple(build.tags), inputs.test, registries, spec.limits,
                         attempt.workdir, attempt.build_log, attempt.cancel)
    local_images.keep_first_tag(client, build.image, tuple(build.tags), displaced | {image_id}, attempt.build_log)
    return digest


def build_spec(attempt: Attempt, checkout: Path, build_engine: BuildEngine, cache_from: tuple[str, ...]) -> BuildSpec:
    build, secret_args = attempt.build, attempt.inputs.secret_args
    return BuildSpec(
        checkout=checkout,
        dockerfile=build.dockerfile,
        context=build.context,
        repository=build.image,
        tags=tuple(build.tags),
        labels=oci_labels(build, commit_time(checkout)),
        build_args={**build.build_args, **secret_args},
        target=build.target,
        cache_from=cache_from,
        limits=BuildLimits.from_settings(attempt.settings),
        engine=build_engine,
        secret_names=tuple(secret_args),
        registry_logins=registry_logins(RegistryAccess(attempt.settings), build.image),
        pull=attempt.inputs.pull,
    )


def pushing(attempt: Attempt) -> None:
    """The build's state becomes pushing, unless it was stopped or is no longer this attempt's."""
    attempt.cancel.raise_if_requested()
    if not set_state(attempt.sessions, attempt.fence, state=BuildState.PUSHING.value, pushing_at=utcnow()):
        raise lost(attempt.cancel, attempt.fence)


def clean_up(attempt: Attempt) -> None:
    """Remove the work directory, close the engine's client, write the log lines still buffered."""
    shutil.rmtree(attempt.workdir, ignore_errors=True)
    if attempt.client is not None:
        _close(attempt.client)
    try:
        attempt.build_log.flush()
    except Exception as exc:  # kept buffered: the final write writes them
        log.warning("build %s: could not write its log: %s", attempt.fence.build_id, exc)


def record_success(attempt: Attempt, digest: str) -> bool:
    """The succeeded state and digest, and the deployments it starts; False if the build is not ours."""
    build, build_id = attempt.build, attempt.fence.build_id

    def link(session: Session) -> None:
        done = session.get(Build, build_id, populate_existing=True)
        assert done is not None
        link_pushed_build(session, done)

    # reason=None: a cancel request's "cancelled by ..." does not apply
    return final_write(attempt.build_log, attempt.fence,
                       f"Succeeded: {build.image}@{digest}" if build.push else "Succeeded (not pushed)",
                       dict(state=BuildState.SUCCEEDED.value, digest=digest or None, finished_at=utcnow(),
                            reason=None),
                       then=link)


def _remove_previous_attempt(sessions: sessionmaker[Session], settings: Settings,
                             engine: Callable[[str | None], docker.DockerClient], build_id: int, attempt: int,
                             build_log: BuildLog) -> None:
    """A retry after the engine went away (or crashed) removes the step containers it left."""
    containers = attempt_containers(sessions, build_id, attempt)
    removed = remove_containers(engine, settings.docker_host, containers) if containers else []
    if removed:
        build_log(f"Removed {len(removed)} container(s) attempt {attempt} left: {', '.join(removed)}")


def _path_filter(checkout: Path, build: Build, filters: tuple[tuple[str, ...], tuple[str, ...]],
                 build_log: BuildLog) -> str | None:
    """Why the path filters skip this build, computed from the clone; None to build."""
    if not any(filters):
        return None
    files = changed_files(checkout, build.before, build.commit) if build.before else None
    if files is None:
        build_log("Changed files unknown (a new ref, or the previous commit is gone): building")
        return None
    build_log(f"Changed files: {', '.join(files[:20])}{' ...' if len(files) > 20 else ''}")
    return filter_reason(files, *filters)


def _build_engine(settings: Settings) -> BuildEngine:
    try:
        return engine_for(settings)
    except ConfigError as exc:  # the worker refuses to start so; a build run elsewhere fails saying why
        raise PermanentError(str(exc)) from None


def _close(client: docker.DockerClient) -> None:
    try:
        client.close()
    except Exception as exc:  # its connections go with the process anyway
        log.warning("could not close the Docker client: %s", exc)
