"""Codec errors: decoding raises only RemoteProtocolError with the status §5.1.3 names, encoding only EncodeError.

Also the leniencies real SMSCs need (a response without a body, a bind_resp holding only TLVs, a
receipted_message_id without its NULL), and the agreement of the compiled fast path with the interpreting
slow path on each of these inputs.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from smpp import (
    PDU_CLASSES,
    BindReceiverResp,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DataSm,
    DeliverSm,
    DistributionList,
    EncodeError,
    EnquireLink,
    GenericNack,
    LocalProtocolError,
    Pdu,
    QuerySmResp,
    RemoteProtocolError,
    SmeAddress,
    Status,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    UnsuccessSme,
    decode_pdu,
    encode_pdu,
)
from smpp._codec import decode_pdu_slow, encode_pdu_slow
from smpp._fields import CStr

ALL_CLASSES = sorted(PDU_CLASSES.values(), key=lambda c: c.command_id)


def _pdu(command_id: int, body: bytes, *, seq: int = 7, status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def _decode_error(data: bytes) -> RemoteProtocolError:
    """The error decode_pdu raises on `data`; the slow path must raise the same status."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(data)
    if len(data) >= 16 and int.from_bytes(data[:4], "big") == len(data) \
            and int.from_bytes(data[4:8], "big") in PDU_CLASSES:
        with pytest.raises(RemoteProtocolError) as slow:
            decode_pdu_slow(data)
        assert slow.value.status == info.value.status
        assert slow.value.field == info.value.field
    return info.value


def _encode_error(pdu: Pdu) -> EncodeError:
    """The error encode_pdu raises on `pdu`; the slow path must raise it for the same field."""
    with pytest.raises(EncodeError) as info:
        encode_pdu(pdu)
    with pytest.raises(EncodeError) as slow:
        encode_pdu_slow(pdu)
    assert slow.value.field == info.value.field
    return info.value


# A valid submit_sm body, cloudhopper-smpp PduDecoderTest decodeSubmitSm (20456, 40404 -> 44951361920).
SUBMIT_SM = bytes.fromhex("00000039000000040000000000004FE80001013430343034000101343439353133363139323000000000000001"
                          "000000084024232125262F3A")
SUBMIT_SM_BODY = SUBMIT_SM[16:]
SHORT_MESSAGE_AT = len(SUBMIT_SM_BODY) - 8  # the 8 octets after sm_length


# ---- framing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00" * 3, bytes.fromhex("0000001000000015000000000a342e")])
def test_fewer_than_16_octets_cannot_hold_a_header(data: bytes) -> None:
    err = _decode_error(data)
    assert err.status == Status.ESME_RINVCMDLEN
    assert err.framing
    assert err.sequence_number is None
    assert err.command_id is None


@pytest.mark.parametrize("data", [
    bytes.fromhex("0000001100000015000000000a342ee7"),  # says 17, is 16
    bytes.fromhex("0000000f00000006000000000000000000"),  # says 15 (below a header), is 17
    SUBMIT_SM + b"\x00",  # one octet more than it says
    SUBMIT_SM[:-1],  # one octet less than it says
    # mozes/smpp.pdu test_decode_command_length_too_short and test_decode_bad_message_length_msg_too_short.
    bytes.fromhex("0000000f000000060000000000000000"),
    bytes.fromhex("000000fd80000009000000000000000154534937353838000210000134"),
    # cloudhopper-smpp decodeSignedIntLength: a length with the top bit set.
    bytes.fromhex("F000001100000110000000000a342ee7"),
])
def test_command_length_not_the_pdu_size_is_a_framing_rinvcmdlen(data: bytes) -> None:
    err = _decode_error(data)
    assert err.status == Status.ESME_RINVCMDLEN
    assert err.framing
    assert err.sequence_number == int.from_bytes(data[12:16], "big")


@pytest.mark.parametrize("command_id", [0x00000110, 0x80000110, 0x0000000A, 0x8000000B, 0x00000104, 0xFFFFFFFF])
def test_an_unknown_command_id_is_rinvcmdid_with_the_sequence_number(command_id: int) -> None:
    # 0x110 and 0x80000110: cloudhopper-smpp decodeUnsupportedRequestCommandId / ...ResponseCommandId.
    # 0x0000000A is reserved and outbind (0x0B) has no response (§5.1.2.1).
    err = _decode_error(_pdu(command_id, b"", seq=0x0A342EE7))
    assert err.status == Status.ESME_RINVCMDID
    assert err.sequence_number == 0x0A342EE7
    assert err.command_id == command_id
    assert not err.framing


