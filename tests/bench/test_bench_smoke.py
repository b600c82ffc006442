"""Smoke test of the benchmarks (bench/): every module imports, and the cheapest one runs.

The clone benchmark on a 200-commit repository (a couple of seconds: git only, no
services) must return the keys its docstring documents, with positive numbers, and
the runner must turn it into the Markdown table. No timing thresholds here: numbers
on a shared test machine say nothing; ``python -m bench`` is where they are measured.
"""

from __future__ import annotations

import importlib
import math

import pytest

from bench import clone, intake_floor
from bench.__main__ import markdown
from bench.common import github_push_payload, percentile
from bench.services import machine_info

BENCHMARKS = ["webhook_intake", "pipeline_overhead", "clone", "cache", "history", "burst", "buildkit", "intake_floor"]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_module_imports_and_has_a_run_function(name):
    module = importlib.import_module(f"bench.{name}")
    assert module.NAME == name
    assert callable(module.run)
    assert module.FULL and module.QUICK
    assert "Result keys" in (module.__doc__ or "")


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_clone_benchmark_on_a_small_repository_reports_its_documented_keys(tmp_path):
    result = clone.run(workdir=tmp_path, commits=200, runs=1)

    assert {"name", "params", "repository", "buildhook", "baseline", "ratio", "speedup", "summary"} <= set(result)
    assert result["name"] == "clone"
    assert result["params"] == {"commits": 200, "runs": 1}
    assert result["repository"]["commits"] == 200 and result["repository"]["objects"] > 0
    for side in ("buildhook", "baseline"):
        assert {"median_s", "runs_s", "objects", "kib_on_disk", "commits"} <= set(result[side])
        assert result[side]["median_s"] > 0
        assert result[side]["objects"] > 0
        assert len(result[side]["runs_s"]) == 1
    assert result["buildhook"]["commits"] == 1, "buildhook fetches one commit"
    assert result["baseline"]["commits"] == 200, "the baseline is the full history"
    assert result["buildhook"]["objects"] < result["baseline"]["objects"]
    assert result["ratio"] > 0 and result["speedup"] > 0
    assert set(result["summary"]) == {"measured", "baseline", "ratio", "target", "met"}

    report = {"quick": True, "machine": machine_info(), "order": ["clone"], "results": {"clone": result},
              "elapsed_s": 1.0}
    text = markdown(report)
    assert "| Benchmark | Measured |" in text
    assert "3. Clone (200-commit repository, median of 1)" in text


def test_bench_deliveries_are_the_real_github_push_from_the_repository_fixtures():
    payload = github_push_payload("bench/app", "http://127.0.0.1:1/app.git", "refs/heads/main", "a" * 40, "go")

    assert payload["ref"] == "refs/heads/main" and payload["after"] == "a" * 40
    assert payload["repository"]["full_name"] == "bench/app" and payload["repository"]["name"] == "app"
    assert payload["head_commit"] == {**payload["head_commit"], "id": "a" * 40, "message": "go"}
    assert payload["pusher"], "the rest of tests/fixtures/github/push_branch.json is kept"


def test_intake_floor_benchmark_runs_both_servers_and_stores_every_delivery(tmp_path):
    """buildhook web and the bare Flask floor, same gunicorn shape and client: both answer 202 to every
    signed push and store every one; the ratio is reported (no threshold here)."""
    result = intake_floor.run(quick=True, workdir=tmp_path, requests=60)

    assert result["name"] == "intake_floor" and result["params"]["requests"] == 60
    for side in ("buildhook", "floor"):
        assert [r["statuses"] for r in result[side]["rounds"]] == [{"202": 60}]
        assert result[side]["median_rps"] > 0
        assert result["stored"][side]["all_stored"], result["stored"]
    assert result["ratio"] > 0 and set(result["summary"]) == {"measured", "baseline", "ratio", "target", "met"}
    report = {"quick": True, "machine": machine_info(), "order": ["intake_floor"],
              "results": {"intake_floor": result}, "elapsed_s": 1.0}
    assert "8. Intake beside the floor (16 in flight, median of 1 x 60)" in markdown(report)
