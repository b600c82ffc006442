"""Outbound targets: redacted URLs, refused addresses, the allow list, sending to the checked address.

Nothing here connects anywhere but 127.0.0.1: refused targets are refused before any connection.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from builder.errors import InputError
from builder.notify.targets import TargetPolicy, TargetRefused, check_docker_host, check_url, parse_allow_list
from builder.notify.urls import redact_url
from builder.notify.webhooks import new_delivery_id, send_webhook
from builder.settings import ConfigError, Settings


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/services/****"),
    ("https://hooks.slack.com/workflows/T01/A02/123/abc", "https://hooks.slack.com/workflows/****"),
    ("https://discord.com/api/webhooks/123456789012345678/tok_en-x", "https://discord.com/api/webhooks/****"),
    ("https://canary.discordapp.com/api/v10/webhooks/1/2", "https://canary.discordapp.com/api/v10/webhooks/****"),
    ("https://deployer:s3cret@deploy.example.com:8443/hook", "https://****:****@deploy.example.com:8443/hook"),
    ("https://ghp_tokenonly@deploy.example.com/hook", "https://****@deploy.example.com/hook"),
    ("https://deploy.example.com/hook?token=abc&env=prod", "https://deploy.example.com/hook?token=****&env=****"),
    ("https://deploy.example.com/hook?abcdef", "https://deploy.example.com/hook?****"),
    ("https://deploy.example.com/hook#fragment", "https://deploy.example.com/hook"),
    ("https://ci.example.com/hooks/a1b2c3d4e5f6a7b8c9d0/run", "https://ci.example.com/hooks/****/run"),
    ("https://ci.example.com/deploy-webhook-for-production", "https://ci.example.com/deploy-webhook-for-production"),
    ("https://x.webhook.office.com/webhookb2/6f1c0a8e-1111-2222-3333-444455556666@aaaa/IncomingWebhook/"
     "0123456789abcdef0123456789abcdef/x", "https://x.webhook.office.com/webhookb2/****/IncomingWebhook/****/x"),
    ("HTTP://Deploy.Example.COM/Hook", "http://deploy.example.com/Hook"),
    ("http://[::1]:9000/hook?k=v", "http://[::1]:9000/hook?k=****"),
    ("not a url", "****"),
    ("http://host:notaport/", "****"),
])
def test_redact_url_keeps_scheme_host_and_port_and_hides_the_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


def policy(*allowed: str, own: tuple[str, ...] = ()) -> TargetPolicy:
    return TargetPolicy(parse_allow_list(allowed), own)


@pytest.mark.parametrize("url, reason", [
    ("http://10.0.0.5/hook", "refused: 10.0.0.5 is a private address; list it in BUILDHOOK_ALLOW_PRIVATE_TARGETS "
                             "to allow it"),
    ("http://192.168.1.20:8080/hook", "192.168.1.20 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://127.0.0.1:9000/hook", "127.0.0.1 is a loopback address"),
    ("http://localhost:9000/hook", "127.0.0.1 is a loopback address"),
    ("http://2130706433:9000/hook", "127.0.0.1 is a loopback address"),
    ("http://[::1]:9000/hook", "::1 is a loopback address"),
    ("http://[::ffff:10.0.0.7]/hook", "10.0.0.7 is a private address"),
    ("http://0.0.0.0:9000/hook", "0.0.0.0 is an unspecified address"),
    ("http://224.0.0.1/hook", "224.0.0.1 is a multicast address"),
    ("http://100.64.0.1/hook", "100.64.0.1 is a non-public address"),
    ("http://[fd00::1]/hook", "fd00::1 is a private address"),
])
def test_non_public_addresses_are_refused_unless_listed(url: str, reason: str) -> None:
    with pytest.raises(TargetRefused, match=reason.replace("[", r"\[").replace(".", r"\.")):
        check_url(url, policy())


def test_the_allow_list_takes_addresses_networks_and_names_with_an_optional_port() -> None:
    assert check_url("http://127.0.0.1:9000/h", policy("127.0.0.1")).addresses == ("127.0.0.1",)
    assert check_url("http://localhost:9000/h", policy("127.0.0.0/8")).addresses == ("127.0.0.1",)
    assert check_url("http://localhost:9000/h", policy("localhost:9000")).port == 9000
    assert check_url("http://LOCALHOST.:9000/h", policy("localhost")).host == "localhost."
    assert check_url("http://10.1.2.3:2375/h", policy("10.0.0.0/8")).addresses == ("10.1.2.3",)
    with pytest.raises(TargetRefused):
        check_url("http://localhost:9001/h", policy("localhost:9000"))  # another port
    with pytest.raises(TargetRefused):
        check_url("http://127.0.0.2/h", policy("127.0.0.1"))
    public = check_url("https://93.184.216.34/hook", policy())  # checked, not contacted
    assert (public.port, public.addresses) == (443, ("93.184.216.34",))
    assert check_url("https://name.invalid/hook", policy()).addresses == ()  # checked again when sent


def test_buildhook_itself_is_refused_under_any_name_even_when_its_address_is_allowed() -> None:
    own = policy("127.0.0.1", "::1", own=("http://127.0.0.1:8000", "0.0.0.0:8100"))
    for url in ("http://127.0.0.1:8000/hooks/github", "http://localhost:8000/api/triggers",
                "http://[::1]:8000/", "http://2130706433:8000/", "http://localhost:8100/", "http://127.0.0.1:8100/"):
        with pytest.raises(InputError, match="buildhook itself"):
            check_url(url, own)
    assert check_url("http://localhost:8001/", own).addresses == ("127.0.0.1",)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1/", "http:///no-host", "ftp://x.test/"])
def test_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(InputError):
        check_url(url, policy("127.0.0.1"))


def test_docker_hosts_are_unix_sockets_or_listed_tcp_engines() -> None:
    assert check_docker_host(None, policy()) is None
    assert check_docker_host("unix:///var/run/docker.sock", policy()) == "unix:///var/run/docker.sock"
    with pytest.raises(TargetRefused, match="docker host tcp://10.1.2.3:2375 is not listed in "
                                            "BUILDHOOK_ALLOW_PRIVATE_TARGETS"):
        check_docker_host("tcp://10.1.2.3:2375", policy())
    with pytest.raises(TargetRefused):
        check_docker_host("tcp://93.184.216.34:2375", policy())  # public, but not listed either
    assert check_docker_host("tcp://10.1.2.3:2375", policy("10.1.2.3")) == "tcp://10.1.2.3:2375"
    assert check_docker_host("tcp://10.1.2.3:2375", policy("10.0.0.0/8")) == "tcp://10.1.2.3:2375"
    assert check_docker_host("tcp://localhost:2375", policy("127.0.0.1")) == "tcp://127.0.0.1:2375"  # as checked
    assert check_docker_host("tcp://engine.internal:2376", policy("engine.internal:2376")) == \
        "tcp://engine.internal:2376"
    with pytest.raises(TargetRefused):
        check_docker_host("tcp://10.1.2.3:2376", policy("10.1.2.3:2375"))
    for other in ("ssh://root@10.1.2.3", "http://10.1.2.3:2375", "10.1.2.3:2375", "tcp://", "npipe:////./pipe/x"):
        with pytest.raises(TargetRefused, match="must be unix://PATH or tcp://HOST:PORT"):
            check_docker_host(other, policy("10.1.2.3"))


def test_the_variable_is_read_and_a_bad_entry_stops_the_service() -> None:
    settings = Settings.from_env({"BUILDHOOK_SECRET_KEY": "k",
                                  "BUILDHOOK_ALLOW_PRIVATE_TARGETS": " 127.0.0.1, 10.0.0.0/8 ,deploy.internal:8080,"})
    assert settings.allow_private_targets == ("127.0.0.1", "10.0.0.0/8", "deploy.internal:8080")
    assert check_url("http://10.9.9.9/h", settings.target_policy()).addresses == ("10.9.9.9",)
    for bad in ("http://10.0.0.1/x", "10.0.0.0/33", "user@host", "host:port"):
        with pytest.raises(ConfigError, match="BUILDHOOK_ALLOW_PRIVATE_TARGETS"):
            Settings.from_env({"BUILDHOOK_SECRET_KEY": "k", "BUILDHOOK_ALLOW_PRIVATE_TARGETS": bad})


# --- sending to the address that was checked ---------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Recorder.hosts.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_port() -> Iterator[int]:
    Recorder.hosts = []
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), Recorder))


def test_the_sender_connects_to_the_checked_address_whatever_the_name_resolves_to(http_port: int) -> None:
    # "pinned.invalid" resolves to nothing: only the checked address can have been used.
    result = send_webhook(f"http://pinned.invalid:{http_port}/hook", "build.failed", b"{}", None, new_delivery_id(),
                          connect_to="127.0.0.1", timeout=5)
    assert (result.status_code, result.ok) == (204, True)
    assert Recorder.hosts == [f"pinned.invalid:{http_port}"]


@pytest.fixture
def tls_port(tmp_path, monkeypatch) -> Iterator[int]:
    """An HTTPS receiver on 127.0.0.1 whose certificate names only pinned.test, trusted by requests."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Recorder.hosts = []
    yield from serve(server)


def test_https_to_the_checked_address_still_checks_the_certificate_against_the_name(tls_port: int) -> None:
    ok = send_webhook(f"https://pinned.test:{tls_port}/hook", "build.failed", b"{}", None, new_delivery_id(),
                      connect_to="127.0.0.1", timeout=5)
    assert (ok.status_code, ok.ok) == (204, True), ok.body_excerpt
    assert Recorder.hosts == [f"pinned.test:{tls_port}"]
    wrong = send_webhook(f"https://other.test:{tls_port}/hook", "build.failed", b"{}", None, new_delivery_id(),
                         connect_to="127.0.0.1", timeout=5)
    assert wrong.status_code is None and "SSL" in wrong.body_excerpt and len(Recorder.hosts) == 1