def test_after_an_unknown_command_the_next_pdu_in_the_buffer_decodes() -> None:
    # cloudhopper-smpp decodeBadPduButSkipAllDataInBuffer: 17 octets of an unknown command, then enquire_link.
    data = bytes.fromhex("0000001100000110000000000a342ee70F0000001000000015000000000a342ee7")
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(data, 0, 17)
    assert info.value.status == Status.ESME_RINVCMDID
    assert decode_pdu(data, 17) == EnquireLink(sequence_number=171192039)


# ---- C-Octet strings longer than their field --------------------------------------------------------------


def _cstr_cases() -> list[Any]:
    cases = []
    for cls in ALL_CLASSES:
        for f in cls.fields:
            if isinstance(f.spec, CStr):
                cases.append(pytest.param(cls, f.name, id=f"{cls.name}.{f.name}"))
    return cases


def _body_with(cls: type[Pdu], field: str, text: str) -> bytes:
    """The body of `cls` with `field` set to `text` and every other field at its default (which holds no 'A')."""
    extra: dict[str, Any] = {field: text}
    if cls is SubmitMulti:
        extra["dest_address"] = (DistributionList("list"),)
    return encode_pdu(cls(sequence_number=7, **extra))[16:]


@pytest.mark.parametrize(("cls", "field"), _cstr_cases())
def test_a_c_string_one_octet_too_long_answers_the_fields_status(cls: type[Pdu], field: str) -> None:
    spec = next(f.spec for f in cls.fields if f.name == field)
    assert isinstance(spec, CStr)
    longest = "A" * (spec.max_len - 1)
    body = _body_with(cls, field, longest)
    assert decode_pdu(_pdu(cls.command_id, body)).as_dict()[field] == longest
    at = body.index(longest.encode() + b"\0")
    too_long = body[:at] + b"A" + body[at:]
    err = _decode_error(_pdu(cls.command_id, too_long, seq=99))
    assert err.status == spec.bad
    assert err.field == field
    assert err.sequence_number == 99
    assert err.command_id == cls.command_id
    assert not err.framing
    assert str(err).startswith(f"{cls.name}.{field}: ")


def test_a_21_character_source_addr_is_rinvsrcadr() -> None:
    body = SUBMIT_SM_BODY.replace(b"40404\0", b"1" * 21 + b"\0")
    err = _decode_error(_pdu(0x04, body))
    assert (err.status, err.field) == (Status.ESME_RINVSRCADR, "source_addr")


def test_a_16_character_system_id_is_rinvsysid() -> None:
    body = b"s" * 16 + b"\0" + b"pw\0" + b"\0" + b"\x34\x00\x00" + b"\0"
    err = _decode_error(_pdu(0x02, body))
    assert (err.status, err.field) == (Status.ESME_RINVSYSID, "system_id")
    assert "bind_transmitter.system_id" in str(err)


def test_a_too_long_destination_in_submit_multi_is_rinvdstadr_and_dl_name_rinvdlname() -> None:
    head = b"\0" + b"\x01\x01" + b"1\0" + b"\x01"
    tail = b"\x00\x00\x00" + b"\0\0" + b"\x00\x00\x00\x00" + b"\x00"
    err = _decode_error(_pdu(0x21, head + b"\x01\x01\x01" + b"9" * 21 + b"\0" + tail))
    assert (err.status, err.field) == (Status.ESME_RINVDSTADR, "dest_address[0].destination_addr")
    err = _decode_error(_pdu(0x21, head + b"\x02" + b"d" * 21 + b"\0" + tail))
    assert (err.status, err.field) == (Status.ESME_RINVDLNAME, "dest_address[0].dl_name")


# ---- the body ends inside a field --------------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(len(SUBMIT_SM_BODY)))
def test_a_body_ending_inside_a_field_is_rinvcmdlen(cut: int) -> None:
    err = _decode_error(_pdu(0x04, SUBMIT_SM_BODY[:cut], seq=20456))
    # Inside short_message's octets, sm_length says more than there is: §5.1.3 ESME_RINVMSGLEN.
    expected = Status.ESME_RINVMSGLEN if cut >= SHORT_MESSAGE_AT else Status.ESME_RINVCMDLEN
    assert err.status == expected
    assert err.sequence_number == 20456
    assert not err.framing


