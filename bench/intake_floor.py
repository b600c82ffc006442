"""Intake beside the floor: buildhook's webhook throughput against a bare Flask view, same server shape, same client.

The floor (``bench/floor_app.py``) only verifies the GitHub HMAC and inserts one SQLite (WAL)
row, committed before its 202. Both run under the same gunicorn shape, gthread with 2 workers x
8 threads and the access log on stdout; ``buildhook web`` with SQLite and a real Redis broker, no
worker. Both get the same signed ``github/push_branch.json`` deliveries (each its own delivery id
and signature, prepared before the clock starts) from the same asyncio client in the same run.

What is measured is the most each sustains: the client keeps ``concurrency`` requests in flight
(one asyncio thread, a new connection per request, the next sent as an answer comes), so the
server never waits for work and answered / wall is its throughput. That was chosen over an open
loop stepped up until p99 degrades because it needs one run per side instead of a search, and it
gives one number per side that does not depend on where the steps fall; latency under it is
reported, but it is queueing at saturation, not the latency of a given offered load (that is
``webhook_intake.py``). The rounds alternate floor, buildhook, floor, ... so a neighbour's burst
on a shared machine hits both; the ratio is of the medians. Afterwards every delivery sent to
either must be stored.

Result keys: ``name``, ``params``, ``buildhook`` and ``floor`` (rounds: each requests, wall_s,
rps, statuses, p50_ms, p99_ms; median_rps), ``ratio`` (buildhook / floor median req/s),
``stored`` (buildhook and floor: sent, stored, all_stored), ``builds_by_state`` (buildhook's builds
afterwards: no worker runs, so what was not superseded stays queued), ``target`` (ratio_at_least,
met), ``summary``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    LOOPBACK,
    Web,
    latency_summary,
    median,
    random_sha,
    ratio,
    raw_request,
    saturating_loop,
    signed_push,
    status_counts,
    wait_until,
)
from bench.floor_app import create_table
from bench.services import Process, Stack, _clean_environment, free_port

NAME = "intake_floor"
FULL = {"rounds": 3, "requests": 2000, "warmup": 100, "concurrency": 16}
QUICK = {"rounds": 1, "requests": 400, "warmup": 30, "concurrency": 16}
TARGET_RATIO = 0.6
SECRET = "bench-floor-secret"
REF = "refs/heads/master"  # the fixture's own ref


def start_floor(root: Path, database: Path) -> tuple[Process, Web]:
    """The floor app under ``buildhook web``'s gunicorn shape."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"{LOOPBACK}:{port}", "--workers", "2",
            "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-", "bench.floor_app:app"]
    env = {**_clean_environment(), "BENCH_FLOOR_DATABASE": str(database), "BENCH_FLOOR_SECRET": SECRET}
    process = Process("floor", args, env, root / "floor.log")
    web = Web(port)

    def answering() -> bool:
        if not process.alive():
            raise RuntimeError(f"the floor app exited:\n{process.log_tail()}")
        try:
            return web.request("GET", "/", timeout=1)[0] == 404
        except OSError:
            return False

    wait_until(answering, 60, "the floor app to answer", interval=0.1)
    return process, web


def one_round(port: int, deliveries: list[tuple[bytes, dict[str, str]]], concurrency: int) -> dict[str, Any]:
    requests = [raw_request("POST", "/hooks/github", port, body, headers) for body, headers in deliveries]
    samples, wall = saturating_loop(port, requests, concurrency)
    latency = latency_summary([s.latency for s in samples])
    return {"requests": len(requests), "wall_s": round(wall, 3), "rps": round(len(samples) / wall, 1),
            "statuses": status_counts(samples), "p50_ms": latency["p50_ms"], "p99_ms": latency["p99_ms"]}


