"""Paths read from a checked-out repository, kept inside it.

Everything a build reads from the checkout by a name the repository (or its trigger) chose
goes through ``inside_checkout``: the Dockerfile, the build context and the context's
``.dockerignore``. Symlinks are followed, as the engine and docker-py would follow them, and
a path that ends up outside the checkout (``../x``, ``/etc/passwd``, a symlink to ``/etc`` or
to a host file) is refused before anything reads it.

Path filters never read the checkout: their files are the names ``git diff`` reports
between two commits' trees, where a symlink is a file like any other and nothing is followed.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import PermanentError


def inside_checkout(root: Path, relative: str, what: str) -> Path:
    """``relative`` (a path in the repository) resolved inside the checkout ``root``, symlinks followed.

    Raises ``PermanentError`` ("Dockerfile path 'x' leads outside the repository") when the
    path, or any symlink on the way, leads outside ``root``. The path need not exist.
    """
    checkout = root.resolve()
    try:
        path = (checkout / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in the name
        raise PermanentError(f"{what} path {relative!r} cannot be resolved in the repository") from None
    if not path.is_relative_to(checkout):
        raise PermanentError(f"{what} path {relative!r} leads outside the repository")
    return path
