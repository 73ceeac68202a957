"""One SMSC and its binds: connect, bind, keep alive, submit within the window and the rate, take receipts and MO.

Rule 1: a window slot is freed only when the outcome of its submit_sm is durable, so that after a crash at
most the windows' worth of messages can have reached the SMSC without the store knowing.
Rule 2: a deliver_sm is answered only after its receipt or MO is durable (in arrival order per bind).
The events of one read (or one timer pass) share one write and one acker entry (`_Group`): the writes and
answers of a few hundred PDUs cost one write_nowait, not one each.
Rule 3: a bind that fails or drops is retried with exponential backoff and jitter; its in-flight messages
are handed back to the core (or marked unknown, see _core Rule 3); a response timeout recycles the session.
Rule 4: on a cluster, deliver_sm are queued and one task per connector resolves the receipts among them in batches,
one Redis round trip for up to `_RECEIPT_BATCH` (_cluster Rule 4); a batch reads records only once the writes of
the one before are durable, so two receipts of one message never fold into one stale record. A receipt whose bind
closed meanwhile is still applied or parked, just not answered; one that Redis could not resolve is not answered
either (the SMSC sends it again).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from dlr import Receipt, ReceiptStatus, parse_receipt
from routing import mask_msisdn
from smpp import (
    NO_TLVS,
    Alphabet,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    Concatenation,
    DataSm,
    DeliverSm,
    EsmClass,
    NationalLanguage,
    Pdu,
    ReferenceCounter,
    Status,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    encode_message,
    encode_pdu,
    split_message,
)
from smpp._session import (
    ConnectionClosed,
    Event,
    PduRejected,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    ResponseUndecodable,
    Role,
    Session,
    SessionConfig,
    UnexpectedResponse,
)
from smpp.adapter import ConnectionLost, ResponseTimeout, SmppConnection

from ._config import BindType, Concat, SmscConfig
from ._core import GatewayCore, SubmitOutcome
from ._model import FINAL_STATUSES, Message, Part
from ._mt import ChargeError, charge_fields
from ._store import StoreClosed, Writes
from ._throttle import AdaptiveRate

__all__ = ["Connector", "ConnectorStatistics", "SessionInfo"]

log = logging.getLogger(__name__)

_CONCAT = {Concat.UDH8: Concatenation.UDH8, Concat.UDH16: Concatenation.UDH16, Concat.SAR: Concatenation.SAR,
           Concat.PAYLOAD: Concatenation.PAYLOAD}
_ALPHABETS = {"gsm7": Alphabet.GSM7, "ucs2": Alphabet.UCS2, "latin1": Alphabet.LATIN_1}
_LANGUAGES = {"turkish": NationalLanguage.TURKISH, "spanish": NationalLanguage.SPANISH,
              "portuguese": NationalLanguage.PORTUGUESE}
_ALNUM = re.compile(r"[^0-9+]")
_RECEIPT_BATCH = 500  # receipts resolved in one Redis round trip, at most (Rule 4)
_tuple_new = tuple.__new__
_SUBMIT_DEFAULTS = list(SubmitSm())  # what `build_parts` does not set: sequence number 0, §5.2 defaults
(_S_SERVICE_TYPE, _S_SOURCE_TON, _S_SOURCE_NPI, _S_SOURCE, _S_DEST_TON, _S_DEST_NPI, _S_DEST, _S_ESM_CLASS,
 _S_REGISTERED, _S_DATA_CODING, _S_SHORT_MESSAGE, _S_TLVS) = (SubmitSm.field_names.index(name) for name in (
    "service_type", "source_addr_ton", "source_addr_npi", "source_addr", "dest_addr_ton", "dest_addr_npi",
    "destination_addr", "esm_class", "registered_delivery", "data_coding", "short_message", "tlvs"))
_UDHI = int(EsmClass.UDHI)


def _languages(cfg: SmscConfig) -> tuple[NationalLanguage, ...]:
    return tuple(_LANGUAGES[n.lower()] for n in cfg.national_languages)


class _Done:
    """An event that is already set: for replies that need no write."""

    @staticmethod
    async def wait() -> None:
        return

    @staticmethod
    def is_set() -> bool:
        return True


_SET = _Done()


@dataclass(slots=True)
class Job:
    """One submit_sm to send: a part of a message."""

    msg: Message
    part: int
    pdu: SubmitSm


@dataclass(slots=True)
class SessionInfo:
    """One bind of the connector, as the metrics and /readyz see it."""

    index: int
    kind: str
    state: str = "down"
    bound_since: float | None = None
    inflight: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class ConnectorStatistics:
    name: str
    sessions: tuple[SessionInfo, ...]
    binds_up: int
    backlog: int
    inflight: int
    window: int
    rate_per_s: float | None
    throttle_slowdowns: int
    throttle_waits: int
    submits: dict[int, int]
    receipts: int
    mo: int
    bind_failures: int
    reconnects: int
    receipts_by_status: dict[str, int] = field(default_factory=dict)
    awaiting_commit: int = 0  # window slots whose submit_sm was answered, held until the outcome is durable (Rule 1)


@dataclass(slots=True)
class _Group:
    """What the events of one batch (one read) leave to do once durable (Rules 1 and 2): one write for all of
    them, then the window slots to free, the deliver_sm to answer in arrival order, and the hooks to call."""

    writes: Writes = field(default_factory=Writes)
    slots: int = 0
    replies: list[Pdu] = field(default_factory=list)
    afters: list[Callable[[], None]] = field(default_factory=list)


# An acker entry: once `done` is set, free `slots`, send the replies, hand the final messages on, call the hooks.
_Ack = tuple[anyio.Event | _Done, int, Sequence[Pdu], list[Message], Sequence[Callable[[], None]]]


@dataclass(slots=True)
class _Live:
    """The state of one live connection."""

    conn: SmppConnection
    info: SessionInfo
    slots: anyio.Semaphore
    inflight: dict[int, Job] = field(default_factory=dict)
    acks: deque[_Ack] = field(default_factory=deque)
    group: _Group | None = None  # the batch of events being handled, until `_close_group`
    ack_wake: anyio.Event = field(default_factory=anyio.Event)
    slots_owed: int = 0  # window slots to withhold as they free up, after a reload made the window smaller


@dataclass(slots=True)
class _Delivered:
    """A deliver_sm waiting for the receipt task (Rule 4): `receipt` None for an MO."""

    live: _Live
    pdu: DeliverSm | DataSm
    reply: Pdu
    receipt: Receipt | None


MoHook = Callable[[str, DeliverSm | DataSm, Writes], Callable[[], None] | None]


class Connector:
    """The binds to one SMSC and the backlog of parts waiting for them."""

    def __init__(self, cfg: SmscConfig, core: GatewayCore, *, mo_hook: MoHook | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.core = core
        self.mo_hook = mo_hook
        self.clock = clock
        self.rate = AdaptiveRate(cfg.throughput_per_s, recover_s=cfg.throttle_backoff_s)
        self.refs = ReferenceCounter()
        self._languages = _languages(cfg)
        self._backlog: deque[Job] = deque()
        self._takers: list[anyio.Event] = []
        self._live: list[_Live] = []
        self.sessions: list[SessionInfo] = []
        self.stopping = False
        self._stopped = anyio.Event()
        self._submits: dict[int, int] = {}
        self._receipts = 0
        self._receipts_by_status: dict[ReceiptStatus, int] = {}  # by member: no `.value` per receipt
        self._mo = 0
        self._bind_failures = 0
        self._reconnects = 0
        self._throttle_waits = 0
        self._shared_tokens = 0
        self._sent_times: deque[float] = deque(maxlen=256)
        self._cancel: anyio.CancelScope | None = None
        self._batching = False  # a cluster: receipts go to the receipt task (Rule 4)
        self._delivered: deque[_Delivered] = deque()
        self._delivered_wake = anyio.Event()
        self._resolving = False

    # ---- what the core sees ----------------------------------------------------------------------------

    @property
    def can_submit(self) -> bool:
        return not self.stopping and any(
            live.info.kind in ("trx", "tx") and live.info.state == "bound" for live in self._live)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    @property
    def backlog_limit(self) -> int:
        # Deep enough that the dispatcher rarely parks messages (re-routing them costs), shallow enough that
        # an SMSC going down hands back a bounded amount of work for failover.
        return max(1000, 20 * self.cfg.window * self.cfg.sessions)

    def update(self, cfg: SmscConfig) -> None:
        """Take new settings that need no rebind (a reload): window, throughput, timers, submit fields.

        The live sessions keep their binds: a larger window frees slots at once, a smaller one withholds slots
        as their submits are answered; the rate ceiling changes from the next submit.

        Raises:
            ValueError: `cfg` is another SMSC's.
        """
        if cfg.name != self.name:
            raise ValueError(f"settings of SMSC {cfg.name!r} handed to connector {self.name!r}")
        old = self.cfg
        self.cfg = cfg
        self._languages = _languages(cfg)
        if (cfg.throughput_per_s, cfg.throttle_backoff_s) != (old.throughput_per_s, old.throttle_backoff_s):
            self.rate.ceiling_per_s = cfg.throughput_per_s
            self.rate.recover_s = cfg.throttle_backoff_s
            self.rate.bucket.set_rate(cfg.throughput_per_s, self.clock())
        for live in self._live:
            session = live.conn.session
            session.config = dataclasses.replace(
                session.config, window=cfg.window + 2, response_timeout_s=cfg.response_timeout_s,
                enquire_link_interval_s=cfg.enquire_link_interval_s)
            self._resize_window(live, cfg.window - old.window)
        self._wake_takers()
        self.core.kick()

    @staticmethod
    def _resize_window(live: _Live, delta: int) -> None:
        if delta > 0:
            paid = min(delta, live.slots_owed)
            live.slots_owed -= paid
            for _ in range(delta - paid):
                live.slots.release()
        elif delta < 0:
            take = min(-delta, int(live.slots.value))
            for _ in range(take):
                live.slots.acquire_nowait()
            live.slots_owed += -delta - take

    @staticmethod
    def _free_slots(live: _Live, n: int = 1) -> None:
        owed = min(n, live.slots_owed)
        live.slots_owed -= owed
        for _ in range(n - owed):
            live.slots.release()

    def enqueue(self, msg: Message) -> None:
        """Queue the parts of `msg` that this SMSC has not accepted yet."""
        try:
            pdus = self.build_parts(msg)
        except ChargeError as exc:
            self.core.fail(msg, "no_price_point", str(exc), self.name)
            return
        except ValueError as exc:
            self.core.fail(msg, "encoding", str(exc), self.name)
            return
        for i, pdu in enumerate(pdus):
            if msg.parts[i].smsc_message_id is None:
                self._backlog.append(Job(msg, i, pdu))
        self._wake_takers()

    def _wake_takers(self) -> None:
        if self._takers:
            for ev in self._takers:
                ev.set()
            self._takers.clear()

    def build_parts(self, msg: Message) -> list[SubmitSm]:
        """The submit_sm PDUs of a message for this SMSC (sequence numbers left 0).

        Raises:
            ValueError: the text cannot be encoded as asked, or needs more parts than allowed.
        """
        cfg = self.cfg
        method = _CONCAT[cfg.concatenation]
        alphabet = _ALPHABETS.get(msg.encoding)
        encoded = encode_message(msg.text, method=method, alphabet=alphabet, allow_latin1=cfg.allow_latin1,
                                 languages=self._languages)
        if msg.concat_ref is None:
            msg.concat_ref = self.refs.next(msg.to)
        parts = split_message(encoded, method, msg.concat_ref)
        if len(parts) > self.core.config.messages.max_parts:
            raise ValueError(f"the text needs {len(parts)} parts, at most {self.core.config.messages.max_parts} "
                             "allowed")
        if len(msg.parts) != len(parts):
            if any(p.smsc_message_id for p in msg.parts):
                raise ValueError("the message was split differently by another SMSC; cannot resend its parts")
            msg.parts = [Part() for _ in parts]
        msg.data_coding = encoded.data_coding
        source = msg.source
        service_type = cfg.service_type
        extra: dict[str, object] = {}
        if msg.charged:  # the operator's convention (_mt Rule 2)
            tariff, premium_source, extra = charge_fields(self.core.config.operator_for_smsc(self.name), self.name,
                                                          msg)
            service_type = tariff or service_type
            source = premium_source or source
        src_ton, src_npi = self._source_ton_npi(source)
        registered = 1 if (cfg.registered_delivery and msg.registered_delivery) else 0
        out: list[SubmitSm] = []
        for part in parts:
            tlvs: dict[str, object] = {}
            if part.sar is not None:
                tlvs.update(sar_msg_ref_num=part.sar[0], sar_total_segments=part.sar[1],
                            sar_segment_seqnum=part.sar[2])
            if part.payload is not None:
                tlvs["message_payload"] = part.payload
            tlvs.update(extra)
            # The fields by position into a copy of SubmitSm's defaults: 0.3 against 0.9 us for SubmitSm(**fields)
            # (timeit). NO_TLVS when there are none: the encoder skips its TLV pass for it (1 us of 3 a submit_sm).
            v = _SUBMIT_DEFAULTS.copy()
            v[_S_SERVICE_TYPE] = service_type
            v[_S_SOURCE_TON] = src_ton
            v[_S_SOURCE_NPI] = src_npi
            v[_S_SOURCE] = source
            v[_S_DEST_TON] = cfg.dest_ton
            v[_S_DEST_NPI] = cfg.dest_npi
            v[_S_DEST] = msg.to
            v[_S_ESM_CLASS] = _UDHI if part.udhi else 0
            v[_S_REGISTERED] = registered
            v[_S_DATA_CODING] = part.data_coding
            v[_S_SHORT_MESSAGE] = part.short_message if part.payload is None else b""
            v[_S_TLVS] = Tlvs(tlvs) if tlvs else NO_TLVS  # type: ignore[arg-type]
            out.append(_tuple_new(SubmitSm, v))
        return out

    def _source_ton_npi(self, source: str) -> tuple[int, int]:
        cfg = self.cfg
        if cfg.source_ton is not None:
            return cfg.source_ton, cfg.source_npi if cfg.source_npi is not None else 0
        if _ALNUM.search(source):
            return 5, 0  # §5.2.5 alphanumeric sender
        if len(source) <= 8:
            return 3, 0  # a shortcode: network specific
        return 1, 1  # an international number, E.164

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep every configured bind up until `stop()`; returns when all binds are closed."""
        kinds: list[str]
        bind = self.cfg.bind
        if bind is BindType.TX_RX:
            kinds = ["tx", "rx"]
        else:
            kinds = [bind.value]
        async with anyio.create_task_group() as tg:
            self._cancel = tg.cancel_scope
            if self.core.cluster is not None:
                self._batching = True
                tg.start_soon(self._receipt_loop)
            for i in range(self.cfg.sessions):
                for kind in kinds:
                    info = SessionInfo(i, kind)
                    self.sessions.append(info)
                    tg.start_soon(self._keep_bound, info)
            task_status.started()
        self._stopped.set()

    async def stop(self, deadline_s: float) -> None:
        """Drain: take no new parts, wait for in-flight responses (up to `deadline_s`), unbind every session."""
        self.stopping = True
        self._wake_takers()
        with anyio.move_on_after(deadline_s):
            while (any(live.inflight or live.acks or live.group for live in self._live) or self._delivered
                   or self._resolving):
                await anyio.sleep(0.02)
        for live in list(self._live):
            with anyio.move_on_after(2, shield=True):
                await live.conn.unbind()
        if self._cancel is not None:
            self._cancel.cancel()
        self.core.give_back(job.msg for job in self._backlog)
        self._backlog.clear()

    async def _keep_bound(self, info: SessionInfo) -> None:
        backoff = self.cfg.reconnect.initial_s
        while not self.stopping:
            rc = self.cfg.reconnect  # read each round: a reload may change it
            started = self.clock()
            try:
                await self._one_connection(info)
            except (OSError, TimeoutError, ConnectionLost, ResponseTimeout, anyio.BrokenResourceError,
                    anyio.EndOfStream) as exc:
                info.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("smsc=%s session=%d/%s connection failed: %s", self.name, info.index, info.kind,
                            info.last_error)
            except Exception:
                log.exception("smsc=%s session=%d/%s crashed", self.name, info.index, info.kind)
                info.last_error = "internal error"
            info.state = "down"
            info.bound_since = None
            if self.stopping:
                return
            if self.clock() - started > 30:
                backoff = rc.initial_s
            delay = backoff * (1 + rc.jitter * (2 * random.random() - 1))
            self._reconnects += 1
            await anyio.sleep(delay)
            backoff = min(rc.max_s, backoff * rc.multiplier)

    async def _one_connection(self, info: SessionInfo) -> None:
        cfg = self.cfg
        info.state = "connecting"
        with anyio.fail_after(cfg.bind_timeout_s):
            stream = await anyio.connect_tcp(cfg.host, cfg.port)
        session = Session(SessionConfig(Role.ESME, window=cfg.window + 2, response_timeout_s=cfg.response_timeout_s,
                                        enquire_link_interval_s=cfg.enquire_link_interval_s))
        live: _Live | None = None

        def handler(ev: Event) -> Awaitable[None] | None:
            return None if live is None else self._on_event_now(live, ev)

        def after_events() -> None:
            if live is not None:
                self._close_group(live)

        conn = SmppConnection(stream, session, handler, after_events=after_events)
        live = _Live(conn, info, anyio.Semaphore(cfg.window))
        async with anyio.create_task_group() as tg:
            await tg.start(conn.run)
            info.state = "binding"
            bind_cls = {"trx": BindTransceiver, "tx": BindTransmitter, "rx": BindReceiver}[info.kind]
            password = cfg.password or ""
            with anyio.fail_after(cfg.bind_timeout_s):
                resp = await conn.request(bind_cls(system_id=cfg.system_id, password=password,
                                                   system_type=cfg.system_type))
            if resp.command_status != Status.ESME_ROK:
                self._bind_failures += 1
                info.last_error = f"bind refused: {Status.describe(resp.command_status)}"
                log.error("smsc=%s session=%d/%s %s", self.name, info.index, info.kind, info.last_error)
                await conn.aclose()
                tg.cancel_scope.cancel()
                return
            info.state = "bound"
            info.bound_since = self.clock()
            info.last_error = ""
            self._live.append(live)
            log.info("smsc=%s session=%d/%s bound to %s:%d as %s", self.name, info.index, info.kind, cfg.host,
                     cfg.port, info.kind)
            tg.start_soon(self._acker, live)
            if info.kind in ("trx", "tx"):
                tg.start_soon(self._submit_loop, live)
                self.core._wake.set()
            try:
                await conn.wait_closed()
            finally:
                self._live.remove(live)
                info.state = "down"
                tg.cancel_scope.cancel()
        log.info("smsc=%s session=%d/%s closed: %s", self.name, info.index, info.kind, conn.close_reason)

    # ---- submitting ------------------------------------------------------------------------------------

    async def _take(self) -> Job | None:
        while not self._backlog:
            if self.stopping:
                return None
            waiter = anyio.Event()  # one per waiting session: each must be woken
            self._takers.append(waiter)
            await waiter.wait()
        job = self._backlog.popleft()
        if len(self._backlog) == self.backlog_limit // 2:
            self.core.kick()  # room again: the core may route parked messages here
        return job

    async def _submit_loop(self, live: _Live) -> None:
        conn = live.conn
        while not conn.closed and not self.stopping:
            await live.slots.acquire()
            job = await self._take()
            if job is None:
                self._free_slots(live)
                return
            jobs = [job]
            while self._backlog and live.slots.value > 0:
                live.slots.acquire_nowait()
                jobs.append(self._backlog.popleft())
            if len(self._backlog) < self.backlog_limit // 2:
                self.core.kick()
            marks = [j.msg for j in jobs if not j.msg.on_wire and (j.msg.charged or not j.msg.resend_after_crash)]
            if marks:
                for m in marks:
                    m.on_wire = True
                await self.core.store.write(Writes(messages=marks))
            for i, j in enumerate(jobs):
                if self.core.cluster is not None and self.cfg.throughput_per_s is not None:
                    await self._shared_token()
                wait = self.rate.take(self.clock())
                while wait > 0:
                    self._throttle_waits += 1
                    await anyio.sleep(wait)
                    wait = self.rate.take(self.clock())
                if conn.closed or j.msg.is_final:
                    rest = jobs[i:]
                    self._free_slots(live, len(rest))
                    self.core.give_back(r.msg for r in rest if not r.msg.is_final)
                    if conn.closed:
                        return
                    continue
                sent = conn.send(j.pdu)
                live.inflight[sent.sequence_number] = j
                live.info.inflight = len(live.inflight)
                self._sent_times.append(self.clock())

    async def _shared_token(self) -> None:
        """One submit_sm from the bucket the SMSC's nodes share, taken in chunks of about 50 ms of its rate."""
        if self._shared_tokens <= 0:
            rate = self.cfg.throughput_per_s or 1.0
            chunk = max(1, int(rate / 20))
            assert self.core.cluster is not None
            while (wait := await self.core.cluster.smsc_tokens(self.cfg, chunk)) > 0:
                self._throttle_waits += 1
                await anyio.sleep(wait)
            self._shared_tokens = chunk
        self._shared_tokens -= 1

    def _observed_rate(self) -> float:
        times = self._sent_times
        if len(times) < 2:
            return 1.0
        span = times[-1] - times[0]
        return len(times) / span if span > 0 else float(len(times))

    async def _acker(self, live: _Live) -> None:
        """Rules 1 and 2: free window slots and answer deliver_sm once their writes are durable, in order."""
        conn = live.conn
        while True:
            while not live.acks:
                live.ack_wake = anyio.Event()
                await live.ack_wake.wait()
            await live.acks[0][0].wait()
            # Everything already durable goes in one pass: one loop iteration for a whole commit.
            while live.acks and live.acks[0][0].is_set():
                _, slots, replies, finals, afters = live.acks.popleft()
                self._free_slots(live, slots)
                if replies and not conn.closed:
                    try:
                        for reply in replies:
                            conn.send(reply)
                    except ConnectionLost:
                        pass
                if finals:
                    self.core.after_commit(finals)
                for after in afters:
                    after()

    @staticmethod
    def _group(live: _Live) -> _Group:
        """The open batch of `live`'s events: their writes go into its `writes`, and what waits for them into the
        rest. The adapter closes it after the last event of the batch (`_close_group`)."""
        group = live.group
        if group is None:
            group = live.group = _Group()
        return group

    def _close_group(self, live: _Live) -> None:
        """Queue the open batch's writes, one write for all its events, and its acker entry behind them."""
        group = live.group
        if group is None:
            return
        live.group = None
        writes = group.writes
        done: anyio.Event | _Done = self.core.store.write_nowait(writes) if writes else _SET
        # A message written by two events of the batch (its submit_sm_resp and its receipt) is handed on once,
        # in the order of its last write: the order in which they became final.
        finals = list({id(m): m for m in reversed(writes.messages) if m.status in FINAL_STATUSES}.values())[::-1]
        live.acks.append((done, group.slots, group.replies, finals, group.afters))
        live.ack_wake.set()

    # ---- events ----------------------------------------------------------------------------------------

    async def _on_event(self, live: _Live, ev: Event) -> None:
        pending = self._on_event_now(live, ev)
        if pending is not None:
            await pending

    def _on_event_now(self, live: _Live, ev: Event) -> Awaitable[None] | None:
        """Handle one event of `live`'s session; returns what must still be awaited. The events every message
        brings, a submit_sm_resp and a receipt, are handled at once (no coroutine: the adapter awaits only what
        this returns); a receipt that must wait, and every other event, return a coroutine."""
        if type(ev) is ResponseReceived:
            req = ev.request
            if type(req) is SubmitSm:
                self._on_submit_resp(live, req, ev.response)
                return None
        elif type(ev) is RequestReceived:
            pdu = ev.pdu
            if type(pdu) is DeliverSm or type(pdu) is DataSm:
                return self._deliver_now(live, pdu)
        return self._on_other_event(live, ev)

    async def _on_other_event(self, live: _Live, ev: Event) -> None:
        match ev:
            case ResponseTimedOut(request=SubmitSm() as req):
                self._lost(live, req.sequence_number, "no submit_sm_resp before the response timeout")
                log.warning("smsc=%s session=%d response timeout: recycling the session", self.name,
                            live.info.index)
                await live.conn.aclose()
            case ResponseUndecodable(request=SubmitSm() as req, error=err):
                self._lost(live, req.sequence_number, f"undecodable submit_sm_resp: {err}")
            case ConnectionClosed(unanswered=unanswered):
                for pending in unanswered:
                    if isinstance(pending, SubmitSm):
                        self._lost(live, pending.sequence_number, "connection closed before the submit_sm_resp")
                for _, j in list(live.inflight.items()):
                    self._lost_job(live, j, "connection closed")
                live.inflight.clear()
            case PduRejected(error=err):
                log.warning("smsc=%s session=%d rejected a PDU from the SMSC: %s", self.name, live.info.index, err)
            case UnexpectedResponse(response=resp):
                log.warning("smsc=%s session=%d unexpected %s seq=%d", self.name, live.info.index, resp.name,
                            resp.sequence_number)
            case _:
                pass

    def _on_submit_resp(self, live: _Live, req: SubmitSm, resp: Pdu) -> None:
        job = live.inflight.pop(req.sequence_number, None)
        live.info.inflight = len(live.inflight)
        if job is None:
            return
        status = resp.command_status
        self._submits[status] = self._submits.get(status, 0) + 1
        group = self._group(live)
        group.slots += 1
        writes = group.writes
        msg = job.msg
        if status == 0 and isinstance(resp, SubmitSmResp) and resp.message_id:  # 0: ESME_ROK
            early = self.core.submit_ok(msg, job.part, self.name, resp.message_id, writes)
            for receipt in early:
                self.core.apply_receipt(msg.id, job.part, receipt, self.name, writes)
                row = self.core.early_row(receipt)
                if row is not None:
                    writes.early_receipts_done.append(row)
        elif status == 0:
            # An SMSC that accepts without an id: the receipt can never be matched; count it submitted.
            self.core.submit_ok(msg, job.part, self.name, f"noid-{msg.id}-{job.part}", writes)
        else:
            outcome = self.core.submit_failed(msg, job.part, self.name, status, writes)
            if outcome == SubmitOutcome.THROTTLED:
                self.rate.throttled(self.clock(), self._observed_rate())
            elif outcome == SubmitOutcome.PERMANENT:
                self._drop_siblings(msg)
            log.info("smsc=%s id=%s to=%s part=%d refused: %s (%s)", self.name, msg.id, mask_msisdn(msg.to),
                     job.part + 1, Status.describe(status), outcome)

    def _drop_siblings(self, msg: Message) -> None:
        if any(j.msg is msg for j in self._backlog):
            self._backlog = deque(j for j in self._backlog if j.msg is not msg)

    def _lost(self, live: _Live, seq: int, reason: str) -> None:
        job = live.inflight.pop(seq, None)
        live.info.inflight = len(live.inflight)
        if job is not None:
            self._lost_job(live, job, reason)

    def _lost_job(self, live: _Live, job: Job, reason: str) -> None:
        group = self._group(live)
        group.slots += 1
        self.core.submit_lost(job.msg, job.part, self.name, reason, group.writes)
        if job.msg.is_final:
            log.error("smsc=%s id=%s outcome unknown: %s", self.name, job.msg.id, reason)

    def _deliver_now(self, live: _Live, pdu: DeliverSm | DataSm) -> Awaitable[None] | None:
        """Handle a deliver_sm; returns what must still be awaited: a receipt that matched nothing in memory
        (parked durably first) or any receipt on a cluster (`_receipt_waits`)."""
        reply = pdu.make_response()
        receipt = parse_receipt(pdu)
        if self._batching:  # Rule 4: MO too, so that the answers keep their order (Rule 2)
            if receipt is None:
                self._mo += 1
            else:
                self._receipts += 1
                key = receipt.status
                self._receipts_by_status[key] = self._receipts_by_status.get(key, 0) + 1
            self._delivered.append(_Delivered(live, pdu, reply, receipt))
            self._delivered_wake.set()
            return None
        if receipt is None:
            self._mo += 1
            hook = self.mo_hook or self.core.mo_hook
            group = self._group(live)
            after = hook(self.name, pdu, group.writes) if hook is not None else None
            group.replies.append(reply)
            if after is not None:
                group.afters.append(after)
            return None
        self._receipts += 1
        key = receipt.status
        self._receipts_by_status[key] = self._receipts_by_status.get(key, 0) + 1
        core = self.core
        hit = None if core.cluster is not None else core.match_receipt(self.name, receipt)
        if hit is None:
            return self._receipt_waits(live, pdu, reply, receipt)
        self._receipt_matched(live, reply, receipt, hit)
        return None

    async def _receipt_waits(self, live: _Live, pdu: DeliverSm | DataSm, reply: Pdu, receipt: Receipt) -> None:
        core = self.core
        if core.cluster is not None:
            hit = await core.match_or_park(self.name, receipt, pdu)
        else:  # early (its submit_sm_resp has not come yet) or unknown: kept durably, then answered
            await core.park_early(self.name, receipt, pdu)
            hit = None
        self._receipt_matched(live, reply, receipt, hit)  # a timer pass may have closed the batch meanwhile

    def _receipt_matched(self, live: _Live, reply: Pdu, receipt: Receipt, hit: tuple[str, int] | None) -> None:
        group = self._group(live)
        group.replies.append(reply)
        if hit is None:
            return
        self.core.apply_receipt(hit[0], hit[1], receipt, self.name, group.writes)
        row = self.core.early_row(receipt)
        if row is not None:
            group.writes.early_receipts_done.append(row)

    async def _receipt_loop(self) -> None:
        """Rule 4: resolve queued deliver_sm in batches; answer each once its writes are durable (Rule 2)."""
        cluster = self.core.cluster
        assert cluster is not None
        queue = self._delivered
        written: anyio.Event | _Done = _SET
        while True:
            while not queue:
                self._delivered_wake = anyio.Event()
                await self._delivered_wake.wait()
            await written.wait()  # the records this batch reads hold what the last one wrote
            batch = [queue.popleft() for _ in range(min(len(queue), _RECEIPT_BATCH))]
            receipts = [(d.receipt, encode_pdu(d.pdu)) for d in batch if d.receipt is not None]
            found: list[tuple[str, int, Message | None] | None] = []
            self._resolving = True
            try:
                if receipts:
                    try:
                        found = await cluster.match_or_park_many(self.name, receipts)
                    except StoreClosed as exc:
                        log.error("smsc=%s %d receipts left unanswered, the SMSC sends them again: %s", self.name,
                                  len(receipts), exc)
                        batch = [d for d in batch if d.receipt is None]
                written = self._apply_delivered(batch, iter(found))
            except StoreClosed as exc:  # the writes cannot be made durable: nothing is answered
                log.error("smsc=%s %d deliver_sm left unanswered: %s", self.name, len(batch), exc)
                written = _SET
            finally:
                self._resolving = False

    def _apply_delivered(self, batch: list[_Delivered], found: Iterator[tuple[str, int, Message | None] | None]
                         ) -> anyio.Event | _Done:
        """Fold a resolved batch into one write; queue each answer behind it (Rule 2). Returns its durability."""
        core = self.core
        writes = Writes()
        afters: list[Callable[[], None] | None] = []
        for d in batch:
            after = None
            if d.receipt is None:
                hook = self.mo_hook or core.mo_hook
                after = hook(self.name, d.pdu, writes) if hook is not None else None
            else:
                hit = next(found)
                if hit is not None:  # else parked: kept durably, answered now
                    core.apply_receipt_to(hit[2], hit[0], hit[1], d.receipt, self.name, writes)
            afters.append(after)
        # Messages made final get their callbacks once durable, whether or not their bind is still up.
        done: anyio.Event | _Done = core.write_then(writes) if writes else _SET
        for d, after in zip(batch, afters, strict=True):
            live = d.live
            if live.conn.closed:
                continue  # not answered: the SMSC sends it again
            live.acks.append((done, 0, (d.reply,), [], () if after is None else (after,)))
            live.ack_wake.set()
        return done

    def statistics(self) -> ConnectorStatistics:
        rate = self.rate.statistics()
        return ConnectorStatistics(
            name=self.name, sessions=tuple(self.sessions),
            binds_up=sum(1 for s in self.sessions if s.state == "bound"), backlog=len(self._backlog),
            inflight=sum(len(live.inflight) for live in self._live), window=self.cfg.window,
            rate_per_s=rate.current_per_s, throttle_slowdowns=rate.slowdowns, throttle_waits=self._throttle_waits,
            submits=dict(self._submits), receipts=self._receipts, mo=self._mo, bind_failures=self._bind_failures,
            reconnects=self._reconnects, receipts_by_status={k.value: n for k, n in self._receipts_by_status.items()},
            awaiting_commit=sum(sum(a[1] for a in live.acks) + (live.group.slots if live.group else 0)
                                for live in self._live),
        )
