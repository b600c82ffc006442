"""Run every benchmark: ``python -m bench [--quick] [--out bench/results/latest.json] [--only NAME,...]``.

Writes the results as JSON (``--out``) and a Markdown summary beside it (same name,
``.md``), and prints the summary. Each benchmark starts and stops its own services;
one that crashes is recorded with its error and the others still run (exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import ROOT, CpuMonitor, wait_for_quiet
from bench.services import machine_info

BENCHMARKS = ["webhook_intake", "pipeline_overhead", "clone", "cache", "history", "burst", "buildkit", "intake_floor"]
TITLES = {
    "webhook_intake": "1. Webhook intake",
    "pipeline_overhead": "2. Pipeline overhead",
    "clone": "3. Clone",
    "cache": "4. Layer cache",
    "history": "5. History",
    "burst": "6. Burst",
    "buildkit": "7. BuildKit",
    "intake_floor": "8. Intake beside the floor",
}


def title(name: str, result: dict[str, Any]) -> str:
    """The benchmark's name with what this run measured."""
    p = result.get("params") or {}
    what = {
        "webhook_intake": lambda: f"{p['rate']:.0f} req/s for {p['duration_s']:.0f} s, signed GitHub pushes",
        "pipeline_overhead": lambda: f"accepted -> pushed, median of {p['runs']}",
        "clone": lambda: f"{p['commits']:,}-commit repository, median of {p['runs']}",
        "cache": lambda: f"rebuild vs first build, median of {p['runs']}",
        "history": lambda: f"{p['builds']:,} builds, {p['requests']} GETs each",
        "burst": lambda: f"{p['webhooks']} webhooks, then drain",
        "buildkit": lambda: f"multi-stage build, accepted -> pushed, median of {p['runs']}",
        "intake_floor": lambda: f"{p['concurrency']} in flight, median of {p['rounds']} x {p['requests']}",
    }.get(name)
    try:
        return f"{TITLES.get(name, name)} ({what()})" if what and p else TITLES.get(name, name)
    except (KeyError, TypeError, ValueError):
        return TITLES.get(name, name)


RATIO_MEANS = {
    "webhook_intake": "p99 of hooks / p99 of /healthz",
    "pipeline_overhead": "buildhook / by hand (median totals)",
    "clone": "buildhook fetch / full clone",
    "cache": "rebuild / first build",
    "history": "p50 of GET / / p50 of /healthz",
    "burst": "-",
    "buildkit": "buildhook / by hand with BuildKit (median totals)",
    "intake_floor": "buildhook req/s / floor req/s (medians)",
}


