"""`smppgw pdu decode` and `smppgw pdu encode`: what operators debug captures with."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.cli import main
from smpp import DeliverSm, EsmClass, SubmitSm, Tlvs, decode_pdu, encode_pdu

SUBMIT = SubmitSm(sequence_number=2, source_addr="ACME", destination_addr="447911123456", data_coding=8,
                  short_message="Привет".encode("utf-16-be"))
RECEIPT = DeliverSm(sequence_number=3, esm_class=EsmClass.DELIVERY_RECEIPT, short_message=b"id:1 stat:DELIVRD",
                    tlvs=Tlvs({"receipted_message_id": "1", "message_state": 2, "0x1403": b"ab"}))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_prints_one_json_object_per_pdu(capsys: pytest.CaptureFixture[str]) -> None:
    wire = (encode_pdu(SUBMIT) + encode_pdu(RECEIPT)).hex()
    code, out, _ = run(capsys, "pdu", "decode", wire)
    assert code == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["command"] == "submit_sm" and first["destination_addr"] == "447911123456"
    assert first["decoded"] == {"text": "Привет"}
    assert second["tlvs"] == {"receipted_message_id": "1", "message_state": 2, "0x1403": {"hex": "6162"}}
    assert second["command_status"] == "ESME_ROK"


def test_decode_then_encode_gives_the_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    wire = encode_pdu(SUBMIT) + encode_pdu(RECEIPT)
    _, out, _ = run(capsys, "pdu", "decode", wire.hex())
    code, hexed, _ = run(capsys, "pdu", "encode", out)
    assert code == 0
    assert bytes.fromhex("".join(hexed.split())) == wire


def test_decode_accepts_spaces_colons_and_stdin(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spaced = ":".join(f"{b:02x}" for b in encode_pdu(SUBMIT))
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO(spaced[:40] + "\n" + spaced[40:]))
    code, out, _ = run(capsys, "pdu", "decode", "-")
    assert code == 0 and json.loads(out)["source_addr"] == "ACME"


def test_a_bad_pdu_is_reported_with_its_status_and_the_rest_still_decodes(capsys: pytest.CaptureFixture[str]) -> None:
    unknown = "000000100000009900000000000000aa"
    code, out, _ = run(capsys, "pdu", "decode", unknown + encode_pdu(SUBMIT).hex())
    first, second = (json.loads(line) for line in out.splitlines())
    assert code == 1
    assert first["status"] == "ESME_RINVCMDID" and first["sequence_number"] == 170
    assert second["command"] == "submit_sm"


def test_bad_framing_stops_with_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "pdu", "decode", "0000000800000004")
    assert code == 1 and json.loads(out)["status"] == "ESME_RINVCMDLEN"


def test_encode_names_the_bad_field(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "pdu", "encode", json.dumps({"command": "bind_transmitter", "system_id": "x" * 16}))
    assert code == 1 and out == ""
    assert "bind_transmitter.system_id" in err


def test_the_console_script_is_installed() -> None:
    wire = encode_pdu(RECEIPT).hex()
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "pdu", "decode", wire], capture_output=True, text=True,
                          check=True)
    assert decode_pdu(bytes.fromhex(wire)) == RECEIPT
    assert json.loads(done.stdout)["esm_class"] == 4
