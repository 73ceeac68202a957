"""Sustained submit_sm per second through the SMSC simulator, with a receipt for each, and who spent the CPU.

Usage: .venv/bin/python bench/simulator.py [--count N] [--binds B] [--window W] [--mix MIX]
                                           [--receipt-delay S] [--runs R] [--echo] [--record] [--profile FILE]

Starts the simulator (`python -m simulator`, receipts on, delay 0 by default, no throughput limit) in its own
process and drives it with `python -m simulator load` over SMPP in another process, closed loop. Prints, for
each run, the submit_sm/s answered and the receipts/s matched (both counted from the first submit_sm to the
last answer or receipt), beside the CPU seconds each process spent during the run: the simulator's from
/proc/PID/stat before and after, the load generator's from its own report (the run only, not its start-up).
A short warm-up run comes first. The load generator's CPU per submit_sm says what it could offer on one core.

`--echo` first measures the load generator alone, against a stand-in SMSC in a third process that does the
least an SMSC can (no Session, no store: it reads PDU headers, answers each submit_sm with a submit_sm_resp
and a receipt carrying receipted_message_id), so the rate is the load generator's own ceiling.

`--record` appends the result to bench/RESULTS.md under a dated heading with the command. `--profile FILE`
runs the simulator under cProfile (it then runs about half as fast) and prints its costliest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import re
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smpp import DeliverSm, SubmitSmResp, Tlvs, encode_pdu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
TARGET_PER_S = 30_000
_TICKS = os.sysconf("SC_CLK_TCK")
_LISTENING = re.compile(r"simulator smpp listening on (\S+):(\d+)")

CONFIG = """\
listen: 127.0.0.1:0
control: 127.0.0.1:0
log_level: warning
session:
  window: {window}
receipts:
  delay: {{distribution: fixed, mean_s: {delay}}}
store:
  max_messages: 100000
accounts:
  - system_id: bench
    password: bench1
    max_binds: 64
    message_ids: {{resp: hex}}
    receipts: {{backlog: 1000000}}
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


_HEAD = struct.Struct(">IIII")


class EchoLink(asyncio.Protocol):
    """One connection to the stand-in SMSC of `--echo`: whole PDUs of each read answered in one write."""

    next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's TCPTransport, not an asyncio.Transport subclass
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        out: list[bytes] = []
        while n - pos >= 16:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            if n - pos < length:
                break
            self.answer(buf, pos, out)
            pos += length
        self.buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))

    def answer(self, data: bytes, pos: int, out: list[bytes]) -> None:
        _, command_id, _, seq = _HEAD.unpack_from(data, pos)
        if command_id in (0x1, 0x2, 0x9):  # bind_*: ESME_ROK
            out.append(_HEAD.pack(16 + 5, command_id | 0x8000_0000, 0, seq) + b"ECHO\0")
        elif command_id == 0x4:  # submit_sm: its resp, then its receipt
            EchoLink.next_id += 1
            mid = f"{EchoLink.next_id:x}"
            out.append(encode_pdu(SubmitSmResp(sequence_number=seq, message_id=mid)))
            text = f"id:{mid} sub:001 dlvrd:001 submit date:2611241200 done date:2611241200 stat:DELIVRD err:000"
            out.append(encode_pdu(DeliverSm(
                sequence_number=EchoLink.next_id & 0x7FFF_FFFF or 1, esm_class=0x04, short_message=text.encode(),
                tlvs=Tlvs(receipted_message_id=mid, message_state=2))))
        elif command_id in (0x6, 0x15):  # unbind, enquire_link
            out.append(_HEAD.pack(16, command_id | 0x8000_0000, 0, seq))


