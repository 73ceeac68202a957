"""python-smpplib 2.2.4 (an implementation we did not write) and our codec read each other's bytes alike.

Facts from ../shared/PEERS.md: make_pdu ignores `sequence=` (set .sequence after), parse_pdu needs `client=`.
"""

from __future__ import annotations

from typing import Any

import pytest

from smpp import (
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    Concatenation,
    DeliverSm,
    EsmClass,
    Pdu,
    ReferenceCounter,
    Status,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    decode_pdu,
    encode_message,
    encode_pdu,
    split_message,
)
from tests.conftest import require_peer

pytestmark = pytest.mark.interop

try:
    import smpplib.smpp as smpplib_smpp
except ImportError:  # pragma: no cover - the test extras install it
    smpplib_smpp = None


class _Client:
    sequence = 1

    def next_sequence(self) -> int:
        return 1


def theirs(command: str, sequence: int, **fields: Any) -> bytes:
    require_peer("python-smpplib", smpplib_smpp is not None, "pip install smpplib==2.2.4")
    pdu = smpplib_smpp.make_pdu(command, client=_Client(), **fields)
    pdu.sequence = sequence
    return pdu.generate()  # type: ignore[no-any-return]


def parsed_by_them(data: bytes) -> Any:
    require_peer("python-smpplib", smpplib_smpp is not None, "pip install smpplib==2.2.4")
    return smpplib_smpp.parse_pdu(data, client=_Client())


