"""Optional parameters (TLVs, §5.3): the table of every SMPP 3.4 tag, and the `Tlvs` container.

Rule 1: every tag of SMPP 3.4 §5.3.2 is in TLVS once, with its value type and length bounds.
Rule 2: a tag not in TLVS (vendor ranges 0x1400-0x3FFF included) is kept as its raw value bytes, under the
name `0x%04x`, and re-encoded byte for byte; the order of TLVs in a PDU is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["NO_TLVS", "TLVS", "TLV_BY_NAME", "TLV_BY_TAG", "Tlv", "TlvKind", "TlvValue", "Tlvs"]


class TlvKind(Enum):
    """How a TLV's value is laid out."""

    U8 = 1
    U16 = 2
    U32 = 4
    CSTR = "cstr"  # ASCII ended by NUL; the value is the text without the NUL
    OCTETS = "octets"  # raw bytes


TlvValue = int | str | bytes


@dataclass(frozen=True, slots=True)
class Tlv:
    """One TLV tag of §5.3.2: its name, its kind and the bounds on its value length (octets, NUL included)."""

    tag: int
    name: str
    kind: TlvKind
    max_len: int = 0xFFFF
    min_len: int = 0
    also_sizes: tuple[int, ...] = ()  # other integer sizes accepted on decode (a known deviation)


_U8, _U16, _U32, _CSTR, _OCT = TlvKind.U8, TlvKind.U16, TlvKind.U32, TlvKind.CSTR, TlvKind.OCTETS

TLVS: tuple[Tlv, ...] = (
    Tlv(0x0005, "dest_addr_subunit", _U8),
    Tlv(0x0006, "dest_network_type", _U8),
    Tlv(0x0007, "dest_bearer_type", _U8),
    Tlv(0x0008, "dest_telematics_id", _U16),
    Tlv(0x000D, "source_addr_subunit", _U8),
    Tlv(0x000E, "source_network_type", _U8),
    Tlv(0x000F, "source_bearer_type", _U8),
    # §5.3.2.9 says one octet; SMPP 5.0 and several stacks send two: both are read, one is written.
    Tlv(0x0010, "source_telematics_id", _U8, also_sizes=(2,)),
    Tlv(0x0017, "qos_time_to_live", _U32),
    Tlv(0x0019, "payload_type", _U8),
    Tlv(0x001D, "additional_status_info_text", _CSTR, 256),
    Tlv(0x001E, "receipted_message_id", _CSTR, 65),
    Tlv(0x0030, "ms_msg_wait_facilities", _U8),
    Tlv(0x0201, "privacy_indicator", _U8),
    Tlv(0x0202, "source_subaddress", _OCT, 23, 2),
    Tlv(0x0203, "dest_subaddress", _OCT, 23, 2),
    Tlv(0x0204, "user_message_reference", _U16),
    Tlv(0x0205, "user_response_code", _U8),
    Tlv(0x020A, "source_port", _U16),
    Tlv(0x020B, "destination_port", _U16),
    Tlv(0x020C, "sar_msg_ref_num", _U16),
    Tlv(0x020D, "language_indicator", _U8),
    Tlv(0x020E, "sar_total_segments", _U8),
    Tlv(0x020F, "sar_segment_seqnum", _U8),
    Tlv(0x0210, "sc_interface_version", _U8),
    Tlv(0x0302, "callback_num_pres_ind", _U8),
    Tlv(0x0303, "callback_num_atag", _OCT, 65),
    Tlv(0x0304, "number_of_messages", _U8),
    Tlv(0x0381, "callback_num", _OCT, 19, 4),
    Tlv(0x0420, "dpf_result", _U8),
    Tlv(0x0421, "set_dpf", _U8),
    Tlv(0x0422, "ms_availability_status", _U8),
    Tlv(0x0423, "network_error_code", _OCT, 3, 3),
    Tlv(0x0424, "message_payload", _OCT),
    Tlv(0x0425, "delivery_failure_reason", _U8),
    Tlv(0x0426, "more_messages_to_send", _U8),
    Tlv(0x0427, "message_state", _U8),
    Tlv(0x0501, "ussd_service_op", _U8),
    Tlv(0x1201, "display_time", _U8),
    Tlv(0x1203, "sms_signal", _U16),
    Tlv(0x1204, "ms_validity", _U8),
    # §5.3.2.41: no value; its presence is the information.
    Tlv(0x130C, "alert_on_message_delivery", _OCT, 0),
    Tlv(0x1380, "its_reply_type", _U8),
    Tlv(0x1383, "its_session_info", _U16),
)

