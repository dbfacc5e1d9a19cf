"""A TCP forwarder a test puts between a process and PostgreSQL or Redis, to cut it.

`cut()` is the service going away: every open connection is closed under its client, and
new ones are refused (the port stops listening: "connection refused", as when the server
is down or restarting). `restore()` listens on the same port again, so the clients' URLs
stay valid and they must reconnect by themselves, which is what a test of an outage asks.

Threads, not asyncio: each connection is two blocking pumps, and a test drives the proxy
from its own (synchronous) thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

ACCEPT_POLL_SECONDS = 0.1
CHUNK = 65536


class OutageProxy:
    """Forwards 127.0.0.1:<port> to `target`; see the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0  # chosen by the system at the first start
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._up = False
        self.connections = 0  # accepted since start, for the tests' own checks

    # --- the switch -------------------------------------------------------------------

    def start(self) -> OutageProxy:
        self._listen()
        return self

    def cut(self) -> None:
        """Close every open connection and refuse new ones."""
        with self._lock:
            self._up = False
            listener, self._listener = self._listener, None
            sockets, self._open = set(self._open), set()
        if listener is not None:
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        """Listen on the same port again."""
        self._listen()

    def stop(self) -> None:
        self.cut()

    def __enter__(self) -> OutageProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def is_up(self) -> bool:
        return self._up

    # --- forwarding ---------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The closed connections' TIME_WAIT must not keep the port from listening again.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
            self._up = True
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name=f"outage-proxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    def _accept(self, listener: socket.socket) -> None:
        # Polls with a timeout: closing a socket does not wake a thread blocked in accept().
        while self._up and self._listener is listener:
            try:
                client, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if not self._up:
                    _close(client)
                    _close(upstream)
                    return
                self._open.update((client, upstream))
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="outage-proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end the pair, as a server or client closing would.
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    # shutdown() first: it wakes the pump blocked in recv() on this socket.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
