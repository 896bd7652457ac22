"""A TCP relay on a loopback port that a test can cut and restore: a database outage on demand.

    with Relay(("127.0.0.1", 5432)) as relay:
        url = f"postgres://postgres@127.0.0.1:{relay.port}/db"
        ...
        relay.cut()      # every open connection is reset, new ones are reset at once
        relay.stall()    # nothing is forwarded any more, nothing is closed either
        relay.restore()  # forwarding again (what a stall held back goes on its way)

A cut relay keeps its listening port (so ``restore()`` never races another process
for it) and answers each new connection with a reset, which a client sees at once as
"connection closed" — as when the database host is down, without waiting for timeouts.
A stalled relay is the opposite, a network that drops every packet: connections stay
open and new ones are accepted, but no byte crosses, so a client waits for an answer
that never comes (no server-side timeout can help: the server never hears of it).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class Relay:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._flowing = threading.Event()
        self._flowing.set()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name=f"relay-{self.port}", daemon=True)
        self._thread.start()

    # --- control ----------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every relayed connection and every new one until :meth:`restore`."""
        with self._lock:
            self._cut = True
            doomed = list(self._open)
            self._open.clear()
        for sock in doomed:
            _reset(sock)

    def stall(self) -> None:
        """Forward nothing, in either direction, and close nothing, until :meth:`restore`."""
        self._flowing.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._flowing.set()

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open) // 2

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()  # pumps holding data find their sockets reset and end
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        # A timeout lets the loop notice close() even if no client ever connects again.
        self._listener.settimeout(0.2)
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self._cut:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self.refused += 1
                _reset(client)
                continue
            with self._lock:
                if self._cut:
                    # Cut while we were connecting upstream.
                    doomed = True
                else:
                    doomed = False
                    self._open.update((client, upstream))
            if doomed:
                _reset(client)
                _reset(upstream)
                continue
            self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        # Either side finishing ends the pair: a half-open relayed connection helps no one.
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
        for sock in (source, sink):
            _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST, not a FIN: the peer fails at once instead of waiting."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        # Wakes a thread blocked in recv() on this socket; SHUT_RD sends nothing.
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
