"""Pruning what is older than ``BUILDHOOK_KEEP_DAYS``: build logs, inbound and outbound deliveries.

Periodic work of the workers (``workers/tasks.py``). A build's row stays (the history and the
metrics' sources are not rewritten); only its log lines go, once it finished that long ago. Inbound
deliveries go with their builds' link to them (``builds.delivery_id`` becomes NULL by the foreign
key); outbound deliveries that are no longer pending go with their attempts. They go ``BATCH`` rows
at a time, a transaction each (so writers wait for no long transaction), until none is left or
``MAX_BATCHES`` of a kind went in one pass (the next pass goes on); each batch records how many
(``RetentionDeletion``, kinds ``build_logs``, ``deliveries``, ``outbound_deliveries``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from builder.db.engine import write_lock
from builder.db.models import Build, BuildLogLine, Delivery, OutboundDelivery, RetentionDeletion, utcnow

BATCH = 5000
MAX_BATCHES = 200  # a million rows of a kind per pass at most: a pass over a long history ends


def prune_old(sessions: sessionmaker[Session], keep_days: int, now: datetime | None = None,
              batch: int = BATCH) -> list[RetentionDeletion]:
    """Delete what is older than ``keep_days`` days (0: nothing); return the records made."""
    if keep_days <= 0:
        return []
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    old_logs = select(BuildLogLine.id).join(Build, Build.id == BuildLogLine.build_id).where(
        Build.finished_at < cutoff).limit(batch)
    old_inbound = select(Delivery.id).where(Delivery.received_at < cutoff).limit(batch)
    old_outbound = select(OutboundDelivery.id).where(OutboundDelivery.created_at < cutoff,
                                                     OutboundDelivery.state != "pending").limit(batch)
    records = []
    for kind, model, ids, detail in (
        ("build_logs", BuildLogLine, old_logs, "log lines of builds finished"),
        ("deliveries", Delivery, old_inbound, "inbound webhook deliveries received"),
        ("outbound_deliveries", OutboundDelivery, old_outbound, "outbound webhook deliveries (sent or given up) made"),
    ):
        for _ in range(MAX_BATCHES):
            with sessions() as session, write_lock(session):
                found = list(session.scalars(ids))
                if not found:
                    break
                session.execute(delete(model).where(model.id.in_(found)).execution_options(synchronize_session=False))
                record = RetentionDeletion(
                    kind=kind, count=len(found), outcome="deleted",
                    detail=f"{detail} before {cutoff.isoformat()} (BUILDHOOK_KEEP_DAYS={keep_days})")
                session.add(record)
                session.commit()
                records.append(record)
            if len(found) < batch:
                break
    return records