def test_a_request_without_a_body_is_rinvcmdlen() -> None:
    err = _decode_error(_pdu(0x04, b""))
    assert (err.status, err.field) == (Status.ESME_RINVCMDLEN, "service_type")


def test_a_response_ending_inside_a_field_is_rinvcmdlen() -> None:
    # query_sm_resp whose final_date has no NULL before the end.
    err = _decode_error(_pdu(0x80000003, b"m\0" + b"2401"))
    assert (err.status, err.field) == (Status.ESME_RINVCMDLEN, "final_date")
    # cloudhopper-smpp decodeSubmitSmRespWithNoNullByteForMessageId: "9" and no NULL.
    err = _decode_error(bytes.fromhex("0000001180000004000000000a342ee139"))
    assert err.status == Status.ESME_RINVCMDLEN


@pytest.mark.parametrize(("n", "octets"), [(255, 255), (200, 100)])
def test_sm_length_above_254_or_past_the_end_is_rinvmsglen(n: int, octets: int) -> None:
    # §4.4.1: short_message is 0 to 254 octets. cloudhopper-smpp's decodeSubmitSmWith255ByteShortMessage accepts
    # 255 octets; this codec keeps to the spec and answers ESME_RINVMSGLEN.
    head = SUBMIT_SM_BODY[:SHORT_MESSAGE_AT - 1]
    err = _decode_error(_pdu(0x04, head + bytes((n,)) + b"L" * octets))
    assert (err.status, err.field) == (Status.ESME_RINVMSGLEN, "short_message")


def test_sm_length_longer_than_the_message_is_rinvmsglen() -> None:
    # cloudhopper-smpp decodeDeliverSMWithCorrectTotalByteLengthButInvalidShortMessageLength: sm_length 16, 8 octets.
    data = bytes.fromhex("00000039000000050000000000000001000101393939393139393134353933000000363436340000000000000000"
                         "080010c1e1e9edf3faf1fc")
    err = _decode_error(data)
    assert (err.status, err.field, err.sequence_number) == (Status.ESME_RINVMSGLEN, "short_message", 1)


# ---- TLVs inside a PDU --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", [b"\x02", b"\x02\x04", b"\x02\x04\x00"])
def test_a_cut_tlv_header_is_rinvoptparstream(tail: bytes) -> None:
    err = _decode_error(_pdu(0x04, SUBMIT_SM_BODY + _tlv(0x0204, b"\x00\x01") + tail, seq=5))
    assert (err.status, err.field, err.sequence_number) == (Status.ESME_RINVOPTPARSTREAM, "tlvs", 5)
    assert err.command_id == 0x04
    assert str(err).startswith("submit_sm.")


def test_a_bind_resp_ending_in_the_middle_of_a_tlv_header() -> None:
    # mozes/smpp.pdu test_decode_bad_message_ends_in_middle_of_option (it answers ESME_RINVMSGLEN; §5.1.3 has
    # the TLV-specific code).
    err = _decode_error(bytes.fromhex("0000001b8000000900000000000000015453493735383800021000"))
    assert err.status == Status.ESME_RINVOPTPARSTREAM


def test_a_tlv_length_past_the_end_is_rinvparlen() -> None:
    # cloudhopper-smpp decodeDeliverSmNetforsDeliveryReceiptTriggeredErrorInLegacySmppLibrary (disabled there):
    # receipted_message_id says 0x41 octets and 5 follow.
    data = bytes.fromhex(
        "000000a40000000500000000000000050001013233343830333337363831353100050056414e534f00040000000004000000636964"
        "3a30303030303033303035207375623a30303120646c7672643a303031207375626d697420646174653a3130303131383134333120"
        "646f6e6520646174653a3130303131383134333120737461743a44454c49565244206572723a3030302074650427000102001e0041"
        "3330303500")
    err = _decode_error(data)
    assert (err.status, err.field, err.sequence_number) == (Status.ESME_RINVPARLEN, "tlvs", 5)


@pytest.mark.parametrize("value", [b"", b"\x02\x00", b"\x00\x00\x00\x02"])
def test_an_integer_tlv_of_the_wrong_size_is_rinvparlen(value: bytes) -> None:
    err = _decode_error(_pdu(0x04, SUBMIT_SM_BODY + _tlv(0x0427, value)))
    assert (err.status, err.field) == (Status.ESME_RINVPARLEN, "tlvs")


# ---- submit_multi lists -------------------------------------------------------------------------------------


