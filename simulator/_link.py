"""Rule: one read feeds every whole PDU in it to the session, and one write sends everything queued since.

An `SmscLink` is one ESME connection: a sans-IO `Session` in the SMSC role driven by three tasks (reader,
writer, timers). Handlers never await: they queue responses and deliver_sm into the session's buffer and mark
the link dirty; the writer wakes once per loop iteration and sends the whole buffer in one write. While a write
is in progress and more output is queued, the reader stops reading, so a slow ESME slows its own submissions
(TCP back-pressure) instead of growing the buffer. Faults act here: slow reads, enquire_link silence (the
link's enquire_link and enquire_link_resp PDUs are taken out of the output), disconnects, injected raw PDUs.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from smpp import CommandId, DeliverSm, Pdu, Unbind
from smpp._session import (
    ConnectionClosed,
    Event,
    PduRejected,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Role,
    Session,
    SessionConfig,
    State,
)
from smpp.adapter import READ_SIZE, set_nodelay

from ._faults import FaultPlan

if TYPE_CHECKING:
    from ._accounts import AccountState
    from ._smsc import Smsc

__all__ = ["SmscLink", "strip_enquire_links"]

log = logging.getLogger(__name__)

_HEAD = struct.Struct(">II")
_ENQUIRE = frozenset({int(CommandId.enquire_link), int(CommandId.enquire_link_resp)})
_ENQUIRE_LINK = int(CommandId.enquire_link)


def strip_enquire_links(data: bytes) -> bytes:
    """`data` (whole PDUs back to back) without its enquire_link and enquire_link_resp PDUs."""
    kept: list[bytes] = []
    pos = 0
    n = len(data)
    while pos + 8 <= n:
        length, command_id = _HEAD.unpack_from(data, pos)
        if length < 16:
            kept.append(data[pos:])
            break
        if command_id not in _ENQUIRE:
            kept.append(data[pos:pos + length])
        pos += length
    return b"".join(kept)


class SmscLink:
    """One ESME connection (see the module rule)."""

    def __init__(self, smsc: Smsc, stream: anyio.abc.ByteStream, peer: str) -> None:
        cfg = smsc.config.session
        self.smsc = smsc
        self.stream = stream
        self.peer = peer
        self.session = Session(SessionConfig(Role.SMSC, window=cfg.window, response_timeout_s=cfg.response_timeout_s,
                                             enquire_link_interval_s=cfg.enquire_link_interval_s))
        self.account: AccountState | None = None
        self.bind_type: str | None = None
        self.pdus_received = 0
        self._raw: list[bytes] = []
        self._kicked = False
        self._wake = anyio.Event()
        self._writing = False
        self._drained: anyio.Event | None = None
        self._cancel: anyio.CancelScope | None = None
        self._timer_wake = anyio.Event()
        self._closed = False
        self.close_reason = ""
        set_nodelay(stream)

    # ---- used by the handlers ------------------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The faults in force: the account's, or the default before a bind."""
        account = self.account
        return account.faults if account is not None else self.smsc.default_faults

    def kick(self) -> None:
        """Wake the writer (once per loop iteration, however many PDUs were queued)."""
        if not self._kicked:
            self._kicked = True
            self._wake.set()

    def send(self, pdu: Pdu, now: float) -> None:
        """Queue a response or request."""
        self.session.send(pdu, now=now)
        self.kick()

    def send_raw(self, data: bytes) -> None:
        """Queue bytes the session does not see (a malformed PDU)."""
        self._raw.append(data)
        self.kick()

    def can_deliver(self) -> bool:
        """True when this bind receives and its window has room for another deliver_sm."""
        session = self.session
        return session.window_free > 0 and session.state in (State.BOUND_RX, State.BOUND_TRX)

    def next_sequence_number(self) -> int:
        return self.session.next_sequence_number()

    def send_deliver(self, pdu: DeliverSm, now: float) -> None:
        """Queue a deliver_sm that already carries its sequence number."""
        self.session.send(pdu, now=now)
        self.kick()

    def bound(self, window: int | None) -> None:
        """The bind succeeded: the account's deliver_sm window applies (when it has one), and the timers start
        (enquire_link) now rather than at their next idle check."""
        if window is not None:
            self.session.config = dataclasses.replace(self.session.config, window=window)
        self._timer_wake.set()

    def disconnect(self, reason: str) -> None:
        """Drop the connection now, without unbind (a fault or an operator action)."""
        self.close_reason = self.close_reason or reason
        if self._cancel is not None:
            self._cancel.cancel()

    def unbind(self) -> None:
        """Start an orderly close: send unbind (the ESME's unbind_resp closes the session)."""
        if self.session.state.is_bound:
            self.send(Unbind(), time.monotonic())

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- the tasks -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        try:
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                tg.start_soon(self._writer)
                tg.start_soon(self._timers)
                await self._reader()
                tg.cancel_scope.cancel()
        finally:
            self._closed = True
            events = self.session.connection_lost()
            if events:
                self._handle(events, time.monotonic(), time.time())
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await self.stream.aclose()
                except (anyio.BrokenResourceError, OSError):
                    pass

    async def _reader(self) -> None:
        receive = self.stream.receive
        session = self.session
        monotonic = time.monotonic
        wall = time.time
        while True:
            faults = self.faults
            size = READ_SIZE
            if faults.active and faults.slow_read_pause_s:
                size = faults.slow_read_bytes
            try:
                data = await receive(size)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self.close_reason = self.close_reason or "connection closed by the ESME"
                return
            now = monotonic()
            events = session.receive_data(data, now=now)
            if events:
                self._handle(events, now, wall())
            if session.has_data_to_send:
                self.kick()
            if session.state is State.CLOSED:
                await self._flush_last()
                return
            if faults.active and faults.slow_read_pause_s:
                await anyio.sleep(faults.slow_read_pause_s)
            if self._writing and session.has_data_to_send:
                drained = anyio.Event()
                self._drained = drained
                await drained.wait()

    def _handle(self, events: list[Event], now: float, wall: float) -> None:
        smsc = self.smsc
        handlers = smsc.handlers
        was_bound = self.account is not None
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.pdus_received += 1
                pdu = ev.pdu
                handler = handlers.get(pdu.command_id)
                if handler is not None:
                    handler(self, pdu, now, wall)
            elif isinstance(ev, ResponseReceived):
                self.pdus_received += 1
                smsc.on_response(self, ev.request, ev.response, now, wall)
            elif isinstance(ev, ResponseTimedOut):
                smsc.on_timeout(self, ev.request, now, wall)
            elif isinstance(ev, ConnectionClosed):
                smsc.on_closed(self, ev, now, wall)
            elif isinstance(ev, PduRejected):
                self.pdus_received += 1
                smsc.rejected += 1
        faults = self.faults
        if faults.active and was_bound and not self._closed:  # the faults of an account start after its bind
            limit = faults.disconnect_after_pdus
            if limit is not None and self.pdus_received >= limit:
                self.disconnect(f"fault: disconnect after {limit} PDUs")
            elif faults.disconnect_rate and faults.draw(smsc.rng, faults.disconnect_rate * len(events)):
                self.disconnect("fault: random disconnect")

    async def _flush_last(self) -> None:
        with anyio.move_on_after(1, shield=True):
            try:
                await self._write(self._take_output())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    def _take_output(self) -> bytes:
        data = self.session.data_to_send()
        if self._raw:
            data += b"".join(self._raw)
            self._raw.clear()
        faults = self.faults
        if faults.active and faults.enquire_link_silence and data:
            data = strip_enquire_links(data)
        return data

    async def _write(self, data: bytes) -> None:
        if data:
            self._writing = True
            try:
                await self.stream.send(data)
            finally:
                self._writing = False
                drained = self._drained
                if drained is not None:
                    self._drained = None
                    drained.set()

    async def _writer(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                self._kicked = False
                await self._write(self._take_output())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.close_reason = self.close_reason or f"write failed: {exc!r}"
            if self._cancel is not None:
                self._cancel.cancel()

    async def _timers(self) -> None:
        session = self.session
        while True:
            now = time.monotonic()
            deadline = session.next_deadline()
            delay = 1.0 if deadline is None else min(max(deadline - now, 0.0), 1.0)
            with anyio.move_on_after(delay):
                await self._timer_wake.wait()
            if self._timer_wake.is_set():
                self._timer_wake = anyio.Event()
            now = time.monotonic()
            events = session.poll(now)
            if session.has_data_to_send:
                self.kick()
            if events:
                self._handle(events, now, time.time())
            silent = self.faults.active and self.faults.enquire_link_silence
            dead = not silent and any(isinstance(ev, ResponseTimedOut) and ev.request.command_id == _ENQUIRE_LINK
                                      for ev in events)
            if dead or session.state is State.CLOSED:
                self.close_reason = self.close_reason or ("enquire_link unanswered" if dead else "closed")
                await self._flush_last()
                if self._cancel is not None:
                    self._cancel.cancel()
                return