def serve_echo() -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(EchoLink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"simulator smpp listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())


@dataclass
class Simulator:
    proc: subprocess.Popen[str]
    host: str
    port: int

    @classmethod
    def start(cls, config: Path | None, profile: Path | None) -> Simulator:
        """The simulator with `config`, or the echo SMSC when `config` is None."""
        cmd = [sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        cmd += ["-m", "simulator", "-c", str(config)] if config is not None else [__file__, "--echo-server"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = _LISTENING.search(line)
            if m:
                return cls(proc, m.group(1), int(m.group(2)))
        proc.kill()
        raise SystemExit("the simulator did not start:\n" + "".join(lines))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load_command(sim: Simulator, args: argparse.Namespace, count: int) -> list[str]:
    return [sys.executable, "-m", "simulator", "load", "--smpp", f"{sim.host}:{sim.port}", "--system-id", "bench",
            "--password", "bench1", "-n", str(count), "--binds", str(args.binds),
            "--window", str(args.window), "--mix", args.mix, "--receipt-timeout", "60", "--json"]


def run_load(sim: Simulator, args: argparse.Namespace, count: int) -> dict[str, Any]:
    """One load run; returns the load generator's JSON report plus the simulator's CPU seconds during it."""
    cmd = load_command(sim, args, count)
    before = cpu_seconds(sim.proc.pid)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    after = cpu_seconds(sim.proc.pid)
    if not done.stdout.strip():
        raise SystemExit(f"the load generator failed ({done.returncode}):\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    report["simulator_cpu_s"] = after - before
    report["exit_status"] = done.returncode
    return report


def summary_line(r: dict[str, Any], peer: str = "simulator") -> str:
    sent = r["sent"] or 1
    load_cpu, peer_cpu = r["cpu_s"], r["simulator_cpu_s"]
    receipt_p50 = r["receipt"]["p50_s"] * 1000 if r["receipt"] else 0.0
    return (f"{r['receipt_per_s']:,.0f} submit_sm/s with receipts ({r['request_per_s']:,.0f}/s answered), "
            f"{sent:,} submit_sm in {r['elapsed_s']:.1f} s, receipt p50 {receipt_p50:.1f} ms; CPU: {peer} "
            f"{peer_cpu:.2f} s ({peer_cpu / sent * 1e6:.1f} us/msg, at most {sent / peer_cpu if peer_cpu else 0:,.0f}/s "
            f"on one core), load generator {load_cpu:.2f} s ({load_cpu / sent * 1e6:.1f} us/msg, at most "
            f"{sent / load_cpu if load_cpu else 0:,.0f}/s on one core); "
            f"{'ok' if r['ok'] else 'FAILED: ' + '; '.join(r['problems'])}")


def record(lines: list[str], command: str, args: argparse.Namespace, load_before: str) -> None:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"\n## Simulator: sustained submit_sm/s with receipts ({date})\n",
        f"Command: `{command}`\n",
        f"Setup: simulator and load generator in two processes on this {os.cpu_count()}-core machine, "
        f"{args.binds} transceiver bind(s), window {args.window}, mix `{args.mix}`, receipt delay "
        f"{args.receipt_delay} s, target {TARGET_PER_S:,}/s. Load average before the runs: {load_before} "
        f"(above 0 means other work shared the cores).\n",
        *[f"- {line}" for line in lines],
        "",
    ]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nOne section per benchmark run: date, command, figures.\n",
                           encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(body))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=300_000, help="messages per measured run (default: %(default)s)")
    p.add_argument("--runs", type=int, default=3, help="measured runs (default: %(default)s)")
    p.add_argument("--binds", type=int, default=2, help="transceiver binds (default: %(default)s)")
    p.add_argument("--window", type=int, default=1000, help="window per bind (default: %(default)s)")
    p.add_argument("--mix", default="gsm=1", help="text mix (default: %(default)s)")
    p.add_argument("--receipt-delay", type=float, default=0.0, help="receipt delay in s (default: %(default)s)")
    p.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    p.add_argument("--profile", type=Path, help="run the simulator under cProfile, writing this file")
    p.add_argument("--echo", action="store_true", help="first measure the load generator alone (see above)")
    p.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_server:
        serve_echo()
        return 0
    command = "python bench/simulator.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average before the runs: {load_before}")
    lines: list[str] = []
    if args.echo:
        echo = Simulator.start(None, None)
        try:
            run_load(echo, args, min(20_000, args.count))
            r = run_load(echo, args, args.count)
            line = "load generator alone (echo SMSC): " + summary_line(r, "echo SMSC")
            lines.append(line)
            print(line)
        finally:
            echo.stop()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "simulator.yaml"
        config.write_text(CONFIG.format(window=max(args.window, 1000), delay=args.receipt_delay), encoding="utf-8")
        sim = Simulator.start(config, args.profile)
        try:
            print(f"simulator pid {sim.proc.pid} on {sim.host}:{sim.port}")
            print("warm-up: " + summary_line(run_load(sim, args, min(20_000, args.count))))
            reports = []
            for i in range(args.runs):
                r = run_load(sim, args, args.count)
                reports.append(r)
                line = f"run {i + 1}: " + summary_line(r)
                lines.append(line)
                print(line)
        finally:
            sim.stop()
    best = max(reports, key=lambda r: r["receipt_per_s"])
    verdict = "meets" if best["receipt_per_s"] >= TARGET_PER_S else "misses"
    lines.append(f"best: {best['receipt_per_s']:,.0f} submit_sm/s with receipts: {verdict} the {TARGET_PER_S:,}/s target")
    print(lines[-1])
    print(f"load generator: {' '.join(shlex.quote(a) for a in load_command(sim, args, args.count)[1:])}")
    if args.profile is not None:
        print(f"\nsimulator profile ({args.profile}), by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    if args.record:
        record(lines, command, args, load_before)
        print(f"recorded in {RESULTS.relative_to(ROOT)}")
    return 0 if all(r["ok"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
