"""The TLV table against SMPP 3.4 §5.3.2, unknown and vendor tags (§5.3.2: 0x1400-0x3FFF), and the Tlvs mapping.

The table here is written from the specification (tag, value type, value size in octets) and cross-checked
against two independent implementations' tables: funbox/smppex lib/smppex/protocol/tlv_format.ex and
opentelecoms-org/jsmpp OptionalParameter.Tag.
"""

from __future__ import annotations

import pickle
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp import (
    NO_TLVS,
    TLV_BY_NAME,
    TLV_BY_TAG,
    TLVS,
    EncodeError,
    RemoteProtocolError,
    Status,
    TlvKind,
    Tlvs,
    decode_tlvs,
    encode_tlvs,
)
from smpp._tlv import name_of, tag_of

# name: (tag, kind, min value octets, max value octets) — §5.3.2. For a C-Octet String the maximum
# counts the NULL, as the spec's tables do. Integer TLVs have exactly their size.
U8, U16, U32, CSTR, OCT = TlvKind.U8, TlvKind.U16, TlvKind.U32, TlvKind.CSTR, TlvKind.OCTETS
SPEC_TLVS: dict[str, tuple[int, TlvKind, int, int]] = {
    "dest_addr_subunit": (0x0005, U8, 1, 1),
    "dest_network_type": (0x0006, U8, 1, 1),
    "dest_bearer_type": (0x0007, U8, 1, 1),
    "dest_telematics_id": (0x0008, U16, 2, 2),
    "source_addr_subunit": (0x000D, U8, 1, 1),
    "source_network_type": (0x000E, U8, 1, 1),
    "source_bearer_type": (0x000F, U8, 1, 1),
    # §5.3.2 gives source_telematics_id a 1-octet value (unlike dest_telematics_id's 2); smppex and jsmpp
    # read it the same way.
    "source_telematics_id": (0x0010, U8, 1, 1),
    "qos_time_to_live": (0x0017, U32, 4, 4),
    "payload_type": (0x0019, U8, 1, 1),
    "additional_status_info_text": (0x001D, CSTR, 0, 256),
    "receipted_message_id": (0x001E, CSTR, 0, 65),
    "ms_msg_wait_facilities": (0x0030, U8, 1, 1),
    "privacy_indicator": (0x0201, U8, 1, 1),
    "source_subaddress": (0x0202, OCT, 2, 23),
    "dest_subaddress": (0x0203, OCT, 2, 23),
    "user_message_reference": (0x0204, U16, 2, 2),
    "user_response_code": (0x0205, U8, 1, 1),
    "source_port": (0x020A, U16, 2, 2),
    "destination_port": (0x020B, U16, 2, 2),
    "sar_msg_ref_num": (0x020C, U16, 2, 2),
    "language_indicator": (0x020D, U8, 1, 1),
    "sar_total_segments": (0x020E, U8, 1, 1),
    "sar_segment_seqnum": (0x020F, U8, 1, 1),
    "sc_interface_version": (0x0210, U8, 1, 1),
    "callback_num_pres_ind": (0x0302, U8, 1, 1),
    "callback_num_atag": (0x0303, OCT, 0, 65),
    "number_of_messages": (0x0304, U8, 1, 1),
    "callback_num": (0x0381, OCT, 4, 19),
    "dpf_result": (0x0420, U8, 1, 1),
    "set_dpf": (0x0421, U8, 1, 1),
    "ms_availability_status": (0x0422, U8, 1, 1),
    "network_error_code": (0x0423, OCT, 3, 3),
    "message_payload": (0x0424, OCT, 0, 0xFFFF),
    "delivery_failure_reason": (0x0425, U8, 1, 1),
    "more_messages_to_send": (0x0426, U8, 1, 1),
    "message_state": (0x0427, U8, 1, 1),
    "ussd_service_op": (0x0501, U8, 1, 1),
    "display_time": (0x1201, U8, 1, 1),
    "sms_signal": (0x1203, U16, 2, 2),
    "ms_validity": (0x1204, U8, 1, 1),
    "alert_on_message_delivery": (0x130C, OCT, 0, 0),
    "its_reply_type": (0x1380, U8, 1, 1),
    "its_session_info": (0x1383, U16, 2, 2),
}

