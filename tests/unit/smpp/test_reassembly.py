"""UDH parsing (3GPP TS 23.040 §9.2.3.24) and reassembly of incoming parts, with time passed in."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp._gsm import NationalLanguage
from smpp._reassembly import (
    ConcatInfo,
    InformationElement,
    ReassembledMessage,
    Reassembler,
    UdhError,
    parse_udh,
)
from smpp._segment import Concatenation, Part, encode_message, split_message
from smpp._text import Alphabet, encode_text


def test_parse_udh8() -> None:
    header, rest = parse_udh(bytes.fromhex("0500032a0201") + b"hello")
    assert header.concat == ConcatInfo(reference=0x2A, total=2, seqnum=1, reference_bits=8)
    assert header.elements == (InformationElement(0x00, bytes.fromhex("2a0201")),)
    assert header.length == 6
    assert rest == b"hello"


def test_parse_udh16_with_national_shifts() -> None:
    header, rest = parse_udh(bytes.fromhex("0c0804beef0302240101250103") + b"x")
    assert header.concat == ConcatInfo(0xBEEF, 3, 2, 16)
    assert (header.single_shift, header.locking_shift) == (1, 3)
    assert rest == b"x"


def test_parse_port_addressing() -> None:
    # 23.040 §9.2.3.24.4: 16-bit ports, destination first (2948 is the WAP push port).
    header, rest = parse_udh(bytes.fromhex("0605040b8423f0") + b"\x01")
    assert header.ports == (2948, 9200)
    assert rest == b"\x01"
    header, _ = parse_udh(bytes.fromhex("04040210fa"))
    assert header.ports == (0x10, 0xFA)


def test_unknown_ies_are_kept_and_skipped() -> None:
    header, rest = parse_udh(bytes.fromhex("09700201020003010201") + b"z")
    assert header.elements == (InformationElement(0x70, b"\x01\x02"), InformationElement(0x00, b"\x01\x02\x01"))
    assert header.concat == ConcatInfo(1, 2, 1, 8)
    assert rest == b"z"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (bytes.fromhex("05000301"), "UDH length 5 runs past the 3 octets"),
        (bytes.fromhex("0300050102"), "IE 0x00 at UDH offset 1: length 5 runs past the UDH"),
        (bytes.fromhex("0100"), "cut off"),
        (bytes.fromhex("0400020102"), "IE 0x00 has length 2"),
        (bytes.fromhex("0424020101"), "IE 0x24 has length 2"),
    ],
)
def test_malformed_udh_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(UdhError, match=message):
        parse_udh(data)


@pytest.mark.parametrize("ie", ["00030a0200", "00030a0203", "00030a0000"])
def test_concat_ie_with_bad_sequence_is_ignored(ie: str) -> None:
    # 23.040 §9.2.3.24.1: sequence number 0 or above the total voids the IE.
    header, _ = parse_udh(bytes.fromhex("05" + ie))
    assert header.concat is None
    assert len(header.elements) == 1


def feed(
    reassembler: Reassembler,
    parts: list[Part],
    now: float = 0.0,
    source: str = "447700900001",
    destination: str = "12345",
) -> list[ReassembledMessage]:
    """Add each part as a deliver_sm would bring it; return what completes."""
    done = []
    for part in parts:
        result = reassembler.add(
            source=source,
            destination=destination,
            data_coding=part.data_coding,
            short_message=part.short_message,
            udhi=part.udhi,
            sar=part.sar,
            message_payload=part.payload,
            now=now,
        )
        if result is not None:
            done.append(result)
    return done


def three_parts(reference: int = 7) -> list[Part]:
    return split_message(encode_text("a" * 153 + "b" * 153 + "c" * 10, Alphabet.GSM7), Concatenation.UDH8,
                         reference)


def test_out_of_order_parts_come_back_in_order() -> None:
    reassembler = Reassembler()
    first, second, third = three_parts()
    assert feed(reassembler, [third, first]) == []
    (message,) = feed(reassembler, [second])
    assert message.data == b"a" * 153 + b"b" * 153 + b"c" * 10
    assert (message.part_count, message.total_parts, message.reference, message.data_coding) == (3, 3, 7, 0)
    assert message.complete and message.text() == "a" * 153 + "b" * 153 + "c" * 10
    assert reassembler.statistics().pending_sets == 0


def test_duplicates_are_ignored() -> None:
    reassembler = Reassembler()
    first, second, third = three_parts()
    assert feed(reassembler, [first, first, second, second]) == []
    assert reassembler.statistics().duplicates == 2
    (message,) = feed(reassembler, [third])
    assert message.part_count == 3
    assert reassembler.statistics().completed == 1


def test_a_part_redelivered_after_completion_is_a_duplicate() -> None:
    reassembler = Reassembler(timeout_s=60.0)
    parts = three_parts()
    assert len(feed(reassembler, parts, now=10.0)) == 1
    assert feed(reassembler, parts[1:2], now=20.0) == []
    stats = reassembler.statistics()
    assert (stats.pending_sets, stats.duplicates) == (0, 1)


def test_a_new_message_reusing_a_completed_key_is_not_a_duplicate() -> None:
    reassembler = Reassembler(timeout_s=60.0)
    feed(reassembler, three_parts(), now=10.0)
    reused = split_message(encode_text("d" * 153 * 2 + "e" * 10, Alphabet.GSM7), Concatenation.UDH8, 7)
    (message,) = feed(reassembler, reused, now=20.0)
    assert message.data.startswith(b"d")


def test_completed_sets_are_forgotten_after_the_timeout() -> None:
    reassembler = Reassembler(timeout_s=60.0)
    parts = three_parts()
    feed(reassembler, parts, now=10.0)
    assert reassembler.collect_expired(70.0) == []
    assert feed(reassembler, parts[:1], now=71.0) == []
    assert reassembler.statistics().pending_sets == 1


def test_unconcatenated_message_comes_straight_back() -> None:
    (message,) = feed(Reassembler(), [Part(b"hi", False, 0)])
    assert (message.data, message.part_count, message.total_parts, message.reference) == (b"hi", 1, 1, None)


def test_sets_are_keyed_by_source_destination_reference_and_total() -> None:
    reassembler = Reassembler()
    first, second, _ = three_parts()
    feed(reassembler, [first], source="A")
    feed(reassembler, [second], source="B")
    feed(reassembler, [second], destination="other")
    other_total = split_message(encode_text("z" * 200, Alphabet.GSM7), Concatenation.UDH8, 7)
    feed(reassembler, other_total[:1], source="A")
    assert reassembler.statistics().pending_sets == 4


def test_expired_sets_are_collected_with_what_they_have() -> None:
    reassembler = Reassembler(timeout_s=60.0)
    first, _, third = three_parts()
    feed(reassembler, [first], now=100.0)
    feed(reassembler, [third], now=150.0)
    assert reassembler.next_deadline() == 160.0
    assert reassembler.collect_expired(159.9) == []
    (expired,) = reassembler.collect_expired(160.0)
    assert not expired.complete
    assert expired.missing == (2,)
    assert (expired.part_count, expired.total_parts) == (2, 3)
    assert expired.data == b"a" * 153 + b"c" * 10
    assert reassembler.next_deadline() is None
    assert reassembler.statistics().expired == 1


def test_max_pending_sets_evicts_the_oldest() -> None:
    reassembler = Reassembler(max_pending_sets=2)
    for reference in (1, 2, 3):
        feed(reassembler, three_parts(reference)[:1], now=float(reference))
    stats = reassembler.statistics()
    assert (stats.pending_sets, stats.evicted) == (2, 1)
    # Reference 1 was evicted: its second part starts a new set instead of completing anything.
    assert feed(reassembler, three_parts(1)[1:2]) == []
    assert feed(reassembler, three_parts(3)[1:]) != []


def test_max_pending_bytes_evicts_the_oldest() -> None:
    reassembler = Reassembler(max_pending_bytes=400)
    feed(reassembler, three_parts(1)[:2])  # 306 octets
    feed(reassembler, three_parts(2)[:1])  # 153 more: over the bound
    stats = reassembler.statistics()
    assert (stats.pending_sets, stats.pending_bytes, stats.evicted) == (1, 153, 1)


def test_a_set_larger_than_the_byte_bound_is_dropped() -> None:
    reassembler = Reassembler(max_pending_bytes=200)
    assert feed(reassembler, three_parts()[:2]) == []
    stats = reassembler.statistics()
    assert (stats.pending_sets, stats.pending_bytes, stats.evicted) == (0, 0, 1)


def test_sar_parts() -> None:
    parts = split_message(encode_text("Ж" * 100, Alphabet.UCS2), Concatenation.SAR, 300)
    (message,) = feed(Reassembler(), parts[::-1])
    assert message.text() == "Ж" * 100
    assert message.reference == 300 and message.data_coding == 8


def test_national_language_info_comes_through() -> None:
    text = "Yağmur yağıyor, İstanbul'da şimdi. " * 6
    encoded = encode_message(text, languages=[NationalLanguage.TURKISH])
    parts = split_message(encoded, Concatenation.UDH8, 5)
    assert len(parts) == 2
    (message,) = feed(Reassembler(), parts)
    assert message.locking_shift == NationalLanguage.TURKISH
    assert message.text() == text


def test_packed_gsm_parts_are_unpacked() -> None:
    text = "p" * 200
    parts = split_message(encode_text(text, Alphabet.GSM7), Concatenation.UDH8, 1, packed=True)
    (message,) = feed(Reassembler(gsm_packed=True), parts)
    assert message.data == b"p" * 200


def test_malformed_udh_raises() -> None:
    with pytest.raises(UdhError):
        Reassembler().add(source="a", destination="b", data_coding=0, short_message=b"\x09\x00", udhi=True,
                          now=0.0)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Reassembler(max_pending_sets=0)


TEXT = st.one_of(
    st.text(max_size=600),
    st.text(alphabet=st.sampled_from("a€{}\r\nşğİ😀Жé"), max_size=600),
)


@settings(max_examples=150)
@given(
    TEXT,
    st.sampled_from(list(Concatenation)),
    st.lists(st.sampled_from(list(NationalLanguage)), max_size=3),
    st.booleans(),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_split_then_reassemble_gives_the_original(
    text: str, method: Concatenation, languages: list[NationalLanguage], latin1: bool, packed: bool,
    rng: random.Random,
) -> None:
    encoded = encode_message(text, method=method, languages=languages, allow_latin1=latin1, packed=packed)
    parts = split_message(encoded, method, 4242, packed=packed)
    shuffled = list(parts)
    rng.shuffle(shuffled)
    shuffled.insert(0, shuffled[-1])  # and a duplicate
    reassembler = Reassembler(gsm_packed=packed)
    done = feed(reassembler, shuffled)
    assert len(done) == 1 + (len(parts) == 1)
    message = done[-1]
    assert message.total_parts == len(parts) and message.complete
    expected = text
    if packed and encoded.alphabet is Alphabet.GSM7 and text.endswith("\r") and not message.text().endswith("\r"):
        expected = text[:-1]  # a final CR on an octet boundary reads as padding (documented)
    assert message.text() == expected
    if not packed or encoded.alphabet is not Alphabet.GSM7:
        assert message.data == encoded.data
    assert reassembler.statistics().pending_sets == 0
