"""Which of two builds of the same ref and rule is of the newer commit: commit order, not arrival order.

A webhook for an older commit can arrive after a newer one's (a redelivery, a slow host). It must
never supersede the newer build; it is superseded itself. "Older" is decided, in this order:

1. by the payloads' ``before`` -> commit chain (each build keeps its ``before``): when following it
   back from one commit reaches the other, that other is older. Webhook intake decides this way,
   without any git work;
2. else, in the worker, by the commit graph of the fetched repository
   (``git merge-base --is-ancestor``), the two commits fetched with their history;
3. else (unrelated commits, e.g. after a force push, or a commit that cannot be fetched), the build
   that arrived later counts as newer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from sqlalchemy import bindparam, func, literal, literal_column, select, union_all, update
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.run.stops import RUNNING
from builder.db.models import Build, BuildState, utcnow
from builder.db.engine import Reader, connection_of
from builder.db.prepared import Prepared
from builder.metrics import count_build_end
from builder.triggers.git_access import GitAuth, git_environment

if TYPE_CHECKING:
    from git import Repo

ACTIVE = (BuildState.QUEUED.value, *RUNNING)
# How far a before -> commit chain is followed.
MAX_CHAIN = 200


class Order(Enum):
    NEWER = "newer"  # the first commit is newer than the second
    OLDER = "older"
    SAME = "same"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Sibling:
    """Another build of the same rule and ref."""

    id: int
    commit: str
    before: str | None
    state: str

    @property
    def short(self) -> str:
        return self.commit[:7]


# Built once, with the values bound per call: building a SELECT costs more CPU than running it (webhook
# intake runs these for every matched rule). ``ix_builds_rule_ref_state`` finds the rows.
_SIBLING_COLUMNS = (Build.id, Build.commit, Build.before, Build.state)
_SAME_RULE_AND_REF = (Build.rule_id == bindparam("rule_id"), Build.ref == bindparam("ref"))
_ACTIVE_SIBLINGS = select(*_SIBLING_COLUMNS).where(*_SAME_RULE_AND_REF, Build.state.in_(ACTIVE))
# The last build of the rule and ref that succeeded: its tags are the current ones.
_IS_LAST_SUCCEEDED = Build.id == select(func.max(Build.id)).where(
    *_SAME_RULE_AND_REF, Build.state == BuildState.SUCCEEDED.value).scalar_subquery()
_LAST_SUCCEEDED = select(*_SIBLING_COLUMNS).where(_IS_LAST_SUCCEEDED)


def siblings(session: Session, rule_id: int, ref: str, exclude: int | None = None) -> list[Sibling]:
    """The rule's builds of ``ref`` that can still win or lose: the queued and running ones, and the
    last one that succeeded (its tags are the current ones)."""
    values = {"rule_id": rule_id, "ref": ref}
    connection = session.connection()
    rows = list(connection.execute(_ACTIVE_SIBLINGS, values))
    last = connection.execute(_LAST_SUCCEEDED, values).first()
    rows += [last] if last is not None else []
    return [Sibling(*row) for row in rows if row[0] != exclude]


# One link of the chain: the active builds of a commit (a step back), or those pushed on top of it (a
# step forward), each through its own index (migration 0019), however many builds the ref has queued.
# Run for every delivery (``Prepared``: compiled once, on the driver's cursor), so no expanding lists.
_IS_ACTIVE = Build.state.in_([literal(state) for state in ACTIVE])
_ACTIVE_OF_RULE_AND_REF = (*_SAME_RULE_AND_REF, _IS_ACTIVE)
_OF_COMMIT = Prepared(select(*_SIBLING_COLUMNS).where(*_ACTIVE_OF_RULE_AND_REF, Build.commit == bindparam("link")))


def pushed_on_top(states: Iterable[str]) -> Prepared:
    """The builds of the rule and ref in one of ``states`` pushed on top of the commit ``link`` (their
    ``before``), through ``ix_builds_rule_ref_before``."""
    return Prepared(select(*_SIBLING_COLUMNS).where(
        *_SAME_RULE_AND_REF, Build.state.in_([literal(state) for state in states]), Build.before == bindparam("link")))


_ON_TOP_OF = pushed_on_top(ACTIVE)
# The first step both ways and the last successful build, in one statement: most pushes need no other.
_FIRST_LINKS = Prepared(union_all(
    select(literal_column("'back'"), *_SIBLING_COLUMNS)
    .where(*_ACTIVE_OF_RULE_AND_REF, Build.commit.in_([bindparam("commit"), bindparam("before")])),
    select(literal_column("'forward'"), *_SIBLING_COLUMNS)
    .where(*_ACTIVE_OF_RULE_AND_REF, Build.before == bindparam("commit")),
    select(literal_column("'last'"), *_SIBLING_COLUMNS).where(_IS_LAST_SUCCEEDED),
))


LinkAnswers = dict[tuple[Prepared, int, str, str], list[Sibling]]
"""The builds of each link already asked for, by query, rule, ref and link: the dispatcher weighs a batch of
builds of one chain together, and each one's walk passes the links the walks before it asked for."""


