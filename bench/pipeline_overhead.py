"""Pipeline overhead: webhook accepted -> image pushed, against clone + build + push by hand.

Runs ``buildhook web`` and ``buildhook worker --concurrency 1`` (subprocesses), a
``docker-registry`` and a private Redis on loopback, against a repository on disk
(``file://``) whose Dockerfile is FROM scratch + the static busybox. Each run:

- buildhook: commit a Dockerfile whose last step echoes a new marker, POST the
  signed GitHub push, poll ``GET /api/builds/<id>`` until it ends, and take the
  build's own timestamps: ``created_at -> finished_at`` (total), ``created_at ->
  started_at`` (queue wait), and the clone / build / push phases.
- baseline: commit another new marker, then by hand (subprocesses): ``git clone
  --depth 1 file://...``, ``docker build`` (classic builder, ``DOCKER_BUILDKIT=0``, as
  docker-py uses) with the same three tags and the same OCI labels buildhook sets,
  and ``docker push`` of each tag, timed from the first command to the last. The
  build gets the limits buildhook puts on every step by default (``--network none
  --memory 4g --memory-swap 4g``), so that both build the same way: the ratio is what
  the service adds. A second baseline runs a plain ``docker build`` (the engine's
  default network, no memory limit): ``ratio_plain`` also counts the cost of the
  isolation (on this engine, run with ``--bridge=none``, a step's explicit
  ``none`` network costs ~80 ms over the default, which has no network either).

The marker makes the last step of every build new in both cases, so neither is a
pure cache hit; the earlier steps (COPY busybox, busybox --install) are cached for
both alike, as on any engine that built the project before. The three take turns
going first, after one warm-up round that is reported but not counted.

Result keys: ``name``, ``params`` (runs, warmup), ``buildhook`` (total_s, queue_wait_s,
clone_s, build_s, push_s, client_observed_s: medians; runs), ``baseline`` (total_s,
clone_s, build_s, push_s: medians; runs; flags), ``baseline_plain`` (the same),
``ratio`` and ``ratio_plain`` (median totals), ``overhead_s`` (median of the per-round
differences buildhook - same-limits baseline, total and per phase), ``target``
(ratio_below, queue_wait_below_s, met), ``warmup``, ``summary``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from bench.common import (
    BusyboxRepo,
    busybox_dockerfile,
    median,
    ratio,
    rounded,
    signed_push,
    wait_until,
)
from bench.services import Stack
from builder.builds.image.context import BuildLimits

NAME = "pipeline_overhead"
FULL = {"runs": 9, "warmup": 1}
QUICK = {"runs": 1, "warmup": 1}
TARGET_RATIO = 1.10
TARGET_QUEUE_S = 1.0
SECRET = "bench-pipeline-secret"
FINAL = {"succeeded", "failed", "skipped", "superseded"}
PHASES = ("total_s", "queue_wait_s", "clone_s", "build_s", "push_s", "client_observed_s")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _seconds(build: dict[str, Any], start: str, end: str) -> float:
    return (_at(build[end]) - _at(build[start])).total_seconds()


def run_buildhook(stack: Stack, repo: BusyboxRepo, trigger: dict[str, Any], label: str,
                  dockerfile: Callable[[str], str] = busybox_dockerfile) -> dict[str, Any]:
    sha = repo.commit({"Dockerfile": dockerfile(f"{label} {uuid.uuid4().hex}")}, f"bench {label}")
    body, headers = signed_push(trigger["repository"], repo.url, "refs/heads/main", sha, SECRET, f"bench {label}")
    api = stack.api()
    sent = time.perf_counter()
    status, answer = api.request("POST", "/hooks/github", body, headers)
    if status != 202:
        raise RuntimeError(f"webhook answered {status}: {answer[:300]!r}")
    [build_id] = json.loads(answer)["builds"]

    def finished() -> dict[str, Any] | None:
        build = api.get_json(f"/api/builds/{build_id}")
        return build if build["state"] in FINAL else None

    build = wait_until(finished, 180, f"build {build_id}", interval=0.05)
    observed = time.perf_counter() - sent
    if build["state"] != "succeeded":
        raise RuntimeError(f"build {build_id} {build['state']}: {build.get('error')}")
    return {
        "build": build_id,
        "total_s": _seconds(build, "created_at", "finished_at"),
        "queue_wait_s": _seconds(build, "created_at", "started_at"),
        "clone_s": _seconds(build, "cloning_at", "building_at"),
        "build_s": _seconds(build, "building_at", "pushing_at"),
        "push_s": _seconds(build, "pushing_at", "finished_at"),
        "client_observed_s": observed,  # POST sent -> poll saw "succeeded" (poll every 50 ms)
    }


# ``POST /build`` parameters (what buildhook sends) and the ``docker build`` flags that set them
CLI_FLAGS = {"networkmode": "--network", "memory": "--memory", "memswap": "--memory-swap",
             "cpuperiod": "--cpu-period", "cpuquota": "--cpu-quota"}


def limit_flags(stack: Stack) -> list[str]:
    """The ``docker build`` flags for the limits buildhook puts on each build step, from its own
    ``BuildLimits`` (so the baseline follows any change there)."""
    params = BuildLimits.from_settings(stack.settings).engine_params()
    return [part for key, value in params.items() for part in (CLI_FLAGS[key], str(value))]


def run_baseline(stack: Stack, repo: BusyboxRepo, image: str, workdir: Path, label: str,
                 flags: list[str]) -> dict[str, Any]:
    marker = f"{label} {uuid.uuid4().hex}"
    sha = repo.commit({"Dockerfile": busybox_dockerfile(marker)}, f"bench {label}")
    tags = ["main", sha[:7], "latest"]
    labels = {
        "org.opencontainers.image.revision": sha,
        "org.opencontainers.image.source": repo.url,
        "org.opencontainers.image.created": datetime.now().astimezone().isoformat(),
        "org.opencontainers.image.ref.name": "main",
    }
    checkout = workdir / f"manual-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}

    def sh(*command: str) -> None:
        result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-1500:]}")

    start = time.perf_counter()
    sh("git", "clone", "--depth", "1", "--quiet", "--branch", "main", repo.url, str(checkout))
    cloned = time.perf_counter()
    build_args = ["docker", "build", "--quiet", *flags]
    for key, value in labels.items():
        build_args += ["--label", f"{key}={value}"]
    for tag in tags:
        build_args += ["--tag", f"{image}:{tag}"]
    sh(*build_args, str(checkout))
    built = time.perf_counter()
    for tag in tags:
        sh("docker", "push", f"{image}:{tag}")
    pushed = time.perf_counter()
    shutil.rmtree(checkout, ignore_errors=True)
    return {"total_s": pushed - start, "clone_s": cloned - start, "build_s": built - cloned, "push_s": pushed - built}


def _medians(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: rounded(median([r[key] for r in runs])) for key in keys if runs and key in runs[0]}


def run(quick: bool = False, workdir: Path | None = None, runs: int | None = None,
        engine: str | None = None) -> dict[str, Any]:
    """``engine``: the worker's ``BUILDHOOK_BUILD_ENGINE`` (unset: its default, BuildKit)."""
    params = dict(QUICK if quick else FULL)
    if runs is not None:
        params["runs"] = runs
    ours: list[dict[str, Any]] = []
    manual: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    warmup: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-", dir=workdir) as tmp, Stack(
            Path(tmp), extra_env={"BUILDHOOK_BUILD_ENGINE": engine} if engine else None) as stack:
        root = Path(tmp)
        repo = BusyboxRepo(root / "repo")
        repo.commit({"Dockerfile": busybox_dockerfile("initial")}, "initial commit")
        image = f"bench/pipeline-{stack.run_id}"
        trigger = stack.add_trigger(f"bench/pipeline-{stack.run_id}", repo.url, SECRET, image)
        manual_image = f"{stack.settings.registry}/bench/pipeline-manual-{stack.run_id}"
        stack.track_image(manual_image)
        stack.start_web()
        stack.start_worker(concurrency=1, relay_interval=1.0)
        flags = limit_flags(stack)
        for index in range(params["warmup"] + params["runs"]):
            legs = [("buildhook", lambda i=index: run_buildhook(stack, repo, trigger, f"run {i}")),
                    ("baseline", lambda i=index: run_baseline(stack, repo, manual_image, root, f"manual {i}", flags)),
                    ("baseline_plain", lambda i=index: run_baseline(stack, repo, manual_image, root, f"plain {i}", []))]
            turn = index % len(legs)
            results = {label: fn() for label, fn in legs[turn:] + legs[:turn]}
            if index < params["warmup"]:
                warmup = {label: {k: rounded(v) for k, v in r.items()} for label, r in results.items()}
            else:
                ours.append(results["buildhook"])
                manual.append(results["baseline"])
                plain.append(results["baseline_plain"])
        registry_tags = stack.registry.tags(image) if stack.registry else []

    result: dict[str, Any] = {
        "name": NAME,
        "params": {**params, "engine": engine or "buildkit (default)"},
        "setup": "buildhook web (defaults) + buildhook worker --concurrency 1, docker-registry, Redis, SQLite; "
                 "FROM scratch + busybox, last step new every run, 3 tags pushed",
        "buildhook": {**_medians(ours, PHASES), "runs": [{k: rounded(v) for k, v in r.items()} for r in ours]},
        "baseline": {**_medians(manual, ("total_s", "clone_s", "build_s", "push_s")),
                     "runs": [{k: rounded(v) for k, v in r.items()} for r in manual],
                     "what": "git clone --depth 1 + docker build (DOCKER_BUILDKIT=0) + docker push x3",
                     "flags": " ".join(flags)},
        "baseline_plain": {**_medians(plain, ("total_s", "clone_s", "build_s", "push_s")),
                           "runs": [{k: rounded(v) for k, v in r.items()} for r in plain],
                           "what": "the same, docker build without limit flags", "flags": ""},
        "warmup": warmup,
        "registry_tags_pushed": len(registry_tags),
    }
    result["ratio"] = ratio(result["buildhook"]["total_s"], result["baseline"]["total_s"])
    result["ratio_plain"] = ratio(result["buildhook"]["total_s"], result["baseline_plain"]["total_s"])
    # The pairs ran back to back, so their differences are robust to drift in the machine's speed.
    result["overhead_s"] = {
        phase: rounded(median([a[phase] - b[phase] for a, b in zip(ours, manual)]))
        for phase in ("total_s", "clone_s", "build_s", "push_s")
    }
    queue = result["buildhook"]["queue_wait_s"]
    met = result["ratio"] < TARGET_RATIO and queue < TARGET_QUEUE_S
    result["target"] = {"ratio_below": TARGET_RATIO, "queue_wait_below_s": TARGET_QUEUE_S, "met": met}
    b = result["buildhook"]
    result["summary"] = {
        "measured": f"{b['total_s']:.2f} s accepted->pushed (queue {queue * 1000:.0f} ms, clone {b['clone_s']:.2f}, "
                    f"build {b['build_s']:.2f}, push {b['push_s']:.2f}); "
                    f"{result['overhead_s']['total_s']:+.2f} s per pair",
        "baseline": f"{result['baseline']['total_s']:.2f} s (clone {result['baseline']['clone_s']:.2f}, "
                    f"build {result['baseline']['build_s']:.2f}, push {result['baseline']['push_s']:.2f}; "
                    f"docker build {' '.join(flags)}); plain docker build: "
                    f"{result['baseline_plain']['total_s']:.2f} s (ratio {result['ratio_plain']:.2f})",
        "ratio": result["ratio"],
        "target": f"ratio < {TARGET_RATIO:.2f}, queue wait < {TARGET_QUEUE_S:.0f} s",
        "met": met,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--engine", choices=["buildkit", "classic"], help="the worker's BUILDHOOK_BUILD_ENGINE")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, runs=args.runs, engine=args.engine), indent=2))


if __name__ == "__main__":
    main()
