"""Rule: a pending set is keyed by (source, destination, reference, total) and is bounded in time and memory.

A set waits at most `timeout_s` after its first part. The whole reassembler holds at most
`max_pending_sets` sets and `max_pending_bytes` octets of user data; past either bound, the oldest
set is evicted. A part whose sequence number is already held is a duplicate and is ignored. So is a
part that repeats one of a message completed within the last `timeout_s`, as happens when an SMSC
redelivers after a lost deliver_sm_resp: the reassembler remembers a fingerprint of each completed
set's parts for that long. Parts may come in any order.

The reassembler is sans-IO: the caller passes `now`, and the reassembler never reads a clock.
Concatenation is taken from a UDH IE 0x00 or 0x08 (3GPP TS 23.040 §9.2.3.24.1 and .8), or else from
the SAR TLVs (SMPP 3.4 §5.3.2.22 to .24). An IE whose sequence number is 0 or above the total is
ignored, as 23.040 §9.2.3.24.1 says; the part then counts as a message of its own. National language
IEs (0x24, 0x25) and port IEs (0x04, 0x05) are read from the first part received. User data comes back
joined in sequence order, with each UDH removed. With `gsm_packed`, GSM 7-bit parts are unpacked first,
so joined GSM data is always one septet per octet.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ._errors import SmppError
from ._gsm import fill_bits_after_udh, unpack_septets
from ._segment import Iei
from ._text import Alphabet, alphabet_for, decode_text

__all__ = [
    "ConcatInfo",
    "InformationElement",
    "ReassembledMessage",
    "Reassembler",
    "ReassemblyStatistics",
    "UdhError",
    "UserDataHeader",
    "parse_udh",
]


class UdhError(SmppError, ValueError):
    """A user data header is malformed: a length runs past the data, or a known IE has the wrong size."""


@dataclass(frozen=True, slots=True)
class InformationElement:
    """One UDH information element (23.040 §9.2.3.24): its identifier and its data."""

    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """A concatenation IE: which message this part belongs to and where it goes.

    Attributes:
        reference: the concatenated message reference number.
        total: the maximum number of short messages in the concatenated message.
        seqnum: this part's sequence number, from 1.
        reference_bits: 8 (IEI 0x00) or 16 (IEI 0x08).
    """

    reference: int
    total: int
    seqnum: int
    reference_bits: int


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    """A parsed UDH.

    Attributes:
        elements: every IE in the order received, including ones this layer does not interpret.
        length: octets the UDH takes, its length octet (UDHL) included.
        concat: the concatenation IE, or None when there is none or 23.040 says to ignore it.
        single_shift: the national language identifier of IE 0x24, or None.
        locking_shift: the national language identifier of IE 0x25, or None.
        ports: (destination port, originator port) from IE 0x04 or 0x05, or None.
    """

    elements: tuple[InformationElement, ...]
    length: int
    concat: ConcatInfo | None = None
    single_shift: int | None = None
    locking_shift: int | None = None
    ports: tuple[int, int] | None = None


_IE_LENGTHS: dict[int, int] = {
    Iei.CONCAT_8BIT: 3,
    Iei.PORTS_8BIT: 2,
    Iei.PORTS_16BIT: 4,
    Iei.CONCAT_16BIT: 4,
    Iei.NATIONAL_SINGLE_SHIFT: 1,
    Iei.NATIONAL_LOCKING_SHIFT: 1,
}


def parse_udh(data: bytes) -> tuple[UserDataHeader, bytes]:
    """Split user data that starts with a UDH (esm_class UDHI set) into the header and the rest.

    When an IE that may appear once appears again, the last one wins (23.040 §9.2.3.24).

    Returns:
        The header, and the user data after it.

    Raises:
        UdhError: no UDH length octet, a UDH length or IE length past the end, or an IE of known kind
            whose length is wrong.
    """
    if not data:
        raise UdhError("user data is empty, but UDHI says it starts with a UDH")
    length = data[0] + 1
    if length > len(data):
        raise UdhError(f"UDH length {data[0]} runs past the {len(data) - 1} octets after it")
    elements: list[InformationElement] = []
    concat: ConcatInfo | None = None
    single: int | None = None
    locking: int | None = None
    ports: tuple[int, int] | None = None
    pos = 1
    while pos < length:
        if pos + 2 > length:
            raise UdhError(f"IE header at UDH offset {pos} is cut off by the UDH length {data[0]}")
        iei = data[pos]
        ie_length = data[pos + 1]
        start = pos + 2
        end = start + ie_length
        if end > length:
            raise UdhError(f"IE 0x{iei:02X} at UDH offset {pos}: length {ie_length} runs past the UDH")
        value = data[start:end]
        elements.append(InformationElement(iei, value))
        expected = _IE_LENGTHS.get(iei)
        if expected is not None and ie_length != expected:
            raise UdhError(f"IE 0x{iei:02X} has length {ie_length}, 23.040 §9.2.3.24 gives {expected}")
        if iei == Iei.CONCAT_8BIT:
            concat = _concat(value[0], value[1], value[2], 8)
        elif iei == Iei.CONCAT_16BIT:
            concat = _concat(int.from_bytes(value[:2], "big"), value[2], value[3], 16)
        elif iei == Iei.NATIONAL_SINGLE_SHIFT:
            single = value[0]
        elif iei == Iei.NATIONAL_LOCKING_SHIFT:
            locking = value[0]
        elif iei == Iei.PORTS_8BIT:
            ports = (value[0], value[1])
        elif iei == Iei.PORTS_16BIT:
            ports = (int.from_bytes(value[:2], "big"), int.from_bytes(value[2:], "big"))
        pos = end
    header = UserDataHeader(tuple(elements), length, concat, single, locking, ports)
    return header, data[length:]


def _concat(reference: int, total: int, seqnum: int, bits: int) -> ConcatInfo | None:
    # 23.040 §9.2.3.24.1: a zero total or an out-of-range sequence number voids the IE.
    if total == 0 or not 1 <= seqnum <= total:
        return None
    return ConcatInfo(reference, total, seqnum, bits)


@dataclass(frozen=True, slots=True)
class ReassembledMessage:
    """A whole message, or what arrived of an expired one.

    Attributes:
        source: source_addr of the parts.
        destination: destination_addr of the parts.
        data_coding: data_coding of the first part received.
        data: user data of the parts received, joined in sequence order, UDH removed. GSM 7-bit is one
            septet per octet.
        part_count: how many parts were received.
        total_parts: how many the message has.
        missing: sequence numbers that never came (empty when complete).
        reference: the concatenation reference, or None for a message in one part.
        locking_shift: national language identifier of UDH IE 0x25 (0 when absent).
        single_shift: national language identifier of UDH IE 0x24 (0 when absent).
        ports: (destination port, originator port) from the UDH, or None.
    """

    source: str
    destination: str
    data_coding: int
    data: bytes
    part_count: int
    total_parts: int
    missing: tuple[int, ...] = ()
    reference: int | None = None
    locking_shift: int = 0
    single_shift: int = 0
    ports: tuple[int, int] | None = None

    @property
    def complete(self) -> bool:
        """True when every part arrived."""
        return not self.missing

    def text(self, replacement: str = "?") -> str:
        """The message as text (see `decode_text`; a non-text data_coding gives a Latin-1 best effort)."""
        return decode_text(
            self.data_coding,
            self.data,
            locking_shift=self.locking_shift,
            single_shift=self.single_shift,
            replacement=replacement,
        )


@dataclass(frozen=True, slots=True)
class ReassemblyStatistics:
    """Counters of a `Reassembler`, for metrics."""

    pending_sets: int
    pending_bytes: int
    completed: int
    expired: int
    evicted: int
    duplicates: int


@dataclass(slots=True)
class _PendingSet:
    deadline: float
    data_coding: int
    locking_shift: int
    single_shift: int
    ports: tuple[int, int] | None
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


_Key = tuple[str, str, int, int]


class Reassembler:
    """Puts concatenated incoming messages back together (sans-IO: time is passed in)."""

    __slots__ = (
        "_completed",
        "_duplicates",
        "_evicted",
        "_expired",
        "_gsm_packed",
        "_max_bytes",
        "_max_sets",
        "_pending_bytes",
        "_recent",
        "_sets",
        "_timeout_s",
    )

    def __init__(
        self,
        *,
        timeout_s: float = 300.0,
        max_pending_sets: int = 10_000,
        max_pending_bytes: int = 8 * 1024 * 1024,
        gsm_packed: bool = False,
    ) -> None:
        """Create an empty reassembler.

        Args:
            timeout_s: how long a set may wait for its missing parts, from its first part.
            max_pending_sets: most incomplete sets held at once.
            max_pending_bytes: most octets of user data held at once.
            gsm_packed: the SMSC delivers GSM 7-bit packed. Parts are then unpacked before joining.
        """
        if timeout_s <= 0 or max_pending_sets < 1 or max_pending_bytes < 1:
            raise ValueError("timeout_s, max_pending_sets and max_pending_bytes must be positive")
        self._timeout_s = timeout_s
        self._max_sets = max_pending_sets
        self._max_bytes = max_pending_bytes
        self._gsm_packed = gsm_packed
        self._sets: OrderedDict[_Key, _PendingSet] = OrderedDict()
        # Completed sets: (forget-after time, {(seqnum, hash of the part's data)}), oldest first.
        self._recent: OrderedDict[_Key, tuple[float, frozenset[tuple[int, int]]]] = OrderedDict()
        self._pending_bytes = 0
        self._completed = 0
        self._expired = 0
        self._evicted = 0
        self._duplicates = 0

    def add(
        self,
        *,
        source: str,
        destination: str,
        data_coding: int,
        short_message: bytes = b"",
        udhi: bool = False,
        sar: tuple[int, int, int] | None = None,
        message_payload: bytes | None = None,
        now: float,
    ) -> ReassembledMessage | None:
        """Take one incoming deliver_sm or data_sm and return the message it completes, if any.

        A message that is not concatenated comes straight back, with `part_count` 1.

        Args:
            source: source_addr.
            destination: destination_addr.
            data_coding: data_coding.
            short_message: short_message (ignored when `message_payload` is given).
            udhi: esm_class bit 6 (0x40) was set, so the user data starts with a UDH.
            sar: (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) when the TLVs came.
            message_payload: the message_payload TLV, when present.
            now: the caller's clock, in seconds.

        Returns:
            The whole message, or None while parts are missing (and for a duplicate).

        Raises:
            UdhError: `udhi` is set and the UDH is malformed.
        """
        data = short_message if message_payload is None else message_payload
        header: UserDataHeader | None = None
        if udhi:
            header, data = parse_udh(data)
        if self._gsm_packed and alphabet_for(data_coding) is Alphabet.GSM7:
            data = unpack_septets(data, fill_bits_after_udh(header.length) if header else 0)

        locking = (header.locking_shift or 0) if header else 0
        single = (header.single_shift or 0) if header else 0
        ports = header.ports if header else None
        concat = header.concat if header else None
        if concat is not None:
            reference, total, seqnum = concat.reference, concat.total, concat.seqnum
        elif sar is not None and sar[1] >= 1 and 1 <= sar[2] <= sar[1]:
            reference, total, seqnum = sar
        else:
            self._completed += 1
            return ReassembledMessage(source, destination, data_coding, data, 1, 1, (), None,
                                      locking, single, ports)
        if total == 1:
            self._completed += 1
            return ReassembledMessage(source, destination, data_coding, data, 1, 1, (), reference,
                                      locking, single, ports)

        key: _Key = (source, destination, reference, total)
        pending = self._sets.get(key)
        if pending is None:
            recent = self._recent.pop(key, None)
            if recent is not None and recent[0] > now and (seqnum, hash(data)) in recent[1]:
                self._recent[key] = recent
                self._duplicates += 1
                return None
            while len(self._sets) >= self._max_sets:
                self._evict_oldest(key)
            pending = _PendingSet(now + self._timeout_s, data_coding, locking, single, ports)
            self._sets[key] = pending
        elif seqnum in pending.parts:
            self._duplicates += 1
            return None
        while self._pending_bytes + len(data) > self._max_bytes and self._evict_oldest(key):
            pass
        if self._pending_bytes + len(data) > self._max_bytes:
            # This set alone would break the bound: drop it rather than hold more than allowed.
            self._drop(key)
            self._evicted += 1
            return None
        pending.parts[seqnum] = data
        pending.size += len(data)
        self._pending_bytes += len(data)
        if len(pending.parts) < total:
            return None
        self._drop(key)
        self._completed += 1
        self._remember(key, pending, now)
        return self._message(key, pending)

    def collect_expired(self, now: float) -> list[ReassembledMessage]:
        """Remove and return the sets whose time ran out, oldest first, with what they received."""
        while self._recent and next(iter(self._recent.values()))[0] <= now:
            self._recent.popitem(last=False)
        expired: list[ReassembledMessage] = []
        while self._sets:
            key, pending = next(iter(self._sets.items()))
            if pending.deadline > now:
                break
            self._drop(key)
            self._expired += 1
            expired.append(self._message(key, pending))
        return expired

    def next_deadline(self) -> float | None:
        """When the oldest pending set expires, or None when nothing is pending."""
        for pending in self._sets.values():
            return pending.deadline
        return None

    def statistics(self) -> ReassemblyStatistics:
        """Current holdings and counters since creation."""
        return ReassemblyStatistics(
            pending_sets=len(self._sets),
            pending_bytes=self._pending_bytes,
            completed=self._completed,
            expired=self._expired,
            evicted=self._evicted,
            duplicates=self._duplicates,
        )

    def _evict_oldest(self, keep: _Key) -> bool:
        for key in self._sets:
            if key != keep:
                self._drop(key)
                self._evicted += 1
                return True
        return False

    def _remember(self, key: _Key, pending: _PendingSet, now: float) -> None:
        self._recent.pop(key, None)
        self._recent[key] = (now + self._timeout_s, frozenset((seq, hash(data)) for seq, data in pending.parts.items()))
        while len(self._recent) > self._max_sets:
            self._recent.popitem(last=False)

    def _drop(self, key: _Key) -> None:
        pending = self._sets.pop(key)
        self._pending_bytes -= pending.size

    @staticmethod
    def _message(key: _Key, pending: _PendingSet) -> ReassembledMessage:
        source, destination, reference, total = key
        received = sorted(pending.parts)
        missing = tuple(seq for seq in range(1, total + 1) if seq not in pending.parts)
        return ReassembledMessage(
            source,
            destination,
            pending.data_coding,
            b"".join(pending.parts[seq] for seq in received),
            len(received),
            total,
            missing,
            reference,
            pending.locking_shift,
            pending.single_shift,
            pending.ports,
        )
