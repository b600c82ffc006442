"""What ``buildhook serve`` keeps in the data directory, and the environment every command sees.

On embedded defaults the data directory (``BUILDHOOK_DATA_DIR``, default ``.buildhook``) holds
a generated secret key, the private registry's address and events token, and, while ``serve``
runs, ``serve.json`` naming its private Redis and its address (the webhook URLs' base). Every command reads them, so ``buildhook run``
or ``buildhook triggers add`` in the same directory talk to the same broker and registry.
Variables that are set always win.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

KEY_FILE = "secret_key"
EVENTS_TOKEN_FILE = "registry_events_token"
SERVE_STATE_FILE = "serve.json"


def data_dir(env: dict[str, str]) -> Path:
    return Path(env.get("BUILDHOOK_DATA_DIR") or ".buildhook")


def generated_secret(path: Path, create: bool, what: str) -> str | None:
    """The secret kept in ``path`` (0600), created on first use when ``create``."""
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        print(f"buildhook: created {what} in {path}", file=sys.stderr)
    return path.read_text().strip() if path.exists() else None


def pid_alive(pid: object) -> bool:
    """Whether process ``pid`` runs (someone else's counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_serve(directory: Path) -> dict[str, object] | None:
    """What a running ``buildhook serve`` of this data directory published, or None."""
    try:
        state = json.loads((directory / SERVE_STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and pid_alive(state.get("pid")) else None


def publish_serve(directory: Path, broker_url: str | None, public_url: str | None = None) -> None:
    state = {"pid": os.getpid(), "broker_url": broker_url, "public_url": public_url}
    (directory / SERVE_STATE_FILE).write_text(json.dumps(state) + "\n")


def unpublish_serve(directory: Path) -> None:
    (directory / SERVE_STATE_FILE).unlink(missing_ok=True)


def local_env(create: bool = False) -> dict[str, str]:
    """The environment, completed from the data directory for whatever is not set.

    ``create``: make the secret key (and, without ``BUILDHOOK_REGISTRY``, the private
    registry's events token) when missing; ``buildhook serve`` and ``triggers add`` do.
    """
    from buildhook.registry_server import private_registry_address

    env = dict(os.environ)
    directory = data_dir(env)
    if not env.get("BUILDHOOK_SECRET_KEY"):
        key = generated_secret(directory / KEY_FILE, create,
                               "a secret key (set BUILDHOOK_SECRET_KEY to use your own)")
        if key:
            env["BUILDHOOK_SECRET_KEY"] = key
    if not env.get("BUILDHOOK_REGISTRY"):
        registry_dir = directory / "registry"
        if create or (registry_dir / "address").exists():
            env["BUILDHOOK_REGISTRY"] = private_registry_address(registry_dir)
        if not env.get("BUILDHOOK_REGISTRY_EVENTS_TOKEN"):
            token = generated_secret(directory / EVENTS_TOKEN_FILE, create, "the private registry's events token")
            if token:
                env["BUILDHOOK_REGISTRY_EVENTS_TOKEN"] = token
    serve = running_serve(directory)
    for key, variable in (("broker_url", "BUILDHOOK_BROKER_URL"), ("public_url", "BUILDHOOK_PUBLIC_URL")):
        if serve and serve.get(key) and not env.get(variable):
            env[variable] = str(serve[key])
    return env
