"""Build rules: matching, tag templates, and errors at trigger creation rather than at build time."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from builder.errors import InputError
from builder.intake.events import PushEvent
from builder.triggers.rules import RuleSpec, TagContext, match, render_tags
from builder.triggers.semver import Version

SHA = "89abcdef0123456789abcdef0123456789abcdef"
NOW = datetime(2026, 11, 23, 14, 5, 9, tzinfo=timezone.utc)


def push(ref_type: str, name: str) -> PushEvent:
    prefix = "refs/heads/" if ref_type == "branch" else "refs/tags/"
    return PushEvent("github", "acme/widget", prefix + name, ref_type, name, SHA)  # type: ignore[arg-type]


def tags_for(rule: RuleSpec, event: PushEvent, default_branch="main", highest=False) -> list[str]:
    captures = match(rule, event)
    assert captures is not None, "rule should match"
    return render_tags(rule, event, TagContext(captures, default_branch, NOW, highest))[0]


@pytest.mark.parametrize("kind, pattern, name, matches", [
    ("exact", "main", "main", True),
    ("exact", "main", "main2", False),
    ("glob", "release/*", "release/1.x", True),
    ("glob", "release/*", "hotfix/1.x", False),
    ("glob", "*", "feature/deep/name", True),
    ("regex", r"v\d+", "v12", True),
    ("regex", r"v\d+", "v12-rc", False),  # fully matched, not searched
    ("regex", r"v\d+", "xv12", False),
])
def test_rule_names_match_exactly_by_glob_or_fully_by_regex(kind, pattern, name, matches):
    rule = RuleSpec(source="branch", match=kind, pattern=pattern, tags=("{branch}",))
    assert (match(rule, push("branch", name)) is not None) is matches


def test_a_branch_rule_never_matches_a_tag():
    rule = RuleSpec(source="branch", pattern="*", tags=("{branch}",))
    assert match(rule, push("tag", "v1.0.0")) is None


def test_default_branch_rule_tags_branch_short_sha_and_latest_only_on_the_default_branch():
    rule = RuleSpec.default("branch")
    assert tags_for(rule, push("branch", "main")) == ["main", "89abcde", "latest"]
    assert tags_for(rule, push("branch", "feature/x")) == ["feature-x", "89abcde"]


def test_regex_capture_groups_are_usable_in_tags_like_docker_hub():
    rule = RuleSpec(source="tag", match="regex", pattern=r"release-(\d+)\.(\d+)",
                    tags=(r"{\1}.{\2}", r"v{\1}", "{tag}"))
    assert tags_for(rule, push("tag", "release-3.14")) == ["3.14", "v3", "release-3.14"]


def test_tag_push_builds_semver_tags():
    rule = RuleSpec(source="tag", pattern="v*", tags=("{version}", "{major}.{minor}", "{major}", "latest"))
    assert tags_for(rule, push("tag", "v1.2.3"), highest=True) == ["1.2.3", "1.2", "1", "latest"]
    assert tags_for(rule, push("tag", "v1.2.3"), highest=False) == ["1.2.3", "1.2", "1"]


def test_semver_templates_are_left_out_for_a_tag_that_is_not_a_version():
    rule = RuleSpec(source="tag", pattern="*", tags=("{tag}", "{major}"))
    captures = match(rule, push("tag", "nightly"))
    tags, notes = render_tags(rule, push("tag", "nightly"), TagContext(captures, "main", NOW))
    assert tags == ["nightly"]
    assert "not a semantic version" in notes[0]


def test_sha_ref_name_and_timestamp_fields():
    rule = RuleSpec(source="branch", pattern="*", tags=("{sha}", "{ref_name}-{timestamp}"))
    assert tags_for(rule, push("branch", "dev")) == [SHA, "dev-20261123140509"]


def test_rendered_tags_are_sanitised_and_deduplicated():
    rule = RuleSpec(source="branch", pattern="*", tags=("{branch}", "{ref_name}", "x/{branch}"))
    assert tags_for(rule, push("branch", "Feature/Ünïcode")) == ["Feature-n-code", "x-Feature-n-code"]


@pytest.mark.parametrize("spec, message", [
    (dict(source="tag", tags=("{branch}",)), "cannot be rendered for tag pushes"),
    (dict(source="branch", tags=("{version}",)), "cannot be rendered for branch pushes"),
    (dict(source="branch", tags=("{nope}",)), "cannot be rendered"),
    (dict(source="tag", match="regex", pattern=r"v(\d+)", tags=(r"{\2}",)), "1 capture group"),
    (dict(source="tag", match="glob", pattern="v*", tags=(r"{\1}",)), "0 capture group"),
    (dict(source="tag", match="regex", pattern="v(", tags=("{tag}",)), "not a valid regular expression"),
    (dict(source="tag", tags=("{tag",)), "unbalanced brace"),
    (dict(source="tag", tags=()), "at least one tag"),
    (dict(source="commit", tags=("x",)), "source must be"),
    (dict(source="tag", match="fuzzy", tags=("x",)), "match must be"),
    (dict(source="tag", tags=("{tag}",), included_files=("src/[",)), "unclosed"),
])
def test_a_template_that_cannot_be_rendered_is_an_error_at_creation(spec, message):
    with pytest.raises(InputError, match=message):
        RuleSpec(**spec)


def test_rules_from_json_fill_in_the_default_tags_and_refuse_unknown_fields():
    rule = RuleSpec.from_json({"source": "tag", "pattern": "v*"})
    assert rule.tags == ("{tag}",)
    with pytest.raises(InputError, match="unknown rule fields: tagz"):
        RuleSpec.from_json({"source": "tag", "tagz": ["x"]})
    with pytest.raises(InputError, match="build_args"):
        RuleSpec.from_json({"source": "tag", "build_args": {"A": 1}})


@pytest.mark.parametrize("text, parsed", [
    ("v1.2.3", Version(1, 2, 3)),
    ("1.2.3-rc.1", Version(1, 2, 3, "rc.1")),
    ("1.2.3+build.5", Version(1, 2, 3)),
    ("1.2", None),
    ("01.2.3", None),
])
def test_semantic_versions_are_parsed_from_tag_names(text, parsed):
    assert Version.parse(text) == parsed


def test_semantic_versions_order_prereleases_before_their_release():
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"]
    parsed = [Version.parse(v) for v in order]
    assert sorted(parsed, key=lambda v: v.key()) == parsed
