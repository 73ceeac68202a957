"""The SMPP session state machine, sans-IO: bytes in, events out; PDUs in, bytes out; time handed in.

Rule 1: every legal (sender role, state, command) triple is in MAY_SEND. A request the peer may not send in the
current state is answered with ESME_RINVBNDSTS (ESME_RALYBND for a second bind) and reported as PduRejected;
one we may not send raises LocalProtocolError.
Rule 2: every request we send is outstanding until its response, a generic_nack with its sequence_number, or
its deadline (`response_timeout_s` after sending); each ends in exactly one event.
Rule 3: the session reads no clock; every entry point takes `now` (seconds, any monotonic origin) or uses the
last `now` it was given.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from ._codec import DEFAULT_MAX_COMMAND_LENGTH, HEADER_LENGTH, decode_pdu, encode_pdu
from ._constants import RESPONSE_BIT, CommandId, Status
from ._errors import LocalProtocolError, RemoteProtocolError
from ._pdu import PDU_CLASSES, EnquireLink, GenericNack, Pdu

__all__ = [
    "MAX_SEQUENCE_NUMBER",
    "MAY_SEND",
    "ConnectionClosed",
    "PduRejected",
    "RequestReceived",
    "ResponseReceived",
    "ResponseTimedOut",
    "ResponseUndecodable",
    "Role",
    "Session",
    "SessionConfig",
    "SessionStatistics",
    "State",
    "UnexpectedResponse",
    "WindowFull",
]

MAX_SEQUENCE_NUMBER = 0x7FFF_FFFF  # §5.1.4: 0x00000001 to 0x7FFFFFFF


class Role(Enum):
    """Which end of the link this session plays."""

    ESME = "esme"
    SMSC = "smsc"


class State(Enum):
    """Session states (§2.2)."""

    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"

    @property
    def is_bound(self) -> bool:
        return self in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)


C = CommandId
_LINK = frozenset({C.enquire_link, C.unbind})
_ESME_SUBMIT = frozenset({C.submit_sm, C.submit_multi, C.data_sm, C.query_sm, C.cancel_sm, C.replace_sm})
_SMSC_DELIVER = frozenset({C.deliver_sm, C.data_sm, C.alert_notification})
_BINDS = frozenset({C.bind_transmitter, C.bind_receiver, C.bind_transceiver})

# Requests each role may send in each state (§2.3, table 2-1). enquire_link is also accepted before a bind:
# several SMSCs and ESMEs send one as soon as the TCP connection is up. generic_nack may be sent in any state.
MAY_SEND: Mapping[tuple[Role, State], frozenset[CommandId]] = {
    (Role.ESME, State.OPEN): _BINDS | {C.enquire_link},
    (Role.ESME, State.BOUND_TX): _ESME_SUBMIT | _LINK,
    (Role.ESME, State.BOUND_RX): _LINK,
    (Role.ESME, State.BOUND_TRX): _ESME_SUBMIT | _LINK,
    (Role.SMSC, State.OPEN): frozenset({C.outbind, C.enquire_link}),
    (Role.SMSC, State.BOUND_TX): _LINK,
    (Role.SMSC, State.BOUND_RX): _SMSC_DELIVER | _LINK,
    (Role.SMSC, State.BOUND_TRX): _SMSC_DELIVER | _LINK,
}

_BOUND_BY: dict[int, State] = {
    C.bind_transmitter_resp: State.BOUND_TX,
    C.bind_receiver_resp: State.BOUND_RX,
    C.bind_transceiver_resp: State.BOUND_TRX,
}


# ---- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer sent a request the application must answer (send `pdu.make_response(...)`)."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The response to one of our requests; `response` is a GenericNack when the peer refused the request's header."""

    request: Pdu
    response: Pdu


@dataclass(frozen=True, slots=True)
class ResponseTimedOut:
    """No response to `request` before its deadline. For an enquire_link, the peer is presumed dead."""

    request: Pdu


