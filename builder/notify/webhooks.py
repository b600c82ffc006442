"""Outbound webhooks: signed POSTs to deploy systems and subscribers.

Signed the way Stripe signs: ``X-Buildhook-Signature: t=<unix seconds>,v1=<hex>``,
``<hex>`` being HMAC-SHA256 of ``f"{t}.".encode() + raw_body`` keyed with the
secret; several ``v1=`` may appear (rotation). ``verify_signature`` is the
receivers' reference. ``send_webhook`` never raises for HTTP or network trouble
and follows no redirects; retry scheduling is the caller's. Neither the secret
nor the URL's path, query or password (Slack URLs hide secrets there) reaches a
log line, an error text or a ``SendResult``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from builder.errors import InputError

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Buildhook-Signature"
EVENT_HEADER = "X-Buildhook-Event"
DELIVERY_HEADER = "X-Buildhook-Delivery"
EXCERPT_CHARS = 500
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK = "<loopback>"  # localhost, 127/8, ::1 and the wildcard bind addresses are one host

try:
    USER_AGENT = f"buildhook/{metadata.version('buildhook')}"
except metadata.PackageNotFoundError:
    USER_AGENT = "buildhook/dev"


def new_delivery_id() -> str:
    """A fresh delivery id; reuse it for every retry and redelivery of that delivery."""
    return uuid.uuid4().hex


# --- signing -------------------------------------------------------------------

def _mac(body: bytes, secret: str, t: str) -> str:
    return hmac.new(secret.encode("utf-8"), t.encode("ascii") + b"." + bytes(body), hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-Buildhook-Signature`` value for ``body`` sent at ``timestamp``."""
    if not secret:
        raise ValueError("an empty webhook secret signs nothing; pass secret=None to send unsigned")
    return f"t={int(timestamp)},v1={_mac(body, secret, str(int(timestamp)))}"


def verify_signature(body: bytes, header: str, secret: str, *, tolerance: int = 300,
                     now: int | None = None) -> bool:
    """True if one ``v1`` in ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    pairs = [item.strip().partition("=")[::2] for item in (header or "").split(",")]
    timestamps = [value.strip() for key, value in pairs if key == "t"]
    candidates = [value.strip().lower().encode("utf-8", "replace") for key, value in pairs if key == "v1"]
    if not secret or len(timestamps) != 1 or not candidates:
        return False
    t, current = timestamps[0], int(time.time()) if now is None else int(now)
    if not (t.isascii() and t.isdigit() and len(t) <= 15) or abs(current - int(t)) > tolerance:
        return False
    expected = _mac(body, secret, t).encode("ascii")
    return max(hmac.compare_digest(expected, candidate) for candidate in candidates)  # compares all


# --- bodies --------------------------------------------------------------------

def render_body(event: str, payload: dict[str, Any], style: str = "json") -> bytes:
    """The request body: canonical JSON ``{"data": ..., "event": ...}`` or a Slack message."""
    if style == "json":
        document: dict[str, Any] = {"event": event, "data": payload}
    elif style == "slack":
        document = _slack_message(event, payload)
    else:
        raise ValueError(f"unknown webhook body style {style!r} (json or slack)")
    return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")


_HEADLINES = {
    "build.succeeded": ":white_check_mark: Build succeeded", "build.failed": ":x: Build failed",
    "build.started": ":hammer_and_wrench: Build started", "build.cancelled": ":no_entry_sign: Build cancelled",
    "image.pushed": ":package: Image pushed", "deployment.requested": ":rocket: Deployment requested",
    "deployment.awaiting_approval": ":hourglass: Deployment awaiting approval",
}


def _slack_message(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """From ``repository``, ``ref_name``/``ref``, ``commit``, ``state``, ``environment``,
    ``tags``, ``digest`` and ``url``, those present; unknown events get a generic headline."""
    def get(*keys: str) -> Any:
        return next((payload[k] for k in keys if payload.get(k) not in (None, "", [], ())), None)

    repository, ref, commit, link = get("repository"), get("ref_name", "ref"), get("commit", "sha"), get("url")
    subject = " ".join(p for p in (repository and f"*{_esc(repository)}*", ref and f"`{_esc(ref)}`",
                                   commit and f"@ `{_esc(str(commit)[:7])}`") if p)
    text = _HEADLINES.get(event, f":bell: buildhook event `{_esc(event)}`") + (f": {subject}" if subject else "")
    if str(link).lower().startswith(("http://", "https://")):  # no javascript: or other schemes
        text += f" (<{_esc(link).replace('|', '%7C')}|view>)"
    fields = []
    for label, value in (("State", get("state")), ("Environment", get("environment")),
                         ("Tags", get("tags")), ("Digest", get("digest"))):
        if value is not None:
            shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            fields.append({"type": "mrkdwn", "text": f"*{label}*\n{_esc(shown)[:1900]}"})
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    return {"text": text[:2900], "blocks": blocks}


def _esc(value: object) -> str:
    """Slack's mrkdwn escaping: no payload text may form a link or a mention."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- sending -------------------------------------------------------------------

@dataclass(frozen=True)
class SendResult:
    status_code: int | None  # None when no HTTP answer came (connection error, timeout)
    body_excerpt: str  # the first 500 characters of the answer, or the error text
    duration_ms: int
    ok: bool  # 2xx
    retryable: bool  # 5xx, 408, 429, connection errors and timeouts


