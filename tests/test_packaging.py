"""The distribution stands on its own: the wheel carries every template, static file and migration
the service reads, and declares what the running service imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    [path] = out.glob("buildhook-*.whl")
    return zipfile.ZipFile(path)


def tracked(folder: str) -> set[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", folder], check=True, capture_output=True,
                            text=True).stdout.split()
    return {name for name in listed if not name.endswith("__init__.py")}


@pytest.mark.parametrize("folder, inside", [("templates", "webhooks/templates"), ("static", "webhooks/static"),
                                            ("builder/db/migrations", "builder/db/migrations")])
def test_the_wheel_carries_every_file_the_service_reads(wheel, folder, inside):
    files = tracked(folder)
    assert files, f"nothing tracked under {folder}?"
    shipped = set(wheel.namelist())
    missing = sorted(name for name in files if inside + name[len(folder):] not in shipped)
    assert missing == []


def test_the_wheel_declares_what_the_service_imports(wheel):
    [metadata] = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist") or []
    plain = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower()
             for r in requires if "extra ==" not in r}
    # kombu's Redis transport imports packaging without declaring it.
    assert {"flask", "celery", "redis", "gitpython", "docker", "sqlalchemy", "packaging"} <= plain


def test_the_console_script_is_buildhook(wheel):
    [entry_points] = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    assert "buildhook = buildhook.cli:main" in wheel.read(entry_points).decode()
