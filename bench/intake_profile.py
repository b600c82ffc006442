"""CPU cost of one webhook delivery, in process: the Flask test client, SQLite, a real Redis.

Less disturbed by other work on a shared machine than the load benchmark: it counts
this process's CPU time (``time.process_time``) per signed GitHub push delivery, one
request at a time, after a warm-up. ``--profile`` adds a cProfile of the measured
requests (the top functions by cumulative time, or all of it to ``--pstats FILE``).

    python -m bench.intake_profile --requests 500 [--profile] [--status-token]
    python -m bench.intake_profile --gunicorn --requests 1000

``--gunicorn`` instead runs ``buildhook web --workers 1 --threads 1`` and sends the
deliveries one after another over HTTP, then reports the CPU the web process tree and
``redis-server`` used per request (from /proc): the production path, with HTTP parsing
and the access log, but without the profiler. Every request must be answered 202 and
stored; the result says so.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (python3 bench/intake_profile.py): find bench/ and builder/
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import random_sha, signed_push  # noqa: E402
from bench.services import Stack  # noqa: E402

SECRET = "bench-intake-secret"
REF = "refs/heads/master"


def run(requests: int = 500, warmup: int = 50, profile: bool = False, pstats_path: str | None = None,
        status_token: bool = False, top: int = 40) -> dict[str, Any]:
    from sqlalchemy import text

    from builder.secrets import SecretBox
    from webhooks import create_app

    with tempfile.TemporaryDirectory(prefix="bench-intake-profile-") as tmp, \
            Stack(Path(tmp), registry=False) as stack:
        repository = f"bench/profile-{stack.run_id}"
        clone_url = f"file://{tmp}/never-cloned.git"
        trigger = stack.add_trigger(repository, clone_url, SECRET, f"bench/profile-{stack.run_id}")
        if status_token:  # a trigger that reports commit statuses: "queued" is announced
            with stack.sessions() as session:
                session.execute(text("UPDATE triggers SET status_token_enc = :t WHERE id = :id"),
                                {"t": SecretBox(stack.settings.secret_key).seal("token"), "id": trigger["id"]})
                session.commit()
        app = create_app(stack.settings)
        client = app.test_client()
        items = [signed_push(repository, clone_url, REF, random_sha(), SECRET) for _ in range(warmup + requests)]
        statuses: dict[int, int] = {}

        def post(i: int) -> None:
            body, headers = items[i]
            status = client.post("/hooks/github", data=body, headers=headers).status_code
            statuses[status] = statuses.get(status, 0) + 1

        for i in range(warmup):
            post(i)
        profiler = cProfile.Profile() if profile else None
        cpu: list[float] = []
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for i in range(warmup, warmup + requests):
            before = time.process_time()
            post(i)
            cpu.append(time.process_time() - before)
        if profiler:
            profiler.disable()
        wall, total_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        marks = app.extensions.get("buildhook.dispatch_marks")
        if marks is not None:
            marks.flush()  # the batched dispatched_at writes still waiting
        stored = stack.query("SELECT COUNT(*) FROM deliveries WHERE outcome = 'accepted'")[0][0]
        undispatched = stack.query("SELECT COUNT(*) FROM builds WHERE dispatched_at IS NULL")[0][0]
        import redis

        queued_messages = redis.Redis.from_url(stack.redis.url).llen("celery")
        app.extensions["buildhook"].engine.dispose()

    cpu.sort()
    result: dict[str, Any] = {
        "requests": requests,
        "status_token": status_token,
        "profiled": profile,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "cpu_ms_per_request": {
            "mean": round(total_cpu / requests * 1000, 2),
            "p50": round(statistics.median(cpu) * 1000, 2),
            "p90": round(cpu[int(len(cpu) * 0.9)] * 1000, 2),
        },
        "wall_ms_per_request": round(wall / requests * 1000, 2),
        "accepted_stored": stored,
        "builds_never_dispatched": undispatched,
        "broker_messages": queued_messages,
    }
    if profiler:
        if pstats_path:
            profiler.dump_stats(pstats_path)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
        result["profile"] = out.getvalue()
    return result


def run_gunicorn(requests: int = 1000, warmup: int = 100, status_token: bool = False) -> dict[str, Any]:
    """CPU per delivery of a real ``buildhook web`` (1 worker x 1 thread), requests one at a time."""
    from bench.common import _proc_stats

    def tree_ticks(root: int) -> int:
        stats = _proc_stats()
        pids, frontier = {root}, [root]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, (ppid, _n, _t) in stats.items() if ppid == parent]
            pids.update(children)
            frontier.extend(children)
        return sum(stats[pid][2] for pid in pids if pid in stats)

    ticks = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="bench-intake-gunicorn-") as tmp, \
            Stack(Path(tmp), registry=False) as stack:
        repository = f"bench/gunicorn-{stack.run_id}"
        clone_url = f"file://{tmp}/never-cloned.git"
        trigger = stack.add_trigger(repository, clone_url, SECRET, repository)
        if status_token:
            from sqlalchemy import text

            from builder.secrets import SecretBox

            with stack.sessions() as session:
                session.execute(text("UPDATE triggers SET status_token_enc = :t WHERE id = :id"),
                                {"t": SecretBox(stack.settings.secret_key).seal("token"), "id": trigger["id"]})
                session.commit()
        web = stack.start_web(workers=1, threads=1)
        web_pid = stack._web_process.popen.pid  # type: ignore[union-attr]
        redis_pid = stack.redis.process.pid  # type: ignore[union-attr]
        items = [signed_push(repository, clone_url, REF, random_sha(), SECRET) for _ in range(warmup + requests)]
        statuses: dict[int, int] = {}
        for body, headers in items[:warmup]:
            web.request("POST", "/hooks/github", body, headers)
        web0, redis0, wall0 = tree_ticks(web_pid), tree_ticks(redis_pid), time.perf_counter()
        for body, headers in items[warmup:]:
            status = web.request("POST", "/hooks/github", body, headers)[0]
            statuses[status] = statuses.get(status, 0) + 1
        wall = time.perf_counter() - wall0
        web_cpu, redis_cpu = (tree_ticks(web_pid) - web0) / ticks, (tree_ticks(redis_pid) - redis0) / ticks
        healthz0 = tree_ticks(web_pid)  # the baseline: the same server answering its cheapest route
        for _ in range(requests):
            web.request("GET", "/healthz")
        healthz_cpu = (tree_ticks(web_pid) - healthz0) / ticks
        time.sleep(0.5)  # the last batched dispatched_at marks
        stored = stack.query("SELECT COUNT(*) FROM deliveries WHERE outcome = 'accepted'")[0][0]
        undispatched = stack.query("SELECT COUNT(*) FROM builds WHERE dispatched_at IS NULL")[0][0]
    return {
        "mode": "buildhook web --workers 1 --threads 1, sequential requests",
        "requests": requests,
        "status_token": status_token,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "web_cpu_ms_per_request": round(web_cpu / requests * 1000, 2),
        "redis_cpu_ms_per_request": round(redis_cpu / requests * 1000, 2),
        "healthz_cpu_ms_per_request": round(healthz_cpu / requests * 1000, 2),
        "wall_ms_per_request": round(wall / requests * 1000, 2),
        "accepted_stored": stored,
        "builds_never_dispatched": undispatched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pstats", help="write the raw profile here")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--status-token", action="store_true", help="the trigger reports commit statuses")
    parser.add_argument("--gunicorn", action="store_true", help="measure a real buildhook web instead")
    args = parser.parse_args()
    if args.gunicorn:
        print(json.dumps(run_gunicorn(args.requests, args.warmup, args.status_token), indent=2))
        return
    result = run(args.requests, args.warmup, args.profile, args.pstats, args.status_token, args.top)
    profile = result.pop("profile", None)
    print(json.dumps(result, indent=2))
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
