"""Tests for dlr._format: the Appendix B text and the receipt deliver_sm the simulator sends."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr import (
    IdPolicy,
    NetworkError,
    ReceiptKind,
    ReceiptStatus,
    build_receipt_pdu,
    correlation_keys,
    format_receipt_text,
    mt_text_excerpt,
    parse_receipt,
    parse_receipt_text,
    receipt_keys,
)
from smpp import DataSm, DeliverSm, SubmitSm, Tlvs, decode_pdu, encode_pdu

S = ReceiptStatus

MT = SubmitSm(
    sequence_number=7,
    service_type="CMT",
    source_addr_ton=5,
    source_addr_npi=0,
    source_addr="ACME",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="447700900123",
    registered_delivery=1,
    short_message=b"Your code is 123456, valid for 10 minutes",
)
SUBMITTED = datetime(2024, 3, 1, 9, 15, 42)
DONE = datetime(2024, 3, 1, 9, 16, 5)


def test_cloudhopper_to_short_message() -> None:
    # cloudhopper DeliveryReceiptTest.toShortMessage (twitter-archive/cloudhopper-smpp): the same fields give
    # the same text, character for character.
    text = format_receipt_text(
        message_id="0123456789", status=S.DELIVERED, sub=1, dlvrd=1,
        submit_date=datetime(2010, 5, 23, 20, 39), done_date=datetime(2010, 5, 24, 23, 39), err=12,
        text="This is a sample message that I want to have added to the delivery receipt")
    assert text == ("id:0123456789 sub:001 dlvrd:001 submit date:1005232039 done date:1005242339 stat:DELIVRD "
                    "err:012 text:This is a sample mes")


def test_cloudhopper_real_world_receipt_is_reproduced() -> None:
    # cloudhopper parseRealWorldReceipt0 asserts that formatting the parsed receipt gives the captured text.
    captured = ("id:0059113978 sub:001 dlvrd:001 submit date:1002101730 done date:1002101731 stat:DELIVRD "
                "err:000 text:@$#!%&/:")
    r = parse_receipt_text(captured)
    assert r is not None and r.text_id is not None and r.submit_date and r.done_date
    assert r.sub is not None and r.error_code is not None and r.text is not None
    again = format_receipt_text(message_id=r.text_id, status=r.status, submit_date=r.submit_date,
                                done_date=r.done_date, sub=r.sub, dlvrd=r.dlvrd, err=r.error_code, text=r.text)
    assert again == captured


@pytest.mark.parametrize(
    ("status", "dlvrd", "stat"),
    [(S.DELIVERED, "001", "DELIVRD"), (S.UNDELIVERABLE, "000", "UNDELIV"), (S.EXPIRED, "000", "EXPIRED"),
     (S.REJECTED, "000", "REJECTD"), (S.ENROUTE, "000", "ENROUTE"), (S.ACCEPTED, "000", "ACCEPTD")],
)
def test_widths_and_default_dlvrd(status: ReceiptStatus, dlvrd: str, stat: str) -> None:
    text = format_receipt_text(message_id="7", status=status, submit_date=SUBMITTED, done_date=DONE, err=5)
    assert text == (f"id:7 sub:001 dlvrd:{dlvrd} submit date:2403010915 done date:2403010916 stat:{stat} "
                    "err:005 text:")


def test_seconds_vendor_stat_and_wide_values() -> None:
    text = format_receipt_text(message_id="00ab", status=S.UNDELIVERABLE, submit_date=SUBMITTED, done_date=DONE,
                               sub=3, dlvrd=2, err=1234, stat="FAILED", seconds=True, text="short")
    assert text == ("id:00ab sub:003 dlvrd:002 submit date:240301091542 done date:240301091605 stat:FAILED "
                    "err:1234 text:short")


@pytest.mark.parametrize(("sub", "dlvrd", "err"), [(-1, 0, 0), (1, -1, 0), (1, 1, -1)])
def test_negative_counts_are_refused(sub: int, dlvrd: int, err: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        format_receipt_text(message_id="1", status=S.DELIVERED, submit_date=SUBMITTED, done_date=DONE,
                            sub=sub, dlvrd=dlvrd, err=err)


def test_build_receipt_pdu_swaps_addresses_and_carries_tlvs() -> None:
    pdu = build_receipt_pdu(MT, smsc_message_id="A1B2C3", status=S.DELIVERED, submit_date=SUBMITTED,
                            done_date=DONE, sequence_number=9)
    assert isinstance(pdu, DeliverSm)
    assert pdu.sequence_number == 9
    assert pdu.esm_class == 0x04
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr) == (1, 1, "447700900123")
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (5, 0, "ACME")
    assert pdu.service_type == "CMT"
    assert pdu.short_message == (b"id:A1B2C3 sub:001 dlvrd:001 submit date:2403010915 done date:2403010916 "
                                 b"stat:DELIVRD err:000 text:Your code is 123456,")
    assert pdu.tlvs.get_str("receipted_message_id") == "A1B2C3"
    assert pdu.tlvs.get_int("message_state") == 2
    assert "network_error_code" not in pdu.tlvs


def test_built_receipt_survives_the_codec_and_parses_back() -> None:
    pdu = build_receipt_pdu(MT, smsc_message_id="12345", text_id="3039", status=S.UNDELIVERABLE,
                            submit_date=SUBMITTED, done_date=DONE, err=27, network_error=NetworkError(3, 27))
    wire = encode_pdu(pdu)
    back = decode_pdu(wire)
    assert back == pdu
    r = parse_receipt(back)
    assert r is not None
    assert r.status is S.UNDELIVERABLE and r.message_state == 5
    assert r.smsc_message_id == "12345" and r.text_id == "3039"
    assert r.network_error == NetworkError(3, 27) and r.err == "027"
    assert r.source_addr == MT.destination_addr and r.destination_addr == MT.source_addr
    # The simulator's "decimal resp, hex receipt" quirk meets under the matching policy.
    policy = IdPolicy.parse("decimal/hex")
    assert set(correlation_keys("12345", policy)) & set(receipt_keys("3039", policy))


def test_build_without_tlvs_and_as_intermediate() -> None:
    pdu = build_receipt_pdu(MT, smsc_message_id="9", status=S.ENROUTE, submit_date=SUBMITTED, done_date=DONE,
                            with_tlvs=False, kind=ReceiptKind.INTERMEDIATE_NOTIFICATION, text="")
    assert pdu.esm_class == 0x20
    assert not pdu.tlvs
    r = parse_receipt(pdu)
    assert r is not None and r.is_intermediate and r.receipted_message_id is None and r.text == ""


def test_mt_text_excerpt() -> None:
    assert mt_text_excerpt(MT) == "Your code is 123456,"
    ucs2 = SubmitSm(data_coding=0x08, short_message="Привет, мир! Hello there".encode("utf-16-be"))
    assert mt_text_excerpt(ucs2) == "??????, ???! Hello t"
    udh = SubmitSm(esm_class=0x40, short_message=bytes.fromhex("0500030a0201") + b"part one of two")
    assert mt_text_excerpt(udh) == "part one of two"
    payload = DataSm(tlvs=Tlvs(message_payload=b"from the payload\nline two"))
    assert mt_text_excerpt(payload) == "from the payload?lin"
    assert mt_text_excerpt(SubmitSm()) == ""


def test_build_from_a_data_sm() -> None:
    mt = DataSm(source_addr="ACME", destination_addr="447700900123", tlvs=Tlvs(message_payload=b"hello"))
    pdu = build_receipt_pdu(mt, smsc_message_id="x", status=S.EXPIRED, submit_date=SUBMITTED, done_date=DONE)
    assert (pdu.source_addr, pdu.destination_addr) == ("447700900123", "ACME")
    assert pdu.short_message.endswith(b"stat:EXPIRED err:000 text:hello")


_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)
_dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))
_texts = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(
    message_id=_ids,
    status=st.sampled_from(list(ReceiptStatus)),
    submit=_dates,
    done=_dates,
    sub=st.integers(0, 999),
    dlvrd=st.integers(0, 999),
    err=st.integers(0, 999),
    text=_texts,
    seconds=st.booleans(),
)
def test_format_then_parse_gives_the_fields_back(message_id: str, status: ReceiptStatus, submit: datetime,
                                                 done: datetime, sub: int, dlvrd: int, err: int, text: str,
                                                 seconds: bool) -> None:
    written = format_receipt_text(message_id=message_id, status=status, submit_date=submit, done_date=done,
                                  sub=sub, dlvrd=dlvrd, err=err, text=text, seconds=seconds)
    r = parse_receipt_text(written)
    assert r is not None
    assert r.text_id == message_id
    assert r.status is status and r.stat == status.stat
    assert (r.sub, r.dlvrd, r.error_code) == (sub, dlvrd, err)
    assert r.submit_date == submit.replace(second=submit.second if seconds else 0, microsecond=0)
    assert r.done_date == done.replace(second=done.second if seconds else 0, microsecond=0)
    assert r.text == text[:20].strip()
    assert r.extra == ()
