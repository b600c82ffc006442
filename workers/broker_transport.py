"""The Redis broker transport, with one client per channel for publishing.

kombu's Redis channel builds a new ``redis.Redis`` client for every message it sends
(``Channel.conn_or_acquire``); constructing one copies redis-py's table of response
callbacks, which cost more CPU than the LPUSH itself and made the Celery publish the
largest part of a webhook delivery. A ``redis.Redis`` client is thread-safe and holds
no connection of its own (it borrows one from the channel's pool per command), so
one client serves every synchronous command of a channel. Everything else is kombu's.

Used for ``redis://`` brokers (``celery_config``). Other URLs keep the transport their
scheme names: ``rediss://`` too, since kombu turns TLS on only when the transport is
named ``rediss``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._sync_client is None:
            self._sync_client = self._create_client()
        yield self._sync_client

    def close(self) -> None:
        self._sync_client = None
        super().close()

    def _disconnect_pools(self) -> None:  # after a fork, or a failed ping: the next client gets the new pool
        self._sync_client = None
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel


# Registered under a name of its own, so that Celery's logs show the broker as
# ``redis+buildhook://host:port/db`` rather than this module's path.
TRANSPORT = "redis+buildhook"
TRANSPORT_ALIASES.setdefault(TRANSPORT, f"{__name__}:Transport")
REDIS_SCHEMES = ("redis",)