def as_text(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def assert_they_read(pdu: Pdu, command: str) -> None:
    """smpplib decodes our bytes of `pdu` to the same command, header and field values."""
    got = parsed_by_them(encode_pdu(pdu))
    assert got.command == command
    assert got.sequence == pdu.sequence_number
    assert got.status == pdu.command_status
    for f in type(pdu).fields:
        ours = pdu.as_dict()[f.name]
        value = getattr(got, f.name)
        if isinstance(ours, str):
            assert as_text(value) in (ours, None if ours == "" else ours), f.name
        else:
            assert value == ours, f.name
    for name, value in pdu.tlvs.items():
        got_value = getattr(got, name)
        assert (as_text(got_value) if isinstance(value, str) else got_value) == value, name


GSM_TEXT = "Hello @ £5 {braces} €uro"
UCS2_TEXT = "Привет, мир 😀"


def gsm_submit() -> SubmitSm:
    enc = encode_message(GSM_TEXT)
    return SubmitSm(sequence_number=11, source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
                    destination_addr="447911123456", registered_delivery=1, data_coding=enc.data_coding,
                    short_message=enc.data)


def test_they_read_our_submit_sm_gsm() -> None:
    assert_they_read(gsm_submit(), "submit_sm")


def test_they_read_our_submit_sm_ucs2() -> None:
    enc = encode_message(UCS2_TEXT)
    assert enc.data_coding == 8
    pdu = SubmitSm(sequence_number=12, source_addr="ACME", destination_addr="447911123456",
                   data_coding=enc.data_coding, short_message=enc.data)
    assert_they_read(pdu, "submit_sm")
    got = parsed_by_them(encode_pdu(pdu))
    assert got.short_message.decode("utf-16-be") == UCS2_TEXT


@pytest.mark.parametrize("method", [Concatenation.UDH8, Concatenation.UDH16, Concatenation.SAR])
def test_they_read_each_part_of_our_long_message(method: Concatenation) -> None:
    text = "long message " * 30
    parts = split_message(encode_message(text), method, ReferenceCounter().next("447911123456"))
    assert len(parts) > 1
    for i, part in enumerate(parts, start=1):
        tlvs = Tlvs() if part.sar is None else Tlvs(sar_msg_ref_num=part.sar[0], sar_total_segments=part.sar[1],
                                                    sar_segment_seqnum=part.sar[2])
        pdu = SubmitSm(sequence_number=100 + i, destination_addr="447911123456",
                       esm_class=EsmClass.UDHI if part.udhi else 0, short_message=part.short_message, tlvs=tlvs)
        assert_they_read(pdu, "submit_sm")


def test_they_read_our_receipt() -> None:
    pdu = DeliverSm(sequence_number=13, source_addr="447911123456", destination_addr="ACME",
                    esm_class=EsmClass.DELIVERY_RECEIPT,
                    short_message=b"id:0A1B sub:001 dlvrd:001 submit date:2611241200 done date:2611241201 "
                                  b"stat:DELIVRD err:000 text:hello",
                    tlvs=Tlvs(receipted_message_id="0A1B", message_state=2, network_error_code=b"\x03\x00\x00"))
    assert_they_read(pdu, "deliver_sm")


@pytest.mark.parametrize("pdu", [
    BindTransmitter(sequence_number=1, system_id="esme", password="pw", system_type="VMA", addr_ton=1, addr_npi=1),
    BindTransceiver(sequence_number=2, system_id="x" * 15, password="p" * 8, address_range="^447"),
    BindTransceiverResp(sequence_number=2, system_id="SMSC"),
    BindReceiverResp(command_status=Status.ESME_RINVPASWD, sequence_number=3),
    SubmitSmResp(sequence_number=4, message_id="1234567890"),
], ids=lambda p: p.name)
def test_they_read_our_binds_and_resps(pdu: Pdu) -> None:
    assert_they_read(pdu, pdu.name)


def test_we_read_their_submit_sm_byte_for_byte() -> None:
    enc = encode_message(GSM_TEXT)
    data = theirs("submit_sm", 11, source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
                  destination_addr="447911123456", registered_delivery=1, data_coding=enc.data_coding,
                  short_message=enc.data)
    assert decode_pdu(data) == gsm_submit()
    assert encode_pdu(decode_pdu(data)) == data


def test_we_read_their_ucs2_submit_sm() -> None:
    data = theirs("submit_sm", 5, destination_addr="447911123456", data_coding=8,
                  short_message=UCS2_TEXT.encode("utf-16-be"))
    pdu = decode_pdu(data)
    assert isinstance(pdu, SubmitSm)
    assert pdu.data_coding == 8 and pdu.short_message.decode("utf-16-be") == UCS2_TEXT


def test_we_read_their_receipt() -> None:
    data = theirs("deliver_sm", 9, source_addr="447911123456", destination_addr="ACME", esm_class=4,
                  short_message=b"id:77 stat:UNDELIV err:001", receipted_message_id="77", message_state=5,
                  network_error_code=b"\x03\x00\x01")
    pdu = decode_pdu(data)
    assert isinstance(pdu, DeliverSm)
    assert pdu.esm_class == 4
    assert pdu.tlvs.get_str("receipted_message_id") == "77"
    assert pdu.tlvs.get_int("message_state") == 5
    assert pdu.tlvs.get_bytes("network_error_code") == b"\x03\x00\x01"


@pytest.mark.parametrize(("command", "fields", "cls", "expected"), [
    ("bind_transceiver", {"system_id": "abc", "password": "pw", "system_type": "", "interface_version": 0x34,
                          "addr_ton": 0, "addr_npi": 0, "address_range": ""},
     BindTransceiver, {"system_id": "abc", "password": "pw", "interface_version": 0x34}),
    ("bind_transmitter_resp", {"system_id": "SMSC"}, None, {"system_id": "SMSC"}),
    ("submit_sm_resp", {"message_id": "94258431594"}, SubmitSmResp, {"message_id": "94258431594"}),
    ("enquire_link", {}, None, {}),
    ("unbind", {}, None, {}),
])
def test_we_read_their_binds_and_resps(command: str, fields: dict[str, Any], cls: type[Pdu] | None,
                                       expected: dict[str, Any]) -> None:
    data = theirs(command, 21, **fields)
    pdu = decode_pdu(data)
    assert pdu.name == command and pdu.sequence_number == 21
    for k, v in expected.items():
        assert pdu.as_dict()[k] == v
    assert encode_pdu(pdu) == data