def _fmt_ratio(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _met(value: Any) -> str:
    return {True: "yes", False: "**no**"}.get(value, "-")


def details(result: dict[str, Any]) -> list[str]:
    """A few lines under the table for each benchmark."""
    name = result.get("name")
    lines: list[str] = []
    if "error" in result:
        return [f"- crashed: `{result['error'].strip().splitlines()[-1]}`"]
    if name == "webhook_intake":
        h, b = result["hooks"], result["baseline"]
        lines.append(f"- {h['sent']} deliveries offered at {h['offered_rps']:.0f}/s for {result['params']['duration_s']:.0f} s "
                     f"(open loop from one asyncio client, new connection each): served "
                     f"{h['achieved_rps']:.0f}/s, p50 {h['p50_ms']:.1f} / p90 {h['p90_ms']:.1f} / p99 {h['p99_ms']:.1f} / "
                     f"max {h['max_ms']:.1f} ms, statuses {h['statuses']}, {h['late_sends']} sent late; client CPU "
                     f"{h.get('client_cpu_ms_per_request', float('nan')):.2f} ms per request.")
        lines.append(f"- /healthz on the same schedule: {b['achieved_rps']:.0f}/s, p50 {b['p50_ms']:.1f} / p99 {b['p99_ms']:.1f} ms.")
        for s in result.get("sweep") or []:
            lines.append(f"- sweep, {s['offered_rps']:.0f} req/s offered: served {s['achieved_rps']:.0f}/s, "
                         f"p50 {s['p50_ms']:.1f} / p99 {s['p99_ms']:.1f} ms.")
        if result.get("sweep"):
            lines.append(f"- highest swept rate meeting p99 < 50 ms: {result.get('highest_swept_rate_meeting_target') or 'none'}"
                         " req/s.")
        c = result.get("compare_config")
        if c:
            lines.append(f"- same 200 req/s against `{c['config']}`: served {c['achieved_rps']:.0f}/s, "
                         f"p50 {c['p50_ms']:.1f} / p99 {c['p99_ms']:.1f} ms.")
        st = result["stored"]
        lines.append(f"- stored: {st['deliveries_stored']}/{st['deliveries_sent']} deliveries ({st['outcomes']}); builds "
                     f"{st['builds_by_state']} (no worker ran, so they stay queued; each push to the branch "
                     "supersedes the previous one).")
    elif name == "intake_floor":
        for side in ("buildhook", "floor"):
            rounds = result[side]["rounds"]
            lines.append(f"- {side}: {[r['rps'] for r in rounds]} req/s per round, p50 "
                         f"{[r['p50_ms'] for r in rounds]} / p99 {[r['p99_ms'] for r in rounds]} ms, statuses "
                         f"{[r['statuses'] for r in rounds]}; stored {result['stored'][side]['stored']}/"
                         f"{result['stored'][side]['sent']}.")
    elif name == "pipeline_overhead":
        b, m = result["buildhook"], result["baseline"]
        lines.append(f"- buildhook (median of {result['params']['runs']}): total {b['total_s']:.2f} s = queue "
                     f"{b['queue_wait_s']:.3f} + clone {b['clone_s']:.2f} + build {b['build_s']:.2f} + push "
                     f"{b['push_s']:.2f}; seen by the polling client after {b['client_observed_s']:.2f} s.")
        lines.append(f"- by hand (`docker build {m.get('flags', '')}`, the limits buildhook sets): total {m['total_s']:.2f} s = "
                     f"clone {m['clone_s']:.2f} + build {m['build_s']:.2f} + push {m['push_s']:.2f}.")
        p = result.get("baseline_plain")
        if p:
            lines.append(f"- by hand, plain `docker build`: total {p['total_s']:.2f} s = clone {p['clone_s']:.2f} + build "
                         f"{p['build_s']:.2f} + push {p['push_s']:.2f}; buildhook / plain: {result['ratio_plain']:.2f}.")
        o = result.get("overhead_s")
        if o:
            lines.append(f"- buildhook minus by hand (same limits), median over the rounds: total {o['total_s']:+.2f} s (clone "
                         f"{o['clone_s']:+.2f}, build {o['build_s']:+.2f}, push {o['push_s']:+.2f}, plus the queue wait).")
        lines.append(f"- per-run totals: buildhook {[r['total_s'] for r in b['runs']]}, by hand "
                     f"{[r['total_s'] for r in m['runs']]}; queue waits {[r['queue_wait_s'] for r in b['runs']]}.")
        if result.get("warmup"):
            w = result["warmup"]
            lines.append(f"- warm-up round (not counted): buildhook {w['buildhook']['total_s']:.2f} s (queue "
                         f"{w['buildhook']['queue_wait_s']:.3f} s), by hand {w['baseline']['total_s']:.2f} s.")
    elif name == "clone":
        r, b, m = result["repository"], result["buildhook"], result["baseline"]
        lines.append(f"- repository: {r['commits']:,} commits, {r['objects']:,} objects, {r['kib_on_disk']:,} KiB "
                     f"packed (made in {r['create_s']:.1f} s); {r['transport']}.")
        lines.append(f"- buildhook: {b['median_s']:.3f} s, {b['objects']:,} objects, {b['commits']} commit; full clone: "
                     f"{m['median_s']:.3f} s, {m['objects']:,} objects, {m['commits']:,} commits "
                     f"({result['speedup']:.1f}x faster).")
    elif name == "cache":
        f, r = result["first"], result["rebuild"]
        lines.append(f"- first build (median of {result['params']['runs']}): total {f['total_s']:.2f} s, build phase "
                     f"{f['build_s']:.2f} s, push {f['push_s']:.2f} s; rebuild: total {r['total_s']:.2f} s, build phase "
                     f"{r['build_s']:.2f} s (ratio {result['ratio_build']:.2f}), push {r['push_s']:.2f} s.")
        lines.append(f"- rebuild: {r['dockerfile_steps_cached']} of {r['dockerfile_steps'] - 1} Dockerfile steps (after "
                     f"FROM) from the cache; the {r['label_steps']} LABEL steps for the OCI labels run every time "
                     f"(`created` changes), so the rebuild gets a new digest: same digest = "
                     f"{result['rebuild_same_digest']}.")
    elif name == "history":
        e = result["endpoints"]
        lines.append(f"- {result['builds_in_database']:,} builds inserted in {result['insert_s']:.1f} s; "
                     f"{result['params']['requests']} sequential GETs each; API auth: {result['api_auth']}.")
        for key in ("healthz", "page", "api", "api_trigger", "api_deep_page", "page_trigger"):
            if key not in e:
                continue
            v = e[key]
            lines.append(f"- `GET {v['path']}`: p50 {v['p50_ms']:.1f} / p90 {v['p90_ms']:.1f} / max {v['max_ms']:.1f} ms, "
                         f"{v['bytes']:,} bytes.")
    elif name == "burst":
        s, b = result["send"], result["builds"]
        lines.append(f"- sent {result['params']['webhooks']} deliveries ({result['pushes']}) with "
                     f"{result['params']['threads']} threads in {s['seconds']:.1f} s ({s['rps']:.0f}/s; p50 "
                     f"{s['p50_ms']:.0f} / p99 {s['p99_ms']:.0f} / max {s['max_ms']:.0f} ms; {s['statuses']}); "
                     f"{result['deliveries']['accepted']} recorded as accepted.")
        lines.append(f"- before the worker: {result['builds_before_worker']}; after draining: {b['by_state']}, "
                     f"{b['lost']} lost; drain {result['drain_s']:.1f} s from starting `buildhook worker "
                     f"--concurrency {result['params']['worker_concurrency']}` ({result['drain_after_ready_s']:.1f} s "
                     "after it was ready).")
        lines.append(f"- registry has each branch's tag: {all(result['registry_branch_tags'].values())}; surviving "
                     f"build per branch (which push): {result['survivor_position']}.")
    elif name == "buildkit":
        b, m, c = result["buildhook"], result["by_hand"], result["classic"]
        lines.append(f"- buildhook with BuildKit (median of {result['params']['runs']}): total {b['total_s']:.2f} s = "
                     f"queue {b['queue_wait_s']:.3f} + clone {b['clone_s']:.2f} + build {b['build_s']:.2f} + push "
                     f"{b['push_s']:.2f}; per run {[r['total_s'] for r in b['runs']]}.")
        lines.append(f"- by hand ({m['what']}): total {m['total_s']:.2f} s = clone {m['clone_s']:.2f} + build "
                     f"{m['build_s']:.2f} + push {m['push_s']:.2f}; per run {[r['total_s'] for r in m['runs']]}.")
        lines.append(f"- buildhook with the classic engine: total {c['total_s']:.2f} s (build {c['build_s']:.2f}); "
                     f"BuildKit / classic: {result['ratio_classic']:.2f}.")
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    mode = "quick run (a smoke check: fewer runs, smaller counts)" if report["quick"] else "full run"
    out = [
        f"# buildhook benchmarks, {mode}, {m['measured_at']}",
        "",
        f"Machine: {m['nproc']} CPUs, {m.get('memory_gib', '?')} GiB, {m['platform']}; Python {m['python']}, "
        f"Docker Engine {m['docker_server']}, {m['git']}, SQLite {m['sqlite']}, {m['redis_server'].split(' sha=')[0] if m.get('redis_server') else 'redis ?'}. "
        f"buildhook at {m.get('git_commit', '?')}{' (working tree modified)' if m.get('working_tree_modified') else ''}. "
        f"Everything on 127.0.0.1; the load generator runs on the same machine. Total {report['elapsed_s']:.0f} s.",
        "",
        "| Benchmark | Measured | Baseline (same run) | Ratio | Target | Met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in report["order"]:
        result = report["results"][name]
        heading = title(name, result)
        if "error" in result:
            out.append(f"| {heading} | crashed | - | - | - | **no** |")
            continue
        s = result["summary"]
        out.append(f"| {heading} | {s['measured']} | {s['baseline']} | {_fmt_ratio(s['ratio'])} | {s['target']} | "
                   f"{_met(s['met'])} |")
    out += ["", "Ratios: " + "; ".join(f"{TITLES[n].split(' ', 1)[1]}: {RATIO_MEANS[n]}"
                                      for n in report["order"] if RATIO_MEANS.get(n, "-") != "-") + ".", ""]
    for name in report["order"]:
        result = report["results"][name]
        out.append(f"**{title(name, result)}** ({result.get('elapsed_s', 0):.0f} s)")
        out.append("")
        out += details(result)
        cpu = result.get("cpu")
        if cpu:
            heavy = ", ".join(f"{k} {v:.0f}" for k, v in cpu["others_heaviest"].items() if v >= 1) or "nothing notable"
            wait = cpu.get("quiet_wait")
            if wait:
                out.append(f"- before it started: waited {wait['waited_s']:.0f} s for a quiet machine; it was "
                           f"{wait['busy_before_start']:.0%} busy{'' if wait['quiet'] else ' (gave up waiting)'}.")
            out.append(f"- CPU while it ran ({cpu['wall_s']:.0f} s on {m['nproc']} cores): benchmark processes "
                       f"{cpu['cpu_s_ours']:.0f} s, Docker Engine {cpu['cpu_s_docker_engine']:.0f} s, other processes on "
                       f"the machine {cpu['cpu_s_others']:.0f} s = {cpu['others_share_of_machine']:.0%} of it "
                       f"({heavy}).")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller counts: a smoke check")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json",
                        help="where the JSON goes; the Markdown summary goes beside it (.md)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each benchmark, wait up to SECONDS until other processes use less than "
                             "25%% of the machine (a shared machine: e.g. a test suite running)")
    args = parser.parse_args(argv)
    names = BENCHMARKS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(BENCHMARKS))
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    report: dict[str, Any] = {"quick": args.quick, "machine": machine_info(), "order": names, "results": {}}
    started = time.perf_counter()
    failed = False
    for name in names:
        quiet = None
        if args.wait_quiet > 0:
            quiet = wait_for_quiet(args.wait_quiet)
            print(f"bench: machine {quiet['busy_before_start']:.0%} busy after waiting {quiet['waited_s']:.0f} s",
                  file=sys.stderr, flush=True)
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        begin = time.perf_counter()
        monitor = CpuMonitor()
        try:
            with monitor:
                module = importlib.import_module(f"bench.{name}")
                result = module.run(quick=args.quick)
        except Exception:
            failed = True
            result = {"name": name, "error": traceback.format_exc()}
            print(result["error"], file=sys.stderr)
        result["elapsed_s"] = round(time.perf_counter() - begin, 1)
        result["cpu"] = monitor.result()
        if quiet is not None:
            result["cpu"]["quiet_wait"] = quiet
        report["results"][name] = result
        print(f"bench: {name} done in {result['elapsed_s']:.0f} s", file=sys.stderr, flush=True)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
