"""Raw HTTP over loopback for the end-to-end tests: requests built byte by byte, read back whole.

Not a test module. :func:`raw_request` sends exactly the bytes it is given (a
malformed Host, an absolute-form target, HTTP/1.0 without Host) and reads one
response; :func:`concurrent_requests` reaches each of a server's sync workers once.
Every read is bounded in time.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The port is free when this returns; a process that binds it a moment later
    can still lose a race, which :meth:`Server.start` handles by retrying.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --- raw HTTP ------------------------------------------------------------------------


def http_request(
    method: str = "GET",
    target: str = "/",
    *,
    host: str | bytes | None = "127.0.0.1",
    headers: Sequence[tuple[str, str | bytes]] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
    close: bool = True,
) -> bytes:
    """The exact bytes of a request. ``host=None`` sends no Host header at all.

    ``host`` may be ``bytes`` to send raw UTF-8 or control characters. A body gets a
    Content-Length; ``close`` adds ``Connection: close`` so the server ends the
    connection after answering.
    """
    lines = [f"{method} {target} {version}".encode("latin-1")]
    if host is not None:
        lines.append(b"Host: " + (host if isinstance(host, bytes) else host.encode("latin-1")))
    for name, value in headers:
        lines.append(name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass
class Response:
    """A response as read off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    #: Bytes the server sent after the framed body (or after the headers of a HEAD
    #: response) before it closed the connection: normally none.
    trailing: bytes = b""
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def has_header(self, name: str) -> bool:
        return bool(self.header_values(name))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        head = self.raw_head.decode("latin-1")
        return f"{head}{self.text[:500]}"


class IncompleteResponse(ConnectionError):
    """The server closed the connection or went silent before a whole response."""

    def __init__(self, message: str, received: bytes) -> None:
        super().__init__(f"{message}; received {received[:300]!r}")
        self.received = received


class Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.received = b""
        self.eof = False

    def _fill(self, timeout: float | None = None) -> bool:
        """Read more bytes; ``False`` at EOF. Raises TimeoutError at the deadline."""
        if self.eof:
            return False
        remaining = self.deadline - time.monotonic()
        if timeout is not None:
            remaining = min(remaining, timeout)
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        self.received += chunk
        return True

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise IncompleteResponse(f"connection closed before {marker!r}", self.received)
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise IncompleteResponse(f"connection closed {size - len(self.buffer)} bytes short", self.received)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self, timeout: float | None = None) -> bytes:
        """Everything until EOF, or until ``timeout`` passes with nothing new."""
        with suppress(TimeoutError):
            while self._fill(timeout):
                pass
        data, self.buffer = self.buffer, b""
        return data


def read_response(reader: Reader, method: str, linger: float) -> Response:
    while True:
        try:
            head = reader.until(b"\r\n\r\n")
        except TimeoutError:
            raise IncompleteResponse("no complete response head before the timeout", reader.received) from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        match = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", status_line)
        if match is None:
            raise IncompleteResponse(f"not an HTTP status line: {status_line!r}", reader.received)
        status = int(match.group(2))
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        if not 100 <= status < 200 or status == 101:
            break
    response = Response(match.group(1), status, match.group(3) or "", headers, b"", raw_head=head + b"\r\n\r\n")
    try:
        if method == "HEAD" or status in (101, 204, 304):
            # Nothing may follow; wait briefly to catch a server that sends a body anyway.
            response.trailing = reader.rest(timeout=linger)
            return response
        if "chunked" in (response.header("Transfer-Encoding") or "").lower():
            response.body = _read_chunked(reader)
        elif response.header("Content-Length") is not None:
            response.body = reader.exactly(int(response.header("Content-Length") or 0))
        else:
            response.body = reader.rest()
            if not reader.eof:
                raise IncompleteResponse("body without framing did not end before the timeout", reader.received)
            return response
    except TimeoutError:
        raise IncompleteResponse("the body did not arrive before the timeout", reader.received) from None
    if (response.header("Connection") or "").lower() == "close":
        response.trailing = reader.rest(timeout=linger)
    return response


def _read_chunked(reader: Reader) -> bytes:
    body = b""
    while True:
        size_line = reader.until(b"\r\n").split(b";", 1)[0].strip()
        size = int(size_line, 16)
        if size == 0:
            # Trailer fields, then the empty line.
            while reader.until(b"\r\n"):
                pass
            return body
        body += reader.exactly(size)
        reader.exactly(2)


def _method_of(data: bytes) -> str:
    return data.split(b" ", 1)[0].decode("latin-1")


def raw_request(port: int, data: bytes, timeout: float = 5.0, *, host: str = LOOPBACK, linger: float = 0.3) -> Response:
    """Send ``data`` exactly as given to ``host:port`` and read one response.

    The body is read by its framing (Content-Length, chunked, or until the server
    closes). A HEAD response (and 204/304) has no body: the reader waits at most
    ``linger`` seconds for stray bytes and keeps them in :attr:`Response.trailing`.
    Raises :class:`IncompleteResponse` if no whole response arrives within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(Reader(sock, deadline), _method_of(data), linger)


def concurrent_requests(
    port: int, requests: Sequence[bytes], timeout: float = 5.0, *, hold: float = 0.15, linger: float = 0.3
) -> list[Response]:
    """Send ``requests`` on as many connections held open at once, then read them all.

    Every connection first gets its request minus the final byte and is held for
    ``hold`` seconds: a gunicorn sync worker that accepted one blocks reading it,
    so with as many requests as workers each worker answers exactly one. That is how
    a test reaches every worker instead of hoping the kernel spreads connections.
    (A threaded worker holds several connections: there it only spreads them.)
    """
    deadline = time.monotonic() + timeout
    sockets: list[socket.socket] = []
    try:
        for data in requests:
            sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
            sockets.append(sock)
            sock.sendall(data[:-1])
        time.sleep(hold)
        for sock, data in zip(sockets, requests, strict=True):
            sock.sendall(data[-1:])
        return [
            read_response(Reader(sock, deadline), _method_of(data), linger)
            for sock, data in zip(sockets, requests, strict=True)
        ]
    finally:
        for sock in sockets:
            sock.close()


# --- sites and servers ----------------------------------------------------------------
