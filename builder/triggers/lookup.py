"""Triggers as the webhook intake reads them: one query, plain values, rules parsed once.

This is the hot path of every webhook (``builder/intake/receive.py``, ``builder/intake/planning.py``), so it
reads no ORM objects and compiles its statement once per process (``builder/db/prepared.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, select

from builder.db.engine import Reader, connection_of
from builder.db.models import Trigger, TriggerRule
from builder.db.prepared import Prepared
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
