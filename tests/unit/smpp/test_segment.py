"""Splitting into parts (3GPP TS 23.040 §9.2.3.24, SMPP 3.4 §5.3.2), the encoding choice, references."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp._gsm import ESC, NationalLanguage, fill_bits_after_udh, unpack_septets
from smpp._segment import (
    MAX_PARTS,
    Concatenation,
    Part,
    ReferenceCounter,
    count_parts,
    encode_message,
    split_message,
)
from smpp._text import Alphabet, EncodedText, TextEncodeError, encode_text

UDH_METHODS = (Concatenation.UDH8, Concatenation.UDH16)


def user_data(part: Part) -> bytes:
    """The data after the UDH, wherever the part carries it."""
    data = part.payload if part.payload is not None else part.short_message
    return data[data[0] + 1:] if part.udhi else data


def udh_octets(part: Part) -> int:
    data = part.payload if part.payload is not None else part.short_message
    return data[0] + 1 if part.udhi else 0


def air_octets(part: Part, alphabet: Alphabet, packed: bool) -> int:
    """TP-UD octets the part takes once the SMSC packs it: UDH, fill bits and septets."""
    udh = udh_octets(part)
    body = len(user_data(part))
    if alphabet is Alphabet.GSM7 and not packed:
        return udh + (fill_bits_after_udh(udh) + 7 * body + 7) // 8
    return udh + body


@pytest.mark.parametrize(
    ("alphabet", "char", "single", "multi8", "multi16"),
    [
        (Alphabet.GSM7, "x", 160, 153, 152),
        (Alphabet.LATIN_1, "x", 140, 134, 133),
        (Alphabet.UCS2, "Ж", 70, 67, 66),
    ],
)
def test_part_capacities(alphabet: Alphabet, char: str, single: int, multi8: int, multi16: int) -> None:
    assert count_parts(encode_text(char * single, alphabet), Concatenation.UDH8) == 1
    longer = encode_text(char * (single + 1), alphabet)
    parts8 = split_message(longer, Concatenation.UDH8, 7)
    assert [len(user_data(p)) // longer.unit_octets for p in parts8] == [multi8, single + 1 - multi8]
    parts16 = split_message(longer, Concatenation.UDH16, 7)
    assert [len(user_data(p)) // longer.unit_octets for p in parts16] == [multi16, single + 1 - multi16]
    sar = split_message(encode_text(char * (2 * single + 1), alphabet), Concatenation.SAR, 7)
    assert [len(p.short_message) // longer.unit_octets for p in sar] == [single, single, 1]


def test_udh8_layout() -> None:
    # 23.040 §9.2.3.24.1: UDHL 05, IEI 00, IEDL 03, reference, total, sequence number.
    parts = split_message(encode_text("a" * 200, Alphabet.GSM7), Concatenation.UDH8, 0x1234)
    assert [p.short_message[:6].hex() for p in parts] == ["050003340201", "050003340202"]
    assert all(p.udhi and p.sar is None and p.payload is None and p.data_coding == 0 for p in parts)


def test_udh16_layout() -> None:
    # 23.040 §9.2.3.24.8: UDHL 06, IEI 08, IEDL 04, reference (2 octets), total, sequence number.
    parts = split_message(encode_text("a" * 200, Alphabet.GSM7), Concatenation.UDH16, 0x1234)
    assert [p.short_message[:7].hex() for p in parts] == ["06080412340201", "06080412340202"]


def test_sar_parts_carry_no_udh() -> None:
    parts = split_message(encode_text("Ж" * 100, Alphabet.UCS2), Concatenation.SAR, 513)
    assert [p.sar for p in parts] == [(513, 2, 1), (513, 2, 2)]
    assert not any(p.udhi for p in parts)
    assert parts[0].data_coding == 8


def test_payload_is_one_part() -> None:
    encoded = encode_text("b" * 500, Alphabet.GSM7)
    (part,) = split_message(encoded, Concatenation.PAYLOAD, 0)
    assert part.short_message == b"" and part.payload == encoded.data and not part.udhi


@pytest.mark.parametrize("method", list(Concatenation))
def test_a_short_message_is_one_plain_part_for_every_method(method: Concatenation) -> None:
    assert split_message(encode_text("hello", Alphabet.GSM7), method, 1) == [Part(b"hello", False, 0)]


def test_escape_pair_at_the_boundary_moves_whole_to_the_next_part() -> None:
    encoded = encode_text("a" * 152 + "€" + "b" * 10, Alphabet.GSM7)
    first, second = split_message(encoded, Concatenation.UDH8, 1)
    assert user_data(first) == b"a" * 152
    assert user_data(second) == b"\x1b\x65" + b"b" * 10


def test_surrogate_pair_at_the_boundary_moves_whole_to_the_next_part() -> None:
    encoded = encode_text("Ж" * 66 + "😀" + "Ж" * 10, Alphabet.UCS2)
    first, second = split_message(encoded, Concatenation.UDH8, 1)
    assert user_data(first) == "Ж".encode("utf-16-be") * 66
    assert user_data(second)[:4] == bytes.fromhex("d83dde00")


def test_national_language_udh_in_a_single_part() -> None:
    encoded = encode_text("ş" * 155, Alphabet.GSM7, locking_shift=NationalLanguage.TURKISH)
    (part,) = split_message(encoded, Concatenation.UDH8, 0)
    # 23.040 §9.2.3.24.16: IEI 25, IEDL 01, NLI 01 (Turkish). 155 septets fit next to it.
    assert part.udhi and part.short_message[:4].hex() == "03250101"
    assert count_parts(encode_text("ş" * 156, Alphabet.GSM7, locking_shift=NationalLanguage.TURKISH),
                       Concatenation.UDH8) == 2


def test_national_language_udh_in_every_part() -> None:
    encoded = encode_text(
        "ş" * 300, Alphabet.GSM7, locking_shift=NationalLanguage.TURKISH, single_shift=NationalLanguage.TURKISH
    )
    parts = split_message(encoded, Concatenation.UDH8, 9)
    # Concatenation 5 octets + single shift 3 + locking shift 3 + UDHL: 146 septets per part.
    assert [p.short_message[:12].hex() for p in parts] == [
        "0b0003090301240101250101", "0b0003090302240101250101", "0b0003090303240101250101",
    ]
    assert len(user_data(parts[0])) == 146
    sar = split_message(encoded, Concatenation.SAR, 9)
    assert all(p.udhi and p.short_message[:7].hex() == "06240101250101" for p in sar)
    assert len(user_data(sar[0])) == 152


def test_packed_gsm_part_fills_140_octets_after_the_udh() -> None:
    encoded = encode_text("x" * 161, Alphabet.GSM7)
    first, second = split_message(encoded, Concatenation.UDH8, 1, packed=True)
    assert len(first.short_message) == 140
    assert unpack_septets(user_data(first), fill_bits=1) == b"x" * 153
    assert unpack_septets(user_data(second), fill_bits=1) == b"x" * 8


def test_packed_gsm_keeps_a_cr_off_an_octet_boundary() -> None:
    # Septet 153 is CR: ending part 1 with it would leave it indistinguishable from padding.
    encoded = encode_text("x" * 152 + "\r" + "y" * 20, Alphabet.GSM7)
    first, second = split_message(encoded, Concatenation.UDH8, 1, packed=True)
    assert unpack_septets(user_data(first), fill_bits=1) == b"x" * 152
    assert unpack_septets(user_data(second), fill_bits=1) == b"\ry" + b"y" * 19
    unpacked = split_message(encoded, Concatenation.UDH8, 1)
    assert user_data(unpacked[0]) == b"x" * 152 + b"\r"


def test_reference_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        split_message(encode_text("a", Alphabet.GSM7), Concatenation.UDH8, 65536)


def test_too_many_parts() -> None:
    encoded = encode_text("a" * (153 * MAX_PARTS + 1), Alphabet.GSM7)
    with pytest.raises(ValueError, match="more than 255 parts"):
        split_message(encoded, Concatenation.UDH8, 1)
    assert count_parts(encode_text("a" * 153 * MAX_PARTS, Alphabet.GSM7), Concatenation.UDH8) == MAX_PARTS


# The encoding choice.


def test_gsm_comes_first() -> None:
    assert encode_message("Hello, world!").alphabet is Alphabet.GSM7
    assert encode_message("Hello, world!", allow_latin1=True).alphabet is Alphabet.GSM7


def test_latin1_only_when_allowed() -> None:
    assert encode_message("naïve").alphabet is Alphabet.UCS2
    assert encode_message("naïve", allow_latin1=True).alphabet is Alphabet.LATIN_1
    assert encode_message("naïve ж", allow_latin1=True).alphabet is Alphabet.UCS2


def test_fewest_parts_wins() -> None:
    braces = "{" * 100  # 200 septets: 2 parts in GSM, 1 in Latin-1, 2 in UCS-2
    assert encode_message(braces, allow_latin1=True).alphabet is Alphabet.LATIN_1
    assert encode_message(braces).alphabet is Alphabet.GSM7


def test_turkish_goes_out_as_gsm_when_enabled() -> None:
    text = "Güzel bir gün, İstanbul'da şimdi yağmur yağıyor."
    assert encode_message(text).alphabet is Alphabet.UCS2
    encoded = encode_message(text, languages=[NationalLanguage.TURKISH])
    assert encoded.alphabet is Alphabet.GSM7
    assert encoded.locking_shift is NationalLanguage.TURKISH
    assert encoded.single_shift is NationalLanguage.DEFAULT


def test_spanish_uses_its_single_shift() -> None:
    text = "Buenos días, ¿qué tal? Canción"
    encoded = encode_message(text, languages=[NationalLanguage.SPANISH])
    assert (encoded.alphabet, encoded.locking_shift, encoded.single_shift) == (
        Alphabet.GSM7, NationalLanguage.DEFAULT, NationalLanguage.SPANISH,
    )


def test_default_tables_win_a_tie_with_national_ones() -> None:
    # Fits in one part either way; handsets without national tables read the default one right.
    encoded = encode_message("€ only", languages=[NationalLanguage.TURKISH])
    assert not encoded.uses_national_language


def test_national_tables_win_when_they_save_a_part() -> None:
    text = "€" * 100  # 200 septets by default; 100 with the Turkish locking table
    encoded = encode_message(text, languages=[NationalLanguage.TURKISH])
    assert encoded.locking_shift is NationalLanguage.TURKISH
    assert count_parts(encoded, Concatenation.UDH8) == 1


def test_alphabet_override() -> None:
    assert encode_message("hello", alphabet=Alphabet.UCS2).alphabet is Alphabet.UCS2
    with pytest.raises(TextEncodeError):
        encode_message("привет", alphabet=Alphabet.GSM7)
    forced = encode_message("ğ", alphabet=Alphabet.GSM7, languages=[NationalLanguage.TURKISH])
    assert forced.alphabet is Alphabet.GSM7 and forced.uses_national_language


# References.


def test_references_to_one_destination_never_repeat_back_to_back() -> None:
    counter = ReferenceCounter()
    first = counter.next("447700900001")
    second = counter.next("447700900001")
    assert second == (first + 1) & 0xFFFF
    assert first & 0xFF != second & 0xFF


def test_references_run_per_destination() -> None:
    counter = ReferenceCounter()
    refs_a = [counter.next("a") for _ in range(3)]
    counter.next("b")
    refs_a.append(counter.next("a"))
    assert refs_a == list(range(refs_a[0], refs_a[0] + 4))


def test_reference_memory_is_bounded() -> None:
    counter = ReferenceCounter(max_destinations=2)
    first = counter.next("a")
    counter.next("b")
    counter.next("c")  # forgets "a", the least recently used
    assert counter.statistics().destinations == 2
    assert counter.next("a") != first  # restarts from the shared counter, not from a fixed value


def test_reference_wraps_at_16_bits() -> None:
    counter = ReferenceCounter()
    refs = [counter.next("x") for _ in range(65537)]
    assert max(refs) == 65535 and refs[-1] == refs[0]


# Properties.

METHODS = st.sampled_from(list(Concatenation))
LANGUAGES = st.lists(st.sampled_from(list(NationalLanguage)), max_size=3)
TEXT = st.one_of(
    st.text(max_size=700),
    st.text(alphabet=st.sampled_from("a€{}\r\nşğİ😀Жé`"), max_size=700),
)


@settings(max_examples=150)
@given(TEXT, METHODS, LANGUAGES, st.booleans(), st.booleans(), st.integers(0, 65535))
def test_split_parts_fit_split_no_pair_and_rejoin(
    text: str, method: Concatenation, languages: list[NationalLanguage], latin1: bool, packed: bool,
    reference: int,
) -> None:
    try:
        encoded = encode_message(text, method=method, languages=languages, allow_latin1=latin1, packed=packed)
    except TextEncodeError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        return
    parts = split_message(encoded, method, reference, packed=packed)
    assert len(parts) == count_parts(encoded, method, packed=packed)
    packed_gsm = packed and encoded.alphabet is Alphabet.GSM7
    bodies = []
    for part in parts:
        assert part.data_coding == encoded.data_coding
        body = user_data(part)
        if packed_gsm:
            body = unpack_septets(body, fill_bits_after_udh(udh_octets(part)))
        bodies.append(body)
        if part.payload is None:
            assert air_octets(part, encoded.alphabet, packed_gsm) <= 140
            if encoded.alphabet is not Alphabet.GSM7 or packed_gsm:
                assert len(part.short_message) <= 140
    for body in bodies[:-1]:
        if encoded.alphabet is Alphabet.GSM7:
            assert body[-1] != ESC
        if encoded.alphabet is Alphabet.UCS2:
            assert not 0xD8 <= body[-2] <= 0xDB
    joined = b"".join(bodies)
    if packed_gsm and encoded.data.endswith(b"\r") and not joined.endswith(b"\r"):
        joined += b"\r"  # a final CR on an octet boundary reads as padding (documented)
    assert joined == encoded.data
    if len(parts) > 1 and method in UDH_METHODS:
        assert all(p.udhi for p in parts)


@given(TEXT)
def test_auto_choice_never_needs_more_parts_than_ucs2(text: str) -> None:
    try:
        encoded = encode_message(text, allow_latin1=True)
    except TextEncodeError:
        return
    ucs2 = EncodedText(Alphabet.UCS2, text.encode("utf-16-be"))
    assert count_parts(encoded, Concatenation.UDH8) <= count_parts(ucs2, Concatenation.UDH8)
