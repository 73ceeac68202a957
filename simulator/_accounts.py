"""Rule: an account's deliver_sm (receipts and MOs) go to its receivers in order; what no receiver can take waits.

An `AccountState` is one ESME account at run time: its binds, its throughput window and queue, its id and
receipt writers, its billing convention, its faults, and its backlog. A deliver_sm goes to the next RX or TRX
bind (round robin) whose window has room; when none has, or the account has no receiver bind, it waits in the
backlog (bounded: past `receipts.backlog` the oldest is dropped and counted), which drains when a receiver binds
or a window frees. Order is kept: while the backlog holds anything, new items queue behind it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlr import ReceiptStatus
from smpp import DeliverSm, EncodeError, LocalProtocolError, Status, SubmitMulti, SubmitSm

from ._billing import Convention, Tariff
from ._config import Account
from ._faults import FaultPlan
from ._ids import IdWriter
from ._receipts import ReceiptWriter
from ._store import MessageRecord
from ._throttle import SlidingWindow

if TYPE_CHECKING:
    from ._link import SmscLink

__all__ = ["AccountState", "AccountStatistics", "Deliverable"]

# A receipt to build at send time (the record, and True for an intermediate ENROUTE), or a deliver_sm built already.
Deliverable = tuple[MessageRecord, bool] | DeliverSm

_INTERMEDIATE = 0x20
_RECEIPT = 0x04
_FAILURES = frozenset(s for s in ReceiptStatus if s.is_failure)


@dataclass(frozen=True, slots=True)
class AccountStatistics:
    """Counters of one account since start, and its current holdings."""

    system_id: str
    binds: dict[str, int]
    submitted: int
    accepted: int
    responses: dict[str, int]
    throttled: int
    queue_full: int
    pending: int
    receipts_sent: int
    deliver_acked: int
    deliver_refused: int
    receipts_dropped: int
    backlog: int
    mo_sent: int
    charged: int
    dropped_responses: int


class AccountState:
    """One account at run time (see the module rule)."""

    def __init__(self, config: Account, *, salt: int, default_faults: FaultPlan) -> None:
        self.config = config
        self.system_id = config.system_id
        self.password = str(config.password or "")
        self.bind_types = frozenset(config.bind_types)
        ids = config.message_ids
        self.ids = IdWriter.create(ids.resp, ids.receipt, ids.receipt_width, salt)
        self.same_ids = ids.receipt in (None, ids.resp) and not ids.receipt_width
        r = config.receipts
        self.writer = ReceiptWriter(seconds=r.seconds, utc=r.utc, tlvs=r.tlvs, text=r.text)
        b = config.billing
        self.tariff = (Tariff(Convention(b.convention), dict(b.price_points), b.tlv_tag)
                       if b.convention != "none" else None)
        self.window = (SlidingWindow(config.throughput_per_s, config.throughput_window_s)
                       if config.throughput_per_s is not None else None)
        self.queue_limit = config.queue_limit
        self.own_faults: FaultPlan | None = (FaultPlan(config.faults, f"accounts.{self.system_id}.faults")
                                             if config.faults is not None else None)
        self.faults = self.own_faults or default_faults
        self.links: list[SmscLink] = []
        self.receivers: list[SmscLink] = []
        self.backlog: deque[Deliverable] = deque()
        self.backlog_limit = r.backlog
        self._rr = 0
        self.pending = 0
        self.submitted = 0
        self.accepted = 0
        self.responses: Counter[int] = Counter()
        self.throttled = 0
        self.queue_full = 0
        self.receipts_sent = 0
        self.deliver_acked = 0
        self.deliver_refused = 0
        self.receipts_dropped = 0
        self.mo_sent = 0
        self.charged = 0
        self.dropped_responses = 0

    # ---- binds ---------------------------------------------------------------------------------------------

    def attach(self, link: SmscLink, receives: bool) -> None:
        """A bind of this account came up (`receives`: RX or TRX)."""
        self.links.append(link)
        if receives:
            self.receivers.append(link)

    def detach(self, link: SmscLink) -> None:
        """A bind went down."""
        if link in self.links:
            self.links.remove(link)
        if link in self.receivers:
            self.receivers.remove(link)

    def set_faults(self, plan: FaultPlan | None, default: FaultPlan) -> None:
        """Give the account its own faults (None: follow the default)."""
        self.own_faults = plan
        self.faults = plan or default

    # ---- admission -----------------------------------------------------------------------------------------

    def admit(self, now: float) -> int:
        """0 when a new message may be accepted at `now`, else the command_status that refuses it."""
        if self.pending >= self.queue_limit:
            self.queue_full += 1
            return Status.ESME_RMSGQFUL
        window = self.window
        if window is not None and not window.admit(now):
            self.throttled += 1
            return Status.ESME_RTHROTTLED
        return 0

    # ---- deliver_sm ----------------------------------------------------------------------------------------

    def receipt_pdu(self, record: MessageRecord, intermediate: bool, sequence_number: int, wall: float) -> DeliverSm:
        """The receipt for `record` (final, or an intermediate ENROUTE at `wall`)."""
        mt: Any = record.pdu
        if type(mt) is SubmitMulti:
            mt = SubmitSm(service_type=mt.service_type, source_addr_ton=mt.source_addr_ton,
                          source_addr_npi=mt.source_addr_npi, source_addr=mt.source_addr,
                          destination_addr=record.destination, esm_class=mt.esm_class,
                          data_coding=mt.data_coding, short_message=mt.short_message)
        text_id = record.message_id if self.same_ids else self.ids.receipt(record.number)
        if intermediate:
            return self.writer.build(mt, smsc_message_id=record.message_id, text_id=text_id,
                                     status=ReceiptStatus.ENROUTE, submit_at=record.received_at, done_at=wall,
                                     kind=_INTERMEDIATE, sequence_number=sequence_number)
        status = record.status
        failed = status in _FAILURES
        return self.writer.build(mt, smsc_message_id=record.message_id, text_id=text_id, status=status,
                                 submit_at=record.received_at, done_at=record.done_at,
                                 err=record.err if failed else 0,
                                 network_error=record.network_error if failed else None,
                                 kind=_RECEIPT, sequence_number=sequence_number)

    def _free_receiver(self) -> SmscLink | None:
        receivers = self.receivers
        n = len(receivers)
        if n == 1:
            link = receivers[0]
            return link if link.can_deliver() else None
        for _ in range(n):
            self._rr = (self._rr + 1) % n
            link = receivers[self._rr]
            if link.can_deliver():
                return link
        return None

    def deliver(self, item: Deliverable, now: float, wall: float) -> SmscLink | None:
        """Send a receipt or MO to a receiver now, or queue it; returns the link that took it, if any."""
        if not self.backlog and self.receivers:
            link = self._free_receiver()
            if link is not None:
                self._send(link, item, now, wall)
                return link
        self.park(item)
        return None

    def park(self, item: Deliverable, *, front: bool = False) -> None:
        """Queue an item for the next receiver (front: it was sent before and goes first)."""
        backlog = self.backlog
        if front:
            backlog.appendleft(item)
        else:
            backlog.append(item)
        while len(backlog) > self.backlog_limit:
            backlog.pop() if front else backlog.popleft()
            self.receipts_dropped += 1

    def drain(self, now: float, wall: float) -> int:
        """Send queued items while some receiver has room; how many went."""
        backlog = self.backlog
        sent = 0
        while backlog:
            link = self._free_receiver()
            if link is None:
                break
            self._send(link, backlog.popleft(), now, wall)
            sent += 1
        return sent

    def _send(self, link: SmscLink, item: Deliverable, now: float, wall: float) -> None:
        try:
            if type(item) is tuple:
                record, intermediate = item
                link.send_deliver(self.receipt_pdu(record, intermediate, link.next_sequence_number(), wall), now)
                record.receipts_sent += 1
                self.receipts_sent += 1
            else:
                assert isinstance(item, DeliverSm)
                link.send_deliver(item.replace(sequence_number=link.next_sequence_number()), now)
                if item.esm_class & 0x3C:
                    self.receipts_sent += 1
                else:
                    self.mo_sent += 1
        except (EncodeError, LocalProtocolError):
            # A data_sm's 65-character address does not fit a deliver_sm, or the bind is going down.
            self.receipts_dropped += 1

    # ---- inspection ----------------------------------------------------------------------------------------

    def statistics(self) -> AccountStatistics:
        """A snapshot of the counters."""
        binds: Counter[str] = Counter(link.bind_type or "open" for link in self.links)
        return AccountStatistics(
            system_id=self.system_id,
            binds=dict(binds),
            submitted=self.submitted,
            accepted=self.accepted,
            responses={Status.describe(k): v for k, v in sorted(self.responses.items())},
            throttled=self.throttled,
            queue_full=self.queue_full,
            pending=self.pending,
            receipts_sent=self.receipts_sent,
            deliver_acked=self.deliver_acked,
            deliver_refused=self.deliver_refused,
            receipts_dropped=self.receipts_dropped,
            backlog=len(self.backlog),
            mo_sent=self.mo_sent,
            charged=self.charged,
            dropped_responses=self.dropped_responses,
        )
