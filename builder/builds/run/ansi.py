"""Terminal control sequences in build output: what to strip before a line is matched.

A step's output keeps its colour codes (``\\x1b[91mERROR: ...\\x1b[0m``): the pages render
them (``webhooks/log_render.py``). Anything that reads a line's words (error lines, step
folds) reads it without them, or ``\\bERROR`` would not match after ``\\x1b[91m``.
"""

from __future__ import annotations

import re

# CSI (colours, cursor moves), OSC (titles, hyperlinks; ended by BEL or ST), other two-byte escapes.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")


def strip_ansi(text: str) -> str:
    return ESCAPES.sub("", text) if "\x1b" in text else text
