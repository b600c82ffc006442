"""Webhook intake: signed GitHub push deliveries at a steady offered rate, against ``buildhook web``.

The production server configuration: ``buildhook web`` (gunicorn, its defaults of 2
workers x 8 threads) on 127.0.0.1, SQLite in a temporary directory, a real Redis
broker. Each request is the real ``github/push_branch.json`` fixture rewritten to the
trigger's repository (so all land on one branch and each supersedes the build the
previous one queued), with a unique ``X-GitHub-Delivery`` and a valid
``X-Hub-Signature-256``; bodies and signatures are prepared before the clock starts.

Load is open-loop: request ``i`` is due at ``t0 + i / rate`` and one asyncio thread
sends each one at its time on a new connection (as Git hosts do), whatever the
answers do; latency counts from the due time, so a queue building up shows in the
numbers. The baseline is the same schedule against ``GET /healthz`` in the same run.

No worker runs: the builds stay queued (their messages wait in Redis). Afterwards the
``deliveries`` table must hold every delivery sent.

The full run adds two diagnostics: a sweep of lower offered rates (to show up to
which rate the target holds on this machine) and the same 200 req/s against
``buildhook web --workers 2 --threads 1`` (fewer threads per process).

Result keys: ``name``, ``params``, ``hooks`` and ``baseline`` (offered_rps, sent,
completed, statuses, achieved_rps, p50_ms, p90_ms, p99_ms, max_ms, mean_ms,
service_p99_ms, late_sends), ``ratio_p50``, ``ratio_p99``, ``sweep`` (a list of the
same), ``compare_config`` (the same, or None), ``highest_swept_rate_meeting_target``,
``stored`` (deliveries_sent, deliveries_stored, outcomes, builds_by_state, all_stored),
``target`` (p99_ms_below, met), ``summary``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Web,
    latency_summary,
    open_loop,
    raw_request,
    random_sha,
    ratio,
    signed_push,
    status_counts,
)
from bench.services import Stack

NAME = "webhook_intake"
FULL = {"rate": 200, "duration_s": 10.0, "warmup": 50,
        "sweep_rates": [50, 100, 150], "sweep_duration_s": 5.0, "compare_threads": [2, 1]}
QUICK = {"rate": 200, "duration_s": 3.0, "warmup": 20,
         "sweep_rates": [], "sweep_duration_s": 0.0, "compare_threads": None}
TARGET_P99_MS = 50.0
SECRET = "bench-intake-secret"
REF = "refs/heads/master"  # the fixture's own ref


def measure(port: int, requests: list[bytes], rate: float) -> dict[str, Any]:
    count = len(requests)
    cpu0 = time.process_time()
    samples, wall = open_loop(port, requests, rate)
    client_cpu = time.process_time() - cpu0
    latencies = [s.latency for s in samples]
    return {
        "offered_rps": rate,
        "sent": count,
        "completed": len(samples),
        "statuses": status_counts(samples),
        "achieved_rps": round(len(samples) / wall, 1) if wall else 0.0,
        **latency_summary(latencies),
        "service_p99_ms": latency_summary([s.service_time for s in samples])["p99_ms"],
        # sent more than 5 ms after their due time: the client's one thread was busy
        "late_sends": sum(1 for s in samples if s.started - s.scheduled > 0.005),
        # the load generator's own CPU (this process): what it took from the server's two cores
        "client_cpu_ms_per_request": round(client_cpu / count * 1000, 3) if count else 0.0,
    }


def run(quick: bool = False, workdir: Path | None = None, rate: float | None = None,
        duration: float | None = None) -> dict[str, Any]:
    params: dict[str, Any] = dict(QUICK if quick else FULL)
    if rate is not None:
        params["rate"] = rate
    if duration is not None:
        params["duration_s"] = duration
    count = int(params["rate"] * params["duration_s"])
    params["requests"] = count
    sent_ids: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench-intake-", dir=workdir) as tmp, \
            Stack(Path(tmp), registry=False) as stack:
        repository = f"bench/intake-{stack.run_id}"
        clone_url = f"file://{tmp}/never-cloned.git"  # no worker runs: nothing is ever cloned
        stack.add_trigger(repository, clone_url, SECRET, f"bench/intake-{stack.run_id}")

        def prepare(n: int) -> list[tuple[bytes, dict[str, str]]]:
            """Signed deliveries, made before the clock starts; each has its own delivery id."""
            items = [signed_push(repository, clone_url, REF, random_sha(), SECRET) for _ in range(n)]
            sent_ids.update(headers["X-GitHub-Delivery"] for _body, headers in items)
            return items

        def hooks_at(web: Web, rate_: float, n: int) -> dict[str, Any]:
            requests = [raw_request("POST", "/hooks/github", web.port, body, headers) for body, headers in prepare(n)]
            return measure(web.port, requests, rate_)

        def warm(web: Web) -> None:
            """Warm both paths (imports, pools, SQLite page cache) before measuring."""
            for body, headers in prepare(params["warmup"]):
                web.request("GET", "/healthz")
                web.request("POST", "/hooks/github", body, headers)

        web = stack.start_web()  # the production defaults: 2 gunicorn workers x 8 threads
        warm(web)
        baseline = measure(web.port, [raw_request("GET", "/healthz", web.port)] * count, params["rate"])
        hooks = hooks_at(web, params["rate"], count)
        sweep = [hooks_at(web, r, int(r * params["sweep_duration_s"])) for r in params["sweep_rates"]]
        compare = None
        if params["compare_threads"]:
            workers, threads_ = params["compare_threads"]
            stack.stop_web()
            other = stack.start_web(workers=workers, threads=threads_)
            warm(other)
            compare = {"config": f"buildhook web --workers {workers} --threads {threads_}",
                       **hooks_at(other, params["rate"], count)}

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
        "server": "buildhook web (gunicorn gthread, its defaults: 2 workers x 8 threads), SQLite (WAL), Redis",
        "worker_running": False,
        "hooks": hooks,
        "baseline": {"endpoint": "GET /healthz", **baseline},
        "ratio_p50": ratio(hooks["p50_ms"], baseline["p50_ms"]),
        "ratio_p99": ratio(hooks["p99_ms"], baseline["p99_ms"]),
        "sweep": sweep,
        "compare_config": compare,
        "stored": {
            # every delivery sent in this run (warm-up, headline, sweep and comparison)
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
    met_at = [s["offered_rps"] for s in sweep if s["p99_ms"] < TARGET_P99_MS and s["achieved_rps"] >= 0.95 * s["offered_rps"]]
    result["highest_swept_rate_meeting_target"] = max(met_at) if met_at else None
    result["summary"] = {
        "measured": f"p50 {hooks['p50_ms']:.1f} ms, p99 {hooks['p99_ms']:.1f} ms, "
                    f"{hooks['achieved_rps']:.0f} of {params['rate']:.0f} req/s served; "
                    f"{len(stored)}/{len(sent_ids)} deliveries stored"
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
