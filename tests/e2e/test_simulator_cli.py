"""`python -m simulator` as a process: the example config, the printed ports, a clean stop on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from dlr import parse_receipt
from smpp import Status
from smpp._session import ConnectionClosed
from tests.e2e.simulator_fixture import anyio_backend, esme

__all__ = ["anyio_backend"]

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"simulator (smpp|control) listening on (\S+):(\d+)")


@pytest.mark.anyio
async def test_the_example_config_end_to_end() -> None:
    cmd = [sys.executable, "-m", "simulator", "-c", "config/simulator.yaml", "--listen", "127.0.0.1:0",
           "--control", "127.0.0.1:0", "--log-level", "warning"]
    async with await anyio.open_process(cmd, cwd=ROOT, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        ports: dict[bytes, int] = {}
        seen = b""
        with anyio.fail_after(10):
            while len(ports) < 2:
                seen += await proc.stderr.receive()
                ports.update((m.group(1), int(m.group(3))) for m in LISTENING.finditer(seen))
        # The addresses are the first two lines, whatever the log level.
        assert [LISTENING.search(line) is not None for line in seen.splitlines()[:2]] == [True, True]
        async with esme(ports[b"smpp"], "smppgw", "gwpass1") as client, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[b'control']}") as http:
            resp = await client.submit(source_addr="84001", destination_addr="447700900100", short_message=b"x",
                                       registered_delivery=1)
            receipt = parse_receipt(await client.next_deliver(timeout_s=5))
            assert receipt is not None and receipt.stat == "UNDELIV" and receipt.err == "001"
            assert receipt.receipted_message_id == resp.message_id
            refused = await client.submit(source_addr="84001", destination_addr="447700900800", short_message=b"x")
            assert refused.command_status == Status.ESME_RINVDSTADR
            r = await http.post("/mo", json={"from": "447700900123", "to": "84001", "text": "HELLO"})
            assert r.status_code == 202
            assert (await client.next_deliver()).short_message == b"HELLO"
            proc.send_signal(signal.SIGTERM)
            closed = await client.wait_event(ConnectionClosed)  # the simulator unbinds before it stops
            assert isinstance(closed, ConnectionClosed)
        with anyio.fail_after(10):
            assert await proc.wait() == 0


def test_check_and_config_errors(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "simulator", "--check", "-c", "config/simulator.yaml"], cwd=ROOT,
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts:\n  - system_id: x\n    password: pw\n    throughput_per_s: fast\n")
    run = subprocess.run([sys.executable, "-m", "simulator", "--check", "-c", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert 'accounts[0].throughput_per_s: expected a number or nothing, got "fast"' in run.stderr
    run = subprocess.run([sys.executable, "-m", "simulator", "--check", "-c", "config/simulator.yaml",
                          "--control", "0.0.0.0:8775"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and run.stderr.startswith("simulator: control: ")


def test_load_subcommand_is_handed_over() -> None:
    run = subprocess.run([sys.executable, "-m", "simulator", "load", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    if (ROOT / "simulator" / "_load.py").exists():
        assert run.returncode == 0 and "usage:" in run.stdout  # simulator._load.main took the arguments
    else:
        assert run.returncode == 2 and "load generator" in run.stderr
