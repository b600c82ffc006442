"""Triggers as the webhook intake reads them: one query, plain values, rules parsed once.

This is the hot path of every webhook (``builder/intake/receive.py``, ``builder/intake/planning.py``), so it
reads no ORM objects and compiles its statement once per process (``builder/db/prepared.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from builder.db.engine import Reader, connection_of
from builder.db.models import IntakeConfigVersion, Subscription, Trigger, TriggerRule
from builder.db.prepared import Prepared
from builder.forks import reset_after_fork
from builder.triggers.rules import RuleSpec


@dataclass(frozen=True)
class HookRule:
    """A rule as webhook intake reads it (the columns ``rule_spec`` and planning use)."""

    id: int
    position: int
    source: str
    match: str
    pattern: str
    dockerfile: str
    context: str
    build_args: dict[str, str]
    target: str | None
    tags: list[str]
    included_files: list[str]
    ignored_files: list[str]
    push: bool
    forks: str
    cancel_running: bool


@dataclass(frozen=True)
class HookTrigger:
    """A trigger as webhook intake reads it: plain values, with its rules in position order."""

    id: int
    provider: str
    repository: str
    clone_url: str
    secret_enc: str = field(repr=False)
    image: str
    default_branch: str
    enabled: bool
    supersede: bool
    status_token_enc: str | None = field(repr=False)
    rules: tuple[HookRule, ...]


_HOOK_TRIGGER_COLUMNS = tuple(f.name for f in fields(HookTrigger) if f.name != "rules")
_HOOK_RULE_COLUMNS = tuple(f.name for f in fields(HookRule))
# One statement for the triggers of a repository and their rules, built once (building a
# statement costs more CPU than SQLite takes to run this one). Plain rows: no ORM identity
# map, no lazy loads, nothing for a later flush to look at.
_FIND_TRIGGERS = Prepared(
    select(*(Trigger.__table__.c[name] for name in _HOOK_TRIGGER_COLUMNS),
           *(TriggerRule.__table__.c[name].label(f"rule_{name}") for name in _HOOK_RULE_COLUMNS))
    .select_from(Trigger.__table__.outerjoin(TriggerRule.__table__))
    .where(Trigger.provider == bindparam("provider"),
           func.lower(Trigger.repository) == bindparam("repository"))
    .order_by(Trigger.id, TriggerRule.position)
)
_RULE_START = len(_HOOK_TRIGGER_COLUMNS)  # a row: the trigger's columns, then its rule's (id first)


def find_triggers(reader: Reader, provider: str, repository: str) -> list[HookTrigger]:
    """The triggers for ``provider``'s ``repository`` (any case), oldest first, with their rules."""
    rows = _FIND_TRIGGERS.rows(connection_of(reader), {"provider": provider, "repository": repository.lower()})
    found: dict[int, tuple[tuple[Any, ...], list[HookRule]]] = {}
    for row in rows:
        trigger_id = row[0]
        if trigger_id not in found:
            found[trigger_id] = (row[:_RULE_START], [])
        if row[_RULE_START] is not None:
            found[trigger_id][1].append(HookRule(*row[_RULE_START:]))
    return [HookTrigger(*columns, rules=tuple(rules)) for columns, rules in found.values()]


_VERSION = Prepared(select(IntakeConfigVersion.version).where(IntakeConfigVersion.id == 1))
_SUBSCRIPTIONS = Prepared(select(Subscription.events, Subscription.trigger_id).where(Subscription.enabled.is_(True)))
SubscriptionRow = tuple[Any, int | None]  # (events, trigger id or None for every trigger)