INT_SIZES = {U8: 1, U16: 2, U32: 4}

def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def _spec_params() -> list[object]:
    return list(SPEC_TLVS)


# ---- the table -----------------------------------------------------------------------------------------------


def test_table_has_every_tag_of_the_spec_once() -> None:
    assert len(SPEC_TLVS) == 44
    assert set(TLV_BY_NAME) == set(SPEC_TLVS)
    assert len(TLVS) == len(TLV_BY_NAME) == len(TLV_BY_TAG) == 44
    assert {t.tag for t in TLVS} == {tag for tag, *_ in SPEC_TLVS.values()}


@pytest.mark.parametrize("name", _spec_params())
def test_tlv_tag_type_and_length_match_the_spec(name: str) -> None:
    tag, kind, min_len, max_len = SPEC_TLVS[name]
    tlv = TLV_BY_NAME[name]
    assert tlv.tag == tag
    assert TLV_BY_TAG[tag] is tlv
    assert tlv.kind is kind
    if kind in INT_SIZES:
        assert kind.value == INT_SIZES[kind] == min_len == max_len
    else:
        assert (tlv.min_len, tlv.max_len) == (min_len, max_len)


@pytest.mark.parametrize("name", _spec_params())
def test_a_value_of_the_spec_size_decodes(name: str) -> None:
    tag, kind, min_len, max_len = SPEC_TLVS[name]
    if kind is CSTR:
        raw = b"x" * (max_len - 1) + b"\0"
        expected: object = "x" * (max_len - 1)
    elif kind in INT_SIZES:
        raw = bytes(range(1, max_len + 1))
        expected = int.from_bytes(raw, "big")
    else:
        raw = b"\x01" * min_len
        expected = raw
    data = _tlv(tag, raw)
    tlvs = decode_tlvs(data, 0, len(data))
    assert tlvs[name] == expected
    assert encode_tlvs(tlvs) == data


def test_no_declared_tag_is_in_the_vendor_range() -> None:
    assert not [t for t in TLVS if 0x1400 <= t.tag <= 0x3FFF]


# ---- value kinds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw"), [("message_state", b""), ("message_state", b"\x01\x02"),
                                           ("user_message_reference", b"\x01"), ("qos_time_to_live", b"\0\0\0"),
                                           ("sc_interface_version", b"\x34\x00")])
def test_an_integer_tlv_of_the_wrong_size_is_rinvparlen(name: str, raw: bytes) -> None:
    data = _tlv(TLV_BY_NAME[name].tag, raw)
    with pytest.raises(RemoteProtocolError) as info:
        decode_tlvs(data, 0, len(data))
    assert info.value.status == Status.ESME_RINVPARLEN
    assert info.value.field == "tlvs"
    assert name in str(info.value)


def test_a_c_string_tlv_without_its_nul_is_accepted() -> None:
    # Several SMSCs send receipted_message_id without the NULL that §5.3.2 asks for.
    data = _tlv(0x001E, b"0A1B2C")
    assert decode_tlvs(data, 0, len(data))["receipted_message_id"] == "0A1B2C"


@pytest.mark.parametrize("name", ["receipted_message_id", "additional_status_info_text"])
def test_an_empty_c_string_tlv_decodes_to_empty_text(name: str) -> None:
    data = _tlv(TLV_BY_NAME[name].tag, b"")
    tlvs = decode_tlvs(data, 0, len(data))
    assert tlvs[name] == ""
    assert tlvs.get_str(name) == ""


def test_a_c_string_tlv_longer_than_its_maximum_is_rinvparlen() -> None:
    data = _tlv(0x001E, b"1" * 65 + b"\0")
    with pytest.raises(RemoteProtocolError) as info:
        decode_tlvs(data, 0, len(data))
    assert info.value.status == Status.ESME_RINVPARLEN
    ok = _tlv(0x001E, b"1" * 64 + b"\0")
    assert decode_tlvs(ok, 0, len(ok))["receipted_message_id"] == "1" * 64


