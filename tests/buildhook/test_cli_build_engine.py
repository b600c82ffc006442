"""The worker names the engine and client that build images, and refuses BuildKit without a client."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from builder.builds.image.engines import BUILDKIT, CLASSIC_ENGINE, buildkit_client, engine_for
from builder.settings import ConfigError, Settings
from buildhook.redis_server import free_port
from tests.buildhook.test_cli import BUILDHOOK, user_env

NEWER_CLI = "/usr/local/bin/docker"  # first on PATH on these machines: no buildx, refuses BuildKit


def start_worker(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    environment = user_env(tmp_path, BUILDHOOK_SECRET_KEY="k",
                           BUILDHOOK_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0", **env)
    return subprocess.Popen([BUILDHOOK, "worker"], env=environment, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def first_line(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """The worker's first line on stderr; the worker is stopped after it."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    try:
        line = process.stderr.readline()
        assert time.monotonic() < deadline
        return line
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(20)


def test_the_worker_says_it_builds_with_buildkit_through_the_cli_that_has_it(tmp_path):
    if shutil.which("docker") != NEWER_CLI:
        pytest.skip("the newer docker CLI is not first on PATH here")
    line = first_line(start_worker(tmp_path))
    assert line.strip() == ("buildhook: images are built with BuildKit through /usr/bin/docker (Docker CLI "
                            f"{buildkit_client()[1]}) (BUILDHOOK_BUILD_ENGINE=buildkit)")


def test_the_worker_says_so_with_the_classic_builder(tmp_path):
    line = first_line(start_worker(tmp_path, BUILDHOOK_BUILD_ENGINE="classic"))
    assert line.strip() == ("buildhook: images are built with the classic builder (docker-py, POST /build "
                            "without BuildKit) (BUILDHOOK_BUILD_ENGINE=classic)")


def test_the_worker_refuses_to_start_with_buildkit_and_no_client_that_has_it(tmp_path):
    if not Path(NEWER_CLI).exists():
        pytest.skip("no newer docker CLI without buildx here")
    result = subprocess.run([BUILDHOOK, "worker"], env=user_env(tmp_path, BUILDHOOK_SECRET_KEY="k",
                                                               BUILDHOOK_DOCKER_CLI=NEWER_CLI),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.startswith("buildhook: BUILDHOOK_BUILD_ENGINE=buildkit needs a docker CLI that builds "
                                    "with BuildKit"), result.stderr
    assert f"{NEWER_CLI}: ERROR: BuildKit is enabled but the buildx component is missing or broken." \
        in result.stderr
    assert "BUILDHOOK_BUILD_ENGINE=classic" in result.stderr


def test_engine_settings():
    settings = Settings(database_url="sqlite://", secret_key="k")
    assert settings.build_engine == BUILDKIT
    engine = engine_for(settings)
    assert engine.buildkit and engine.cli == "/usr/bin/docker" and engine.cgroup == "docker/buildkit"
    assert engine_for(settings.with_(build_engine="classic")) is CLASSIC_ENGINE
    env = {"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_BUILD_ENGINE": "classic", "BUILDHOOK_DOCKER_CLI": "/x/docker",
           "BUILDHOOK_BUILDKIT_CGROUP": "/ci/buildkit/"}
    assert (Settings.from_env(env).build_engine, Settings.from_env(env).docker_cli,
            Settings.from_env(env).buildkit_cgroup) == ("classic", "/x/docker", "ci/buildkit")
    with pytest.raises(ConfigError, match="BUILDHOOK_BUILD_ENGINE must be one of buildkit, classic"):
        Settings.from_env({**env, "BUILDHOOK_BUILD_ENGINE": "kaniko"})
    with pytest.raises(ConfigError, match="/nowhere/docker"):
        engine_for(settings.with_(docker_cli="/nowhere/docker"))
