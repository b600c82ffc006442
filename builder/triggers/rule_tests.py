"""A rule's ``"test"`` as it is stored and validated: the command and its timeout.

Running it is the worker's (``builder/builds/image/test.py``); this module has no engine code, so the web
app validates a rule without importing Docker.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from builder.errors import InputError

DEFAULT_TIMEOUT = 600  # seconds
MAX_TIMEOUT = 24 * 3600


@dataclass(frozen=True)
class ImageTest:
    """A rule's ``"test"``: a command (exec form, run without a shell) and its timeout in seconds."""

    command: tuple[str, ...]
    timeout: int = DEFAULT_TIMEOUT

    @classmethod
    def from_json(cls, data: Any) -> ImageTest | None:
        if data is None:
            return None
        if not isinstance(data, dict) or set(data) - {"command", "timeout"}:
            raise InputError('rule field \'test\' must be {"command": ["..."], "timeout": seconds}')
        command = data.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command):
            raise InputError("test command must be a non-empty list of strings (exec form, e.g. "
                             '["sh", "-c", "make test"])')
        timeout = data.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT:
            raise InputError(f"test timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT}")
        return cls(tuple(command), timeout)

    def as_json(self) -> dict[str, Any]:
        return {"command": list(self.command), "timeout": self.timeout}

    @property
    def name(self) -> str:
        return shlex.join(self.command)
