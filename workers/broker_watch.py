"""Noticing that the broker lost the messages it held, so the relay sends them again at once.

A Redis broker without persistence that restarts comes back empty (as does one that was
flushed, or a replica promoted before it had the data): every build handed to it and not yet
claimed is gone, and the relay would only send it again ``redispatch_after`` (10 minutes)
later. The watch keeps a key of its own in the broker's Redis database. A Redis that lost its
data lost that key too, so each relay pass sets it only where it is missing (``SET NX``): when
that pass creates it, the broker is new or lost what it had, and the builds it was handed are
sent again (``builder.builds.outbox.forget_dispatches``). Only the relay whose ``SET`` created the key
does it, however many workers there are. A broker that was merely unreachable and kept its
data still has the key: nothing is sent twice. The first pass against a new broker also finds
no key; the copies it sends then are harmless (a build is claimed once).

Only ``redis://`` and ``rediss://`` brokers are watched (the ones buildhook supports).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable

import redis

from builder.db.models import utcnow

log = logging.getLogger(__name__)

KEY = "buildhook:broker-memory"


class BrokerWatch:
    def __init__(self, broker_url: str | None) -> None:
        scheme = (broker_url or "").partition("://")[0]
        self._client = (redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=5)
                        if broker_url and scheme in ("redis", "rediss") else None)

    def after_loss(self, resend: Callable[[], object]) -> bool:
        """Call ``resend`` when the broker lost its messages since any relay last looked; True if it did.

        If ``resend`` fails (the database is away), the key is removed again, so the next pass
        tries once more. An unreachable broker is not a loss: it is looked at again next pass.
        """
        if self._client is None:
            return False
        try:
            created = self._client.set(KEY, f"{socket.gethostname()}:{os.getpid()} {utcnow().isoformat()}", nx=True)
        except redis.RedisError as exc:
            log.info("broker watch: the broker is not answering (%s)", exc)
            return False
        if not created:
            return False
        try:
            resend()
        except BaseException:
            self._forget()
            raise
        return True

    def _forget(self) -> None:
        try:
            self._client.delete(KEY)  # type: ignore[union-attr]
        except redis.RedisError as exc:
            log.warning("broker watch: could not remove %s (%s): a lost broker's builds wait for the relay's "
                        "redispatch", KEY, exc)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
