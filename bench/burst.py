"""Burst: hundreds of signed webhooks at once, then a worker drains the queue; nothing may be lost.

``buildhook web`` (production defaults), a registry and Redis on loopback, a
repository (made with ``git fast-import``) with one commit per push: most pushes
(90 %) go to ``main`` in commit order, the rest to a handful of feature branches,
interleaved. All ``webhooks`` deliveries (500 by default) are sent as fast as 16
client threads can (closed loop), with no worker running, so every push to a branch
supersedes the build the previous push queued. Then ``buildhook worker`` (concurrency
2) starts and drains the queue: the superseded builds' messages are dropped on
claim, and the one surviving build per branch is cloned, built and pushed.

Checks: every delivery is recorded as accepted, every build ends succeeded,
superseded, skipped or failed (none still queued or running: none lost), one build per
branch survives, and the registry holds each branch's tag. Reports the send rate and
latencies, how many builds were superseded, and the drain time (from starting the
worker, and from its "ready").

Result keys: ``name``, ``params`` (webhooks, branches, threads), ``send`` (seconds,
rps, p50_ms, p99_ms, max_ms, statuses), ``deliveries`` (sent, accepted), ``builds``
(total, by_state, superseded, survivors, lost), ``drain_s``, ``drain_after_ready_s``,
``registry_branch_tags``, ``survivor_is_last_push``, ``survivor_position``, ``ok``, ``summary``.

Superseding follows the order requests reach the database, not commit order: with
deliveries in flight at once, the surviving build of a branch need not be its newest
commit; ``survivor_position`` shows which push survived.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    FastImport,
    busybox_bytes,
    busybox_dockerfile,
    closed_loop,
    latency_summary,
    signed_push,
    status_counts,
    wait_until,
)
from bench.services import Stack

NAME = "burst"
FULL = {"webhooks": 500, "branches": 10, "threads": 16, "worker_concurrency": 2}
QUICK = {"webhooks": 100, "branches": 5, "threads": 16, "worker_concurrency": 2}
SECRET = "bench-burst-secret"
FINAL = ("succeeded", "superseded", "skipped", "failed")


def make_repository(path: Path, pushes: list[str]) -> list[str]:
    """One commit per entry of ``pushes`` (a branch name), each on its branch; returns their shas."""
    stream = FastImport()
    busybox = stream.blob(busybox_bytes())
    root = stream.commit("refs/heads/main", "initial commit", {
        "busybox": busybox,
        "Dockerfile": busybox_dockerfile("burst", "COPY counter.txt /counter.txt\n").encode(),
        "counter.txt": b"0\n",
    }, executable=["busybox"])
    tips: dict[str, int] = {}
    marks = []
    for number, branch in enumerate(pushes, 1):
        parent = tips.get(branch, root)
        mark = stream.commit(f"refs/heads/{branch}", f"push {number} to {branch}",
                             {"counter.txt": f"{number}\n".encode()}, parent=parent)
        tips[branch] = mark
        marks.append(mark)
    shas = stream.run(path)
    return [shas[mark] for mark in marks]


def plan_pushes(webhooks: int, branches: int) -> list[str]:
    """90 % to main, the rest spread over ``branches`` feature branches, interleaved (seeded)."""
    features = webhooks // 10
    pushes = ["main"] * (webhooks - features) + [f"feature-{n % branches}" for n in range(features)]
    random.Random(6).shuffle(pushes)
    return pushes


def run(quick: bool = False, workdir: Path | None = None, webhooks: int | None = None) -> dict[str, Any]:
    params = dict(QUICK if quick else FULL)
    if webhooks is not None:
        params["webhooks"] = webhooks
    pushes = plan_pushes(params["webhooks"], params["branches"])
    with tempfile.TemporaryDirectory(prefix="bench-burst-", dir=workdir) as tmp, Stack(Path(tmp)) as stack:
        repo = Path(tmp) / "repo"
        shas = make_repository(repo, pushes)
        trigger = stack.add_trigger(f"bench/burst-{stack.run_id}", f"file://{repo}", SECRET,
                                    f"bench/burst-{stack.run_id}")
        deliveries = [signed_push(trigger["repository"], trigger["clone_url"], f"refs/heads/{branch}", sha, SECRET,
                                  f"push {n} to {branch}") for n, (branch, sha) in enumerate(zip(pushes, shas), 1)]
        web = stack.start_web()

        def send(i: int) -> int:
            body, headers = deliveries[i]
            return web.request("POST", "/hooks/github", body, headers, timeout=60)[0]

        samples, send_s = closed_loop(send, len(deliveries), params["threads"])
        sent_ids = {headers["X-GitHub-Delivery"] for _body, headers in deliveries}
        rows = stack.query("SELECT delivery_id, outcome FROM deliveries")
        accepted = sum(1 for delivery_id, outcome in rows if delivery_id in sent_ids and outcome == "accepted")
        before_worker = dict(stack.query("SELECT state, COUNT(*) FROM builds GROUP BY state"))

        started = time.perf_counter()
        stack.start_worker(concurrency=params["worker_concurrency"], relay_interval=1.0)
        ready = time.perf_counter()

        def drained() -> bool:
            [(open_builds,)] = stack.query(
                "SELECT COUNT(*) FROM builds WHERE state NOT IN (?, ?, ?, ?)", FINAL)
            return open_builds == 0

        wait_until(drained, 60 + 10 * params["branches"], "the worker to drain the queue", interval=0.1)
        finished = time.perf_counter()
        by_state = dict(stack.query("SELECT state, COUNT(*) FROM builds GROUP BY state"))
        [(total,)] = stack.query("SELECT COUNT(*) FROM builds")
        survivors = stack.query("SELECT ref_name, \"commit\", state FROM builds WHERE state != 'superseded'")
        branch_tags = {branch: branch in stack.registry.tags(trigger["image"]) for branch in sorted(set(pushes))} \
            if stack.registry else {}

    order: dict[str, list[str]] = {}  # each branch's commits, in the order they were pushed
    for branch, sha in zip(pushes, shas):
        order.setdefault(branch, []).append(sha)
    survivor_is_last = {ref: sha == order[ref][-1] for ref, sha, _state in sorted(survivors)}
    # which of the branch's pushes survived (1-based), when it is not the last one
    survivor_position = {ref: f"{order[ref].index(sha) + 1} of {len(order[ref])}"
                         for ref, sha, _state in sorted(survivors) if sha in order.get(ref, [])}
    lost = total - sum(by_state.get(state, 0) for state in FINAL)
    send_summary = latency_summary([s.latency for s in samples])
    result: dict[str, Any] = {
        "name": NAME,
        "params": params,
        "pushes": {branch: pushes.count(branch) for branch in sorted(set(pushes))},
        "send": {"seconds": round(send_s, 2), "rps": round(len(samples) / send_s, 1),
                 "p50_ms": send_summary["p50_ms"], "p99_ms": send_summary["p99_ms"],
                 "max_ms": send_summary["max_ms"], "statuses": status_counts(samples)},
        "deliveries": {"sent": len(sent_ids), "accepted": accepted},
        "builds_before_worker": before_worker,
        "builds": {"total": total, "by_state": by_state, "superseded": by_state.get("superseded", 0),
                   "survivors": len(survivors), "lost": lost},
        "drain_s": round(finished - started, 2),
        "drain_after_ready_s": round(finished - ready, 2),
        "registry_branch_tags": branch_tags,
        "survivor_is_last_push": survivor_is_last,
        "survivor_position": survivor_position,
    }
    ok = (accepted == len(sent_ids) == params["webhooks"] and total == params["webhooks"] and lost == 0
          and len(survivors) == len(set(pushes)) and all(branch_tags.values())
          and by_state.get("failed", 0) == 0)
    result["ok"] = ok
    result["summary"] = {
        "measured": f"{params['webhooks']} webhooks in {send_s:.1f} s ({result['send']['rps']:.0f}/s, "
                    f"p99 {send_summary['p99_ms']:.0f} ms); {accepted} accepted; "
                    f"{by_state.get('superseded', 0)} superseded, {by_state.get('succeeded', 0)} succeeded, "
                    f"{by_state.get('failed', 0)} failed, {lost} lost; drained in {finished - started:.1f} s",
        "baseline": "-",
        "ratio": None,
        "target": "every delivery recorded, every build final, none lost",
        "met": ok,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--webhooks", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, webhooks=args.webhooks), indent=2))


if __name__ == "__main__":
    main()
