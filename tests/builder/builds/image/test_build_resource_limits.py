"""Build limits on the real Docker Engine: what a build step sees of its memory, CPU and network,
a step over its memory limit, and a context too large refused before the engine is contacted.

The engine here uses cgroup v1 (``docker info``: "Cgroup Version: 1"); the steps read the
v2 files when there are any, so the tests hold on either. Each build runs on both engines
(``build_engine``): the classic builder limits each step's container; BuildKit, whose steps
dockerd 20.10 runs outside any per-build limit, is capped through the engine's BuildKit cgroup.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from builder.builds.image.context import BuildLimits
from builder.builds.image.buildkit_limits import CGROUP_ROOT
from builder.errors import PermanentError
from builder.builds.image.classic import BuildSpec, build_image
from builder.settings import Settings
from tests.build_engines import build_engine  # noqa: F401 - the engine fixture

MB = 1024**2

# What a step prints of its own limits (cgroup v2 first, then v1).
SHOW_LIMITS = (
    "RUN echo {marker}; "
    "if [ -f /sys/fs/cgroup/memory.max ]; then "
    "echo memory=$(cat /sys/fs/cgroup/memory.max) swap=$(cat /sys/fs/cgroup/memory.swap.max); "
    "echo cpu=$(cat /sys/fs/cgroup/cpu.max); "
    "else "
    "echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) "
    "swap=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes); "
    "echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
    "fi\n"
)
SHOW_NETWORK = ("RUN echo {marker}; "
                "echo interfaces=$(sed -n 's/^ *\\([^:]*\\):.*/\\1/p' /proc/net/dev | sort | tr '\\n' ' ')\n")


def dockerfile(steps: str) -> str:
    return ("FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n' + steps)


@pytest.fixture
def context(tmp_path) -> Path:
    path = tmp_path / "checkout"
    path.mkdir()
    shutil.copy("/bin/busybox", path / "busybox")
    return path


@pytest.fixture
def build(docker_client, context, build_engine):
    """Build ``context`` with ``limits`` on ``build_engine``; returns (log lines, error or None). Removes the
    images."""
    built: list[str] = []

    def run(limits: BuildLimits, steps: str) -> tuple[list[str], Exception | None]:
        (context / "Dockerfile").write_text(dockerfile(steps))
        repository = f"buildhook-test/limits-{uuid.uuid4().hex[:10]}"
        spec = BuildSpec(checkout=context, dockerfile="Dockerfile", context=".", repository=repository,
                         tags=("t",), labels={}, limits=limits, engine=build_engine)
        lines: list[str] = []
        try:
            build_image(docker_client, spec, lines.append)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            return lines, exc
        built.append(f"{repository}:t")
        return lines, None

    yield run
    for image in built:
        docker_client.images.remove(image, force=True)


def value(lines: list[str], name: str) -> str:
    for line in lines:
        found = re.match(rf"(?:#\d+ [\d.]+ )?{name}=(.*)$", line)  # BuildKit: "#5 0.095 memory=..."
        if found:
            return found[1].strip()
    raise AssertionError(f"no {name}= in the build log:\n" + "\n".join(lines))


def test_memory_and_cpu_limits_apply_to_every_step(build, build_engine):
    lines, error = build(BuildLimits(memory=64 * MB, cpus=0.5, network="none"),
                         SHOW_LIMITS.format(marker=uuid.uuid4().hex))
    assert error is None, lines
    if build_engine.buildkit:  # the step's own cgroup has none: the engine's BuildKit cgroup holds them
        assert "Limits: memory 64 MB, 0.5 CPUs, network none (BuildKit: one cap shared by all builds of " \
               "this engine, cgroup docker/buildkit)" in lines
        cgroup = CGROUP_ROOT / "memory" / build_engine.cgroup
        assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(64 * MB)
        assert (cgroup / "memory.memsw.limit_in_bytes").read_text().strip() == str(64 * MB)
        cpu = CGROUP_ROOT / "cpu" / build_engine.cgroup
        assert [(cpu / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us")] == \
            ["50000", "100000"]
        return
    memory, swap = value(lines, "memory").split()
    assert memory == str(64 * MB)
    assert swap in (f"swap={64 * MB}", "swap=0")  # v1: memory + swap = the limit; v2: no swap
    assert value(lines, "cpu").split() == ["50000", "100000"]  # 0.5 CPU: 50 ms per 100 ms
    assert "Limits: memory 64 MB, 0.5 CPUs, network none" in lines


def test_no_limits_when_set_to_zero(build, build_engine):
    lines, error = build(BuildLimits(memory=0, cpus=0, network="none", max_context_bytes=0),
                         SHOW_LIMITS.format(marker=uuid.uuid4().hex))
    assert error is None, lines
    if build_engine.buildkit:
        cgroup = CGROUP_ROOT / "memory" / build_engine.cgroup
        assert int((cgroup / "memory.limit_in_bytes").read_text()) > 2**60
        assert (CGROUP_ROOT / "cpu" / build_engine.cgroup / "cpu.cfs_quota_us").read_text().strip() == "-1"
    memory = value(lines, "memory").split()[0]
    assert memory == "max" or int(memory) > 2**60  # the kernel's "unlimited"
    assert value(lines, "cpu").split()[0] in ("-1", "max")
    assert any(line.startswith("Limits: memory unlimited, CPUs unlimited, network none") for line in lines)


def host_interfaces() -> set[str]:
    return {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}


def test_network_none_leaves_only_loopback_and_host_shares_the_hosts(build, docker_client, build_engine):
    lines, error = build(BuildLimits(network="none"), SHOW_NETWORK.format(marker=uuid.uuid4().hex))
    assert error is None, lines
    assert value(lines, "interfaces").split() == ["lo"]

    lines, error = build(BuildLimits(network="host"), SHOW_NETWORK.format(marker=uuid.uuid4().hex))
    assert error is None, lines
    assert set(value(lines, "interfaces").split()) == host_interfaces() != {"lo"}

    # "default" is the engine's default network; an engine run with --bridge=none has none.
    lines, error = build(BuildLimits(network="default"), SHOW_NETWORK.format(marker=uuid.uuid4().hex))
    bridgeless = "bridge" not in {network.name for network in docker_client.networks.list()}
    if build_engine.buildkit and bridgeless:  # BuildKit's default is the bridge: a step cannot run without one
        assert isinstance(error, PermanentError) and "network bridge not found" in str(error), (error, lines)
        return
    assert error is None, lines
    if bridgeless:
        assert value(lines, "interfaces").split() == ["lo"]


def test_a_step_over_the_memory_limit_fails_the_build_saying_so(build, build_engine):
    # dd allocates its 200 MB block and fills it: the kernel kills it under a 64 MB limit.
    lines, error = build(BuildLimits(memory=64 * MB),
                         f"RUN echo {uuid.uuid4().hex}; dd if=/dev/zero of=/dev/null bs=200M count=1\n")
    assert isinstance(error, PermanentError), (error, lines)
    message = str(error)
    assert message.startswith("a build step ran out of memory: it needed more than the 64 MB limit "
                              "(BUILDHOOK_BUILD_MEMORY) and was killed; docker build failed: "), message
    if build_engine.buildkit:  # the failing step is named
        assert "step [3/3] RUN echo " in message and message.endswith("exit code: 137"), message
    else:
        assert "The command" in message and "returned a non-zero code: 137" in message
    # A step that fails for another reason is not said to be out of memory.
    lines, error = build(BuildLimits(memory=64 * MB), f"RUN echo {uuid.uuid4().hex}; exit 3\n")
    assert isinstance(error, PermanentError) and "memory" not in str(error)
    assert ("exit code: 3" if build_engine.buildkit else "returned a non-zero code: 3") in str(error)


class NoEngine:
    """Stands in for the Docker client: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the engine was contacted ({name}) for a context over the limit")


