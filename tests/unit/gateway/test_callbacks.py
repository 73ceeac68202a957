"""The callback sender against an in-memory receiver and a real SqliteStore.

The receiver is an HTTP/1.1 server written with h11 (an implementation we did not write) on in-memory byte
streams that the sender's HTTP client opens through its `connect` hook: the requests go over the wire format, no
socket is opened. Waits are bounded polls of a few milliseconds: batching by time and retries are driven by real
(tiny) delays.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import h11
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gateway import _callbacks
from gateway._callbacks import CallbackSender, sign_callback
from gateway._config import parse_config
from gateway._daemon import Gateway
from gateway._model import Message, MessageStatus, Part, new_message_id
from gateway._store import SqliteStore, Writes

pytestmark = pytest.mark.anyio

SECRET = "whsec-test"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


def config(tmp_path: Path, **callback: Any) -> dict[str, Any]:
    cb: dict[str, Any] = {"url": "http://receiver.test/cb", "secret": SECRET, "retry_initial_s": 0.01,
                          "retry_max_s": 0.02, "timeout_s": 1.0}
    cb.update(callback)
    return {"accounts": [{"id": "acme", "callback": cb}, {"id": "quiet"}],
            "store": {"path": str(tmp_path / "gw.db")}}


@dataclass(frozen=True)
class Request:
    """One request as the receiver parsed it; header names in lowercase."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes


Handler = Callable[[Request], Awaitable[int]]
"""Answers a request with a status code; raising drops the connection unanswered and refuses the next connect
(a receiver that went down)."""


class Pipe(anyio.abc.ByteStream):
    """One end of an in-memory byte stream pair."""

    def __init__(self, out: MemoryObjectSendStream[bytes], into: MemoryObjectReceiveStream[bytes]) -> None:
        self.out = out
        self.into = into

    @classmethod
    def pair(cls) -> tuple[Pipe, Pipe]:
        a_out, b_in = anyio.create_memory_object_stream[bytes](64)
        b_out, a_in = anyio.create_memory_object_stream[bytes](64)
        return cls(a_out, a_in), cls(b_out, b_in)

    async def send(self, item: bytes) -> None:
        await self.out.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.into.receive()

    async def send_eof(self) -> None:
        self.out.close()

    async def aclose(self) -> None:
        self.out.close()
        self.into.close()
        await anyio.lowlevel.checkpoint()