SUBMIT_MULTI_HEAD = b"\0" + b"\x01\x01" + b"447700900001\0"
SUBMIT_MULTI_TAIL = b"\x00\x00\x00" + b"\0\0" + b"\x01\x00\x00\x00" + b"\x02hi"


@pytest.mark.parametrize("flag", [0, 3, 0xFF])
def test_a_bad_dest_flag_is_rinvdestflag(flag: int) -> None:
    dests = b"\x02" + b"\x01\x01\x01" + b"447700900002\0" + bytes((flag,)) + b"\x01\x01" + b"5678\0"
    err = _decode_error(_pdu(0x21, SUBMIT_MULTI_HEAD + dests + SUBMIT_MULTI_TAIL))
    assert (err.status, err.field) == (Status.ESME_RINVDESTFLAG, "dest_address[1].dest_flag")


@pytest.mark.parametrize("count", [0, 255])
def test_number_of_dests_of_0_or_above_254_is_rinvnumdests(count: int) -> None:
    dests = bytes((count,)) + (b"\x02" + b"dl\0") * count
    err = _decode_error(_pdu(0x21, SUBMIT_MULTI_HEAD + dests + SUBMIT_MULTI_TAIL))
    assert (err.status, err.field) == (Status.ESME_RINVNUMDESTS, "number_of_dests")


def test_254_destinations_decode() -> None:
    dests = bytes((254,)) + b"\x01\x01\x01" + b"447700900002\0" + (b"\x02" + b"dl\0") * 253
    pdu = decode_pdu(_pdu(0x21, SUBMIT_MULTI_HEAD + dests + SUBMIT_MULTI_TAIL))
    assert isinstance(pdu, SubmitMulti)
    assert len(pdu.dest_address) == 254
    assert pdu.dest_address[0] == SmeAddress(1, 1, "447700900002")
    assert pdu.dest_address[253] == DistributionList("dl")
    assert encode_pdu(pdu) == _pdu(0x21, SUBMIT_MULTI_HEAD + dests + SUBMIT_MULTI_TAIL)


def test_submit_multi_resp_cut_inside_an_unsuccess_entry_is_rinvcmdlen() -> None:
    body = b"mid\0" + b"\x01" + b"\x01\x01" + b"5678\0" + b"\x00\x00"
    err = _decode_error(_pdu(0x80000021, body))
    assert (err.status, err.field) == (Status.ESME_RINVCMDLEN, "unsuccess_sme[0].error_status_code")


# ---- leniency -----------------------------------------------------------------------------------------------


def test_a_response_with_no_body_decodes_to_its_defaults() -> None:
    # cloudhopper-smpp decodeSubmitSmRespWithNoMessageId; mozes/smpp.pdu test_SubmitSMResp_error_has_no_body.
    assert decode_pdu(bytes.fromhex("0000001080000004000000000a342ee1")) == SubmitSmResp(sequence_number=171192033)
    assert decode_pdu(bytes.fromhex("000000108000000400000014000004d2")) == SubmitSmResp(
        command_status=Status.ESME_RMSGQFUL, sequence_number=1234)
    for cls in ALL_CLASSES:
        if cls.command_id & 0x8000_0000:
            pdu = decode_pdu(_pdu(cls.command_id, b"", status=Status.ESME_RSYSERR))
            assert pdu == cls(command_status=Status.ESME_RSYSERR, sequence_number=7)
            assert decode_pdu_slow(_pdu(cls.command_id, b"", status=Status.ESME_RSYSERR)) == pdu


def test_a_response_stopping_after_some_fields_takes_defaults_for_the_rest() -> None:
    data = _pdu(0x80000003, b"mid-1\0")
    assert decode_pdu(data) == QuerySmResp(sequence_number=7, message_id="mid-1")
    assert decode_pdu_slow(data) == decode_pdu(data)


def test_an_error_bind_resp_with_only_sc_interface_version_and_no_system_id() -> None:
    data = _pdu(0x80000009, _tlv(0x0210, b"\x34"), status=Status.ESME_RBINDFAIL, seq=3)
    expected = BindTransceiverResp(command_status=Status.ESME_RBINDFAIL, sequence_number=3,
                                   tlvs=Tlvs(sc_interface_version=0x34))
    assert decode_pdu(data) == expected
    assert decode_pdu_slow(data) == expected
    for cid, cls in ((0x80000001, BindReceiverResp), (0x80000002, BindTransmitterResp)):
        assert decode_pdu(_pdu(cid, _tlv(0x0210, b"\x34"))) == cls(sequence_number=7,
                                                                    tlvs=Tlvs(sc_interface_version=0x34))


