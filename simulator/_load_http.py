"""Rule: a message counts as done when the gateway's callback with a final status for its id reaches our sink.

The HTTP driver of the load generator drives the gateway's API: `POST /v1/messages` with one message per
request, or `POST /v1/messages/batch` with up to `batch` messages (the gateway takes up to 1000). A fixed
number of workers keep that many requests in flight (closed loop); with a rate, request k waits for the due
time of its first message (open loop). Each message names `callback_url`, a small HTTP server this process
starts on 127.0.0.1, which reads the JSON callbacks (one object, or an array for accounts that batch them),
matches them by `id` to the 202 answers, and answers 204. A callback whose id is not known yet (it came before
the 202 was read) waits for it. Statuses the gateway reports on the way (queued, submitted, accepted, enroute,
scheduled) are counted as intermediate; any other status is final.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import msgspec
import uvicorn

from ._load_plan import LoadPlan, Pacer
from ._load_stats import Tally

__all__ = ["NON_FINAL_STATUSES", "CallbackSink", "HttpTarget", "run_http"]

log = logging.getLogger(__name__)

NON_FINAL_STATUSES = frozenset({"queued", "scheduled", "submitted", "accepted", "enroute", "sending"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """The gateway's HTTP API and how to drive it.

    Attributes:
        base_url: `http://HOST:PORT` of the gateway.
        api_key: the account's API key (sent as `Authorization: Bearer`).
        batch: 0 for one message per `POST /v1/messages`; N for N messages per `POST /v1/messages/batch`.
        concurrency: requests in flight at once.
        sender: the `from` of each message.
        callback_host: where the callback sink listens (loopback).
        callback_port: its port; 0 for any free one.
        response_timeout_s: a request without an answer after this long is counted unanswered.
    """

    base_url: str
    api_key: str
    batch: int = 0
    concurrency: int = 16
    sender: str = "smppgw"
    callback_host: str = "127.0.0.1"
    callback_port: int = 0
    response_timeout_s: float = 30.0

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + ("/v1/messages/batch" if self.batch else "/v1/messages")


class CallbackSink:
    """Matches callbacks to messages. `accept` is pure: the ASGI app and the tests feed it request bodies."""

    def __init__(self, tally: Tally, on_progress: Callable[[], None] = lambda: None) -> None:
        self.tally = tally
        self.awaiting: dict[str, float] = {}  # message id -> send (or due) time
        self.early: dict[str, tuple[float, str]] = {}  # final callbacks whose id was not known yet
        self.bad_bodies = 0
        self._on_progress = on_progress

    def expect(self, message_id: str, sent: float) -> None:
        """A 202 gave `message_id`: wait for its final callback (or match one that came first)."""
        t = self.tally
        t.receipts_expected += 1
        early = self.early.pop(message_id, None) if self.early else None
        if early is None:
            self.awaiting[message_id] = sent
            return
        arrived, status = early
        t.receipts[status] = t.receipts.get(status, 0) + 1
        t.receipt_s.append(max(arrived - sent, 0.0))

    def accept(self, body: bytes, now: float) -> bool:
        """Read one callback request body (an object or an array of objects); False when it is not one."""
        try:
            data = _json_decode(body)
        except msgspec.DecodeError:
            self.bad_bodies += 1
            return False
        items = data if isinstance(data, list) else [data]
        t = self.tally
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                self.bad_bodies += 1
                continue
            status = str(item.get("status", "unknown"))
            if status in NON_FINAL_STATUSES:
                t.intermediate += 1
                continue
            message_id = item["id"]
            sent = self.awaiting.pop(message_id, None)
            t.last_receipt = now
            if sent is None:
                self.early[message_id] = (now, status)
                continue
            t.receipts[status] = t.receipts.get(status, 0) + 1
            t.receipt_s.append(now - sent)
        self._on_progress()
        return True

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application: POST anything to it; 204 for a callback it could read, 400 otherwise."""
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        ok = scope["method"] == "POST" and self.accept(b"".join(chunks), time.monotonic())
        await send({"type": "http.response.start", "status": 204 if ok else 400, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class _SinkServer:
    """The callback sink served by uvicorn on a socket we bind (so port 0 works and no signal is taken over)."""

    def __init__(self, sink: CallbackSink, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(sink.app, lifespan="off", interface="asgi3", log_config=None, log_level="warning",
                                access_log=False,
                                http="httptools", loop="none")
        config.load()
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/callbacks"

    async def start(self) -> None:
        await self.server.startup(sockets=[self.sock])

    async def stop(self) -> None:
        with anyio.move_on_after(2, shield=True):
            await self.server.shutdown(sockets=[self.sock])


class _HttpRun:
    def __init__(self, target: HttpTarget, plan: LoadPlan, tally: Tally, sink: CallbackSink,
                 callback_url: str | None, clock: Callable[[], float]) -> None:
        self.target = target
        self.plan = plan
        self.tally = tally
        self.sink = sink
        self.callback_url = callback_url
        self.clock = clock
        self.per_request = max(target.batch, 1)
        self.next_message = 0
        self.limit = plan.count
        self.pacer: Pacer | None = None
        self.deadline: float | None = None

    def body(self, first: int, n: int) -> bytes:
        plan = self.plan
        messages = []
        for k in range(first, first + n):
            m: dict[str, Any] = {"to": plan.destination_of(k), "from": self.target.sender,
                                 "text": plan.mix.kind_of(k).text, "reference": f"load-{k}"}
            if self.callback_url is not None:
                m["callback_url"] = self.callback_url
            messages.append(m)
        if self.target.batch:
            return _json_encode({"messages": messages})
        return _json_encode(messages[0])

    async def worker(self, client: httpx.AsyncClient) -> None:
        tally = self.tally
        clock = self.clock
        url = self.target.url
        while True:
            first = self.next_message
            if self.deadline is not None and clock() >= self.deadline:
                self.limit = min(self.limit, first)
                tally.messages_planned = self.limit
                tally.requests_planned = self.limit
            n = min(self.per_request, self.limit - first)
            if n <= 0:
                return
            self.next_message = first + n
            tally.messages_started += n
            if self.pacer is not None:
                due = self.pacer.due_time(first)
                await anyio.sleep(max(due - clock(), 0.0))
                t0 = due
            else:
                t0 = clock()
            if tally.first_send is None:
                tally.first_send = t0
            content = self.body(first, n)
            tally.sent += n
            try:
                resp = await client.post(url, content=content)
            except httpx.TimeoutException:
                tally.add_unanswered("response timeout", n)
                continue
            except httpx.HTTPError as exc:
                tally.add_unanswered(type(exc).__name__, n)
                continue
            now = clock()
            tally.last_response = now
            self.record(resp.status_code, resp.content, n, t0, now)

    def record(self, status: int, content: bytes, n: int, t0: float, now: float) -> None:
        """Score the answer to one request of `n` messages sent at `t0`."""
        tally = self.tally
        try:
            data: Any = _json_decode(content) if content else None
        except msgspec.DecodeError:
            data = None
        if status != 202:
            code = ""
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                code = f" {data['error'].get('code', '')}".rstrip()
            tally.add_error(f"HTTP {status}{code}", n)
            return
        items = data.get("results") if self.target.batch and isinstance(data, dict) else [data]
        if not isinstance(items, list) or len(items) != n:
            tally.add_error("HTTP 202 unreadable", n)
            return
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                tally.ok += 1
                tally.response_s.append(now - t0)
                if self.callback_url is not None:
                    self.sink.expect(item["id"], t0)
            elif isinstance(item, dict) and isinstance(item.get("error"), dict):
                tally.add_error(f"item {item['error'].get('code', 'error')}")
            else:
                tally.add_error("HTTP 202 unreadable")


async def run_http(target: HttpTarget, plan: LoadPlan, tally: Tally, clock: Callable[[], float] = time.monotonic,
                   *, started: Callable[[], None] | None = None) -> list[str]:
    """Run the load over HTTP; returns the problems that are not in the tally."""
    tally.messages_planned = plan.count
    tally.requests_planned = plan.count
    done = anyio.Event()
    answered = anyio.Event()

    def progress() -> None:
        if answered.is_set() and tally.receipts_received >= tally.receipts_expected:
            done.set()

    sink = CallbackSink(tally, progress)
    server = _SinkServer(sink, target.callback_host, target.callback_port) if plan.receipts else None
    run = _HttpRun(target, plan, tally, sink, server.url if server is not None else None, clock)
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=target.concurrency, max_keepalive_connections=target.concurrency)
    if server is not None:
        await server.start()
    try:
        async with httpx.AsyncClient(headers=headers, limits=limits,
                                     timeout=httpx.Timeout(target.response_timeout_s)) as client:
            start = clock()
            if plan.rate_per_s is not None:
                run.pacer = Pacer(plan.rate_per_s, start, plan.count)
            if plan.duration_s is not None:
                run.deadline = start + plan.duration_s
            if started is not None:
                started()
            async with anyio.create_task_group() as tg:
                for _ in range(target.concurrency):
                    tg.start_soon(run.worker, client)
        answered.set()
        if plan.receipts:
            progress()
            with anyio.move_on_after(plan.receipt_timeout_s):
                await done.wait()
            tally.unmatched += len(sink.early)
            if sink.bad_bodies:
                problems.append(f"{sink.bad_bodies} callbacks could not be read")
    finally:
        if server is not None:
            await server.stop()
    return problems