@dataclass(frozen=True, slots=True)
class ResponseUndecodable:
    """A response to `request` came but its body could not be read: the outcome of the request is unknown."""

    request: Pdu
    error: RemoteProtocolError


@dataclass(frozen=True, slots=True)
class UnexpectedResponse:
    """A response that answers nothing outstanding (late after a timeout, or a peer bug)."""

    response: Pdu


@dataclass(frozen=True, slots=True)
class PduRejected:
    """The peer sent something bad; the session answered it with `status` (a generic_nack or an error resp)."""

    error: RemoteProtocolError
    pdu: Pdu | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session reached CLOSED: after an unbind either way, or a framing error (then `error` is set).

    `unanswered` holds our requests that will never get a response now.
    """

    by_peer: bool
    unanswered: tuple[Pdu, ...] = ()
    error: RemoteProtocolError | None = None


Event = (RequestReceived | ResponseReceived | ResponseTimedOut | ResponseUndecodable | UnexpectedResponse
         | PduRejected | ConnectionClosed)


class WindowFull(LocalProtocolError):
    """The window of outstanding requests is full; wait for a response before sending another request."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Settings of one session.

    Attributes:
        role: ESME or SMSC.
        window: how many of our requests may await a response at once (binds, unbind and enquire_link
            do not count against it).
        response_timeout_s: how long a request waits for its response.
        enquire_link_interval_s: send an enquire_link when nothing was received for this long while bound;
            None never sends one.
        max_command_length: a PDU longer than this is refused when its header arrives, before its body
            is buffered (§3.2 sets no limit; 64 KiB holds any legal PDU).
    """

    role: Role
    window: int = 10
    response_timeout_s: float = 30.0
    enquire_link_interval_s: float | None = 30.0
    max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Counters and gauges of one session, for metrics."""

    state: State
    outstanding: int
    window: int
    peer_outstanding: int
    pdus_received: int
    pdus_sent: int
    rejected: int
    timed_out: int


_LENGTH = struct.Struct(">I")
_SEQ = struct.Struct(">I")


