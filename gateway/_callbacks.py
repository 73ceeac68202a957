"""Status callbacks: each final status POSTed, signed, to the message's callback URL or its account's default.

Rule 1: at least once. A status stays `callback_pending` in the store until its target answered 2xx; only then is
the flag cleared (durably), so a restart resends exactly the statuses that were not acknowledged.
Rule 2: one pending callback per message id: a status handed over twice (the restart's reload and the core's
post-commit hook can both see it) is sent once.
Rule 3: a failed attempt (non-2xx, timeout, connection error) is retried with exponential backoff and jitter,
from `retry_initial_s` up to `retry_max_s`; after `max_age_s` since the status it is given up (logged at ERROR,
counted, and cleared so a restart does not retry it).
Rule 4: a target that fails pauses for the same backoff, so a receiver that is down is not hammered; other
targets keep going.
Rule 5: for an account with `callback.batch_max > 1`, statuses for the same URL go together as a JSON array of up
to `batch_max` objects, sent when the array is full or `batch_interval_ms` after its oldest status was queued,
whichever comes first.
Rule 6: at most `max_per_host` requests are in flight to one host (scheme, host, port) at a time.
Rule 7: requests are sent by a pool of sender tasks that take them from a queue, not by a task each: starting and
running an AnyIO task costs about 14 us here, which with `batch_max` 1 is paid once per status. The pool grows
while every sender is busy (Rule 6 bounds it: `max_per_host` per host) and keeps at most IDLE_SENDERS waiting for
work.

Signature (docs/callbacks.md): `X-Smppgw-Timestamp: <unix seconds>` and
`X-Smppgw-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, over the exact body bytes.
"""

from __future__ import annotations

import heapq
import hmac
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.abc
import msgspec