def test_a_c_string_tlv_stops_at_its_first_nul_and_reads_latin_1() -> None:
    data = _tlv(0x001D, b"caf\xe9\0junk")
    assert decode_tlvs(data, 0, len(data))["additional_status_info_text"] == "café"


def test_octet_string_tlvs_are_kept_whatever_their_length() -> None:
    # A receipt whose network_error_code is 2 octets instead of 3 must not cost the receipt.
    data = _tlv(0x0423, b"\x03\x01") + _tlv(0x0427, b"\x02")
    tlvs = decode_tlvs(data, 0, len(data))
    assert tlvs["network_error_code"] == b"\x03\x01"
    assert tlvs["message_state"] == 2


def test_alert_on_message_delivery_has_no_value() -> None:
    data = _tlv(0x130C, b"")
    assert data == bytes.fromhex("130c0000")  # §5.3.2.41
    tlvs = decode_tlvs(data, 0, len(data))
    assert tlvs["alert_on_message_delivery"] == b""
    assert encode_tlvs(Tlvs(alert_on_message_delivery=b"")) == data


def test_encoding_writes_each_kind() -> None:
    tlvs = Tlvs(sar_msg_ref_num=0x0102, message_state=2, qos_time_to_live=0x01020304, receipted_message_id="ab",
                network_error_code=b"\x03\x00\x01", message_payload=b"")
    assert encode_tlvs(tlvs) == (_tlv(0x020C, b"\x01\x02") + _tlv(0x0427, b"\x02")
                                 + _tlv(0x0017, b"\x01\x02\x03\x04") + _tlv(0x001E, b"ab\0")
                                 + _tlv(0x0423, b"\x03\x00\x01") + _tlv(0x0424, b""))
    assert encode_tlvs(NO_TLVS) == b""


@pytest.mark.parametrize(("values", "field"), [
    ({"message_state": 256}, "tlvs.message_state"),
    ({"message_state": -1}, "tlvs.message_state"),
    ({"sar_msg_ref_num": 0x10000}, "tlvs.sar_msg_ref_num"),
    ({"qos_time_to_live": 1 << 32}, "tlvs.qos_time_to_live"),
    ({"message_state": "2"}, "tlvs.message_state"),
    ({"receipted_message_id": "x" * 65}, "tlvs.receipted_message_id"),
    ({"receipted_message_id": b"abc"}, "tlvs.receipted_message_id"),
    ({"receipted_message_id": "a\0b"}, "tlvs.receipted_message_id"),
    ({"receipted_message_id": "\u20ac"}, "tlvs.receipted_message_id"),
    ({"network_error_code": b"\x03\x00"}, "tlvs.network_error_code"),
    ({"callback_num": b"123"}, "tlvs.callback_num"),
    ({"source_subaddress": b"\xa0" * 24}, "tlvs.source_subaddress"),
    ({"alert_on_message_delivery": b"\x01"}, "tlvs.alert_on_message_delivery"),
    ({"message_payload": b"x" * 0x10000}, "tlvs.message_payload"),
    ({"message_payload": 5}, "tlvs.message_payload"),
    ({"0x1400": b"x" * 0x10000}, "tlvs.0x1400"),
    ({"0x1400": 7}, "tlvs.0x1400"),
])
def test_encoding_refuses_a_value_that_does_not_fit_and_names_the_tlv(values: dict[str, object],
                                                                      field: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode_tlvs(Tlvs(values))  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


def test_an_unknown_tag_given_text_is_written_as_latin_1() -> None:
    assert encode_tlvs(Tlvs({"0x1400": "é"})) == _tlv(0x1400, b"\xe9")


# ---- unknown and vendor tags ------------------------------------------------------------------------------------


def test_vendor_tags_are_kept_as_raw_octets_under_a_hex_name() -> None:
    data = _tlv(0x1400, b"\x00\x01") + _tlv(0x3FFF, b"") + _tlv(0x2001, b"VENDOR\0")
    tlvs = decode_tlvs(data, 0, len(data))
    assert list(tlvs) == ["0x1400", "0x3fff", "0x2001"]
    assert tlvs["0x1400"] == b"\x00\x01"
    assert tlvs["0x3FFF"] == b""
    assert tlvs.get_bytes("0x2001") == b"VENDOR\0"
    assert tlvs.get_str("0x2001") == "VENDOR\0"
    assert encode_tlvs(tlvs) == data


def test_a_tag_outside_every_range_is_kept_too() -> None:
    data = _tlv(0x0000, b"\x01") + _tlv(0xFFFF, b"\x02\x03") + _tlv(0x4000, b"")
    tlvs = decode_tlvs(data, 0, len(data))
    assert [t for t, _ in tlvs.items_in_order()] == [0x0000, 0xFFFF, 0x4000]
    assert encode_tlvs(tlvs) == data


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=40)), max_size=8))
def test_vendor_tags_reencode_byte_for_byte(pairs: list[tuple[int, bytes]]) -> None:
    data = b"".join(_tlv(tag, value) for tag, value in pairs)
    tlvs = decode_tlvs(data, 0, len(data))
    assert list(tlvs.items_in_order()) == pairs
    assert encode_tlvs(tlvs) == data


