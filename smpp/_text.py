"""Rule: encoding is strict and decoding is lenient.

`encode_text` refuses a character its alphabet cannot carry. The `TextEncodeError` names the
character and its position. `decode_text` never raises: a byte it cannot read becomes the caller's
replacement, and a data_coding that is not text is decoded as Latin-1 as a best effort. A caller can
tell that case apart because `alphabet_for` returns None for it.

data_coding values (SMPP 3.4 §5.2.19): 0 is the SMSC default alphabet, taken here as GSM 03.38 with one
septet per octet; 1 is IA5 (ASCII); 3 is Latin-1; 8 is UCS-2. UCS-2 is written as UTF-16BE, so a
character outside the BMP travels as a surrogate pair, as handsets expect. Values from 0x10 upwards are
read as the 3GPP TS 23.038 §4 data coding scheme groups, which are what an SMSC relays from the network.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, NamedTuple

from ._errors import SmppError
from ._gsm import NationalLanguage, gsm_codec, unpack_septets

__all__ = [
    "Alphabet",
    "EncodedText",
    "TextEncodeError",
    "alphabet_for",
    "decode_text",
    "encode_text",
]


_DEFAULT_GSM: Final = gsm_codec()


class Alphabet(IntEnum):
    """The text alphabets, each valued as its SMPP data_coding (§5.2.19)."""

    GSM7 = 0x00
    IA5 = 0x01
    LATIN_1 = 0x03
    UCS2 = 0x08


_NAMES: Final = {
    Alphabet.GSM7: "GSM 7-bit",
    Alphabet.IA5: "IA5 (ASCII)",
    Alphabet.LATIN_1: "Latin-1",
    Alphabet.UCS2: "UCS-2",
}


_UCS2 = Alphabet.UCS2  # a module global: reading an enum member per call costs ~0.1 us in 3.11


class TextEncodeError(SmppError, ValueError):
    """A character cannot be carried by the chosen alphabet.

    Attributes:
        character: the character that was refused.
        position: its index in the text, counted in Python characters (code points).
        alphabet: the alphabet that refused it.
    """

    def __init__(self, msg: str, *, character: str, position: int, alphabet: Alphabet) -> None:
        super().__init__(msg)
        self.character = character
        self.position = position
        self.alphabet = alphabet

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_encode_error, (str(self), self.character, self.position, self.alphabet))


def _rebuild_encode_error(msg: str, character: str, position: int, alphabet: Alphabet) -> TextEncodeError:
    return TextEncodeError(msg, character=character, position=position, alphabet=alphabet)


def _refused(text: str, position: int, alphabet: Alphabet, detail: str = "") -> TextEncodeError:
    character = text[position]
    where = f" ({detail})" if detail else ""
    return TextEncodeError(
        f"{_NAMES[alphabet]}{where} cannot carry {character!r} (U+{ord(character):04X}) at position {position}",
        character=character,
        position=position,
        alphabet=alphabet,
    )


class EncodedText(NamedTuple):
    """Text encoded for one alphabet, before it is split into parts.

    Attributes:
        alphabet: the alphabet, whose value is the data_coding to send.
        data: GSM 7-bit as unpacked septets (one per octet), Latin-1 and IA5 as octets, UCS-2 as
            UTF-16BE.
        locking_shift: for GSM 7-bit, the national locking shift table in force. Any value but
            DEFAULT puts a UDH IE 0x25 in every part.
        single_shift: for GSM 7-bit, the national single shift table in force. Any value but DEFAULT
            puts a UDH IE 0x24 in every part.
    """

    alphabet: Alphabet
    data: bytes
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT
    single_shift: NationalLanguage = NationalLanguage.DEFAULT

    @property
    def data_coding(self) -> int:
        """The data_coding for submit_sm (§5.2.19)."""
        return int(self.alphabet)

    @property
    def units(self) -> int:
        """Length in the alphabet's units: septets, octets or UTF-16 code units."""
        return len(self.data) >> 1 if self.alphabet is _UCS2 else len(self.data)

    @property
    def unit_octets(self) -> int:
        """Octets per unit in `data`: 2 for UCS-2, 1 otherwise."""
        return 2 if self.alphabet is _UCS2 else 1

    @property
    def uses_national_language(self) -> bool:
        """True when a national shift table is in force, so that every part needs a UDH."""
        return bool(self.locking_shift or self.single_shift)


