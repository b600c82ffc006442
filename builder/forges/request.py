"""Small helpers the provider modules share to read a webhook request."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import reprlib
import threading
from dataclasses import dataclass
from typing import Any, Mapping

from builder.errors import BadSignature, InputError
from builder.intake.events import ZERO_SHA, Ignored, RefType, split_ref


@dataclass(frozen=True)
class HookInfo:
    event: str | None
    delivery_id: str | None
    repository: str | None
    # Identifies the delivery for de-duplication; None when the host sends none.
    dedupe_key: str | None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works on any mapping."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


# The body parsed last in this thread, and its document: a forge's ``describe`` and ``parse`` read
# the same body of one request, and parsing a push payload is a tenth of intake's CPU. Kept for
# bodies up to ``_REMEMBERED_BYTES`` (a thread keeps the last one until its next request).
_last_parsed = threading.local()
_REMEMBERED_BYTES = 256 * 1024


def load_json(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object (``InputError`` otherwise). The same ``body`` object parsed twice in
    a row in one thread gives the same document: treat it as read-only."""
    last = getattr(_last_parsed, "entry", None)
    if last is not None and last[0] is body:
        return last[1]  # type: ignore[no-any-return]
    payload = _parse_object(body)
    _last_parsed.entry = (body, payload) if len(body) <= _REMEMBERED_BYTES else None
    return payload


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("body is not valid JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise InputError("body must be a JSON object")
    return payload


def dig(payload: Any, *path: str) -> Any:
    """``payload[a][b]...`` or None when any step is missing or not a dict."""
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def require_hmac_sha256(body: bytes, secret: str, signature: str | None, prefix: str = "") -> None:
    """Constant-time check of a hex HMAC-SHA256 of ``body`` (after ``prefix``)."""
    if not signature:
        raise BadSignature("missing signature header")
    if prefix:
        if not signature.startswith(prefix):
            raise BadSignature(f"signature must start with {prefix!r}")
        signature = signature[len(prefix):]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise BadSignature("signature does not match the trigger's secret")


# A git object id: SHA-1 (40 hex digits) or SHA-256 (64).
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# What ``git check-ref-format`` refuses anywhere in a ref name.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)|[./]$")
# Longest ref kept, in UTF-8 bytes (the database column holds 1024, and it is indexed).
MAX_REF_BYTES = 1024
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def shown(value: Any) -> str:
    """A short ``repr`` of a payload value for a reason or an error, whatever its size or depth."""
    return clean_text(_REPR.repr(value)) or ""


def clean_text(value: Any, limit: int | None = None) -> str | None:
    """``value`` if it is a string, with what no database stores (NUL, lone surrogates) replaced
    by U+FFFD and cut to ``limit`` characters; else None."""
    if not isinstance(value, str):
        return None
    if "\x00" in value or not value.isascii():
        value = value.replace("\x00", "\ufffd").encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value[:limit] if limit is not None else value


def commit_id(value: Any) -> str | None:
    """A full commit id (40 or 64 hex digits, lowercased), else None."""
    if not isinstance(value, str) or len(value) not in (40, 64):
        return None
    value = value.lower()
    return value if _COMMIT.fullmatch(value) else None


def previous_commit(value: Any) -> str | None:
    """A payload's "before" commit: a commit id that is not all zeros (a new ref), else None."""
    commit = commit_id(value)
    return None if commit is None or commit == ZERO_SHA else commit


def read_ref(value: Any) -> tuple[str, RefType, str]:
    """``(ref, ref_type, ref_name)`` of a branch or tag ref; ``Ignored`` for anything else.

    Refuses what git would (``git check-ref-format``) and what no build can be of:
    control characters, ``..``, an empty name, more than ``MAX_REF_BYTES``.
    """
    if not isinstance(value, str):
        raise Ignored("push without a ref")
    if not value.startswith(("refs/heads/", "refs/tags/")):
        raise Ignored(f"ref {shown(value)} is neither a branch nor a tag")
    ref_type, ref_name = split_ref(value)
    if (not ref_name or ref_name.startswith(("/", ".")) or _BAD_REF.search(ref_name)
            or "\ufffd" in ref_name or len(value.encode("utf-8", "surrogatepass")) > MAX_REF_BYTES):
        raise Ignored(f"{ref_type} {shown(ref_name)} is not a valid git ref name")
    return value, ref_type, ref_name


_FILE_KEYS = ("added", "modified", "removed")


def touched_files(commits: list[Any]) -> tuple[str, ...] | None:
    """Union of the files a list of payload commits touched, or None if any commit lacks the lists."""
    files: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict) or not any(key in commit for key in _FILE_KEYS):
            return None
        for key in _FILE_KEYS:
            paths = commit.get(key)
            if paths is not None and not isinstance(paths, list):
                return None
            files.update(path for path in paths or () if isinstance(path, str))
    return tuple(sorted(files))
