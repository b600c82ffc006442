"""The repository is self-contained: nothing reads test data from outside it.

The webhook and registry payloads live in tests/fixtures/. A clone on its own (no sibling
directory of the development machines' corpus beside it) must collect and run the tests and
the benchmarks, so no source file may point at that corpus again. This file names the corpus
directory only in pieces (``SIBLING``), so that it does not match what it looks for.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.payloads import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("tests", "bench", "builder", "webhooks", "workers", "buildhook")
SIBLING = b"sha" + b"red"  # the corpus directory beside the project on the development machines
OUTSIDE = re.compile(
    SIBLING + rb"/fixtures"  # the old corpus path, in code or prose
    + rb"|\.\./" + SIBLING + rb"\b"  # relative to the project
    + rb"|/work/" + SIBLING + rb"\b"  # the absolute path on the development machines
    + rb"|\bparents?\b[^\n]*[\"']" + SIBLING + rb"[\"']"  # ROOT.parent / "<corpus>" / ...
)
HOSTS = ("github", "gitlab", "bitbucket", "gitea", "registry", "other_registries")


def source_files() -> list[Path]:
    files = [path for top in CHECKED for path in (ROOT / top).rglob("*") if path.is_file()]
    return [path for path in files if "__pycache__" not in path.parts and path.suffix != ".pyc"]


def test_no_source_file_reads_test_data_from_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.decode(errors='replace').strip()}"
        for path in source_files()
        for number, line in enumerate(path.read_bytes().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert found == [], "paths outside the repository:\n" + "\n".join(found)


def test_the_fixtures_live_in_the_repository_with_a_readme_per_directory() -> None:
    assert FIXTURES == ROOT / "tests" / "fixtures"
    assert (FIXTURES / "README.md").is_file()
    for host in HOSTS:
        assert (FIXTURES / host / "README.md").is_file(), host
        assert list((FIXTURES / host).glob("*.json")), host
