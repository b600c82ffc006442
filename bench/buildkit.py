"""BuildKit: a multi-stage build through buildhook, against the same build by hand and the classic engine.

Runs ``buildhook web`` and ``buildhook worker --concurrency 1`` (subprocesses), a
``docker-registry`` and a private Redis on loopback, against a repository on disk whose
Dockerfile has a base stage (FROM scratch + the static busybox, cached for every leg alike),
three independent stages that each take 2 s (``sleep 2``), one of them unused, and a final
stage that copies from the other two. Every commit puts a new marker in each stage, so no
stage is ever a cache hit. Each round, in turn:

- ``buildhook``: the signed GitHub push, polled until the build ends; the build's own
  timestamps (``created_at -> finished_at``, and clone / build / push), as in
  ``pipeline_overhead.py``. The worker builds with BuildKit (the default engine).
- ``by_hand``: ``git clone --depth 1``, ``DOCKER_BUILDKIT=1 docker build`` with the docker CLI
  buildhook uses and the flags buildhook passes (``--network none``, the inline cache build
  arg, the OCI labels, three tags), ``docker push`` of each tag; from the first command to the last.

Then the worker is restarted with ``BUILDHOOK_BUILD_ENGINE=classic`` and ``classic`` rounds
run the same pushes through it (docker-py's ``POST /build``: every stage, one after another).
The first round of each kind is a warm-up, reported and not counted.

Result keys: ``name``, ``params`` (runs, warmup, stage_seconds), ``buildhook``, ``by_hand``,
``classic`` (total_s, clone_s, build_s, push_s: medians; runs; ``queue_wait_s`` for the
buildhook legs), ``ratio`` (buildhook / by hand), ``ratio_classic`` (buildhook / classic),
``target`` (ratio_at_most, ratio_classic_at_most, met), ``warmup``, ``summary``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BusyboxRepo, main_with_runs, median, ratio, rounded
from bench.pipeline_overhead import SECRET, run_buildhook  # its pushes are signed with SECRET
from bench.services import Stack
from builder.builds.image.engines import buildkit_client

NAME = "buildkit"
FULL = {"runs": 5, "warmup": 1, "stage_seconds": 2}
QUICK = {"runs": 1, "warmup": 1, "stage_seconds": 2}
TARGET_RATIO = 1.10
TARGET_CLASSIC = 0.40
KEYS = ("total_s", "clone_s", "build_s", "push_s")


def multi_stage_dockerfile(marker: str, seconds: int = 2) -> str:
    """A base stage, three independent ``seconds``-long stages (``unused`` is never used), and a final one."""
    stages = "".join(f"FROM base AS {name}\nRUN echo '{name} {marker}' && sleep {seconds} && echo {name} > /{name}.txt\n\n"
                     for name in ("one", "two", "unused"))
    return ("FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\n"
            f"{stages}FROM base\nCOPY --from=one /one.txt /one.txt\nCOPY --from=two /two.txt /two.txt\n"
            f"RUN echo 'built {marker}' > /built.txt\n")


def run_by_hand(repo: BusyboxRepo, image: str, workdir: Path, label: str, seconds: int) -> dict[str, Any]:
    """Clone, BuildKit build (the flags buildhook passes) and push of each tag, by hand."""
    sha = repo.commit({"Dockerfile": multi_stage_dockerfile(f"{label} {uuid.uuid4().hex}", seconds)}, f"bench {label}")
    cli, _version = buildkit_client()
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    checkout = workdir / f"manual-{uuid.uuid4().hex[:8]}"

    def sh(*command: str) -> None:
        result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-1500:]}")

    labels = {"org.opencontainers.image.revision": sha, "org.opencontainers.image.source": repo.url,
              "org.opencontainers.image.created": datetime.now().astimezone().isoformat(),
              "org.opencontainers.image.ref.name": "main"}
    tags = ["main", sha[:7], "latest"]
    command = [cli, "build", "--progress=plain", "--network", "none", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    for tag in tags:
        command += ["-t", f"{image}:{tag}"]
    start = time.perf_counter()
    sh("git", "clone", "--depth", "1", "--quiet", "--branch", "main", repo.url, str(checkout))
    cloned = time.perf_counter()
    sh(*command, str(checkout))
    built = time.perf_counter()
    for tag in tags:
        sh(cli, "push", f"{image}:{tag}")
    pushed = time.perf_counter()
    shutil.rmtree(checkout, ignore_errors=True)
    return {"total_s": pushed - start, "clone_s": cloned - start, "build_s": built - cloned, "push_s": pushed - built}


def _leg(stack: Stack, repo: BusyboxRepo, trigger: dict[str, Any], label: str, seconds: int) -> dict[str, Any]:
    result = run_buildhook(stack, repo, trigger, label, lambda marker: multi_stage_dockerfile(marker, seconds))
    return {key: result[key] for key in (*KEYS, "queue_wait_s")}


def _summary(runs: list[dict[str, Any]], keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    return {**{key: rounded(median([r[key] for r in runs])) for key in keys if runs and key in runs[0]},
            "runs": [{k: rounded(v) for k, v in r.items()} for r in runs]}


def _with_engine(stack: Stack, engine: str) -> None:
    """Restart the worker with ``BUILDHOOK_BUILD_ENGINE=engine``."""
    stack.stop_worker()
    stack.env["BUILDHOOK_BUILD_ENGINE"] = engine
    stack.start_worker(concurrency=1, relay_interval=1.0)


def run(quick: bool = False, workdir: Path | None = None, runs: int | None = None) -> dict[str, Any]:
    params = dict(QUICK if quick else FULL)
    if runs is not None:
        params["runs"] = runs
    seconds = params["stage_seconds"]
    legs: dict[str, list[dict[str, Any]]] = {"buildhook": [], "by_hand": [], "classic": []}
    warmup: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-buildkit-", dir=workdir) as tmp, Stack(Path(tmp)) as stack:
        root = Path(tmp)
        repo = BusyboxRepo(root / "repo")
        repo.commit({"Dockerfile": multi_stage_dockerfile("initial", seconds)}, "initial commit")
        image = f"bench/buildkit-{stack.run_id}"
        trigger = stack.add_trigger(image, repo.url, SECRET, image)
        manual_image = f"{stack.settings.registry}/bench/buildkit-manual-{stack.run_id}"
        stack.track_image(manual_image)
        stack.start_web()
        _with_engine(stack, "buildkit")
        for index in range(params["warmup"] + params["runs"]):
            pair = [("buildhook", lambda i=index: _leg(stack, repo, trigger, f"buildkit {i}", seconds)),
                    ("by_hand", lambda i=index: run_by_hand(repo, manual_image, root, f"manual {i}", seconds))]
            ordered = pair if index % 2 == 0 else pair[::-1]
            results = {label: fn() for label, fn in ordered}
            _record(results, index, params, legs, warmup)
        _with_engine(stack, "classic")
        for index in range(params["warmup"] + params["runs"]):
            _record({"classic": _leg(stack, repo, trigger, f"classic {index}", seconds)}, index, params, legs, warmup)
    return _result(params, legs, warmup)


def _record(results: dict[str, dict[str, Any]], index: int, params: dict[str, Any],
            legs: dict[str, list[dict[str, Any]]], warmup: dict[str, Any]) -> None:
    for label, found in results.items():
        if index < params["warmup"]:
            warmup[label] = {k: rounded(v) for k, v in found.items()}
        else:
            legs[label].append(found)


def _result(params: dict[str, Any], legs: dict[str, list[dict[str, Any]]], warmup: dict[str, Any]) -> dict[str, Any]:
    ours = _summary(legs["buildhook"], (*KEYS, "queue_wait_s"))
    manual = _summary(legs["by_hand"])
    classic = _summary(legs["classic"], (*KEYS, "queue_wait_s"))
    result: dict[str, Any] = {
        "name": NAME, "params": params,
        "setup": "buildhook web + buildhook worker --concurrency 1 (BuildKit, then classic), docker-registry, Redis, "
                 f"SQLite; base stage + three independent {params['stage_seconds']} s stages (one unused) + final "
                 "stage, new markers every run, 3 tags pushed",
        "buildhook": ours, "by_hand": {**manual, "what": "git clone --depth 1 + DOCKER_BUILDKIT=1 docker build "
                                                         "--network none + docker push x3"},
        "classic": classic, "warmup": warmup,
        "ratio": ratio(ours["total_s"], manual["total_s"]),
        "ratio_classic": ratio(ours["total_s"], classic["total_s"]),
    }
    met = result["ratio"] <= TARGET_RATIO and result["ratio_classic"] <= TARGET_CLASSIC
    result["target"] = {"ratio_at_most": TARGET_RATIO, "ratio_classic_at_most": TARGET_CLASSIC, "met": met}
    result["summary"] = {
        "measured": f"{ours['total_s']:.2f} s accepted->pushed (clone {ours['clone_s']:.2f}, build {ours['build_s']:.2f}, "
                    f"push {ours['push_s']:.2f})",
        "baseline": f"by hand {manual['total_s']:.2f} s (build {manual['build_s']:.2f}); classic engine through "
                    f"buildhook {classic['total_s']:.2f} s (build {classic['build_s']:.2f}; ratio "
                    f"{result['ratio_classic']:.2f})",
        "ratio": result["ratio"],
        "target": f"ratio <= {TARGET_RATIO:.2f} by hand, <= {TARGET_CLASSIC:.2f} against classic",
        "met": met,
    }
    return result


if __name__ == "__main__":
    main_with_runs(run, __doc__.splitlines()[0])
