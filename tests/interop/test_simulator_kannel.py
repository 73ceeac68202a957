"""Kannel (Debian `kannel`, an ESME nobody here wrote) against the simulator.

bearerbox binds to the simulator as a transceiver (`smsc = smpp`). A message sent through smsbox's sendsms
HTTP interface reaches the simulator (GET /messages shows it decoded), its receipt comes back through
Kannel to the dlr-url on a small HTTP sink in this test, and an MO injected at the simulator (POST /mo) is
matched by a Kannel sms-service by keyword, whose get-url hits the same sink. A second test runs the classic
operator quirk: decimal ids in submit_sm_resp, hex ids in receipts without TLVs, and Kannel's
`msg-id-type = 0x02`.

Kannel's config pitfalls (see shared PEERS.md): a blank line ends a group, so none appears inside one;
1.4.5 wants `system-type`; the binaries run directly with `-v 2`. Every port is picked free on 127.0.0.1,
every Kannel listener is bound to 127.0.0.1, every wait is bounded, both boxes are stopped (SIGTERM, then
SIGKILL) whatever happens, and their logs are printed when a test fails.
"""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import require_command
from tests.e2e.simulator_fixture import RunningSimulator, anyio_backend, make_config, running_simulator
from tests.kannel_config import kannel_config

__all__ = ["anyio_backend"]

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

HOST = "127.0.0.1"
SHORTCODE = "84001"
WAIT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Sink:
    """An HTTP server on a thread that records every GET it receives (path and query)."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def record(self, target: str) -> None:
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        with self.lock:
            self.requests.append((parts.path, query))
            self.lock.notify_all()

    def seen(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [q for p, q in self.requests if p == path]


@contextmanager
def serving_sink() -> Iterator[Sink]:
    sink = Sink()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sink.record(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await anyio.sleep(0.1)


@dataclass
class Kannel:
    bearerbox: subprocess.Popen[bytes]
    smsbox: subprocess.Popen[bytes]
    sendsms_port: int
    admin_port: int
    logs: Path


def interop_kannel_config(*, smpp_port: int, admin_port: int, box_port: int, sendsms_port: int, logs: Path,
                          sink: Sink, msg_id_type: str | None) -> str:
    """Kannel bound to the simulator (tests/kannel_config.py), logging every message, with an sms-service for the
    keyword `hello` that forwards MOs to `sink` and a default one."""
    services = [f"""group = sms-service
keyword = hello
get-url = "{sink.url('/mo')}?from=%p&to=%P&keyword=%k&text=%a&smsc=%i"
max-messages = 0""",
                """group = sms-service
keyword = default
text = "no such service"
max-messages = 0"""]
    return kannel_config(smpp_port=smpp_port, admin_port=admin_port, box_port=box_port, sendsms_port=sendsms_port,
                         logs=logs, admin_password="adminpw", sendsms_user=("tester", "foobar"), log_level=0,
                         max_pending=10, msg_id_type=msg_id_type, extra_groups=services)


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s. The wait polls, so the in-process simulator keeps answering (bearerbox
    unbinds its SMSC link on the way out and would otherwise wait for an unbind_resp that cannot come)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with anyio.move_on_after(10, shield=True):
        while proc.poll() is None:
            await anyio.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


def _print_logs(logs: Path) -> None:
    for f in sorted(logs.iterdir()):
        text = f.read_text(errors="replace")
        print(f"----- {f.name} (last 120 lines) -----")
        print("\n".join(text.splitlines()[-120:]))


@asynccontextmanager
async def running_kannel(tmp_path: Path, sim: RunningSimulator, sink: Sink,
                         msg_id_type: str | None = None) -> AsyncIterator[Kannel]:
    """Start bearerbox and smsbox bound to `sim`, wait until Kannel's bind is up; stop both afterwards."""
    bearerbox_bin = require_command("bearerbox", "kannel")
    smsbox_bin = require_command("smsbox", "kannel")
    logs = tmp_path / "logs"
    logs.mkdir()
    admin_port, box_port, sendsms_port = free_port(), free_port(), free_port()
    conf = tmp_path / "kannel.conf"
    conf.write_text(interop_kannel_config(smpp_port=sim.smpp_port, admin_port=admin_port, box_port=box_port,
                                          sendsms_port=sendsms_port, logs=logs, sink=sink, msg_id_type=msg_id_type))
    procs: list[subprocess.Popen[bytes]] = []
    failed = True
    try:
        with open(logs / "bearerbox.out", "wb") as out:
            procs.append(subprocess.Popen([bearerbox_bin, "-v", "2", str(conf)], stdout=out,
                                          stderr=subprocess.STDOUT, cwd=tmp_path))
        async with httpx.AsyncClient(timeout=2) as client:

            async def admin_up() -> bool:
                assert procs[0].poll() is None, "bearerbox exited"
                try:
                    r = await client.get(f"http://{HOST}:{admin_port}/status.txt", params={"password": "adminpw"})
                except httpx.TransportError:
                    return False
                return r.status_code == 200

            await eventually(admin_up, "bearerbox's admin interface")
            with open(logs / "smsbox.out", "wb") as out:
                procs.append(subprocess.Popen([smsbox_bin, "-v", "2", str(conf)], stdout=out,
                                              stderr=subprocess.STDOUT, cwd=tmp_path))

            async def sendsms_up() -> bool:
                assert procs[1].poll() is None, "smsbox exited"
                try:
                    await client.get(f"http://{HOST}:{sendsms_port}/cgi-bin/sendsms")
                except httpx.TransportError:
                    return False
                return True

            await eventually(sendsms_up, "smsbox's sendsms interface")

        async with sim.http() as control:

            async def bound() -> bool:
                binds = (await control.get("/binds")).json()["binds"]
                return any(b["account"] == "kannel" and b["state"] == "bound_trx" for b in binds)

            await eventually(bound, "Kannel's transceiver bind at the simulator")
        yield Kannel(procs[0], procs[1], sendsms_port, admin_port, logs)
        failed = False
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        if failed:
            _print_logs(logs)


