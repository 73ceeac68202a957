"""Wireshark's SMPP dissector (Debian tshark) reads a capture of PDUs we encoded: same fields, no expert errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from smpp import (
    BindTransceiver,
    BindTransceiverResp,
    CancelSm,
    DataSm,
    DeliverSm,
    DistributionList,
    EnquireLink,
    GenericNack,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    SmeAddress,
    Status,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    UnsuccessSme,
    encode_pdu,
)
from tests.conftest import require_command

pytestmark = pytest.mark.interop

PDUS: list[Pdu] = [
    BindTransceiver(sequence_number=1, system_id="esme01", password="secret", system_type="VMA", addr_ton=1),
    BindTransceiverResp(sequence_number=1, system_id="SMSC", tlvs=Tlvs(sc_interface_version=0x34)),
    SubmitSm(sequence_number=2, source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
             destination_addr="447911123456", registered_delivery=1, short_message=b"hello world"),
    SubmitSm(sequence_number=3, source_addr="4479", destination_addr="447911123456", data_coding=8,
             esm_class=0x40, short_message=b"\x05\x00\x03\x2a\x02\x01" + "Жук".encode("utf-16-be")),
    SubmitSm(sequence_number=4, source_addr="4479", destination_addr="447911123456",
             tlvs=Tlvs(sar_msg_ref_num=300, sar_total_segments=2, sar_segment_seqnum=2,
                       message_payload=b"long text in a payload")),
    SubmitSmResp(sequence_number=2, message_id="0A1B2C3D"),
    SubmitSmResp(command_status=Status.ESME_RTHROTTLED, sequence_number=3),
    DeliverSm(sequence_number=5, source_addr="447911123456", destination_addr="ACME", esm_class=0x04,
              short_message=b"id:0A1B2C3D sub:001 dlvrd:001 submit date:2611241200 done date:2611241201 "
                            b"stat:DELIVRD err:000 text:hello world",
              tlvs=Tlvs(receipted_message_id="0A1B2C3D", message_state=2, network_error_code=b"\x03\x00\x00")),
    SubmitMulti(sequence_number=6, source_addr="ACME",
                dest_address=(SmeAddress(1, 1, "447911123456"), DistributionList("friends")),
                short_message=b"to many"),
    SubmitMultiResp(sequence_number=6, message_id="m1", unsuccess_sme=(UnsuccessSme(1, 1, "447900000000", 0x0B),)),
    DataSm(sequence_number=7, source_addr="ACME", destination_addr="447911123456",
           tlvs=Tlvs(message_payload=b"data")),
    QuerySm(sequence_number=8, message_id="0A1B2C3D", source_addr="ACME"),
    QuerySmResp(sequence_number=8, message_id="0A1B2C3D", final_date="261124120100000+", message_state=2),
    CancelSm(sequence_number=9, message_id="0A1B2C3D", source_addr="ACME", destination_addr="447911123456"),
    ReplaceSm(sequence_number=10, message_id="0A1B2C3D", source_addr="ACME", short_message=b"new"),
    EnquireLink(sequence_number=11),
    GenericNack(command_status=Status.ESME_RINVCMDID, sequence_number=12),
]


def dissect(tmp_path: Path, pdus: list[Pdu], fields: list[str]) -> list[list[str]]:
    text2pcap = require_command("text2pcap", "wireshark-common")
    tshark = require_command("tshark", "tshark")
    dump = tmp_path / "pdus.txt"
    with dump.open("w") as f:
        for pdu in pdus:  # one packet per PDU: offsets restart at 0
            data = encode_pdu(pdu)
            for i in range(0, len(data), 16):
                f.write(f"{i:06x} {' '.join(f'{b:02x}' for b in data[i:i + 16])}\n")
    pcap = tmp_path / "pdus.pcap"
    subprocess.run([text2pcap, "-q", "-T", "40000,2775", str(dump), str(pcap)], check=True)
    out = subprocess.run(
        [tshark, "-r", str(pcap), "-d", "tcp.port==2775,smpp", "-T", "fields", "-E", "separator=|",
         "-E", "occurrence=a", *(x for f in fields for x in ("-e", f))],
        check=True, capture_output=True, text=True,
    ).stdout
    return [line.split("|") for line in out.splitlines()]


def test_every_pdu_dissects_without_expert_errors(tmp_path: Path) -> None:
    rows = dissect(tmp_path, PDUS, ["smpp.command_id", "smpp.sequence_number", "smpp.command_length",
                                    "_ws.expert", "_ws.malformed"])
    assert len(rows) == len(PDUS)
    for pdu, (cid, seq, length, expert, malformed) in zip(PDUS, rows, strict=True):
        assert int(cid, 16) == pdu.command_id, pdu
        assert int(seq) == pdu.sequence_number
        assert int(length) == len(encode_pdu(pdu))
        assert expert == "" and malformed == "", f"{pdu.name}: expert={expert!r} malformed={malformed!r}"


def test_dissected_fields_match_ours(tmp_path: Path) -> None:
    rows = dissect(tmp_path, PDUS, ["smpp.system_id", "smpp.source_addr", "smpp.destination_addr", "smpp.message_id",
                                    "smpp.receipted_message_id", "smpp.message_state", "smpp.sar_msg_ref_num",
                                    "smpp.network_error.type", "smpp.dl_name", "smpp.error_status_code",
                                    "smpp.SC_interface_version", "smpp.command_status"])
    by_seq = dict(zip(range(len(PDUS)), rows, strict=True))
    bind = by_seq[0]
    assert bind[0] == "esme01"
    assert by_seq[1][10] in ("0x34", "52") or by_seq[1][10].startswith("Version")
    submit = by_seq[2]
    assert (submit[1], submit[2]) == ("ACME", "447911123456")
    assert by_seq[4][6] == "300"
    assert by_seq[5][3] == "0A1B2C3D"
    assert int(by_seq[6][11], 16) == Status.ESME_RTHROTTLED
    receipt = by_seq[7]
    assert receipt[4] == "0A1B2C3D" and receipt[5] == "2" and receipt[7] == "3"
    multi = by_seq[8]
    assert "447911123456" in multi[2] and multi[8] == "friends"
    assert int(by_seq[9][9], 16) == 0x0B
