"""Layer cache: rebuilding an unchanged commit against its first build, through the worker.

Runs ``buildhook web`` + ``buildhook worker --concurrency 1``, a registry and Redis on
loopback. The trigger has ``supersede`` off (it would not matter: the second push is
sent once the first build has finished). Each run commits a new ``marker.txt`` that the
Dockerfile copies first, so the first build of that commit finds nothing in any cache
(all steps run: busybox install, four RUN steps, a COPY); then the same commit is
pushed again (a new delivery id), and the worker builds it with the first image as
``cache_from`` (``builder.builds.run.pipeline._layer_cache``), so every step comes from the cache
and the push finds every layer already in the registry.

Times are the builds' own timestamps: total (``created_at -> finished_at``) and the
build phase alone (``building_at -> pushing_at``); which steps came from the cache is
read from the build log, Dockerfile steps apart from the ``LABEL`` steps the classic
builder appends for buildhook's OCI labels (one per label; ``...image.created`` changes
every build, so those never come from the cache and the rebuild gets a new digest).

Result keys: ``name``, ``params`` (runs, warmup), ``first`` and ``rebuild`` (total_s,
build_s, push_s: medians; steps, dockerfile_steps, label_steps, cached,
dockerfile_steps_cached; runs), ``ratio_total``, ``ratio_build`` (rebuild / first),
``first_uncached``, ``rebuild_dockerfile_steps_all_cached``, ``rebuild_same_digest``, ``summary``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import BusyboxRepo, median, ratio, rounded, signed_push, wait_until
from bench.pipeline_overhead import FINAL, _seconds
from bench.services import Stack

NAME = "cache"
FULL = {"runs": 5, "warmup": 1}
QUICK = {"runs": 1, "warmup": 0}
SECRET = "bench-cache-secret"
DOCKERFILE = """FROM scratch
COPY marker.txt /marker.txt
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /app && sha256sum /bin/busybox > /app/busybox.sha256
RUN for i in $(seq 1 2000); do echo "line $i of the data file" ; done > /app/data.txt
RUN head -c 1048576 /bin/busybox | gzip -c > /app/blob.gz
RUN adduser -D -H app 2>/dev/null || true
COPY app.sh /app/app.sh
"""
STEP = re.compile(r"^Step (\d+)/(\d+) : (\S+)", re.MULTILINE)


def parse_steps(log: str) -> dict[str, int]:
    """Steps of the build log, and which came from the cache.

    The classic builder appends one ``LABEL`` step per label buildhook sets (the OCI
    labels); ``org.opencontainers.image.created`` changes on every build, so from there
    on nothing can come from the cache. Those are counted apart from the Dockerfile's.
    """
    starts = list(STEP.finditer(log))
    counts = {"steps": len(starts), "cached": 0, "label_steps": 0, "label_steps_cached": 0}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(log)
        cached = "---> Using cache" in log[match.start():end]
        appended = match[3] == "LABEL" and "org.opencontainers.image." in log[match.start():end].splitlines()[0]
        counts["cached"] += cached
        counts["label_steps"] += appended
        counts["label_steps_cached"] += cached and appended
    counts["dockerfile_steps"] = counts["steps"] - counts["label_steps"]
    counts["dockerfile_steps_cached"] = counts["cached"] - counts["label_steps_cached"]
    return counts


def _build(stack: Stack, trigger: dict[str, Any], repo: BusyboxRepo, sha: str) -> dict[str, Any]:
    body, headers = signed_push(trigger["repository"], repo.url, "refs/heads/main", sha, SECRET, "bench cache")
    api = stack.api()
    status, answer = api.request("POST", "/hooks/github", body, headers)
    if status != 202:
        raise RuntimeError(f"webhook answered {status}: {answer[:300]!r}")
    [build_id] = json.loads(answer)["builds"]

    def finished() -> dict[str, Any] | None:
        build = api.get_json(f"/api/builds/{build_id}")
        return build if build["state"] in FINAL else None

    build = wait_until(finished, 240, f"build {build_id}", interval=0.05)
    if build["state"] != "succeeded":
        raise RuntimeError(f"build {build_id} {build['state']}: {build.get('error')}")
    status, log = api.request("GET", f"/api/builds/{build_id}/log?format=text")
    return {
        "build": build_id,
        "total_s": _seconds(build, "created_at", "finished_at"),
        "build_s": _seconds(build, "building_at", "pushing_at"),
        "push_s": _seconds(build, "pushing_at", "finished_at"),
        "digest": build["digest"],
        **parse_steps(log.decode(errors="replace")),
    }


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {key: rounded(median([r[key] for r in runs])) for key in ("total_s", "build_s", "push_s")}
    for key in ("steps", "dockerfile_steps", "label_steps"):
        out[key] = runs[0][key] if runs else None
    out["cached"] = [r["cached"] for r in runs]
    out["dockerfile_steps_cached"] = [r["dockerfile_steps_cached"] for r in runs]
    out["runs"] = [{k: rounded(v) if isinstance(v, float) else v for k, v in r.items()} for r in runs]
    return out


def run(quick: bool = False, workdir: Path | None = None, runs: int | None = None) -> dict[str, Any]:
    params = dict(QUICK if quick else FULL)
    if runs is not None:
        params["runs"] = runs
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=workdir) as tmp, Stack(Path(tmp)) as stack:
        repo = BusyboxRepo(Path(tmp) / "repo")
        repo.commit({"Dockerfile": DOCKERFILE, "marker.txt": "initial\n", "app.sh": "#!/bin/sh\necho app\n"},
                    "initial commit")
        trigger = stack.add_trigger(f"bench/cache-{stack.run_id}", repo.url, SECRET, f"bench/cache-{stack.run_id}",
                                    supersede=False)
        stack.start_web()
        stack.start_worker(concurrency=1, relay_interval=1.0)
        for index in range(params["warmup"] + params["runs"]):
            sha = repo.commit({"marker.txt": f"{uuid.uuid4().hex}\n"}, f"cache run {index}")
            cold = _build(stack, trigger, repo, sha)
            warm = _build(stack, trigger, repo, sha)
            if index >= params["warmup"]:
                first.append(cold)
                again.append(warm)

    result: dict[str, Any] = {
        "name": NAME,
        "params": params,
        "setup": "buildhook web + worker --concurrency 1; one commit built twice (supersede off); "
                 "first build: no step cached; rebuild: the first image as cache_from",
        "first": _summarize(first),
        "rebuild": _summarize(again),
    }
    result["ratio_total"] = ratio(result["rebuild"]["total_s"], result["first"]["total_s"])
    result["ratio_build"] = ratio(result["rebuild"]["build_s"], result["first"]["build_s"])
    # FROM scratch is never reported as cached: every other Dockerfile step should be.
    all_cached = all(r["dockerfile_steps_cached"] == r["dockerfile_steps"] - 1 for r in again)
    none_cached = all(r["cached"] == 0 for r in first)
    result["rebuild_dockerfile_steps_all_cached"] = all_cached
    result["first_uncached"] = none_cached
    result["rebuild_same_digest"] = all(a["digest"] == b["digest"] for a, b in zip(first, again))
    r = result["rebuild"]
    result["summary"] = {
        "measured": f"rebuild {r['total_s']:.2f} s (build phase {r['build_s']:.2f} s; "
                    f"{again[0]['dockerfile_steps_cached'] if again else '?'}/{r['dockerfile_steps'] - 1} Dockerfile "
                    f"steps cached, {r['label_steps']} LABEL steps not)",
        "baseline": f"first build {result['first']['total_s']:.2f} s (build phase {result['first']['build_s']:.2f} s, "
                    f"nothing cached)",
        "ratio": result["ratio_total"],
        "target": "rebuild faster than the first build (no numeric target)",
        "met": result["ratio_total"] < 1 and all_cached and none_cached,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, runs=args.runs), indent=2))


if __name__ == "__main__":
    main()
