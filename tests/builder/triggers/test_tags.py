"""Default tags and image names."""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.intake.events import PushEvent
from builder.triggers.tags import image_repository, is_valid_tag, render_tags, sanitise_tag

SHA = "0123456789abcdef0123456789abcdef01234567"


def push(ref_type: str, name: str) -> PushEvent:
    prefix = "refs/heads/" if ref_type == "branch" else "refs/tags/"
    return PushEvent("github", "a/b", prefix + name, ref_type, name, SHA)  # type: ignore[arg-type]


def test_default_branch_push_gets_branch_short_sha_and_latest():
    assert render_tags(push("branch", "main"), "main") == ["main", "0123456", "latest"]


def test_other_branch_push_gets_no_latest():
    assert render_tags(push("branch", "dev"), "main") == ["dev", "0123456"]


def test_tag_push_gets_the_tag_name_only():
    assert render_tags(push("tag", "v2.0.1"), "main") == ["v2.0.1"]


@pytest.mark.parametrize("raw, tag", [
    ("feature/login", "feature-login"),
    ("-leading-dash", "leading-dash"),
    (".hidden", "hidden"),
    ("release/1.2@rc#1", "release-1.2-rc-1"),
    ("ü-ber", "ber"),
    ("x" * 300, "x" * 128),
])
def test_ref_names_are_sanitised_to_valid_docker_tags(raw, tag):
    assert sanitise_tag(raw) == tag
    assert is_valid_tag(tag)


def test_a_ref_name_with_nothing_usable_is_an_error():
    with pytest.raises(InputError):
        sanitise_tag("///")


@pytest.mark.parametrize("image, registry, expected", [
    ("team/app", "127.0.0.1:5000", "127.0.0.1:5000/team/app"),
    ("app", "registry.example.com", "registry.example.com/app"),
    ("ghcr.io/team/app", "127.0.0.1:5000", "ghcr.io/team/app"),
    ("localhost:5001/app", "127.0.0.1:5000", "localhost:5001/app"),
])
def test_image_repository_prefixes_the_configured_registry(image, registry, expected):
    assert image_repository(image, registry) == expected


@pytest.mark.parametrize("image", ["Team/App", "team//app", "team/app:tag", "-x/y"])
def test_invalid_image_names_are_refused(image):
    with pytest.raises(InputError):
        image_repository(image, "127.0.0.1:5000")
