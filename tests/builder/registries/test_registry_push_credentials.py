"""A push sends the registry credentials only to the registry they belong to (issue 13).

``builder.builds.run.pipeline.run_build`` runs here as the worker runs it, on the machine's Docker Engine,
in the private database of test_pipeline_faults. The Docker Engine only sends credentials
after a registry's ``401`` challenge, so the would-be registry of the probe challenges every
request (tests/challenging_registry.py). The configured registry is a ``docker-registry``
that asks for an htpasswd user, so its pushes succeed only with its credentials.
"""

from __future__ import annotations

import base64
import json
import uuid

import bcrypt
import pytest

from builder.errors import PermanentError
from builder.registries.api import resolve_digest
from builder.registries.credentials import RegistryAccess
from builder.settings import Settings
from tests.builder.builds.run.test_pipeline_faults import (  # noqa: F401 (cleanup_images, sessions: fixtures)
    cleanup_images,
    head_commit,
    new_build,
    run_until_finished,
    sessions,
)
from tests.challenging_registry import challenging_registry  # noqa: F401 (a fixture)
from tests.conftest import busybox_dockerfile, run_registry

USER, PASSWORD = "robot", f"pw-{uuid.uuid4().hex}"


def settings_from(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"BUILDHOOK_SECRET_KEY": "push-credentials", "BUILDHOOK_DATABASE_URL": "sqlite://",
                              "BUILDHOOK_WORK_DIR": str(tmp_path / "work"), "BUILDHOOK_ALLOW_FILE_CLONES": "1", **env})


@pytest.fixture
def auth_registry(tmp_path_factory):
    """A docker-registry on loopback that asks for USER / PASSWORD (htpasswd, bcrypt)."""
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    yield from run_registry(root, htpasswd=htpasswd)


def build_and_push(sessions, make_repo, settings: Settings, image: str, cleanup: list[str]):  # noqa: F811
    repo = make_repo(busybox_dockerfile(uuid.uuid4().hex))
    cleanup.append(image)
    return run_until_finished(sessions, settings, new_build(sessions, repo.url, head_commit(repo), image))


def test_a_push_to_another_registry_sends_it_no_credentials(
        sessions, tmp_path, make_repo, challenging_registry, cleanup_images):  # noqa: F811
    settings = settings_from(tmp_path, BUILDHOOK_REGISTRY="127.0.0.1:1", BUILDHOOK_REGISTRY_USERNAME=USER,
                             BUILDHOOK_REGISTRY_PASSWORD=PASSWORD)
    image = f"{challenging_registry.host}/leak/x-{uuid.uuid4().hex[:8]}"  # the trigger's --image names it

    ended = build_and_push(sessions, make_repo, settings, image, cleanup_images)

    assert challenging_registry.seen, "the engine tried to push there"
    assert challenging_registry.authorizations() == []
    assert ended.build.state == "failed"
    assert f"registry {challenging_registry.host} refused the push" in ended.build.error
    assert "buildhook sends credentials only to BUILDHOOK_REGISTRY and BUILDHOOK_TRUSTED_REGISTRIES" in (
        ended.build.error)


@pytest.mark.parametrize("given", ["username and password", "credentials file"])
def test_the_configured_registry_still_gets_its_credentials(
        sessions, tmp_path, make_repo, auth_registry, cleanup_images, given):  # noqa: F811
    if given == "username and password":  # BUILDHOOK_REGISTRY's own
        settings = settings_from(tmp_path, BUILDHOOK_REGISTRY=auth_registry.host, BUILDHOOK_REGISTRY_USERNAME=USER,
                                 BUILDHOOK_REGISTRY_PASSWORD=PASSWORD)
    else:  # a trusted registry, with its entry of a Docker config.json
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"auths": {
            auth_registry.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
        settings = settings_from(tmp_path, BUILDHOOK_REGISTRY="127.0.0.1:1",
                                 BUILDHOOK_TRUSTED_REGISTRIES=auth_registry.host,
                                 BUILDHOOK_REGISTRY_CREDENTIALS=str(config))
    name = f"acme/creds-{uuid.uuid4().hex[:8]}"

    ended = build_and_push(sessions, make_repo, settings, f"{auth_registry.host}/{name}", cleanup_images)

    assert ended.build.state == "succeeded", ended.build.error
    # What a deployment does: resolve the tag's digest, with the registry's own credentials.
    assert resolve_digest(RegistryAccess(settings), auth_registry.host, name, "main") == ended.build.digest
    with pytest.raises(PermanentError, match="refused"):  # without them, the registry refuses
        resolve_digest(RegistryAccess(settings.with_(registry_username=None, registry_credentials=())),
                       auth_registry.host, name, "main")
