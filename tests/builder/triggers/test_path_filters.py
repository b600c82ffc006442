"""Path filters like Cloud Build's includedFiles / ignoredFiles."""

from __future__ import annotations

import pytest

from builder.triggers.path_filters import filter_reason, matches


@pytest.mark.parametrize("pattern, path, expected", [
    ("docs/**", "docs/a/b.md", True),
    ("docs/**", "docs", False),
    ("**/*.md", "README.md", True),
    ("**/*.md", "a/b/c.md", True),
    ("*.md", "a/b.md", False),
    ("src/*.py", "src/app.py", True),
    ("src/*.py", "src/pkg/app.py", False),
    ("src/**/test_*.py", "src/test_a.py", True),
    ("src/**/test_*.py", "src/x/y/test_a.py", True),
    ("file?.txt", "file1.txt", True),
    ("[!a]*.txt", "b.txt", True),
    ("[!a]*.txt", "a.txt", False),
])
def test_globs_with_double_star(pattern, path, expected):
    assert matches(path, [pattern]) is expected


def test_no_filters_always_builds():
    assert filter_reason(["anything"], (), ()) is None


def test_only_ignored_files_changed_skips():
    assert filter_reason(["docs/a.md", "README.md"], (), ("docs/**", "*.md")) == \
        "every changed file matches the ignored files"


def test_one_file_outside_the_ignored_ones_builds():
    assert filter_reason(["docs/a.md", "src/app.py"], (), ("docs/**",)) is None


def test_included_files_must_match_one_changed_file_that_is_not_ignored():
    assert filter_reason(["src/app.py"], ("src/**",), ()) is None
    assert filter_reason(["web/app.js"], ("src/**",), ()) == "no changed file matches the included files"
    assert filter_reason(["src/gen/x.py"], ("src/**",), ("src/gen/**",)) == \
        "every changed file matches the ignored files"
