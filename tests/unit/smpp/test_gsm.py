"""GSM 03.38 tables, the lenient decoder, and septet packing.

Oracles: the `gsm0338` package (an independent codec of the default alphabet, its extension table and
the Spanish single shift table), code points read from 3GPP TS 23.038 Annex A, and a bit-by-bit packer
written here straight from §6.1.2.1.1.
"""

from __future__ import annotations

import gsm0338
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp._gsm import (
    ESC,
    NationalLanguage,
    fill_bits_after_udh,
    gsm_codec,
    pack_septets,
    unpack_septets,
)

ORACLE = gsm0338.Codec()
SPANISH_ORACLE = gsm0338.Codec(single_shift_decode_map=gsm0338.SINGLE_SHIFT_CHARACTER_SET_SPANISH)
DEFAULT = gsm_codec()



def oracle_extension_codes() -> list[int]:
    """Codes the oracle reads after ESC; it refuses the others."""
    codes = []
    for code in range(0x80):
        try:
            ORACLE.decode(bytes([ESC, code]))
        except UnicodeDecodeError:
            continue
        codes.append(code)
    return codes


# Characters of the default alphabet (without ESC, which is no character) and of its extension table.
EXTENSION_CODES = oracle_extension_codes()
GSM_BASIC = [ORACLE.decode(bytes([code]))[0] for code in range(0x80) if code != ESC]
GSM_EXTENSION = [ORACLE.decode(bytes([ESC, code]))[0] for code in EXTENSION_CODES]
gsm_text = st.text(alphabet=st.sampled_from(GSM_BASIC + GSM_EXTENSION), max_size=400)


def test_default_alphabet_matches_the_oracle_for_all_127_characters() -> None:
    assert len(GSM_BASIC) == 127
    for char in GSM_BASIC:
        expected = ORACLE.encode(char)[0]
        assert DEFAULT.try_encode(char) == expected, char
        assert DEFAULT.decode(expected) == char


def test_extension_table_matches_the_oracle() -> None:
    assert sorted(GSM_EXTENSION) == sorted("\f^{}\\[~]|€")
    for char in GSM_EXTENSION:
        expected = ORACLE.encode(char)[0]
        assert expected[0] == ESC and len(expected) == 2
        assert DEFAULT.try_encode(char) == expected, char
        assert DEFAULT.decode(expected) == char


@given(gsm_text)
def test_any_gsm_text_encodes_as_the_oracle_does(text: str) -> None:
    encoded = DEFAULT.try_encode(text)
    assert encoded is not None
    assert encoded == ORACLE.encode(text)[0]
    assert DEFAULT.decode(encoded) == text
    assert ORACLE.decode(encoded)[0] == text


@given(st.text(alphabet=st.sampled_from([c for c in GSM_BASIC + GSM_EXTENSION if ord(c) < 0x100]), max_size=400))
def test_latin1_range_gsm_text_encodes_as_the_oracle_does(text: str) -> None:
    # This text takes the bytes.translate path, escape pairs included.
    assert DEFAULT.try_encode(text) == ORACLE.encode(text)[0]


@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=200))
def test_latin1_text_is_refused_exactly_when_the_oracle_refuses_it(text: str) -> None:
    try:
        expected: bytes | None = ORACLE.encode(text)[0]
    except UnicodeEncodeError:
        expected = None
    if "\x1b" in text:
        expected = None  # the oracle maps a raw ESC to 0x1B; we refuse it
    assert DEFAULT.try_encode(text) == expected


def test_spanish_single_shift_matches_the_oracle() -> None:
    codec = gsm_codec(NationalLanguage.DEFAULT, NationalLanguage.SPANISH)
    for code in gsm0338.SINGLE_SHIFT_CHARACTER_SET_SPANISH:
        char = SPANISH_ORACLE.decode(bytes([ESC, code]))[0]
        assert codec.try_encode(char) == bytes([ESC, code]), char
        assert codec.decode(bytes([ESC, code])) == char


