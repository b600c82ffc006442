"""Helpers every benchmark shares: statistics, loopback HTTP, git repositories, signed payloads.

Nothing here starts a service (that is ``bench/services.py``). Everything talks to
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # the tests' payload files (tests/fixtures/README.md)
BUSYBOX = Path("/bin/busybox")
LOOPBACK = "127.0.0.1"


# --- statistics ------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * p / 100.0
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits) if not math.isnan(value) else value


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return round(numerator / denominator, 3)


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of ``latencies`` (seconds), in milliseconds."""
    return {
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies)) if latencies else math.nan,
        "mean_ms": ms(statistics.fmean(latencies)) if latencies else math.nan,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; a bounded loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- HTTP on loopback ------------------------------------------------------------------


@dataclass(frozen=True)
class Web:
    """A server on 127.0.0.1:``port``; every call opens a new connection (as Git hosts do)."""

    port: int
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (e.g. an API token)

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={**dict(self.headers), **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str, timeout: float = 30) -> Any:
        status, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:300]!r}")
        return json.loads(data)

    def with_headers(self, headers: dict[str, str]) -> Web:
        return Web(self.port, tuple(headers.items()))


@dataclass
class Sample:
    index: int
    scheduled: float  # perf_counter time the request was due
    started: float
    ended: float
    status: int | str  # HTTP status, or the exception's name

    @property
    def latency(self) -> float:
        """From the scheduled send time (so a late send counts against the server)."""
        return self.ended - self.scheduled

    @property
    def service_time(self) -> float:
        return self.ended - self.started


def raw_request(method: str, path: str, port: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """One HTTP/1.1 request as bytes, ``Connection: close``: what a Git host sends for a delivery."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Connection: close",
             f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def open_loop(port: int, requests: Sequence[bytes], rate: float, timeout: float = 120) -> tuple[list[Sample], float]:
    """Send ``requests[i]`` (raw bytes, see ``raw_request``) at ``t0 + i / rate``, each on a new
    connection to ``port``, whatever the answers do (open loop).

    One thread runs an asyncio loop: a request goes out at its time however many are still
    waiting for their answers, and its latency counts from the time it was due (a late send
    counts against the server). A load generator of one thread leaves the cores to the server
    (the thread pool this replaced used a fifth of a core at 200 req/s and sent late under
    load). Returns the samples and the wall time from t0 to the last answer.
    """
    return asyncio.run(_open_loop(port, requests, rate, timeout))


class _Exchange(asyncio.Protocol):
    """One request on its own connection: written once connected, answered when the server closes."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self._request = request
        self._answer = bytearray()
        self._done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._answer += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            if exc is None:
                self._done.set_result(bytes(self._answer))
            else:
                self._done.set_exception(exc)


async def _open_loop(port: int, requests: Sequence[bytes], rate: float,
                     timeout: float) -> tuple[list[Sample], float]:
    loop = asyncio.get_running_loop()
    samples: list[Sample | None] = [None] * len(requests)

    async def send(index: int, due: float) -> None:
        started = time.perf_counter()
        done: asyncio.Future[bytes] = loop.create_future()
        try:
            await loop.create_connection(lambda: _Exchange(requests[index], done), LOOPBACK, port)
            answer = await done  # Connection: close, so the answer ends when the server closes
            status: int | str = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else "BadAnswer"
        except Exception as exc:  # recorded, never raised: the run goes on
            status = type(exc).__name__
        samples[index] = Sample(index, due, started, time.perf_counter(), status)

    t0 = time.perf_counter() + 0.2
    tasks = []
    for index in range(len(requests)):
        due = t0 + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(send(index, due)))
    _finished, late = await asyncio.wait(tasks, timeout=max(0.0, t0 + len(requests) / rate + timeout - time.perf_counter()))
    for task in late:  # no answer in time: counted as such, not waited for
        task.cancel()
    done = [s for s in samples if s is not None]
    done += [Sample(i, t0 + i / rate, t0 + i / rate, math.inf, "TimeoutError")
             for i, s in enumerate(samples) if s is None]
    wall = (max(s.ended for s in done if s.ended != math.inf) - t0) if done else math.nan
    return done, wall


def saturating_loop(port: int, requests: Sequence[bytes], concurrency: int,
                    timeout: float = 120) -> tuple[list[Sample], float]:
    """Send ``requests`` (raw bytes, see ``raw_request``) from one asyncio thread, keeping
    ``concurrency`` of them in flight: each answer sends the next, on a new connection. The
    server is never idle for want of work, so completed / wall is its throughput. Returns the
    samples (latency from the send) and the wall time from the first send to the last answer.
    """
    return asyncio.run(_saturating_loop(port, requests, concurrency, timeout))


