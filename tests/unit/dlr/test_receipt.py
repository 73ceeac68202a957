"""Tests for dlr._receipt: telling receipts from MO messages, and reading receipt texts and TLVs.

Receipt texts come from published sources, cited at each test: the DeliveryReceiptTest of cloudhopper-smpp
(twitter-archive/cloudhopper-smpp, src/test/java/com/cloudhopper/smpp/util/DeliveryReceiptTest.java), the
DeliveryParsingTest of Jasmin (jookies/jasmin, jasmin/protocols/smpp/test/test_operations.py), jsmpp's
receipt examples, Kannel's handle_dlr (gw/smsc/smsc_smpp.c), and operators' documentation (Nexmo, OpenMarket).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr import (
    IdPolicy,
    NetworkError,
    Receipt,
    ReceiptKind,
    ReceiptStatus,
    is_receipt,
    parse_receipt,
    parse_receipt_text,
    receipt_keys,
    receipt_kind,
)
from dlr._receipt import _build, _pdu_text, _split_any, _split_fields
from dlr._receipt import _receipt_tlvs as read_receipt_tlvs
from smpp import TLV_BY_NAME, DataSm, DeliverSm, SubmitSm, Tlvs, decode_pdu

S = ReceiptStatus


def _dlr(text: str | bytes, *, esm_class: int = 0x04, data_coding: int = 0, tlvs: Tlvs | None = None) -> DeliverSm:
    raw = text.encode("latin-1") if isinstance(text, str) else text
    return DeliverSm(source_addr="447700900123", destination_addr="SENDER", esm_class=esm_class,
                     data_coding=data_coding, short_message=raw, tlvs=tlvs or Tlvs())


def _parse(text: str) -> Receipt:
    receipt = parse_receipt_text(text)
    assert receipt is not None
    return receipt


# ---- §5.2.12: which deliver_sm is a receipt ------------------------------------------------------------


@pytest.mark.parametrize(
    ("esm_class", "kind"),
    [
        (0x00, None),
        (0x04, ReceiptKind.SMSC_DELIVERY_RECEIPT),
        (0x08, ReceiptKind.SME_DELIVERY_ACK),
        (0x10, ReceiptKind.SME_USER_ACK),
        (0x18, None),  # conversation abort (Korean CDMA), not a receipt
        (0x20, ReceiptKind.INTERMEDIATE_NOTIFICATION),
        (0x44, ReceiptKind.SMSC_DELIVERY_RECEIPT),  # UDHI set too: Kannel notes SMSCs that send 0x44
        (0x07, ReceiptKind.SMSC_DELIVERY_RECEIPT),  # messaging mode bits do not matter
        (0x40, None),
        (0x80, None),
    ],
)
def test_receipt_kind_reads_the_message_type_bits(esm_class: int, kind: ReceiptKind | None) -> None:
    assert receipt_kind(esm_class) is kind
    assert is_receipt(_dlr("id:1 stat:DELIVRD", esm_class=esm_class)) is (kind is not None)


def test_an_mo_with_receipted_message_id_is_not_a_receipt() -> None:
    # OpenMarket's MO example (openmarket.com/docs/Content/apis/v4smpp/mo-examples.htm): esm_class 0 and a
    # receipted_message_id TLV holding their MO ticket id.
    pdu = decode_pdu(bytes.fromhex(
        "0000005d0000000500000000000000014f4d5634000101343437373030393030373635000101343437373030393030373530"
        "000000000000000000000448656c70001e0018313631385a2d30313032472d323333334d2d3235464a4600"))
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs.get_str("receipted_message_id") == "1618Z-0102G-2333M-25FJF"
    assert parse_receipt(pdu) is None
    assert parse_receipt(pdu, sniff_text=True) is None
    assert not is_receipt(pdu)


def test_text_sniffing_is_opt_in() -> None:
    pdu = _dlr("id:1891273321 sub:001 dlvrd:001 submit date:1305050826 done date:1305050826 stat:DELIVRD "
               "err:000 text:DLVRD TO MOBILE", esm_class=0)
    assert parse_receipt(pdu) is None
    assert not is_receipt(pdu)
    sniffed = parse_receipt(pdu, sniff_text=True)
    assert sniffed is not None and sniffed.status is S.DELIVERED
    assert is_receipt(pdu, sniff_text=True)
    # An MO text with only one of the keys stays an MO.
    assert parse_receipt(_dlr("my id:42 thanks", esm_class=0), sniff_text=True) is None
    # A conversation abort is never sniffed.
    assert parse_receipt(_dlr("id:1 stat:DELIVRD", esm_class=0x18), sniff_text=True) is None


def test_other_pdus_are_not_receipts() -> None:
    assert parse_receipt(SubmitSm(esm_class=0x04, short_message=b"id:1 stat:DELIVRD")) is None
    assert not is_receipt(SubmitSm(esm_class=0x04))


# ---- receipt texts --------------------------------------------------------------------------------------


def test_cloudhopper_parse_short_message() -> None:
    # cloudhopper DeliveryReceiptTest.parseShortMessage.
    r = _parse("id:0123456789 sub:002 dlvrd:001 submit date:1005232039 done date:1005242339 stat:DELIVRD "
               "err:012 text:This is a sample mes")
    assert r.text_id == "0123456789"
    assert r.smsc_message_id == "0123456789"
    assert (r.sub, r.dlvrd) == (2, 1)
    assert r.submit_date == datetime(2010, 5, 23, 20, 39)
    assert r.done_date == datetime(2010, 5, 24, 23, 39)
    assert r.status is S.DELIVERED and r.stat == "DELIVRD"
    assert r.err == "012" and r.error_code == 12
    assert r.text == "This is a sample mes"
    assert not r.is_intermediate


def test_cloudhopper_simulator_capitalised_text_key() -> None:
    # cloudhopper: "example receipt from smsc simulator (checks case sensitivity)".
    r = _parse("id:4 sub:001 dlvrd:001 submit date:1006020051 done date:1006020051 stat:DELIVRD err:000 Text:Hello")
    assert r.text_id == "4"
    assert r.submit_date == r.done_date == datetime(2010, 6, 2, 0, 51)
    assert r.error_code == 0
    assert r.text == "Hello"


def test_cloudhopper_real_world_pdu_with_tlvs() -> None:
    # cloudhopper DeliveryReceiptTest.parseRealWorldReceipt0: a captured deliver_sm whose text id is decimal
    # (0059113978) and whose receipted_message_id TLV is the same number in hex (38601fa).
    pdu = decode_pdu(bytes.fromhex(
        "000000BA00000005000000000000000200010134343935313336313932300001013430343034000400000000000000006E69"
        "643A30303539313133393738207375623A30303120646C7672643A303031207375626D697420646174653A313030323130"
        "3137333020646F6E6520646174653A3130303231303137333120737461743A44454C49565244206572723A303030207465"
        "78743A4024232125262F3A000E0001010006000101001E000833383630316661000427000102"))
    r = parse_receipt(pdu)
    assert r is not None
    assert r.kind is ReceiptKind.SMSC_DELIVERY_RECEIPT
    assert r.smsc_message_id == "38601fa" and r.receipted_message_id == "38601fa"
    assert r.text_id == "0059113978"
    assert r.ids_disagree
    assert r.message_state == 2 and r.status is S.DELIVERED
    assert (r.sub, r.dlvrd, r.err) == (1, 1, "000")
    assert r.submit_date == datetime(2010, 2, 10, 17, 30)
    assert r.done_date == datetime(2010, 2, 10, 17, 31)
    assert r.text == "@$#!%&/:"  # a text holding a colon
    assert (r.source_addr, r.destination_addr) == ("44951361920", "40404")
    # The two ids meet when the TLV is read as hex and the text as decimal.
    assert receipt_keys(r, IdPolicy.parse("hex/decimal")) == ("59113978",)


def test_cloudhopper_dates_with_seconds() -> None:
    # cloudhopper parseReceiptWithTimestampIncludingSeconds: a UUID id and 12-digit dates.
    r = _parse("id:74e02ee1-4e2f-4a6e-a78b-4b247d756a22 sub:001 dlvrd:001 submit date:110206193041 "
               "done date:110206193110 stat:DELIVRD err:000 text:")
    assert r.text_id == "74e02ee1-4e2f-4a6e-a78b-4b247d756a22"
    assert r.submit_date == datetime(2011, 2, 6, 19, 30, 41)
    assert r.done_date == datetime(2011, 2, 6, 19, 31, 10)
    assert r.text == ""


def test_cloudhopper_fields_out_of_order() -> None:
    # cloudhopper parseReceiptWithFieldsOutOfOrder: "text:" is empty and stat comes after it.
    r = _parse("sub:001 id:74e02ee1-4e2f-4a6e-a78b-4b247d756a22 err:000 dlvrd:001 done date:110206193110 "
               "submit date:110206193041 text: stat:DELIVRD")
    assert r.text_id == "74e02ee1-4e2f-4a6e-a78b-4b247d756a22"
    assert (r.sub, r.dlvrd, r.err) == (1, 1, "000")
    assert r.submit_date == datetime(2011, 2, 6, 19, 30, 41)
    assert r.status is S.DELIVERED
    assert r.text == ""


def test_cloudhopper_eleven_digit_id_enroute() -> None:
    # cloudhopper parseShortMessageWith11DigitLongMessageId.
    r = _parse("id:98765432101 sub:000 dlvrd:000 submit date:1001010000 done date:1001010000 stat:ENROUTE err:000 text:")
    assert r.text_id == "98765432101"
    assert r.status is S.ENROUTE
    assert r.is_intermediate


def test_cloudhopper_missing_sub_and_dlvrd_and_four_digit_years() -> None:
    # cloudhopper parseReceiptWithMissingSubAndDlvrdFields: a 32-hex-digit id, 14-digit dates, err:0.
    r = _parse("id:2E179B310EDE971B2760C72B7F026E1B submit date:20110314181534 done date:20110314181741 "
               "stat:DELIVRD err:0")
    assert r.text_id == "2E179B310EDE971B2760C72B7F026E1B"
    assert r.sub is None and r.dlvrd is None
    assert r.submit_date == datetime(2011, 3, 14, 18, 15, 34)
    assert r.done_date == datetime(2011, 3, 14, 18, 17, 41)
    assert r.err == "0" and r.error_code == 0
    assert r.text is None


def test_cloudhopper_misspelt_keys_are_kept_as_extras() -> None:
    # cloudhopper parseShortMessageMissingFields misspells one key at a time; we do not reject the receipt
    # but keep what we can read, and the misspelt key as a vendor key.
    r = _parse("id:0123456789 su:002 dlvrd:001 submit date:1005232039 done date:1005242339 stat:DELIVRD "
               "err:012 text:This is a sample mes")
    assert r.sub is None
    assert ("su", "002") in r.extra
    assert r.status is S.DELIVERED
    assert parse_receipt_text("i:0123456789 sub:002 dlvrd:001 sat:DELIVRD err:012") is None


@pytest.mark.parametrize(
    ("text", "text_id", "submit", "done", "body"),
    [
        # Jasmin test_is_delivery_standard.
        ("id:1891273321 sub:001 dlvrd:001 submit date:1305050826 done date:1305050826 stat:DELIVRD err:000 "
         "text:DLVRD TO MOBILE", "1891273321", datetime(2013, 5, 5, 8, 26), datetime(2013, 5, 5, 8, 26),
         "DLVRD TO MOBILE"),
        # Jasmin test_is_delivery_empty_text.
        ("id:1891273321 sub:001 dlvrd:001 submit date:1305050826 done date:1305050826 stat:DELIVRD err:000 text:",
         "1891273321", datetime(2013, 5, 5, 8, 26), datetime(2013, 5, 5, 8, 26), ""),
        # Jasmin test_is_delivery_clickatell_70: a 32-hex-digit id and dates with seconds.
        ("id:a29f6845555647139e5c8f3b817f2c9a sub:001 dlvrd:001 submit date:141023215253 done date:141023215259 "
         "stat:DELIVRD err:000 text:HOLA", "a29f6845555647139e5c8f3b817f2c9a",
         datetime(2014, 10, 23, 21, 52, 53), datetime(2014, 10, 23, 21, 52, 59), "HOLA"),
        # Jasmin test_is_delivery_jasmin_153: a UUID id.
        ("id:4a38dc46-5125-4969-90be-72104c340d5c sub:001 dlvrd:001 submit date:150519232657 "
         "done date:150519232657 stat:DELIVRD err:000 text:-", "4a38dc46-5125-4969-90be-72104c340d5c",
         datetime(2015, 5, 19, 23, 26, 57), datetime(2015, 5, 19, 23, 26, 57), "-"),
        # Jasmin test_is_delivery_jasmin_195: no sub/dlvrd, 12 digits that only read as YYYYMMDDhhmm.
        ("id:c87c2273-7edb-4bc7-8d3a-7f57f21b625e submit date:201506201641 done date:201506201641 stat:DELIVRD "
         "err:000", "c87c2273-7edb-4bc7-8d3a-7f57f21b625e", datetime(2015, 6, 20, 16, 41),
         datetime(2015, 6, 20, 16, 41), None),
        # Nexmo's SMPP DLR example (help.nexmo.com, "How to read a Nexmo SMPP Delivery Receipt"): 16 digits.
        ("id:0000000012345678 sub:001 dlvrd:001 submit date:1601010100 done date:1601010101 stat:DELIVRD "
         "err:000 text:none", "0000000012345678", datetime(2016, 1, 1, 1, 0), datetime(2016, 1, 1, 1, 1), "none"),
        # jsmpp's ExampleDeliveryReceiptStripperTest: no err and no text.
        ("id:123456 sub:234 dlvrd:000 submit date:1604052345 done date:1605021145 stat:DELIVRD", "123456",
         datetime(2016, 4, 5, 23, 45), datetime(2016, 5, 2, 11, 45), None),
    ],
)
def test_published_receipts(text: str, text_id: str, submit: datetime, done: datetime, body: str | None) -> None:
    r = _parse(text)
    assert r.text_id == r.smsc_message_id == text_id
    assert r.submit_date == submit and r.done_date == done
    assert r.status is S.DELIVERED
    assert r.text == body
    assert r.raw_text == text


def test_jsmpp_sub_count() -> None:
    r = _parse("id:123456 sub:234 dlvrd:000 submit date:1604052345 done date:1605021145 stat:DELIVRD")
    assert (r.sub, r.dlvrd, r.err) == (234, 0, None)


def test_openmarket_rejected_receipt() -> None:
    # OpenMarket's "Delivery receipt for a failed delivery MT" (v4smpp/deliveryreceipt-examples.htm): keys
    # "submitdate"/"donedate" without a blank, an all-zero done date, and a 3-digit vendor error.
    r = _parse("id:0118Z-0122I-2309U-57DGB sub:000 dlvrd:000 submitdate:180122230957 donedate:000000000000 "
               "stat:REJECTD err:375 text:")
    assert r.text_id == "0118Z-0122I-2309U-57DGB"
    assert r.submit_date == datetime(2018, 1, 22, 23, 9, 57)
    assert r.done_date is None
    assert r.status is S.REJECTED
    assert r.error_code == 375
    assert r.extra == ()


def test_undeliverable_with_text_after_err() -> None:
    # A receipt quoted on e-com-net.com ("SMPP delivery receipt"): stat UNDELIV, err 075.
    r = _parse("id:0911897980 sub:001 dlvrd:000 submit date:1201121551 done date:1201121551 stat:UNDELIV "
               "err:075 text:-PROFILE")
    assert r.status is S.UNDELIVERABLE and r.status.is_failure
    assert r.error_code == 75
    assert r.text == "-PROFILE"


def test_vendor_keys_are_kept_in_order() -> None:
    r = _parse("id:77 sub:001 dlvrd:001 submit date:2401021530 done date:2401021531 stat:DELIVRD err:000 "
               "MCC:234 mnc:15 text:hi")
    assert r.extra == (("mcc", "234"), ("mnc", "15"))
    assert r.text == "hi"


def test_keys_in_any_case_and_text_with_colons_and_keys() -> None:
    r = _parse("ID:abc SUB:1 DLVRD:1 SUBMIT DATE:2401021530 Done Date:2401021531 STAT:delivrd ERR:0 "
               "TEXT:meet at 10:30 id:9 stat:UNDELIV")
    assert r.text_id == "abc"
    assert r.status is S.DELIVERED
    assert r.done_date == datetime(2024, 1, 2, 15, 31)
    # id and stat were seen already, so "id:9 stat:UNDELIV" belongs to the text.
    assert r.text == "meet at 10:30 id:9 stat:UNDELIV"


def test_stat_missing_is_unknown_and_text_without_keys_is_none() -> None:
    r = _parse("id:12 sub:001 dlvrd:000")
    assert r.status is S.UNKNOWN and r.stat is None
    assert parse_receipt_text("") is None
    assert parse_receipt_text("Hello there") is None
    assert parse_receipt_text("362d9701 2") is None


def test_unknown_stat_word_is_unknown_and_final() -> None:
    r = _parse("id:12 stat:WIBBLE err:000")
    assert r.stat == "WIBBLE"
    assert r.status is S.UNKNOWN and r.status.is_final


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("1005232039", datetime(2010, 5, 23, 20, 39)),
        ("100523203959", datetime(2010, 5, 23, 20, 39, 59)),
        # Twelve digits read as YYMMDDhhmmss first when that is a valid date, else as YYYYMMDDhhmm.
        ("201005232039", datetime(2020, 10, 5, 23, 20, 39)),
        ("201512312359", datetime(2015, 12, 31, 23, 59)),
        ("20100523203959", datetime(2010, 5, 23, 20, 39, 59)),
        ("2010-05-23 20:39:59", datetime(2010, 5, 23, 20, 39, 59)),
        ("0000000000", None),
        ("9913324567", None),
        ("12345", None),
        ("abc", None),
        ("", None),
    ],
)
def test_dates(date: str, expected: datetime | None) -> None:
    assert _parse(f"id:1 submit date:{date} stat:DELIVRD").submit_date == expected


# ---- TLVs and their precedence --------------------------------------------------------------------------


def test_sicap_mmg_receipt_carried_by_tlvs_only() -> None:
    # Jasmin test_is_delivery_mmg_deliver_sm_224 (Sicap MMG): the text is no receipt, the TLVs are.
    pdu = _dlr("362d9701 2", tlvs=Tlvs(message_state=2, receipted_message_id="362d9701"))
    r = parse_receipt(pdu)
    assert r is not None
    assert r.smsc_message_id == "362d9701" and r.text_id is None
    assert r.status is S.DELIVERED
    assert r.sub is None and r.submit_date is None and r.err is None


def test_sicap_mmg_data_sm_receipt() -> None:
    # Jasmin test_is_delivery_mmg_data_sm_92: a data_sm with TLVs only.
    pdu = DataSm(source_addr="24206155423", destination_addr="JOOKIES", esm_class=0x04,
                 tlvs=Tlvs(message_state=2, receipted_message_id="362d9701"))
    r = parse_receipt(pdu)
    assert r is not None
    assert (r.smsc_message_id, r.status, r.raw_text) == ("362d9701", S.DELIVERED, "")


def test_tlv_id_wins_and_both_ids_are_kept() -> None:
    # Jasmin test_take_msgid_from_tlv_first (#427).
    pdu = DataSm(esm_class=0x04, tlvs=Tlvs(
        message_state=2, receipted_message_id="6000",
        message_payload=b"id:5000 submit date:201506201641 done date:201506201641 stat:DELIVRD err:000"))
    r = parse_receipt(pdu)
    assert r is not None
    assert r.smsc_message_id == "6000"
    assert r.receipted_message_id == "6000" and r.text_id == "5000"
    assert r.ids_disagree
    assert receipt_keys(r, "as-is") == ("6000", "5000")


def test_tlv_message_state_wins_over_stat() -> None:
    # Jasmin test_take_message_state_from_tlv_first (#427): message_state ACCEPTED, text DELIVRD.
    pdu = _dlr("id:5000 submit date:201506201641 done date:201506201641 stat:DELIVRD err:000",
               tlvs=Tlvs(message_state=6, receipted_message_id="5000"))
    r = parse_receipt(pdu)
    assert r is not None
    assert r.status is S.ACCEPTED and r.stat == "DELIVRD" and r.message_state == 6
    assert not r.ids_disagree
    assert r.is_intermediate


def test_blank_tlv_id_falls_back_to_the_text_id() -> None:
    r = parse_receipt(_dlr("id:77 stat:DELIVRD", tlvs=Tlvs(receipted_message_id="")))
    assert r is not None and r.smsc_message_id == "77" and r.receipted_message_id == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"\x03\x00\x22", NetworkError(3, 34)),  # GSM, error 34
        (b"\x08\x04\x01", NetworkError(8, 0x0401)),  # SMSC specific
        # Kannel's error_from_network_error_code: "bogous SMSC sending back network_error_code as 3 digit string".
        (b"075", NetworkError(0, 75)),
        (b"\x03\x00", None),
        (None, None),
    ],
)
def test_network_error_code(value: bytes | None, expected: NetworkError | None) -> None:
    assert NetworkError.from_tlv(value) == expected


def test_network_error_code_from_a_pdu_and_error_code_precedence() -> None:
    pdu = _dlr("id:1 stat:UNDELIV err:000", tlvs=Tlvs(network_error_code=b"\x03\x00\x1b", message_state=5))
    r = parse_receipt(pdu)
    assert r is not None
    assert r.network_error == NetworkError(3, 27)
    assert r.error_code == 27  # the TLV's code, not err:000
    assert NetworkError(3, 27).to_tlv() == b"\x03\x00\x1b"
    assert NetworkError(8, 0xFFFF).to_tlv() == b"\x08\xff\xff"
    for bad in (NetworkError(256, 0), NetworkError(3, 0x10000), NetworkError(-1, 0)):
        with pytest.raises(ValueError, match="out of range"):
            bad.to_tlv()


# ---- what the kind implies, and how the bytes are read ----------------------------------------------------


@pytest.mark.parametrize(
    ("esm_class", "status"),
    [(0x04, S.UNKNOWN), (0x20, S.ENROUTE), (0x08, S.DELIVERED), (0x10, S.DELIVERED)],
)
def test_status_when_neither_tlv_nor_stat(esm_class: int, status: ReceiptStatus) -> None:
    r = parse_receipt(_dlr("no receipt text here", esm_class=esm_class))
    assert r is not None and r.status is status and r.smsc_message_id == ""


def test_intermediate_notification_is_intermediate_whatever_its_status() -> None:
    r = parse_receipt(_dlr("id:9 stat:DELIVRD", esm_class=0x20))
    assert r is not None
    assert r.kind is ReceiptKind.INTERMEDIATE_NOTIFICATION
    assert r.status is S.DELIVERED and r.is_intermediate


def test_ucs2_receipt_text() -> None:
    r = parse_receipt(_dlr("id:5 stat:EXPIRED err:001".encode("utf-16-be"), data_coding=0x08))
    assert r is not None and (r.text_id, r.status) == ("5", S.EXPIRED)


def test_udh_before_the_text_is_skipped_but_only_when_there_is_one() -> None:
    udh = bytes.fromhex("0500030a0201")
    r = parse_receipt(_dlr(udh + b"id:5 stat:DELIVRD", esm_class=0x44))
    assert r is not None and (r.text_id, r.status) == ("5", S.DELIVERED)
    plain = parse_receipt(_dlr(b"id:6 stat:DELIVRD", esm_class=0x44))
    assert plain is not None and plain.text_id == "6"


def test_nul_and_line_break_at_the_end_are_dropped() -> None:
    r = parse_receipt(_dlr(b"id:5 stat:DELIVRD err:000 text:hi\r\n\x00"))
    assert r is not None and r.text == "hi"


def test_message_payload_when_short_message_is_empty() -> None:
    r = parse_receipt(_dlr(b"", tlvs=Tlvs(message_payload=b"id:42 stat:REJECTD err:011")))
    assert r is not None and (r.text_id, r.status, r.error_code) == ("42", S.REJECTED, 11)


def test_receipt_is_frozen_and_hashable() -> None:
    r = _parse("id:1 stat:DELIVRD")
    with pytest.raises(AttributeError):
        r.status = S.EXPIRED  # type: ignore[misc]
    assert hash(r) == hash(_parse("id:1 stat:DELIVRD"))


# ---- never raises ---------------------------------------------------------------------------------------

_KEYS = st.sampled_from(["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:", "Text:",
                         "submitdate:", " ", ":", "0", "DELIVRD", "\x00", "é", "x:"])


@given(st.one_of(st.text(), st.lists(st.one_of(_KEYS, st.text(max_size=5))).map("".join)))
def test_parse_receipt_text_never_raises(text: str) -> None:
    r = parse_receipt_text(text)
    assert r is None or isinstance(r.status, ReceiptStatus)


def _receipt_tlvs(state: int | None, tlv_id: str | None, nec: bytes | None) -> Tlvs:
    """message_state, receipted_message_id and network_error_code, each only when given."""
    values: dict[str, int | str | bytes] = {}
    if state is not None:
        values["message_state"] = state
    if tlv_id is not None:
        values["receipted_message_id"] = tlv_id
    if nec is not None:
        values["network_error_code"] = nec
    return Tlvs(values)


@given(
    short_message=st.one_of(st.binary(max_size=254), st.lists(_KEYS).map(lambda k: "".join(k).encode("utf-8")[:254])),
    esm_class=st.integers(0, 255),
    data_coding=st.integers(0, 255),
    state=st.one_of(st.none(), st.integers(0, 255)),
    tlv_id=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=64)),
    nec=st.one_of(st.none(), st.binary(min_size=3, max_size=3)),
)
def test_parse_receipt_never_raises(short_message: bytes, esm_class: int, data_coding: int, state: int | None,
                                    tlv_id: str | None, nec: bytes | None) -> None:
    pdu = _dlr(short_message, esm_class=esm_class, data_coding=data_coding, tlvs=_receipt_tlvs(state, tlv_id, nec))
    r = parse_receipt(pdu)
    assert (r is not None) is (receipt_kind(esm_class) is not None)
    if r is not None and state is not None:
        assert r.message_state == state


_token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
_num = st.text(alphabet="0123456789", min_size=1, max_size=14)


def _appendix_b_text(ident: str, sub: str, dlvrd: str, submit: str, done: str, stat: str, err: str,
                     text: str | None, text_key: str = "text") -> str:
    """A receipt text in Appendix B's exact layout."""
    return (f"id:{ident} sub:{sub} dlvrd:{dlvrd} submit date:{submit} done date:{done} stat:{stat} err:{err}"
            + ("" if text is None else f" {text_key}:{text}"))


