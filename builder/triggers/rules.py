"""Build rules: which pushes a trigger builds, and how its images are tagged.

Like Docker Hub's automated-build rules and Cloud Build's triggers: a rule
matches a branch or a tag by exact name, glob or regular expression (fully
matched; capture groups usable in tags as ``{\\1}``), and names the
Dockerfile, context, build args, target stage, tag templates and path filters.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from builder.errors import InputError
from builder.intake.events import PushEvent
from builder.triggers.rule_tests import ImageTest
from builder.triggers.path_filters import check_globs
from builder.builds.image.platform_names import check_platforms
from builder.triggers.semver import Version
from builder.triggers.tags import sanitise_tag

Source = Literal["branch", "tag", "pull_request"]
SOURCES = ("branch", "tag", "pull_request")
MATCH_KINDS = ("exact", "glob", "regex")
FORKS = ("untrusted", "trusted")

_FIELD = re.compile(r"\{([^{}]*)\}")
_CAPTURE = re.compile(r"\\(\d+)")
_ALWAYS = {"sha", "short_sha", "timestamp"}
# A request's tags never name a branch ({ref_name} would be its head branch): they carry {pr}.
_BY_SOURCE = {"branch": {"branch", "ref_name"}, "tag": {"tag", "ref_name", "version", "major", "minor", "patch"},
              "pull_request": {"pr"}}
PR_FIELD = "{pr}"
_SEMVER_FIELDS = {"version", "major", "minor", "patch"}
LATEST = "latest"
# A Dockerfile ARG name, as BuildKit and the classic builder accept it.
BUILD_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class RuleSpec:
    source: Source
    pattern: str = "*"
    match: str = "glob"
    dockerfile: str = "Dockerfile"
    context: str = "."
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    tags: tuple[str, ...] = ()
    included_files: tuple[str, ...] = ()
    ignored_files: tuple[str, ...] = ()
    # Write-only: NAME -> value, merged into the build args when the build runs, never copied into
    # a build's row, never shown (only the names are, by ``trigger_to_dict``). None: not given
    # (an edit keeps the rule's), {}: none; a value None keeps that name's stored value.
    secret_build_args: Mapping[str, str | None] | None = field(default=None, repr=False, compare=False)
    # Run in the pushed digest before any tag moves (builder/builds/image/test.py); None: no test.
    test: ImageTest | None = None
    # Push the image (None: the source's default, ``pushes``); a request's build by default only
    # proves the Dockerfile builds.
    push: bool | None = None
    # Requests from forks: "untrusted" (no secret build args, no push) or "trusted".
    forks: str = "untrusted"
    # A newer commit of the same ref (or request) cancels this rule's running build too.
    cancel_running: bool = False
    # "always": a scheduled run rebuilds an unchanged commit (builder/triggers/schedules.py); per-commit tags kept
    # in the registry (builder/registries/retention.py). Stored on the rule's row, not in the intake's cached specs.
    rebuild: str | None = None
    retention_keep: int | None = None
    # os/arch[/variant] to build for, one OCI image index per tag (builder/builds/image/platforms.py); (): one image.
    platforms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InputError(f"rule source must be one of {', '.join(map(repr, SOURCES))}, not {self.source!r}")
        if self.match not in MATCH_KINDS:
            raise InputError(f"rule match must be one of {', '.join(MATCH_KINDS)}, not {self.match!r}")
        if not self.pattern:
            raise InputError("rule pattern must not be empty")
        groups = 0
        if self.match == "regex":
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise InputError(f"rule pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        if not self.tags:
            raise InputError("a rule needs at least one tag template")
        for template in self.tags:
            check_template(template, self.source, groups)
        self._check_request_fields()
        check_globs(self.included_files + self.ignored_files)
        if self.secret_build_args:
            check_secret_build_args(self.secret_build_args, self.build_args)
        check_team_fields(self)

    @property
    def pushes(self) -> bool:
        """Whether builds of this rule push: ``push``, else True but for pull requests."""
        return self.push if self.push is not None else self.source != "pull_request"

    def _check_request_fields(self) -> None:
        if self.forks not in FORKS:
            raise InputError(f"rule forks must be one of {', '.join(FORKS)}, not {self.forks!r}")
        if self.source != "pull_request":
            if self.forks != "untrusted":
                raise InputError("rule field 'forks' applies to pull_request rules only")
            return
        if LATEST in self.tags:
            raise InputError("a pull_request rule cannot tag 'latest': a request is not a release")
        if self.pushes:
            for template in self.tags:
                if PR_FIELD not in template:
                    raise InputError(f"tag template {template!r}: a pull_request rule that pushes needs {PR_FIELD} "
                                     "in every tag (e.g. 'pr-{pr}'), so a request never overwrites a branch's tags")

    @classmethod
    def default(cls, source: Source, dockerfile: str = "Dockerfile", context: str = ".") -> "RuleSpec":
        """Docker Hub's defaults: branch + short sha (+ latest on the default branch), or the tag."""
        tags = {"branch": ("{branch}", "{short_sha}", LATEST), "tag": ("{tag}",), "pull_request": ("pr-{pr}",)}[source]
        return cls(source=source, dockerfile=dockerfile, context=context, tags=tags)

    @classmethod
    def from_json(cls, data: Any) -> "RuleSpec":
        if not isinstance(data, dict):
            raise InputError("each rule must be a JSON object")
        known = {"source", "pattern", "match", "dockerfile", "context", "build_args", "target", "tags",
                 "included_files", "ignored_files", "secret_build_args", "test", "push", "forks",
                 "cancel_running", "rebuild", "retention", "platforms"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown rule fields: {', '.join(unknown)}")
        for key in ("source", "pattern", "match", "dockerfile", "context"):
            if key in data and not isinstance(data[key], str):
                raise InputError(f"rule field {key!r} must be a string")
        if data.get("target") is not None and not isinstance(data["target"], str):
            raise InputError("rule field 'target' must be a string")
        for key in ("push", "cancel_running"):
            if data.get(key) is not None and not isinstance(data[key], bool):
                raise InputError(f"rule field {key!r} must be true or false")
        if "forks" in data and not isinstance(data["forks"], str):
            raise InputError("rule field 'forks' must be 'untrusted' or 'trusted'")
        args = data.get("build_args", {})
        if not isinstance(args, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in args.items()):
            raise InputError("rule field 'build_args' must be an object of strings")
        lists = {}
        for key in ("tags", "included_files", "ignored_files"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise InputError(f"rule field {key!r} must be a list of strings")
            lists[key] = tuple(value)
        if "source" not in data:
            raise InputError("rule field 'source' is required ('branch' or 'tag')")
        base = cls.default(data["source"]) if data.get("source") in SOURCES else None
        return cls(
            source=data["source"],
            pattern=data.get("pattern", "*"),
            match=data.get("match", "glob"),
            dockerfile=data.get("dockerfile", "Dockerfile"),
            context=data.get("context", "."),
            build_args=dict(args),
            target=data.get("target") or None,
            tags=lists["tags"] or (base.tags if base else ()),
            included_files=lists["included_files"],
            ignored_files=lists["ignored_files"],
            secret_build_args=_secret_build_args_json(data),
            test=ImageTest.from_json(data.get("test")),
            push=data.get("push"),
            forks=data.get("forks", "untrusted"),
            cancel_running=bool(data.get("cancel_running")),
            rebuild=data.get("rebuild"),
            retention_keep=_retention_json(data.get("retention")),
            platforms=check_platforms(data.get("platforms")),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "match": self.match,
            "pattern": self.pattern,
            "dockerfile": self.dockerfile,
            "context": self.context,
            "build_args": dict(self.build_args),
            "target": self.target,
            "tags": list(self.tags),
            "included_files": list(self.included_files),
            "ignored_files": list(self.ignored_files),
            "push": self.pushes,
            "forks": self.forks,
            "cancel_running": self.cancel_running,
        }


def _secret_build_args_json(data: dict[str, Any]) -> Mapping[str, str | None] | None:
    """``secret_build_args`` of a rule's JSON: absent -> None (keep), null -> {} (none),
    {NAME: value} -> set, [NAME...] -> keep those names' stored values (what GET shows, sent back)."""
    if "secret_build_args" not in data:
        return None
    given = data["secret_build_args"]
    if given is None:
        return {}
    if isinstance(given, list) and all(isinstance(name, str) for name in given):
        return dict.fromkeys(given)
    if not isinstance(given, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
        raise InputError("rule field 'secret_build_args' must be an object of NAME: value strings "
                         "(or a list of names already set, to keep their values)")
    return dict(given)


def check_secret_build_args(args: Mapping[str, str | None], build_args: Mapping[str, str]) -> None:
    """Raise InputError unless every name is a build arg name (not also a plain build arg) and
    every value a non-empty line of text (the log masks each value within a line)."""
    for name, value in args.items():
        if not BUILD_ARG_NAME.fullmatch(name):
            raise InputError(f"secret build arg name {name!r} is not a valid build arg name "
                             "(letters, digits and _, not starting with a digit)")
        if name in build_args:
            raise InputError(f"{name!r} is both a build arg and a secret build arg")
        if value is None:  # keep the stored value: checked when the rule is stored
            continue
        if not value:
            raise InputError(f"secret build arg {name!r} needs a value")
        if "\0" in value:
            raise InputError(f"secret build arg {name!r}: the value must not contain NUL")
        if "\n" in value or "\r" in value:
            raise InputError(f"secret build arg {name!r}: the value must be one line "
                             "(build logs mask each value within a line)")


def check_template(template: str, source: Source, groups: int) -> None:
    """Raise InputError if ``template`` could not be rendered for pushes this rule matches."""
    if template == LATEST:
        return
    allowed = _ALWAYS | _BY_SOURCE[source]
    for name in _FIELD.findall(template):
        capture = _CAPTURE.fullmatch(name)
        if capture:
            if int(capture.group(1)) > groups or int(capture.group(1)) == 0:
                raise InputError(
                    f"tag template {template!r} uses {{{name}}} but the rule's pattern has {groups} capture group(s)"
                )
        elif name not in allowed:
            raise InputError(
                f"tag template {template!r}: {{{name}}} cannot be rendered for {source} pushes "
                f"(known: {', '.join('{' + n + '}' for n in sorted(allowed))}, {{\\1}}...)"
            )
    if "{" in _FIELD.sub("", template) or "}" in _FIELD.sub("", template):
        raise InputError(f"tag template {template!r} has an unbalanced brace")


def match(rule: RuleSpec, event: PushEvent) -> tuple[str, ...] | None:
    """The capture groups if the rule matches the push's ref (a request's base branch), else None."""
    if event.ref_type != rule.source:
        return None
    name = event.base_branch or "" if event.ref_type == "pull_request" else event.ref_name
    if rule.match == "exact":
        return () if name == rule.pattern else None
    if rule.match == "glob":
        return () if fnmatch.fnmatchcase(name, rule.pattern) else None
    found = re.fullmatch(rule.pattern, name)
    return tuple(group or "" for group in found.groups()) if found else None


@dataclass(frozen=True)
class TagContext:
    captures: tuple[str, ...]
    default_branch: str
    now: datetime
    # True when this tag is the highest release version built by the rule so far.
    highest_version: bool = False


def render_tags(rule: RuleSpec, event: PushEvent, context: TagContext) -> tuple[list[str], list[str]]:
    """The sanitised tags for this push, and notes on templates that were left out."""
    version = Version.parse(event.ref_name) if event.ref_type == "tag" else None
    values = {
        "sha": event.commit,
        "short_sha": event.short_sha,
        "ref_name": event.ref_name,
        "timestamp": context.now.strftime("%Y%m%d%H%M%S"),
        "branch": event.ref_name,
        "tag": event.ref_name,
        "pr": str(event.pull_request),
    }
    if version:
        values.update(version.fields())
    tags: list[str] = []
    notes: list[str] = []
    for template in rule.tags:
        if template == LATEST:
            if event.ref_type == "branch" and event.ref_name == context.default_branch:
                tags.append(LATEST)
            elif event.ref_type == "tag" and context.highest_version:
                tags.append(LATEST)
            continue
        if version is None and _SEMVER_FIELDS & set(_FIELD.findall(template)):
            notes.append(f"tag template {template!r} skipped: {event.ref_name!r} is not a semantic version")
            continue

        def field_value(found: re.Match[str]) -> str:
            name = found.group(1)
            capture = _CAPTURE.fullmatch(name)
            return context.captures[int(capture.group(1)) - 1] if capture else values[name]

        tags.append(sanitise_tag(_FIELD.sub(field_value, template)))
    return list(dict.fromkeys(tags)), notes


REBUILD_CHOICES = ("always", "changed")
RETENTION_KEEP_MAX = 10_000
PER_COMMIT_FIELDS = {"sha", "short_sha", "timestamp"}  # a tag from these is new for every build


def per_commit_templates(tags: tuple[str, ...] | list[str]) -> list[str]:
    """The tag templates that name one build's commit or time: what retention may delete."""
    return [template for template in tags if PER_COMMIT_FIELDS & set(_FIELD.findall(template))]


def _retention_json(value: Any) -> int | None:
    """``"retention": {"keep": N}`` of a rule's JSON (null or absent: every tag is kept)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"keep"}:
        raise InputError('rule field \'retention\' must be {"keep": N}, or null')
    keep = value["keep"]
    if isinstance(keep, bool) or not isinstance(keep, int):
        raise InputError("retention keep must be a whole number")
    return keep


@contextmanager
def rule_at(position: int) -> Iterator[None]:
    """An error in the rule at ``position`` (from 0) names it, counted from 1 as builds' notes count rules."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"rule {position + 1}: {exc}", exc.status) from exc


def rules_from_json(rules: list[Any]) -> tuple[RuleSpec, ...]:
    """A trigger's ``"rules"``, each checked; an error says which rule."""
    specs = []
    for position, data in enumerate(rules):
        with rule_at(position):
            specs.append(RuleSpec.from_json(data))
    return tuple(specs)


def check_team_fields(rule: RuleSpec) -> None:
    if rule.rebuild is not None and rule.rebuild not in REBUILD_CHOICES:
        raise InputError(f"rule field 'rebuild' must be one of {', '.join(REBUILD_CHOICES)}, "
                         f"not {json.dumps(rule.rebuild)}")
    if rule.retention_keep is None:
        return
    if not 0 < rule.retention_keep <= RETENTION_KEEP_MAX:
        raise InputError(f"retention keep must be between 1 and {RETENTION_KEEP_MAX}")
    if not per_commit_templates(rule.tags):
        raise InputError("retention deletes per-commit tags, and this rule has none: add a tag template with "
                         "{sha}, {short_sha} or {timestamp}")
