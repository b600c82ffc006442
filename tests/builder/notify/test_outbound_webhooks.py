"""Outbound webhooks against a real local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from builder.errors import InputError
from builder.notify.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    USER_AGENT,
    SendResult,
    backoff_seconds,
    new_delivery_id,
    refuse_internal_target,
    render_body,
    send_webhook,
    sign,
    verify_signature,
)

SECRET = "whsec-s3cr3t-0123456789abcdef"
NOW = int(time.time())  # the README's receiver checks against the real clock: taken again for each test


@pytest.fixture(autouse=True)
def now() -> None:
    """``NOW`` is this test's start: a suite can take longer than the receiver's 5 minutes of tolerance."""
    global NOW
    NOW = int(time.time())
PAYLOAD = {
    "repository": "acme/widgets",
    "ref": "refs/heads/main",
    "ref_name": "main",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "state": "succeeded",
    "tags": ["registry.example.com/acme/widgets:main", "registry.example.com/acme/widgets:0123456"],
    "digest": "sha256:" + "ab" * 32,
    "environment": "staging",
    "url": "https://buildhook.example.com/builds/42",
}


# --- the receiver ----------------------------------------------------------------

@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # (status, body, extra headers, seconds to sleep first), consumed one per request; then 200.
    plan: list[tuple[int, bytes, dict[str, str], float]] = field(default_factory=list)

    def answer(self, status: int, body: bytes = b"", times: int = 1, headers: dict[str, str] | None = None,
               sleep: float = 0.0) -> None:
        self.plan.extend([(status, body, headers or {}, sleep)] * times)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.requests.append(Received("POST", self.path, dict(self.headers.items()), body))
                status, answer, headers, sleep = state.plan.pop(0) if state.plan else (200, b"thanks", {}, 0.0)
            if sleep:
                time.sleep(sleep)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the client gave up (timeout test)
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/deploy"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def independent_verify(body: bytes, header: str, secret: str, tolerance: int = 300) -> bool:
    """Exactly what the README shows receivers."""
    items = [part.strip().partition("=")[::2] for part in header.split(",")]
    t = dict(items).get("t", "")
    if not t.isdecimal() or abs(time.time() - int(t)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), v.encode()) for k, v in items if k == "v1")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def send(receiver: Receiver, secret: str | None = SECRET, **kwargs) -> tuple[SendResult, bytes, str]:
    body = render_body("build.succeeded", PAYLOAD)
    delivery = new_delivery_id()
    kwargs.setdefault("now", lambda: float(NOW))
    return send_webhook(receiver.url, "build.succeeded", body, secret, delivery, **kwargs), body, delivery


# --- sending -------------------------------------------------------------------

def test_success_sends_the_exact_headers_and_body(receiver: Receiver) -> None:
    result, body, delivery = send(receiver, extra_headers={"X-Tenant": "acme", EVENT_HEADER: "forged",
                                                           SIGNATURE_HEADER.lower(): "t=1,v1=00"})
    assert result.ok and not result.retryable and result.status_code == 200
    assert result.body_excerpt == "thanks" and result.duration_ms >= 0
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/hooks/deploy")
    assert got.body == body == (
        b'{"data":' + json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True).encode()
        + b',"event":"build.succeeded"}'
    )
    assert {k.lower() for k in got.headers} == {  # requests' own five, ours, and the extra one
        "host", "accept", "accept-encoding", "connection", "content-length", "content-type", "user-agent",
        "x-buildhook-signature", "x-buildhook-event", "x-buildhook-delivery", "x-tenant"}
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Content-Length"] == str(len(body))
    assert got.headers["User-Agent"] == USER_AGENT and USER_AGENT.startswith("buildhook/")
    assert got.headers[EVENT_HEADER] == "build.succeeded"
    assert got.headers[DELIVERY_HEADER] == delivery and len(delivery) == 32 and uuid.UUID(hex=delivery)
    assert got.headers["X-Tenant"] == "acme"
    signature = got.headers[SIGNATURE_HEADER]
    assert signature == sign(body, SECRET, NOW)
    assert signature.startswith(f"t={NOW},v1=") and len(signature.split("v1=")[1]) == 64
    assert sorted(k for k in got.headers if k.lower().startswith("x-buildhook-")) == sorted(
        [SIGNATURE_HEADER, EVENT_HEADER, DELIVERY_HEADER])
    assert verify_signature(got.body, signature, SECRET, now=NOW + 10)
    assert independent_verify(got.body, signature, SECRET)


def test_unsigned_when_no_secret(receiver: Receiver) -> None:
    result, _, _ = send(receiver, secret=None)
    assert result.ok
    assert SIGNATURE_HEADER not in receiver.requests[0].headers


def test_retries_reuse_the_delivery_id_and_5xx_is_retryable(receiver: Receiver) -> None:
    receiver.answer(500, b"upstream exploded", times=2)
    body, delivery = render_body("image.pushed", PAYLOAD), new_delivery_id()
    results = [send_webhook(receiver.url, "image.pushed", body, SECRET, delivery, now=lambda i=i: NOW + i)
               for i in range(3)]
    assert [(r.status_code, r.ok, r.retryable) for r in results] == [
        (500, False, True), (500, False, True), (200, True, False)]
    assert results[0].body_excerpt == "upstream exploded"
    assert {r.headers[DELIVERY_HEADER] for r in receiver.requests} == {delivery}
    assert [r.headers[SIGNATURE_HEADER].split(",")[0] for r in receiver.requests] == [
        f"t={NOW}", f"t={NOW + 1}", f"t={NOW + 2}"]


@pytest.mark.parametrize("status, retryable", [(410, False), (400, False), (404, False),
                                               (408, True), (429, True), (503, True)])
def test_status_classification(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.answer(status, b"x" * 2000)
    result, _, _ = send(receiver)
    assert (result.status_code, result.ok, result.retryable) == (status, False, retryable)
    assert result.body_excerpt == "x" * 500


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.answer(302, headers={"Location": receiver.url + "/elsewhere"})
    result, _, _ = send(receiver)
    assert (result.status_code, result.ok, result.retryable) == (302, False, False)
    assert len(receiver.requests) == 1


def test_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.answer(200, sleep=2.0)
    started = time.monotonic()
    result, _, _ = send(receiver, timeout=0.5)
    assert time.monotonic() - started < 1.8
    assert (result.status_code, result.ok, result.retryable) == (None, False, True)
    assert "Timeout" in result.body_excerpt


def test_connection_refused_is_retryable_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = closed_port_url() + "/T000/B000/tok-in-path?key=tok-in-query"
    result = send_webhook(url, "build.failed", b"{}", SECRET, new_delivery_id())
    assert (result.status_code, result.ok, result.retryable) == (None, False, True)
    assert "ConnectionError" in result.body_excerpt
    for text in (repr(result), caplog.text):
        assert SECRET not in text and "tok-in-path" not in text and "tok-in-query" not in text


def test_invalid_url_or_header_is_permanent(receiver: Receiver) -> None:
    for url, headers in (("http://", None), ("not a url", None), (receiver.url, {"X-Evil": "a\r\nX-Injected: 1"}),
                         (receiver.url, {"X-Name": "\u2603"})):
        result = send_webhook(url, "build.failed", b"{}", SECRET, new_delivery_id(), extra_headers=headers)
        assert (result.status_code, result.ok, result.retryable) == (None, False, False), url
        assert SECRET not in repr(result)
    assert receiver.requests == []


def test_secret_never_leaks(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.answer(500, f"you sent {SECRET}".encode())  # even a receiver echoing it back
    result, _, _ = send(receiver)
    assert SECRET not in repr(result) and SECRET not in str(asdict(result))
    assert SECRET not in caplog.text and "delivery" in caplog.text
    assert result.body_excerpt == "you sent ***"
    with pytest.raises(ValueError) as excinfo:
        sign(b"{}", "", NOW)
    assert SECRET not in str(excinfo.value)


# --- verification ----------------------------------------------------------------

def test_verification_failures() -> None:
    body = render_body("deployment.requested", PAYLOAD)
    header = sign(body, SECRET, NOW)
    assert verify_signature(body, header, SECRET, now=NOW)
    assert verify_signature(body, header, SECRET, now=NOW - 300)  # at the edge, both ways
    assert not verify_signature(body + b" ", header, SECRET, now=NOW)
    assert not verify_signature(body.replace(b"staging", b"prod"), header, SECRET, now=NOW)
    assert not verify_signature(body, header, "another-secret", now=NOW)
    assert not verify_signature(body, header, SECRET, now=NOW + 301)
    assert not verify_signature(body, header, SECRET, now=NOW + 3600, tolerance=300)
    clock = int(time.time())  # the README's receiver reads the real clock; NOW was taken at import
    fresh = sign(body, SECRET, clock)
    assert independent_verify(body, fresh, SECRET)
    assert not independent_verify(body + b" ", fresh, SECRET)
    assert not independent_verify(body, fresh, "another-secret")
    assert not independent_verify(body, sign(body, SECRET, clock - 400), SECRET)
    assert not independent_verify(body, sign(body, SECRET, clock + 400), SECRET)
    for bad in ("", "v1=" + header.split("v1=")[1], f"t={NOW}", f"t=x{NOW},v1=00", "garbage",
                f"t={NOW},v1=é", f"t=\u0661{NOW},{header.split(',')[1]}"):
        assert not verify_signature(body, bad, SECRET, now=NOW), bad
        assert not independent_verify(body, bad, SECRET), bad
    assert not verify_signature(body, f"t={NOW},t={NOW},{header.split(',')[1]}", SECRET, now=NOW)  # ambiguous


def test_verification_with_rotated_secrets() -> None:
    body = render_body("build.succeeded", PAYLOAD)
    now = int(time.time())  # independent_verify reads the real clock
    old, new = sign(body, "old-secret", now), sign(body, "new-secret", now)
    header = f"{old},v1={new.split('v1=')[1]}"
    assert header.count("v1=") == 2
    for secret in ("old-secret", "new-secret"):
        assert verify_signature(body, header, secret, now=now)
        assert independent_verify(body, header, secret)
    assert not verify_signature(body, header, "third-secret", now=now)
    assert verify_signature(body, header.upper().replace("T=", "t=").replace("V1=", "v1="), "new-secret", now=now)


# --- bodies ----------------------------------------------------------------------

def test_slack_rendering() -> None:
    message = json.loads(render_body("build.succeeded", PAYLOAD, style="slack"))
    everything = json.dumps(message)
    assert set(message) == {"text", "blocks"}
    for expected in ("acme/widgets", "main", "0123456", "staging", "sha256:abab", PAYLOAD["url"],
                     "registry.example.com/acme/widgets:main", "Build succeeded"):
        assert expected in everything, expected
    assert "acme/widgets" in message["text"] and PAYLOAD["url"] in message["text"]


def test_slack_escapes_and_handles_unknown_events() -> None:
    message = json.loads(render_body("mystery.event", {"repository": "<!channel> & co", "note": "hi"},
                                     style="slack"))
    assert "mystery.event" in message["text"]
    assert "&lt;!channel&gt; &amp; co" in message["text"] and "<!channel>" not in json.dumps(message)
    bare = json.loads(render_body("mystery.event", {}, style="slack"))
    assert "mystery.event" in bare["text"] and bare["blocks"]
    link = json.loads(render_body("build.failed", {"url": "javascript:alert(1)"}, style="slack"))
    assert "<javascript" not in link["text"]
    with pytest.raises(ValueError):
        render_body("build.failed", {}, style="xml")


# --- backoff ---------------------------------------------------------------------

def test_backoff_bounds() -> None:
    rng = random.Random(1234)
    for attempt in range(1, 40):
        ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
        samples = [backoff_seconds(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # full jitter: spread over the whole range
    assert backoff_seconds(10_000, rng=rng) <= 600.0
    assert backoff_seconds(3, rng=random.Random(7)) == backoff_seconds(3, rng=random.Random(7))
    assert backoff_seconds(1, base=5, cap=1, rng=rng) <= 1
    with pytest.raises(ValueError):
        backoff_seconds(0)


# --- refusing buildhook's own origins ---------------------------------------------------

FORBIDDEN = ["https://buildhook.example.com", "0.0.0.0:8000"]


@pytest.mark.parametrize("url", [
    "https://buildhook.example.com/webhooks/github",
    "HTTPS://BuildHook.Example.COM:443/api",
    "https://buildhook.example.com./x",
    "http://127.0.0.1:8000/webhooks",
    "http://localhost:8000/webhooks",
    "http://LOCALHOST:8000",
    "https://localhost:8000",
    "http://[::1]:8000/",
    "http://127.1:8000/",
    "http://2130706433:8000/",
    "http://user:pw@127.0.0.1:8000/",
    "file:///etc/passwd",
    "ftp://example.com/x",
    "gopher://example.com",
    "http:///no-host",
    "http://example.com:notaport/",
    "example.com/hook",
])
def test_refused_targets(url: str) -> None:
    with pytest.raises(InputError):
        refuse_internal_target(url, FORBIDDEN)


@pytest.mark.parametrize("url", [
    "https://deploy.example.com/hooks",
    "http://buildhook.example.com/x",  # another scheme, another origin
    "https://buildhook.example.com:8443/x",  # another port
    "http://127.0.0.1:9000/hook",
    "http://localhost:8001/",
    "https://hooks.slack.com/services/T000/B000/XXXX",
])
def test_allowed_targets(url: str) -> None:
    refuse_internal_target(url, FORBIDDEN)


def test_localhost_and_loopback_are_one_host() -> None:
    with pytest.raises(InputError):
        refuse_internal_target("http://127.0.0.1:8000/x", ["http://localhost:8000"])
    with pytest.raises(InputError):
        refuse_internal_target("http://localhost/x", ["http://127.0.0.1"])
    refuse_internal_target("http://localhost:8000/x", ["http://127.0.0.1:9000", ""])
    with pytest.raises(ValueError):
        refuse_internal_target("https://deploy.example.com", ["ftp://nope"])