# 3GPP TS 23.038 Annex A.2.1 (Turkish single shift) and A.3.1 (Turkish locking shift).
TURKISH_SINGLE = {"Ğ": 0x47, "İ": 0x49, "Ş": 0x53, "ç": 0x63, "€": 0x65, "ğ": 0x67, "ı": 0x69, "ş": 0x73}
TURKISH_LOCKING = {"€": 0x04, "ı": 0x07, "Ğ": 0x0B, "ğ": 0x0C, "Ş": 0x1C, "ş": 0x1D, "İ": 0x40, "ç": 0x60}
# Annex A.2.3 and A.3.3 (Portuguese).
PORTUGUESE_SINGLE = {"ê": 0x05, "Ô": 0x0B, "Ê": 0x1F, "À": 0x41, "Ã": 0x5B, "Â": 0x61, "ã": 0x7B, "â": 0x7F}
PORTUGUESE_LOCKING = {
    "ê": 0x04, "ú": 0x06, "í": 0x07, "ó": 0x08, "ç": 0x09, "Ô": 0x0B, "ô": 0x0C, "Á": 0x0E, "á": 0x0F,
    "ª": 0x12, "Ç": 0x13, "À": 0x14, "∞": 0x15, "^": 0x16, "\\": 0x17, "€": 0x18, "Ó": 0x19, "|": 0x1A,
    "Â": 0x1C, "â": 0x1D, "Ê": 0x1E, "º": 0x24, "Í": 0x40, "Ã": 0x5B, "Õ": 0x5C, "Ú": 0x5D, "~": 0x60,
    "ã": 0x7B, "õ": 0x7C, "`": 0x7D,
}
# Annex A.2.2 (Spanish single shift), read from the spec rather than from the oracle.
SPANISH_SINGLE = {"ç": 0x09, "Á": 0x41, "Í": 0x49, "Ó": 0x4F, "Ú": 0x55, "á": 0x61, "í": 0x69, "ó": 0x6F, "ú": 0x75}


@pytest.mark.parametrize(
    ("language", "positions"),
    [
        (NationalLanguage.TURKISH, TURKISH_SINGLE),
        (NationalLanguage.SPANISH, SPANISH_SINGLE),
        (NationalLanguage.PORTUGUESE, PORTUGUESE_SINGLE),
    ],
)
def test_single_shift_positions_from_the_spec(language: NationalLanguage, positions: dict[str, int]) -> None:
    codec = gsm_codec(NationalLanguage.DEFAULT, language)
    for char, code in positions.items():
        assert codec.try_encode(char) == bytes([ESC, code]), char
        assert codec.decode(bytes([ESC, code])) == char


@pytest.mark.parametrize(
    ("language", "positions"),
    [(NationalLanguage.TURKISH, TURKISH_LOCKING), (NationalLanguage.PORTUGUESE, PORTUGUESE_LOCKING)],
)
def test_locking_shift_positions_from_the_spec(language: NationalLanguage, positions: dict[str, int]) -> None:
    codec = gsm_codec(language, NationalLanguage.DEFAULT)
    for char, code in positions.items():
        assert codec.try_encode(char) == bytes([code]), char
        assert codec.decode(bytes([code])) == char


def test_portuguese_single_shift_restores_greek_letters_the_locking_table_dropped() -> None:
    # A.3.3 has 'ª' where the default alphabet has 'Φ'; A.2.3 carries 'Φ' at ESC 0x12.
    codec = gsm_codec(NationalLanguage.PORTUGUESE, NationalLanguage.PORTUGUESE)
    assert codec.try_encode("Φª") == b"\x1b\x12\x12"
    assert codec.decode(b"\x1b\x12\x12") == "Φª"


def test_turkish_pair_prefers_the_one_septet_locking_code() -> None:
    codec = gsm_codec(NationalLanguage.TURKISH, NationalLanguage.TURKISH)
    assert codec.try_encode("şğİ") == bytes([0x1D, 0x0C, 0x40])


def test_turkish_locking_table_lacks_characters_it_replaced() -> None:
    # A.3.1 puts '€' at 0x04 where the default alphabet has 'è', so 'è' is gone.
    codec = gsm_codec(NationalLanguage.TURKISH, NationalLanguage.DEFAULT)
    assert codec.try_encode("è") is None
    assert codec.find_unencodable("abè") == 2


def test_spanish_has_no_locking_shift_table() -> None:
    with pytest.raises(ValueError, match="SPANISH locking shift"):
        gsm_codec(NationalLanguage.SPANISH, NationalLanguage.DEFAULT)


# The inputs that python-smpplib's GSM module gets wrong.


def test_section_sign_is_0x5f() -> None:
    assert DEFAULT.try_encode("§") == b"\x5f"


def test_backtick_is_refused_not_mapped_to_section_sign() -> None:
    assert DEFAULT.try_encode("a`b") is None
    assert DEFAULT.find_unencodable("a`b") == 1


def test_form_feed_is_escaped() -> None:
    assert DEFAULT.try_encode("\f") == b"\x1b\x0a"