def run(quick: bool = False, workdir: Path | None = None, requests: int | None = None,
        rounds: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = dict(QUICK if quick else FULL)
    params.update({k: v for k, v in (("requests", requests), ("rounds", rounds)) if v is not None})
    sent: dict[str, set[str]] = {"buildhook": set(), "floor": set()}
    results: dict[str, list[dict[str, Any]]] = {"buildhook": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="bench-floor-", dir=workdir) as tmp, \
            Stack(Path(tmp), registry=False) as stack:
        repository = f"bench/floor-{stack.run_id}"
        clone_url = f"file://{tmp}/never-cloned.git"  # no worker runs: nothing is ever cloned
        stack.add_trigger(repository, clone_url, SECRET, repository)
        floor_db = Path(tmp) / "floor.db"
        create_table(str(floor_db))
        floor, floor_web = start_floor(Path(tmp), floor_db)
        try:
            ports = {"buildhook": stack.start_web().port, "floor": floor_web.port}

            heads = {"buildhook": random_sha(), "floor": random_sha()}

            def deliveries(side: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
                """Successive pushes to one branch, as a Git host sends them: each on top of the last."""
                items = []
                for _ in range(n):
                    before, heads[side] = heads[side], random_sha()
                    items.append(signed_push(repository, clone_url, REF, heads[side], SECRET, before=before))
                sent[side].update(headers["X-GitHub-Delivery"] for _body, headers in items)
                return items

            for side in ("floor", "buildhook"):  # warm both (imports, pools, page cache)
                one_round(ports[side], deliveries(side, params["warmup"]), params["concurrency"])
            for _ in range(params["rounds"]):
                for side in ("floor", "buildhook"):
                    results[side].append(one_round(ports[side], deliveries(side, params["requests"]),
                                                   params["concurrency"]))
        finally:
            floor.stop()
        stored_hooks = {row[0] for row in stack.query(
            "SELECT delivery_id FROM deliveries WHERE provider = 'github'")} & sent["buildhook"]
        builds = dict(stack.query("SELECT state, COUNT(*) FROM builds GROUP BY state"))
        stored_floor = _floor_deliveries(floor_db) & sent["floor"]
    return {**summarize(params, results, sent, {"buildhook": stored_hooks, "floor": stored_floor}),
            "builds_by_state": builds}


def _floor_deliveries(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT delivery_id FROM deliveries")}
    finally:
        db.close()


def summarize(params: dict[str, Any], results: dict[str, list[dict[str, Any]]], sent: dict[str, set[str]],
              stored: dict[str, set[str]]) -> dict[str, Any]:
    sides = {side: {"rounds": rounds, "median_rps": median([r["rps"] for r in rounds])}
             for side, rounds in results.items()}
    value = ratio(sides["buildhook"]["median_rps"], sides["floor"]["median_rps"])
    kept = {side: {"sent": len(sent[side]), "stored": len(stored[side]), "all_stored": stored[side] == sent[side]}
            for side in sent}
    all_202 = all(set(r["statuses"]) == {"202"} for rounds in results.values() for r in rounds)
    hooks, floor = sides["buildhook"], sides["floor"]
    return {
        "name": NAME,
        "params": params,
        "server": "gunicorn gthread, 2 workers x 8 threads, access log on stdout; SQLite (WAL); buildhook with Redis",
        "buildhook": hooks,
        "floor": floor,
        "ratio": value,
        "stored": kept,
        "target": {"ratio_at_least": TARGET_RATIO, "met": value >= TARGET_RATIO},
        "summary": {
            "measured": f"buildhook {hooks['median_rps']:.0f} req/s (p99 {hooks['rounds'][-1]['p99_ms']:.0f} ms at "
                        f"{params['concurrency']} in flight); {kept['buildhook']['stored']}/{kept['buildhook']['sent']} "
                        "deliveries stored" + ("" if all_202 else "; not all 202"),
            "baseline": f"floor {floor['median_rps']:.0f} req/s; {kept['floor']['stored']}/{kept['floor']['sent']} stored",
            "ratio": value,
            "target": f"buildhook / floor >= {TARGET_RATIO}, every delivery stored",
            "met": value >= TARGET_RATIO and all_202 and all(k["all_stored"] for k in kept.values()),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, requests=args.requests, rounds=args.rounds), indent=2))


if __name__ == "__main__":
    main()