from ._config import CallbackConfig, Config
from ._httpclient import Connect, HttpClient, HttpClientError, HttpTimeout, InvalidUrl, Url, parse_url
from ._model import STATUS_VALUE, Message, iso_time
from ._store import StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = ["CallbackSender", "CallbackStatistics", "CallbackStatus", "sign_callback"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Smppgw-Signature"
TIMESTAMP_HEADER = "X-Smppgw-Timestamp"
_USER_AGENT = "smppgw-callbacks/1"
_DEFAULT_CALLBACK = CallbackConfig()
_NEVER = float("inf")
HOST_IDLE_S = 60.0
"""A host with nothing to send for this long has its connection pool closed."""
IDLE_SENDERS = 32
"""Sender tasks kept waiting for work (Rule 7); one that finds nothing to do beyond these ends."""


class CallbackStatus(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One status as a callback receiver sees it (docs/callbacks.md)."""

    id: str
    status: str
    reference: str | None
    to: str
    source: str = msgspec.field(name="from")
    at: str
    error: dict[str, Any] | None
    parts: int
    charged: bool


_ENCODER = msgspec.json.Encoder()


def status_payload(msg: Message) -> bytes:
    """The JSON object sent for `msg` (alone, or as one element of a batch's array)."""
    return _ENCODER.encode(CallbackStatus(
        id=msg.id, status=STATUS_VALUE[msg.status], reference=msg.reference, to=msg.to, source=msg.source,
        at=iso_time(msg.status_at), error=msg.error, parts=len(msg.parts), charged=msg.charged,
    ))


def sign_callback(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Smppgw-Signature` value: `sha256=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class CallbackStatistics:
    """Counters of the callback sender (read by the metrics collector at scrape time).

    `sent`, `failed`, `retries` and `given_up` count statuses (a batch of 100 that fails counts 100), `requests`
    counts HTTP requests.
    """

    pending: int
    in_flight: int
    sent: int
    failed: int
    retries: int
    given_up: int
    requests: int


class _NowaitStore(Protocol):
    def write_nowait(self, writes: Writes) -> anyio.Event: ...


class _Item:
    """One pending status."""

    __slots__ = ("account", "attempts", "id", "msg", "payload", "ready_at", "status_at", "target")

    def __init__(self, msg: Message, payload: bytes, target: _Target, keep: bool) -> None:
        self.id = msg.id
        self.account = msg.account
        self.msg: Message | None = msg if keep else None
        self.payload = payload
        self.status_at = msg.status_at
        self.attempts = 0
        self.ready_at = 0.0
        self.target = target


class _Host:
    """One (scheme, host, port): its own small connection pool, the requests in flight to it, targets waiting."""

    __slots__ = ("client", "idle_since", "inflight", "key", "targets", "waiting")

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.client: HttpClient | None = None
        self.inflight = 0
        self.targets = 0
        self.idle_since = 0.0
        self.waiting: deque[_Target] = deque()


class _Target:
    """One callback URL of one account: its queue, batching timer and failure streak."""

    __slots__ = ("account", "address", "failures", "host", "in_ready", "in_waiting", "inflight", "key", "level",
                 "paused_until", "queue", "retired", "retrying", "timer_due", "url", "where")

    def __init__(self, account: str, url: str, host: _Host, address: Url) -> None:
        self.key = (account, url)
        self.account = account
        self.url = url
        self.address = address  # parsed once: each request reuses its prepared head
        self.host = host
        self.where = address.where
        self.queue: deque[_Item] = deque()
        self.inflight = 0
        self.retrying = 0
        self.failures = 0
        self.level = 0
        self.paused_until = 0.0
        self.in_ready = False
        self.in_waiting = False
        self.timer_due: float | None = None
        self.retired = False

    @property
    def idle(self) -> bool:
        return not (self.queue or self.inflight or self.retrying or self.in_ready or self.in_waiting)


def _address_of(url: str) -> Url | None:
    """The parsed http(s) URL (its `origin` is the host key, its `where` the log-safe `host:port`); None when
    `url` is not one."""
    try:
        return parse_url(url)
    except InvalidUrl:
        return None


class CallbackSender:
    """Sends final statuses to callback URLs (the module docstring gives the rules).

    Creating it sets `gw.core.on_final` to `enqueue` and `gw.extensions["callbacks"]` to itself; `run` is the
    service the daemon starts after the store (it first reloads the statuses still pending from the last run).

    Args:
        gw: the gateway whose `store`, `core` (its config, `callback_target`) and `extensions` are used.
        connect: opens a connection's byte stream to (scheme, host, port) instead of TCP and TLS (tests).
        max_per_host: requests in flight to one host at most (Rule 6).
        max_records_in_memory: pending statuses whose message record is kept in memory; beyond it only the
            encoded status is kept and the record is read back from the store when acknowledged.
        wall: the wall clock (seconds since the epoch), used for the age of a status and the signature timestamp.
        mono: a monotonic clock (seconds) for batching intervals, pauses and retry times.
        rng: a uniform [0, 1) source for the backoff jitter.
    """

    def __init__(self, gw: Gateway, *, connect: Connect | None = None, max_per_host: int = 8,
                 max_records_in_memory: int = 200_000, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random) -> None:
        self.gw = gw
        self.connect = connect
        self.max_per_host = max_per_host
        self.max_records_in_memory = max_records_in_memory
        self.wall = wall
        self.mono = mono
        self.rng = rng
        self._pending: dict[str, _Item] = {}
        self._targets: dict[tuple[str, str], _Target] = {}
        self._hosts: dict[tuple[str, str, int], _Host] = {}
        self._ready: deque[_Target] = deque()
        self._timers: list[tuple[float, int, _Target]] = []
        self._retries: list[tuple[float, int, _Item]] = []
        self._seq = 0
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._sends: deque[tuple[_Target, list[_Item], CallbackConfig]] = deque()  # Rule 7
        self._idle_senders: deque[anyio.Event] = deque()
        self._senders = 0
        self._next_sweep = 0.0
        self._idle_hosts = 0
        self._draining = False
        self._accounts_of: Config | None = None
        self._accounts: dict[str, CallbackConfig] = {}
        self._in_flight = 0
        self._sent = 0
        self._failed = 0
        self._retried = 0
        self._given_up = 0
        self._requests = 0
        gw.core.on_final = self.enqueue
        gw.extensions["callbacks"] = self

    # ---- intake ----------------------------------------------------------------------------------------

    def enqueue(self, msg: Message) -> None:
        """Queue the callback of `msg`, a message whose final status is durable (Rule 2: once per id)."""
        if not msg.callback_pending or not msg.is_final:
            return
        mid = msg.id
        if mid in self._pending:
            return
        url = self.gw.core.callback_target(msg)
        if url is None:
            log.warning("id=%s account=%s no callback URL any more; the status is not sent", mid, msg.account)
            self._clear([msg])
            return
        target = self._targets.get((msg.account, url))
        if target is None:
            target = self._new_target(msg.account, url)
            if target is None:
                self._given_up += 1
                log.error("id=%s account=%s callback given up: %r is not an http(s) URL", mid, msg.account, url)
                self._clear([msg])
                return
        item = _Item(msg, status_payload(msg), target, len(self._pending) < self.max_records_in_memory)
        self._pending[mid] = item
        self._put(target, item)

    def _new_target(self, account: str, url: str) -> _Target | None:
        address = _address_of(url)
        if address is None:
            return None
        key = address.origin
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        elif host.targets == 0:
            self._idle_hosts -= 1
        host.targets += 1
        target = self._targets[(account, url)] = _Target(account, url, host, address)
        return target

    def _retire(self, t: _Target) -> None:
        if t.retired or not t.idle:
            return
        t.retired = True
        del self._targets[t.key]
        host = t.host
        host.targets -= 1
        if host.targets == 0:
            host.idle_since = self.mono()
            self._idle_hosts += 1

    def _sweep_hosts(self, now: float) -> None:
        """Close the connection pools of hosts that had nothing to send for HOST_IDLE_S."""
        self._next_sweep = now + HOST_IDLE_S / 4
        tg = self._tg
        for key, host in list(self._hosts.items()):
            if host.targets == 0 and host.inflight == 0 and now - host.idle_since >= HOST_IDLE_S:
                del self._hosts[key]
                self._idle_hosts -= 1
                if host.client is not None and tg is not None:
                    tg.start_soon(host.client.aclose)

    def _client_for(self, host: _Host) -> HttpClient:
        """The host's own pool of keep-alive connections, sized to max_per_host (Rule 6), closed with the host."""
        client = host.client
        if client is None:
            client = host.client = HttpClient(max_connections_per_origin=self.max_per_host, idle_timeout_s=30.0,
                                              keep_body_bytes=0, user_agent=_USER_AGENT, connect=self.connect)
        return client

    def _put(self, t: _Target, item: _Item) -> None:
        """Append `item` to its target's queue and arrange for the queue to be sent (Rule 5)."""
        item.ready_at = self.mono()
        q = t.queue
        q.append(item)
        cfg = self._callback_config(t.account)
        if cfg.batch_max <= 1 or len(q) >= cfg.batch_max or self._draining:
            self._make_ready(t)
        elif len(q) == 1:
            self._set_timer(t, item.ready_at + cfg.batch_interval_ms / 1000)

    def _callback_config(self, account: str) -> CallbackConfig:
        config = self.gw.core.config
        if config is not self._accounts_of:  # a reload swapped the config: rebuild the lookup
            self._accounts = {a.id: a.callback for a in config.accounts}
            self._accounts_of = config
        return self._accounts.get(account, _DEFAULT_CALLBACK)

    # ---- scheduling ------------------------------------------------------------------------------------

    def _make_ready(self, t: _Target) -> None:
        if not t.in_ready:
            t.in_ready = True
            self._ready.append(t)
            self._wake.set()

    def _set_timer(self, t: _Target, due: float) -> None:
        if t.timer_due is not None and t.timer_due <= due:
            return
        t.timer_due = due
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, t))
        self._wake.set()

    def _schedule_retry(self, item: _Item, due: float) -> None:
        item.target.retrying += 1
        self._seq += 1
        heapq.heappush(self._retries, (due, self._seq, item))
        self._wake.set()

    def _backoff_s(self, cfg: CallbackConfig, n: int) -> float:
        base = cfg.retry_initial_s * 2.0 ** min(max(0, n - 1), 60)
        return min(cfg.retry_max_s, base * (0.8 + 0.4 * self.rng()))

    def _run_due(self) -> float | None:
        """Fire due timers and retries, dispatch ready targets; the seconds until the next timer or retry."""
        now = self.mono()
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, t = heapq.heappop(timers)
            if t.timer_due == due:
                t.timer_due = None
                self._make_ready(t)
        retries = self._retries
        while retries and retries[0][0] <= now:
            _, _, item = heapq.heappop(retries)
            item.target.retrying -= 1
            if self._pending.get(item.id) is item:
                self._put(item.target, item)
        ready = self._ready
        while ready:
            t = ready.popleft()
            t.in_ready = False
            self._dispatch(t, now)
        if now >= self._next_sweep:
            self._sweep_hosts(now)
        nxt = min(timers[0][0] if timers else _NEVER, retries[0][0] if retries else _NEVER,
                  self._next_sweep if self._idle_hosts else _NEVER)
        return None if nxt == _NEVER else max(0.0, nxt - now)

    def _dispatch(self, t: _Target, now: float) -> None:
        """Start as many requests for `t` as its batching, pause and host limit allow."""
        cfg = self._callback_config(t.account)
        q = t.queue
        tg = self._tg
        assert tg is not None
        host = t.host
        while q:
            if t.paused_until > now:  # Rule 4: the timer makes it ready again
                self._set_timer(t, t.paused_until)
                return
            if cfg.batch_max > 1 and len(q) < cfg.batch_max and not self._draining:
                due = q[0].ready_at + cfg.batch_interval_ms / 1000
                if due > now:
                    self._set_timer(t, due)
                    return
            if host.inflight >= self.max_per_host:
                if not t.in_waiting:
                    t.in_waiting = True
                    host.waiting.append(t)
                return
            n = min(cfg.batch_max, len(q))
            batch = [q.popleft() for _ in range(n)]
            host.inflight += 1
            t.inflight += 1
            self._in_flight += 1
            self._sends.append((t, batch, cfg))
            if self._idle_senders:
                self._idle_senders.popleft().set()
            elif self._senders < self._in_flight:  # every sender busy: one more (Rule 6 bounds _in_flight)
                self._senders += 1
                tg.start_soon(self._sender)
        self._retire(t)

    async def _sender(self) -> None:
        """One sender of the pool (Rule 7): sends queued requests one after the other."""
        sends = self._sends
        try:
            while True:
                while not sends:
                    if len(self._idle_senders) >= IDLE_SENDERS:
                        return
                    wake = anyio.Event()
                    self._idle_senders.append(wake)
                    await wake.wait()
                t, batch, cfg = sends.popleft()
                await self._send(t, batch, cfg)
        finally:
            self._senders -= 1

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Reload the statuses still pending in the store, then send callbacks until cancelled.

        A status not acknowledged when this is cancelled stays pending in the store (Rule 1).
        """
        async with anyio.create_task_group() as tg:
            self._tg = tg
            before = len(self._pending)
            for msg in self.gw.store.callback_pending():
                self.enqueue(msg)
            restored = len(self._pending) - before
            if restored:
                log.info("callbacks: %d statuses pending from the last run are sent again", restored)
            task_status.started()
            try:
                while True:
                    self._wake = anyio.Event()
                    delay = self._run_due()
                    if not self._pending:
                        self._idle.set()
                    if delay is None:
                        await self._wake.wait()
                    else:
                        with anyio.move_on_after(delay):
                            await self._wake.wait()
            finally:
                self._tg = None
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    for host in self._hosts.values():
                        if host.client is not None:
                            await host.client.aclose()
                            host.client = None
                if self._pending:
                    log.info("callbacks: %d statuses still pending stay in the store for the next run",
                             len(self._pending))

    async def drain(self) -> None:
        """Send what is queued without waiting for batches to fill; return when nothing is pending.

        The caller bounds it (`with anyio.move_on_after(...)`): a receiver that is down keeps statuses pending,
        and they stay in the store for the next run.
        """
        self._draining = True
        for t in list(self._targets.values()):
            if t.queue:
                self._make_ready(t)
        while self._pending:
            self._idle = anyio.Event()
            self._wake.set()
            await self._idle.wait()

    # ---- sending ---------------------------------------------------------------------------------------

    async def _send(self, t: _Target, batch: list[_Item], cfg: CallbackConfig) -> None:
        if cfg.batch_max > 1:
            body = b"[" + b",".join([i.payload for i in batch]) + b"]"
        else:
            body = batch[0].payload
        timestamp = str(int(self.wall()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
        if cfg.secret:
            headers[SIGNATURE_HEADER] = sign_callback(cfg.secret, timestamp, body)
        self._requests += 1
        error: str | None = None
        client = self._client_for(t.host)
        try:
            resp = await client.post(t.address, body, headers, timeout_s=cfg.timeout_s)
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}"
        except HttpTimeout:
            error = f"no answer within {cfg.timeout_s:g} s"
        except (HttpClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            self._in_flight -= 1
            t.inflight -= 1
            host = t.host
            host.inflight -= 1
            while host.waiting and host.inflight < self.max_per_host:
                w = host.waiting.popleft()
                w.in_waiting = False
                if not w.retired:
                    self._make_ready(w)
        if error is None:
            self._acknowledged(t, batch)
        else:
            self._attempt_failed(t, batch, cfg, error)
        self._retire(t)

    def _acknowledged(self, t: _Target, batch: list[_Item]) -> None:
        if t.failures:
            log.info("callbacks target=%s answers again after %d failed requests", t.where, t.failures)
            t.failures = t.level = 0
            t.paused_until = 0.0
            if t.queue:
                self._make_ready(t)
        pending = self._pending
        records: list[Message] = []
        for item in batch:
            if pending.get(item.id) is item:
                del pending[item.id]
            record = item.msg if item.msg is not None else self.gw.store.get(item.id)
            if record is not None:
                records.append(record)
        self._sent += len(batch)
        self._clear(records)
        if not pending:
            self._idle.set()

    def _attempt_failed(self, t: _Target, batch: list[_Item], cfg: CallbackConfig, error: str) -> None:
        t.failures += 1
        if t.failures == 1:
            log.warning("callbacks target=%s failing (%s); retrying with backoff", t.where, error)
        now = self.mono()
        wall = self.wall()
        self._failed += len(batch)
        if now >= t.paused_until:
            # Rule 4: the target pauses; requests that were in flight together and fail too share this pause
            # rather than each lengthening it.
            t.level += 1
            t.paused_until = now + self._backoff_s(cfg, t.level)
            self._set_timer(t, t.paused_until)
        gone: list[Message] = []
        for item in batch:
            if self._pending.get(item.id) is not item:
                continue
            item.attempts += 1
            age = wall - item.status_at
            if age >= cfg.max_age_s:
                del self._pending[item.id]
                self._given_up += 1
                log.error("id=%s account=%s callback given up after %d attempts, %.0f s after the status: %s",
                          item.id, item.account, item.attempts, age, error)
                record = item.msg if item.msg is not None else self.gw.store.get(item.id)
                if record is not None:
                    gone.append(record)
                continue
            self._retried += 1
            log.debug("id=%s callback attempt %d to target=%s failed: %s", item.id, item.attempts, t.where, error)
            self._schedule_retry(item, now + self._backoff_s(cfg, item.attempts))
        if gone:
            self._clear(gone)
            if not self._pending:
                self._idle.set()

    def _clear(self, records: list[Message]) -> None:
        """Clear `callback_pending` on `records` durably (Rule 1)."""
        if not records:
            return
        for m in records:
            m.callback_pending = False
        store = cast(_NowaitStore, self.gw.store)
        try:
            clear = getattr(store, "clear_callbacks", None)  # SqliteStore: the column alone
            if clear is not None:
                clear(records)
            else:
                store.write_nowait(Writes(messages=records))
        except StoreClosed:
            log.warning("callbacks: the store is closed; %d acknowledged statuses may be sent again after a "
                        "restart", len(records))

    # ---- reading ---------------------------------------------------------------------------------------

    def statistics(self) -> CallbackStatistics:
        return CallbackStatistics(len(self._pending), self._in_flight, self._sent, self._failed, self._retried,
                                  self._given_up, self._requests)