def test_raw_escape_in_text_is_refused() -> None:
    assert DEFAULT.try_encode("a\x1bb") is None
    assert DEFAULT.find_unencodable("a\x1bb") == 1


def test_non_gsm_control_and_non_bmp_characters_are_refused() -> None:
    for text in ("\t", "\x00", "ç", "😀", "\u00a0"):
        assert DEFAULT.try_encode(text) is None, repr(text)
        assert DEFAULT.find_unencodable(text) == 0


@given(st.text(max_size=80))
def test_never_a_bare_escape_and_refusal_matches_the_finder(text: str) -> None:
    encoded = DEFAULT.try_encode(text)
    if encoded is None:
        assert DEFAULT.find_unencodable(text) >= 0
        return
    assert DEFAULT.find_unencodable(text) == -1
    assert all(code < 0x80 for code in encoded)
    index = encoded.find(ESC)
    while index >= 0:
        assert encoded[index + 1] in EXTENSION_CODES
        index = encoded.find(ESC, index + 2)


# Lenient decoding.


def test_octet_above_0x7f_becomes_the_replacement() -> None:
    assert DEFAULT.decode(b"a\x80b") == "a?b"
    assert DEFAULT.decode(b"a\xffb", replacement="\ufffd") == "a\ufffdb"
    assert DEFAULT.decode(b"a\xffb", replacement="") == "ab"


def test_lone_trailing_escape_is_tolerated() -> None:
    assert DEFAULT.decode(b"ab\x1b") == "ab"


def test_escape_escape_shows_a_space() -> None:
    # 23.038 Table 6.2.1.1, note 1.
    assert DEFAULT.decode(b"a\x1b\x1bb") == "a b"


def test_escape_before_an_undefined_code_shows_the_main_table_character() -> None:
    # 23.038 §6.2.1.1: show the character of the main table for a code the extension table lacks.
    assert DEFAULT.decode(b"\x1b\x41\x1b\x00") == "A@"
    assert DEFAULT.decode(b"\x1b\x80") == "?"


# Packing (§6.1.2.1.1).


def naive_pack(septets: bytes, fill_bits: int) -> bytes:
    """Bit by bit: septet i takes bits fill + 7i .. fill + 7i + 6, least significant bit first."""
    if not septets:
        return b""
    bits = [0] * fill_bits
    for septet in septets:
        bits.extend((septet >> shift) & 1 for shift in range(7))
    if len(bits) % 8 == 1:  # 7 spare bits: they hold CR
        bits.extend((0x0D >> shift) & 1 for shift in range(7))
    bits.extend([0] * (-len(bits) % 8))
    return bytes(sum(bits[i + shift] << shift for shift in range(8)) for i in range(0, len(bits), 8))


def test_hellohello_packs_to_the_published_vector() -> None:
    septets = DEFAULT.try_encode("hellohello")
    assert septets is not None
    assert pack_septets(septets).hex() == "e8329bfd4697d9ec37"
    assert unpack_septets(bytes.fromhex("e8329bfd4697d9ec37")) == b"hellohello"


def test_seven_spare_bits_hold_cr() -> None:
    packed = pack_septets(b"1234567")
    assert len(packed) == 7
    assert packed[-1] >> 1 == 0x0D
    assert unpack_septets(packed) == b"1234567"
    assert unpack_septets(packed, count=8) == b"1234567\r"


def test_fill_bits_after_udh() -> None:
    # 23.040 §9.2.3.24: septets start on a septet boundary counted from the start of the UD.
    assert fill_bits_after_udh(0) == 0
    assert fill_bits_after_udh(6) == 1  # UDHL 5: 8-bit concatenation
    assert fill_bits_after_udh(7) == 0  # UDHL 6: 16-bit concatenation
    assert fill_bits_after_udh(5) == 2
    assert fill_bits_after_udh(4) == 3


@given(st.binary(max_size=400).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_matches_a_bitwise_packer_and_unpacks(septets: bytes, fill_bits: int) -> None:
    packed = pack_septets(septets, fill_bits)
    assert packed == naive_pack(septets, fill_bits)
    assert unpack_septets(packed, fill_bits, len(septets)) == septets
    unpacked = unpack_septets(packed, fill_bits)
    # Without a count, a final CR exactly on an octet boundary is read as padding (documented).
    assert unpacked == septets or (unpacked == septets[:-1] and septets.endswith(b"\r"))


def test_unpack_refuses_a_count_beyond_the_data() -> None:
    with pytest.raises(ValueError, match="septets need"):
        unpack_septets(b"\x00\x00", count=3)
