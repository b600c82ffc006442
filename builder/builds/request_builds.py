"""What the worker does differently for pull request builds (and any build that does not push).

A request's build fetches the base repository's request ref (the build's ``ref``); Bitbucket Cloud
names the head by an abbreviated id, resolved once it is fetched. Builds with ``push`` false prove the
Dockerfile builds and stop there; builds of untrusted forks get no secret build args
(``builder/builds/run/secret_args.py``) and never seed another build's layer cache.
"""

from __future__ import annotations

from pathlib import Path

from git import Repo
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.run.stops import Fence
from builder.builds.commit_order import Claimed
from builder.db.models import Build, Trigger, TriggerRule

FULL_ID_LENGTHS = (40, 64)


def claimed_order(session: Session, build: Build) -> Claimed:
    """The claimed build as ``commit_order.settle`` weighs it against the rule's other builds."""
    rule = session.get(TriggerRule, build.rule_id) if build.rule_id is not None else None
    trigger = session.get(Trigger, build.trigger_id) if build.trigger_id is not None else None
    return Claimed(id=build.id, rule_id=build.rule_id, ref=build.ref, commit=build.commit, before=build.before,
                   supersede=bool(trigger and trigger.supersede), cancel_running=bool(rule and rule.cancel_running))


def full_commit(sessions: sessionmaker[Session], fence: Fence, checkout: Path, commit: str) -> str:
    """``commit`` as a full id: an abbreviated one is resolved in the checkout and recorded."""
    if len(commit) in FULL_ID_LENGTHS:
        return commit
    full = Repo(checkout).head.commit.hexsha
    with sessions() as session:
        session.execute(update(Build).where(*fence.where()).values(commit=full))
        session.commit()
    return full


def not_pushed(build: Build) -> str:
    """The log line of a build that stops once its image is built."""
    if build.fork == "untrusted":
        why = "the request comes from a fork its rule does not trust"
    elif build.pull_request is not None:
        why = 'the rule builds requests with "push": false'
    else:
        why = 'the rule says "push": false'
    return f"Not pushed: {why}. The image {build.image}:{build.tags[0]} stays on the build engine"
