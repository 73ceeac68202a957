"""Throughput limits and faults, in config and switched at run time through the control API."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import anyio
import pytest

from smpp import EnquireLink, GenericNack, Status, SubmitSm, SubmitSmResp
from smpp._session import ConnectionClosed, PduRejected, ResponseReceived
from tests.e2e.simulator_fixture import anyio_backend, esme, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

MT: dict[str, Any] = {"destination_addr": "447700900123", "short_message": b"x"}


async def test_throughput_window_throttles() -> None:
    cfg = make_config(accounts=[{"system_id": "esme", "password": "pw", "throughput_per_s": 5}])
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        statuses = [(await client.submit(**MT)).command_status for _ in range(8)]
        assert statuses == [0] * 5 + [Status.ESME_RTHROTTLED] * 3
        await anyio.sleep(1.05)
        assert (await client.submit(**MT)).command_status == 0


async def test_a_full_queue_answers_msgqful() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.3}},
                      accounts=[{"system_id": "esme", "password": "pw", "queue_limit": 2}])
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        statuses = [(await client.submit(**MT)).command_status for _ in range(3)]
        assert statuses == [0, 0, Status.ESME_RMSGQFUL]
        await anyio.sleep(0.4)  # the first two reached their final state: room again
        assert (await client.submit(**MT)).command_status == 0


async def test_error_rates_switched_at_run_time() -> None:
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw") as client, \
            esme(sim, "other", "pw2") as other:
        assert (await client.submit(**MT)).command_status == 0
        r = await http.put("/faults/esme", json={"error_rates": {"ESME_RSYSERR": 1.0}})
        assert r.status_code == 200
        assert (await client.submit(**MT)).command_status == Status.ESME_RSYSERR
        assert (await other.submit(**MT)).command_status == 0  # another account keeps the default
        r = await http.put("/faults", json={"error_rates": {"0x00000400": 1.0}})  # a vendor status, as a name
        assert r.status_code == 400
        r = await http.put("/faults", json={"error_rates": {"ESME_RTHROTTLED": 1.0}})
        assert (await other.submit(**MT)).command_status == Status.ESME_RTHROTTLED
        faults = (await http.get("/faults")).json()
        assert faults["default"]["error_rates"] == {"ESME_RTHROTTLED": 1.0}
        assert faults["accounts"]["esme"]["error_rates"] == {"ESME_RSYSERR": 1.0}
        await http.delete("/faults/esme")
        await http.put("/faults", json={})
        assert (await client.submit(**MT)).command_status == 0
        assert (await other.submit(**MT)).command_status == 0
        bad = await http.put("/faults", json={"drop_response_rate": 2})
        assert bad.status_code == 400 and "faults.drop_response_rate" in bad.json()["error"]


async def test_response_delay_drop_and_generic_nack() -> None:
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw") as client:
        await http.put("/faults", json={"response_delay_s": 0.3})
        start = time.monotonic()
        assert (await client.submit(**MT)).command_status == 0
        assert time.monotonic() - start >= 0.28
        await http.put("/faults", json={"generic_nack_rate": 1.0})
        nack = await client.submit(**MT)
        assert isinstance(nack, GenericNack) and nack.command_status == Status.ESME_RSYSERR
        await http.put("/faults", json={"drop_response_rate": 1.0})
        sent = client.conn.send(SubmitSm(**MT))
        await anyio.sleep(0.3)
        assert not any(isinstance(ev, ResponseReceived) and ev.request.sequence_number == sent.sequence_number
                       for ev in client.events)
        assert sim.simulator.smsc.accounts["esme"].dropped_responses == 1


async def test_malformed_pdu_now_and_then() -> None:
    cfg = make_config(faults={"malformed_rate": 1.0})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        assert (await client.submit(**MT)).command_status == 0
        rejected = await client.wait_event(PduRejected)
        assert isinstance(rejected, PduRejected) and rejected.error.status == Status.ESME_RINVMSGLEN
        assert (await client.submit(**MT)).command_status == 0  # the link survives it


async def test_disconnect_after_n_pdus_and_at_random() -> None:
    cfg = make_config(accounts=[
        {"system_id": "esme", "password": "pw", "faults": {"disconnect_after_pdus": 3}},
        {"system_id": "other", "password": "pw2", "faults": {"disconnect_rate": 1.0}},
    ])
    async with running_simulator(cfg) as sim:
        async with esme(sim, "esme", "pw") as client:
            await client.submit(**MT)
            client.conn.send(SubmitSm(**MT))
            client.conn.send(SubmitSm(**MT))  # the third PDU after the bind: the SMSC hangs up
            closed = await client.wait_event(ConnectionClosed)
            assert isinstance(closed, ConnectionClosed)
        async with esme(sim, "other", "pw2") as client:
            client.conn.send(SubmitSm(**MT))
            await client.wait_event(ConnectionClosed)
        with anyio.fail_after(2):
            while sim.simulator.smsc.links:
                await anyio.sleep(0.02)


async def test_slow_reads_push_back() -> None:
    cfg = make_config(faults={"slow_read_pause_s": 0.05, "slow_read_bytes": 200})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(30):  # about 1,800 octets: nine reads of 200 with a pause after each
                tg.start_soon(partial(client.submit, **MT))
        assert time.monotonic() - start >= 0.35


async def test_enquire_link_silence() -> None:
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw") as client:
        await client.request(EnquireLink())
        await http.put("/faults", json={"enquire_link_silence": True})
        sent = client.conn.send(EnquireLink())
        assert (await client.submit(**MT)).command_status == 0  # other requests are still answered
        await anyio.sleep(0.3)
        assert not any(isinstance(ev, ResponseReceived) and ev.request.sequence_number == sent.sequence_number
                       for ev in client.events)


async def test_receipt_before_its_submit_sm_resp() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 5}}, faults={"receipt_before_resp_rate": 1.0})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        resp = await client.submit(registered_delivery=1, **MT)
        assert isinstance(resp, SubmitSmResp)
        # The receipt came first: it was handled before the response resolved the request.
        assert len(client.delivered) == 1
        assert client.delivered[0].tlvs["receipted_message_id"] == resp.message_id
