"""TCP byte streams on the asyncio loop's own transports, for the outgoing HTTP client (callbacks, MO forwards).

Rule 1: a `LoopStream` behaves as AnyIO's TCP stream does for its one reader and one writer: `receive` returns
what has arrived (at most `max_bytes`), raises EndOfStream at the peer's end and BrokenResourceError when the
connection failed; `send` writes and waits only while the transport's buffer is above its high-water mark; both
raise ClosedResourceError once `aclose` was called. Cancellation works as for any awaited asyncio future; a send
cancelled while it waits for room has handed its bytes to the transport. `aclose` lets go of the socket at once:
bytes the peer has not taken yet are dropped, as AnyIO's stream drops them one loop turn after its close.
Rule 2: it does nothing else. AnyIO's stream makes every `send` and `receive` a checkpoint (a turn of the event
loop under a cancel scope). With it, gateway/_httpclient.py spent 40.4 us of CPU per request at best and 41.3 at
the median; with LoopStream, 27.4 and 31.5 (bench/http_client.py, bench/RESULTS.md 2026-11-25). A receive that
finds data returns all of it at once; a send that the kernel takes returns at once.
Rule 3: what arrives beyond READ_PAUSE_BYTES unread pauses reading until the reader catches up, so a peer cannot
fill the daemon's memory.
Rule 4: while `deadline` (the loop's clock) is set, a `receive` or `send` that has to wait raises DeadlineExceeded
(a TimeoutError) once it passes: one timer on the loop for that wait. A cancel scope around the request did the
same job for about 11 us more per request (bench/RESULTS.md, "A request's timeout without a cancel scope").

`connect_tcp` opens one (TCP_NODELAY set) when the running loop is asyncio's, and AnyIO's stream otherwise (trio),
and also for a host name with both IPv6 and IPv4 addresses: AnyIO races the two (happy eyeballs, RFC 8305), which
uvloop's connect cannot, so a host whose IPv6 route is broken still answers at once. TLS stays with AnyIO. The
SMPP connections stay on AnyIO's stream too: on LoopStream the end-to-end batch benchmark lost about a tenth of
its rate in interleaved runs (bench/RESULTS.md), the reader no longer yielding to the acks and commits between
reads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio import getaddrinfo

__all__ = ["READ_PAUSE_BYTES", "DeadlineExceeded", "LoopStream", "connect_tcp"]

READ_PAUSE_BYTES = 1 << 20
"""Unread bytes above which the stream stops reading from the socket (Rule 3)."""


class DeadlineExceeded(TimeoutError):
    """A wait of a LoopStream reached its `deadline` (Rule 4)."""


class _Protocol(asyncio.Protocol):
    __slots__ = ("buffered", "chunks", "drain", "eof", "error", "paused_reading", "paused_writing", "transport",
                 "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.eof = False
        self.error: BaseException | None = None
        self.paused_reading = False
        self.paused_writing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_PAUSE_BYTES and not self.paused_reading and self.transport is not None:
            self.paused_reading = True  # Rule 3
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter, self.waiter = self.waiter, None
        _settle(waiter)

    def _wake_writer(self) -> None:
        drain, self.drain = self.drain, None
        _settle(drain)

    async def wait(self, slot: str, deadline: float | None) -> None:
        """Wait until `_wake_reader` ("waiter") or `_wake_writer` ("drain") settles the future put in `slot`.

        Raises:
            DeadlineExceeded: the loop's clock reached `deadline` first (Rule 4).
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        setattr(self, slot, future)
        timer = None if deadline is None else loop.call_at(deadline, _expire, future)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            if getattr(self, slot) is future:
                setattr(self, slot, None)


def _settle(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded())


class LoopStream(anyio.abc.ByteStream):
    """A TCP connection on an asyncio transport (the module docstring gives the rules)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False
        self.deadline: float | None = None  # Rule 4: on the loop's clock (`loop.time()`, `anyio.current_time()`)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        p = self._protocol
        while not p.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if p.eof:
                if p.error is not None:
                    raise anyio.BrokenResourceError from p.error
                raise anyio.EndOfStream
            await p.wait("waiter", self.deadline)
        if self._closed:
            raise anyio.ClosedResourceError
        chunks = p.chunks
        # Everything that arrived since the last call, at most max_bytes: a busy peer's bytes come in as many
        # small reads, and the caller's work per call (a parser fed once) is cheaper for one large chunk than
        # for each small one.
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        if len(chunks) > 1:
            chunks.clear()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            chunks.appendleft(rest)
        p.buffered -= len(chunk)
        if p.paused_reading and p.buffered <= READ_PAUSE_BYTES // 2:
            p.paused_reading = False
            self._transport.resume_reading()
        return chunk

    def _check_writable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._protocol.error is not None or self._transport.is_closing():
            raise anyio.BrokenResourceError from self._protocol.error

    async def send(self, item: bytes) -> None:
        self._check_writable()
        try:
            self._transport.write(item)
        except (RuntimeError, OSError) as exc:  # uvloop raises RuntimeError on a transport closing under it
            raise anyio.BrokenResourceError from exc
        while self._protocol.paused_writing:
            self._check_writable()
            await self._protocol.wait("drain", self.deadline)
            if self._closed:
                raise anyio.ClosedResourceError

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        self._transport.write_eof()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._transport.get_write_buffer_size():
                self._transport.abort()  # bytes not sent yet would keep the socket open for as long as the peer
            else:  # does not read them
                self._transport.close()
            self._protocol._wake_reader()
            self._protocol._wake_writer()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return {
            anyio.abc.SocketAttribute.family: lambda: sock.family,
            anyio.abc.SocketAttribute.local_address: lambda: sock.getsockname(),
            anyio.abc.SocketAttribute.local_port: lambda: sock.getsockname()[1],
            anyio.abc.SocketAttribute.raw_socket: lambda: sock,
            anyio.abc.SocketAttribute.remote_address: lambda: sock.getpeername(),
            anyio.abc.SocketAttribute.remote_port: lambda: sock.getpeername()[1],
        }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def connect_tcp(host: str, port: int) -> anyio.abc.ByteStream:
    """A TCP connection to (host, port) with TCP_NODELAY: a LoopStream on asyncio, AnyIO's stream on trio or for
    a host name with addresses of both families.

    Raises:
        OSError: the connection could not be made.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        loop = None
    if loop is not None and not _is_ip(host):
        families = {info[0] for info in await getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        if len(families) > 1:
            loop = None  # IPv6 and IPv4: AnyIO races them
    if loop is None:
        stream = await anyio.connect_tcp(host, port)
        stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream
    transport, protocol = await loop.create_connection(_Protocol, host, port)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return LoopStream(transport, protocol)
