"""Rule: no task and no await per message; each bind reads 64 KiB at a time and writes once per loop round.

The SMPP driver of the load generator: an ESME with one or more binds, each a sans-IO `Session` driven by a
reader, a writer and a timer task. The reader feeds every whole PDU of a read to the session, records
responses and receipts, answers deliver_sm into the session's buffer and wakes the writer. The writer fills
the window with submit_sm (closed loop) or with the messages the `Pacer` says are due (open loop), then sends
everything queued in one write. Binds share one message counter, so a slow or lost bind leaves its share to
the others, and one table of ids awaiting receipts, because an SMSC may send a receipt to any receiver bind
of the account.

A receipt is matched by its receipted_message_id TLV, which repeats the submit_sm_resp id (§5.3.2.12); without
it, by the id in the receipt text, read under the `IdPolicy` given (for operators that write the two ids in
different bases). A receipt that comes before its submit_sm_resp waits for it. The first receipt of a
submit_sm that is not an intermediate notification (esm_class 0x20, or message_state ENROUTE) completes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from dlr import (
    IdFormat,
    IdPolicy,
    ReceiptKind,
    ReceiptStatus,
    parse_receipt,
    receipt_keys,
    smsc_id_keys,
    status_from_message_state,
)
from smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandId,
    MessageState,
    Npi,
    Pdu,
    RegisteredDelivery,
    Status,
    SubmitSm,
    Ton,
    Unbind,
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
)
from smpp.adapter import READ_SIZE, set_nodelay

from ._load_plan import LoadPlan, Pacer, WirePart
from ._load_stats import Tally

__all__ = ["BindFailed", "SmppTarget", "run_smpp", "status_name"]

log = logging.getLogger(__name__)

_SUBMIT_SM = int(CommandId.submit_sm)
_DELIVER_SM = int(CommandId.deliver_sm)
_DATA_SM = int(CommandId.data_sm)
_ENQUIRE_LINK = int(CommandId.enquire_link)
_RECEIPTED_MESSAGE_ID = 0x001E  # §5.3.2.12
_MESSAGE_STATE = 0x0427  # §5.3.2.35
_TYPE_MASK = 0x3C  # §5.2.12: esm_class bits 5-2, the message type
_INTERMEDIATE = 0x20
_ENROUTE = int(MessageState.ENROUTE)

_BIND_CLASSES = {"transceiver": BindTransceiver, "transmitter": BindTransmitter, "receiver": BindReceiver}


def status_name(command_status: int) -> str:
    """The spec name of a command_status (`ESME_RTHROTTLED`), or its hex value for vendor codes."""
    try:
        return Status(command_status).name
    except ValueError:
        return f"0x{command_status:08x}"


class BindFailed(Exception):
    """A connection or a bind failed before the run could start."""


@dataclass(frozen=True, slots=True)
class SmppTarget:
    """Where and how to bind.

    Attributes:
        host: the SMSC's address.
        port: its SMPP port.
        system_id: the account.
        password: its password.
        system_type: the bind's system_type (§4.1.1), often blank.
        bind_type: `transceiver`, or `transmitter` (then as many receiver binds take the receipts).
        binds: how many submitting binds.
        window: outstanding submit_sm per bind (closed loop: always this many in flight).
        response_timeout_s: a submit_sm without a response after this long is counted unanswered.
        bind_timeout_s: how long a connect and bind may take.
        id_policy: how the SMSC writes ids in submit_sm_resp and in receipt texts.
        source_addr: the MT's source_addr (digits, or an alphanumeric sender).
    """

    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    bind_type: str = "transceiver"
    binds: int = 1
    window: int = 100
    response_timeout_s: float = 30.0
    bind_timeout_s: float = 10.0
    id_policy: IdPolicy = field(default_factory=IdPolicy)
    source_addr: str = "4479"

    @property
    def url(self) -> str:
        return f"smpp://{self.system_id}@{self.host}:{self.port}"


class _Run:
    """What the binds of one run share."""

    def __init__(self, target: SmppTarget, plan: LoadPlan, tally: Tally, clock: Callable[[], float]) -> None:
        self.target = target
        self.plan = plan
        self.tally = tally
        self.clock = clock
        self.next_message = 0
        self.limit = plan.count
        self.pacer: Pacer | None = None
        self.deadline: float | None = None
        self.awaiting: dict[str, float] = {}  # receipt key -> send (or due) time of its submit_sm
        self.early: dict[str, tuple[float, str]] = {}  # receipt key -> (arrival, status) with no resp yet
        self.links: list[_Link] = []
        self.answered = anyio.Event()
        self.receipted = anyio.Event()
        policy = target.id_policy
        self.resp_format = policy.resp
        self.plain_ids = policy.resp is IdFormat.AS_IS
        self.want_receipts = plan.receipts
        self.registered_delivery = int(RegisteredDelivery.RECEIPT_ALWAYS) if plan.receipts else 0
        self.status_names: dict[int, str] = {}
        self.state_words: dict[int, str] = {}

    def resp_key(self, message_id: str) -> str:
        if self.plain_ids:
            return message_id
        keys = smsc_id_keys(message_id, self.resp_format)
        return keys[0] if keys else message_id

    def status_of(self, command_status: int) -> str:
        name = self.status_names.get(command_status)
        if name is None:
            name = self.status_names[command_status] = status_name(command_status)
        return name

    def state_word(self, message_state: int) -> str:
        word = self.state_words.get(message_state)
        if word is None:
            word = self.state_words[message_state] = status_from_message_state(message_state).stat
        return word

    def stop_sending(self) -> None:
        """No further message is started (duration reached, or no bind can submit)."""
        if self.limit > self.next_message:
            self.limit = self.next_message
            self.tally.messages_planned = self.next_message
            self.tally.requests_planned = self.plan.mix.parts_in(self.next_message)
        self.check()

    def check(self) -> None:
        """Set the events once every planned request is answered (or no bind is left to send them) and every
        expected receipt is matched."""
        t = self.tally
        submitting = [link for link in self.links if link.submits]
        if ((self.next_message >= self.limit and not any(link.busy for link in submitting))
                or all(link.closed.is_set() for link in submitting)):
            self.answered.set()
            if t.receipts_received >= t.receipts_expected:
                self.receipted.set()


class _Link:
    """One bind: its stream, its session and its three tasks."""

    def __init__(self, run: _Run, stream: anyio.abc.ByteStream, session: Session, *, submits: bool) -> None:
        self.run = run
        self.stream = stream
        self.session = session
        self.submits = submits
        self.sent_at: dict[int, float] = {}
        self.dirty = anyio.Event()
        self.closed = anyio.Event()
        self.parts: list[WirePart] = []  # the current message's parts; those from part_index on are unsent
        self.part_index = 0
        self.dest = ""
        self.t0 = 0.0
        self.cancel: anyio.CancelScope | None = None

    @property
    def busy(self) -> bool:
        """True while this bind holds unsent parts or unanswered submit_sm."""
        return not self.closed.is_set() and (bool(self.sent_at) or self.part_index < len(self.parts))

    # ---- the tasks ---------------------------------------------------------------------------------------

    async def serve(self, first_events: list[Event]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.cancel = tg.cancel_scope
                self.handle(first_events, self.run.clock())
                tg.start_soon(self.writer)
                tg.start_soon(self.timers)
                await self.reader()
                tg.cancel_scope.cancel()
        finally:
            self.lost("connection closed")
            with anyio.move_on_after(1, shield=True):
                try:
                    await self.stream.aclose()
                except (anyio.BrokenResourceError, OSError):
                    pass

    def lost(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.handle(self.session.connection_lost(), self.run.clock(), reason)
        self.closed.set()
        self.run.check()

    async def reader(self) -> None:
        receive = self.stream.receive
        receive_data = self.session.receive_data
        clock = self.run.clock
        while True:
            try:
                data = await receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self.lost("connection closed by the SMSC")
                return
            now = clock()
            self.handle(receive_data(data, now=now), now)
            self.dirty.set()
            if self.session.closed:
                self.lost("unbound")
                return

    def handle(self, events: Sequence[Any], now: float, reason: str = "") -> None:
        """Record every event of one read (the hot loop; `events` are session events, typed loosely so that
        the `type(ev) is` dispatch needs no casts)."""
        run = self.run
        tally = run.tally
        sent_at = self.sent_at
        awaiting = run.awaiting
        early = run.early
        want_receipts = run.want_receipts
        plain = run.plain_ids
        response_append = tally.response_s.append
        receipt_append = tally.receipt_s.append
        send = self.session.send
        answered = False
        for ev in events:
            kind = type(ev)
            if kind is ResponseReceived:
                request = ev.request
                if request.command_id != _SUBMIT_SM:
                    continue
                answered = True
                response = ev.response
                t0 = sent_at.pop(request.sequence_number, now)
                if response.command_status == 0 and response.command_id != 0x8000_0000:
                    tally.ok += 1
                    response_append(now - t0)
                    if want_receipts:
                        tally.receipts_expected += 1
                        key = response.message_id if plain else run.resp_key(response.message_id)
                        if early and key in early:
                            arrived, word = early.pop(key)
                            tally.receipts[word] = tally.receipts.get(word, 0) + 1
                            receipt_append(max(arrived, t0) - t0)
                        else:
                            awaiting[key] = t0
                else:
                    tally.add_error(run.status_of(response.command_status))
            elif kind is RequestReceived:
                pdu = ev.pdu
                cid = pdu.command_id
                if cid == _DELIVER_SM or cid == _DATA_SM:
                    send(pdu.make_response())
                    mtype = pdu.esm_class & _TYPE_MASK
                    if mtype == 0:
                        tally.mo += 1
                        continue
                    message_id: Any = None
                    state: Any = None
                    for tag, value in pdu.tlvs.items_in_order():
                        if tag == _RECEIPTED_MESSAGE_ID:
                            message_id = value
                        elif tag == _MESSAGE_STATE:
                            state = value
                    if message_id is not None and state is not None:
                        # §5.3.2.12: the TLV repeats the submit_sm_resp id, so it is read as one.
                        keys: tuple[str, ...] = (message_id if plain else run.resp_key(message_id),)
                        intermediate = mtype == _INTERMEDIATE or state == _ENROUTE
                        word = "" if intermediate else run.state_word(state)
                    else:
                        keys, intermediate, word = self._slow_receipt(pdu)
                    if intermediate:
                        tally.intermediate += 1
                        continue
                    tally.last_receipt = now
                    for key in keys:
                        submitted = awaiting.pop(key, None)
                        if submitted is not None:
                            tally.receipts[word] = tally.receipts.get(word, 0) + 1
                            receipt_append(now - submitted)
                            break
                    else:
                        if keys:
                            early[keys[0]] = (now, word)
                        else:
                            tally.unmatched += 1
                elif pdu.response is not None:
                    send(pdu.make_response(command_status=Status.ESME_RINVCMDID))
            elif kind is ResponseTimedOut:
                request = ev.request
                if request.command_id == _SUBMIT_SM:
                    sent_at.pop(request.sequence_number, None)
                    tally.add_unanswered("response timeout")
                    answered = True
                elif request.command_id == _ENQUIRE_LINK and self.cancel is not None:
                    log.warning("smsc=%s enquire_link unanswered: closing the bind", run.target.url)
                    self.cancel.cancel()
            elif kind is ConnectionClosed:
                lost = [r for r in ev.unanswered if r.command_id == _SUBMIT_SM]
                for r in lost:
                    sent_at.pop(r.sequence_number, None)
                if lost:
                    tally.add_unanswered(reason or "connection closed", len(lost))
                    answered = True
                if self.part_index < len(self.parts):
                    # The rest of a long message cannot follow on another bind: its reference is this bind's.
                    tally.add_unanswered("connection closed", len(self.parts) - self.part_index)
                    self.part_index = len(self.parts)
            elif kind is ResponseUndecodable:
                request = ev.request
                if request.command_id == _SUBMIT_SM:
                    # The response came but could not be read: the submit_sm's outcome is unknown.
                    sent_at.pop(request.sequence_number, None)
                    tally.add_unanswered("undecodable response")
                    answered = True
            elif kind is PduRejected:
                tally.rejected += 1
        if answered:
            tally.last_response = now
            run.check()
        elif run.tally.receipts_received >= run.tally.receipts_expected and run.answered.is_set():
            run.receipted.set()

    def _slow_receipt(self, pdu: Pdu) -> tuple[tuple[str, ...], bool, str]:
        receipt = parse_receipt(pdu)
        if receipt is None:
            return (), False, ""
        status = receipt.status
        intermediate = receipt.kind is ReceiptKind.INTERMEDIATE_NOTIFICATION or status is ReceiptStatus.ENROUTE
        return receipt_keys(receipt, self.run.target.id_policy), intermediate, status.stat

    async def writer(self) -> None:
        run = self.run
        session = self.session
        send = self.stream.send
        clock = run.clock
        while True:
            self.dirty = anyio.Event()
            wait_s: float | None = None
            if self.submits and not self.closed.is_set():
                now = clock()
                if run.deadline is not None and now >= run.deadline:
                    run.stop_sending()
                self.fill(now)
                pacer = run.pacer
                if (pacer is not None and run.next_message < run.limit and session.window_free > 0
                        and self.part_index >= len(self.parts)):
                    wait_s = pacer.due_time(run.next_message) - clock()
            data = session.data_to_send()
            if data:
                try:
                    await send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    if self.cancel is not None:
                        self.cancel.cancel()
                    return
                continue
            if wait_s is None:
                await self.dirty.wait()
            elif wait_s > 0:
                with anyio.move_on_after(wait_s):
                    await self.dirty.wait()

    def fill(self, now: float) -> None:
        """Queue submit_sm until the window is full or nothing more is due."""
        session = self.session
        free = session.window_free
        if free <= 0:
            return
        run = self.run
        plan = run.plan
        tally = run.tally
        sent_at = self.sent_at
        pacer = run.pacer
        next_seq = session.next_sequence_number
        send = session.send
        kind_of = plan.mix.kind_of
        source = run.target.source_addr
        source_ton, source_npi = _address_type(source)
        registered_delivery = run.registered_delivery
        recipients = plan.recipients
        base = plan.destination
        base_number = int(base) if recipients > 1 else 0
        limit = run.limit if pacer is None else min(run.limit, pacer.due(now))
        parts = self.parts
        i = self.part_index
        dest = self.dest
        t0 = self.t0
        sent = 0
        while free > 0:
            if i >= len(parts):
                k = run.next_message
                if k >= limit:
                    break
                run.next_message = k + 1
                tally.messages_started += 1
                kind = kind_of(k)
                parts = kind.wire_parts(k)
                i = 0
                dest = base if recipients <= 1 else str(base_number + k % recipients)
                t0 = now if pacer is None else pacer.due_time(k)
            esm_class, short_message, data_coding = parts[i]
            i += 1
            seq = next_seq()
            send(SubmitSm(sequence_number=seq, source_addr_ton=source_ton, source_addr_npi=source_npi,
                          source_addr=source, dest_addr_ton=1, dest_addr_npi=1, destination_addr=dest,
                          esm_class=esm_class, registered_delivery=registered_delivery,
                          data_coding=data_coding, short_message=short_message))
            sent_at[seq] = t0
            free -= 1
            sent += 1
        self.parts = parts
        self.part_index = i
        self.dest = dest
        self.t0 = t0
        if sent:
            tally.sent += sent
            if tally.first_send is None:
                tally.first_send = t0

    async def timers(self) -> None:
        session = self.session
        clock = self.run.clock
        while True:
            now = clock()
            deadline = session.next_deadline()
            await anyio.sleep(0.5 if deadline is None else min(max(deadline - now, 0.01), 0.5))
            now = clock()
            events = session.poll(now)
            if events:
                self.handle(events, now)
            if session.has_data_to_send:
                self.dirty.set()

    async def unbind(self) -> None:
        """Send unbind and wait (bounded by the caller) until the SMSC answers or the connection closes."""
        if self.closed.is_set() or not self.session.state.is_bound:
            return
        self.session.send(Unbind())
        self.dirty.set()
        await self.closed.wait()


def _address_type(addr: str) -> tuple[int, int]:
    """TON and NPI for a source address: international E.164 digits, a short code, or alphanumeric (§5.2.5)."""
    if addr.isdigit():
        if len(addr) > 8:
            return int(Ton.INTERNATIONAL), int(Npi.ISDN)
        return int(Ton.NETWORK_SPECIFIC), int(Npi.UNKNOWN)
    return int(Ton.ALPHANUMERIC), int(Npi.UNKNOWN)


async def _connect(run: _Run, bind_type: str, *, submits: bool) -> tuple[_Link, list[Event]]:
    """Connect and bind; returns the link and the events that came in the bind response's read."""
    target = run.target
    try:
        stream = await anyio.connect_tcp(target.host, target.port)
    except OSError as exc:
        raise BindFailed(f"cannot connect to {target.host}:{target.port}: {exc.strerror or exc}") from None
    set_nodelay(stream)
    now = run.clock()
    session = Session(SessionConfig(Role.ESME, window=target.window, response_timeout_s=target.response_timeout_s,
                                    enquire_link_interval_s=30.0), now=now)
    bind = _BIND_CLASSES[bind_type](system_id=target.system_id, password=target.password,
                                    system_type=target.system_type, interface_version=0x34)
    session.send(bind, now=now)
    rest: list[Event] = []
    try:
        await stream.send(session.data_to_send())
        while True:
            data = await stream.receive(READ_SIZE)
            events = session.receive_data(data, now=run.clock())
            for n, ev in enumerate(events):
                if isinstance(ev, ResponseReceived) and ev.request.command_id == bind.command_id:
                    status = ev.response.command_status
                    if status != 0:
                        raise BindFailed(f"{bind.name} as {target.system_id!r} refused: {status_name(status)}")
                    rest = events[n + 1:]
                    return _Link(run, stream, session, submits=submits), rest
                if isinstance(ev, ConnectionClosed):
                    raise BindFailed(f"{bind.name}: the SMSC closed the connection")
            if session.has_data_to_send:
                await stream.send(session.data_to_send())
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
        await stream.aclose()
        raise BindFailed(f"{bind.name}: connection lost during the bind ({exc!r})") from None
    except BaseException:
        with anyio.move_on_after(1, shield=True):
            await stream.aclose()
        raise


