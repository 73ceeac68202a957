"""Strict encoding and lenient decoding per data_coding (SMPP 3.4 §5.2.19, 3GPP TS 23.038 §4)."""

from __future__ import annotations

import pickle

import gsm0338
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp._gsm import NationalLanguage, gsm_codec, pack_septets
from smpp._text import Alphabet, EncodedText, TextEncodeError, alphabet_for, decode_text, encode_text

ORACLE = gsm0338.Codec()
no_surrogates = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200)


def test_gsm_encoding_is_unpacked_septets() -> None:
    encoded = encode_text("@£$ {€}", Alphabet.GSM7)
    assert encoded == EncodedText(Alphabet.GSM7, b"\x00\x01\x02\x20\x1b\x28\x1b\x65\x1b\x29")
    assert encoded.data_coding == 0
    assert encoded.units == 10
    assert not encoded.uses_national_language


@pytest.mark.parametrize(
    ("text", "character", "position"),
    [("abc`d", "`", 3), ("x\x1by", "\x1b", 1), ("Привет", "П", 0), ("ok😀", "😀", 2), ("tab\there", "\t", 3)],
)
def test_gsm_refusal_names_character_and_position(text: str, character: str, position: int) -> None:
    with pytest.raises(TextEncodeError) as caught:
        encode_text(text, Alphabet.GSM7)
    assert caught.value.character == character
    assert caught.value.position == position
    assert caught.value.alphabet is Alphabet.GSM7
    assert f"U+{ord(character):04X}" in str(caught.value)
    assert f"position {position}" in str(caught.value)


def test_refusal_with_national_tables_names_them() -> None:
    with pytest.raises(TextEncodeError, match="locking shift TURKISH") as caught:
        encode_text("şè", Alphabet.GSM7, locking_shift=NationalLanguage.TURKISH)
    assert caught.value.position == 1


def test_encode_error_survives_pickling() -> None:
    with pytest.raises(TextEncodeError) as caught:
        encode_text("aé", Alphabet.IA5)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.character, copy.position, copy.alphabet, str(copy)) == ("é", 1, Alphabet.IA5, str(caught.value))


def test_latin1() -> None:
    encoded = encode_text("Grüße ½", Alphabet.LATIN_1)
    assert encoded.data == b"Gr\xfc\xdfe \xbd"
    assert encoded.data_coding == 3
    with pytest.raises(TextEncodeError) as caught:
        encode_text("€5", Alphabet.LATIN_1)
    assert caught.value.position == 0


def test_ucs2_writes_non_bmp_as_a_surrogate_pair() -> None:
    encoded = encode_text("Ж😀", Alphabet.UCS2)
    # U+1F600 is D83D DE00 in UTF-16 (The Unicode Standard §3.9).
    assert encoded.data == bytes.fromhex("0416d83dde00")
    assert encoded.units == 3
    assert encoded.data_coding == 8


def test_ucs2_refuses_an_unpaired_surrogate() -> None:
    with pytest.raises(TextEncodeError) as caught:
        encode_text("ab\udc00", Alphabet.UCS2)
    assert caught.value.position == 2


def test_national_tables_apply_to_gsm_only() -> None:
    with pytest.raises(ValueError, match="GSM 7-bit only"):
        encode_text("x", Alphabet.UCS2, single_shift=NationalLanguage.TURKISH)


def test_turkish_text_in_gsm_with_national_tables() -> None:
    encoded = encode_text("ğİş", Alphabet.GSM7, single_shift=NationalLanguage.TURKISH)
    assert encoded.data == bytes.fromhex("1b671b491b73")
    assert encoded.uses_national_language
    assert decode_text(0, encoded.data, single_shift=1) == "ğİş"
    assert decode_text(0, bytes.fromhex("0c401d"), locking_shift=1) == "ğİş"


