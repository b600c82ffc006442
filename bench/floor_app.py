"""The floor of webhook intake: a bare Flask view that verifies GitHub's HMAC and inserts one SQLite row.

``bench/intake_floor.py`` runs it with the same gunicorn shape as ``buildhook web`` (gthread,
2 workers x 8 threads, access log on stdout) and compares their throughput. Nothing else: no
trigger lookup, no planning, no broker. The row is committed before the 202 (one transaction per
delivery, SQLite in WAL mode with its default ``synchronous=FULL``, as buildhook keeps), and the
delivery id is the table's primary key, so a replay is refused as buildhook's dedupe refuses it.

Configured by ``BENCH_FLOOR_DATABASE`` (a SQLite file whose table ``create_table`` made) and
``BENCH_FLOOR_SECRET``; ``gunicorn bench.floor_app:app``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading

from flask import Flask, request

app = Flask(__name__)
_local = threading.local()


def create_table(database: str) -> None:
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, event TEXT NOT NULL)")


def _connection() -> sqlite3.Connection:
    db = getattr(_local, "db", None)
    if db is None:  # one per thread; autocommit: each INSERT is its own transaction
        db = _local.db = sqlite3.connect(os.environ["BENCH_FLOOR_DATABASE"], timeout=30, isolation_level=None)
    return db


@app.post("/hooks/github")
def receive() -> tuple[str, int]:
    body = request.get_data()
    expected = "sha256=" + hmac.new(os.environb[b"BENCH_FLOOR_SECRET"], body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        return "bad signature", 401
    try:
        _connection().execute("INSERT INTO deliveries (delivery_id, event) VALUES (?, ?)",
                              (request.headers["X-GitHub-Delivery"], request.headers.get("X-GitHub-Event", "")))
    except sqlite3.IntegrityError:
        return "duplicate", 200
    return "", 202