def encode_text(
    text: str,
    alphabet: Alphabet,
    *,
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT,
    single_shift: NationalLanguage = NationalLanguage.DEFAULT,
) -> EncodedText:
    """Encode `text` in one given alphabet (no automatic choice; see `encode_message` for that).

    Args:
        text: the message text.
        alphabet: the alphabet to use.
        locking_shift: GSM 7-bit only, the national locking shift table (3GPP TS 23.038 Annex A.3).
        single_shift: GSM 7-bit only, the national single shift table (Annex A.2).

    Raises:
        TextEncodeError: a character the alphabet cannot carry. This includes a raw ESC in GSM 7-bit
            and an unpaired surrogate in UCS-2.
        ValueError: national tables were asked for with an alphabet other than GSM 7-bit, or for a
            locking shift table the spec does not define.
    """
    if alphabet is Alphabet.GSM7:
        codec = gsm_codec(locking_shift, single_shift) if locking_shift or single_shift else _DEFAULT_GSM
        data = codec.try_encode(text)
        if data is None:
            detail = ""
            if locking_shift or single_shift:
                detail = f"locking shift {locking_shift.name}, single shift {single_shift.name}"
            raise _refused(text, codec.find_unencodable(text), alphabet, detail)
        return EncodedText(alphabet, data, locking_shift, single_shift)
    if locking_shift or single_shift:
        raise ValueError(f"national language tables apply to GSM 7-bit only, not {_NAMES[alphabet]}")
    codec_name = {Alphabet.IA5: "ascii", Alphabet.LATIN_1: "latin-1", Alphabet.UCS2: "utf-16-be"}[alphabet]
    try:
        return EncodedText(alphabet, text.encode(codec_name))
    except UnicodeEncodeError as exc:
        raise _refused(text, exc.start, alphabet) from None


def alphabet_for(data_coding: int) -> Alphabet | None:
    """The alphabet of a data_coding value, or None when it is not text this layer can read exactly.

    0x00 to 0x0F follow SMPP 3.4 §5.2.19. Above that, the 3GPP TS 23.038 §4 groups apply:
    general data coding (0x10 to 0x7F, where compressed text is not supported), message waiting
    (0xC0 to 0xEF), and data coding/message class (0xF0 to 0xFF).
    """
    if data_coding < 0x10:
        try:
            return Alphabet(data_coding)
        except ValueError:
            return None
    group = data_coding >> 4
    if group <= 0x7:
        if data_coding & 0x20:
            return None
        return {0: Alphabet.GSM7, 2: Alphabet.UCS2}.get((data_coding >> 2) & 0x3)
    if group in (0xC, 0xD):
        return Alphabet.GSM7
    if group == 0xE:
        return Alphabet.UCS2
    if group == 0xF:
        return None if data_coding & 0x04 else Alphabet.GSM7
    return None


def decode_text(
    data_coding: int,
    data: bytes,
    *,
    locking_shift: int = 0,
    single_shift: int = 0,
    replacement: str = "?",
    packed: bool = False,
    fill_bits: int = 0,
) -> str:
    """Turn a short_message (UDH already removed) into text. It never raises.

    Args:
        data_coding: the PDU's data_coding.
        data: the user data, without a UDH.
        locking_shift: the national language identifier of a UDH IE 0x25, if one came (GSM 7-bit only).
            An identifier without a table here falls back to the default alphabet.
        single_shift: the same for a UDH IE 0x24.
        replacement: shown for a byte that the alphabet cannot read.
        packed: GSM 7-bit data is packed rather than one septet per octet.
        fill_bits: with `packed`, the fill bits before the first septet (see `fill_bits_after_udh`).

    Returns:
        The text. When `alphabet_for(data_coding)` is None, this is a Latin-1 reading of the bytes,
        a best effort the caller should flag.
    """
    alphabet = alphabet_for(data_coding)
    if alphabet is Alphabet.GSM7:
        septets = unpack_septets(data, fill_bits) if packed else data
        return gsm_codec(_locking_language(locking_shift), _single_language(single_shift)).decode(
            septets, replacement
        )
    if alphabet is Alphabet.UCS2:
        return _decode_ucs2(data, replacement)
    if alphabet is Alphabet.IA5:
        return data.decode("latin-1").translate(_ia5_table(replacement))
    return data.decode("latin-1")


def _locking_language(nli: int) -> NationalLanguage:
    if nli in (NationalLanguage.TURKISH, NationalLanguage.PORTUGUESE):
        return NationalLanguage(nli)
    return NationalLanguage.DEFAULT


def _single_language(nli: int) -> NationalLanguage:
    if nli in (NationalLanguage.TURKISH, NationalLanguage.SPANISH, NationalLanguage.PORTUGUESE):
        return NationalLanguage(nli)
    return NationalLanguage.DEFAULT


_IA5_TABLES: dict[str, dict[int, str]] = {}


def _ia5_table(replacement: str) -> dict[int, str]:
    table = _IA5_TABLES.get(replacement)
    if table is None:
        table = {code: replacement for code in range(0x80, 0x100)}
        if len(_IA5_TABLES) < 8:
            _IA5_TABLES[replacement] = table
    return table


def _decode_ucs2(data: bytes, replacement: str) -> str:
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError:
        pass
    # An odd length or an unpaired surrogate: read code units one by one (only on this error path).
    out: list[str] = []
    units = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data) - 1, 2)]
    index = 0
    while index < len(units):
        unit = units[index]
        if 0xD800 <= unit <= 0xDBFF and index + 1 < len(units) and 0xDC00 <= units[index + 1] <= 0xDFFF:
            out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (units[index + 1] - 0xDC00)))
            index += 2
            continue
        out.append(replacement if 0xD800 <= unit <= 0xDFFF else chr(unit))
        index += 1
    if len(data) % 2:
        out.append(replacement)
    return "".join(out)