async def _saturating_loop(port: int, requests: Sequence[bytes], concurrency: int,
                           timeout: float) -> tuple[list[Sample], float]:
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    position = iter(range(len(requests)))

    async def sender() -> None:
        for index in position:  # one shared iterator: each request is sent once
            started = time.perf_counter()
            done: asyncio.Future[bytes] = loop.create_future()
            try:
                await loop.create_connection(lambda: _Exchange(requests[index], done), LOOPBACK, port)
                answer = await asyncio.wait_for(done, timeout)
                status: int | str = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else "BadAnswer"
            except Exception as exc:  # recorded, never raised: the run goes on
                status = type(exc).__name__
            samples.append(Sample(index, started, started, time.perf_counter(), status))

    t0 = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return samples, time.perf_counter() - t0


def closed_loop(send: Callable[[int], int], count: int, threads: int) -> tuple[list[Sample], float]:
    """Send ``count`` requests as fast as ``threads`` workers can (each waits for its answer)."""
    lock = threading.Lock()
    position = [0]
    samples: list[Sample | None] = [None] * count
    t0 = time.perf_counter()

    def worker() -> None:
        while True:
            with lock:
                index = position[0]
                position[0] += 1
            if index >= count:
                return
            started = time.perf_counter()
            try:
                status: int | str = send(index)
            except Exception as exc:
                status = type(exc).__name__
            samples[index] = Sample(index, started, started, time.perf_counter(), status)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    limit = time.monotonic() + 60 + count * 0.5
    for thread in pool:
        thread.join(max(0.0, limit - time.monotonic()))
    done = [s for s in samples if s is not None]
    wall = (max(s.ended for s in done) - t0) if done else math.nan
    return done, wall


def status_counts(samples: Iterable[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        counts[str(sample.status)] = counts.get(str(sample.status), 0) + 1
    return dict(sorted(counts.items()))


# --- GitHub push deliveries --------------------------------------------------------------


def github_push_payload(repository: str, clone_url: str, ref: str, sha: str,
                        message: str | None = None, before: str | None = None) -> dict[str, Any]:
    """The real ``github/push_branch.json`` fixture, pointed at ``repository`` and commit ``sha``
    (pushed on top of ``before``, else of the fixture's own ``before``)."""
    payload = json.loads((FIXTURES / "github" / "push_branch.json").read_text())
    payload["ref"] = ref
    payload["after"] = sha
    payload["before"] = before or payload["before"]
    payload["repository"]["full_name"] = repository
    payload["repository"]["name"] = repository.split("/", 1)[1]
    payload["repository"]["clone_url"] = clone_url
    if payload.get("head_commit"):
        payload["head_commit"]["id"] = sha
        if message is not None:
            payload["head_commit"]["message"] = message
    return payload


def github_delivery(body: bytes, secret: str, delivery: str | None = None) -> dict[str, str]:
    """The headers GitHub sends: event, a unique delivery id, hook id, HMAC-SHA256 signature."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "6006",
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def signed_push(repository: str, clone_url: str, ref: str, sha: str, secret: str,
                message: str | None = None, before: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(github_push_payload(repository, clone_url, ref, sha, message, before)).encode()
    return body, github_delivery(body, secret)


def random_sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


# --- git ------------------------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench Mark", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench Mark", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, input=input,
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result.stdout.decode().strip()


class FastImport:
    """Builds a ``git fast-import`` stream: thousands of commits in a second or two."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._mark = 0
        self._time = 1_700_000_000

    def _next(self) -> int:
        self._mark += 1
        return self._mark

    @staticmethod
    def _data(content: bytes) -> bytes:
        return b"data %d\n" % len(content) + content + b"\n"

    def blob(self, content: bytes) -> int:
        mark = self._next()
        self._parts.append(b"blob\nmark :%d\n" % mark + self._data(content))
        return mark

    def commit(self, ref: str, message: str, files: dict[str, bytes | int], parent: int | None = None,
               executable: Iterable[str] = ()) -> int:
        """A commit on ``ref`` changing ``files`` (content, or a blob mark); returns its mark."""
        mark = self._next()
        self._time += 60
        lines = [b"commit %s\nmark :%d\n" % (ref.encode(), mark),
                 b"committer Bench Mark <bench@example.com> %d +0000\n" % self._time,
                 self._data(message.encode())]
        if parent is not None:
            lines.append(b"from :%d\n" % parent)
        executables = set(executable)
        for path, content in files.items():
            mode = b"100755" if path in executables else b"100644"
            if isinstance(content, int):
                lines.append(b"M %s :%d %s\n" % (mode, content, path.encode()))
            else:
                lines.append(b"M %s inline %s\n" % (mode, path.encode()) + self._data(content))
        self._parts.append(b"".join(lines) + b"\n")
        return mark

    def run(self, repo: Path, bare: bool = False) -> dict[int, str]:
        """Create the repository at ``repo`` (branch main) from the stream; returns mark -> sha."""
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", *(["--bare"] if bare else []), "-b", "main")
        marks = repo / ("marks" if bare else ".git/marks")
        git(repo, "fast-import", "--quiet", f"--export-marks={marks}", input=b"".join(self._parts) + b"done\n")
        if not bare:
            git(repo, "checkout", "-q", "-f", "main")
        result = {}
        for line in marks.read_text().splitlines():
            mark, sha = line.split()
            result[int(mark[1:])] = sha
        marks.unlink()
        return result


def busybox_bytes() -> bytes:
    if not BUSYBOX.exists():
        raise RuntimeError("the static busybox is missing (apt-get install busybox-static)")
    return BUSYBOX.read_bytes()


def busybox_dockerfile(marker: str, extra: str = "") -> str:
    """FROM scratch + the static busybox; ``marker`` makes the last step unique (never cached)."""
    return (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        f"RUN echo 'built {marker}' > /built.txt\n"
        f"{extra}"
    )


class BusyboxRepo:
    """A working repository whose commits are FROM scratch + busybox images."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        shutil.copy(BUSYBOX, path / "busybox")  # keeps the executable bit

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


def count_objects(repo: Path) -> dict[str, int]:
    """Objects and their size on disk in a repository (loose + packed)."""
    values = {}
    for line in git(repo, "count-objects", "-v").splitlines():
        key, _, value = line.partition(":")
        values[key.strip()] = int(value.strip())
    return {
        "objects": values.get("count", 0) + values.get("in-pack", 0),
        "kib_on_disk": values.get("size", 0) + values.get("size-pack", 0),
    }


# --- what else ran on the machine -----------------------------------------------------------

_DOCKER = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy")


def _proc_stats() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, command name, utime + stime in clock ticks), from /proc."""
    stats: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                raw = handle.read().decode(errors="replace")
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), name, int(fields[11]) + int(fields[12]))
    return stats


