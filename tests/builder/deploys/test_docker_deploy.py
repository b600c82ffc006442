"""The "docker" deploy target against the real engine and the session registry."""

from __future__ import annotations

import json
import shutil
import urllib.request
import uuid
from typing import Callable, Iterator

import pytest
from docker.errors import NotFound
from docker.models.containers import Container

from builder.deploys.docker_target import deploy_container
from builder.errors import BuildhookError, PermanentError

RUN_LABEL = "org.buildhook.test.docker-deploy"
STABLE = 1.5


def _sleeper(marker: str) -> list[str]:
    # sh as PID 1 ignores SIGTERM unless trapped; the trap keeps `docker stop` fast.
    return ["/bin/busybox", "sh", "-c", f"trap 'exit 0' TERM; echo {marker}; /bin/busybox sleep 3600 & wait"]


IMAGES = {
    "v1": {"cmd": _sleeper("version-1")},
    "v2": {"cmd": _sleeper("version-2")},
    "v3": {"cmd": ["/bin/busybox", "sh", "-c", "echo crashing; exit 3"]},
    "v4": {"cmd": _sleeper("version-4"),
           "extra": 'HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/bin/busybox", "false"]\n'},
    "v5": {"cmd": _sleeper("version-5"),
           "extra": 'HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/bin/busybox", "true"]\n'},
}
CUSTOM_COMMAND = _sleeper("custom-command")


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def images(docker_client, registry, tmp_path_factory, run_id) -> Iterator[dict[str, str]]:
    """Build v1..v5 FROM scratch + busybox, push them; map version -> repo@digest."""
    repo = f"{registry.host}/acme/deploy-{run_id}"
    built: list[str] = []
    refs: dict[str, str] = {}
    try:
        for version, spec in IMAGES.items():
            context = tmp_path_factory.mktemp(f"image-{version}")
            shutil.copy("/bin/busybox", context / "busybox")
            (context / "Dockerfile").write_text(
                "FROM scratch\nCOPY busybox /bin/busybox\n"
                f"LABEL org.buildhook.test.version={version}\nENV GREETING=hello-{version}\n"
                f"{spec.get('extra', '')}CMD {json.dumps(spec['cmd'])}\n"
            )
            image, _ = docker_client.images.build(path=str(context), tag=f"{repo}:{version}", rm=True)
            built.append(image.id)
            docker_client.images.push(repo, tag=version)
            refs[version] = _digest_ref(docker_client, f"{repo}:{version}")
        yield refs
    finally:
        for image_id in built:
            # A container recreated from this image by a deploy may still hold it: remove those first.
            for container in docker_client.containers.list(all=True, filters={"ancestor": image_id}):
                container.remove(force=True, v=True)
            try:
                docker_client.images.remove(image_id, force=True)
            except NotFound:
                pass


def _digest_ref(docker_client, ref: str) -> str:
    repo = ref.rsplit(":", 1)[0]
    digests = [d for d in docker_client.images.get(ref).attrs["RepoDigests"] if d.startswith(repo + "@")]
    assert digests, f"no digest for {ref} after the push"
    return digests[0]


@pytest.fixture
def make_container(docker_client, images, run_id) -> Iterator[Callable[..., Container]]:
    """Run the original container from v1: no network, FOO=bar, team=platform, a restart policy."""
    volumes: set[str] = set()

    def make(command: list[str] | None = CUSTOM_COMMAND, **options):
        container = docker_client.containers.run(
            images["v1"], command=command, name=f"deploy-test-{uuid.uuid4().hex[:10]}", detach=True,
            network_mode="none", environment={"FOO": "bar"}, labels={"team": "platform", RUN_LABEL: run_id},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}, **options,
        )
        volumes.update(m["Name"] for m in container.attrs["Mounts"] if m.get("Type") == "volume")
        return container

    yield make
    for container in docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}):
        container.remove(force=True, v=True)
    for volume in volumes:
        try:
            docker_client.volumes.get(volume).remove()
        except NotFound:
            pass


def _inspect(docker_client, name: str) -> dict:
    return docker_client.api.inspect_container(name)


def _assert_original_is_back(docker_client, original, result) -> None:
    now = _inspect(docker_client, original.name)
    assert now["Id"] == original.id == result.container_id
    assert now["State"]["Running"]
    assert now["Config"]["Image"] == original.attrs["Config"]["Image"]
    leftovers = docker_client.containers.list(all=True, filters={"name": f"{original.name}-buildhook-old"})
    assert leftovers == []


def test_deploying_a_new_digest_recreates_the_container_keeping_its_configuration(
        docker_client, images, make_container):
    original = make_container()
    before = _inspect(docker_client, original.name)
    lines: list[str] = []

    result = deploy_container(docker_client, original.name, images["v2"], stable_seconds=STABLE, log=lines.append)

    after = _inspect(docker_client, original.name)
    assert result.rolled_back is False
    assert result.container_id == after["Id"] != original.id
    assert result.old_image == before["Image"] and result.new_image == images["v2"]
    assert after["Image"] == docker_client.images.get(images["v2"]).id
    assert after["Config"]["Image"] == images["v2"]
    assert after["State"]["Running"]
    assert "FOO=bar" in after["Config"]["Env"]
    assert "GREETING=hello-v2" in after["Config"]["Env"]  # the image's own env follows the new image
    assert after["Config"]["Labels"]["team"] == "platform"
    assert after["Config"]["Labels"]["org.buildhook.test.version"] == "v2"  # the new image's label shows
    assert after["Config"]["Cmd"] == before["Config"]["Cmd"] == CUSTOM_COMMAND
    assert after["HostConfig"]["RestartPolicy"] == before["HostConfig"]["RestartPolicy"]
    assert after["HostConfig"]["NetworkMode"] == "none"
    with pytest.raises(NotFound):
        docker_client.containers.get(original.id)
    assert list(result.log) == lines and any("Removed the old container" in line for line in lines)


