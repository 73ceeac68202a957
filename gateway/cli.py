"""The `smppgw` command line.

Rule: each subcommand is a thin shell over a room's public API; `sim` and `load` hand the process over to
`python -m simulator` (exec, not import: the gateway never imports the simulator).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from smpp import RemoteProtocolError, SmppError, decode_pdu, encode_pdu
from smpp._jsonform import JsonFormError, pdu_from_json, pdu_to_json

from ._cli_run import add_subcommands

__all__ = ["main"]


def _split_hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned.startswith(("0x", "0X")):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError as exc:
        raise SystemExit(f"smppgw pdu decode: not hexadecimal: {exc}") from None


def iter_pdus(data: bytes) -> Iterator[dict[str, Any]]:
    """Each PDU in `data` (several in a row allowed) as its JSON form, or an error object; stops at bad framing."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 16:
            yield {"error": f"{len(data) - pos} trailing octets cannot hold a PDU header", "offset": pos,
                   "status": "ESME_RINVCMDLEN"}
            return
        length = int.from_bytes(data[pos:pos + 4], "big")
        if length < 16 or pos + length > len(data):
            yield {"error": f"command_length {length} does not fit the {len(data) - pos} octets left",
                   "offset": pos, "status": "ESME_RINVCMDLEN"}
            return
        try:
            yield pdu_to_json(decode_pdu(data, pos, pos + length))
        except RemoteProtocolError as exc:
            yield {"error": str(exc), "offset": pos, "status": exc.status.name, "field": exc.field,
                   "sequence_number": exc.sequence_number}
        pos += length


def _cmd_pdu_decode(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.hex == "-" else args.hex
    failed = False
    for obj in iter_pdus(_split_hex(text)):
        failed |= "error" in obj
        print(json.dumps(obj, ensure_ascii=False, indent=2 if args.pretty else None))
    return 1 if failed else 0


def _json_objects(text: str) -> Iterator[Any]:
    text = text.strip()
    if not text:
        return
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        for n, line in enumerate(text.splitlines(), start=1):  # JSON lines
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"smppgw pdu encode: line {n}: {exc}") from None
        return
    yield from (whole if isinstance(whole, list) else [whole])


def _cmd_pdu_encode(args: argparse.Namespace) -> int:
    if args.json in (None, "-"):
        text = sys.stdin.read()
    elif os.path.exists(args.json):
        with open(args.json, encoding="utf-8") as f:
            text = f.read()
    else:
        text = args.json
    status = 0
    for obj in _json_objects(text):
        try:
            print(encode_pdu(pdu_from_json(obj)).hex())
        except (JsonFormError, SmppError) as exc:
            print(f"smppgw pdu encode: {exc}", file=sys.stderr)
            status = 1
    return status


def _exec_simulator(argv: Sequence[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", "simulator", *argv])
    return 0  # pragma: no cover - execv does not return


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smppgw", description="SMPP 3.4 gateway, SMSC simulator and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    pdu = sub.add_parser("pdu", help="decode and encode PDUs (debug captures)")
    pdu_sub = pdu.add_subparsers(dest="pdu_command", required=True)
    dec = pdu_sub.add_parser("decode", help="hex PDUs (several in a row allowed) to JSON, one object per PDU")
    dec.add_argument("hex", help="the PDUs in hexadecimal (spaces and colons ignored), or - to read stdin")
    dec.add_argument("--pretty", action="store_true", help="indent the JSON")
    dec.set_defaults(func=_cmd_pdu_decode)
    enc = pdu_sub.add_parser("encode", help="JSON (as printed by decode: an object, a list or JSON lines) to hex")
    enc.add_argument("json", nargs="?", default="-", help="the JSON, a file holding it, or - for stdin (default)")
    enc.set_defaults(func=_cmd_pdu_encode)

    add_subcommands(sub)

    for name, what in (("sim", "run the SMSC simulator (same as python -m simulator)"),
                       ("load", "drive load through the gateway (HTTP) or an SMSC (SMPP)")):
        p = sub.add_parser(name, help=what, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `smppgw` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        return _exec_simulator(args_list[1:])
    if args_list and args_list[0] == "load":
        return _exec_simulator(["load", *args_list[1:]])
    parser = build_parser()
    args = parser.parse_args(args_list)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
