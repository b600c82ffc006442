"""Keyset pages of rows newest first (by id): what every listing with ``before=`` and ``next`` shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

Row = TypeVar("Row", bound=Any)


def split_page(rows: Sequence[Row], limit: int) -> tuple[list[Row], int | None]:
    """``rows`` read with ``limit + 1``, newest first: the page, and the next page's cursor (the id of
    the page's last row, for ``before=``), or None when this is the last page."""
    if len(rows) > limit:
        return list(rows[:limit]), rows[limit - 1].id
    return list(rows), None
