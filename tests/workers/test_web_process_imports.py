"""The web process imports no Docker or GitPython code (nor the worker's tasks): images and clones are the worker's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from webhooks import create_app
create_app()
wanted = set(sys.argv[1:])
print(json.dumps(sorted(m for m in sys.modules if m in wanted or m.split(".")[0] in wanted)))
"""


def imported_by_the_web_app(tmp_path: Path, *names: str) -> list[str]:
    """Which of ``names`` (modules or packages) a fresh process has loaded once it built the WSGI app."""
    env = {"PATH": "/usr/bin:/bin", "BUILDHOOK_SECRET_KEY": "web-imports-key",
           "BUILDHOOK_DATA_DIR": str(tmp_path / "data"), "BUILDHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}"}
    done = subprocess.run([sys.executable, "-c", PROBE, *names], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_the_wsgi_app_imports_neither_docker_nor_git(tmp_path: Path) -> None:
    assert imported_by_the_web_app(tmp_path, "docker", "git") == []


def test_the_wsgi_app_does_not_import_the_worker_tasks(tmp_path: Path) -> None:
    assert imported_by_the_web_app(tmp_path, "workers.tasks", "workers.periodic") == []