class Receiver:
    """Records every request; answers with `answer(request)` (204 by default). `connect` is the sender's hook."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answer: Handler | None = None
        self.tg: anyio.abc.TaskGroup | None = None
        self.refuse_connects = 0

    async def connect(self, scheme: str, host: str, port: int) -> anyio.abc.ByteStream:
        if self.refuse_connects:
            self.refuse_connects -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        assert self.tg is not None
        ours, theirs = Pipe.pair()
        self.tg.start_soon(self.serve, theirs, scheme)
        return ours

    async def serve(self, stream: Pipe, scheme: str) -> None:
        conn = h11.Connection(h11.SERVER)
        head: h11.Request | None = None
        body = b""
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                elif isinstance(event, h11.Request):
                    head, body = event, b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                    request = Request(head.method.decode(), f"{scheme}://{headers['host']}{head.target.decode()}",
                                      headers, body)
                    self.requests.append(request)
                    try:
                        status = await self.answer(request) if self.answer is not None else 204
                    except Exception:
                        self.refuse_connects = 1
                        return
                    out = conn.send(h11.Response(status_code=status,
                                                 headers=[] if status == 204 else [("content-length", "0")]))
                    out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
                    await stream.send(out)
                    conn.start_next_cycle()
                else:  # ConnectionClosed
                    return

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]

    def ids(self) -> list[str]:
        out: list[str] = []
        for body in self.bodies():
            out.extend(b["id"] for b in (body if isinstance(body, list) else [body]))
        return out


async def until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    with anyio.fail_after(timeout_s):
        while not cond():
            await anyio.sleep(0.002)


@asynccontextmanager
async def running(tmp_path: Path, receiver: Receiver, *, cfg: dict[str, Any] | None = None,
                  **kw: Any) -> AsyncIterator[tuple[Gateway, CallbackSender]]:
    conf = parse_config(cfg or config(tmp_path), base_dir=tmp_path)
    gw = Gateway(conf, store=SqliteStore(tmp_path / "gw.db"))
    sender = CallbackSender(gw, connect=receiver.connect, **kw)
    async with anyio.create_task_group() as tg:
        receiver.tg = tg
        await tg.start(gw.store.run)
        await tg.start(sender.run)
        yield gw, sender
        tg.cancel_scope.cancel()


async def final(gw: Gateway, status: MessageStatus = MessageStatus.DELIVERED, **kw: Any) -> Message:
    """A message that just became final with its callback pending, durably (what the core hands over)."""
    fields: dict[str, Any] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                              "text": "hello", "created_at": 1_700_000_000.0, "expires_at": 1e12,
                              "status": status, "status_at": time.time(), "callback_pending": True,
                              "parts": [Part("a1"), Part("a2")], "reference": "ref-1"}
    fields.update(kw)
    m = Message(**fields)
    await gw.store.write(Writes(messages=[m]))
    return m


async def pending_in_store(gw: Gateway) -> set[str]:
    await gw.store.write(Writes())  # a barrier: the acknowledgements queued before it are committed
    return {m.id for m in gw.store.callback_pending()}


async def test_a_status_is_posted_signed_and_then_cleared_durably(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx) as (gw, sender):
        m = await final(gw, error=None, status_at=1_700_000_012.25)
        sender.enqueue(m)
        await until(lambda: sender.statistics().sent == 1)
        assert await pending_in_store(gw) == set()
        assert gw.store.get(m.id) is not None and not gw.store.get(m.id).callback_pending  # type: ignore[union-attr]
    [req] = rx.requests
    assert req.method == "POST" and str(req.url) == "http://receiver.test/cb"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.content)
    assert body == {"id": m.id, "status": "delivered", "reference": "ref-1", "to": "447911123456",
                    "from": "ACME", "at": "2023-11-14T22:13:32.250Z", "error": None, "parts": 2,
                    "charged": False}
    # Verified the way a receiver does it, with the standard library only (docs/callbacks.md).
    ts = req.headers["x-smppgw-timestamp"]
    expected = hmac.new(SECRET.encode(), ts.encode() + b"." + req.content, hashlib.sha256).hexdigest()
    assert req.headers["x-smppgw-signature"] == "sha256=" + expected
    assert hmac.compare_digest(req.headers["x-smppgw-signature"], sign_callback(SECRET, ts, req.content))


def test_the_signature_covers_the_timestamp_and_every_body_byte() -> None:
    body = b'{"id":"x","status":"delivered"}'
    sig = sign_callback("k", "1700000000", body)
    # RFC 4231-style check against an independent HMAC computation.
    assert sig == "sha256=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign_callback("k", "1700000001", body) != sig
    assert sign_callback("k", "1700000000", body + b" ") != sig
    assert sign_callback("k2", "1700000000", body) != sig


async def test_without_a_secret_no_signature_is_sent(tmp_path: Path) -> None:
    rx = Receiver()
    cfg = config(tmp_path)
    del cfg["accounts"][0]["callback"]["secret"]
    async with running(tmp_path, rx, cfg=cfg) as (gw, sender):
        sender.enqueue(await final(gw))
        await until(lambda: sender.statistics().sent == 1)
    assert "x-smppgw-signature" not in rx.requests[0].headers
    assert rx.requests[0].headers["x-smppgw-timestamp"].isdigit()


async def test_the_message_callback_url_wins_over_the_account_default(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx) as (gw, sender):
        sender.enqueue(await final(gw, callback_url="http://other.test/hook?x=1"))
        await until(lambda: sender.statistics().sent == 1)
    assert str(rx.requests[0].url) == "http://other.test/hook?x=1"


async def test_one_message_is_sent_once_while_pending(tmp_path: Path) -> None:
    rx = Receiver()
    gate = anyio.Event()

    async def slow(_: Request) -> int:
        await gate.wait()
        return 200

    rx.answer = slow
    async with running(tmp_path, rx) as (gw, sender):
        m = await final(gw)
        sender.enqueue(m)
        sender.enqueue(m)
        copy = gw.store.get(m.id)  # another object for the same id (a restart's reload, say)
        assert copy is not None
        sender.enqueue(copy)
        await until(lambda: len(rx.requests) == 1)
        assert sender.statistics().pending == 1
        gate.set()
        await until(lambda: sender.statistics().sent == 1)
        sender.enqueue(m)  # acknowledged: its flag is clear, nothing more to send
        await anyio.sleep(0.02)
    assert rx.ids() == [m.id]


async def test_batches_fill_up_to_batch_max(tmp_path: Path) -> None:
    rx = Receiver()
    cfg = config(tmp_path, batch_max=3, batch_interval_ms=60_000)
    async with running(tmp_path, rx, cfg=cfg) as (gw, sender):
        msgs = [await final(gw) for _ in range(7)]
        for m in msgs:
            sender.enqueue(m)
        await until(lambda: sender.statistics().sent == 6)
        await anyio.sleep(0.05)
        assert len(rx.requests) == 2  # the seventh waits for its batch to fill or its interval
        await sender.drain()
        assert await pending_in_store(gw) == set()
    bodies = rx.bodies()
    assert [len(b) for b in bodies] == [3, 3, 1]
    assert all(isinstance(b, list) for b in bodies)
    assert rx.ids() == [m.id for m in msgs]


async def test_a_partial_batch_goes_after_batch_interval(tmp_path: Path) -> None:
    rx = Receiver()
    cfg = config(tmp_path, batch_max=100, batch_interval_ms=80)
    async with running(tmp_path, rx, cfg=cfg) as (gw, sender):
        a, b = await final(gw), await final(gw)
        started = anyio.current_time()
        sender.enqueue(a)
        sender.enqueue(b)
        await until(lambda: len(rx.requests) == 1)
        waited = anyio.current_time() - started
        await until(lambda: sender.statistics().sent == 2)
    assert 0.07 <= waited < 1.0
    [body] = rx.bodies()
    assert isinstance(body, list) and [x["id"] for x in body] == [a.id, b.id]


async def test_a_batch_is_signed_over_the_whole_array(tmp_path: Path) -> None:
    rx = Receiver()
    cfg = config(tmp_path, batch_max=2, batch_interval_ms=60_000)
    async with running(tmp_path, rx, cfg=cfg) as (gw, sender):
        sender.enqueue(await final(gw))
        sender.enqueue(await final(gw))
        await until(lambda: sender.statistics().sent == 2)
    req = rx.requests[0]
    ts = req.headers["x-smppgw-timestamp"]
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + req.content, hashlib.sha256).hexdigest()
    assert req.headers["x-smppgw-signature"] == f"sha256={mac}"


async def test_non_2xx_and_connection_errors_are_retried_until_acknowledged(tmp_path: Path) -> None:
    rx = Receiver()
    answers: list[int | Exception] = [500, 302, ConnectionResetError("down"), 404]

    async def flaky(request: Request) -> int:
        if answers:
            a = answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a
        return 202

    rx.answer = flaky
    async with running(tmp_path, rx) as (gw, sender):
        m = await final(gw)
        sender.enqueue(m)
        await until(lambda: sender.statistics().sent == 1)
        assert await pending_in_store(gw) == set()
        st = sender.statistics()
    assert rx.ids() == [m.id] * 5
    assert (st.failed, st.retries, st.given_up, st.pending, st.requests) == (4, 4, 0, 0, 5)


async def test_a_receiver_that_does_not_answer_in_time_is_retried(tmp_path: Path) -> None:
    rx = Receiver()
    calls = 0

    async def hangs_once(_: Request) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(10)
        return 200

    rx.answer = hangs_once
    cfg = config(tmp_path, timeout_s=0.05)
    async with running(tmp_path, rx, cfg=cfg) as (gw, sender):
        sender.enqueue(await final(gw))
        with anyio.fail_after(2):
            await until(lambda: sender.statistics().sent == 1)
    assert calls == 2 and sender.statistics().failed == 1


async def test_backoff_grows_from_retry_initial_to_retry_max(tmp_path: Path) -> None:
    rx = Receiver()
    times: list[float] = []

    async def down(_: Request) -> int:
        times.append(anyio.current_time())
        return 503

    rx.answer = down
    cfg = config(tmp_path, retry_initial_s=0.02, retry_max_s=0.08)
    async with running(tmp_path, rx, cfg=cfg, rng=lambda: 0.5) as (gw, sender):
        sender.enqueue(await final(gw))
        await until(lambda: len(times) >= 6)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # rng 0.5 means no jitter: 0.02, 0.04, 0.08, then capped at 0.08 (the poll adds a few ms).
    for gap, expected in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08], strict=False):
        assert expected - 0.002 <= gap < expected + 0.05


async def test_a_status_older_than_max_age_is_given_up_logged_and_cleared(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rx = Receiver()

    async def down(_: Request) -> int:
        return 500

    rx.answer = down
    now = [1_700_000_012.25 + 10.0]
    cfg = config(tmp_path, max_age_s=60)
    with caplog.at_level(logging.ERROR, logger="gateway._callbacks"):
        async with running(tmp_path, rx, cfg=cfg, wall=lambda: now[0]) as (gw, sender):
            m = await final(gw, status_at=1_700_000_012.25)
            sender.enqueue(m)
            await until(lambda: sender.statistics().failed >= 2)
            assert sender.statistics().given_up == 0
            now[0] += 60  # the status is now older than max_age_s
            await until(lambda: sender.statistics().given_up == 1)
            assert sender.statistics().pending == 0
            assert await pending_in_store(gw) == set()
    assert any(f"id={m.id}" in r.getMessage() and "given up" in r.getMessage() for r in caplog.records)


async def test_pending_callbacks_survive_a_restart_and_acknowledged_ones_are_not_resent(tmp_path: Path) -> None:
    first = Receiver()
    msgs: list[Message] = []

    async def only_first(request: Request) -> int:
        return 200 if json.loads(request.content)["id"] == msgs[0].id else 500

    first.answer = only_first
    cfg = config(tmp_path, retry_initial_s=30, retry_max_s=30)
    async with running(tmp_path, first, cfg=cfg) as (gw, sender):
        msgs.extend([await final(gw) for _ in range(3)])
        for m in msgs:
            sender.enqueue(m)
        await until(lambda: len(first.requests) == 3 and sender.statistics().sent == 1)
        assert await pending_in_store(gw) == {msgs[1].id, msgs[2].id}
    # The daemon stopped with two statuses unacknowledged; a new process sends those and only those.
    second = Receiver()
    async with running(tmp_path, second, cfg=cfg) as (gw, sender):
        await until(lambda: sender.statistics().sent == 2)
        assert await pending_in_store(gw) == set()
    assert sorted(second.ids()) == sorted([msgs[1].id, msgs[2].id])


async def test_a_message_without_a_callback_url_any_more_is_cleared(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx) as (gw, sender):
        m = await final(gw, account="quiet")
        sender.enqueue(m)
        assert await pending_in_store(gw) == set()
    assert rx.requests == []


async def test_a_url_that_is_not_http_is_given_up_at_once(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx) as (gw, sender):
        m = await final(gw, callback_url="ftp://example.test/x")
        sender.enqueue(m)
        assert sender.statistics().given_up == 1
        assert await pending_in_store(gw) == set()
    assert rx.requests == []


async def test_a_non_final_or_already_acknowledged_message_is_ignored(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx) as (gw, sender):
        sender.enqueue(await final(gw, status=MessageStatus.SUBMITTED))
        sender.enqueue(await final(gw, callback_pending=False))
        await anyio.sleep(0.02)
    assert rx.requests == [] and sender.statistics().pending == 0


async def test_concurrency_per_host_is_bounded(tmp_path: Path) -> None:
    rx = Receiver()
    live = peak = 0

    async def slow(_: Request) -> int:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await anyio.sleep(0.01)
        live -= 1
        return 200

    rx.answer = slow
    async with running(tmp_path, rx, max_per_host=3) as (gw, sender):
        msgs = [await final(gw) for _ in range(12)]
        msgs += [await final(gw, callback_url="http://receiver.test/other") for _ in range(6)]
        for m in msgs:
            sender.enqueue(m)
        await until(lambda: sender.statistics().sent == 18)
    assert peak == 3
    assert sorted(rx.ids()) == sorted(m.id for m in msgs)


async def test_requests_go_through_a_pool_of_senders_that_grows_with_the_load_and_shrinks_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_callbacks, "IDLE_SENDERS", 2)
    rx = Receiver()
    hold = anyio.Event()
    live = peak = 0

    async def held(_: Request) -> int:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await hold.wait()
        live -= 1
        return 200

    rx.answer = held
    async with running(tmp_path, rx, max_per_host=4) as (gw, sender):
        hosts = ["http://receiver.test/cb", "http://other.test/cb"]
        msgs = [await final(gw, callback_url=hosts[i % 2]) for i in range(40)]
        for m in msgs:
            sender.enqueue(m)
        await until(lambda: live == 8)  # Rule 6: 4 per host, so one sender per request in flight
        assert sender._senders == 8
        hold.set()
        await until(lambda: sender.statistics().sent == 40)
        await until(lambda: sender._senders == 2)  # the others found nothing to do and ended
        assert peak == 8 and len(rx.requests) == 40
        rx.answer = None
        later = []
        for _ in range(10):  # one at a time: the senders left take them, none is started
            later.append(await final(gw))
            sender.enqueue(later[-1])
            await until(lambda: sender.statistics().pending == 0)
            assert sender._senders == 2
    assert sorted(rx.ids()) == sorted(m.id for m in msgs + later)


async def test_a_failing_target_pauses_instead_of_hammering(tmp_path: Path) -> None:
    rx = Receiver()

    async def down(_: Request) -> int:
        return 503

    rx.answer = down
    cfg = config(tmp_path, retry_initial_s=0.5, retry_max_s=0.5)
    async with running(tmp_path, rx, cfg=cfg, max_per_host=1) as (gw, sender):
        for _ in range(50):
            sender.enqueue(await final(gw))
        await until(lambda: sender.statistics().failed >= 1)
        await anyio.sleep(0.1)
        assert len(rx.requests) == 1  # the other 49 wait out the pause
        assert sender.statistics().pending == 50


async def test_statuses_queued_before_the_sender_runs_are_sent(tmp_path: Path) -> None:
    rx = Receiver()
    conf = parse_config(config(tmp_path), base_dir=tmp_path)
    gw = Gateway(conf, store=SqliteStore(tmp_path / "gw.db"))
    sender = CallbackSender(gw, connect=rx.connect)
    assert gw.core.on_final == sender.enqueue and gw.extensions["callbacks"] is sender
    async with anyio.create_task_group() as tg:
        rx.tg = tg
        await tg.start(gw.store.run)
        m = await final(gw)
        gw.core.after_commit([m])  # the core's post-commit hook, before the sender started
        await tg.start(sender.run)
        await until(lambda: sender.statistics().sent == 1)
        tg.cancel_scope.cancel()
    assert rx.ids() == [m.id]


async def test_records_beyond_the_memory_cap_are_read_back_from_the_store(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx, max_records_in_memory=1) as (gw, sender):
        msgs = [await final(gw) for _ in range(3)]
        for m in msgs:
            sender.enqueue(m)
        await until(lambda: sender.statistics().sent == 3)
        assert await pending_in_store(gw) == set()
    assert sorted(rx.ids()) == sorted(m.id for m in msgs)


async def test_a_message_the_core_ends_reaches_its_callback_after_its_commit(tmp_path: Path) -> None:
    rx = Receiver()
    async with running(tmp_path, rx) as (gw, sender):
        async with anyio.create_task_group() as tg:
            await tg.start(gw.core.run_post_commit)
            m = Message(id=new_message_id(), account="acme", to="447911123456", source="ACME", text="hi",
                        created_at=time.time(), expires_at=time.time() + 3600)
            await gw.core.accept([m])
            gw.core.fail(m, "no_route", "no route for 4479")
            await until(lambda: sender.statistics().sent == 1)
            tg.cancel_scope.cancel()
        assert await pending_in_store(gw) == set()
        stored = gw.store.get(m.id)
        assert stored is not None and stored.status is MessageStatus.FAILED and not stored.callback_pending
    [body] = rx.bodies()
    assert (body["id"], body["status"], body["error"]["code"]) == (m.id, "failed", "no_route")