def spec_for(context: Path, limit: int, engine) -> BuildSpec:
    return BuildSpec(checkout=context, dockerfile="Dockerfile", context=".", repository="127.0.0.1:1/a/b",
                     tags=("x",), labels={}, limits=BuildLimits(max_context_bytes=limit), engine=engine)


def test_a_context_over_the_limit_fails_before_the_engine_is_contacted(context, build_engine):
    (context / "Dockerfile").write_text(dockerfile("RUN true\n"))
    (context / "blob.bin").write_bytes(b"\0" * (3 * MB))  # with the 1.9 MB busybox: 4.9 MB
    total = sum(path.stat().st_size for path in context.iterdir())
    with pytest.raises(PermanentError) as caught:
        build_image(NoEngine(), spec_for(context, 4 * MB, build_engine), lambda _line: None)  # type: ignore[arg-type]
    assert str(caught.value) == (f"build context is {total / MB:.1f} MB, over the limit of 4 MB "
                                 "(BUILDHOOK_MAX_CONTEXT_BYTES)")


def test_the_packed_size_counts_too(context, build_engine):
    (context / "Dockerfile").write_text(dockerfile("RUN true\n"))
    (context / "busybox").unlink()
    many = context / "many"
    many.mkdir()
    for index in range(1000):  # empty files: no content, but over 1 MB of tar headers
        (many / f"f{index}").touch()
    with pytest.raises(PermanentError, match=r"build context is 1\.\d MB, over the limit of 1 MB"):
        build_image(NoEngine(), spec_for(context, 1 * MB, build_engine), lambda _line: None)  # type: ignore[arg-type]


def test_dockerignore_is_applied_before_measuring(build, context):
    (context / "blob.bin").write_bytes(b"\0" * (3 * MB))
    (context / ".dockerignore").write_text("# large files stay out\n*.bin\n")
    lines, error = build(BuildLimits(max_context_bytes=4 * MB),
                         f"RUN echo {uuid.uuid4().hex}\nCOPY . /ctx/\nRUN test ! -e /ctx/blob.bin\n")
    assert error is None, lines
    [sent] = [line for line in lines if line.startswith("Sending the build context")]
    assert re.search(r"\((1\.9|2\.0) MB\)$", sent), sent  # busybox, the Dockerfile, .dockerignore


def test_limits_come_from_the_settings_with_the_documented_defaults():
    defaults = Settings(database_url="sqlite://", secret_key="k")
    assert BuildLimits.from_settings(defaults) == BuildLimits() == BuildLimits(
        memory=4 * 1024**3, cpus=0.0, network="none", max_context_bytes=500 * MB)
    env = {"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_BUILD_MEMORY": "512m", "BUILDHOOK_BUILD_CPUS": "1.5",
           "BUILDHOOK_BUILD_NETWORK": "host", "BUILDHOOK_MAX_CONTEXT_BYTES": "0"}
    limits = BuildLimits.from_settings(Settings.from_env(env))
    assert limits == BuildLimits(memory=512 * MB, cpus=1.5, network="host", max_context_bytes=0)
    assert limits.engine_params() == {"memory": 512 * MB, "memswap": 512 * MB, "cpuperiod": 100_000,
                                      "cpuquota": 150_000, "networkmode": "host"}
    assert BuildLimits(memory=0, network="default").engine_params() == {}
    with pytest.raises(PermanentError, match="smallest CPU limit is 0.01"):
        BuildLimits(cpus=0.001).engine_params()