@given(ident=_token, sub=_num, dlvrd=_num, submit=_num, done=_num, stat=_token, err=_token,
       text=st.one_of(st.none(), st.text(max_size=30)), text_key=st.sampled_from(["text", "Text", "TEXT"]))
def test_the_appendix_b_fast_path_reads_what_the_general_path_reads(
        ident: str, sub: str, dlvrd: str, submit: str, done: str, stat: str, err: str, text: str | None,
        text_key: str) -> None:
    written = _appendix_b_text(ident, sub, dlvrd, submit, done, stat, err, text, text_key)
    assert _split_fields(written) == _split_any(written)


@given(ident=_token, sub=_num, dlvrd=_num, submit=_num, done=_num, stat=_token, err=_token,
       text=st.one_of(st.none(), st.text(alphabet=st.characters(max_codepoint=255), max_size=30)),
       esm_class=st.sampled_from([0x04, 0x08, 0x10, 0x20, 0x44]),
       state=st.one_of(st.none(), st.integers(0, 9)),
       tlv_id=st.one_of(st.none(), st.just(" "), _token),
       nec=st.one_of(st.none(), st.binary(min_size=3, max_size=3)))
def test_parse_receipt_fast_path_builds_what_the_general_path_builds(
        ident: str, sub: str, dlvrd: str, submit: str, done: str, stat: str, err: str, text: str | None,
        esm_class: int, state: int | None, tlv_id: str | None, nec: bytes | None) -> None:
    written = _appendix_b_text(ident, sub, dlvrd, submit, done, stat, err, text)
    pdu = _dlr(written.encode("latin-1"), esm_class=esm_class, tlvs=_receipt_tlvs(state, tlv_id, nec))
    kind = receipt_kind(esm_class)
    assert kind is not None
    fields, extra = _split_any(_pdu_text(pdu))
    general = _build(_pdu_text(pdu), fields, extra, kind=kind, tlv_id=pdu.tlvs.get_str("receipted_message_id"),
                     state=pdu.tlvs.get_int("message_state"),
                     network_error=NetworkError.from_tlv(pdu.tlvs.get_bytes("network_error_code")),
                     source_addr=pdu.source_addr, destination_addr=pdu.destination_addr)
    assert parse_receipt(pdu) == general


_TLV_VALUES = st.one_of(st.none(), st.integers(0, 255), st.text(max_size=8), st.binary(max_size=4))


@given(st.lists(st.tuples(st.sampled_from(["receipted_message_id", "message_state", "network_error_code",
                                           "user_message_reference", "source_port"]), _TLV_VALUES), max_size=6))
def test_the_receipt_tlvs_read_in_one_pass_as_the_mapping_reads_them(pairs: list[tuple[str, object]]) -> None:
    """`_receipt_tlvs` reads the three TLVs in one pass: the first of a repeated tag, each value taken only when
    of its type, exactly as Tlvs.get_str, get_int and get_bytes do (whatever a broken PDU carries)."""
    tlvs = Tlvs.from_pairs(tuple((TLV_BY_NAME[name].tag, value) for name, value in pairs if value is not None))
    assert read_receipt_tlvs(tlvs) == (tlvs.get_str("receipted_message_id"), tlvs.get_int("message_state"),
                                   NetworkError.from_tlv(tlvs.get_bytes("network_error_code")))
