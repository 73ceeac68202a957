"""LoopStream (gateway/_stream.py) against real sockets on 127.0.0.1: what arrives, ends, fails, waits and pauses.

The peer is AnyIO's own stream on the same loop (a bare socket where it must not read), so each test drives both
ends. Every test runs on asyncio with uvloop and on the standard asyncio loop; `connect_tcp` on trio is covered by
the HTTP client's tests (tests/unit/gateway/test_httpclient.py), which run on trio too.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from gateway import _stream
from gateway._stream import DeadlineExceeded, LoopStream, connect_tcp

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"),
                        pytest.param(("asyncio", {}), id="asyncio")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[LoopStream, anyio.abc.SocketStream]]:
    """(ours, the peer): a LoopStream from connect_tcp, and the server side AnyIO accepted."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        ours = await connect_tcp("127.0.0.1", port)
        assert isinstance(ours, LoopStream)
        peer = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        async with peer:
            try:
                yield ours, peer
            finally:
                await ours.aclose()


async def receive_exactly(stream: anyio.abc.ByteStream, n: int) -> bytes:
    data = b""
    with anyio.fail_after(5):
        while len(data) < n:
            data += await stream.receive()
    return data


async def test_bytes_go_both_ways_and_tcp_nodelay_is_set() -> None:
    async with pair() as (ours, peer):
        sock = ours.extra(anyio.abc.SocketAttribute.raw_socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert ours.extra(anyio.abc.SocketAttribute.remote_port) == peer.extra(anyio.abc.SocketAttribute.local_port)
        await ours.send(b"GET / HTTP/1.1\r\n\r\n")
        assert await receive_exactly(peer, 18) == b"GET / HTTP/1.1\r\n\r\n"
        await peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert await receive_exactly(ours, 27) == b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_a_receive_takes_everything_that_arrived_up_to_max_bytes() -> None:
    async with pair() as (ours, peer):
        for i in range(50):
            await peer.send(b"%03d" % i)
        await anyio.sleep(0.05)  # every piece is in: one receive returns them joined
        assert await ours.receive() == b"".join(b"%03d" % i for i in range(50))
        await peer.send(b"abcdefghij")
        await anyio.sleep(0.05)
        assert await ours.receive(4) == b"abcd"  # the rest waits for the next call
        assert await ours.receive(4) == b"efgh"
        assert await ours.receive() == b"ij"


async def test_the_peer_closing_is_the_end_of_the_stream_after_its_last_bytes() -> None:
    async with pair() as (ours, peer):
        await peer.send(b"last words")
        await peer.aclose()
        assert await receive_exactly(ours, 10) == b"last words"
        with pytest.raises(anyio.EndOfStream):
            await ours.receive()
        with pytest.raises(anyio.EndOfStream):  # and stays so
            await ours.receive()


async def test_a_reset_connection_is_broken_for_both_directions() -> None:
    async with pair() as (ours, peer):
        raw = peer.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
        await peer.aclose()
        with anyio.fail_after(5), pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            while True:
                await ours.receive()
        with pytest.raises(anyio.BrokenResourceError):
            await ours.send(b"anyone there?")


async def test_after_aclose_both_directions_are_closed_and_a_waiting_receive_wakes() -> None:
    async with pair() as (ours, _peer):
        async with anyio.create_task_group() as tg:
            outcome: list[type[BaseException]] = []

            async def reader() -> None:
                try:
                    await ours.receive()
                except anyio.ClosedResourceError as exc:
                    outcome.append(type(exc))

            tg.start_soon(reader)
            await anyio.sleep(0.02)
            await ours.aclose()
        assert outcome == [anyio.ClosedResourceError]
        with pytest.raises(anyio.ClosedResourceError):
            await ours.send(b"x")
        with pytest.raises(anyio.ClosedResourceError):
            await ours.receive()


async def test_a_cancelled_receive_loses_nothing() -> None:
    async with pair() as (ours, peer):
        with anyio.move_on_after(0.05) as scope:
            await ours.receive()
        assert scope.cancelled_caught
        await peer.send(b"after the timeout")
        assert await receive_exactly(ours, 17) == b"after the timeout"


async def test_send_waits_while_the_peer_reads_nothing_and_goes_on_when_it_reads() -> None:
    # The peer is a bare socket that reads only when told (AnyIO's own stream would read everything into memory).
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = await connect_tcp("127.0.0.1", server.getsockname()[1])
        peer, _ = server.accept()
        with peer:
            peer.setblocking(False)
            block = b"x" * 65536
            sent = 0
            with anyio.move_on_after(0.5):
                while True:
                    sent += len(block)  # counted first: a send cancelled while it waits has written its bytes
                    await ours.send(block)
            assert 0 < sent < 64 << 20  # the kernel's buffers filled, then send waited for room
            got = 0
            async with anyio.create_task_group() as tg:
                async def drain() -> None:
                    nonlocal got
                    while got < sent + len(block):
                        await anyio.wait_readable(peer)
                        got += len(peer.recv(1 << 20))

                tg.start_soon(drain)
                with anyio.fail_after(5):
                    await ours.send(block)  # room again once the peer reads
            assert got == sent + len(block)
            await ours.aclose()


async def test_a_receive_that_waits_past_the_deadline_raises_and_one_that_finds_bytes_does_not() -> None:
    async with pair() as (ours, peer):
        ours.deadline = anyio.current_time() + 0.05
        started = anyio.current_time()
        with pytest.raises(DeadlineExceeded):
            await ours.receive()
        assert 0.04 <= anyio.current_time() - started < 1.0
        assert isinstance(DeadlineExceeded(), TimeoutError)
        await peer.send(b"late")
        await anyio.sleep(0.05)
        assert await ours.receive() == b"late"  # the deadline has passed, but nothing had to wait
        ours.deadline = None  # no deadline: a receive waits as long as it takes
        async with anyio.create_task_group() as tg:
            async def later() -> None:
                await anyio.sleep(0.1)
                await peer.send(b"in time")

            tg.start_soon(later)
            assert await receive_exactly(ours, 7) == b"in time"


async def test_a_send_that_waits_for_room_past_the_deadline_raises() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = await connect_tcp("127.0.0.1", server.getsockname()[1])
        assert isinstance(ours, LoopStream)
        peer, _ = server.accept()
        with peer:  # it never reads: the buffers fill and send waits
            ours.deadline = anyio.current_time() + 0.3
            with pytest.raises(DeadlineExceeded), anyio.fail_after(5):
                while True:
                    await ours.send(b"x" * 65536)
            await ours.aclose()


async def test_closing_with_bytes_the_peer_never_read_lets_go_of_the_socket_at_once() -> None:
    # A receiver that stopped reading must not keep the socket (and the bytes for it) for as long as it likes.
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = await connect_tcp("127.0.0.1", server.getsockname()[1])
        peer, _ = server.accept()
        with peer:
            with anyio.move_on_after(0.3):
                while True:
                    await ours.send(b"z" * 65536)  # until the kernel's buffers are full and some wait in ours
            assert isinstance(ours, LoopStream) and ours._transport.get_write_buffer_size() > 0
            await ours.aclose()
            await anyio.sleep(0.05)
            assert ours._transport.is_closing()
            assert ours._transport.get_extra_info("socket").fileno() == -1  # closed, not waiting to drain
            peer.setblocking(False)
            with anyio.fail_after(5):  # the peer gets what the kernel held, then the end: the rest was dropped
                while True:
                    await anyio.wait_readable(peer)
                    if not peer.recv(1 << 20):
                        break


async def test_unread_bytes_beyond_the_limit_pause_reading_until_the_reader_catches_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stream, "READ_PAUSE_BYTES", 256 * 1024)
    async with pair() as (ours, peer):
        total = 0
        with anyio.move_on_after(0.5):
            while True:
                total += 65536  # counted first: a send cancelled while it waits has written its bytes
                await peer.send(b"y" * 65536)
        assert ours._protocol.paused_reading
        assert ours._protocol.buffered <= 256 * 1024 + 256 * 1024  # one read past the limit at most
        got = 0
        async with anyio.create_task_group() as tg:
            async def finish() -> None:
                await peer.send(b"end")

            tg.start_soon(finish)
            with anyio.fail_after(5):
                while got < total + 3:
                    got += len(await ours.receive())
        assert got == total + 3 and not ours._protocol.paused_reading


async def test_a_refused_connection_raises_oserror() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(OSError):
        await connect_tcp("127.0.0.1", port)


async def test_a_host_name_of_one_family_gets_a_loop_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ipv4_only(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(_stream, "getaddrinfo", ipv4_only)  # whatever this host's /etc/hosts says of localhost
    with socket.create_server(("127.0.0.1", 0)) as server:
        stream = await connect_tcp("localhost", server.getsockname()[1])
        try:
            assert isinstance(stream, LoopStream)
        finally:
            await stream.aclose()


async def test_a_host_name_with_ipv6_and_ipv4_addresses_gets_anyios_happy_eyeballs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def both_families(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(_stream, "getaddrinfo", both_families)
    async with pair() as (_ours, _peer):
        pass  # an IP literal is never looked up: still a LoopStream (pair() checks it)
    with socket.create_server(("127.0.0.1", 0)) as server:
        stream = await connect_tcp("localhost", server.getsockname()[1])
        try:
            assert not isinstance(stream, LoopStream)
            assert stream.extra(anyio.abc.SocketAttribute.raw_socket).getsockopt(socket.IPPROTO_TCP,
                                                                                  socket.TCP_NODELAY)
        finally:
            await stream.aclose()