def test_decode_tlvs_reads_only_its_window() -> None:
    inner = _tlv(0x0427, b"\x02") + _tlv(0x1400, b"ab")
    data = b"\xff\xff" + inner + b"\xee"
    tlvs = decode_tlvs(data, 2, 2 + len(inner))
    assert tlvs == Tlvs({"message_state": 2, "0x1400": b"ab"})
    assert decode_tlvs(data, 2, 2) is NO_TLVS


@pytest.mark.parametrize("tail", [b"\x04", b"\x04\x27", b"\x04\x27\x00"])
def test_a_cut_tlv_header_is_rinvoptparstream(tail: bytes) -> None:
    data = _tlv(0x0427, b"\x02") + tail
    with pytest.raises(RemoteProtocolError) as info:
        decode_tlvs(data, 0, len(data))
    assert info.value.status == Status.ESME_RINVOPTPARSTREAM


@pytest.mark.parametrize("data", [
    bytes.fromhex("04240005414243"),  # message_payload says 5, 3 remain
    bytes.fromhex("14000001"),  # vendor tag says 1, none remain
    # cloudhopper-smpp PduDecoderTest, decodeDeliverSmNetforsDeliveryReceipt...: length 0x41, 5 octets follow.
    bytes.fromhex("001e00413330303500"),
])
def test_a_tlv_length_past_the_end_is_rinvparlen(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_tlvs(data, 0, len(data))
    assert info.value.status == Status.ESME_RINVPARLEN


# ---- duplicates and order ---------------------------------------------------------------------------------------


def test_duplicates_are_kept_in_order_and_the_mapping_shows_the_first() -> None:
    data = _tlv(0x1401, b"one") + _tlv(0x0427, b"\x02") + _tlv(0x1401, b"two") + _tlv(0x0427, b"\x05")
    tlvs = decode_tlvs(data, 0, len(data))
    assert tlvs.items_in_order() == ((0x1401, b"one"), (0x0427, 2), (0x1401, b"two"), (0x0427, 5))
    assert tlvs["0x1401"] == b"one"
    assert tlvs["message_state"] == 2
    assert len(tlvs) == 2
    assert list(tlvs) == ["0x1401", "message_state"]
    assert dict(tlvs) == {"0x1401": b"one", "message_state": 2}
    assert encode_tlvs(tlvs) == data


def test_order_is_part_of_the_value() -> None:
    a = Tlvs(message_state=2, receipted_message_id="x")
    b = Tlvs(receipted_message_id="x", message_state=2)
    assert a != b
    assert encode_tlvs(a) != encode_tlvs(b)
    assert list(a) == ["message_state", "receipted_message_id"]


# ---- the Tlvs mapping -----------------------------------------------------------------------------------------


def test_construction_from_a_mapping_and_keywords_keeps_their_order() -> None:
    tlvs = Tlvs({"message_state": 2, "0x1400": b"v"}, receipted_message_id="r")
    assert tlvs.items_in_order() == ((0x0427, 2), (0x1400, b"v"), (0x001E, "r"))
    assert Tlvs.from_pairs(((0x0427, 2), (0x1400, b"v"), (0x001E, "r"))) == tlvs
    assert Tlvs({"0x001e": "r"}) == Tlvs(receipted_message_id="r")  # a hex name of a known tag is that tag


def test_an_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        Tlvs(no_such_tlv=1)
    with pytest.raises(KeyError):
        Tlvs({"0x10000": b""})
    with pytest.raises(KeyError):
        Tlvs({"0xZZ": b""})
    with pytest.raises(KeyError):
        Tlvs(message_state=2)["no_such_tlv"]
    with pytest.raises(KeyError):
        Tlvs(message_state=2)["receipted_message_id"]


def test_mapping_reads() -> None:
    tlvs = Tlvs(message_state=2, receipted_message_id="abc", network_error_code=b"\x03\x00\x01")
    assert tlvs["message_state"] == 2
    assert tlvs.get("receipted_message_id") == "abc"
    assert tlvs.get("sar_msg_ref_num") is None
    assert tlvs.get("no_such_tlv", "d") == "d"
    assert tlvs.get_int("message_state") == 2
    assert tlvs.get_int("receipted_message_id") is None
    assert tlvs.get_int("sar_msg_ref_num") is None
    assert tlvs.get_str("receipted_message_id") == "abc"
    assert tlvs.get_str("message_state") is None
    assert tlvs.get_bytes("network_error_code") == b"\x03\x00\x01"
    assert tlvs.get_bytes("receipted_message_id") is None
    assert "message_state" in tlvs
    assert "sar_msg_ref_num" not in tlvs
    assert "no_such_tlv" not in tlvs
    assert 0x0427 not in tlvs  # type: ignore[comparison-overlap]
    assert set(tlvs.keys()) == {"message_state", "receipted_message_id", "network_error_code"}
    assert len(tlvs) == 3


def test_emptiness() -> None:
    assert not NO_TLVS
    assert not Tlvs()
    assert Tlvs() == NO_TLVS
    assert len(NO_TLVS) == 0
    assert list(NO_TLVS) == []
    assert Tlvs(alert_on_message_delivery=b"")  # a present TLV with an empty value is still present


def test_replace_sets_appends_and_removes() -> None:
    tlvs = Tlvs({"0x1401": b"a", "message_state": 2})
    assert tlvs.replace(message_state=5).items_in_order() == ((0x1401, b"a"), (0x0427, 5))
    assert tlvs.replace(sar_msg_ref_num=9).items_in_order() == ((0x1401, b"a"), (0x0427, 2), (0x020C, 9))
    assert tlvs.replace(message_state=None).items_in_order() == ((0x1401, b"a"),)
    assert tlvs.replace(receipted_message_id=None) == tlvs
    assert tlvs.items_in_order() == ((0x1401, b"a"), (0x0427, 2))  # unchanged
    dup = Tlvs.from_pairs(((0x1401, b"a"), (0x1401, b"b")))
    assert dup.replace(**{"0x1401": b"c"}).items_in_order() == ((0x1401, b"c"), (0x1401, b"c"))
    assert not dup.replace(**{"0x1401": None})


def test_equality_hash_repr_and_pickle() -> None:
    a = Tlvs({"message_state": 2, "0x1400": b"v"})
    b = Tlvs.from_pairs(((0x0427, 2), (0x1400, b"v")))
    assert a == b and hash(a) == hash(b)
    assert a != Tlvs(message_state=2)
    assert a != {"message_state": 2, "0x1400": b"v"}
    assert repr(a) == "Tlvs(message_state=2, 0x1400=b'v')"
    assert pickle.loads(pickle.dumps(a)) == a
    assert {a: 1}[b] == 1


def test_names_and_tags() -> None:
    assert tag_of("receipted_message_id") == 0x001E
    assert tag_of("0x1400") == tag_of("0X1400") == 0x1400
    assert name_of(0x001E) == "receipted_message_id"
    assert name_of(0x1400) == "0x1400"
    assert name_of(0xABCD) == "0xabcd"
    for bad in ("", "0x", "0x10000", "x1400", "message-state"):
        with pytest.raises(KeyError):
            tag_of(bad)
