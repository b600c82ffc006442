"""History: the build history page and API with a large database, against ``/healthz``.

A migrated SQLite database (``builder.db.engine.migrate``) gets 10 triggers and ``builds``
builds (100,000 by default) inserted in bulk with SQLAlchemy core (finished builds
with tags, digests and timestamps, spread over the triggers, branches and states).
Then ``buildhook web`` (its production defaults) serves it on loopback and each
endpoint gets ``requests`` sequential GETs (new connection each) after a short
warm-up: ``/`` (the page of newest builds), ``/api/builds`` (50 newest), and, for
information, ``/api/builds?trigger=<id>``, a page deep in the history
(``?before=<middle id>``) and the page filtered by trigger (``/?trigger=<id>``). The baseline is ``/healthz`` in the same run. When this
version of buildhook requires sign-in, requests carry an admin's API token.

Result keys: ``name``, ``params`` (builds, requests), ``insert_s``, ``endpoints`` (for
each path: p50_ms, p90_ms, max_ms, bytes, status), ``page`` and ``api`` (p50_ms),
``baseline_p50_ms``, ``ratio_page``, ``ratio_api``, ``target`` (p50_ms_below, met), ``summary``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import latency_summary, ratio
from bench.services import Stack
from builder.db.models import Build

NAME = "history"
FULL = {"builds": 100_000, "requests": 50, "triggers": 10}
QUICK = {"builds": 10_000, "requests": 50, "triggers": 10}
TARGET_P50_MS = 100.0
STATES = ["succeeded"] * 80 + ["failed"] * 10 + ["superseded"] * 8 + ["skipped"] * 2
BATCH = 5_000


def fill(stack: Stack, builds: int, triggers: int) -> tuple[list[int], float]:
    """``builds`` finished builds over ``triggers`` triggers; returns the trigger ids and the seconds taken."""
    made = [stack.add_trigger(f"bench/history-{n}", f"file:///srv/git/history-{n}.git", "history-secret",
                              f"bench/history-{n}") for n in range(triggers)]
    rng = random.Random(6)
    start = time.perf_counter()
    now = datetime.now(UTC)
    rows = []
    with stack.sessions() as session:
        for number in range(builds):
            trigger = made[number % triggers]
            sha = "%040x" % rng.getrandbits(160)
            branch = "main" if number % 4 else f"feature/topic-{number % 97}"
            state = rng.choice(STATES)
            created = now - timedelta(seconds=(builds - number) * 30)
            finished = created + timedelta(seconds=rng.uniform(20, 200))
            rows.append({
                "trigger_id": trigger["id"], "rule_id": trigger["rules"][0], "provider": "github",
                "repository": trigger["repository"], "clone_url": trigger["clone_url"],
                "before": None, "ref": f"refs/heads/{branch}", "ref_type": "branch", "ref_name": branch,
                "commit": sha, "commit_message": f"Change number {number}\n\nA longer description of the change.",
                "author": "octocat", "image": f"127.0.0.1:5000/{trigger['image']}",
                "tags": [branch.replace("/", "-"), sha[:7]] + (["latest"] if branch == "main" else []),
                "dockerfile": "Dockerfile", "context": ".", "build_args": {}, "target": None,
                "included_files": [], "ignored_files": [], "state": state,
                "error": "docker build failed: exit 1" if state == "failed" else None,
                "reason": "superseded by a newer push" if state == "superseded" else None,
                "digest": "sha256:" + "%064x" % rng.getrandbits(256) if state == "succeeded" else None,
                "attempts": 1, "created_at": created, "dispatched_at": created,
                "started_at": created + timedelta(seconds=1), "cloning_at": created + timedelta(seconds=1),
                "building_at": created + timedelta(seconds=3), "pushing_at": finished - timedelta(seconds=2),
                "finished_at": finished,
            })
            if len(rows) == BATCH:
                session.execute(insert(Build), rows)
                rows = []
        if rows:
            session.execute(insert(Build), rows)
        session.commit()
    return [t["id"] for t in made], time.perf_counter() - start


def run(quick: bool = False, workdir: Path | None = None, builds: int | None = None,
        requests: int | None = None) -> dict[str, Any]:
    params = dict(QUICK if quick else FULL)
    if builds is not None:
        params["builds"] = builds
    if requests is not None:
        params["requests"] = requests
    endpoints: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-", dir=workdir) as tmp, \
            Stack(Path(tmp), registry=False) as stack:
        trigger_ids, insert_s = fill(stack, params["builds"], params["triggers"])
        [(count, low, high)] = stack.query("SELECT COUNT(*), MIN(id), MAX(id) FROM builds")
        api = stack.start_web()  # production defaults
        api = stack.api()
        paths = {
            "healthz": "/healthz",
            "page": "/",
            "api": "/api/builds",
            "api_trigger": f"/api/builds?trigger={trigger_ids[-1]}",
            "api_deep_page": f"/api/builds?before={(low + high) // 2}",
            "page_trigger": f"/?trigger={trigger_ids[-1]}",
        }
        for key, path in paths.items():
            for _ in range(3):  # warm-up
                api.request("GET", path)
            latencies, sizes, statuses = [], [], set()
            for _ in range(params["requests"]):
                begin = time.perf_counter()
                status, body = api.request("GET", path)
                latencies.append(time.perf_counter() - begin)
                sizes.append(len(body))
                statuses.add(status)
            summary = latency_summary(latencies)
            endpoints[key] = {"path": path, "p50_ms": summary["p50_ms"], "p90_ms": summary["p90_ms"],
                              "max_ms": summary["max_ms"], "bytes": max(sizes), "status": sorted(statuses)}
            if statuses != {200}:
                raise RuntimeError(f"GET {path} answered {sorted(statuses)}")
        api_auth = "bearer token" if stack.auth_headers() else "none"

    page, listing, baseline = endpoints["page"]["p50_ms"], endpoints["api"]["p50_ms"], endpoints["healthz"]["p50_ms"]
    met = page < TARGET_P50_MS and listing < TARGET_P50_MS
    result: dict[str, Any] = {
        "name": NAME,
        "params": params,
        "builds_in_database": count,
        "insert_s": round(insert_s, 2),
        "server": "buildhook web (defaults: 2 workers x 8 threads), SQLite (WAL)",
        "api_auth": api_auth,
        "endpoints": endpoints,
        "page": {"p50_ms": page},
        "api": {"p50_ms": listing},
        "baseline_p50_ms": baseline,
        "ratio_page": ratio(page, baseline),
        "ratio_api": ratio(listing, baseline),
        "target": {"p50_ms_below": TARGET_P50_MS, "met": met},
    }
    result["summary"] = {
        "measured": f"GET / p50 {page:.1f} ms, GET /api/builds p50 {listing:.1f} ms ({count:,} builds)",
        "baseline": f"/healthz p50 {baseline:.1f} ms",
        "ratio": result["ratio_page"],
        "target": f"p50 < {TARGET_P50_MS:.0f} ms for both",
        "met": met,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--builds", type=int)
    parser.add_argument("--requests", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, builds=args.builds, requests=args.requests), indent=2))


if __name__ == "__main__":
    main()
