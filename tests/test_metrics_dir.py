"""Process groups' metrics directories (buildhook/metrics_dir.py), as GET /metrics merges them.

Each "worker" here is a real process that sets up its group's directory as ``buildhook worker`` does,
counts one succeeded build of trigger 7 and runs until the test lets it go. The containers of
``docker compose up --scale worker=2`` share the host name ``buildhook-worker`` and each has a pid
namespace of its own: the same pid (1), and the other's pid is no process it can see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from buildhook.metrics_dir import ENV, OWNER_LOCK, metrics_root
from webhooks import create_app

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-dir-token-" + "x" * 20
UNSEEN_PID = 4_206_649  # above Linux's largest pid_max: no process here has it

WORKER = """
import os, socket, sys
from pathlib import Path

socket.gethostname = lambda: "buildhook-worker"  # docker-compose.yml's hostname: for every container
pid = sys.argv[2]
real_getpid = os.getpid
if pid != "own":
    os.getpid = lambda: int(pid)  # the pid it has in its own pid namespace
from buildhook.metrics_dir import use_metrics_dir
print(use_metrics_dir(Path(sys.argv[1]), "worker"), flush=True)
os.getpid = real_getpid
from builder.metrics import BUILDS
BUILDS.labels(state="succeeded", trigger="7").inc()
print("counted", flush=True)
sys.stdin.read()  # runs until the test closes its stdin
"""


@contextmanager
def worker(data_dir: Path, pid: int | str = "own") -> Iterator[Path]:
    """A worker group's process that counted one build; yields its metrics directory."""
    env = {name: value for name, value in os.environ.items() if name != ENV}
    process = subprocess.Popen([sys.executable, "-c", WORKER, str(data_dir), str(pid)], cwd=ROOT, env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdin is not None
        directory = Path(process.stdout.readline().strip())
        assert process.stdout.readline().strip() == "counted", "the worker process failed"
        yield directory
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(20)


def scrape(settings, data_dir: Path, monkeypatch) -> dict[tuple[str, tuple], float]:
    """GET /metrics of a web app in multiprocess mode sharing ``data_dir``, as Prometheus reads it."""
    web_dir = metrics_root(data_dir) / "web-scraper"
    web_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv(ENV, str(web_dir))
    client = create_app(settings.with_(data_dir=data_dir, metrics_token=TOKEN)).test_client()
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for sample in family.samples}


def builds_of_trigger_7(samples) -> float:
    return samples.get(("buildhook_builds_total", (("state", "succeeded"), ("trigger", "7"))), 0.0)


def test_two_workers_of_one_host_name_and_pid_each_keep_their_counts(settings, tmp_path, monkeypatch):
    with worker(tmp_path, pid=1) as first, worker(tmp_path, pid=1) as second:
        samples = scrape(settings, tmp_path, monkeypatch)
        assert builds_of_trigger_7(samples) == 2
        assert first != second and first.is_dir() and second.is_dir()
    # the worker processes' series of known labels are there at 0 before any count
    assert samples[("buildhook_webhook_deliveries_total", (("outcome", "ping"), ("provider", "gitea")))] == 0


def test_a_live_worker_whose_pid_is_unseen_here_keeps_its_counts(settings, tmp_path, monkeypatch):
    with worker(tmp_path, pid=UNSEEN_PID) as first, worker(tmp_path) as second:
        assert builds_of_trigger_7(scrape(settings, tmp_path, monkeypatch)) == 2
        assert first.is_dir() and second.is_dir()


def test_only_the_directories_of_gone_processes_of_this_host_name_are_removed(settings, tmp_path, monkeypatch):
    with worker(tmp_path, pid=1) as gone:
        pass
    elsewhere = metrics_root(tmp_path) / "worker-elsewhere-1-0badcafe"  # another machine's: never asked
    elsewhere.mkdir()
    (elsewhere / OWNER_LOCK).write_text("elsewhere 1\n")
    with worker(tmp_path, pid=1) as live:
        assert not gone.exists() and live.is_dir() and elsewhere.is_dir()
        assert builds_of_trigger_7(scrape(settings, tmp_path, monkeypatch)) == 1


def test_an_earlier_buildhook_s_directory_goes_once_its_pid_runs_no_more(settings, tmp_path, monkeypatch):
    root = metrics_root(tmp_path)
    dead = root / f"worker-buildhook-worker-{UNSEEN_PID}"  # <group>-<host>-<pid>, without owner.lock
    alive = root / f"worker-buildhook-worker-{os.getpid()}"
    dead.mkdir(parents=True)
    alive.mkdir()
    with worker(tmp_path) as live:
        assert not dead.exists() and alive.is_dir() and live.is_dir()
