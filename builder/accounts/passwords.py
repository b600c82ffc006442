"""The password policy, checked wherever a password is set (``buildhook users add`` and
``set-password``, ``POST /api/users``, ``PATCH /api/users/<name>``).

A password needs ``MIN_LENGTH`` characters, must not be one of the 30,000 common passwords that
zxcvbn ships (its ``passwords`` frequency list, from the Xato corpus of 10 million leaked
passwords), and must not be easy to guess by zxcvbn's estimate (a score of at least ``MIN_SCORE`` on
its 0-4 scale: more than a million guesses, so ``aaaaaaaaaa`` or ``Password123!`` are refused too).
"""

from __future__ import annotations

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from builder.errors import InputError

MIN_LENGTH = 10
MIN_SCORE = 2
MAX_LENGTH = 1024  # hashing is deliberately slow: a megabyte "password" should not cost a worker seconds
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])


def check_password(password: str, user_name: str = "") -> None:
    """Raise ``InputError`` (400) saying why ``password`` is refused; return if it is fine."""
    if len(password) < MIN_LENGTH:
        raise InputError(f"passwords need at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InputError(f"passwords have at most {MAX_LENGTH} characters")
    if password.lower() in _COMMON:
        raise InputError(f"that password is one of the {len(_COMMON):,} most common passwords: choose another")
    estimate = zxcvbn(password[:100], user_inputs=[user_name, "buildhook"] if user_name else ["buildhook"])
    if estimate["score"] < MIN_SCORE:
        hint = estimate["feedback"].get("warning") or "add more words or characters"
        raise InputError(f"that password is too easy to guess ({hint.rstrip('.')}): "
                         "a few unrelated words make a strong one")
