"""The end-to-end benchmark's HTTP plumbing: a lean keep-alive client and the callback sink, on asyncio.

Rule: the benchmark's own side must cost little and the same for both systems under test, so both sides are
plain asyncio protocols over httptools' C parser (what uvicorn uses): one request per connection at a time,
bodies joined once, no per-request task. The sink answers `200` with an empty body to every request, and
hands the request's target and body to a callback; what a callback means is the caller's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httptools

__all__ = ["CallbackServer", "HttpConnection", "percentile"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one request at a time (`request` writes it and awaits the answer)."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's TCPTransport is not an asyncio.Transport subclass
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.open = False

    @classmethod
    async def connect(cls, host: str, port: int) -> HttpConnection:
        _, conn = await asyncio.get_running_loop().create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionError(f"connection lost: {exc}" if exc else "connection closed"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            w = self.waiter
            if w is not None and not w.done():
                w.set_exception(ConnectionError(f"unreadable HTTP response: {exc}"))
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.chunks)
        self.chunks = []
        if not self.parser.should_keep_alive():
            self.open = False
            self.transport.close()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result((self.parser.get_status_code(), body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one whole request (`data`, head and body) and return the answer's status and body."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _SinkConnection(asyncio.Protocol):
    def __init__(self, server: CallbackServer) -> None:
        self.server = server
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.target: list[bytes] = []
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.target.append(url)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        target, body = b"".join(self.target), b"".join(self.chunks)
        self.target, self.chunks = [], []
        self.server.on_request(target, body)  # looked up per request: the handler changes between runs
        self.transport.write(_OK)
        if not self.parser.should_keep_alive():
            self.transport.close()


class CallbackServer:
    """An HTTP server on 127.0.0.1 that answers every request 200 and passes (target, body) to `on_request`."""

    def __init__(self, on_request: Callable[[bytes, bytes], None]) -> None:
        self.on_request = on_request
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _SinkConnection(self), host, port, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank p-th percentile of `sorted_values` (the value at rank ceil(p/100 * n)); 0 when empty."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = -(-p * n // 100)
    return sorted_values[min(max(int(rank), 1), n) - 1]
