"""Where outbound webhooks and docker deploys may go: public addresses, never buildhook itself.

A webhook URL's host is resolved (``socket.getaddrinfo``) when it is created (a
quick 400) and again at every send; it is refused when any address it resolves
to is loopback, link-local, private, unspecified, multicast, reserved or
otherwise not public, unless ``BUILDHOOK_ALLOW_PRIVATE_TARGETS`` lists it (an
IP address, a CIDR network, or a ``host[:port]`` name), and when it is
buildhook's own ``BUILDHOOK_PUBLIC_URL`` or listen address, whatever the name.
The sender then connects to the address that was checked (``PinnedAdapter`` in
``builder/notify/webhooks.py``), so a second DNS answer cannot redirect it.

A docker deploy target's engine is ``unix://`` (always allowed) or
``tcp://host:port`` listed in ``BUILDHOOK_ALLOW_PRIVATE_TARGETS`` (by name or
address); the engine is then contacted at the address that was checked.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from builder.errors import InputError
from builder.notify.webhooks import refuse_internal_target

ALLOW_VARIABLE = "BUILDHOOK_ALLOW_PRIVATE_TARGETS"
DOCKER_PORT = 2375
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(InputError):
    """An outbound target buildhook will not contact: a 400 when created, a permanent failure when sent."""


@dataclass(frozen=True)
class AllowedTarget:
    """One entry of ``BUILDHOOK_ALLOW_PRIVATE_TARGETS``: a network, or a host name; any port or one."""

    network: IPNetwork | None = None
    name: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> "AllowedTarget":
        entry = entry.strip()
        try:
            return cls(network=ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
        try:
            parts = urlsplit(f"//{entry}")
            port, host = parts.port, parts.hostname
        except ValueError:
            raise ValueError(f"{entry!r} is not an address, a network or host[:port]") from None
        if not host or parts.path or parts.query or "@" in parts.netloc:
            raise ValueError(f"{entry!r} is not an address, a network or host[:port]")
        try:
            return cls(network=ipaddress.ip_network(host), port=port)
        except ValueError:
            return cls(name=_name(host), port=port)

    def matches(self, name: str, address: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address.version == self.network.version and address in self.network
        return self.name == _name(name)


def parse_allow_list(entries: Iterable[str]) -> tuple[AllowedTarget, ...]:
    """``ValueError`` naming the bad entry."""
    return tuple(AllowedTarget.parse(entry) for entry in entries if entry.strip())


@dataclass(frozen=True)
class TargetPolicy:
    allowed: tuple[AllowedTarget, ...] = ()
    own_origins: tuple[str, ...] = ()  # BUILDHOOK_PUBLIC_URL, and the listen address when known

    def allows(self, name: str, address: IPAddress | None, port: int) -> bool:
        return any(entry.matches(name, address, port) for entry in self.allowed)


@dataclass(frozen=True)
class CheckedTarget:
    host: str
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all allowed; empty: it did not resolve


def check_url(url: str, policy: TargetPolicy, resolve_names: bool = True) -> CheckedTarget:
    """Resolve ``url``'s host and check every address; ``TargetRefused`` (or ``InputError`` for a
    URL that is not http(s)) when buildhook must not send there. ``resolve_names=False`` (when a
    target is created): only addresses written in the URL and ``localhost`` are checked, no DNS
    query is made; every send resolves and checks again."""
    refuse_internal_target(url, policy.own_origins)  # the scheme, and buildhook's own names
    parts = urlsplit(url.strip())
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme.lower() == "https" else 80)
    addresses = _resolve(host, port) if resolve_names or _is_local_name(host) else []
    for address in addresses:
        kind = _refused_kind(address)
        if kind and not policy.allows(host, address, port):
            raise TargetRefused(f"refused: {address} is {kind} address; list it in {ALLOW_VARIABLE} to allow it")
    own = _own_endpoints(policy.own_origins) if addresses else set()  # nothing resolved: no lookup of our own
    for address in addresses:
        if (address, port) in own or (address.is_loopback and (_LOOPBACK, port) in own):
            raise TargetRefused(f"refused: {host}:{port} ({address}) is buildhook itself")
    return CheckedTarget(host, port, tuple(str(a) for a in addresses))


def check_docker_host(docker_host: str | None, policy: TargetPolicy) -> str | None:
    """The engine URL to connect to for a docker target's ``docker_host`` (None: the default
    engine); ``TargetRefused`` unless it is ``unix://`` or a listed ``tcp://host:port``."""
    if not docker_host:
        return None
    if docker_host.startswith("unix://"):
        return docker_host
    parts = urlsplit(docker_host)
    try:
        host, port = parts.hostname, parts.port or DOCKER_PORT
    except ValueError:
        host, port = None, 0
    if parts.scheme != "tcp" or not host or parts.path not in ("", "/") or "@" in parts.netloc:
        raise TargetRefused(f"refused: docker host {docker_host!r} must be unix://PATH or tcp://HOST:PORT")
    if policy.allows(host, None, port):  # listed by name: the operator vouches for it
        return docker_host
    addresses = _resolve(host, port)
    if addresses and all(policy.allows(host, address, port) for address in addresses):
        shown = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
        return f"tcp://{shown}:{port}"  # the address that was checked
    raise TargetRefused(f"refused: docker host tcp://{host}:{port} is not listed in {ALLOW_VARIABLE}; "
                        "only unix:// engines and listed tcp:// engines are allowed")


# --- addresses -----------------------------------------------------------------------

_LOOPBACK = ipaddress.ip_address("127.0.0.1")  # stands for every loopback address in _own_endpoints


def _name(host: str) -> str:
    return host.lower().rstrip(".")


def _is_local_name(host: str) -> bool:
    """An address literal or a ``localhost`` name: resolving it asks no DNS server."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.lower().rstrip(".") == "localhost" or host.lower().rstrip(".").endswith(".localhost")
    return True


def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (IPv4-mapped IPv6 as IPv4), in the resolver's order; [] if none."""
    if not host:
        return []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    found: list[IPAddress] = []
    for *_rest, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address not in found:
            found.append(address)
    return found


def _refused_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not a public one ("a private"), or None."""
    for kind, refused in (("a loopback", address.is_loopback), ("a link-local", address.is_link_local),
                          ("an unspecified", address.is_unspecified), ("a multicast", address.is_multicast),
                          ("a private", address.is_private), ("a reserved", address.is_reserved),
                          ("a non-public", not address.is_global)):
        if refused:
            return kind
    return None


@functools.lru_cache(maxsize=8)
def _own_endpoints(origins: tuple[str, ...]) -> frozenset[tuple[IPAddress, int]]:
    """(address, port) where buildhook answers, from its origins resolved; loopback and wildcard
    bind addresses count as every loopback address."""
    endpoints = set()
    for origin in filter(None, (o.strip() for o in origins)):
        parts = urlsplit(origin if "://" in origin else f"//{origin}")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            continue
        for address in _resolve(parts.hostname or "", port):
            endpoints.add((_LOOPBACK if address.is_loopback or address.is_unspecified else address, port))
    return frozenset(endpoints)