class IntakeConfig:
    """What webhook intake reads for every delivery, kept while it is unchanged: a repository's
    triggers (``find_triggers``) and the enabled subscriptions' events.

    Each ``read`` asks the database for one number, ``intake_config_version``, which database
    triggers bump with every change to what intake reads of ``triggers``, ``trigger_rules`` or
    ``subscriptions`` (migration 0023), whoever writes it. Rows are kept per number: a higher
    number starts afresh, and only a delivery that read the kept number adds to it. The number is
    read before the rows it vouches for, so what a delivery gets is never older than the number it
    read, whatever other threads do meanwhile. (The number only grows: a database restored from an
    older backup under running web processes needs them restarted.) A repository without triggers
    is not kept, so unsigned requests naming made-up repositories cannot crowd out the real ones.
    One per web process (``webhooks/hooks.py``); a forked child starts empty.
    """

    def __init__(self, max_repositories: int = 1024) -> None:
        self.max_repositories = max_repositories
        self._reset()
        reset_after_fork(self._reset)

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self._kept: _Kept | None = None

    def read(self, connection: Connection) -> IntakeView:
        """What intake reads for one delivery, through ``connection``, as of the number read now."""
        found = _VERSION.rows(connection)
        version = found[0][0] if found else None  # None (no row): nothing is kept
        if version is None:
            return IntakeView(None, connection)
        with self.lock:
            if self._kept is None or version > self._kept.version:
                self._kept = _Kept(version)
            kept = self._kept  # at this number or a newer one
        return IntakeView(self, connection, version, kept)


@dataclass
class _Kept:
    """The rows kept under one ``version``: added only by deliveries that read that number."""

    version: int
    triggers: dict[tuple[str, str], list[HookTrigger]] = field(default_factory=dict)
    subscriptions: list[SubscriptionRow] | None = None


@dataclass(frozen=True)
class IntakeView:
    """What intake reads for one delivery (kept lists are shared between requests: read only)."""

    config: IntakeConfig | None  # None: read each time (``uncached``)
    connection: Connection
    version: int | None = None
    kept: _Kept | None = None

    @classmethod
    def uncached(cls, connection: Connection) -> IntakeView:
        return cls(None, connection)

    def triggers(self, provider: str, repository: str) -> list[HookTrigger]:
        """A repository's triggers, as ``find_triggers`` reads them."""
        key = (provider, repository.lower())
        found = self.kept.triggers.get(key) if self.kept is not None else None
        if found is None:
            found = find_triggers(self.connection, provider, repository)
            if found:
                self._keep(lambda kept: kept.triggers.__setitem__(key, found))
        return found

    def subscriptions(self) -> list[SubscriptionRow]:
        """(events, trigger id or None) of each enabled subscription."""
        found = self.kept.subscriptions if self.kept is not None else None
        if found is None:
            found = _subscription_rows(self.connection)
            self._keep(lambda kept: setattr(kept, "subscriptions", found))
        return found

    def _keep(self, put: Callable[[_Kept], None]) -> None:
        """Add rows this delivery read, if it read the number they are kept under."""
        config, kept = self.config, self.kept
        if config is None or kept is None or kept.version != self.version:
            return
        with config.lock:
            if len(kept.triggers) >= config.max_repositories:
                kept.triggers.clear()
            put(kept)


def _subscription_rows(connection: Connection) -> list[SubscriptionRow]:
    return _SUBSCRIPTIONS.rows(connection)  # type: ignore[return-value]  # (events, trigger_id) tuples


def rule_spec(rule: TriggerRule | HookRule) -> RuleSpec:
    """The rule as a ``RuleSpec``: built (and checked) once per distinct set of columns.

    The result is shared between callers: treat it, and its ``build_args``, as read-only.
    """
    return _rule_spec(rule.source, rule.match, rule.pattern, rule.dockerfile, rule.context,
                      tuple((rule.build_args or {}).items()), rule.target, tuple(rule.tags or ()),
                      tuple(rule.included_files or ()), tuple(rule.ignored_files or ()),
                      rule.push, rule.forks or "untrusted", bool(rule.cancel_running))


@lru_cache(maxsize=4096)
def _rule_spec(source: str, match: str, pattern: str, dockerfile: str, context: str,
               build_args: tuple[tuple[str, str], ...], target: str | None, tags: tuple[str, ...],
               included_files: tuple[str, ...], ignored_files: tuple[str, ...], push: bool | None, forks: str,
               cancel_running: bool) -> RuleSpec:
    return RuleSpec(
        source=source,  # type: ignore[arg-type]
        match=match,
        pattern=pattern,
        dockerfile=dockerfile,
        context=context,
        build_args=dict(build_args),
        target=target,
        tags=tags,
        included_files=included_files,
        ignored_files=ignored_files,
        push=push,
        forks=forks,
        cancel_running=cancel_running,
    )
