"""Clone: buildhook's one-commit fetch against a full ``git clone`` of a long history.

A repository with ``commits`` commits (20,000 by default; made with ``git fast-import``
in a second or two, then packed with ``git repack -a -d`` as a hosted repository would
be) is served over ``file://``, which is git's real pack transport (``--no-local`` is
passed too, so nothing is hard-linked). Each run times:

- buildhook: ``builder.builds.run.clone.clone_commit`` of the tip commit (``git init`` +
  ``git fetch --depth=1 origin <sha>`` + checkout, through GitPython), and
- baseline: ``git clone --no-local file://...`` (full history, with checkout),

alternating which goes first, and reports the medians, their ratio and how many
objects each one ended up with.

Result keys: ``name``, ``params`` (commits, files, runs), ``repository`` (objects,
kib_on_disk, create_s), ``buildhook`` and ``baseline`` (median_s, runs_s, objects,
kib_on_disk), ``ratio`` (buildhook / baseline), ``speedup`` (baseline / buildhook),
``summary``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FastImport, count_objects, git, median, ratio, rounded
from builder.builds.run.clone import clone_commit

NAME = "clone"
FULL = {"commits": 20_000, "runs": 5}
QUICK = {"commits": 5_000, "runs": 2}


def make_history(path: Path, commits: int, files: int = 400) -> str:
    """A repository of ``commits`` commits over ``files`` files in 20 directories; returns the tip."""
    stream = FastImport()
    names = [f"src/pkg{i % 20:02d}/module{i:04d}.py" for i in range(files)]
    initial = {name: (f"# {name}\n" + "VALUE = 0\n" * 20).encode() for name in names}
    initial["Dockerfile"] = b"FROM scratch\nCOPY src /src\n"
    initial["README.md"] = b"# a long history\n"
    parent = stream.commit("refs/heads/main", "initial commit", initial)
    for number in range(1, commits):
        changed = {}
        for offset in range(1 + number % 3):  # 1-3 files per commit, each with its own new content
            name = names[(number * 7 + offset * 13) % files]
            changed[name] = (f"# {name}\n" + f"VALUE = {number}\n" * 20 + f"# commit {number}\n").encode()
        parent = stream.commit("refs/heads/main", f"change {number}\n\nTouches {len(changed)} file(s).",
                               changed, parent=parent)
    marks = stream.run(path, bare=True)
    git(path, "repack", "-a", "-d", "-q")
    return marks[parent]


def run(quick: bool = False, workdir: Path | None = None, commits: int | None = None,
        runs: int | None = None) -> dict[str, Any]:
    params = dict(QUICK if quick else FULL)
    params.update({k: v for k, v in (("commits", commits), ("runs", runs)) if v is not None})
    with tempfile.TemporaryDirectory(prefix="bench-clone-", dir=workdir) as tmp:
        root = Path(tmp)
        origin = root / "origin.git"
        started = time.perf_counter()
        tip = make_history(origin, params["commits"])
        create_s = time.perf_counter() - started
        url = f"file://{origin}"
        origin_objects = count_objects(origin)

        def buildhook(dest: Path) -> float:
            lines: list[str] = []
            begin = time.perf_counter()
            clone_commit(url, tip, "refs/heads/main", dest, lines.append)
            return time.perf_counter() - begin

        def baseline(dest: Path) -> float:
            begin = time.perf_counter()
            subprocess.run(["git", "clone", "--no-local", "--quiet", url, str(dest)], check=True,
                           capture_output=True)
            return time.perf_counter() - begin

        times: dict[str, list[float]] = {"buildhook": [], "baseline": []}
        objects: dict[str, dict[str, int]] = {}
        for index in range(params["runs"]):
            order = [("buildhook", buildhook), ("baseline", baseline)]
            if index % 2:
                order.reverse()
            for label, fn in order:
                dest = root / f"{label}-{index}"
                times[label].append(fn(dest))
                if label not in objects:
                    objects[label] = count_objects(dest)
                    if label == "buildhook":
                        objects[label]["commits"] = int(git(dest, "rev-list", "--count", "HEAD"))
                        assert git(dest, "rev-parse", "HEAD") == tip, "buildhook checked out the wrong commit"
                    else:
                        objects[label]["commits"] = int(git(dest, "rev-list", "--count", "HEAD"))
                shutil.rmtree(dest)

    result: dict[str, Any] = {
        "name": NAME,
        "params": params,
        "repository": {**origin_objects, "commits": params["commits"], "create_s": rounded(create_s, 2),
                       "transport": "file:// (git upload-pack), git clone --no-local"},
    }
    for label in ("buildhook", "baseline"):
        result[label] = {"median_s": rounded(median(times[label])),
                         "runs_s": [rounded(t) for t in times[label]], **objects[label]}
    result["buildhook"]["what"] = "builder.builds.run.clone.clone_commit (fetch --depth=1 <sha> + checkout)"
    result["baseline"]["what"] = "git clone --no-local (full history + checkout)"
    result["ratio"] = ratio(result["buildhook"]["median_s"], result["baseline"]["median_s"])
    result["speedup"] = ratio(result["baseline"]["median_s"], result["buildhook"]["median_s"])
    met = result["ratio"] < 1
    result["summary"] = {
        "measured": f"{result['buildhook']['median_s']:.3f} s, {result['buildhook']['objects']} objects",
        "baseline": f"{result['baseline']['median_s']:.3f} s, {result['baseline']['objects']} objects",
        "ratio": result["ratio"],
        "target": "faster than a full clone (no numeric target)",
        "met": met,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--commits", type=int)
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, commits=args.commits, runs=args.runs), indent=2))


if __name__ == "__main__":
    main()
