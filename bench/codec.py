"""Codec rates on one core: ours against python-smpplib 2.2.4 in the same run, and the GSM 03.38 encoder.

Usage: .venv/bin/python bench/codec.py [--seconds S]

Prints encodes and decodes per second of a submit_sm and of a deliver_sm receipt (with receipted_message_id,
message_state and network_error_code TLVs) for both codecs and the ratio, then the GSM 03.38 encoder's rate
for 160-character texts. Each figure is the best of several timed rounds (the machine is shared and noisy).
The process is pinned to one CPU where the OS allows it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib.consts
import smpplib.smpp
from _timing import rate  # bench/, the script's directory, is on sys.path

from smpp import Alphabet, DeliverSm, EsmClass, SubmitSm, Tlvs, decode_pdu, encode_pdu, encode_text

RECEIPT_TEXT = (b"id:0123456789 sub:001 dlvrd:001 submit date:2611241200 done date:2611241201 "
                b"stat:DELIVRD err:000 text:hello world")


class _Client:
    """What smpplib's make_pdu/parse_pdu need from a client (see PEERS.md)."""

    sequence = 1

    def next_sequence(self) -> int:
        return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure (default 2)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    client = _Client()
    ours_submit = SubmitSm(sequence_number=1, source_addr_ton=1, source_addr_npi=1, source_addr="447911123456",
                           dest_addr_ton=1, dest_addr_npi=1, destination_addr="447922334455", registered_delivery=1,
                           short_message=b"hello world this is a test message")
    ours_receipt = DeliverSm(sequence_number=1, source_addr_ton=1, source_addr_npi=1, source_addr="447922334455",
                             dest_addr_ton=1, dest_addr_npi=1, destination_addr="447911123456",
                             esm_class=EsmClass.DELIVERY_RECEIPT, short_message=RECEIPT_TEXT,
                             tlvs=Tlvs(receipted_message_id="0123456789", message_state=2,
                                       network_error_code=b"\x03\x00\x00"))

    def smpplib_submit() -> bytes:
        pdu = smpplib.smpp.make_pdu(
            "submit_sm", client=client, source_addr_ton=1, source_addr_npi=1, source_addr="447911123456",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="447922334455", registered_delivery=1,
            short_message=b"hello world this is a test message")
        pdu.sequence = 1
        return pdu.generate()  # type: ignore[no-any-return]

    def smpplib_receipt() -> bytes:
        pdu = smpplib.smpp.make_pdu(
            "deliver_sm", client=client, source_addr_ton=1, source_addr_npi=1, source_addr="447922334455",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="447911123456", esm_class=4,
            short_message=RECEIPT_TEXT, receipted_message_id="0123456789", message_state=2,
            network_error_code=b"\x03\x00\x00")
        pdu.sequence = 1
        return pdu.generate()  # type: ignore[no-any-return]

    wire_submit = encode_pdu(ours_submit)
    wire_receipt = encode_pdu(ours_receipt)
    assert smpplib_submit() == wire_submit, "both codecs must produce the same submit_sm"
    theirs = decode_pdu(smpplib_receipt())  # TLV order is free (§3.2.4); compare them by name
    assert theirs.replace(tlvs=ours_receipt.tlvs) == ours_receipt, "both codecs must agree on the receipt"
    assert dict(theirs.tlvs) == dict(ours_receipt.tlvs)

    rows = []
    for label, ours_enc, theirs_enc, wire in (
        ("submit_sm", lambda: encode_pdu(ours_submit), smpplib_submit, wire_submit),
        ("deliver_sm receipt", lambda: encode_pdu(ours_receipt), smpplib_receipt, wire_receipt),
    ):
        w = wire
        ours_e = rate(ours_enc, args.seconds)
        theirs_e = rate(theirs_enc, args.seconds)
        ours_d = rate(lambda w=w: decode_pdu(w), args.seconds)  # type: ignore[misc]
        theirs_d = rate(lambda w=w: smpplib.smpp.parse_pdu(w, client=client), args.seconds)  # type: ignore[misc]
        rows.append((f"{label} encode", ours_e, theirs_e))
        rows.append((f"{label} decode", ours_d, theirs_d))

    print(f"{'operation':28} {'ours/s':>12} {'smpplib/s':>12} {'ratio':>8}")
    for label, ours, theirs in rows:
        print(f"{label:28} {ours:12,.0f} {theirs:12,.0f} {ours / theirs:7.1f}x")

    text = "Your code is 482913. It expires in 10 minutes. Do not share it with anyone. Reply STOP to opt out " \
           "of alerts from ACME Bank, help: 0800 123 456 (free). Thanks for banking!!"[:160]
    assert len(text) == 160
    gsm = rate(lambda: encode_text(text, Alphabet.GSM7), args.seconds)
    print(f"{'GSM 03.38 encode, 160 chars':28} {gsm:12,.0f}")


if __name__ == "__main__":
    main()
