"""The database briefly unavailable: webhooks get 503 (the Git host retries), never a lost event.

Real components: a locked SQLite file (another connection holds ``BEGIN EXCLUSIVE``, or
another process the write lock file that buildhook's writers queue on), and
with ``BUILDHOOK_TEST_POSTGRES=1`` the suite's PostgreSQL behind a TCP proxy that is cut
and restored. Any other database error (a missing table, bad SQL) stays a 500, logged as a bug.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import select
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import func, select as sa_select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from builder.db.engine import database_unavailable, make_engine, migrate
from builder.db.models import Build, Delivery
from builder.secrets import SecretBox
from builder.triggers.services import TriggerSpec, create_trigger
from buildhook.redis_server import RedisServer
from tests.payloads import github_headers, github_push
from webhooks import create_app

SECRET = "db-down-secret"


def add_trigger(app, settings, repository: str) -> int:
    with app.extensions["buildhook"].sessions() as session:
        trigger = create_trigger(session, SecretBox(settings.secret_key), TriggerSpec(
            provider="github", repository=repository, clone_url="file:///nonexistent/repo.git", secret=SECRET,
            image=repository), settings.registry, allow_file_clones=True)
        session.commit()
        return trigger.id


def signed_delivery(repository: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(github_push("push_branch", repository=repository, ref="refs/heads/main",
                                  sha=uuid.uuid4().hex + "abcd1234", clone_url="file:///x")).encode()
    return body, github_headers(body, SECRET)


def queued_build_ids(redis_url: str) -> list[int]:
    """The build ids of the run_build messages waiting in Redis."""
    ids = []
    for message in redis.Redis.from_url(redis_url).lrange("celery", 0, -1):
        envelope = json.loads(message)
        if envelope["headers"]["task"] == "buildhook.run_build":
            args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            ids.extend(args)
    return ids


def recorded(app, trigger_id: int, delivery_id: str) -> tuple[list[Build], int]:
    with app.extensions["buildhook"].sessions() as session:
        builds = list(session.scalars(sa_select(Build).where(Build.trigger_id == trigger_id)))
        accepted = session.scalar(sa_select(func.count()).select_from(Delivery).where(
            Delivery.delivery_id == delivery_id, Delivery.outcome == "accepted"))
    return builds, accepted


def wait_dispatched(app, build_id: int, timeout: float = 5.0) -> Build:
    deadline = time.monotonic() + timeout
    while True:
        with app.extensions["buildhook"].sessions() as session:
            build = session.get(Build, build_id)
        if build.dispatched_at is not None or time.monotonic() > deadline:
            return build
        time.sleep(0.05)


def assert_503(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json == {"error": "database unavailable, retry later", "status": 503}
    assert response.headers["Retry-After"]


@pytest.fixture
def private_redis(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server


@contextmanager
def sqlite_locked(path: Path, how: str) -> Iterator[None]:
    """The database at ``path`` locked for writing: by an SQLite transaction, or by another
    buildhook process holding the write lock file (``flock``) the writers queue on."""
    if how == "sqlite transaction":
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:
        fd = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: conflicts as another process's would
        try:
            yield
        finally:
            os.close(fd)


@pytest.mark.parametrize("how", ["sqlite transaction", "write lock file"])
def test_locked_sqlite_gets_503_then_the_retried_delivery_is_built_once(settings, tmp_path, private_redis, how):
    path = tmp_path / "locked.db"
    migrate(f"sqlite:///{path}")
    # a short busy timeout (the URL's ?timeout=, in seconds), so the locked write fails fast
    app = create_app(settings.with_(database_url=f"sqlite:///{path}?timeout=0.3", broker_url=private_redis.url))
    trigger_id = add_trigger(app, settings, "acme/locked")
    client = app.test_client()
    body, headers = signed_delivery("acme/locked")

    with sqlite_locked(path, how):
        started = time.monotonic()
        assert_503(client.post("/hooks/github", data=body, headers=headers))
        assert time.monotonic() - started < 5
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT COUNT(*) FROM builds").fetchone() == (0,)
    assert reader.execute("SELECT COUNT(*) FROM deliveries WHERE outcome = 'accepted'").fetchone() == (0,)
    reader.close()

    # the host sends the same delivery again: accepted, stored, handed to the broker once
    retried = client.post("/hooks/github", data=body, headers=headers)
    assert retried.status_code == 202, retried.json
    assert retried.json["outcome"] == "accepted"
    [build_id] = retried.json["builds"]
    again = client.post("/hooks/github", data=body, headers=headers)
    assert (again.status_code, again.json["outcome"], again.json["builds"]) == (202, "duplicate", [])

    builds, accepted = recorded(app, trigger_id, headers["X-GitHub-Delivery"])
    assert [b.id for b in builds] == [build_id] and accepted == 1
    # marked dispatched only once sent (from the dispatcher's thread, after the answer)
    assert wait_dispatched(app, build_id).dispatched_at is not None
    assert queued_build_ids(private_redis.url) == [build_id]
    app.extensions["buildhook"].engine.dispose()


def test_a_database_error_that_is_a_bug_stays_500(settings, tmp_path, private_redis, caplog):
    # a database without the schema: "no such table" is a bug (or a missing migration), not an outage
    app = create_app(settings.with_(database_url=f"sqlite:///{tmp_path / 'empty.db'}", broker_url=private_redis.url))
    body, headers = signed_delivery("acme/no-schema")
    with caplog.at_level(logging.ERROR):
        response = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert response.status_code == 500
    assert response.json["status"] == 500
    assert any("no such table" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    app.extensions["buildhook"].engine.dispose()


def wrapped(orig: Exception, kind=OperationalError) -> Exception:
    return kind("SELECT 1", {}, orig)


def sqlite_error(sql: str) -> sqlite3.Error:
    """A real error from SQLite (with its result code), raised by running ``sql``."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute(sql)
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError(f"{sql!r} did not fail")


