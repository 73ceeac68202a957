"""python-smpplib 2.2.4 (a client we did not write) binds to the simulator as a transceiver, submits GSM, UCS-2
and long messages, and receives their receipts and an MO injected through POST /mo.

smpplib's client is blocking, so it runs in a worker thread while the simulator serves on the event loop.
Its GSM module is no oracle (../shared/PEERS.md): the texts here keep to characters it encodes correctly.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import require_peer
from tests.e2e.simulator_fixture import anyio_backend, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

try:
    import smpplib.client
    import smpplib.consts
    import smpplib.gsm
except ImportError:  # pragma: no cover - the test extras install it
    smpplib = None

TEXTS = {
    "447700900001": "Hello from smpplib, GSM 7-bit",
    "447700900002": "Привет из smpplib: UCS-2 ✓",
    "447700900003": "A long message sent in parts by python-smpplib with a UDH. " * 4,
}


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def smpplib_session(port: int, control_url: str) -> tuple[list[Any], list[Any]]:
    """Bind, submit every text, ask for an MO, and read until every response, receipt and the MO came."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    sent: list[Any] = []
    received: list[Any] = []
    client.set_message_sent_handler(lambda pdu, **_: sent.append(pdu))
    client.set_message_received_handler(lambda pdu, **_: received.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id="esme", password="pw")
        parts_total = 0
        for destination, text in TEXTS.items():
            parts, encoding, esm_class = smpplib.gsm.make_parts(text)
            parts_total += len(parts)
            for part in parts:
                client.send_message(
                    source_addr_ton=smpplib.consts.SMPP_TON_SBSCR, source_addr="84001",
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                    destination_addr=destination, short_message=part, data_coding=encoding, esm_class=esm_class,
                    registered_delivery=True)
        r = httpx.post(f"{control_url}/mo", json={"from": "447700900009", "to": "84001", "text": "HELLO SMPPLIB"})
        assert r.status_code == 202
        deadline = time.monotonic() + 10
        while (len(sent) < parts_total or len(received) < parts_total + 1) and time.monotonic() < deadline:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return sent, received


async def test_smpplib_transceiver_against_the_simulator() -> None:
    require_peer("python-smpplib", smpplib is not None, "pip install smpplib==2.2.4")
    async with running_simulator(make_config()) as sim:
        sent, received = await anyio.to_thread.run_sync(smpplib_session, sim.smpp_port, sim.control_url)
        ids = {as_bytes(pdu.message_id).decode() for pdu in sent}
        assert len(sent) == 1 + 1 + 2 and len(ids) == 4 and all(pdu.status == 0 for pdu in sent)
        receipts = [pdu for pdu in received if int(pdu.esm_class) & 0x04]
        mos = [pdu for pdu in received if not int(pdu.esm_class) & 0x3C]
        # smpplib decoded every receipt: the TLV names the id of its submit_sm_resp, the text is Appendix B's.
        assert {as_bytes(pdu.receipted_message_id).decode() for pdu in receipts} == ids
        assert all(b"stat:DELIVRD" in as_bytes(pdu.short_message) for pdu in receipts)
        assert all(int(pdu.message_state) == 2 for pdu in receipts)
        assert [(as_bytes(pdu.source_addr), as_bytes(pdu.short_message)) for pdu in mos] == [
            (b"447700900009", b"HELLO SMPPLIB")]
        # The simulator read smpplib's PDUs right: each message whole, in its encoding, the long one once.
        async with sim.http() as http:
            for destination, text in TEXTS.items():
                (view,) = (await http.get("/messages", params={"destination": destination})).json()["messages"]
                assert view["text"] == text
                assert view["encoding"] == ("ucs2" if destination.endswith("2") else "gsm7")
                assert view["total_parts"] == (2 if destination.endswith("3") else 1)
