"""``GET /metrics``: the Prometheus text format, for an API token or ``BUILDHOOK_METRICS_TOKEN``.

In a multiprocess group (``buildhook web``, ``buildhook worker``: ``buildhook/metrics_dir.py``) the
answer merges the metric files of every group sharing the data directory, so the web app's scrape
includes what the workers counted; in a single process (tests, ``flask run``) it is that process's
own registry. The queue depth is read from the database at each scrape, and each trigger's and deploy
environment's counters are made there at 0 (``builder.metrics.create_configured_series``).
"""

from __future__ import annotations

import glob
import hmac
import os

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from builder.accounts.users import find_token
from buildhook.metrics_dir import ENV, metrics_dirs
from builder.metrics import QueueDepth, create_configured_series
from webhooks.context import db, services

bp = Blueprint("metrics", __name__)


class MergedGroups:
    """Every group's metric files, merged as one multiprocess collector merges one directory's."""

    def __init__(self, directories: list) -> None:  # type: ignore[type-arg]
        self._directories = directories

    def collect(self):  # type: ignore[no-untyped-def]
        files = [name for directory in self._directories for name in glob.glob(os.path.join(directory, "*.db"))]
        return MultiProcessCollector.merge(files, accumulate=True)


def _allowed() -> bool:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return False
    token = header[7:].strip()
    expected = services().settings.metrics_token
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return True
    return find_token(db(), token) is not None


@bp.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    if not _allowed():
        return jsonify({"error": "send Authorization: Bearer TOKEN (an API token or BUILDHOOK_METRICS_TOKEN)",
                        "status": 401}), 401, {"WWW-Authenticate": 'Bearer realm="buildhook metrics"'}
    ctx = services()
    create_configured_series(ctx.sessions)
    queue = CollectorRegistry()
    queue.register(QueueDepth(ctx.sessions))
    if os.environ.get(ENV):
        merged = CollectorRegistry()
        merged.register(MergedGroups(metrics_dirs(ctx.settings.data_dir)))
        body = generate_latest(merged)
    else:
        body = generate_latest(REGISTRY)
    return Response(body + generate_latest(queue), content_type=CONTENT_TYPE_LATEST)
