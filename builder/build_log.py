"""Stream a build's log into the database while it runs."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from builder.models import BuildLogLine

MAX_LINE = 4000


class BuildLog:
    """Buffers lines and writes them in small batches, so readers see them live."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: int,
        flush_every: float = 0.5,
        batch: int = 50,
        masked: tuple[str, ...] = (),
    ) -> None:
        self._sessions = sessions
        self._build_id = build_id
        self._flush_every = flush_every
        self._batch = batch
        self._masked = tuple(value for value in masked if value)
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        with sessions() as session:
            last = session.scalar(
                select(func.max(BuildLogLine.seq)).where(BuildLogLine.build_id == build_id)
            )
        self._seq = last or 0

    def __call__(self, line: str) -> None:
        for value in self._masked:
            line = line.replace(value, "****")
        self._buffer.append(line[:MAX_LINE])
        if len(self._buffer) >= self._batch or time.monotonic() - self._last_flush >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        with self._sessions() as session:
            for text in lines:
                self._seq += 1
                session.add(BuildLogLine(build_id=self._build_id, seq=self._seq, text=text))
            session.commit()