TLV_BY_TAG: dict[int, Tlv] = {t.tag: t for t in TLVS}
TLV_BY_NAME: dict[str, Tlv] = {t.name: t for t in TLVS}


def tag_of(name: str) -> int:
    """The tag for a TLV name: a name from TLVS, or `0x%04x` for any other tag.

    Raises:
        KeyError: the name is neither.
    """
    spec = TLV_BY_NAME.get(name)
    if spec is not None:
        return spec.tag
    if name.startswith(("0x", "0X")):
        try:
            tag = int(name, 16)
        except ValueError:
            pass
        else:
            if 0 <= tag <= 0xFFFF:
                return tag
    raise KeyError(f"unknown TLV name {name!r}")


def name_of(tag: int) -> str:
    """The name for a tag: its TLVS name, or `0x%04x`."""
    spec = TLV_BY_TAG.get(tag)
    return spec.name if spec is not None else f"0x{tag:04x}"


class Tlvs(Mapping[str, TlvValue]):
    """The optional parameters of one PDU, in wire order, read like a mapping from TLV name to value.

    Values are ints for integer TLVs, str for C-Octet strings, bytes for octet strings and unknown tags.
    A tag that occurs twice keeps both entries in `items_in_order()`; the mapping view shows the first.

    Example:
        Tlvs(receipted_message_id="0A1B", message_state=2)
    """

    __slots__ = ("_hash", "_pairs")

    _pairs: tuple[tuple[int, TlvValue], ...]

    def __init__(self, _mapping: Mapping[str, TlvValue] | None = None, /, **values: TlvValue) -> None:
        pairs: list[tuple[int, TlvValue]] = []
        if _mapping is not None:
            pairs.extend((tag_of(k), v) for k, v in _mapping.items())
        pairs.extend((tag_of(k), v) for k, v in values.items())
        self._pairs = tuple(pairs)
        self._hash: int | None = None

    @classmethod
    def from_pairs(cls, pairs: tuple[tuple[int, TlvValue], ...]) -> Tlvs:
        """Build from (tag, value) pairs in wire order, as the decoder does."""
        self = cls.__new__(cls)
        self._pairs = pairs
        self._hash = None
        return self

    def items_in_order(self) -> tuple[tuple[int, TlvValue], ...]:
        """Every (tag, value) pair in wire order, duplicates included."""
        return self._pairs

    def __getitem__(self, name: str) -> TlvValue:
        tag = tag_of(name)
        for t, v in self._pairs:
            if t == tag:
                return v
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:  # Mapping.get without its KeyError round trip
        pairs = self._pairs
        if not pairs:
            return default
        spec = TLV_BY_NAME.get(name)
        if spec is not None:
            tag = spec.tag
        else:
            try:
                tag = tag_of(name)
            except KeyError:
                return default
        for t, v in pairs:
            if t == tag:
                return v
        return default

    def get_int(self, name: str) -> int | None:
        """The integer value of TLV `name`, or None when absent or not an integer."""
        v = self.get(name)
        return v if isinstance(v, int) else None

    def get_str(self, name: str) -> str | None:
        """The text value of TLV `name` (a C-Octet string), or None when absent."""
        v = self.get(name)
        if isinstance(v, bytes):
            return v.decode("latin-1")
        return v if isinstance(v, str) else None

    def get_bytes(self, name: str) -> bytes | None:
        """The octet-string value of TLV `name`, or None when absent."""
        v = self.get(name)
        return v if isinstance(v, bytes) else None

    def __iter__(self) -> Iterator[str]:
        seen: set[int] = set()
        for t, _ in self._pairs:
            if t not in seen:
                seen.add(t)
                yield name_of(t)

    def __len__(self) -> int:
        return len({t for t, _ in self._pairs})

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            tag = tag_of(name)
        except KeyError:
            return False
        return any(t == tag for t, _ in self._pairs)

    def replace(self, **values: TlvValue | None) -> Tlvs:
        """A copy with the named TLVs set (appended when new, replaced in place when present) or, for None, removed."""
        changes = {tag_of(k): v for k, v in values.items()}
        pairs = [(t, changes[t] if t in changes else v) for t, v in self._pairs]
        present = {t for t, _ in self._pairs}
        pairs.extend((t, v) for t, v in changes.items() if t not in present)
        return Tlvs.from_pairs(tuple((t, v) for t, v in pairs if v is not None))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tlvs):
            return self._pairs == other._pairs
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._pairs)
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{name_of(t)}={v!r}" for t, v in self._pairs)
        return f"Tlvs({inner})"

    def __reduce__(self) -> tuple[object, ...]:
        return (Tlvs.from_pairs, (self._pairs,))


NO_TLVS = Tlvs()