def test_only_availability_errors_count_as_database_unavailable(tmp_path):
    # SQLite: locked is unavailable; bad SQL and missing tables are bugs
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(path, timeout=0.01)
    with pytest.raises(sqlite3.OperationalError) as locked:
        waiter.execute("INSERT INTO t VALUES (1)")
    holder.execute("ROLLBACK")
    holder.close()
    waiter.close()
    assert str(locked.value) == "database is locked"
    assert database_unavailable(wrapped(locked.value))
    assert not database_unavailable(wrapped(sqlite_error("SELEC nonsense")))
    assert not database_unavailable(wrapped(sqlite_error("SELECT * FROM no_such_table")))
    assert not database_unavailable(wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), IntegrityError))
    # PostgreSQL (psycopg): SQLSTATEs of outages versus of bugs; no SQLSTATE: the connection failed
    for state in ("57P01", "57P03", "53300", "08006", "40P01"):
        assert database_unavailable(wrapped(psycopg.errors.lookup(state)("down"))), state
    assert database_unavailable(wrapped(psycopg.OperationalError("connection failed: Connection refused")))
    assert not database_unavailable(wrapped(psycopg.errors.lookup("42P01")("no table"), ProgrammingError))
    assert not database_unavailable(wrapped(psycopg.errors.lookup("42601")("syntax"), ProgrammingError))
    assert not database_unavailable(wrapped(psycopg.errors.lookup("57014")("statement timeout")))
    # an invalidated connection is unavailable whatever the driver said
    lost = wrapped(Exception("gone"))
    lost.connection_invalidated = True
    assert database_unavailable(lost)
    assert not database_unavailable(ValueError("not a database error"))


def test_busy_timeout_comes_from_the_url(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}?timeout=0.25")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
    engine.dispose()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


# --- PostgreSQL behind a TCP proxy that can be cut -------------------------------------------


class CuttableProxy:
    """Forwards 127.0.0.1:port to a server; ``cut()`` closes the port and every open connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with self._lock:
                    self._sockets.discard(sock)
                try:
                    sock.close()
                except OSError:
                    pass


def test_postgres_unreachable_gets_503_then_202(settings, database_url, private_redis):
    if not (database_url or "").startswith("postgresql"):
        pytest.skip("PostgreSQL is not in use (BUILDHOOK_TEST_POSTGRES=1)")
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        app = create_app(settings.with_(database_url=proxied, broker_url=private_redis.url))
        repository = f"acme/pg-down-{uuid.uuid4().hex[:8]}"
        trigger_id = add_trigger(app, settings, repository)
        client = app.test_client()
        warm_body, warm_headers = signed_delivery(repository)
        assert client.post("/hooks/github", data=warm_body, headers=warm_headers).status_code == 202

        proxy.cut()  # pooled connections are reset, new ones refused
        body, headers = signed_delivery(repository)
        assert_503(client.post("/hooks/github", data=body, headers=headers))
        assert_503(client.post("/hooks/github", data=body, headers=headers))

        proxy.restore()
        retried = client.post("/hooks/github", data=body, headers=headers)
        assert (retried.status_code, retried.json["outcome"]) == (202, "accepted"), retried.json
        [build_id] = retried.json["builds"]
        builds, accepted = recorded(app, trigger_id, headers["X-GitHub-Delivery"])
        assert accepted == 1 and [b.id for b in builds if b.delivery_id == retried.json["delivery"]] == [build_id]
        assert wait_dispatched(app, build_id).dispatched_at is not None
        assert queued_build_ids(private_redis.url).count(build_id) == 1
        app.extensions["buildhook"].engine.dispose()
    finally:
        proxy.cut()
