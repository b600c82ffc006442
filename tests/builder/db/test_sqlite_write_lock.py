"""The SQLite write lock queues writers across processes (flock), not only across threads."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy.orm import Session

from builder.db.engine import (SQLiteWriteLock, WriteLockTimeout, _FlockWaiter, database_unavailable, make_engine,
                               write_lock)

HOLDER = """
import sys, time
from builder.db.engine import SQLiteWriteLock
with SQLiteWriteLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def start_holder(database: str, seconds: float) -> subprocess.Popen[str]:
    """Another process that takes the lock, says "held" and keeps it ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_writer_in_another_process_waits_until_the_holder_releases(tmp_path):
    database = str(tmp_path / "buildhook.db")
    holder = start_holder(database, 1.0)
    try:
        started = time.monotonic()
        with SQLiteWriteLock(database):
            waited = time.monotonic() - started
        assert waited > 0.5, "the lock was taken while another process held it"
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.wait(10)


def test_a_holder_that_dies_releases_the_lock(tmp_path):
    database = str(tmp_path / "buildhook.db")
    holder = start_holder(database, 60)
    holder.kill()
    holder.wait(10)
    taken = threading.Event()

    def take() -> None:
        with SQLiteWriteLock(database):
            taken.set()

    threading.Thread(target=take, daemon=True).start()
    assert taken.wait(5), "the dead process's lock was not released"


def test_threads_of_one_process_take_turns(tmp_path):
    lock = SQLiteWriteLock(str(tmp_path / "buildhook.db"))
    inside, most = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        for _ in range(50):
            with lock:
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


def test_a_writer_gives_up_after_the_timeout_while_another_process_holds_the_lock(tmp_path):
    database = str(tmp_path / "buildhook.db")
    holder = start_holder(database, 10)
    try:
        started = time.monotonic()
        with pytest.raises(WriteLockTimeout, match="stayed locked for 0.3 s"):
            with SQLiteWriteLock(database, timeout=0.3):
                pass
        assert 0.25 < time.monotonic() - started < 3
        assert database_unavailable(WriteLockTimeout("x"))  # answered 503, as a locked database is
    finally:
        holder.kill()
        holder.wait(10)


def test_a_forked_child_waits_for_the_parents_hold_instead_of_sharing_it(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'buildhook.db'}?timeout=5")
    with Session(engine) as session:
        lock = write_lock(session)
        with lock:
            pid = os.fork()
            if pid == 0:  # the child: its copy of the held lock must not count as its own
                started = time.monotonic()
                try:
                    with lock:
                        code = 0 if time.monotonic() - started > 0.3 else 2  # 2: took it while the parent held it
                except BaseException:
                    code = 3  # never got it: the parent's hold was inherited as a stuck thread lock
                os._exit(code)
            time.sleep(0.6)
        _, status = os.waitpid(pid, 0)
    engine.dispose()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_writer_that_gave_up_does_not_keep_the_lock_once_the_holder_releases_it(tmp_path):
    """The wait that timed out goes on in the kernel; when it gets the lock it gives it back at once."""
    database = str(tmp_path / "buildhook.db")
    holder = start_holder(database, 0.8)
    lock = SQLiteWriteLock(database, timeout=0.2)
    try:
        with pytest.raises(WriteLockTimeout):
            with lock:
                pass
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.wait(10)
    other = subprocess.run([sys.executable, "-c", HOLDER, database, "0"], capture_output=True, text=True, timeout=10)
    assert other.stdout.split() == ["held", "released"]  # another process takes it: nobody kept it
    with lock:  # and so does the writer that gave up, on a new descriptor
        pass


def test_waits_for_another_process_reuse_one_waiting_thread_also_after_one_timed_out(tmp_path):
    """Each wait for a lock another process holds is done by the same kept thread, not a new one each
    time; after a wait that gave up, a new one (its descriptor is given up with it), kept again."""
    database = str(tmp_path / "buildhook.db")
    lock = SQLiteWriteLock(database, timeout=5)
    waiting: list[list[threading.Thread]] = [[], []]  # the threads seen waiting, before and after the timeout
    earlier = [t for t in threading.enumerate() if t.name == "sqlite-write-lock-wait"]  # other locks'

    def wait_while_held(seen: list[threading.Thread]) -> None:
        other = os.open(f"{database}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)  # another process's descriptor
        try:
            fcntl.flock(other, fcntl.LOCK_EX)
            taken = threading.Event()

            def take() -> None:
                with lock:
                    taken.set()

            threading.Thread(target=take, daemon=True).start()
            time.sleep(0.1)
            assert not taken.is_set(), "the lock was taken while another descriptor held it"
            seen.extend(t for t in threading.enumerate() if t.name == "sqlite-write-lock-wait" and t not in earlier
                        and t not in seen and all(t not in before for before in waiting))
            fcntl.flock(other, fcntl.LOCK_UN)
            assert taken.wait(5), "the waiter did not get the lock once it was released"
        finally:
            os.close(other)

    for _ in range(3):
        wait_while_held(waiting[0])
    holder = start_holder(database, 0.6)
    try:
        lock._timeout = 0.2  # one wait that gives up
        with pytest.raises(WriteLockTimeout):
            with lock:
                pass
    finally:
        holder.wait(10)
    lock._timeout = 5
    for _ in range(3):
        wait_while_held(waiting[1])
    assert [len(seen) for seen in waiting] == [1, 1], waiting


def test_a_waiting_thread_that_ended_idle_is_started_again_for_the_next_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(_FlockWaiter, "IDLE_SECONDS", 0.1)
    database = str(tmp_path / "buildhook.db")
    lock = SQLiteWriteLock(database, timeout=5)
    earlier = [t for t in threading.enumerate() if t.name == "sqlite-write-lock-wait"]  # other locks'
    for _ in range(2):
        holder = start_holder(database, 0.3)
        try:
            started = time.monotonic()
            with lock:
                assert time.monotonic() - started > 0.1, "the lock was taken while another process held it"
        finally:
            holder.wait(10)
        time.sleep(0.4)  # the waiting thread, idle, ends
        assert [t for t in threading.enumerate() if t.name == "sqlite-write-lock-wait" and t not in earlier] == []


def test_the_holding_thread_may_take_the_lock_again_and_others_wait_for_its_last_release(tmp_path):
    database = str(tmp_path / "buildhook.db")
    lock = SQLiteWriteLock(database)
    taken = threading.Event()

    def take() -> None:
        with lock:
            taken.set()

    with lock:
        with lock:  # a group commit holds it while it gathers a batch, then writes under it
            other = threading.Thread(target=take, daemon=True)
            other.start()
        assert not taken.wait(0.3), "another thread got the lock while its holder still held it"
        probe = subprocess.run([sys.executable, "-c", PROBE, database], capture_output=True, text=True, timeout=10)
        assert probe.stdout.strip() == "busy"  # the flock is held until the last release too
    assert taken.wait(5)
    other.join(5)


PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1] + ".write-lock", os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("busy")
"""