def chain_siblings(reader: Reader, rule_id: int, ref: str, commit: str, before: str | None,
                   answers: LinkAnswers | None = None) -> list[Sibling]:
    """The ``siblings`` on ``commit``'s before -> commit chain (pushed on top of ``before``): back from
    it (and those of the same commit), and forward from it; the only ones whose order ``chain_order``
    can settle, every other sibling being UNKNOWN to it.

    Webhook intake asks this instead of ``siblings``: it follows the chain an indexed query per link,
    so a ref with thousands of queued builds (pushes whose order is left to the worker) costs a
    delivery no more than a ref with one. ``answers`` (shared by the walks of one batch, read within
    milliseconds of each other) keeps each link's builds, so that no link is asked for twice."""
    values = {"rule_id": rule_id, "ref": ref}
    connection = connection_of(reader)
    answers = {} if answers is None else answers

    def link_rows(statement: Prepared, link: str) -> list[Sibling]:
        key = (statement, rule_id, ref, link)
        found = answers.get(key)
        if found is None:
            found = answers[key] = [Sibling(*row) for row in
                                                statement.rows(connection, {**values, "link": link})]
        return found

    first: dict[str, list[Sibling]] = {"back": [], "forward": [], "last": []}
    for kind, *columns in _FIRST_LINKS.rows(connection, {**values, "commit": commit, "before": before}):
        first[kind].append(Sibling(*columns))
    last = first["last"][0] if first["last"] else None
    found: dict[int, Sibling] = {}

    def walk(statement: Prepared, frontier: set[str], linked: list[Sibling],
             key: Callable[[Sibling], str | None], step: Callable[[Sibling], str | None]) -> None:
        seen = set(frontier)
        for _ in range(MAX_CHAIN):
            linked = linked + ([last] if last is not None and key(last) in frontier else [])
            found.update((sibling.id, sibling) for sibling in linked)
            frontier = {c for c in map(step, linked) if c and c not in seen}
            if not frontier:
                return
            seen |= frontier
            linked = [sibling for link in sorted(frontier) for sibling in link_rows(statement, link)]

    walk(_OF_COMMIT, {commit, before} - {None}, first["back"], lambda s: s.commit, lambda s: s.before)  # type: ignore[arg-type]
    walk(_ON_TOP_OF, {commit}, first["forward"], lambda s: s.before, lambda s: s.commit)
    return list(found.values())


def chain_links(known: Iterable[Sibling]) -> dict[str, str]:
    """commit -> before of the builds ``known``: the chain ``chain_order`` follows (made once per
    decision, not once per pair: a branch with many queued builds would make that quadratic)."""
    return {sibling.commit: sibling.before for sibling in known if sibling.before}


def chain_order(commit: str, before: str | None, other: Sibling, links: Mapping[str, str]) -> Order:
    """``commit`` (pushed on top of ``before``) against ``other``, by the before -> commit chain
    ``links`` (``chain_links`` of the builds known) and these two."""
    if commit == other.commit:
        return Order.SAME
    if _reaches(links, before or links.get(commit), other.commit):
        return Order.NEWER
    if _reaches(links, other.before or links.get(other.commit), commit):
        return Order.OLDER
    return Order.UNKNOWN


def _reaches(links: Mapping[str, str], current: str | None, target: str) -> bool:
    """Whether following ``links`` back from ``current`` (a commit's ``before``) meets ``target``."""
    seen = 0
    while current and seen < MAX_CHAIN:
        if current == target:
            return True
        current, seen = links.get(current), seen + 1
    return False


