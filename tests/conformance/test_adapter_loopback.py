"""The AnyIO adapter over real loopback sockets, on asyncio+uvloop and on trio."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from smpp import (
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    EnquireLink,
    SubmitSm,
    SubmitSmResp,
    encode_pdu,
)
from smpp._session import ConnectionClosed, Event, RequestReceived, Role, Session, SessionConfig, State
from smpp.adapter import ConnectionLost, EventHandler, ResponseTimeout, SmppConnection

pytestmark = pytest.mark.anyio

Serve = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def loopback(serve: Serve) -> AsyncIterator[anyio.abc.SocketStream]:
    """A listener on 127.0.0.1 with a free port running `serve`, and a client stream to it."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        stream = await anyio.connect_tcp("127.0.0.1", port)
        try:
            yield stream
        finally:
            tg.cancel_scope.cancel()


def smsc_serve(log: list[Event], *, answer_submits: bool = True) -> Serve:
    async def serve(stream: anyio.abc.SocketStream) -> None:
        conn: SmppConnection

        async def handler(ev: Event) -> None:
            log.append(ev)
            if isinstance(ev, RequestReceived):
                if isinstance(ev.pdu, BindTransceiver):
                    conn.send(ev.pdu.make_response(system_id="SMSC"))
                elif isinstance(ev.pdu, SubmitSm) and answer_submits:
                    conn.send(ev.pdu.make_response(message_id=f"m{ev.pdu.sequence_number}"))
        conn = SmppConnection(stream, Session(SessionConfig(Role.SMSC, window=100)), handler)
        await conn.run()
    return serve


async def test_bind_submit_unbind_round_trip() -> None:
    log: list[Event] = []
    async with loopback(smsc_serve(log)) as stream, anyio.create_task_group() as tg:
        conn = SmppConnection(stream, Session(SessionConfig(Role.ESME, window=50)))
        await tg.start(conn.run)
        resp = await conn.request(BindTransceiver(system_id="esme", password="pw"))
        assert isinstance(resp, BindTransceiverResp) and resp.system_id == "SMSC"
        assert conn.session.state is State.BOUND_TRX
        results: list[str] = []

        async def submit(i: int) -> None:
            r = await conn.request(SubmitSm(destination_addr="447911123456", short_message=b"%d" % i))
            assert isinstance(r, SubmitSmResp)
            results.append(r.message_id)
        async with anyio.create_task_group() as burst:
            for i in range(200):  # four times the window: request() waits for room
                burst.start_soon(submit, i)
        assert len(results) == 200 and len(set(results)) == 200
        with anyio.fail_after(5):
            await conn.unbind()
        assert conn.closed
        assert conn.session.state is State.CLOSED


async def test_tcp_nodelay_is_set() -> None:
    async with loopback(smsc_serve([])) as stream:
        SmppConnection(stream, Session(SessionConfig(Role.ESME)))
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


