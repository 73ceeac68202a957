"""Rule: GSM 7-bit output never holds a bare escape, and never a character that the tables lack.

0x1B only ever starts an extension pair. A character that neither the locking shift table nor the
single shift table of the chosen pair carries makes the encoder refuse the text; it never swaps in a
look-alike. Decoding goes the other way and is lenient (3GPP TS 23.038 §6.2.1.1 and Annex A):

- an octet above 0x7F becomes the caller's replacement;
- ESC followed by a code missing from the single shift table shows the locking shift table's character;
- ESC ESC shows a space (§6.2.1.1, note 1);
- a lone ESC at the end is dropped.

The tables come from 3GPP TS 23.038: the default alphabet and its extension table (§6.2.1), and the
Turkish, Spanish and Portuguese tables of Annex A (A.2.1 to A.2.3 are the single shift tables; A.3.1 and
A.3.3 are the locking shift tables; Spanish has no locking shift table). The encode and decode maps for
each (locking shift, single shift) pair are built once and cached. Encoding is table-driven and has
no per-character Python code. Text within Latin-1 goes through `bytes.translate`, and one regex pass
then swaps in its escape pairs, if it has any. Other text goes through one `str.translate`, and the
closing ASCII encode doubles as the check that the text fits.

Septet packing (§6.1.2.1.1) puts the first septet in the low bits of the first octet. Fill bits at the
start align packed data that follows a UDH to a septet boundary (3GPP TS 23.040 §9.2.3.24). Packing runs
on one Python int, combining neighbouring fields level by level, with no per-septet loop.
"""

from __future__ import annotations

import codecs
import re
from enum import IntEnum
from functools import cache
from typing import Final

__all__ = [
    "CR",
    "ESC",
    "GsmCodec",
    "NationalLanguage",
    "fill_bits_after_udh",
    "gsm_codec",
    "locking_shift_languages",
    "pack_septets",
    "single_shift_languages",
    "unpack_septets",
]

ESC: Final = 0x1B
"""The escape septet that selects the single shift (extension) table for the next septet (§6.2.1.1)."""

CR: Final = 0x0D
"""Carriage return: it pads 7 spare bits at the end of packed data, so that they do not read as '@'."""


class NationalLanguage(IntEnum):
    """National language identifiers (3GPP TS 23.038 §6.2.1.2.4), the value of UDH IEIs 0x24 and 0x25.

    `DEFAULT` stands for the GSM 7-bit default alphabet and its extension table. Those are the tables in
    force when no national language shift IE is present.
    """

    DEFAULT = 0
    TURKISH = 1
    SPANISH = 2
    PORTUGUESE = 3