class Session:
    """One SMPP session of either role.

    Example:
        sess = Session(SessionConfig(Role.ESME), now=0.0)
        sess.send(BindTransceiver(system_id="acme", password="secret"))
        sock.sendall(sess.data_to_send())
        for ev in sess.receive_data(sock.recv(65536), now=clock()):
            ...
    """

    def __init__(self, config: SessionConfig, *, now: float = 0.0) -> None:
        self.config = config
        self.role = config.role
        self._peer_role = Role.SMSC if config.role is Role.ESME else Role.ESME
        self.state = State.OPEN
        self.bound_state: State | None = None  # the bound state before UNBINDING
        self._now = now
        self._last_received = now
        self._next_seq = 1
        self._outstanding: dict[int, tuple[Pdu, float]] = {}
        self._counted = 0  # outstanding requests that count against the window
        self._peer_requests: dict[int, int] = {}  # sequence_number -> command_id, awaiting our response
        self._inbuf = b""
        self._outbuf: list[bytes] = []
        self._pending_bind: CommandId | None = None
        self._enquire_outstanding = False
        self._auto_enquire_seq = 0  # the enquire_link poll() sent: its response is ours, not the caller's
        self._received = 0
        self._sent = 0
        self._rejected = 0
        self._timed_out = 0

    # ---- sending ---------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The session's state (§2.2)."""
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        # The MAY_SEND rows for this state, looked up once per change rather than once per PDU.
        self._state = value
        self._may_send = MAY_SEND.get((self.role, value), frozenset())
        peer_state = (self.bound_state or State.OPEN) if value is State.UNBINDING else value
        self._peer_may_send = MAY_SEND.get((self._peer_role, peer_state), frozenset())

    def next_sequence_number(self) -> int:
        """Take the next free sequence number (1..0x7FFFFFFF, wrapping to 1, skipping outstanding ones)."""
        seq = self._next_seq
        while seq in self._outstanding:
            seq = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
        self._next_seq = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
        return seq

    @property
    def window_free(self) -> int:
        """How many more counted requests may be sent now."""
        return self.config.window - self._counted

    @property
    def outstanding(self) -> int:
        """How many of our requests await a response."""
        return len(self._outstanding)

    def send(self, pdu: Pdu, *, now: float | None = None) -> Pdu:
        """Queue `pdu` for sending and return it as sent (a request gets its sequence_number here when it has 0).

        Raises:
            LocalProtocolError: the state forbids this PDU, or a response answers no request of the peer's.
            WindowFull: a request would exceed the window.
            EncodeError: a field does not fit.
        """
        if now is not None:
            self._now = now
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            return self._send_response(pdu)
        state = self._state
        if state is _CLOSED:
            raise LocalProtocolError(f"cannot send {pdu.name}: the session is closed")
        if cid not in self._may_send:
            raise LocalProtocolError(f"a {self.role.value} may not send {pdu.name} in state {state.value}")
        counted = cid not in _UNCOUNTED
        if counted and self._counted >= self.config.window:
            raise WindowFull(f"window of {self.config.window} outstanding requests is full")
        if cid in _BINDS:
            if self._pending_bind is not None:
                raise LocalProtocolError("a bind is already awaiting its response")
            self._pending_bind = CommandId(cid)
        if pdu.sequence_number == 0:
            pdu = pdu.with_sequence_number(self.next_sequence_number())
        elif pdu.sequence_number in self._outstanding:
            raise LocalProtocolError(f"sequence_number {pdu.sequence_number} is already outstanding")
        data = encode_pdu(pdu)
        if cid in _HAS_RESPONSE:
            self._outstanding[pdu.sequence_number] = (pdu, self._now + self.config.response_timeout_s)
            if counted:
                self._counted += 1
        if cid == _UNBIND:
            self.bound_state = state
            self.state = State.UNBINDING  # after bound_state: the setter reads it
        self._outbuf.append(data)
        self._sent += 1
        return pdu

    def _send_response(self, pdu: Pdu) -> Pdu:
        cid = pdu.command_id
        seq = pdu.sequence_number
        if cid != _GENERIC_NACK:
            request_cid = self._peer_requests.pop(seq, None)
            if request_cid is None or request_cid | RESPONSE_BIT != cid:
                if request_cid is not None:
                    self._peer_requests[seq] = request_cid
                raise LocalProtocolError(f"{pdu.name} with sequence_number {seq} answers no request of the peer")
            if cid in _BOUND_BY and pdu.command_status == 0 and self.role is Role.SMSC:
                self.state = _BOUND_BY[cid]
        else:
            self._peer_requests.pop(seq, None)
        self._outbuf.append(encode_pdu(pdu))
        self._sent += 1
        return pdu

    @property
    def closed(self) -> bool:
        """True once the session reached CLOSED."""
        return self._state is _CLOSED

    @property
    def has_data_to_send(self) -> bool:
        """True when `data_to_send()` would return something."""
        return bool(self._outbuf)

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call, automatic replies included."""
        if not self._outbuf:
            return b""
        data = b"".join(self._outbuf)
        self._outbuf.clear()
        return data

    # ---- receiving -------------------------------------------------------------------------------------

    def receive_data(self, data: bytes, *, now: float | None = None) -> list[Event]:
        """Feed bytes read from the connection; returns the events they complete, in order.

        Whole PDUs are decoded straight out of the read; a partial PDU waits for the next call. A PDU whose
        command_length is below 16 or above `max_command_length` ends the session: the events before it are
        returned, then a ConnectionClosed with the error, and a generic_nack (ESME_RINVCMDLEN) is queued.

        Raises:
            LocalProtocolError: the session is already closed.
        """
        if self._state is State.CLOSED:
            if not data:
                return []
            raise LocalProtocolError("data received on a closed session")
        if now is not None:
            self._now = now
        buf = self._inbuf + data if self._inbuf else data
        if type(buf) is not bytes:
            buf = bytes(buf)
        events: list[Event] = []
        n = len(buf)
        pos = 0
        max_len = self.config.max_command_length
        unpack_length = _LENGTH.unpack_from
        while n - pos >= 4:
            (length,) = unpack_length(buf, pos)
            if length < HEADER_LENGTH or length > max_len:
                self._framing_error(buf, pos, length, events)
                self._inbuf = b""
                return events
            end = pos + length
            if end > n:
                break
            self._received += 1
            self._last_received = self._now
            self._handle_frame(buf, pos, end, events)
            pos = end
            if self.closed:
                self._inbuf = b""
                return events
        self._inbuf = buf[pos:] if pos < n else b""
        return events

    def _framing_error(self, buf: bytes, pos: int, length: int, events: list[Event]) -> None:
        seq = _SEQ.unpack_from(buf, pos + 12)[0] if len(buf) - pos >= 16 else 0
        why = "below the 16-octet header" if length < HEADER_LENGTH else f"above the limit of " \
              f"{self.config.max_command_length}"
        err = RemoteProtocolError(f"command_length {length} is {why}", status=Status.ESME_RINVCMDLEN,
                                  sequence_number=seq or None, framing=True)
        self._outbuf.append(encode_pdu(GenericNack(command_status=Status.ESME_RINVCMDLEN, sequence_number=seq)))
        self._rejected += 1
        self._close(events, by_peer=True, error=err)

    def _handle_frame(self, buf: bytes, pos: int, end: int, events: list[Event]) -> None:
        try:
            pdu = decode_pdu(buf, pos, end)
        except RemoteProtocolError as err:
            self._rejected += 1
            cid = err.command_id
            if cid is not None and cid & RESPONSE_BIT:
                entry = self._outstanding.pop(err.sequence_number or 0, None)
                if entry is not None:
                    self._retire(entry[0])
                    events.append(ResponseUndecodable(entry[0], err))
                else:
                    events.append(PduRejected(err))
                return
            self._answer_error(cid, err.sequence_number or 0, err.status)
            events.append(PduRejected(err))
            return
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            self._on_response(pdu, events)
        else:
            self._on_request(pdu, events)

    def _answer_error(self, cid: int | None, seq: int, status: Status) -> None:
        cls = PDU_CLASSES.get(cid) if cid is not None else None
        if cls is not None and cls.response is not None:
            reply: Pdu = cls.response(command_status=status, sequence_number=seq)
        else:
            reply = GenericNack(command_status=status, sequence_number=seq)
        self._outbuf.append(encode_pdu(reply))
        self._sent += 1

    def _on_request(self, pdu: Pdu, events: list[Event]) -> None:
        cid = pdu.command_id
        state = self._state
        if state is _UNBINDING:
            state = self.bound_state or State.OPEN
        if cid not in self._peer_may_send:
            status = Status.ESME_RALYBND if cid in _BINDS and state.is_bound else Status.ESME_RINVBNDSTS
            err = RemoteProtocolError(f"{pdu.name} is not allowed from the {self._peer_role.value} in state "
                                      f"{self.state.value}", status=status, sequence_number=pdu.sequence_number,
                                      command_id=cid)
            self._rejected += 1
            if cid in _HAS_RESPONSE:
                self._answer_error(cid, pdu.sequence_number, status)
            events.append(PduRejected(err, pdu))
            return
        if cid == _ENQUIRE_LINK:
            self._outbuf.append(encode_pdu(pdu.make_response()))
            self._sent += 1
            return
        if cid == _UNBIND:
            self._outbuf.append(encode_pdu(pdu.make_response()))
            self._sent += 1
            self._close(events, by_peer=True)
            return
        if cid in _HAS_RESPONSE:
            self._peer_requests[pdu.sequence_number] = cid
        events.append(RequestReceived(pdu))

    def _on_response(self, pdu: Pdu, events: list[Event]) -> None:
        entry = self._outstanding.pop(pdu.sequence_number, None)
        if entry is None:
            events.append(UnexpectedResponse(pdu))
            return
        request = entry[0]
        if pdu.command_id != request.command_id | RESPONSE_BIT and pdu.command_id != _GENERIC_NACK:
            # A response of another kind with this sequence_number: the request stays outstanding.
            self._outstanding[pdu.sequence_number] = entry
            events.append(UnexpectedResponse(pdu))
            return
        self._retire(request)
        rcid = request.command_id
        if rcid in _BINDS:
            self._pending_bind = None
            if pdu.command_status == 0 and pdu.command_id != _GENERIC_NACK:
                self.state = _BOUND_BY[pdu.command_id]
        if rcid == _ENQUIRE_LINK and request.sequence_number == self._auto_enquire_seq:
            self._auto_enquire_seq = 0
            return
        events.append(ResponseReceived(request, pdu))
        if rcid == _UNBIND:
            self._close(events, by_peer=False)

    def _retire(self, request: Pdu) -> None:
        cid = request.command_id
        if cid == _ENQUIRE_LINK:
            self._enquire_outstanding = False
        elif cid in _BINDS:
            self._pending_bind = None
        if cid not in _UNCOUNTED:
            self._counted -= 1

    def _close(self, events: list[Event], *, by_peer: bool, error: RemoteProtocolError | None = None) -> None:
        unanswered = tuple(req for req, _ in self._outstanding.values())
        self._outstanding.clear()
        self._counted = 0
        self._peer_requests.clear()
        self._pending_bind = None
        self._enquire_outstanding = False
        self.state = State.CLOSED
        events.append(ConnectionClosed(by_peer=by_peer, unanswered=unanswered, error=error))

    def connection_lost(self) -> list[Event]:
        """The transport is gone (the adapter calls this): the session closes and reports what is unanswered."""
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        self._close(events, by_peer=True)
        return events

    # ---- timers ----------------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Event]:
        """Fire the timers due at `now`: expired requests, and an enquire_link when the link has been idle."""
        self._now = now
        events: list[Event] = []
        if self._outstanding:
            # Every request gets the same timeout, so deadlines grow in insertion order: stop at the first
            # one still running.
            expired = []
            for seq, (_, deadline) in self._outstanding.items():
                if deadline > now:
                    break
                expired.append(seq)
            for seq in expired:
                request, _ = self._outstanding.pop(seq)
                self._retire(request)
                self._timed_out += 1
                events.append(ResponseTimedOut(request))
                if request.command_id == _UNBIND and self.state is State.UNBINDING:
                    self._close(events, by_peer=False)
        interval = self.config.enquire_link_interval_s
        if (interval is not None and self.state.is_bound and not self._enquire_outstanding
                and now - self._last_received >= interval):
            self._enquire_outstanding = True
            self._auto_enquire_seq = self.send(EnquireLink()).sequence_number
        return events

    def next_deadline(self) -> float | None:
        """When `poll` next has work to do, or None when no timer is running."""
        deadline: float | None = None
        if self._outstanding:
            deadline = next(iter(self._outstanding.values()))[1]  # the oldest: see poll
        interval = self.config.enquire_link_interval_s
        if interval is not None and self.state.is_bound and not self._enquire_outstanding:
            due = self._last_received + interval
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    def statistics(self) -> SessionStatistics:
        """A snapshot of the session's counters."""
        return SessionStatistics(
            state=self.state, outstanding=len(self._outstanding), window=self.config.window,
            peer_outstanding=len(self._peer_requests), pdus_received=self._received, pdus_sent=self._sent,
            rejected=self._rejected, timed_out=self._timed_out,
        )


_UNCOUNTED = frozenset({C.enquire_link, C.unbind} | _BINDS)
# Plain ints for the comparisons made per PDU: reading an enum member costs more than the comparison.
_UNBIND = int(C.unbind)
_GENERIC_NACK = int(C.generic_nack)
_ENQUIRE_LINK = int(C.enquire_link)
_CLOSED = State.CLOSED
_UNBINDING = State.UNBINDING
_HAS_RESPONSE = frozenset(cid for cid, cls in PDU_CLASSES.items() if cls.response is not None)