class CountingStream(anyio.abc.ByteStream):
    """Wraps a stream and counts the writes."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.sends = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        self.sends += 1
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_pdus_queued_in_one_iteration_leave_in_one_write() -> None:
    async with loopback(smsc_serve([])) as stream, anyio.create_task_group() as tg:
        counting = CountingStream(stream)
        conn = SmppConnection(counting, Session(SessionConfig(Role.ESME, window=500)))
        await tg.start(conn.run)
        await conn.request(BindTransceiver())
        before = counting.sends
        for _ in range(300):
            conn.send(SubmitSm(destination_addr="1"))
        while conn.session.outstanding:
            await anyio.sleep(0.01)
        assert counting.sends - before == 1
        await conn.aclose()


async def test_peer_disconnect_fails_waiting_requests_with_connection_lost() -> None:
    async def silent_then_close(stream: anyio.abc.SocketStream) -> None:
        data = await stream.receive()
        bind = encode_pdu(BindTransceiverResp(sequence_number=int.from_bytes(data[12:16], "big")))
        await stream.send(bind)
        await stream.receive()  # the submit_sm: never answered
        await stream.aclose()

    events: list[Event] = []

    async def handler(ev: Event) -> None:
        events.append(ev)
    async with loopback(silent_then_close) as stream, anyio.create_task_group() as tg:
        conn = SmppConnection(stream, Session(SessionConfig(Role.ESME)), handler)
        await tg.start(conn.run)
        await conn.request(BindTransceiver())
        with pytest.raises(ConnectionLost), anyio.fail_after(5):
            await conn.request(SubmitSm())
    assert isinstance(events[-1], ConnectionClosed)


async def test_response_timeout_raises() -> None:
    log: list[Event] = []
    async with loopback(smsc_serve(log, answer_submits=False)) as stream, anyio.create_task_group() as tg:
        conn = SmppConnection(stream, Session(SessionConfig(Role.ESME, response_timeout_s=0.2)))
        await tg.start(conn.run)
        await conn.request(BindTransceiver())
        with pytest.raises(ResponseTimeout), anyio.fail_after(5):
            await conn.request(SubmitSm())
        assert conn.session.outstanding == 0
        await conn.aclose()


async def test_unanswered_enquire_link_closes_the_connection() -> None:
    async def answers_bind_then_mute(stream: anyio.abc.SocketStream) -> None:
        data = await stream.receive()
        await stream.send(encode_pdu(BindTransceiverResp(sequence_number=int.from_bytes(data[12:16], "big"))))
        with anyio.move_on_after(10):
            try:
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return

    async with loopback(answers_bind_then_mute) as stream, anyio.create_task_group() as tg:
        cfg = SessionConfig(Role.ESME, enquire_link_interval_s=0.1, response_timeout_s=0.2)
        conn = SmppConnection(stream, Session(cfg))
        await tg.start(conn.run)
        await conn.request(BindTransceiver())
        with anyio.fail_after(5):
            while not conn.closed:
                await anyio.sleep(0.02)
        assert conn.close_reason == "enquire_link unanswered"


async def test_incoming_requests_reach_the_handler_and_enquire_link_is_answered() -> None:
    async def smsc_pushes(stream: anyio.abc.SocketStream) -> None:
        data = await stream.receive()
        await stream.send(encode_pdu(BindTransceiverResp(sequence_number=int.from_bytes(data[12:16], "big")))
                          + encode_pdu(EnquireLink(sequence_number=500))
                          + encode_pdu(DeliverSm(sequence_number=501, short_message=b"MO")))
        got = b""
        with anyio.fail_after(5):
            while len(got) < 16 + 17:
                got += await stream.receive()
        assert got[4:8] == b"\x80\x00\x00\x15"  # enquire_link_resp first
        assert got[20:24] == b"\x80\x00\x00\x05"  # then the handler's deliver_sm_resp

    seen: list[Event] = []
    conn: SmppConnection

    async def handler(ev: Event) -> None:
        seen.append(ev)
        if isinstance(ev, RequestReceived):
            conn.send(ev.pdu.make_response())
    async with loopback(smsc_pushes) as stream, anyio.create_task_group() as tg:
        conn = SmppConnection(stream, Session(SessionConfig(Role.ESME)), handler)
        await tg.start(conn.run)
        await conn.request(BindTransceiver())
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
        assert isinstance(seen[0], RequestReceived) and seen[0].pdu.short_message == b"MO"  # type: ignore[attr-defined]
        await anyio.sleep(0.1)
        await conn.aclose()


def bind_then_deliver(count: int) -> Serve:
    """An SMSC that answers the bind and sends `count` deliver_sm, all in one write (so in one read)."""
    async def serve(stream: anyio.abc.SocketStream) -> None:
        data = await stream.receive()
        await stream.send(encode_pdu(BindTransceiverResp(sequence_number=int.from_bytes(data[12:16], "big")))
                          + b"".join(encode_pdu(DeliverSm(sequence_number=600 + i, short_message=b"MO%d" % i))
                                     for i in range(count)))
        await anyio.sleep(5)
    return serve


async def deliver_until_after(count: int, handler: EventHandler, seen: list[object]) -> None:
    """Bind to an SMSC that sends `count` deliver_sm in one read; close once `after_events` followed them."""
    async with loopback(bind_then_deliver(count)) as stream, anyio.create_task_group() as tg:
        conn = SmppConnection(stream, Session(SessionConfig(Role.ESME)), handler,
                              after_events=lambda: seen.append("after"))
        await tg.start(conn.run)
        await conn.request(BindTransceiver())
        with anyio.fail_after(5):
            while "after" not in seen[1:]:
                await anyio.sleep(0.01)
        await conn.aclose()


async def test_after_events_follows_the_last_event_of_a_read() -> None:
    seen: list[object] = []

    async def handler(ev: Event) -> None:
        if isinstance(ev, RequestReceived):
            seen.append(ev.pdu.sequence_number)
    await deliver_until_after(3, handler, seen)
    # The bind_resp went to request()'s waiter; the three deliver_sm of the same read to the handler, then one
    # call; the close (ConnectionClosed) is a batch of its own.
    assert seen[:4] == [600, 601, 602, "after"]
    assert set(seen[4:]) <= {"after"}


async def test_a_plain_handler_is_called_and_what_it_returns_is_awaited_in_turn() -> None:
    seen: list[object] = []

    async def later(seq: int) -> None:
        await anyio.sleep(0.05)  # the next event waits for this one
        seen.append(f"{seq} done")

    def handler(ev: Event) -> Awaitable[None] | None:
        if not isinstance(ev, RequestReceived):
            return None
        seq = ev.pdu.sequence_number
        seen.append(seq)
        return later(seq) if seq % 2 else None
    await deliver_until_after(4, handler, seen)
    assert seen[:7] == [600, 601, "601 done", 602, 603, "603 done", "after"]


def leaves(group: BaseExceptionGroup) -> list[BaseException]:
    """The exceptions inside `group` and the groups nested in it."""
    return [leaf for e in group.exceptions
            for leaf in (leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


async def test_after_events_runs_when_the_handler_raises() -> None:
    calls: list[int] = []

    async def handler(ev: Event) -> None:
        if isinstance(ev, RequestReceived):
            calls.append(ev.pdu.sequence_number)
            raise RuntimeError("handler failed")
    after: list[int] = []
    failed = []
    try:
        async with loopback(bind_then_deliver(2)) as stream, anyio.create_task_group() as tg:
            conn = SmppConnection(stream, Session(SessionConfig(Role.ESME)), handler,
                                  after_events=lambda: after.append(len(calls)))
            await tg.start(conn.run)
            await conn.request(BindTransceiver())
            await anyio.sleep(5)
    except* RuntimeError as group:
        failed = [str(e) for e in leaves(group)]
    assert failed == ["handler failed"]
    assert calls == [600]  # the second event never reached the handler
    assert after[-1] == 1  # but the batch was still finished, after the event that raised