def test_a_command_inherited_from_the_image_follows_the_new_image(docker_client, images, make_container):
    original = make_container(command=None)

    result = deploy_container(docker_client, original.name, images["v2"], stable_seconds=STABLE)

    after = _inspect(docker_client, original.name)
    assert not result.rolled_back
    assert after["Config"]["Cmd"] == IMAGES["v2"]["cmd"]
    assert "version-2" in docker_client.containers.get(result.container_id).logs().decode()


def test_deploying_a_crashing_image_rolls_back_to_the_old_container(docker_client, images, make_container):
    original = make_container(command=None)  # so that v3's own command (exit 3) runs

    result = deploy_container(docker_client, original.name, images["v3"], stable_seconds=STABLE)

    assert result.rolled_back is True
    _assert_original_is_back(docker_client, original, result)
    log = "\n".join(result.log)
    # With the kept on-failure restart policy the engine may already have restarted it when it is
    # inspected (State.ExitCode then reads 0): the code comes from the engine's "die" event.
    assert "exited with code 3" in log, log
    assert "crashing" in log  # the new container's last log lines


def test_a_failing_healthcheck_rolls_back(docker_client, images, make_container):
    original = make_container()

    result = deploy_container(docker_client, original.name, images["v4"], stable_seconds=STABLE,
                              health_timeout=20)

    assert result.rolled_back is True
    _assert_original_is_back(docker_client, original, result)
    assert any("healthcheck failed" in line for line in result.log)


def test_a_passing_healthcheck_deploys(docker_client, images, make_container):
    original = make_container()

    result = deploy_container(docker_client, original.name, images["v5"], stable_seconds=STABLE,
                              health_timeout=20)

    assert result.rolled_back is False
    after = _inspect(docker_client, original.name)
    assert after["Id"] == result.container_id != original.id
    assert after["State"]["Health"]["Status"] == "healthy"
    assert any("healthy" in line for line in result.log)


def test_data_in_the_containers_volumes_survives_the_redeploy(docker_client, images, make_container):
    original = make_container(volumes=["/data"])
    original.exec_run(["/bin/busybox", "sh", "-c", "echo kept > /data/file"])

    result = deploy_container(docker_client, original.name, images["v2"], stable_seconds=STABLE)

    assert not result.rolled_back
    new = docker_client.containers.get(result.container_id)
    assert new.exec_run(["/bin/busybox", "cat", "/data/file"]).output == b"kept\n"


def test_an_engine_error_mid_swap_restores_the_old_container_and_raises(docker_client, images, make_container,
                                                                       run_id):
    original = make_container()
    # A leftover container already holds the name the old one is renamed to: the rename fails.
    docker_client.containers.create(images["v1"], name=f"{original.name}-buildhook-old-{original.id[:12]}",
                                    labels={RUN_LABEL: run_id}, network_mode="none")

    with pytest.raises(PermanentError, match="recreation of container"):
        deploy_container(docker_client, original.name, images["v2"], stable_seconds=STABLE)

    now = _inspect(docker_client, original.name)
    assert now["Id"] == original.id and now["State"]["Running"]
    assert now["Config"]["Image"] == images["v1"]


def test_an_unknown_container_is_a_permanent_error(docker_client, images):
    with pytest.raises(PermanentError, match="container nope-.* not found"):
        deploy_container(docker_client, f"nope-{uuid.uuid4().hex}", images["v2"], stable_seconds=STABLE)


@pytest.mark.parametrize("reference", ["unknown-digest", "registry-down"])
def test_an_image_neither_pullable_nor_local_leaves_the_old_container_running(
        docker_client, registry, images, make_container, reference):
    original = make_container()
    missing = "sha256:" + "0" * 64
    image = (f"{registry.host}/acme/nothing-here@{missing}" if reference == "unknown-digest"
             else f"127.0.0.1:1/acme/widget@{missing}")

    with pytest.raises(BuildhookError) as caught:
        deploy_container(docker_client, original.name, image, stable_seconds=STABLE)

    assert isinstance(caught.value, PermanentError) == (reference == "unknown-digest")
    now = _inspect(docker_client, original.name)
    assert now["Id"] == original.id and now["State"]["Running"] and now["RestartCount"] == 0


def test_a_failed_pull_uses_the_image_the_engine_already_has(docker_client, registry, images, make_container):
    original = make_container()
    repo = f"{registry.host}/acme/deploy-gone-{uuid.uuid4().hex[:10]}"
    docker_client.images.get(images["v2"]).tag(repo, "v2")
    try:
        docker_client.images.push(repo, tag="v2")
        reference = _digest_ref(docker_client, f"{repo}:v2")
        digest = reference.split("@")[1]
        request = urllib.request.Request(f"http://{registry.host}/v2/{repo.split('/', 1)[1]}/manifests/{digest}",
                                         method="DELETE")
        with urllib.request.urlopen(request, timeout=5):
            pass  # the registry no longer has it, the engine still does

        result = deploy_container(docker_client, original.name, reference, stable_seconds=STABLE)

        assert not result.rolled_back
        assert any("using the image the engine already has" in line for line in result.log)
        assert _inspect(docker_client, original.name)["Config"]["Image"] == reference
    finally:
        docker_client.images.remove(f"{repo}:v2")
