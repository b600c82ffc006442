"""Webhook intake: signed GitHub push deliveries at a steady offered rate, against ``buildhook web``.

The production server configuration: ``buildhook web`` (gunicorn, its defaults of 2
workers x 8 threads) on 127.0.0.1, SQLite in a temporary directory, a real Redis
broker. Each request is the real ``github/push_branch.json`` fixture rewritten to the
trigger's repository (so all land on one branch and each supersedes the build the
previous one queued), with a unique ``X-GitHub-Delivery`` and a valid
``X-Hub-Signature-256``; bodies and signatures are prepared before the clock starts.

Load is open-loop: request ``i`` is due at ``t0 + i / rate`` and a pool of threads
sends each one at its time on a new connection (as Git hosts do), whatever the
answers do; latency counts from the due time, so a queue building up shows in the
numbers. The baseline is the same schedule against ``GET /healthz`` in the same run.

No worker runs: the builds stay queued (their messages wait in Redis). Afterwards the
``deliveries`` table must hold every delivery sent.

Result keys: ``name``, ``params`` (rate, duration_s, requests, threads), ``hooks`` and
``baseline`` (sent, completed, statuses, achieved_rps, p50_ms, p90_ms, p99_ms, max_ms,
mean_ms, late_sends), ``ratio_p50``, ``ratio_p99``, ``stored`` (deliveries_sent,
deliveries_stored, accepted, builds, all_stored), ``target`` (p99_ms_below, met), ``summary``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.common import (
    Sample,
    Web,
    latency_summary,
    open_loop,
    random_sha,
    ratio,
    signed_push,
    status_counts,
)
from bench.services import Stack

NAME = "webhook_intake"
FULL = {"rate": 200, "duration_s": 10.0, "threads": 32, "warmup": 50}
QUICK = {"rate": 200, "duration_s": 3.0, "threads": 32, "warmup": 20}
TARGET_P99_MS = 50.0
SECRET = "bench-intake-secret"


def measure(send: Callable[[int], int], count: int, rate: float, threads: int) -> tuple[dict[str, Any], list[Sample]]:
    samples, wall = open_loop(send, count, rate, threads)
    latencies = [s.latency for s in samples]
    late = sum(1 for s in samples if s.started - s.scheduled > 0.005)
    stats = {
        "sent": count,
        "completed": len(samples),
        "statuses": status_counts(samples),
        "achieved_rps": round(len(samples) / wall, 1) if wall else 0.0,
        **latency_summary(latencies),
        "service_p99_ms": latency_summary([s.service_time for s in samples])["p99_ms"],
        "late_sends": late,  # sent > 5 ms after their due time (all client threads were busy)
    }
    return stats, samples


def run(quick: bool = False, workdir: Path | None = None, rate: float | None = None,
        duration: float | None = None, threads: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = dict(QUICK if quick else FULL)
    if rate is not None:
        params["rate"] = rate
    if duration is not None:
        params["duration_s"] = duration
    if threads is not None:
        params["threads"] = threads
    count = int(params["rate"] * params["duration_s"])
    params["requests"] = count
    with tempfile.TemporaryDirectory(prefix="bench-intake-", dir=workdir) as tmp, \
            Stack(Path(tmp), registry=False) as stack:
        repository = f"bench/intake-{stack.run_id}"
        trigger = stack.add_trigger(repository, f"file://{tmp}/never-cloned.git", SECRET, f"bench/intake-{stack.run_id}")
        web = stack.start_web()  # production defaults: 2 gunicorn workers x 8 threads

        def prepare(n: int) -> list[tuple[bytes, dict[str, str]]]:
            return [signed_push(repository, trigger["clone_url"], "refs/heads/master", random_sha(), SECRET)
                    for _ in range(n)]

        warm = prepare(params["warmup"])
        deliveries = prepare(count)

        def hook(items: list[tuple[bytes, dict[str, str]]]) -> Callable[[int], int]:
            def send(i: int) -> int:
                body, headers = items[i]
                return web.request("POST", "/hooks/github", body, headers)[0]
            return send

        def healthz(_i: int) -> int:
            return web.request("GET", "/healthz")[0]

        # Warm both paths (imports, connection pools, SQLite page cache), then measure.
        for i in range(params["warmup"]):
            healthz(i)
            hook(warm)(i)
        baseline, _ = measure(healthz, count, params["rate"], params["threads"])
        hooks, samples = measure(hook(deliveries), count, params["rate"], params["threads"])

        sent_ids = {headers["X-GitHub-Delivery"] for _body, headers in deliveries}
        rows = stack.query("SELECT delivery_id, outcome FROM deliveries WHERE provider = 'github'")
        stored = {delivery_id: outcome for delivery_id, outcome in rows if delivery_id in sent_ids}
        outcomes: dict[str, int] = {}
        for outcome in stored.values():
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        builds = dict(stack.query("SELECT state, COUNT(*) FROM builds GROUP BY state"))
        api_auth = "bearer token" if stack.auth_headers() else "none"

    result: dict[str, Any] = {
        "name": NAME,
        "params": params,
        "server": "buildhook web (gunicorn gthread, defaults: 2 workers x 8 threads), SQLite (WAL), Redis broker",
        "worker_running": False,
        "hooks": hooks,
        "baseline": {"endpoint": "GET /healthz", **baseline},
        "ratio_p50": ratio(hooks["p50_ms"], baseline["p50_ms"]),
        "ratio_p99": ratio(hooks["p99_ms"], baseline["p99_ms"]),
        "stored": {
            "deliveries_sent": len(sent_ids),
            "deliveries_stored": len(stored),
            "outcomes": dict(sorted(outcomes.items())),
            "builds_by_state": builds,
            "all_stored": len(stored) == len(sent_ids),
        },
        "api_auth": api_auth,
        "target": {"p99_ms_below": TARGET_P99_MS, "met": hooks["p99_ms"] < TARGET_P99_MS},
    }
    all_202 = hooks["statuses"] == {"202": count}
    result["summary"] = {
        "measured": f"p50 {hooks['p50_ms']:.1f} ms, p99 {hooks['p99_ms']:.1f} ms at "
                    f"{hooks['achieved_rps']:.0f} req/s; {len(stored)}/{len(sent_ids)} stored"
                    + ("" if all_202 else f"; statuses {hooks['statuses']}"),
        "baseline": f"/healthz p50 {baseline['p50_ms']:.1f} ms, p99 {baseline['p99_ms']:.1f} ms",
        "ratio": result["ratio_p99"],
        "target": f"p99 < {TARGET_P99_MS:.0f} ms at {params['rate']:.0f} req/s, every delivery stored",
        "met": result["target"]["met"] and result["stored"]["all_stored"] and all_202,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float)
    parser.add_argument("--duration", type=float)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, rate=args.rate, duration=args.duration), indent=2))


if __name__ == "__main__":
    main()