# §6.2.1: the default alphabet, indexed by septet. 0x1B is ESC and carries no character.
_DEFAULT_ALPHABET: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# Annex A.3.1: Turkish locking shift table.
_TURKISH_LOCKING: Final = (
    "@£$¥€éùıòÇ\nĞğ\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "İABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "çabcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# Annex A.3.3: Portuguese locking shift table.
_PORTUGUESE_LOCKING: Final = (
    "@£$¥êéúíóç\nÔô\rÁá"
    "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
    " !\"#º%&'()*+,-./"
    "0123456789:;<=>?"
    "ÍABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÃÕÚÜ§"
    "~abcdefghijklmno"
    "pqrstuvwxyzãõ`üà"
)

# §6.2.1.1: the default alphabet extension table, reached by ESC. 0x0A is FORM FEED.
_DEFAULT_EXTENSION: Final[dict[int, str]] = {
    0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}

# Annex A.2.1: Turkish single shift table.
_TURKISH_SINGLE: Final[dict[int, str]] = {
    0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|",
    0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x65: "€", 0x67: "ğ", 0x69: "ı", 0x73: "ş",
}

# Annex A.2.2: Spanish single shift table.
_SPANISH_SINGLE: Final[dict[int, str]] = {
    0x09: "ç", 0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|",
    0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú",
    0x61: "á", 0x65: "€", 0x69: "í", 0x6F: "ó", 0x75: "ú",
}

# Annex A.2.3: Portuguese single shift table.
_PORTUGUESE_SINGLE: Final[dict[int, str]] = {
    0x05: "ê", 0x09: "ç", 0x0A: "\f", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á", 0x0F: "á",
    0x12: "Φ", 0x13: "Γ", 0x14: "^", 0x15: "Ω", 0x16: "Π", 0x17: "Ψ", 0x18: "Σ", 0x19: "Θ",
    0x1F: "Ê", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|",
    0x41: "À", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x5B: "Ã", 0x5C: "Õ",
    0x61: "Â", 0x65: "€", 0x69: "í", 0x6F: "ó", 0x75: "ú", 0x7B: "ã", 0x7C: "õ", 0x7F: "â",
}

_LOCKING_TABLES: Final[dict[NationalLanguage, str]] = {
    NationalLanguage.DEFAULT: _DEFAULT_ALPHABET,
    NationalLanguage.TURKISH: _TURKISH_LOCKING,
    NationalLanguage.PORTUGUESE: _PORTUGUESE_LOCKING,
}

_SINGLE_TABLES: Final[dict[NationalLanguage, dict[int, str]]] = {
    NationalLanguage.DEFAULT: _DEFAULT_EXTENSION,
    NationalLanguage.TURKISH: _TURKISH_SINGLE,
    NationalLanguage.SPANISH: _SPANISH_SINGLE,
    NationalLanguage.PORTUGUESE: _PORTUGUESE_SINGLE,
}

# Translating a refused ASCII character to this non-ASCII marker makes the closing ASCII encode fail.
_REFUSED: Final = "\x80"
# In the Latin-1 fast path: a character no table carries, and the markers of escape-pair characters.
_NOT_GSM: Final = 0xFF
_PAIR_MARKER: Final = re.compile(b"[\x81-\xfe]")


def locking_shift_languages() -> tuple[NationalLanguage, ...]:
    """The languages with a locking shift table here (Annex A.3), `DEFAULT` first."""
    return tuple(_LOCKING_TABLES)


def single_shift_languages() -> tuple[NationalLanguage, ...]:
    """The languages with a single shift table here (Annex A.2), `DEFAULT` first."""
    return tuple(_SINGLE_TABLES)


class GsmCodec:
    """The GSM 7-bit codec for one pair of a locking shift table and a single shift table.

    Septets are handled unpacked, one per octet, as SMPP carries them with data_coding 0. Get instances
    from `gsm_codec`, which builds each pair once.

    Attributes:
        locking_shift: the language whose locking shift table is the main table.
        single_shift: the language whose single shift table is reached by ESC.
    """

    __slots__ = ("_decode_tables", "_encode_map", "_extension", "_latin1_septets", "_main", "_pairs",
                 "_unencodable", "locking_shift", "single_shift")

    def __init__(self, locking_shift: NationalLanguage, single_shift: NationalLanguage) -> None:
        main = _LOCKING_TABLES[locking_shift]
        extension = _SINGLE_TABLES[single_shift]
        self.locking_shift = locking_shift
        self.single_shift = single_shift

        # Fast path for Latin-1 text: octet -> septet for one-septet characters, a marker octet
        # (0x81 upwards) for each escape-pair character, and _NOT_GSM for the rest.
        latin1_septets = bytearray([_NOT_GSM]) * 0x100
        pairs = [b""] * 0x100
        encode_map: dict[int, int | str] = {}
        for code, char in enumerate(main):
            if code != ESC:
                encode_map[ord(char)] = code
                if ord(char) < 0x100:
                    latin1_septets[ord(char)] = code
        marker = 0x81
        for code, char in extension.items():
            # A character in both tables costs one septet through the main table.
            if ord(char) not in encode_map:
                encode_map[ord(char)] = f"\x1b{code:c}"
                if ord(char) < 0x100:
                    latin1_septets[ord(char)] = marker
                    pairs[marker] = bytes((ESC, code))
                    marker += 1
        self._latin1_septets = bytes(latin1_septets)
        self._pairs = tuple(pairs)
        for ascii_code in range(0x80):
            encode_map.setdefault(ascii_code, _REFUSED)
        self._encode_map = encode_map

        allowed = "".join(sorted({c for i, c in enumerate(main) if i != ESC} | set(extension.values())))
        self._unencodable = re.compile(f"[^{re.escape(allowed)}]")

        self._extension = dict(extension)
        self._main = main
        self._decode_tables: dict[str, str | tuple[str, ...]] = {}

    def try_encode(self, text: str) -> bytes | None:
        """Unpacked septets for `text`, or None when a character is in neither table."""
        # Text in Latin-1: two C-level passes over bytes, then the rare escape pairs swapped in.
        try:
            septets = text.encode("latin-1").translate(self._latin1_septets)
        except UnicodeEncodeError:
            pass
        else:
            if septets.isascii():
                return septets
            if _NOT_GSM in septets:
                return None
            return _PAIR_MARKER.sub(self._expand_pair, septets)
        # Other text: one str.translate that also writes ESC pairs, then the ASCII check.
        try:
            return text.translate(self._encode_map).encode("ascii")
        except UnicodeEncodeError:
            return None

    def _expand_pair(self, marker: re.Match[bytes]) -> bytes:
        return self._pairs[marker.group()[0]]

    def find_unencodable(self, text: str) -> int:
        """Index of the first character of `text` that neither table carries, or -1."""
        match = self._unencodable.search(text)
        return -1 if match is None else match.start()

    def decode(self, septets: bytes, replacement: str = "?") -> str:
        """Text from unpacked septets. It never fails; the module docstring gives the lenient rules.

        Args:
            septets: one septet per octet.
            replacement: shown for an octet that is not a septet (above 0x7F).
        """
        table = self._table_with(replacement)
        if ESC not in septets:
            return self._plain(septets, table)
        out: list[str] = []
        pos = 0
        end = len(septets)
        while True:
            esc = septets.find(ESC, pos)
            if esc < 0:
                out.append(self._plain(septets[pos:], table))
                break
            out.append(self._plain(septets[pos:esc], table))
            if esc + 1 >= end:
                break
            code = septets[esc + 1]
            if code == ESC:
                out.append(" ")
            else:
                out.append(self._extension.get(code) or table[code])
            pos = esc + 2
        return "".join(out)

    @staticmethod
    def _plain(septets: bytes, table: str | tuple[str, ...]) -> str:
        if isinstance(table, str):
            return codecs.charmap_decode(septets, "strict", table)[0]
        return septets.decode("latin-1").translate(table)

    def _table_with(self, replacement: str) -> str | tuple[str, ...]:
        table = self._decode_tables.get(replacement)
        if table is None:
            # Octets above 0x7F are not septets. A one-character replacement allows a 256-character
            # charmap table (decoded in C); U+FFFE means "undefined" to charmap, so it takes the tuple.
            if len(replacement) == 1 and replacement != "\ufffe":
                table = self._main + replacement * 0x80
            else:
                table = tuple(self._main) + (replacement,) * 0x80
            if len(self._decode_tables) < 8:  # callers use one or two replacements
                self._decode_tables[replacement] = table
        return table


@cache
def gsm_codec(
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT,
    single_shift: NationalLanguage = NationalLanguage.DEFAULT,
) -> GsmCodec:
    """The codec for a table pair, built once.

    Raises:
        ValueError: an identifier that is not a `NationalLanguage`, or a language with no locking shift
            table (Spanish has none in the spec).
    """
    locking_shift = NationalLanguage(locking_shift)
    single_shift = NationalLanguage(single_shift)
    if locking_shift not in _LOCKING_TABLES:
        raise ValueError(f"3GPP TS 23.038 defines no {locking_shift.name} locking shift table")
    if single_shift not in _SINGLE_TABLES:
        raise ValueError(f"no {single_shift.name} single shift table")
    return GsmCodec(locking_shift, single_shift)


def fill_bits_after_udh(udh_octets: int) -> int:
    """Fill bits that align packed septets after a UDH of `udh_octets` octets (23.040 §9.2.3.24)."""
    return -(udh_octets * 8) % 7


@cache
def _pair_pattern(level: int) -> bytes:
    """One slot pair at compaction `level`: the low 7 << level bits set in 2 << level octets."""
    return ((1 << (7 << level)) - 1).to_bytes(2 << level, "little")


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets into octets (§6.1.2.1.1), after `fill_bits` zero bits.

    If 7 bits are left over in the last octet, they hold CR rather than zeros. This is the §6.1.2.3.1
    convention. It matters on SMPP, where sm_length counts octets: a receiver that counts septets from
    octets would otherwise read an extra '@'.

    Args:
        septets: one septet per octet, each below 0x80.
        fill_bits: 0 to 6 leading zero bits.
    """
    count = len(septets)
    if count == 0:
        return b""
    value = int.from_bytes(septets, "little")
    level = 0
    slot_bits = 8
    width = 7
    total_bits = 8 * count
    while slot_bits < total_bits:
        pairs = -(-total_bits // (2 * slot_bits))
        low = int.from_bytes(_pair_pattern(level) * pairs, "little")
        value = (value & low) | ((value >> (slot_bits - width)) & (low << width))
        level += 1
        slot_bits *= 2
        width *= 2
    used_bits = fill_bits + 7 * count
    octets = -(-used_bits // 8)
    value <<= fill_bits
    if octets * 8 - used_bits == 7:
        value |= CR << used_bits
    return value.to_bytes(octets, "little")


def unpack_septets(data: bytes, fill_bits: int = 0, count: int | None = None) -> bytes:
    """Unpack packed septets into one septet per octet (§6.1.2.1.1).

    Args:
        data: packed octets.
        fill_bits: leading fill bits to skip (0 to 6).
        count: how many septets to take. If None, every whole septet in `data` is taken. A trailing CR
            that exactly fills the last septet slot is then dropped as the padding `pack_septets` writes.

    Raises:
        ValueError: `count` needs more bits than `data` holds.
    """
    available_bits = 8 * len(data) - fill_bits
    if count is None:
        count = max(available_bits, 0) // 7
        drop_padding = available_bits > 0 and available_bits % 7 == 0
    elif count and 7 * count > available_bits:
        raise ValueError(f"{count} septets need {7 * count} bits, packed data holds {available_bits}")
    else:
        drop_padding = False
    if count == 0:
        return b""
    value = (int.from_bytes(data, "little") >> fill_bits) & ((1 << (7 * count)) - 1)
    total_bits = 8 * count
    levels = (count - 1).bit_length()
    for level in range(levels - 1, -1, -1):
        slot_bits = 8 << level
        width = 7 << level
        pairs = -(-total_bits // (2 * slot_bits))
        low = int.from_bytes(_pair_pattern(level) * pairs, "little")
        value = (value & low) | ((value & (low << width)) << (slot_bits - width))
    septets = value.to_bytes(count, "little")
    if drop_padding and septets[-1] == CR:
        return septets[:-1]
    return septets
