"""The load generator over HTTP against a stand-in for the gateway that follows its HTTP contract.

The stand-in answers POST /v1/messages and /v1/messages/batch with 202 and ids, refuses a bad `to` with 400
(or a per-item error in a batch), and posts a JSON callback (an array of several when `batch_callbacks`) to
each message's callback_url, first `submitted` and then a final status.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import uvicorn

from simulator._load import parse_args, run
from simulator._load_stats import Report

pytestmark = pytest.mark.anyio

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})


@dataclass
class FakeGateway:
    """Just enough of the gateway's HTTP API for the load generator."""

    api_key: str = "k3y"
    batch_callbacks: bool = False
    final_status: str = "delivered"
    drop_callbacks: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    wake: anyio.Event = field(default_factory=anyio.Event)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def accept(self, m: Any) -> dict[str, Any]:
        if not isinstance(m, dict) or not str(m.get("to", "")).isdigit():
            return {"error": {"code": "invalid_field", "field": "to", "message": "not an MSISDN"}}
        self.received.append(m)
        mid = f"msg-{next(self.ids)}"
        if m.get("callback_url") and not self.drop_callbacks:
            for status in ("submitted", self.final_status):
                self.pending.append((m["callback_url"], {"id": mid, "status": status, "to": m["to"],
                                                          "reference": m.get("reference")}))
            self.wake.set()
        return {"id": mid, "status": "queued", "parts": 1}

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = dict(scope["headers"])
        status = 202
        answer: dict[str, Any] = {}
        if headers.get(b"authorization") != f"Bearer {self.api_key}".encode():
            status, answer = 401, {"error": {"code": "unauthorized", "message": "bad key"}}
        elif scope["path"] == "/v1/messages":
            answer = self.accept(msgspec.json.decode(body))
            if "error" in answer:
                status = 400
        elif scope["path"] == "/v1/messages/batch":
            answer = {"results": [self.accept(m) for m in msgspec.json.decode(body)["messages"]]}
        else:
            status, answer = 404, {"error": {"code": "not_found", "message": scope["path"]}}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": msgspec.json.encode(answer)})

    async def post_callbacks(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                batch, self.pending = self.pending, []
                by_url: dict[str, list[dict[str, Any]]] = {}
                for url, item in batch:
                    by_url.setdefault(url, []).append(item)
                for url, items in by_url.items():
                    if self.batch_callbacks:
                        await client.post(url, json=items)
                    else:
                        for item in items:
                            await client.post(url, json=item)


@asynccontextmanager
async def serving(gw: FakeGateway) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    config = uvicorn.Config(gw.app, lifespan="off", interface="asgi3", log_config=None, log_level="warning", loop="none")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    async with anyio.create_task_group() as tg:
        tg.start_soon(gw.post_callbacks)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            tg.cancel_scope.cancel()
            await server.shutdown(sockets=[sock])


async def load(url: str, *args: str, key: str = "k3y") -> Report:
    inv = parse_args(["--http", url, "--api-key", key, "--receipt-timeout", "5", *args], environ={})
    return await run(inv)


async def test_single_requests_get_202_and_a_final_callback_each() -> None:
    gw = FakeGateway()
    async with serving(gw) as url:
        r = await load(url, "-n", "30", "--concurrency", "4")
    assert r.ok, r.problems
    assert r.unit == "messages" and r.sent == r.ok_requests == 30
    assert r.receipts_by_status == {"delivered": 30} and r.intermediate == 30  # each "submitted" callback
    assert r.response is not None and r.receipt is not None and r.receipt.count == 30
    texts = {m["text"] for m in gw.received}
    assert len(texts) == 3  # the default mix: gsm, ucs2, long
    assert all(m["callback_url"].startswith("http://127.0.0.1:") for m in gw.received)
    assert sorted(m["reference"] for m in gw.received) == sorted(f"load-{k}" for k in range(30))


async def test_batches_and_batched_callbacks() -> None:
    gw = FakeGateway(batch_callbacks=True, final_status="undeliverable")
    async with serving(gw) as url:
        r = await load(url, "-n", "25", "--batch", "10", "--concurrency", "2")
    assert r.ok, r.problems
    assert r.sent == r.ok_requests == 25 and r.receipts_by_status == {"undeliverable": 25}


async def test_refusals_are_errors_by_status_and_code() -> None:
    gw = FakeGateway()
    async with serving(gw) as url:
        r = await load(url, "-n", "4", key="wrong")
        assert r.errors == {"HTTP 401 unauthorized": 4} and r.receipts_expected == 0
        assert r.ok  # every request was answered
        r = await load(url, "-n", "3", "--batch", "3", "--to", "447400000000")
        assert r.ok and r.ok_requests == 3


async def test_missing_callbacks_fail_the_run() -> None:
    gw = FakeGateway(drop_callbacks=True)
    async with serving(gw) as url:
        r = await load(url, "-n", "5", "--receipt-timeout", "0.3")
    assert not r.ok and r.problems == ("5 expected receipts never came",)


async def test_open_loop_over_http() -> None:
    gw = FakeGateway()
    async with serving(gw) as url:
        r = await load(url, "-n", "20", "--rate", "100", "--no-receipts")
    assert r.ok and r.receipts_expected == 0
    assert "callback_url" not in gw.received[0]
    assert 0.15 < 20 / r.request_per_s < 1.0  # the last of 20 is due 190 ms after the first


async def test_an_unreachable_gateway_leaves_messages_unanswered() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    r = await load(f"http://127.0.0.1:{port}", "-n", "3", "--concurrency", "1")
    assert not r.ok and r.unanswered == {"ConnectError": 3}