def simulator_config(**account: Any) -> dict[str, Any]:
    cfg = make_config(receipts={"delay": {"distribution": "fixed", "mean_s": 0.05}, "tick_s": 0.005})
    cfg["accounts"] = [{"system_id": "kannel", "password": "kannel1", "shortcodes": [SHORTCODE], **account}]
    return cfg


async def sendsms(k: Kannel, sink: Sink, *, to: str, text: str, **extra: str) -> None:
    dlr_url = sink.url("/dlr") + "?status=%d&smsc_id=%F&smsc=%i&to=%p&answer=%A"
    params = {"username": "tester", "password": "foobar", "from": SHORTCODE, "to": to, "text": text,
              "dlr-mask": "3", "dlr-url": dlr_url, **extra}
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"http://{HOST}:{k.sendsms_port}/cgi-bin/sendsms", params=params)
    assert r.status_code == 202 and "Accepted" in r.text, r.text


async def test_kannel_sends_gets_receipts_and_matches_an_mo_keyword(tmp_path: Path) -> None:
    with serving_sink() as sink:
        async with running_simulator(simulator_config()) as sim, running_kannel(tmp_path, sim, sink) as k, \
                sim.http() as control:
            try:
                await sendsms(k, sink, to="447400000001", text="hello from Kannel")
                await sendsms(k, sink, to="447400000002", text="Привет из Kannel", coding="2", charset="UTF-8")

                async def both_arrived() -> list[dict[str, Any]]:
                    found = (await control.get("/messages", params={"account": "kannel"})).json()["messages"]
                    return found if len(found) >= 2 else []

                messages = {m["destination"]: m for m in await eventually(both_arrived, "two MTs at the simulator")}
                gsm, ucs2 = messages["447400000001"], messages["447400000002"]
                assert (gsm["source"], gsm["text"], gsm["encoding"]) == (SHORTCODE, "hello from Kannel", "gsm7")
                assert (ucs2["text"], ucs2["encoding"]) == ("Привет из Kannel", "ucs2")
                assert gsm["registered_delivery"] & 1 and ucs2["registered_delivery"] & 1

                # dlr-mask 3: a callback for "delivered" (type 1) per message, with the SMSC's id.
                dlrs = await eventually(lambda: len(sink.seen("/dlr")) >= 2 and sink.seen("/dlr"), "two DLRs")
                by_id = {d["smsc_id"]: d for d in dlrs}
                assert set(by_id) == {gsm["id"], ucs2["id"]}
                assert all(d["status"] == "1" and d["smsc"] == "sim" and "stat:DELIVRD" in d["answer"]
                           for d in dlrs)

                r = await control.post("/mo", json={"from": "447400000003", "to": SHORTCODE,
                                                    "text": "hello Kannel, this is a handset"})
                assert r.status_code == 202 and r.json()["account"] == "kannel"
                [mo] = await eventually(lambda: sink.seen("/mo"), "the sms-service's get-url")
                assert mo["keyword"].lower() == "hello" and mo["text"] == "hello Kannel, this is a handset"
                assert mo["from"].lstrip("+") == "447400000003" and mo["to"] == SHORTCODE and mo["smsc"] == "sim"
            except BaseException:
                _print_logs(k.logs)
                raise


async def test_kannel_reads_hex_receipt_ids_against_decimal_resp_ids(tmp_path: Path) -> None:
    quirk = {"message_ids": {"resp": "decimal", "receipt": "hex"}, "receipts": {"tlvs": False}}
    with serving_sink() as sink:
        async with running_simulator(simulator_config(**quirk)) as sim, \
                running_kannel(tmp_path, sim, sink, msg_id_type="0x02") as k, sim.http() as control:
            try:
                await sendsms(k, sink, to="447400000009", text="quirky ids")
                [dlr] = await eventually(lambda: sink.seen("/dlr"), "the DLR")
                [mt] = (await control.get("/messages", params={"account": "kannel"})).json()["messages"]
                assert dlr["status"] == "1" and dlr["smsc_id"] == mt["id"]
                # The receipt text carried the id in hex; Kannel matched it to the decimal resp id.
                assert f"id:{int(mt['id']):x}" in dlr["answer"].lower()
            except BaseException:
                _print_logs(k.logs)
                raise
