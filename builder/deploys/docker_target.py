"""The "docker" deploy target: recreate a named container from a new image, Watchtower style.

The container keeps what it set itself and the image's defaults follow the new image:
``Cmd``, ``Entrypoint``, ``WorkingDir``, ``User``, ``Healthcheck``, ``StopSignal`` and each
``Env``/``Labels``/``ExposedPorts``/``Volumes`` entry is kept only when it differs from the
OLD image's config (otherwise the new image's value applies). ``Hostname``/``Domainname``
(when set explicitly), ``Tty`` and ``OpenStdin`` are kept, and so are the ``HostConfig``
items in ``KEPT_HOST_CONFIG`` plus the container's volumes (anonymous ones are re-attached
by name) and its user-defined networks with their aliases. Deliberately NOT carried over:
anything that widens privileges (``Privileged``, ``CapAdd``, ``Devices``, ``SecurityOpt``,
host PID/IPC namespaces) and resource limits.

Only the given client is used, so it works with any DOCKER_HOST.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import docker
from docker.errors import APIError, DockerException, NotFound

from builder.errors import PermanentError, TransientError

STOP_TIMEOUT = 10
LOG_TAIL = 20
KEPT_HOST_CONFIG = (
    "Binds", "Mounts", "Tmpfs", "PortBindings", "PublishAllPorts", "RestartPolicy", "NetworkMode",
    "ExtraHosts", "Dns", "DnsOptions", "DnsSearch", "LogConfig", "CapDrop", "ReadonlyRootfs", "Init",
)
OVERRIDABLE = ("Cmd", "Entrypoint", "WorkingDir", "User", "Healthcheck", "StopSignal")
BUILTIN_NETWORKS = ("default", "bridge", "host", "none")


@dataclass(frozen=True)
class DockerDeployResult:
    container: str
    old_image: str
    new_image: str
    container_id: str
    rolled_back: bool
    log: tuple[str, ...]


def deploy_container(client: docker.DockerClient, name: str, image: str, *, stable_seconds: float = 5.0,
                     health_timeout: float = 60.0, pull: bool = True, auth: dict[str, str] | None = None,
                     log: Callable[[str], None] = lambda line: None) -> DockerDeployResult:
    """Recreate container ``name`` from ``image`` (repo@digest); roll back if it does not stay up.

    Returns ``rolled_back=True`` when the new container crashed, failed to start or did not
    become healthy (the old one runs again). Raises PermanentError/TransientError when the
    image or the container is unusable or the engine fails mid-swap; the old container is
    then left in place and in its previous state. A stopped container is recreated and started.
    ``auth`` is the image's registry's own credentials (the engine sends them only when challenged).
    """
    lines: list[str] = []

    def note(line: str) -> None:
        lines.append(line)
        log(line)

    api = client.api
    try:
        old = api.inspect_container(name)
    except NotFound:
        raise PermanentError(f"container {name} not found") from None
    except (DockerException, OSError) as exc:
        raise _error(exc, f"inspection of container {name}") from None
    name = old["Name"].lstrip("/")  # in case we were given an id
    old_id, old_image = old["Id"], old["Image"]
    new_image_id = _ensure_image(client, image, pull, note, auth)

    def result(container_id: str, rolled_back: bool) -> DockerDeployResult:
        return DockerDeployResult(name, old_image, image, container_id, rolled_back, tuple(lines))

    was_running = bool(old["State"].get("Running"))
    if new_image_id == old_image and was_running:
        note(f"{name} already runs {image}; nothing to do")
        return result(old_id, False)

    try:
        old_image_config = api.inspect_image(old_image).get("Config") or {}
    except DockerException:
        old_image_config = {}  # the old image is gone: treat all of the config as the container's own
    config, extra_networks = _recreate_config(old, old_image_config, image)
    backup = f"{name}-buildhook-old-{old_id[:12]}"
    new_id: str | None = None
    renamed = committed = False
    try:
        try:
            if was_running:
                note(f"Stopping {name} ({old_id[:12]}, image {old_image[:19]})")
                api.stop(old_id, timeout=STOP_TIMEOUT)
            api.rename(old_id, backup)
            renamed = True
            note(f"Renamed the old container to {backup}")
            new_id = api.create_container_from_config(config, name=name)["Id"]
            for network, endpoint in extra_networks.items():
                api.connect_container_to_network(new_id, network, aliases=endpoint.get("Aliases"))
            note(f"Created {name} ({new_id[:12]}) from {image}")
            committed = _start_and_verify(api, new_id, stable_seconds, health_timeout, note) is None
        except (DockerException, OSError) as exc:
            raise _error(exc, f"recreation of container {name}") from None
    finally:
        if not committed:
            _roll_back(api, name, old_id, new_id, renamed, was_running, note)
    if not committed:
        return result(old_id, True)
    try:
        api.remove_container(old_id)
        note(f"Removed the old container {backup}")
    except (DockerException, OSError) as exc:
        note(f"WARNING: could not remove the old container {backup}: {exc}")
    return result(new_id, False)


def _ensure_image(client: docker.DockerClient, image: str, pull: bool, note: Callable[[str], None],
                  auth: dict[str, str] | None = None) -> str:
    """Pull ``image`` if asked; return its local image id."""
    failure: Exception | None = None
    if pull:
        note(f"Pulling {image}")
        try:
            client.images.pull(image, auth_config=auth)
        except (DockerException, OSError) as exc:
            failure = _error(exc, f"pull of {image}")
    try:
        image_id = client.api.inspect_image(image)["Id"]
    except NotFound:
        if failure is not None:
            raise failure from None
        raise PermanentError(f"image {image} is not on the Docker Engine (and pull is off)") from None
    except (DockerException, OSError) as exc:
        raise _error(exc, f"inspect image {image}") from None
    if failure is not None:
        note(f"Pull failed ({failure}); using the image the engine already has")
    return image_id


def _recreate_config(old: dict[str, Any], image_config: dict[str, Any], image: str) -> tuple[dict, dict]:
    """The create config for the new container, and the extra networks to connect it to."""
    cfg, host = old.get("Config") or {}, old.get("HostConfig") or {}
    config: dict[str, Any] = {"Image": image, "Tty": cfg.get("Tty", False),
                              "OpenStdin": cfg.get("OpenStdin", False), "StdinOnce": cfg.get("StdinOnce", False)}
    for key in OVERRIDABLE:
        if cfg.get(key) != image_config.get(key):
            config[key] = cfg.get(key)
    image_env = set(image_config.get("Env") or [])
    config["Env"] = [item for item in cfg.get("Env") or [] if item not in image_env]
    image_labels = image_config.get("Labels") or {}
    config["Labels"] = {k: v for k, v in (cfg.get("Labels") or {}).items() if image_labels.get(k) != v}
    for key in ("ExposedPorts", "Volumes"):
        own = {k: v for k, v in (cfg.get(key) or {}).items() if k not in (image_config.get(key) or {})}
        if own:
            config[key] = own
    mode = host.get("NetworkMode") or "default"
    if cfg.get("Hostname") and cfg["Hostname"] != old["Id"][:12] and mode != "host" \
            and not mode.startswith("container:"):
        config["Hostname"] = cfg["Hostname"]
        config["Domainname"] = cfg.get("Domainname") or ""
    host_config = {key: host[key] for key in KEPT_HOST_CONFIG if host.get(key) is not None}
    # Anonymous volumes ("-v /path", image VOLUMEs) are re-attached by name so their data stays.
    binds = [bind for bind in host.get("Binds") or [] if ":" in bind]
    taken = {bind.split(":")[1] for bind in binds} | {m.get("Target") for m in host.get("Mounts") or []}
    binds += [f"{m['Name']}:{m['Destination']}" + ("" if m.get("RW", True) else ":ro")
              for m in old.get("Mounts") or [] if m.get("Type") == "volume" and m["Destination"] not in taken]
    if binds:
        host_config["Binds"] = binds
    config["HostConfig"] = host_config
    extra: dict[str, dict] = {}
    if mode not in BUILTIN_NETWORKS and not mode.startswith("container:"):
        for network, endpoint in ((old.get("NetworkSettings") or {}).get("Networks") or {}).items():
            aliases = [a for a in endpoint.get("Aliases") or [] if a != old["Id"][:12]]
            kept = {"Aliases": aliases or None, "IPAMConfig": endpoint.get("IPAMConfig")}
            if network == mode:
                config["NetworkingConfig"] = {"EndpointsConfig": {network: kept}}
            else:
                extra[network] = kept
    return config, extra


def _start_and_verify(api: docker.APIClient, new_id: str, stable_seconds: float, health_timeout: float,
                      note: Callable[[str], None]) -> str | None:
    """Start the new container and watch it; return why it failed, or None once it is up."""
    try:
        api.start(new_id)
    except (DockerException, OSError) as exc:
        return _failed(f"the new container failed to start: {exc}", note)
    started, started_at = time.monotonic(), int(time.time()) - 1
    info = api.inspect_container(new_id)
    state, restarts = info["State"], info.get("RestartCount", 0)
    if state.get("Health"):
        note(f"Waiting up to {health_timeout:g}s for the healthcheck to pass")
        deadline = started + health_timeout
    else:
        note(f"Watching the new container for {stable_seconds:g}s")
        deadline = started + stable_seconds
    while True:
        if not state.get("Running") or state.get("Restarting") or restarts:
            code = _first_exit_code(api, new_id, started_at, fallback=state.get("ExitCode"))
            return _failed(f"the new container exited with code {code}"
                           + (f" (restarted {restarts} times)" if restarts else ""), note)
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            note("The new container is healthy")
            return None
        if health == "unhealthy":
            return _failed("the new container's healthcheck failed", note)
        if time.monotonic() >= deadline:
            if health:
                return _failed(f"the new container did not become healthy within {health_timeout:g}s", note)
            note(f"The new container stayed up for {stable_seconds:g}s")
            return None
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        info = api.inspect_container(new_id)
        state, restarts = info["State"], info.get("RestartCount", 0)


def _first_exit_code(api: docker.APIClient, container_id: str, since: int, fallback: object) -> object:
    """The exit code of the container's first death, from the engine's events.

    With a restart policy the engine may have restarted the container before it is
    inspected, and a running container's ``State.ExitCode`` is 0 again.
    """
    try:
        events = api.events(since=since, until=int(time.time()) + 1, decode=True,
                            filters={"container": container_id, "event": "die"})
        for event in events:
            code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
            if code is not None:
                return code
    except (DockerException, OSError):
        pass
    return fallback


def _failed(reason: str, note: Callable[[str], None]) -> str:
    note(f"Deploy failed: {reason}")
    return reason


def _roll_back(api: docker.APIClient, name: str, old_id: str, new_id: str | None, renamed: bool,
               was_running: bool, note: Callable[[str], None]) -> None:
    """Put the old container back under ``name`` (best effort, every step is tried)."""
    errors: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (DockerException, OSError) as exc:
            errors.append(f"{what}: {exc}")
            note(f"ERROR: rollback could not {what}: {exc}")

    if new_id is not None:
        try:
            output = api.logs(new_id, stdout=True, stderr=True, tail=LOG_TAIL).decode("utf-8", "replace")
            note(f"Last log lines of the new container ({new_id[:12]}):")
            for line in output.splitlines():
                note(f"  | {line}")
        except (DockerException, OSError):
            pass
        attempt("remove the new container", lambda: api.remove_container(new_id, force=True))
    if renamed:
        attempt(f"rename the old container back to {name}", lambda: api.rename(old_id, name))
    if was_running:
        attempt("start the old container", lambda: api.start(old_id))
    if errors:
        raise TransientError(f"rollback of {name} incomplete ({'; '.join(errors)})")
    note(f"Rolled back: {name} is the old container ({old_id[:12]}) again")


def _error(exc: Exception, what: str) -> Exception:
    if isinstance(exc, APIError):
        message = exc.explanation or str(exc)
        if exc.status_code is not None and 400 <= exc.status_code < 500:
            return PermanentError(f"docker {what} rejected: {message}")
        return TransientError(f"Docker Engine error during the {what}: {message}")
    if isinstance(exc, DockerException):
        return PermanentError(f"docker {what} failed: {exc}")
    return TransientError(f"Docker Engine unreachable during the {what}: {exc}")
