"""Outbound URLs (subscriptions, deploy webhooks, deliveries) hold secrets: sealed, shown redacted.

A Slack or Discord webhook URL is its own secret (the path), others carry one in
the query (``?token=``) or in the userinfo (``user:pass@``). The database keeps
the URL sealed with the ``SecretBox`` and, in clear, only ``redact_url(url)``,
which is what the API, the pages, the command and the logs show, to everyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from builder.secrets import SecretBox

REDACTED = "****"
# Hosts whose path after a known prefix is the secret: everything after it is hidden.
_SECRET_PATHS = (
    ("hooks.slack.com", re.compile(r"^/[^/]+/")),  # /services/T../B../XXX, /workflows/..., /triggers/...
    ("discord.com", re.compile(r"^/api/(?:v\d+/)?webhooks/")),
    ("discordapp.com", re.compile(r"^/api/(?:v\d+/)?webhooks/")),
)
# A path segment or query key that looks like a token: 16+ characters mixing letters and digits,
# 16+ digits, or 20+ letters and digits.
_TOKENISH = re.compile(r"(?=[^/]{16,}$)(?:(?=.*[A-Za-z])(?=.*\d)[\w\-.~+=%@:]+|\d+|[A-Za-z0-9]{20,})$", re.ASCII)


@dataclass(frozen=True)
class SealedUrl:
    """What the database keeps of an outbound URL: sealed, and redacted in clear."""

    enc: str = field(repr=False)
    redacted: str


def seal_url(box: SecretBox, url: str) -> SealedUrl:
    return SealedUrl(box.seal(url), redact_url(url))


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``****``: user and password, every query value, the
    path of a Slack or Discord webhook, and token-like path segments. Scheme, host and port stay:
    ``https://hooks.slack.com/services/T0/B0/XYZ`` -> ``https://hooks.slack.com/services/****``.
    Applying it twice changes nothing; a URL it cannot read is all ``****``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return REDACTED
    host = parts.hostname
    if not parts.scheme or not host:
        return REDACTED
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    if "@" in parts.netloc:
        netloc = (f"{REDACTED}:{REDACTED}@" if parts.password is not None else f"{REDACTED}@") + netloc
    return urlunsplit((parts.scheme, netloc, _redact_path(host, parts.path), _redact_query(parts.query), ""))


def _redact_path(host: str, path: str) -> str:
    for secret_host, prefix in _SECRET_PATHS:
        if host == secret_host or host.endswith("." + secret_host):
            kept = prefix.match(path)
            if kept and len(path) > kept.end():
                return kept.group(0) + REDACTED
    return "/".join(REDACTED if _TOKENISH.match(segment) else segment for segment in path.split("/"))


def _redact_query(query: str) -> str:
    items = []
    for item in filter(None, query.split("&")):
        key, has_value, _value = item.partition("=")
        if not has_value or _TOKENISH.match(key):
            items.append(REDACTED)
        else:
            items.append(f"{key}={REDACTED}")
    return "&".join(items)
