"""Manual runs of a trigger, like Cloud Build's "Run trigger" and Quay's "Run trigger now".

A run names a branch, a tag or a commit. ``resolve_ref`` asks the remote which
commit that is (``git ls-remote``, nothing is cloned) and ``start_run`` plans
the builds exactly as a push of that ref to that commit would, records a
``Delivery`` (event ``manual``) and commits. Handing the builds to the broker
is the caller's job, after the commit (``builder.builds.outbox.dispatch``).

Unlike webhook intake, resolving a branch or tag talks to the Git host; it is
bounded by ``LS_REMOTE_TIMEOUT``.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Mapping, NamedTuple
from urllib.parse import unquote, urlsplit

from sqlalchemy.orm import Session

from builder.triggers.git_access import git_environment, redact_url
from builder.triggers.clone_urls import check_clone_url
from builder.errors import Conflict, InputError, NotFound, TransientError
from builder.intake.events import PushEvent, RefType
from builder.db.models import Build, BuildState, Delivery, Trigger
from builder.metrics import count_build_end
from builder.intake.planning import plan_builds
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers.services import clone_auth

LS_REMOTE_TIMEOUT = 30  # seconds
RUN_FIELDS = ("branch", "tag", "sha")

_HEX = re.compile(r"[0-9a-fA-F]{7,40}")
# What git check-ref-format forbids anywhere in a ref name (and patterns would treat specially).
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_AUTH = ("authentication failed", "could not read username", "could not read password",
         "returned error: 401", "returned error: 403", "permission denied (publickey",
         "permission denied, please try again", "http basic: access denied")


class ResolvedRef(NamedTuple):
    ref: str
    ref_type: RefType
    ref_name: str
    commit: str


def check_choice(branch: str | None = None, tag: str | None = None, sha: str | None = None) -> None:
    """Exactly one of branch, tag and sha, except that sha may name its branch too."""
    given = [name for name, value in (("branch", branch), ("tag", tag), ("sha", sha)) if value is not None]
    if not given:
        raise InputError("name what to run: a branch, a tag or a sha (optionally with its branch)")
    if len(given) > 1 and set(given) != {"branch", "sha"}:
        raise InputError(f"give only one of branch, tag and sha (sha may be combined with branch), "
                         f"not {' and '.join(given)}")
    for name, value in (("branch", branch), ("tag", tag), ("sha", sha)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InputError(f"{name} must be a non-empty string")
    if branch is not None:
        _ref_name(branch, "branch")
    if tag is not None:
        _ref_name(tag, "tag")
    if sha is not None and not _HEX.fullmatch(sha.strip()):
        raise InputError(f"sha {sha!r} is not a commit id (7 to 40 hexadecimal digits)")


def run_request(data: Any) -> dict[str, str | None]:
    """The ``branch``/``tag``/``sha`` of a JSON run request, checked (``InputError`` 400 if not)."""
    if not isinstance(data, dict):
        raise InputError('expected a JSON object: {"branch": ...}, {"tag": ...} or {"sha": ...}')
    unknown = sorted(set(data) - set(RUN_FIELDS))
    if unknown:
        raise InputError(f"unknown fields: {', '.join(unknown)}; expected branch, tag or sha")
    wrong = [key for key in RUN_FIELDS if data.get(key) is not None and not isinstance(data[key], str)]
    if wrong:
        raise InputError(f"fields must be strings: {', '.join(wrong)}")
    choice = {key: data.get(key) for key in RUN_FIELDS}
    check_choice(**choice)
    return choice


def resolve_ref(
    clone_url: str,
    *,
    branch: str | None = None,
    tag: str | None = None,
    sha: str | None = None,
    env: Mapping[str, str] | None = None,
    default_branch: str | None = None,
) -> ResolvedRef:
    """Which ref and commit a manual run builds, asked of the remote with ``git ls-remote``.

    ``branch`` -> its tip; ``tag`` -> the commit it points at (peeled for an annotated tag);
    ``sha`` (7-40 hex) -> that commit on ``branch``, or on ``default_branch`` (the trigger's;
    when ``None``, the remote's HEAD branch). A short sha is expanded when it is the tip of that
    branch and kept as given otherwise (the worker's fetch resolves it). ``env`` is added to
    git's environment (credentials for a private repository).
    """
    check_choice(branch, tag, sha)
    if tag is not None:
        name = _ref_name(tag, "tag")
        ref = f"refs/tags/{name}"
        refs = _ls_remote(clone_url, env, ref, f"{ref}^{{}}")
        commit = refs.get(f"{ref}^{{}}") or refs.get(ref)
        if commit is None:
            raise NotFound(f"tag {name!r} not found in {redact_url(clone_url)}")
        return ResolvedRef(ref, "tag", name, commit)

    if branch is not None:
        name = _ref_name(branch, "branch")
    elif default_branch:
        name = _ref_name(default_branch, "default branch")
    else:
        name = _remote_head(clone_url, env)
    ref = f"refs/heads/{name}"
    tip = _ls_remote(clone_url, env, ref).get(ref)
    if tip is None:
        raise NotFound(f"branch {name!r} not found in {redact_url(clone_url)}")
    if sha is None:
        return ResolvedRef(ref, "branch", name, tip)
    commit = sha.strip().lower()
    if tip.startswith(commit):
        commit = tip
    return ResolvedRef(ref, "branch", name, commit)


def start_run(
    session: Session,
    trigger: Trigger,
    settings: Settings,
    *,
    branch: str | None = None,
    tag: str | None = None,
    sha: str | None = None,
    by: str | None = None,
) -> list[Build]:
    """Plan, record and commit the builds of one manual run; return them (not yet dispatched).
    ``by``: who ran it (the builds' ``started_by``; the command line leaves it empty).

    ``git ls-remote`` runs with the trigger's clone credentials, as the worker's fetch does.
    """
    check_choice(branch, tag, sha)
    if not trigger.enabled:
        raise Conflict(f"trigger {trigger.id} is disabled")
    check_clone_url(trigger.clone_url, settings.allow_file_clones)  # before git sees it
    auth = clone_auth(trigger, SecretBox(settings.secret_key))
    with git_environment(trigger.clone_url, auth, lambda _line: None) as env:
        resolved = resolve_ref(trigger.clone_url, branch=branch, tag=tag, sha=sha, env=env,
                               default_branch=trigger.default_branch)
    event = PushEvent(
        provider=trigger.provider,
        repository=trigger.repository,
        ref=resolved.ref,
        ref_type=resolved.ref_type,
        ref_name=resolved.ref_name,
        commit=resolved.commit,
        author=None,
        message=None,
        changed_files=None,
        before=None,
    )
    plan = plan_builds(session, trigger, event, settings)
    what = f"manual run of {resolved.ref_type} {resolved.ref_name!r} at {event.short_sha}" + (f" by {by}" if by else "")
    if not plan.builds:
        session.rollback()  # undo any superseding: nothing replaces those builds
        reason = "; ".join(plan.notes) or "nothing to build"
        _record(session, trigger, "ignored", f"{what}: {reason}", 422)
        session.commit()
        raise InputError(reason, status=422)
    delivery = _record(session, trigger, "accepted",
                       "; ".join([f"{what}: queued {len(plan.builds)} build(s)", *plan.notes]), 201)
    session.flush()
    for build in plan.builds:
        build.delivery_id = delivery.id
        build.origin = "manual"
        build.started_by = by
    session.add_all(plan.builds)
    session.commit()
    count_build_end(BuildState.SUPERSEDED.value, trigger.id, plan.ended_superseded)
    return plan.builds


def _record(session: Session, trigger: Trigger, outcome: str, reason: str, status: int) -> Delivery:
    delivery = Delivery(
        provider=trigger.provider,
        delivery_id=None,
        event="manual",
        repository=trigger.repository,
        trigger_id=trigger.id,
        outcome=outcome,
        reason=reason,
        status_code=status,
        dedupe_key=None,  # every manual run is meant: never deduplicated
    )
    session.add(delivery)
    return delivery


def _ref_name(value: str, what: str) -> str:
    name = value.strip()
    prefix = "refs/tags/" if what == "tag" else "refs/heads/"
    name = name.removeprefix(prefix)
    if (
        not name
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "//" in name
        or "@{" in name
        or "/." in name
        or _BAD_REF_CHARS.search(name)
    ):
        raise InputError(f"{what} {value!r} is not a valid git ref name")
    return name


def _remote_head(clone_url: str, env: Mapping[str, str] | None) -> str:
    out = _git(clone_url, env, ["--symref"], ["HEAD"])
    for line in out.splitlines():
        target, _, name = line.partition("\t")
        if name == "HEAD" and target.startswith("ref: refs/heads/"):
            return target.removeprefix("ref: refs/heads/")
    raise NotFound(f"{redact_url(clone_url)} has no default branch (HEAD)")


def _ls_remote(clone_url: str, env: Mapping[str, str] | None, *refs: str) -> dict[str, str]:
    """{ref: commit} of the remote refs named exactly by ``refs``."""
    found = {}
    for line in _git(clone_url, env, [], list(refs)).splitlines():
        commit, _, ref = line.partition("\t")
        if ref in refs:  # ls-remote patterns also match longer refs ending in them
            found[ref] = commit.strip().lower()
    return found


def _git(clone_url: str, env: Mapping[str, str] | None, options: list[str], patterns: list[str]) -> str:
    """``git ls-remote OPTIONS -- URL PATTERNS`` (``--``: the URL is never taken for an option).

    The git program itself, not GitPython: this runs in the web process, which imports no git code."""
    full_env = {**os.environ, **(env or {}), "GIT_TERMINAL_PROMPT": "0"}
    where = redact_url(clone_url)
    try:
        done = subprocess.run(["git", "ls-remote", *options, "--", clone_url, *patterns], env=full_env,
                              capture_output=True, text=True, timeout=LS_REMOTE_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TransientError(f"git remote {where} did not answer within {LS_REMOTE_TIMEOUT}s") from None
    if done.returncode == 0:
        return done.stdout
    message = _stderr(done.stderr, done.returncode, clone_url, env)
    if any(marker in message.lower() for marker in _AUTH):
        raise InputError(f"git authentication failed for {where}: {message}", status=502) from None
    raise TransientError(f"git remote {where} unreachable: {message}") from None


def _stderr(stderr: str, status: int, clone_url: str, env: Mapping[str, str] | None) -> str:
    text = stderr.strip().replace(clone_url, redact_url(clone_url))
    secrets = [urlsplit(clone_url).password or "", unquote(urlsplit(clone_url).password or "")]
    secrets += [value for key, value in (env or {}).items()
                if any(word in key.upper() for word in ("TOKEN", "PASSWORD", "SECRET")) and value]
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())[:500] or f"git ls-remote failed with exit code {status}"
