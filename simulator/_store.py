"""Rule: the store holds the `max_messages` most recent messages and nothing older; a long message shows once.

Every accepted MT (each destination of a submit_multi apart) and every MO is a `MessageRecord`, appended to a
ring buffer and indexed by SMSC message id for query_sm, cancel_sm and replace_sm. The parts of a long MT
(UDH IE 0x00 or 0x08, or the SAR TLVs) share a `MessageGroup`, so GET /messages lists the message once, with
its text reassembled and its parts listed. Records keep the PDU as received; text is decoded only when asked.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dlr import NetworkError, ReceiptStatus, fold_part_statuses
from smpp import (
    DataSm,
    DeliverSm,
    EsmClass,
    MessageState,
    SubmitMulti,
    SubmitSm,
    UdhError,
    alphabet_for,
    decode_text,
    parse_udh,
)

from ._billing import Charge

__all__ = [
    "GroupKey", "MessageGroup", "MessageRecord", "MessageStore", "StoreStatistics", "concat_of", "describe",
]

_UDHI = int(EsmClass.UDHI)
_TAG_PAYLOAD = 0x0424
_ENCODINGS = {0x00: "gsm7", 0x01: "ia5", 0x03: "latin1", 0x08: "ucs2"}

GroupKey = tuple[str, str, str, int, int]  # account, source, destination, reference, total


def concat_of(pdu: SubmitSm | DataSm | DeliverSm) -> tuple[int, int, int] | None:
    """(reference, total, seqnum) when the PDU is one part of a longer message: from its UDH or the SAR TLVs."""
    if pdu.esm_class & _UDHI:
        data = b"" if isinstance(pdu, DataSm) else pdu.short_message
        if not data:
            data = pdu.tlvs.get_bytes("message_payload") or b""
        try:
            header, _ = parse_udh(data)
        except UdhError:
            return None
        if header.concat is not None and header.concat.total > 1:
            return header.concat.reference, header.concat.total, header.concat.seqnum
        return None
    tlvs = pdu.tlvs
    if tlvs and "sar_msg_ref_num" in tlvs:
        ref, total, seq = tlvs.get_int("sar_msg_ref_num"), tlvs.get_int("sar_total_segments"), \
            tlvs.get_int("sar_segment_seqnum")
        if ref is not None and total is not None and seq is not None and total > 1 and 1 <= seq <= total:
            return ref, total, seq
    return None


class MessageRecord:
    """One message as the SMSC holds it (mutable: cancel_sm and replace_sm change it).

    Attributes:
        message_id: the SMSC message id (as in submit_sm_resp).
        number: the message number the id writes.
        account: the ESME account (the sender of an MT, the receiver of an MO).
        direction: "mt" or "mo".
        pdu: the PDU as received (MT) or sent (MO part).
        source: source_addr.
        destination: destination_addr (for a submit_multi, this record's destination).
        received_at: wall-clock time of arrival.
        due: monotonic time when it reaches its final status.
        done_at: wall-clock time of the final status.
        status: the final status drawn for it.
        err: the receipt's err code.
        network_error: the receipt's network_error_code, or None.
        charge: the charge attempt made for it (the first part of a long message carries it).
        group: the long message it is a part of, or None.
        seqnum: its part number in `group`.
        cancelled: cancel_sm removed it before delivery.
        receipt_wanted: registered_delivery asked for a receipt that this status gets.
        receipts_sent: receipts (intermediate and final) handed to a receiver.
    """

    __slots__ = (
        "account", "cancelled", "charge", "destination", "direction", "done_at", "due", "err", "group",
        "message_id", "network_error", "number", "pdu", "receipt_wanted", "receipts_sent", "received_at",
        "seqnum", "source", "status",
    )

    def __init__(self, message_id: str, number: int, account: str, direction: str,
                 pdu: SubmitSm | SubmitMulti | DataSm | DeliverSm, source: str, destination: str, received_at: float,
                 due: float, done_at: float, status: ReceiptStatus, err: int = 0,
                 network_error: NetworkError | None = None) -> None:
        self.message_id = message_id
        self.number = number
        self.account = account
        self.direction = direction
        self.pdu = pdu
        self.source = source
        self.destination = destination
        self.received_at = received_at
        self.due = due
        self.done_at = done_at
        self.status = status
        self.err = err
        self.network_error = network_error
        self.charge: Charge | None = None
        self.group: MessageGroup | None = None
        self.seqnum = 1
        self.cancelled = False
        self.receipt_wanted = False
        self.receipts_sent = 0

    def state(self, now: float) -> ReceiptStatus:
        """The status at monotonic time `now`: ENROUTE until due, then the final one (DELETED once cancelled)."""
        if self.cancelled:
            return ReceiptStatus.DELETED
        return self.status if now >= self.due else ReceiptStatus.ENROUTE

    def message_state(self, now: float) -> MessageState:
        """The message_state (§5.2.28) query_sm reports."""
        return self.state(now).message_state

    def user_data(self) -> tuple[bytes, int, int]:
        """The user data with any UDH removed, and the national locking and single shift identifiers."""
        pdu = self.pdu
        data = b"" if isinstance(pdu, DataSm) else pdu.short_message
        if not data and pdu.tlvs:
            payload = pdu.tlvs.get_bytes("message_payload")
            data = payload or b""
        if pdu.esm_class & _UDHI and data:
            try:
                header, data = parse_udh(data)
            except UdhError:
                return data, 0, 0
            return data, header.locking_shift or 0, header.single_shift or 0
        return data, 0, 0

    def text(self) -> str:
        """The message text (undecodable octets shown as '?')."""
        data, locking, single = self.user_data()
        return decode_text(self.pdu.data_coding, data, locking_shift=locking, single_shift=single)


@dataclass(slots=True)
class MessageGroup:
    """The parts of one long message, by part number."""

    key: GroupKey
    total: int
    parts: dict[int, MessageRecord]
    charge: Charge | None = None
    handset_done: bool = False

    def first(self) -> MessageRecord:
        """The part with the lowest number received."""
        return self.parts[min(self.parts)]

    def text(self) -> str:
        """The parts' user data joined in order and decoded (missing parts are simply absent)."""
        first = self.first()
        datas = [self.parts[n].user_data() for n in sorted(self.parts)]
        joined = b"".join(d for d, _, _ in datas)
        return decode_text(first.pdu.data_coding, joined, locking_shift=datas[0][1], single_shift=datas[0][2])


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """What the store holds."""

    messages: int
    max_messages: int
    groups: int
    evicted: int


def _encoding(data_coding: int) -> str:
    name = _ENCODINGS.get(data_coding)
    if name is not None:
        return name
    alphabet = alphabet_for(data_coding)
    return _ENCODINGS[int(alphabet)] if alphabet is not None else "binary"


def _charge_view(charge: Charge | None) -> dict[str, Any] | None:
    if charge is None:
        return None
    return {"price": charge.price, "price_point": charge.price_point, "result": charge.result.value,
            "balance_after": charge.balance_after}


class MessageStore:
    """The ring buffer of recent messages, with the id index and long-message groups."""

    __slots__ = ("_evicted", "_groups", "_index", "_records", "max_messages")

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._records: deque[MessageRecord] = deque()
        self._index: dict[str, MessageRecord] = {}
        self._groups: OrderedDict[GroupKey, MessageGroup] = OrderedDict()
        self._evicted = 0

    def add(self, record: MessageRecord) -> None:
        """Append a record, forgetting the oldest when the store is full."""
        records = self._records
        if len(records) >= self.max_messages:
            old = records.popleft()
            self._evicted += 1
            if self._index.get(old.message_id) is old:
                del self._index[old.message_id]
            group = old.group
            if group is not None and self._groups.get(group.key) is group:
                group.parts.pop(old.seqnum, None)
                if not group.parts:
                    del self._groups[group.key]
        records.append(record)
        self._index.setdefault(record.message_id, record)

    def join_group(self, record: MessageRecord, key: GroupKey, seqnum: int) -> MessageGroup:
        """Make `record` part `seqnum` of the long message `key` (a new group for its first part seen).

        A part number seen again starts a new message under the same key: the ESME reused the reference.
        """
        groups = self._groups
        group = groups.get(key)
        if group is None or seqnum in group.parts:
            group = MessageGroup(key, key[4], {})
            groups[key] = group
            groups.move_to_end(key)
            while len(groups) > self.max_messages:
                groups.popitem(last=False)
        group.parts[seqnum] = record
        record.group = group
        record.seqnum = seqnum
        return group

    def open_group(self, key: GroupKey, seqnum: int) -> MessageGroup | None:
        """The long message a part with this key and number would join, or None (a new message starts)."""
        group = self._groups.get(key)
        return None if group is None or seqnum in group.parts else group

    def get(self, message_id: str) -> MessageRecord | None:
        """The record with this SMSC message id, if still held."""
        return self._index.get(message_id)

    def __len__(self) -> int:
        return len(self._records)

    def newest_first(self) -> Iterator[MessageRecord]:
        """Every record, newest first."""
        return reversed(self._records)

    def query(
        self,
        *,
        destination: str | None = None,
        source: str | None = None,
        account: str | None = None,
        direction: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[MessageRecord | MessageGroup]:
        """The newest `limit` messages that match (a long message once), oldest first.

        Args:
            destination: exact destination_addr.
            source: exact source_addr.
            account: the account.
            direction: "mt" or "mo".
            since: wall-clock time; older messages are left out.
            limit: the most to return.
        """
        found: list[MessageRecord | MessageGroup] = []
        seen: set[int] = set()
        for r in reversed(self._records):
            if since is not None and r.received_at < since:
                break
            if ((destination is not None and r.destination != destination) or (source is not None and r.source != source)
                    or (account is not None and r.account != account)
                    or (direction is not None and r.direction != direction)):
                continue
            group = r.group
            if group is not None:
                if id(group) in seen:
                    continue
                seen.add(id(group))
                found.append(group)
            else:
                found.append(r)
            if len(found) >= limit:
                break
        found.reverse()
        return found

    def statistics(self) -> StoreStatistics:
        """A snapshot."""
        return StoreStatistics(len(self._records), self.max_messages, len(self._groups), self._evicted)


def describe(item: MessageRecord | MessageGroup, now: float) -> dict[str, Any]:
    """The JSON view of a message (GET /messages): decoded text, encoding, status, charge and parts.

    Args:
        item: a single message or a long message's group.
        now: monotonic time, to tell delivered messages from those still en route.
    """
    if isinstance(item, MessageGroup):
        parts = [item.parts[n] for n in sorted(item.parts)]
        first = parts[0]
        text = item.text()
        charge = item.charge
        received = sorted(item.parts)
        missing: list[int] = [n for n in range(1, item.total + 1) if n not in item.parts]
        status = fold_part_statuses([*(p.state(now) for p in parts), *([None] * len(missing))])
    else:
        parts = [item]
        first = item
        text = item.text()
        charge = item.charge
        received = [1]
        missing = []
        status = item.state(now)
    pdu = first.pdu
    view: dict[str, Any] = {
        "id": first.message_id,
        "account": first.account,
        "direction": first.direction,
        "command": pdu.name,
        "source": first.source,
        "destination": first.destination,
        "received_at": first.received_at,
        "service_type": pdu.service_type,
        "data_coding": pdu.data_coding,
        "encoding": _encoding(pdu.data_coding),
        "text": text,
        "registered_delivery": pdu.registered_delivery,
        "status": (status or ReceiptStatus.ENROUTE).value,
        "charge": _charge_view(charge),
        "part_count": len(received),
        "total_parts": item.total if isinstance(item, MessageGroup) else 1,
        "complete": not missing,
        "parts": [
            {"seqnum": p.seqnum, "id": p.message_id, "status": p.state(now).value, "err": p.err,
             "receipts_sent": p.receipts_sent, "received_at": p.received_at}
            for p in parts
        ],
    }
    return view
