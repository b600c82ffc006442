"""From an inbound webhook to recorded delivery and queued builds.

``receive_hook`` records every delivery, whatever its outcome, before the
caller answers. It does no git or Docker work: the builds it creates are
handed to the workers after the transaction commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from sqlalchemy.orm import Session, sessionmaker

from builder.intake.delivery_requests import Redelivery, request_row
from builder.errors import BadSignature, InputError, PayloadTooLarge
from builder.intake.events import Ignored
from builder.db.engine import engine_of
from builder.db.group_commit import Committer, DeliveryWrite, commit_alone
from builder.db.models import Delivery, DeliveryRequest, utcnow
from builder.intake.planning import Plan, plan_builds
from builder.forges.base import Forge
from builder.forges.request import HookInfo, clean_text
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers.lookup import HookTrigger, IntakeConfig, IntakeView, SubscriptionRow


@dataclass(frozen=True)
class HookResult:
    status: int
    outcome: str
    reason: str | None
    delivery: int
    build_ids: list[int] = field(default_factory=list)
    # The builds whose "queued" state someone listens for (a commit status or a subscription).
    announce: list[int] = field(default_factory=list)
    # Builds this delivery superseded (queued ones of older commits, or its own of an older one), by trigger.
    superseded: dict[int, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "delivery": self.delivery,
            "builds": self.build_ids,
        }


class HookRejected(InputError):
    """An ``InputError`` that was recorded as delivery ``delivery``."""

    def __init__(self, error: InputError, delivery: int) -> None:
        super().__init__(str(error), error.status)
        self.delivery = delivery


def receive_hook(
    sessions: sessionmaker[Session],
    provider: Forge,
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
    box: SecretBox,
    commit: Committer | None = None,
    redelivery: Redelivery | None = None,
    config: IntakeConfig | None = None,
) -> HookResult:
    """Record the delivery (with its request) and, when it is accepted, its builds; ``commit``
    writes an accepted delivery's rows (a ``GroupCommit``'s ``commit``; by default, a transaction
    of its own). A ``redelivery`` is taken by its trigger unsigned and never deduplicated.
    ``config``: the process's ``IntakeConfig`` (the triggers and subscriptions kept while unchanged);
    by default they are read for this delivery alone."""
    info = HookInfo(None, None, None, None)
    request = request_row(headers, body)
    try:
        if len(body) > settings.max_body_bytes:
            raise PayloadTooLarge(f"body is larger than {settings.max_body_bytes} bytes")
        info = _storable(provider.describe(headers, body))
        if redelivery is not None:
            info = replace(info, dedupe_key=None)
        # Intake reads on a bare connection (no ORM session to set up and tear down for each delivery).
        with engine_of(sessions).connect() as connection:
            view = config.read(connection) if config is not None else IntakeView.uncached(connection)
            return _receive(sessions, view, provider, info, headers, body, settings, box,
                            commit or (lambda write: commit_alone(sessions, write)), request, redelivery)
    except InputError as error:
        delivery = _record(sessions, provider.name, info, "rejected", str(error), error.status, request)
        raise HookRejected(error, delivery) from error


def _receive(
    sessions: sessionmaker[Session],
    view: IntakeView,
    provider: Forge,
    info: HookInfo,
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
    box: SecretBox,
    commit: Committer,
    request: dict[str, Any],
    redelivery: Redelivery | None,
) -> HookResult:
    trigger_id: int | None = None
    redelivery_of = redelivery.of if redelivery is not None else None
    connection = view.connection

    def answer(outcome: str, reason: str | None, status: int = 202) -> HookResult:
        connection.close()  # its reads are done: back to the pool before the write needs one
        delivery = _record(sessions, provider.name, info, outcome, reason, status, request, trigger_id, redelivery_of)
        return HookResult(status, outcome, reason, delivery)

    if not info.repository:
        raise InputError("payload names no repository")
    triggers = view.triggers(provider.name, info.repository)
    if not triggers:
        return answer("no_trigger", f"no trigger for {provider.name} repository {info.repository[:REPOSITORY_CHARS]}")
    verified = [t for t in triggers if t.id == redelivery.trigger_id] if redelivery is not None else \
        [t for t in triggers if _signed_by(provider, headers, body, _webhook_secret(box, t))]
    if not verified:
        raise BadSignature("signature does not match any trigger for this repository")
    trigger_id = verified[0].id
    try:
        events = provider.parse(headers, body)
    except Ignored as ignored:
        return answer("ping" if ignored.status == 200 else "ignored", ignored.reason, ignored.status)
    enabled = [t for t in verified if t.enabled]
    if not enabled:
        return answer("ignored", "trigger is disabled")

    # Reads (and planning) come before the write transaction: statements run while the write
    # lock is held make other writers wait longer.
    listeners = _queued_listeners(view.subscriptions(), enabled)
    now = utcnow()
    plans = [plan_builds(connection, trigger, event, settings, now=now, supersede_now=False)
             for trigger in enabled for event in events]
    rows = [row for plan in plans for row in plan.rows]
    notes = [note for plan in plans for note in plan.notes]
    if not rows:
        return answer("ignored", "; ".join(notes) or "nothing to build")
    reason = "; ".join([f"queued {len(rows)} build(s)", *notes])
    # The one write transaction (superseding, the delivery, its builds), as short as can be:
    # on SQLite it holds the database's write lock. ``commit`` may run it together with other
    # requests' (``GroupCommit``); it returns once these rows are committed.
    write = DeliveryWrite(plans, now, {
        "provider": provider.name,
        "delivery_id": info.delivery_id,
        "event": info.event,
        "repository": _cut(info.repository, REPOSITORY_CHARS),
        "trigger_id": enabled[0].id,
        "outcome": "accepted",
        "status_code": 202,
        "dedupe_key": info.dedupe_key,
        "reason": reason,
        "received_at": now,
        "redelivery_of": redelivery_of,
    }, rows, request)
    # End the read transaction first: its pooled connection goes back, so the writer (which
    # needs one) is never starved by requests that wait for it.
    connection.close()
    commit(write)
    if write.duplicate:
        return answer("duplicate", f"delivery {info.delivery_id} was already accepted")
    if write.delivery_id is None:  # neither written nor refused: never answer 202 for it
        raise RuntimeError(f"delivery {info.delivery_id} was not written")
    build_ids = write.build_ids
    triggers_of = dict(zip(build_ids, (row["trigger_id"] for row in rows)))
    queued = {b for b, row in zip(build_ids, rows) if row["state"] == "queued"}  # not those superseded at once
    return HookResult(202, "accepted", reason, write.delivery_id, build_ids,
                      [b for b in build_ids if b in queued and _listened(triggers_of[b], listeners)],
                      _superseded(plans))


def _superseded(plans: list[Plan]) -> dict[int, int]:
    """By trigger: the builds the plans superseded once committed, and those born superseded."""
    counts: dict[int, int] = {}
    for plan in plans:
        if plan.ended_superseded:  # a plan is one trigger's
            trigger_id = plan.rows[0]["trigger_id"]
            counts[trigger_id] = counts.get(trigger_id, 0) + plan.ended_superseded
    return counts


ALL_TRIGGERS = 0  # in ``_queued_listeners``: some listener wants every trigger's builds


def _queued_listeners(subscriptions: list[SubscriptionRow], triggers: list[HookTrigger]) -> set[int]:
    """The ids of the triggers whose builds' "queued" state someone listens for.

    A trigger with a status token reports commit statuses; a subscription to
    ``build.queued`` (or ``*``) listens for its trigger's builds, or everyone's.
    Announcing one too many is harmless (the task applies each subscription's
    ref filter itself); announcing none saves a broker message per build.
    """
    ids = {t.id for t in triggers if t.status_token_enc}
    for events, trigger_id in subscriptions:
        if "build.queued" in (events or ()) or "*" in (events or ()):
            ids.add(ALL_TRIGGERS if trigger_id is None else trigger_id)
    return ids


def _listened(trigger_id: int, listeners: set[int]) -> bool:
    return ALL_TRIGGERS in listeners or trigger_id in listeners


# The sizes of the ``deliveries`` columns these fill.
EVENT_CHARS, DELIVERY_ID_CHARS, REPOSITORY_CHARS, DEDUPE_KEY_CHARS = 64, 255, 255, 512


def _storable(info: HookInfo) -> HookInfo:
    """What a host sent, as the database can hold and compare it, whatever it was.

    Text loses NUL and lone surrogates (no database stores them); the event and
    delivery id are cut to their columns. The repository is kept whole to look
    up (a longer name matches no trigger) and cut when recorded. A dedupe key
    longer than its column is replaced by its hash, so it still tells deliveries apart.
    """
    key = clean_text(info.dedupe_key)
    if key is not None and (len(key) > DEDUPE_KEY_CHARS or key != info.dedupe_key):
        digest = hashlib.sha256((info.dedupe_key or "").encode("utf-8", "surrogatepass")).hexdigest()
        key = f"{key.partition(':')[0][:32]}:sha256:{digest}"
    return HookInfo(
        event=clean_text(info.event, EVENT_CHARS),
        delivery_id=clean_text(info.delivery_id, DELIVERY_ID_CHARS),
        repository=clean_text(info.repository),
        dedupe_key=key,
    )


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


# Decrypted webhook secrets of this process, by (box, trigger id, ciphertext): a changed secret
# has another ciphertext, so a stale one is never answered from here. Bounded; emptied when full.
_SECRETS: dict[tuple[SecretBox, int, str], str] = {}
_SECRETS_MAX = 1024


def _webhook_secret(box: SecretBox, trigger: HookTrigger) -> str:
    key = (box, trigger.id, trigger.secret_enc)
    secret = _SECRETS.get(key)
    if secret is None:
        secret = box.open(trigger.secret_enc)
        if len(_SECRETS) >= _SECRETS_MAX:
            _SECRETS.clear()
        _SECRETS[key] = secret
    return secret


def _signed_by(provider: Forge, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    try:
        provider.verify(headers, body, secret)
    except BadSignature:
        return False
    return True


def _record(
    sessions: sessionmaker[Session],
    provider: str,
    info: HookInfo,
    outcome: str,
    reason: str | None,
    status: int,
    request: dict[str, Any],
    trigger_id: int | None = None,
    redelivery_of: int | None = None,
) -> int:
    delivery = Delivery(
        provider=provider,
        delivery_id=info.delivery_id,
        event=info.event,
        repository=_cut(info.repository, REPOSITORY_CHARS),
        trigger_id=trigger_id,
        outcome=outcome,
        reason=reason,
        status_code=status,
        redelivery_of=redelivery_of,
    )
    with sessions() as session:
        session.add(delivery)
        session.flush()
        session.add(DeliveryRequest(delivery_id=delivery.id, **request))
        session.commit()
        return delivery.id
