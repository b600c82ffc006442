"""Real network faults for tests: a TCP proxy on loopback that can be cut, and a server that answers 503.

``SocketProxy`` forwards 127.0.0.1:PORT to a unix socket (the Docker Engine's) or to a
TCP address (a registry). ``cut()`` closes every connection under way and stops
listening, so new connections are refused, as when the component dies; ``resume()``
listens on the same port again, as when it comes back. ``cut_when(marker)`` does the
cut the moment ``marker`` passes from the upstream side (e.g. a build step's output),
``when_sent(marker, action)`` runs any action then; ``on_request(pattern, answer)``
answers a matching request itself (e.g. a 503) or, without an answer, cuts there.
"""

from __future__ import annotations

import errno
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"^(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n")


class SocketProxy:
    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream  # a unix socket path, or (host, port)
        self.port = 0
        self.requests: list[str] = []  # "METHOD /path?query" of each request seen, in order
        self.cuts = 0
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._marker: tuple[bytes, Callable[[], None]] | None = None
        self._requests: list[tuple[re.Pattern[str], bytes | None, Callable[[], None] | None]] = []
        self._stopped = threading.Event()
        # While cut, the port stays bound by a socket that does not listen (connections are refused),
        # so nothing else on the machine takes it before ``resume``.
        self._hold: socket.socket | None = None

    # --- control ------------------------------------------------------------------

    def start(self) -> SocketProxy:
        self._release()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:  # on a resume the old listener may still be closing (a thread's select holds it)
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or not self.port or time.monotonic() > deadline:
                    listener.close()
                    raise
                time.sleep(0.05)
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopped.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    resume = start

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        with self._lock:
            self.cuts += 1
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        self._stopped.set()
        if listener is not None:
            listener.close()
            self._hold_port()
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def cut_when(self, marker: bytes) -> None:
        """Cut as soon as ``marker`` comes from the upstream side."""
        self.when_sent(marker, self.cut)

    def when_sent(self, marker: bytes, action: Callable[[], None]) -> None:
        """Run ``action`` (once) as soon as ``marker`` comes from the upstream side."""
        self._marker = (marker, action)

    def on_request(self, pattern: str, answer: bytes | None = None,
                   then: Callable[[], None] | None = None) -> None:
        """A request whose "METHOD /path" matches ``pattern`` never reaches the upstream:
        ``answer`` (a raw HTTP response) goes back and the connection is closed, or, with no
        answer, the proxy is cut there. ``then`` runs afterwards."""
        self._requests.append((re.compile(pattern), answer, then))

    def stop(self) -> None:
        self.cut()
        self._release()

    def _hold_port(self) -> None:
        hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            hold.bind(("127.0.0.1", self.port))
        except OSError:
            hold.close()
            return
        self._hold = hold

    def _release(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.close()

    # --- forwarding ---------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                client, _addr = listener.accept()
            except (OSError, ValueError):
                return
            try:
                upstream = self._connect()
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _connect(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.upstream)
        else:
            sock = socket.create_connection(self.upstream, timeout=5)
            sock.settimeout(None)
        return sock

    def _pump(self, source: socket.socket, dest: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client:
                    match = _REQUEST_LINE.match(data)
                    if match:
                        request = f"{match[1].decode()} {match[2].decode()}"
                        self.requests.append(request)
                        for pattern, answer, then in self._requests:
                            if pattern.search(request):
                                if answer is None:
                                    self.cut()
                                else:
                                    source.sendall(answer)
                                    _close(source)
                                    _close(dest)
                                if then is not None:
                                    then()
                                return
                dest.sendall(data)
                marker = self._marker
                if not from_client and marker is not None and marker[0] in data:
                    self._marker = None
                    marker[1]()
        except OSError:
            pass
        finally:
            # Half-close: the other direction may still be answering.
            for sock in (dest,):
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def proxy_to(upstream: str | tuple[str, int]) -> Iterator[SocketProxy]:
    proxy = SocketProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def http_answer(status: int, reason: str, body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 response that closes its connection (what ``on_request`` sends back)."""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


@dataclass
class SilentServer:
    """A loopback server that accepts connections and never reads or answers: a peer that hangs."""

    port: int
    held: list[socket.socket]


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    silent = SilentServer(server.getsockname()[1], [])

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            silent.held.append(connection)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield silent
    finally:
        # Wake the blocked accept() and let its thread end before the descriptor is closed: a thread still
        # in accept() on a closed descriptor took the connections of the next socket given that number
        # (a later test's git server, whose clone then read "Empty reply from server").
        try:
            server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        thread.join(5)
        server.close()
        for connection in silent.held:
            connection.close()
