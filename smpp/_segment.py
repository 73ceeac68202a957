"""Rule: each part's TP-User-Data fits in 140 octets, and no part boundary splits a character.

Splitting never separates an ESC pair (GSM 7-bit) or a UTF-16 surrogate pair (UCS-2). A single
message_payload is the one exception to the 140 octets: the SMSC splits that one itself.

Per-part capacity is what is left of 140 octets (3GPP TS 23.040 §9.2.2.1) once the part's UDH is in:
GSM 7-bit gives 160 septets alone and 153 with an 8-bit concatenation UDH; UCS-2 gives 70 and 67 code
units; Latin-1 gives 140 and 134 octets. A 16-bit reference UDH takes one more octet, and each national
language shift IE takes three (23.040 §9.2.3.24.15 and .16). With GSM 7-bit sent unpacked (one septet
per octet, SMPP's usual form), short_message can be longer than 140 octets. The SMSC packs it into a TP-UD
that fits.

How parts are tied together is chosen per SMSC (`Concatenation`): a UDH with an 8-bit reference
(IEI 0x00), a UDH with a 16-bit reference (IEI 0x08), the SAR TLVs (SMPP 3.4 §5.3.2.22 to .24), or the
whole message in one message_payload TLV (§5.3.2.32). A message that fits in one part is sent as one
short_message, whatever the method. The concatenation reference comes from a `ReferenceCounter`,
which keeps one sequence per destination rather than drawing random numbers. Consecutive long
messages to one handset therefore get different references: the next 255 messages with UDH8, the next
65535 otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from itertools import product
from typing import Final, NamedTuple

from ._gsm import (
    CR,
    ESC,
    NationalLanguage,
    fill_bits_after_udh,
    gsm_codec,
    locking_shift_languages,
    pack_septets,
    single_shift_languages,
)
from ._text import Alphabet, EncodedText, TextEncodeError, encode_text

__all__ = [
    "MAX_PARTS",
    "Concatenation",
    "Iei",
    "Part",
    "ReferenceCounter",
    "ReferenceCounterStatistics",
    "count_parts",
    "encode_message",
    "split_message",
]

MAX_PARTS: Final = 255
"""Most parts one message can have: the total fits in one octet (23.040 §9.2.3.24.1, SMPP §5.3.2.23)."""

_TP_UD_OCTETS: Final = 140
_SINGLE_GSM_SEPTETS: Final = 160
_MAX_PAYLOAD_OCTETS: Final = 0xFFFF
_DEFAULT_GSM: Final = gsm_codec()


class Iei(IntEnum):
    """UDH information element identifiers that this layer writes or reads (23.040 §9.2.3.24)."""

    CONCAT_8BIT = 0x00
    PORTS_8BIT = 0x04
    PORTS_16BIT = 0x05
    CONCAT_16BIT = 0x08
    NATIONAL_SINGLE_SHIFT = 0x24
    NATIONAL_LOCKING_SHIFT = 0x25


class Concatenation(Enum):
    """How the parts of a long message are tied together (chosen per SMSC)."""

    UDH8 = "udh8"
    """UDH IE 0x00, 8-bit reference (23.040 §9.2.3.24.1); the usual choice."""
    UDH16 = "udh16"
    """UDH IE 0x08, 16-bit reference (23.040 §9.2.3.24.8)."""
    SAR = "sar"
    """sar_msg_ref_num, sar_total_segments and sar_segment_seqnum TLVs (SMPP 3.4 §5.3.2.22 to .24)."""
    PAYLOAD = "payload"
    """The whole message in one message_payload TLV (SMPP 3.4 §5.3.2.32); the SMSC splits it."""


class Part(NamedTuple):
    """One submit_sm's worth of a message.

    Attributes:
        short_message: the short_message field. When `udhi` is set, the UDH comes first. It is empty
            when the data travels in `payload`.
        udhi: set esm_class bit 6 (0x40, SMPP §5.2.12), because the user data starts with a UDH.
        data_coding: the data_coding field.
        sar: for `Concatenation.SAR`, the values (sar_msg_ref_num, sar_total_segments,
            sar_segment_seqnum); None otherwise.
        payload: the message_payload TLV value (UDH included when `udhi`), or None.
    """

    short_message: bytes
    udhi: bool
    data_coding: int
    sar: tuple[int, int, int] | None = None
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Layout:
    kind: str  # "single", "payload" or "multi"
    udh_octets: int  # UDH octets of every part, length octet included; 0 for no UDH
    bounds: tuple[tuple[int, int], ...]  # [start, end) of each part, in units


def _national_ies(encoded: EncodedText) -> bytes:
    ies = b""
    if encoded.single_shift:
        ies += bytes((Iei.NATIONAL_SINGLE_SHIFT, 1, encoded.single_shift))
    if encoded.locking_shift:
        ies += bytes((Iei.NATIONAL_LOCKING_SHIFT, 1, encoded.locking_shift))
    return ies


def _capacity(alphabet: Alphabet, udh_octets: int) -> int:
    """Units that fit in one TP-UD next to a UDH of `udh_octets` octets."""
    if alphabet is _GSM7:
        return (8 * (_TP_UD_OCTETS - udh_octets)) // 7
    if alphabet is _UCS2:
        return (_TP_UD_OCTETS - udh_octets) // 2
    return _TP_UD_OCTETS - udh_octets


_GSM7 = Alphabet.GSM7  # module globals: reading an enum member per call costs ~0.1 us in 3.11
_UCS2 = Alphabet.UCS2


def _part_end(encoded: EncodedText, start: int, end: int, packed_fill: int | None) -> int:
    """Move a non-final part's end back so that it does not split a pair.

    With `packed_fill`, it also keeps a CR that would end exactly on an octet boundary for the next
    part: the receiver cannot tell that CR from padding.
    """
    data = encoded.data
    gsm = encoded.alphabet is Alphabet.GSM7
    ucs2 = encoded.alphabet is Alphabet.UCS2
    while end - start > 1:
        if gsm:
            last = data[end - 1]
            if last == ESC:
                end -= 1
                continue
            if packed_fill is not None and last == CR and (packed_fill + 7 * (end - start)) % 8 == 0:
                end -= 1
                continue
        elif ucs2 and 0xD8 <= data[2 * end - 2] <= 0xDB:
            end -= 1
            continue
        break
    return end


def _layout(encoded: EncodedText, method: Concatenation, packed: bool) -> _Layout:
    units = encoded.units
    national = _national_ies(encoded)
    alone_udh = 1 + len(national) if national else 0
    if units <= _capacity(encoded.alphabet, alone_udh):
        return _Layout("single", alone_udh, ((0, units),))
    if method is Concatenation.PAYLOAD:
        if alone_udh + len(encoded.data) > _MAX_PAYLOAD_OCTETS:
            raise ValueError(f"{len(encoded.data)} octets do not fit in one message_payload")
        return _Layout("payload", alone_udh, ((0, units),))
    concat_ie = 5 if method is Concatenation.UDH8 else 6 if method is Concatenation.UDH16 else 0
    udh_octets = 1 + concat_ie + len(national) if concat_ie or national else 0
    capacity = _capacity(encoded.alphabet, udh_octets)
    packed_fill = fill_bits_after_udh(udh_octets) if packed and encoded.alphabet is Alphabet.GSM7 else None
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < units:
        end = min(start + capacity, units)
        if end < units:
            end = _part_end(encoded, start, end, packed_fill)
        bounds.append((start, end))
        start = end
        if len(bounds) > MAX_PARTS:
            raise ValueError(f"the message needs more than {MAX_PARTS} parts")
    return _Layout("multi", udh_octets, tuple(bounds))


def count_parts(encoded: EncodedText, method: Concatenation, *, packed: bool = False) -> int:
    """How many parts `split_message` would make, without building them.

    Raises:
        ValueError: the message needs more than `MAX_PARTS` parts, or more than one message_payload.
    """
    return len(_layout(encoded, method, packed).bounds)


def split_message(
    encoded: EncodedText,
    method: Concatenation,
    reference: int,
    *,
    packed: bool = False,
) -> list[Part]:
    """Split encoded text into the parts to submit, in order.

    Args:
        encoded: the text, from `encode_message` or `encode_text`.
        method: how the SMSC wants parts tied together.
        reference: the concatenation reference, 0 to 65535, normally from `ReferenceCounter.next`.
            `Concatenation.UDH8` carries its low 8 bits. A message that fits in one part does not use it.
        packed: send GSM 7-bit packed (after the UDH, with fill bits) instead of one septet per octet.
            Other alphabets ignore it.

    Raises:
        ValueError: `reference` is out of range, or the message needs more than `MAX_PARTS` parts.
    """
    if not 0 <= reference <= 0xFFFF:
        raise ValueError(f"concatenation reference {reference} is not in 0..65535")
    alphabet = encoded.alphabet
    if not packed and not encoded.single_shift and not encoded.locking_shift and len(encoded.data) <= (
            _SINGLE_GSM_SEPTETS if alphabet is _GSM7 else _TP_UD_OCTETS):
        # The hot path: one part, no UDH (GSM 7-bit unpacked: a septet per octet, 160 of them; UCS-2 and the
        # 8-bit alphabets: 140 octets). What _layout's "single" case gives, without building the layout.
        return [Part(encoded.data, False, int(alphabet))]
    layout = _layout(encoded, method, packed)
    packed_gsm = packed and encoded.alphabet is Alphabet.GSM7
    step = encoded.unit_octets
    data = encoded.data
    data_coding = encoded.data_coding
    national = _national_ies(encoded)
    fill = fill_bits_after_udh(layout.udh_octets)

    def body(start: int, end: int) -> bytes:
        chunk = data[start * step:end * step]
        return pack_septets(chunk, fill) if packed_gsm else chunk

    if layout.kind != "multi":
        udh = bytes((len(national),)) + national if national else b""
        user_data = udh + body(0, encoded.units)
        if layout.kind == "payload":
            return [Part(b"", bool(national), data_coding, payload=user_data)]
        return [Part(user_data, bool(national), data_coding)]

    total = len(layout.bounds)
    parts: list[Part] = []
    for seqnum, (start, end) in enumerate(layout.bounds, 1):
        if method is Concatenation.SAR:
            udh = bytes((len(national),)) + national if national else b""
            parts.append(Part(udh + body(start, end), bool(national), data_coding, sar=(reference, total, seqnum)))
            continue
        if method is Concatenation.UDH8:
            concat = bytes((Iei.CONCAT_8BIT, 3, reference & 0xFF, total, seqnum))
        else:
            concat = bytes((Iei.CONCAT_16BIT, 4, reference >> 8, reference & 0xFF, total, seqnum))
        header = concat + national
        parts.append(Part(bytes((len(header),)) + header + body(start, end), True, data_coding))
    return parts


def _national_pairs(
    languages: Iterable[NationalLanguage],
) -> list[tuple[NationalLanguage, NationalLanguage]]:
    wanted = set(languages)
    locking = [NationalLanguage.DEFAULT] + [lang for lang in locking_shift_languages() if lang and lang in wanted]
    single = [NationalLanguage.DEFAULT] + [lang for lang in single_shift_languages() if lang and lang in wanted]
    return list(product(locking, single))


def encode_message(
    text: str,
    *,
    method: Concatenation = Concatenation.UDH8,
    alphabet: Alphabet | None = None,
    allow_latin1: bool = False,
    languages: Iterable[NationalLanguage] = (),
    packed: bool = False,
) -> EncodedText:
    """Encode `text` in the cheapest alphabet that carries it: the one that needs the fewest parts.

    The candidates are GSM 7-bit with the default tables, then GSM 7-bit with each combination of the
    enabled national shift tables, then Latin-1 (only with `allow_latin1`, because many SMSCs and
    handsets mishandle data_coding 3), then UCS-2. On equal part counts, GSM 7-bit beats Latin-1, which
    beats UCS-2, and the default tables beat national ones, which handsets without them show wrongly.
    Between national combinations, fewer septets plus UDH octets win.

    Args:
        text: the message text.
        method: the SMSC's concatenation method; part counts depend on its UDH size.
        alphabet: force this alphabet instead of choosing. With GSM7, the enabled national tables are
            still tried.
        allow_latin1: let Latin-1 compete.
        languages: national languages whose shift tables the SMSC and handsets support (23.038 Annex A).
        packed: whether GSM 7-bit will be sent packed (it moves part boundaries slightly).

    Raises:
        TextEncodeError: the forced alphabet cannot carry the text, or the text holds an unpaired
            surrogate, which no alphabet carries.
    """
    if alphabet is not None and alphabet is not Alphabet.GSM7:
        return encode_text(text, alphabet)
    default_data = _DEFAULT_GSM.try_encode(text)
    if default_data is not None and len(default_data) <= _SINGLE_GSM_SEPTETS:
        # The hot path: one part with no UDH; no other candidate can beat it.
        return EncodedText(Alphabet.GSM7, default_data)
    ranked: list[tuple[tuple[int, int, int, int], EncodedText]] = []
    for locking, single in _national_pairs(languages):
        data = gsm_codec(locking, single).try_encode(text) if locking or single else default_data
        if data is None:
            continue
        candidate = EncodedText(Alphabet.GSM7, data, locking, single)
        parts = count_parts(candidate, method, packed=packed)
        cost = 7 * len(data) + 8 * parts * len(_national_ies(candidate))
        ranked.append(((parts, 0, int(candidate.uses_national_language), cost), candidate))
    if alphabet is Alphabet.GSM7:
        if not ranked:
            return encode_text(text, Alphabet.GSM7)  # raises the error that names the character
        return min(ranked, key=lambda entry: entry[0])[1]
    # Latin-1 has len(text) units and UCS-2 at least that many. Skip an alphabet that cannot need
    # fewer parts than the best so far: it would lose the tie anyway.
    if allow_latin1 and _fewer_parts_possible(ranked, Alphabet.LATIN_1, len(text), method):
        try:
            latin1 = encode_text(text, Alphabet.LATIN_1)
        except TextEncodeError:
            pass
        else:
            ranked.append(((count_parts(latin1, method), 1, 0, 8 * len(latin1.data)), latin1))
    if _fewer_parts_possible(ranked, Alphabet.UCS2, len(text), method):
        ucs2 = encode_text(text, Alphabet.UCS2)
        ranked.append(((count_parts(ucs2, method), 2, 0, 8 * len(ucs2.data)), ucs2))
    return min(ranked, key=lambda entry: entry[0])[1]


def _fewer_parts_possible(
    ranked: list[tuple[tuple[int, int, int, int], EncodedText]],
    alphabet: Alphabet,
    min_units: int,
    method: Concatenation,
) -> bool:
    """Whether `alphabet` could need fewer parts than the best ranked candidate.

    Only if no part had to move back for a pair would the count be the lower bound computed here.
    """
    if not ranked:
        return True
    best = min(entry[0][0] for entry in ranked)
    if method is Concatenation.PAYLOAD or min_units <= _capacity(alphabet, 0):
        fewest = 1
    else:
        udh_octets = 6 if method is Concatenation.UDH8 else 7 if method is Concatenation.UDH16 else 0
        fewest = -(-min_units // _capacity(alphabet, udh_octets))
    return fewest < best


@dataclass(frozen=True, slots=True)
class ReferenceCounterStatistics:
    """What a `ReferenceCounter` holds."""

    destinations: int
    max_destinations: int


class ReferenceCounter:
    """Concatenation references: one sequence per destination, in bounded memory.

    Each destination's references count up by one (modulo 65536). Consecutive long messages to one
    handset therefore differ, even in the low 8 bits that a UDH8 carries. The counter remembers the
    `max_destinations` most recently used destinations. A new or forgotten destination starts from a
    counter that every call advances, so a destination that comes back after being forgotten does not
    start from a fixed value.
    """

    __slots__ = ("_last", "_max_destinations", "_shared")

    def __init__(self, max_destinations: int = 100_000) -> None:
        if max_destinations < 1:
            raise ValueError("max_destinations must be at least 1")
        self._max_destinations = max_destinations
        self._last: OrderedDict[str, int] = OrderedDict()
        self._shared = 0

    def next(self, destination: str) -> int:
        """The next reference (0 to 65535) for a message to `destination`."""
        last = self._last.get(destination)
        if last is None:
            reference = self._shared
            if len(self._last) >= self._max_destinations:
                self._last.popitem(last=False)
        else:
            reference = (last + 1) & 0xFFFF
            self._last.move_to_end(destination)
        self._last[destination] = reference
        self._shared = (self._shared + 1) & 0xFFFF
        return reference

    def statistics(self) -> ReferenceCounterStatistics:
        """How many destinations are remembered, and the bound."""
        return ReferenceCounterStatistics(len(self._last), self._max_destinations)