async def run_smpp(target: SmppTarget, plan: LoadPlan, tally: Tally, clock: Callable[[], float] = time.monotonic,
                   *, started: Callable[[], None] | None = None) -> list[str]:
    """Run the load over SMPP; returns the problems that are not in the tally (binds lost, timeouts).

    Raises:
        BindFailed: a connect or a bind failed; nothing was sent.
    """
    run = _Run(target, plan, tally, clock)
    tally.messages_planned = plan.count
    tally.requests_planned = plan.mix.parts_in(plan.count)
    problems: list[str] = []
    links: list[tuple[_Link, list[Event]]] = []
    try:
        with anyio.fail_after(target.bind_timeout_s):
            for _ in range(target.binds):
                links.append(await _connect(run, target.bind_type, submits=True))
            if target.bind_type == "transmitter" and plan.receipts:
                for _ in range(target.binds):
                    links.append(await _connect(run, "receiver", submits=False))
    except TimeoutError:
        for link, _ in links:
            await link.stream.aclose()
        raise BindFailed(f"no bind response within {target.bind_timeout_s} s") from None
    except BaseException:
        for link, _ in links:
            with anyio.move_on_after(1, shield=True):
                await link.stream.aclose()
        raise
    run.links = [link for link, _ in links]
    start = clock()
    if plan.rate_per_s is not None:
        run.pacer = Pacer(plan.rate_per_s, start, plan.count)
    if plan.duration_s is not None:
        run.deadline = start + plan.duration_s
    if started is not None:
        started()
    async with anyio.create_task_group() as tg:
        for link, first in links:
            tg.start_soon(link.serve, first)
        if plan.duration_s is not None:
            tg.start_soon(_stop_at_deadline, run)
        await run.answered.wait()
        if run.next_message < plan.count and all(link.closed.is_set() for link in run.links if link.submits):
            problems.append("every submitting bind was lost")
        if plan.receipts and not run.receipted.is_set():
            with anyio.move_on_after(plan.receipt_timeout_s):
                await run.receipted.wait()
        tally.unmatched += len(run.early)
        with anyio.move_on_after(2, shield=True):
            async with anyio.create_task_group() as closing:
                for link in run.links:
                    closing.start_soon(link.unbind)
        tg.cancel_scope.cancel()
    return problems


async def _stop_at_deadline(run: _Run) -> None:
    assert run.deadline is not None
    await anyio.sleep(max(run.deadline - run.clock(), 0.0))
    run.stop_sending()
    for link in run.links:
        link.dirty.set()
