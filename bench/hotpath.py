"""The steps every message takes through the daemon, timed one by one in this process: microseconds per call.

Usage: .venv/bin/python bench/hotpath.py [--seconds S] [--record]

The end-to-end benchmarks (e2e.py, mo.py) run four processes on two cores, and the machine's speed drifts by
10 to 40 % from one minute to the next, so a change that saves 2 % of the daemon's CPU cannot be seen there.
Here each step runs alone in a loop, best of rounds, and a change to one of them shows in a single run.
Compare two commits by running this script in each (alternating, as the machine drifts): the figures are
microseconds per call, and the right-hand column says how often a message takes that step.

Every step uses the same code the daemon runs: the codec, the receipt parser, the correlator, the MT router,
segmentation, and the record encoder. Nothing here is a copy of it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import rate  # bench/, the script's directory, is on sys.path

from dlr import Correlator, IdPolicy, parse_receipt, receipt_keys
from gateway._model import ENCODER, Message, MessageStatus, Part, StatusChange, new_message_id
from routing import FailoverRoute, MtRouter, MtRule
from smpp import (
    NO_TLVS,
    Concatenation,
    DeliverSm,
    SubmitSm,
    Tlvs,
    decode_pdu,
    encode_message,
    encode_pdu,
    split_message,
)

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RECEIPT_TEXT = (b"id:1234567890 sub:001 dlvrd:001 submit date:2611250330 done date:2611250330 stat:DELIVRD err:000 "
                b"text:Hello world")
TEXT = "Hello world, this is a test message"


def steps() -> list[tuple[str, str, Callable[[], object]]]:
    """(name, how often a message takes it, the call) for each step."""
    receipt_pdu = DeliverSm(esm_class=4, source_addr="447911123456", destination_addr="SMPPGW",
                            short_message=RECEIPT_TEXT,
                            tlvs=Tlvs(receipted_message_id="1234567890", message_state=2))
    receipt_wire = encode_pdu(receipt_pdu)
    mo_pdu = DeliverSm(source_addr="447911123456", destination_addr="84001", short_message=b"CHAT hello there 17")
    receipt = parse_receipt(receipt_pdu)
    assert receipt is not None
    auto = IdPolicy.parse("auto")
    decimal = IdPolicy.parse("decimal")
    correlator = Correlator(default_policy=decimal)
    router = MtRouter([MtRule("mt_routes[0]", "44", FailoverRoute("uk", ("sim",)))])
    rng = random.Random(1)
    up = {"sim"}
    encoded = encode_message(TEXT)
    now = time.time()
    msg = Message(id=new_message_id(now), account="demo", to="447911123456", source="SMPPGW", text=TEXT,
                  created_at=now, expires_at=now + 86400, status=MessageStatus.DELIVERED, status_at=now,
                  parts=[Part("1234567890", "delivered", "sim")],
                  history=[StatusChange(now, "queued"), StatusChange(now, "submitted", "", "sim"),
                           StatusChange(now, "delivered", "DELIVRD", "sim")])

    def route() -> object:
        decision = router.decide("447911123456", source="SMPPGW", account="demo")
        assert decision.route is not None
        return decision.route.resolve(up, rng)

    def submit_sm() -> bytes:
        return encode_pdu(SubmitSm(source_addr_ton=5, source_addr="SMPPGW", dest_addr_ton=1, dest_addr_npi=1,
                                   destination_addr="447911123456", registered_delivery=1,
                                   short_message=encoded.data, tlvs=NO_TLVS))

    def correlate() -> object:
        mono = time.monotonic()
        correlator.register("sim", "1234567890", "m-1", 0, mono, policy=decimal)
        return correlator.match("sim", receipt, mono, policy=decimal)

    return [
        ("new message id", "1 per message", lambda: new_message_id(now)),
        ("route: decide and resolve", "1 per message", route),
        ("text: encode and split, one part", "1 per message (and one more encode)",
         lambda: split_message(encode_message(TEXT), Concatenation.UDH8, 1)),
        ("submit_sm: build and encode", "1 per part", submit_sm),
        ("receipt: decode the deliver_sm", "1 per part", lambda: decode_pdu(receipt_wire)),
        ("receipt: parse (Appendix B, TLVs)", "1 per part", lambda: parse_receipt(receipt_pdu)),
        ("receipt: keys under auto", "1 per part", lambda: receipt_keys(receipt, auto)),
        ("correlator: register and match", "1 per part", correlate),
        ("MO: parse_receipt says not one", "1 per MO", lambda: parse_receipt(mo_pdu)),
        ("record: encode a final message", "3 per message", lambda: ENCODER.encode(msg)),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1.0, help="timing per step (best of its rounds)")
    p.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: no migrations mid-round
    lines = [f"{'step':36} {'us per call':>12}   how often"]
    todo = steps()
    gc.collect()
    gc.freeze()  # as the daemon does after starting: what the imports left is not scanned again
    for name, often, fn in todo:
        lines.append(f"{name:36} {1e6 / rate(fn, args.seconds):12.2f}   {often}")
    for line in lines:
        print(line)
    if args.record:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(f"\n## Hot path: the steps of one message, timed alone ({stamp})\n\n"
                    f"Command: `python bench/hotpath.py --seconds {args.seconds:g} --record`\n\n```\n")
            f.write("\n".join(lines) + "\n```\n")
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