def test_a_receipted_message_id_without_its_nul_is_accepted() -> None:
    data = _pdu(0x05, SUBMIT_SM_BODY + _tlv(0x001E, b"38601fa") + _tlv(0x0427, b"\x02"))
    pdu = decode_pdu(data)
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs["receipted_message_id"] == "38601fa"
    assert pdu.tlvs["message_state"] == 2
    assert decode_pdu_slow(data) == pdu


def test_a_request_with_a_command_status_decodes() -> None:
    # §5.1.3 says a request's command_status should be NULL; decoding does not police the peer's header.
    assert decode_pdu(_pdu(0x15, b"", status=0x45)) == EnquireLink(command_status=0x45, sequence_number=7)


def test_decoding_accepts_any_buffer_and_a_window_in_it() -> None:
    data = b"\xff" * 5 + SUBMIT_SM + b"\xee" * 3
    expected = decode_pdu(SUBMIT_SM)
    assert decode_pdu(data, 5, 5 + len(SUBMIT_SM)) == expected
    assert decode_pdu(bytearray(SUBMIT_SM)) == expected  # type: ignore[arg-type]
    assert decode_pdu(memoryview(SUBMIT_SM)) == expected  # type: ignore[arg-type]


# ---- encoding errors name the field ---------------------------------------------------------------------------


@pytest.mark.parametrize(("pdu", "field"), [
    (BindTransmitter(system_id="s" * 16), "bind_transmitter.system_id"),
    (BindTransmitter(password="p" * 9), "bind_transmitter.password"),
    (SubmitSm(short_message=b"x" * 255), "submit_sm.short_message"),
    (SubmitSm(short_message=b"x" * 300), "submit_sm.short_message"),
    (SubmitSm(source_addr="1" * 21), "submit_sm.source_addr"),
    (SubmitSm(destination_addr="\u20ac"), "submit_sm.destination_addr"),
    (SubmitSm(source_addr="\U0001F600"), "submit_sm.source_addr"),
    (BindTransmitter(system_id="a\0b"), "bind_transmitter.system_id"),
    (SubmitSm(esm_class=256), "submit_sm.esm_class"),
    (SubmitSm(esm_class=-1), "submit_sm.esm_class"),
    (SubmitSm(sequence_number=1 << 32), "submit_sm.sequence_number"),
    (SubmitSm(sequence_number=-1), "submit_sm.sequence_number"),
    (GenericNack(command_status=1 << 32), "generic_nack.command_status"),
    (SubmitSm(esm_class="1"), "submit_sm.esm_class"),  # type: ignore[arg-type]
    (SubmitSm(esm_class=1.0), "submit_sm.esm_class"),  # type: ignore[arg-type]
    (SubmitSm(esm_class=None), "submit_sm.esm_class"),  # type: ignore[arg-type]
    (SubmitSm(source_addr=1), "submit_sm.source_addr"),  # type: ignore[arg-type]
    (SubmitSm(source_addr=b"1"), "submit_sm.source_addr"),  # type: ignore[arg-type]
    (SubmitSm(short_message="text"), "submit_sm.short_message"),  # type: ignore[arg-type]
    (SubmitSm(tlvs=Tlvs(message_state=300)), "tlvs.message_state"),
    (DataSm(source_addr="1" * 65), "data_sm.source_addr"),
    (SubmitMulti(dest_address=(SmeAddress(1, 1, "1" * 21),)), "submit_multi.dest_address[0].destination_addr"),
    (SubmitMulti(dest_address=(DistributionList("d" * 21),)), "submit_multi.dest_address[0].dl_name"),
    (SubmitMulti(dest_address=(SmeAddress(256, 1, "1"),)), "submit_multi.dest_address[0].dest_addr_ton"),
    (SubmitMulti(dest_address=(DistributionList("ok"), "447700900001")),  # type: ignore[arg-type]
     "submit_multi.dest_address[1]"),
    (SubmitMulti(dest_address=(DistributionList("d"),) * 255), "submit_multi.dest_address"),
    (SubmitMulti(dest_address=DistributionList("d")), "submit_multi.dest_address"),  # type: ignore[arg-type]
    (SubmitMultiResp(unsuccess_sme=(UnsuccessSme(1, 1, "1", 1 << 32),)),
     "submit_multi_resp.unsuccess_sme[0].error_status_code"),
    (SubmitMultiResp(unsuccess_sme=(SmeAddress(),)), "submit_multi_resp.unsuccess_sme[0]"),  # type: ignore[arg-type]
])
def test_encoding_refuses_a_value_that_does_not_fit_and_names_the_field(pdu: Pdu, field: str) -> None:
    err = _encode_error(pdu)
    assert err.field == field
    assert str(err).startswith(field + ": ")
    assert isinstance(err, LocalProtocolError)
    assert isinstance(err, ValueError)