class CpuMonitor:
    """CPU seconds used while a benchmark ran: by its own process tree, the Docker Engine, and everything else.

    Samples /proc every ``interval`` seconds in a thread; a process first seen after
    the start counts from zero. Short-lived processes that come and go between two
    samples are missed, so the numbers are lower bounds. "others" is what other users
    of the machine (e.g. a test suite running at the same time) took from the same
    cores; the Docker Engine's share cannot be split between us and them.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._base: dict[int, int] = {}
        self._last: dict[int, tuple[str, int, str]] = {}  # pid -> (name, ticks, owner)
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._started = 0.0
        self._elapsed = 0.0

    def _owner(self, pid: int, stats: dict[int, tuple[int, str, int]], me: int) -> str:
        seen = pid
        for _ in range(64):
            if seen == me:
                return "ours"
            if seen not in stats or seen <= 1:
                break
            seen = stats[seen][0]
        return "docker" if stats.get(pid, (0, "", 0))[1] in _DOCKER else "others"

    def _sample(self, first: bool = False) -> None:
        stats = _proc_stats()
        me = os.getpid()
        for pid, (_ppid, name, ticks) in stats.items():
            if first:
                self._base[pid] = ticks
            previous = self._last.get(pid)
            owner = previous[2] if previous and previous[2] == "ours" else self._owner(pid, stats, me)
            self._last[pid] = (name, ticks, owner)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuMonitor:
        self._started = time.perf_counter()
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()
        self._elapsed = time.perf_counter() - self._started

    def result(self) -> dict[str, Any]:
        used: dict[str, float] = {"ours": 0.0, "docker": 0.0, "others": 0.0}
        heaviest: dict[str, float] = {}
        for pid, (name, ticks, owner) in self._last.items():
            seconds = (ticks - self._base.get(pid, 0)) / self._ticks
            if seconds <= 0:
                continue
            used[owner] += seconds
            if owner == "others":
                heaviest[name] = heaviest.get(name, 0.0) + seconds
        cores = os.cpu_count() or 1
        top = sorted(heaviest.items(), key=lambda item: -item[1])[:4]
        return {
            "wall_s": round(self._elapsed, 1),
            "cpu_s_ours": round(used["ours"], 1),
            "cpu_s_docker_engine": round(used["docker"], 1),
            "cpu_s_others": round(used["others"], 1),
            "others_share_of_machine": round(used["others"] / (self._elapsed * cores), 3) if self._elapsed else 0.0,
            "others_heaviest": {name: round(seconds, 1) for name, seconds in top},
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }


def machine_busy(window: float = 3.0) -> float:
    """The fraction of all cores busy (not idle or iowait) over ``window`` seconds, from /proc/stat."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle

    total0, idle0 = read()
    time.sleep(window)
    total1, idle1 = read()
    total = total1 - total0
    return round(1 - (idle1 - idle0) / total, 3) if total > 0 else 0.0


def wait_for_quiet(max_wait: float, threshold: float = 0.25, window: float = 3.0) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until the machine is less than ``threshold`` busy for two windows in a row.

    Called between benchmarks, when none of ours runs: what is busy then is someone else.
    """
    start = time.monotonic()
    calm = 0
    busy = machine_busy(window)
    while True:
        calm = calm + 1 if busy < threshold else 0
        if calm >= 2 or time.monotonic() - start >= max_wait:
            break
        busy = machine_busy(window)
    return {"waited_s": round(time.monotonic() - start, 1), "busy_before_start": busy, "quiet": calm >= 2}


def main_with_runs(run: Callable[..., dict[str, Any]], description: str) -> None:
    """A benchmark module's command line: ``--quick``, ``--runs N``; prints ``run``'s result as JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, runs=args.runs), indent=2))
