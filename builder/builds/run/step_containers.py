"""The step containers a build attempt left on the engine: found in its log, removed by force.

A classic build names each step's container in its log ("---> Running in <id>"). When the
worker that ran the attempt died (builder/builds/run/reaper.py) or the engine went away mid-step
(builder/builds/run/pipeline.py, on the retry), those containers may still be there.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

import docker
from docker.errors import APIError, DockerException, NotFound
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from builder.errors import TransientError
from builder.db.models import BuildLogLine

log = logging.getLogger(__name__)

# How a classic build names a step's container in its output (and so in the log).
RUNNING_IN = re.compile(r"---> Running in ([0-9a-f]{12,64})")


def attempt_containers(sessions: sessionmaker[Session], build_id: int, attempt: int) -> list[str]:
    """The step containers attempt ``attempt`` reported in its log ("---> Running in <id>")."""
    header = f"Build {build_id} (attempt {attempt}):"
    with sessions() as session:
        rows = list(session.execute(
            select(BuildLogLine.seq, BuildLogLine.text)
            .where(BuildLogLine.build_id == build_id,
                   or_(BuildLogLine.text.like("%---> Running in %"), BuildLogLine.text.like(f"{header}%"),
                       BuildLogLine.text.like("Build % (attempt %):%")))
            .order_by(BuildLogLine.seq)
        ))
    containers: list[str] = []
    inside = False
    for _seq, text in rows:
        if text.startswith("Build ") and "(attempt " in text:
            inside = text.startswith(header)
            continue
        if inside:
            containers += RUNNING_IN.findall(text)
    return list(dict.fromkeys(containers))


def remove_containers(engine: Callable[[str | None], docker.DockerClient], docker_host: str | None,
                      containers: list[str]) -> list[str]:
    """Remove (by force) each of ``containers`` still on the engine; the ones removed."""
    try:
        client = engine(docker_host)
    except TransientError as exc:
        log.warning("could not remove a dead build's containers %s: %s", ", ".join(containers), exc)
        return []
    removed = []
    try:
        for container in containers:
            try:
                client.api.remove_container(container, force=True)
                removed.append(container)
            except NotFound:
                pass
            except (APIError, DockerException, OSError) as exc:
                log.warning("could not remove a dead build's container %s: %s", container, exc)
    finally:
        client.close()
    return removed