def test_the_longest_values_that_fit_encode() -> None:
    pdu = SubmitSm(service_type="s" * 5, source_addr="1" * 20, destination_addr="2" * 20,
                   schedule_delivery_time="0" * 16, validity_period="0" * 16, short_message=b"x" * 254,
                   esm_class=255, sequence_number=0xFFFFFFFF, command_status=0xFFFFFFFF)
    data = encode_pdu(pdu)
    assert data == encode_pdu_slow(pdu)
    assert decode_pdu(data) == pdu
    bind = BindTransmitter(system_id="s" * 15, password="p" * 8, system_type="t" * 12, address_range="a" * 40)
    assert decode_pdu(encode_pdu(bind)) == bind
    # C-Octet strings carry Latin-1 octets.
    latin = SubmitSm(source_addr="caf\xe9")
    assert encode_pdu(latin)[17:22] == b"\x00\x00caf"
    assert decode_pdu(encode_pdu(latin)) == latin


def test_octet_fields_accept_bytes_like_values() -> None:
    expected = encode_pdu(SubmitSm(short_message=b"abc"))
    assert encode_pdu(SubmitSm(short_message=bytearray(b"abc"))) == expected  # type: ignore[arg-type]
    assert encode_pdu_slow(SubmitSm(short_message=bytearray(b"abc"))) == expected  # type: ignore[arg-type]


def test_a_bool_encodes_as_its_integer_on_both_paths() -> None:
    # The codec takes bool as int (struct.pack does: True is 1); both paths must agree on it.
    for pdu, plain in [(SubmitSm(esm_class=True), SubmitSm(esm_class=1)),
                       (GenericNack(sequence_number=True), GenericNack(sequence_number=1)),
                       (SubmitSm(command_status=False), SubmitSm()),
                       (SubmitSm(tlvs=Tlvs(message_state=True)), SubmitSm(tlvs=Tlvs(message_state=1)))]:
        assert encode_pdu(pdu) == encode_pdu_slow(pdu) == encode_pdu(plain)


@pytest.mark.parametrize("tlvs", [{}, None, (), {"message_state": 2}])
def test_tlvs_that_are_not_a_tlvs_are_refused_on_either_path(tlvs: object) -> None:
    assert _encode_error(SubmitSm(tlvs=tlvs)).field == "submit_sm.tlvs"  # type: ignore[arg-type]


def test_an_empty_tlvs_that_is_not_the_shared_one_encodes_to_nothing() -> None:
    assert encode_pdu(SubmitSm(tlvs=Tlvs())) == encode_pdu(SubmitSm()) == encode_pdu_slow(SubmitSm(tlvs=Tlvs()))


def test_submit_multi_without_destinations_is_refused() -> None:
    # §4.5.1: number_of_dests is 1 to 254; decode_pdu answers 0 with ESME_RINVNUMDESTS, so it is not sent.
    assert _encode_error(SubmitMulti()).field == "submit_multi.dest_address"


# ---- once codec bugs, now regression tests ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"\x00" * 3, bytes.fromhex("0000001000000110000000000a342ee7"),
                                  bytes.fromhex("0000001100000015000000000a342ee7")])
def test_the_slow_path_checks_the_header_like_the_fast_path(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as fast:
        decode_pdu(data)
    with pytest.raises(RemoteProtocolError) as slow:
        decode_pdu_slow(data)
    assert slow.value.status == fast.value.status


def test_a_none_tlv_value_is_an_encode_error_on_both_paths() -> None:
    # Found by the fuzz test: the fast TLV encoder took len() of None for a C-Octet string tag.
    pdu = SubmitSm(tlvs=Tlvs(additional_status_info_text=None))  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match=r"tlvs\.additional_status_info_text"):
        encode_pdu(pdu)
    with pytest.raises(EncodeError, match=r"tlvs\.additional_status_info_text"):
        encode_pdu_slow(pdu)