class PinnedAdapter(HTTPAdapter):
    """Connects to ``address`` (the one that was checked) whatever the URL's host resolves to by
    then; the Host header, TLS's SNI and the certificate check still use the URL's host. An HTTP(S)
    proxy from the environment, when one applies, is used as before and resolves the host itself."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = host_params["host"]
        host_params["host"] = self.address
        if host_params["scheme"] == "https":
            pool_kwargs.update(server_hostname=name, assert_hostname=name)
        return host_params, pool_kwargs


@contextmanager
def _post(url: str, body: bytes, headers: dict[str, str], timeout: float,
          connect_to: str | None) -> Iterator[requests.Response]:
    with requests.Session() as session:
        if connect_to is not None:
            session.mount("http://", PinnedAdapter(connect_to))
            session.mount("https://", PinnedAdapter(connect_to))
            headers = {**headers, "Host": urlsplit(url).netloc.rpartition("@")[2]}
        with session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                          stream=True) as response:
            yield response


def send_webhook(url: str, event: str, body: bytes, secret: str | None, delivery_id: str, *,
                 timeout: float = 10.0, now: Callable[[], float] = time.time,
                 extra_headers: dict[str, str] | None = None, connect_to: str | None = None) -> SendResult:
    """POST ``body`` once; ``now`` dates the signature. ``timeout`` bounds the connect and each
    read; at most 2 KiB of the answer is read. ``extra_headers`` cannot override ours.
    ``connect_to``: the address to connect to (``builder.notify.targets.check_url`` checked it)."""
    headers = CaseInsensitiveDict(extra_headers or {})
    headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT,
                    EVENT_HEADER: event, DELIVERY_HEADER: delivery_id})
    headers.pop(SIGNATURE_HEADER, None)
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(body, secret, int(now()))
    started = time.monotonic()
    status: int | None = None
    try:
        with _post(url, body, dict(headers), timeout, connect_to) as response:
            status = response.status_code
            excerpt = _read_excerpt(response)
    except (requests.Timeout, requests.ConnectionError) as exc:
        excerpt, retryable = f"{type(exc).__name__}: {exc}", True
    except (requests.RequestException, ValueError) as exc:  # a bad URL or header: retrying cannot help
        excerpt, retryable = f"{type(exc).__name__}: {exc}", False
    duration_ms = int((time.monotonic() - started) * 1000)
    if status is not None:
        retryable = status >= 500 or status in (408, 429)
    result = SendResult(status, _scrub(excerpt, secret, url)[:EXCERPT_CHARS], duration_ms,
                        status is not None and 200 <= status < 300, retryable)
    log.log(logging.INFO if result.ok else logging.WARNING, "webhook %s delivery %s to %s: %s (%s) in %d ms%s",
            event, delivery_id, _scrub(url, secret, url), f"HTTP {status}" if status else "no answer",
            "ok" if result.ok else "retryable" if retryable else "permanent failure", duration_ms,
            "" if result.ok else f": {result.body_excerpt[:200]}")
    return result


def _read_excerpt(response: requests.Response) -> str:
    data = b""
    try:
        for chunk in response.iter_content(1024):
            data += chunk
            if len(data) >= 4 * EXCERPT_CHARS:
                break
    except requests.RequestException as exc:  # the status arrived; the body broke off
        data += f" [body unreadable: {type(exc).__name__}]".encode()
    return data.decode("utf-8", "replace")


def _scrub(text: str, secret: str | None, url: str) -> str:
    if secret:
        text = text.replace(secret, "***")
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    if parts.password:
        text = text.replace(parts.password, "***")
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) > 1:
        text = text.replace(requote_uri(tail), "/***").replace(tail, "/***")
    return text


def backoff_seconds(attempt: int, base: float = 2.0, cap: float = 600.0,
                    rng: random.Random | None = None) -> float:
    """Delay before retry ``attempt`` (1 = the first retry): full jitter, uniform(0, min(cap, base*2**(n-1)))."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * 2 ** min(attempt - 1, 64))
    return (rng or random).uniform(0, ceiling)


# --- target checks -------------------------------------------------------------

def refuse_internal_target(url: str, forbidden_origins: Iterable[str]) -> None:
    """``InputError`` unless ``url`` is http(s) and none of ``forbidden_origins``: URLs
    (``BUILDHOOK_PUBLIC_URL``) or bare ``host:port`` bind addresses (either scheme). No DNS."""
    try:
        scheme, host, port = _origin(url.strip(), bare_ok=False)
    except ValueError as exc:
        raise InputError(f"webhook URL is invalid: {exc}") from None
    for origin in filter(None, (o.strip() for o in forbidden_origins)):
        try:
            o_scheme, o_host, o_port = _origin(origin, bare_ok=True)
        except ValueError as exc:  # a configuration mistake, not the caller's
            raise ValueError(f"forbidden origin {origin!r}: {exc}") from None
        if o_scheme in (None, scheme) and o_host == host and (o_port or _DEFAULT_PORTS[scheme or ""]) == port:
            raise InputError("webhook URL points at buildhook itself")


def _origin(value: str, bare_ok: bool) -> tuple[str | None, str, int | None]:
    """(scheme, host key, port); scheme and port are None for a bare ``host`` when ``bare_ok``."""
    parts = urlsplit(value if "://" in value or not bare_ok else f"//{value}")
    scheme = parts.scheme.lower() or None
    if (scheme or not bare_ok) and scheme not in _DEFAULT_PORTS:
        raise ValueError("not http or https")
    if not parts.hostname:
        raise ValueError("no host")
    return scheme, _host_key(parts.hostname), parts.port or _DEFAULT_PORTS.get(scheme or "")


def _host_key(host: str) -> str:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return _LOOPBACK
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the forms the resolver also accepts: 127.1, 2130706433, 0x7f000001
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            try:
                return host.encode("idna").decode("ascii")
            except UnicodeError:
                return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return _LOOPBACK if ip.is_loopback or ip.is_unspecified else str(ip)
