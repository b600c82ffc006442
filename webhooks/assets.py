"""Where the dashboard's templates and static files are.

They live at the project root (``templates/``, ``static/``) and ship inside the web package as
``webhooks.templates`` and ``webhooks.static`` (``pyproject.toml`` maps them), so an installed
wheel serves them from site-packages and an editable install from the checkout.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def asset_folder(name: str) -> Path:
    """The folder of ``webhooks.<name>``; the project root's ``<name>/`` when not installed."""
    try:
        return Path(str(importlib.resources.files(f"webhooks.{name}")))
    except ModuleNotFoundError:  # a source checkout on PYTHONPATH, not installed
        return PROJECT_ROOT / name


TEMPLATES = asset_folder("templates")
STATIC = asset_folder("static")
