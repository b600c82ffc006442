"""Row ids, cursors and counts as they arrive in URLs and forms: digits only, in the columns' range.

Every id column is a 32-bit ``INTEGER`` on PostgreSQL, so a larger number is refused here with a
clear error rather than reaching the database (where it would be an overflow, not a 400).
"""

from __future__ import annotations

import re

from builder.errors import InputError

MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() also accepts "²"


def is_id(raw: str | None) -> bool:
    return bool(raw) and _DIGITS.fullmatch(raw or "") is not None and int(raw or "0") <= MAX_ID


def parse_id(raw: str, message: str) -> int:
    """``raw`` as a non-negative id no larger than ``MAX_ID``; ``InputError(message)`` otherwise."""
    raw = raw.strip()
    if not is_id(raw):
        raise InputError(message)
    return int(raw)