def graph_order(checkout: Path, commit: str, other: str, fetch: Callable[[list[str]], None]) -> Order:
    """``commit`` against ``other`` by the commit graph; ``fetch(commits)`` brings both, with their
    history, into the repository at ``checkout`` (a failed fetch leaves the order unknown)."""
    from git import (  # the worker's: the web process, which plans builds here, loads no git
        GitCommandError,
        Repo,
    )

    try:
        fetch([commit, other])
    except GitCommandError:
        return Order.UNKNOWN
    repo = Repo(checkout)
    if _is_ancestor(repo, other, commit):
        return Order.NEWER
    if _is_ancestor(repo, commit, other):
        return Order.OLDER
    return Order.UNKNOWN


def _is_ancestor(repo: Repo, older: str, newer: str) -> bool:
    from git import GitCommandError

    try:
        repo.git.merge_base("--is-ancestor", older, newer)
    except GitCommandError:
        return False
    return True


@dataclass(frozen=True)
class Claimed:
    """The build a worker just claimed, as ``settle`` needs it."""

    id: int
    rule_id: int | None
    ref: str
    commit: str
    before: str | None
    supersede: bool  # the trigger's
    cancel_running: bool  # the rule's

    def at(self, commit: str) -> "Claimed":
        """The same build, its commit resolved (an abbreviated id, once fetched)."""
        return replace(self, commit=commit)


def settle(sessions: sessionmaker[Session], build: Claimed, checkout: Path,
           fetch: Callable[[list[str]], None], log: Callable[[str], None]) -> str | None:
    """Why the claimed build is superseded (another build of the rule and ref is of a newer commit),
    or None to build it; older builds' queued rows are superseded, running ones (``cancel_running``)
    asked to stop. What the payloads' chain cannot settle is settled by the commit graph."""
    if build.rule_id is None or not build.supersede:
        return None
    with sessions() as session:
        found = siblings(session, build.rule_id, build.ref, exclude=build.id)
    links = chain_links(found)
    for other in found:
        order = chain_order(build.commit, build.before, other, links)
        if order is Order.UNKNOWN:
            order = graph_order(checkout, build.commit, other.commit, fetch)
            how = "the commit graph" if order is not Order.UNKNOWN else "arrival order (unrelated commits)"
            if order is Order.UNKNOWN:
                order = Order.NEWER if build.id > other.id else Order.OLDER
            log(f"Commit order against build #{other.id} ({other.short}), by {how}: {order.value}")
        if order is Order.OLDER:
            return f"superseded: commit {build.commit[:7]} is older than {other.short} (build #{other.id})"
        if order is Order.NEWER:
            _replace(sessions, build, other)
    return None


def _replace(sessions: sessionmaker[Session], build: Claimed, other: Sibling) -> None:
    """Supersede ``other`` (queued) or, with ``cancel_running``, ask it to stop (running)."""
    reason = f"superseded by a newer push of {build.commit[:7]}"
    now = utcnow()
    with sessions() as session:
        superseded = session.execute(update(Build).where(Build.id == other.id, Build.state == BuildState.QUEUED.value)
                                     .values(state=BuildState.SUPERSEDED.value, reason=reason, finished_at=now))
        if build.cancel_running:
            session.execute(update(Build).where(Build.id == other.id, Build.state.in_(RUNNING),
                                                Build.cancel_requested_at.is_(None))
                            .values(cancel_requested_at=now, reason=f"cancelled: {reason}"))
        trigger_id = session.scalar(select(Build.trigger_id).where(Build.id == other.id))
        session.commit()
    if superseded.rowcount:
        count_build_end(BuildState.SUPERSEDED.value, trigger_id)


def history_fetch(clone_url: str, auth: GitAuth | None, checkout: Path,
                  log: Callable[[str], None]) -> Callable[[list[str]], None]:
    """What ``graph_order`` fetches with: the commits with their whole history (the clone is shallow),
    from the build's remote, with its credentials."""
    def fetch(commits: list[str]) -> None:
        from git import Repo

        repo = Repo(checkout)
        log(f"Fetching the history of {', '.join(commit[:7] for commit in commits)} to compare them")
        with git_environment(clone_url, auth, lambda _line: None) as env, repo.git.custom_environment(**env):
            shallow = ["--unshallow"] if (Path(repo.git_dir) / "shallow").exists() else []
            repo.git.fetch(*shallow, "--no-tags", "origin", *commits)

    return fetch