@pytest.mark.parametrize(
    ("data_coding", "alphabet"),
    [
        (0x00, Alphabet.GSM7), (0x01, Alphabet.IA5), (0x02, None), (0x03, Alphabet.LATIN_1), (0x04, None),
        (0x05, None), (0x08, Alphabet.UCS2), (0x09, None),
        # 23.038 §4 general data coding: bits 3..2 are the alphabet, bit 5 means compressed.
        (0x10, Alphabet.GSM7), (0x11, Alphabet.GSM7), (0x14, None), (0x18, Alphabet.UCS2), (0x1C, None),
        (0x30, None), (0x48, Alphabet.UCS2), (0x80, None),
        # Message waiting indication groups, and data coding/message class.
        (0xC0, Alphabet.GSM7), (0xD8, Alphabet.GSM7), (0xE0, Alphabet.UCS2),
        (0xF0, Alphabet.GSM7), (0xF1, Alphabet.GSM7), (0xF4, None), (0xF5, None),
    ],
)
def test_alphabet_for_data_coding(data_coding: int, alphabet: Alphabet | None) -> None:
    assert alphabet_for(data_coding) is alphabet


def test_decode_each_coding() -> None:
    assert decode_text(0, ORACLE.encode("Hi {€}")[0]) == "Hi {€}"
    assert decode_text(0xF0, b"\x00") == "@"
    assert decode_text(1, b"plain\xe9") == "plain?"
    assert decode_text(3, b"caf\xe9") == "café"
    assert decode_text(8, bytes.fromhex("0416d83dde00")) == "Ж😀"
    assert decode_text(0x18, bytes.fromhex("0416")) == "Ж"


def test_decode_binary_coding_is_latin1_best_effort() -> None:
    assert alphabet_for(4) is None
    assert decode_text(4, b"\x00\xff") == "\x00\xff"


def test_ucs2_decoding_is_lenient() -> None:
    assert decode_text(8, bytes.fromhex("0041d83d0042")) == "A?B"  # unpaired high surrogate
    assert decode_text(8, bytes.fromhex("de000041")) == "?A"  # unpaired low surrogate
    assert decode_text(8, bytes.fromhex("004100"), replacement="\ufffd") == "A\ufffd"  # odd length


def test_gsm_decoding_is_lenient() -> None:
    assert decode_text(0, b"ab\x1b") == "ab"
    assert decode_text(0, b"a\x90", replacement="#") == "a#"


def test_unknown_national_language_falls_back_to_default_tables() -> None:
    # NLI 6 (Hindi) has no table here.
    assert decode_text(0, b"\x04", locking_shift=6, single_shift=6) == "è"


def test_decode_packed_gsm_with_fill_bits() -> None:
    septets = ORACLE.encode("hello")[0]
    assert decode_text(0, pack_septets(septets, 1), packed=True, fill_bits=1) == "hello"


@given(no_surrogates)
def test_ucs2_round_trip(text: str) -> None:
    encoded = encode_text(text, Alphabet.UCS2)
    assert decode_text(encoded.data_coding, encoded.data) == text
    assert encoded.units == len(encoded.data) // 2


@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=200))
def test_latin1_round_trip(text: str) -> None:
    encoded = encode_text(text, Alphabet.LATIN_1)
    assert decode_text(3, encoded.data) == text


def table_characters(locking: NationalLanguage, single: NationalLanguage) -> list[str]:
    """Every character a table pair carries, read back through the decoder."""
    codec = gsm_codec(locking, single)
    chars = {codec.decode(bytes([code])) for code in range(0x80) if code != 0x1B}
    chars |= {codec.decode(bytes([0x1B, code])) for code in range(0x80) if code != 0x1B}
    return sorted(chars)


@given(
    st.sampled_from([NationalLanguage.DEFAULT, NationalLanguage.TURKISH, NationalLanguage.PORTUGUESE]),
    st.sampled_from(list(NationalLanguage)),
    st.data(),
)
def test_gsm_round_trip_for_every_table_pair(
    locking: NationalLanguage, single: NationalLanguage, data: st.DataObject
) -> None:
    text = data.draw(st.text(alphabet=st.sampled_from(table_characters(locking, single)), max_size=200))
    encoded = encode_text(text, Alphabet.GSM7, locking_shift=locking, single_shift=single)
    assert decode_text(0, encoded.data, locking_shift=locking, single_shift=single) == text


@given(st.text(max_size=60))
def test_gsm_encodes_or_names_the_first_refused_character(text: str) -> None:
    try:
        encoded = encode_text(text, Alphabet.GSM7)
    except TextEncodeError as exc:
        assert text[exc.position] == exc.character
        prefix = text[: exc.position]
        assert encode_text(prefix, Alphabet.GSM7).data == ORACLE.encode(prefix)[0]
        return
    assert encoded.data == ORACLE.encode(text)[0]
    assert decode_text(0, encoded.data) == text
