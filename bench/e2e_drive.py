"""One measured run of the end-to-end benchmark: N messages in over HTTP, N callbacks out, timed per message.

Rule 1: a message is done when its final status reaches our sink: a callback from the gateway (a JSON object,
or an array of them when the account batches) naming it by `reference`, or a GET from Kannel to the message's
own dlr-url. Every message carries a key unique across the whole benchmark, so a late callback from an earlier
run can never be counted in this one.
Rule 2: the same driver drives both systems: `concurrency` senders each with a request in flight (closed loop),
each request carrying `per_request` messages (the gateway's batch endpoint) or one. A target with several HTTP
endpoints (the nodes of a Redis cluster) gets its requests round robin: request k goes to endpoint k mod N, over
the sender's keep-alive connection to that endpoint. A message's accept time is when its request's answer was
read; its callback time when the sink read the callback. Latency is callback time minus accept time.
Rule 3: submitted and receipted counts are the simulator's, for both systems: its `submitted` (submit_sm
received) and `deliver_acked` (receipts the ESME acknowledged) counters, polled every 50 ms; the time a
counter reached its final value is interpolated between the two polls around it.
Rule 4: every accepted message must end final with exactly one callback. A run that stalls (no answer and no
callback for `stall_s`) ends with the count of accepted messages still without a callback, their first keys and,
for the gateway, the status each of a few of them has (GET /v1/messages/{id}); a callback for a message that was
not accepted, a second callback, or a simulator count of submit_sm other than the accepted count (a message sent
twice or never) is a problem of the run too.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from e2e_systems import API_KEY, HOST, KANNEL_PASSWORD, KANNEL_USER, cpu_by_name
from e2e_wire import CallbackServer, HttpConnection, percentile

__all__ = ["GatewayTarget", "KannelTarget", "RunResult", "Target", "drive"]

POLL_S = 0.05
FIRST_MSISDN = 447400000000
RECIPIENTS = 1000


def text_of(key: int) -> str:
    """A one-part GSM 7-bit text, different for each message."""
    return f"Your bench code is {key % 1_000_000:06d}, message {key}"


class _Callback(msgspec.Struct):
    reference: str | None
    status: str


class _Result(msgspec.Struct):
    id: str | None = None


class _View(msgspec.Struct):
    status: str = ""
    history: list[object] = msgspec.field(default_factory=list)


class _BatchAnswer(msgspec.Struct):
    results: list[_Result]


class _Account(msgspec.Struct):
    system_id: str
    submitted: int
    deliver_acked: int


class _Stats(msgspec.Struct):
    accounts: list[_Account]


_decode_callbacks = msgspec.json.Decoder(list[_Callback] | _Callback).decode
_decode_batch = msgspec.json.Decoder(_BatchAnswer).decode
_decode_result = msgspec.json.Decoder(_Result).decode
_decode_view = msgspec.json.Decoder(_View).decode
_decode_stats = msgspec.json.Decoder(_Stats).decode


class Target:
    """How to send to one system (through one or several HTTP endpoints) and read its answers and callbacks."""

    name = ""
    account = ""  # the system's account at the simulator
    per_request = 1

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def request(self, first_key: int, n: int, sink_port: int, port: int) -> bytes:
        raise NotImplementedError

    def accepted(self, status: int, body: bytes, n: int) -> list[str | None]:
        """For each message of a request, its id when the answer accepted it (`""` when the system gives none),
        None when it refused it."""
        raise NotImplementedError

    async def status_of(self, message_id: str) -> str:
        """What the system says about an accepted message (for the report of a missing callback)."""
        return "unknown to the benchmark"

    def callbacks(self, target: bytes, body: bytes) -> list[tuple[int, bool]]:
        """The (key, delivered) pairs one callback request reports."""
        raise NotImplementedError


class GatewayTarget(Target):
    """The gateway's API: `POST /v1/messages/batch` with `batch` messages, or `POST /v1/messages` when batch is 0.
    Callbacks go to the account's callback.url (set in its config), so requests carry no callback_url."""

    def __init__(self, ports: list[int], batch: int, name: str, account: str) -> None:
        super().__init__(ports)
        self.account = account
        self.batch = batch
        self.per_request = max(batch, 1)
        self.name = name
        path = "/v1/messages/batch" if batch else "/v1/messages"
        self.heads = {port: (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {API_KEY}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: ") for port in ports}

    def request(self, first_key: int, n: int, sink_port: int, port: int) -> bytes:
        items = [f'{{"to":"{FIRST_MSISDN + k % RECIPIENTS}","from":"BENCH","text":"{text_of(k)}","reference":"{k}"}}'
                 for k in range(first_key, first_key + n)]
        body = (f'{{"messages":[{",".join(items)}]}}' if self.batch else items[0]).encode()
        return f"{self.heads[port]}{len(body)}\r\n\r\n".encode() + body

    def accepted(self, status: int, body: bytes, n: int) -> list[str | None]:
        if status != 202:
            return [None] * n
        try:
            if not self.batch:
                return [_decode_result(body).id]
            results = _decode_batch(body).results
        except msgspec.DecodeError:
            return [None] * n
        return [r.id for r in results] if len(results) == n else [None] * n

    async def status_of(self, message_id: str) -> str:
        """The message's status and last history entry from GET /v1/messages/{id} (any node answers for any
        message)."""
        port = self.ports[0]
        conn = await HttpConnection.connect(HOST, port)
        try:
            status, body = await asyncio.wait_for(conn.request(
                f"GET /v1/messages/{message_id} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Authorization: Bearer {API_KEY}\r\n\r\n".encode()), 5.0)
        except (OSError, TimeoutError) as exc:
            return f"GET failed: {exc!r}"
        finally:
            conn.close()
        if status != 200:
            return f"HTTP {status}: {body[:200].decode(errors='replace')}"
        view = _decode_view(body)
        last = view.history[-1] if view.history else None
        return f"status {view.status}" + (f" (last change: {msgspec.json.encode(last).decode()})" if last else "")

    def callbacks(self, target: bytes, body: bytes) -> list[tuple[int, bool]]:
        try:
            decoded = _decode_callbacks(body)
        except msgspec.DecodeError:
            return []
        items = decoded if isinstance(decoded, list) else [decoded]
        return [(int(c.reference), c.status == "delivered") for c in items
                if c.reference is not None and c.reference.isdigit()]


class KannelTarget(Target):
    """Kannel's sendsms (`GET /cgi-bin/sendsms`, one message per request) with `dlr-mask=1` and a dlr-url per
    message that names its key, so Kannel makes one callback (a GET) per delivered message."""

    account = "kannel"
    name = "kannel single"

    def request(self, first_key: int, n: int, sink_port: int, port: int) -> bytes:
        dlr_url = f"http://{HOST}:{sink_port}/dlr?k={first_key}&s=%d"
        query = urllib.parse.urlencode({
            "username": KANNEL_USER, "password": KANNEL_PASSWORD, "from": "BENCH",
            "to": str(FIRST_MSISDN + first_key % RECIPIENTS), "text": text_of(first_key),
            "dlr-mask": "1", "dlr-url": dlr_url})
        return f"GET /cgi-bin/sendsms?{query} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()

    def accepted(self, status: int, body: bytes, n: int) -> list[str | None]:
        return ["" if status == 202 else None]

    def callbacks(self, target: bytes, body: bytes) -> list[tuple[int, bool]]:
        _, _, query = target.partition(b"?")
        params = dict(p.partition(b"=")[::2] for p in query.split(b"&"))
        key = params.get(b"k", b"")
        return [(int(key), params.get(b"s") == b"1")] if key.isdigit() else []


@dataclass
class RunResult:
    """What one run measured. Times are seconds from the first request; rates count messages."""

    system: str
    count: int
    loadavg: str
    accepted: int = 0
    refused: int = 0
    callbacks: int = 0
    delivered: int = 0
    duplicates: int = 0
    accept_s: float = 0.0  # last accept
    submit_s: float = 0.0  # the simulator had every accepted message
    receipt_s: float = 0.0  # the ESME had acknowledged every receipt
    callback_s: float = 0.0  # last callback
    wall_s: float = 0.0  # the interval the CPU seconds were read over: first request to last callback or the stall
    latency_ms: dict[str, float] = field(default_factory=dict)  # accept -> callback
    request_ms: dict[str, float] = field(default_factory=dict)  # request sent -> answer read
    cpu_s: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def rate(self, seconds: float) -> float:
        return self.accepted / seconds if seconds > 0 else 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.rate(self.accept_s)

    @property
    def submitted_per_s(self) -> float:
        return self.rate(self.submit_s)

    @property
    def receipts_per_s(self) -> float:
        return self.rate(self.receipt_s)

    @property
    def callbacks_per_s(self) -> float:
        """The end-to-end figure: messages accepted, submitted, receipted and called back, per second."""
        return self.callbacks / self.callback_s if self.callback_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "system": self.system, "count": self.count, "loadavg": self.loadavg, "accepted": self.accepted,
            "refused": self.refused, "callbacks": self.callbacks, "delivered": self.delivered,
            "duplicates": self.duplicates,
            "seconds": {"accepted": self.accept_s, "submitted": self.submit_s, "receipts": self.receipt_s,
                        "callbacks": self.callback_s, "cpu_interval": self.wall_s},
            "per_s": {"accepted": self.accepted_per_s, "submitted": self.submitted_per_s,
                      "receipts": self.receipts_per_s, "callbacks": self.callbacks_per_s},
            "accept_to_callback_ms": self.latency_ms, "request_ms": self.request_ms, "cpu_s": self.cpu_s,
            "problems": self.problems,
        }


def _reached(samples: list[tuple[float, int]], target: int) -> float:
    """When the counter sampled in `samples` first reached `target` (interpolated); 0 if it never did."""
    for i, (t, v) in enumerate(samples):
        if v >= target:
            if i == 0:
                return t
            t0, v0 = samples[i - 1]
            return t0 + (t - t0) * (target - v0) / (v - v0)
    return 0.0


def _loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


class _Run:
    def __init__(self, target: Target, first_key: int, count: int, concurrency: int) -> None:
        self.target = target
        self.first_key = first_key
        self.count = count
        self.concurrency = concurrency
        self.accept_at = [0.0] * count
        self.callback_at = [0.0] * count
        self.ids: list[str | None] = [None] * count
        self.request_s: list[float] = []
        self.next = 0
        self.requests = 0
        self.accepted = 0
        self.refused = 0
        self.callbacks = 0
        self.delivered = 0
        self.duplicates = 0
        self.foreign = 0
        self.senders_done = False
        self.done = asyncio.Event()
        self.progress_at = time.monotonic()

    def on_callback(self, target: bytes, body: bytes) -> None:
        now = time.monotonic()
        first, count, at = self.first_key, self.count, self.callback_at
        for key, delivered in self.target.callbacks(target, body):
            i = key - first
            if not 0 <= i < count:
                self.foreign += 1
                continue
            if at[i]:
                self.duplicates += 1
                continue
            at[i] = now
            self.callbacks += 1
            self.delivered += delivered
        self.progress_at = now
        self.check_done()

    def check_done(self) -> None:
        if self.senders_done and self.callbacks >= self.accepted:
            self.done.set()

    async def sender(self, conns: list[HttpConnection], sink_port: int) -> None:
        """Requests until every message was sent; request k goes over `conns[k % len(conns)]` (Rule 2)."""
        target, per = self.target, self.target.per_request
        while self.next < self.count:
            i = self.next
            n = min(per, self.count - i)
            self.next = i + n
            k = self.requests % len(conns)
            self.requests += 1
            conn = conns[k]
            data = target.request(self.first_key + i, n, sink_port, target.ports[k])
            t0 = time.monotonic()
            status, body = await conn.request(data)
            now = time.monotonic()
            self.request_s.append(now - t0)
            self.progress_at = now
            for j, mid in enumerate(target.accepted(status, body, n)):
                if mid is not None:
                    self.accept_at[i + j] = now
                    self.ids[i + j] = mid
                    self.accepted += 1
                else:
                    self.refused += 1
            if not conn.open:
                conns[k] = await HttpConnection.connect(HOST, target.ports[k])


async def _poll(url_port: int, account: str, samples: list[tuple[float, int, int]], stop: asyncio.Event) -> None:
    conn = await HttpConnection.connect(HOST, url_port)
    req = f"GET /stats HTTP/1.1\r\nHost: {HOST}:{url_port}\r\n\r\n".encode()
    try:
        while True:
            status, body = await conn.request(req)
            now = time.monotonic()
            if status == 200:
                for a in _decode_stats(body).accounts:
                    if a.system_id == account:
                        samples.append((now, a.submitted, a.deliver_acked))
            if not conn.open:
                conn = await HttpConnection.connect(HOST, url_port)
            if stop.is_set():
                return
            await asyncio.sleep(POLL_S)
    finally:
        conn.close()


async def drive(target: Target, *, first_key: int, count: int, concurrency: int, sink: CallbackServer,
                stats_port: int, pids: dict[str, int], stall_s: float = 30.0,
                bind_sink: Callable[[Callable[[bytes, bytes], None]], None]) -> RunResult:
    """Send `count` messages (keys from `first_key`) to `target` and wait for their callbacks at `sink`.

    `bind_sink` points the sink at this run's callback handler; `pids` names the processes whose CPU seconds
    are read before and after (this process's own included as "driver+sink"). The run ends when every
    accepted message had its callback, or fails after `stall_s` seconds without progress.
    """
    run = _Run(target, first_key, count, concurrency)
    bind_sink(run.on_callback)
    result = RunResult(target.name, count, _loadavg())
    samples: list[tuple[float, int, int]] = []
    stop_poll = asyncio.Event()
    conns = [[await HttpConnection.connect(HOST, port) for port in target.ports] for _ in range(concurrency)]
    poller = asyncio.ensure_future(_poll(stats_port, target.account, samples, stop_poll))
    try:
        while not samples:  # the baseline
            await asyncio.sleep(0.005)
        base_submitted, base_acked = samples[-1][1], samples[-1][2]
        cpu_before = cpu_by_name(pids)
        start = time.monotonic()
        await asyncio.gather(*(run.sender(c, sink.port) for c in conns))
        result.accept_s = max(run.accept_at, default=start) - start
        run.senders_done = True
        run.check_done()
        while not run.done.is_set():
            try:
                await asyncio.wait_for(run.done.wait(), timeout=1.0)
            except TimeoutError:
                if time.monotonic() - run.progress_at > stall_s:
                    result.problems.append(f"no callback for {stall_s:g} s: {run.callbacks} of {run.accepted}")
                    break
        cpu_after = cpu_by_name(pids)
        result.wall_s = time.monotonic() - start
        # Let the counters settle (receipts are acknowledged before callbacks can exist), then a last poll.
        await asyncio.sleep(2 * POLL_S)
        stop_poll.set()
        await poller
    finally:
        poller.cancel()
        for cs in conns:
            for c in cs:
                c.close()
    result.accepted, result.refused = run.accepted, run.refused
    result.callbacks, result.delivered, result.duplicates = run.callbacks, run.delivered, run.duplicates
    result.callback_s = max(run.callback_at, default=start) - start if run.callbacks else 0.0
    result.submit_s = _reached([(t - start, s) for t, s, _ in samples], base_submitted + run.accepted)
    result.receipt_s = _reached([(t - start, a) for t, _, a in samples], base_acked + run.accepted)
    result.cpu_s = {name: cpu_after[name] - cpu_before[name] for name in pids}
    lat = sorted(max(c - a, 0.0) * 1000 for a, c in zip(run.accept_at, run.callback_at, strict=True) if a and c)
    result.latency_ms = {f"p{p}": percentile(lat, p) for p in (50, 90, 99)} | {"max": lat[-1] if lat else 0.0}
    req = sorted(s * 1000 for s in run.request_s)
    result.request_ms = {f"p{p}": percentile(req, p) for p in (50, 99)}
    if run.refused:
        result.problems.append(f"{run.refused} messages refused")
    missing = [i for i in range(count) if run.accept_at[i] and not run.callback_at[i]]
    if missing:
        keys = ", ".join(str(first_key + i) for i in missing[:5])
        result.problems.append(f"{len(missing)} accepted messages without a final callback (keys {keys}"
                               f"{', ...' if len(missing) > 5 else ''})")
        for i in missing[:5]:
            mid = run.ids[i]
            if mid:
                result.problems.append(f"key {first_key + i} id {mid}: {await target.status_of(mid)}")
    unasked = sum(1 for i in range(count) if run.callback_at[i] and not run.accept_at[i])
    if unasked:
        result.problems.append(f"{unasked} callbacks for messages that were not accepted")
    if run.delivered != run.callbacks:
        result.problems.append(f"{run.callbacks - run.delivered} callbacks with another status than delivered")
    if run.duplicates:
        result.problems.append(f"{run.duplicates} duplicate callbacks")
    if samples and samples[-1][1] - base_submitted != run.accepted:
        result.problems.append(f"the simulator received {samples[-1][1] - base_submitted} submit_sm for "
                               f"{run.accepted} accepted messages")
    return result
