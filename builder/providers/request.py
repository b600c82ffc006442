"""Small helpers the provider modules share to read a webhook request."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Mapping

from builder.errors import BadSignature, InputError


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


def load_json(body: bytes) -> dict[str, Any]:
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


_FILE_KEYS = ("added", "modified", "removed")


def touched_files(commits: list[Any]) -> tuple[str, ...] | None:
    """Union of the files a list of payload commits touched, or None if any commit lacks the lists."""
    files: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict) or not any(key in commit for key in _FILE_KEYS):
            return None
        for key in _FILE_KEYS:
            files.update(path for path in commit.get(key) or () if isinstance(path, str))
    return tuple(sorted(files))
