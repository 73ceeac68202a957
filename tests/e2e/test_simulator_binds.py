"""The simulator's binds and the requests it answers, through real sockets on 127.0.0.1."""

from __future__ import annotations

import anyio
import pytest

from smpp import (
    BindTransceiver,
    BindTransceiverResp,
    CancelSm,
    DataSm,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    MessageState,
    QuerySm,
    ReplaceSm,
    SmeAddress,
    Status,
    SubmitMulti,
    SubmitSm,
    Tlvs,
)
from smpp._session import Role, Session, SessionConfig
from smpp.adapter import SmppConnection
from tests.e2e.simulator_fixture import anyio_backend, esme, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


async def test_bind_all_three_kinds_and_refusals() -> None:
    cfg = make_config(accounts=[
        {"system_id": "esme", "password": "pw", "max_binds": 3},
        {"system_id": "txonly", "password": "pw", "bind_types": ["transmitter"]},
    ])
    async with running_simulator(cfg) as sim:
        async with esme(sim, "esme", "pw", bind="transmitter"), esme(sim, "esme", "pw", bind="receiver"), \
                esme(sim, "esme", "pw", bind="transceiver"):
            async with esme(sim, "esme", "pw", expect_status=Status.ESME_RBINDFAIL):
                pass  # the fourth bind is one too many
            stats = sim.simulator.smsc.accounts["esme"].statistics()
            assert stats.binds == {"transmitter": 1, "receiver": 1, "transceiver": 1}
        async with esme(sim, "esme", "wrong", expect_status=Status.ESME_RINVPASWD):
            pass
        async with esme(sim, "nobody", "pw", expect_status=Status.ESME_RINVSYSID):
            pass
        async with esme(sim, "txonly", "pw", bind="receiver", expect_status=Status.ESME_RBINDFAIL):
            pass
        async with esme(sim, "txonly", "pw", bind="transmitter"):
            pass


async def test_submit_sm_gets_an_id_and_a_receipt() -> None:
    async with running_simulator() as sim, esme(sim, "esme", "pw") as client:
        resp = await client.submit(destination_addr="447700900123", short_message=b"Hello", registered_delivery=1)
        assert resp.command_status == 0 and resp.message_id.isdigit()
        receipt = await client.next_deliver()
        assert receipt.esm_class == 0x04
        assert receipt.source_addr == "447700900123" and receipt.destination_addr == "84001"
        assert receipt.short_message.startswith(f"id:{resp.message_id} sub:001 dlvrd:001 ".encode())
        assert b"stat:DELIVRD err:000 text:Hello" in receipt.short_message
        assert receipt.tlvs["receipted_message_id"] == resp.message_id
        assert receipt.tlvs["message_state"] == MessageState.DELIVERED
        # No receipt when registered_delivery does not ask for one.
        await client.submit(destination_addr="447700900124", short_message=b"quiet")
        await anyio.sleep(0.2)
        assert len(client.delivered) == 1


async def test_data_sm_is_answered_and_receipted() -> None:
    async with running_simulator() as sim, esme(sim, "esme", "pw") as client:
        resp = await client.request(DataSm(source_addr="84001", destination_addr="447700900125", registered_delivery=1,
                                           tlvs=Tlvs(message_payload=b"payload text")))
        assert resp.command_status == 0 and resp.message_id
        receipt = await client.next_deliver()
        assert receipt.tlvs["receipted_message_id"] == resp.message_id
        assert b"text:payload text" in receipt.short_message


async def test_submit_multi_lists_failed_destinations() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.05}, "outcomes": [
        {"prefix": "4477009008", "submit_status": "ESME_RINVDSTADR"}]})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        resp = await client.request(SubmitMulti(
            source_addr="84001", registered_delivery=1, short_message=b"to many",
            dest_address=(SmeAddress(1, 1, "447700900201"), SmeAddress(1, 1, "447700900801"),
                          DistributionList("friends"), SmeAddress(1, 1, "447700900202"))))
        assert resp.command_status == 0 and resp.message_id
        failed = {(u.destination_addr, u.error_status_code) for u in resp.unsuccess_sme}
        assert failed == {("447700900801", Status.ESME_RINVDSTADR), ("friends", Status.ESME_RCNTSUBDL)}
        receipts = await client.wait_delivered(2)
        assert {r.source_addr for r in receipts} == {"447700900201", "447700900202"}
        assert all(r.tlvs["receipted_message_id"] == resp.message_id for r in receipts)


async def test_query_cancel_and_replace() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.05}, "outcomes": [
        {"prefix": "4477009009", "delay": {"mean_s": 30}},
        {"prefix": "4477009001", "mix": {"UNDELIV": 1}, "err": 7}]})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        slow = await client.submit(destination_addr="447700900901", short_message=b"slow one", registered_delivery=1)
        q = await client.request(QuerySm(message_id=slow.message_id, source_addr="84001"))
        assert q.command_status == 0 and q.message_state == MessageState.ENROUTE and q.final_date == ""
        r = await client.request(ReplaceSm(message_id=slow.message_id, source_addr="84001",
                                           short_message=b"replaced", registered_delivery=1))
        assert r.command_status == 0
        view = sim.simulator.smsc.store.get(slow.message_id)
        assert view is not None and view.text() == "replaced"
        c = await client.request(CancelSm(message_id=slow.message_id, source_addr="84001"))
        assert c.command_status == 0
        q = await client.request(QuerySm(message_id=slow.message_id, source_addr="84001"))
        assert q.message_state == MessageState.DELETED and len(q.final_date) == 16
        again = await client.request(CancelSm(message_id=slow.message_id, source_addr="84001"))
        assert again.command_status == Status.ESME_RCANCELFAIL
        again = await client.request(ReplaceSm(message_id=slow.message_id, source_addr="84001", short_message=b"x"))
        assert again.command_status == Status.ESME_RREPLACEFAIL
        unknown = await client.request(QuerySm(message_id="999", source_addr="84001"))
        assert unknown.command_status == Status.ESME_RQUERYFAIL
        # A message that failed: query shows its state and error code once final.
        failed = await client.submit(destination_addr="447700900101", short_message=b"x", registered_delivery=1)
        await client.next_deliver()
        q = await client.request(QuerySm(message_id=failed.message_id, source_addr="84001"))
        assert q.message_state == MessageState.UNDELIVERABLE and q.error_code == 7
        # cancel_sm without an id cancels every pending message from the source to the destination.
        for _ in range(2):
            await client.submit(destination_addr="447700900902", short_message=b"y", registered_delivery=1)
        c = await client.request(CancelSm(source_addr="84001", destination_addr="447700900902"))
        assert c.command_status == 0
        assert sim.simulator.smsc.store.query(destination="447700900902")[0].cancelled  # type: ignore[union-attr]


async def test_the_simulator_sends_enquire_link_of_its_own() -> None:
    cfg = make_config(session={"window": 10, "response_timeout_s": 5, "enquire_link_interval_s": 0.2})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        await anyio.sleep(0.5)
        # The ESME session answered the simulator's enquire_link itself; the simulator counted the answer.
        link = next(iter(sim.simulator.smsc.links))
        assert link.session.statistics().pdus_received >= 2  # the bind and at least one enquire_link_resp
        resp = await client.request(EnquireLink())
        assert isinstance(resp, EnquireLinkResp)


async def test_requests_before_bind_are_refused() -> None:
    async with running_simulator() as sim:
        stream = await anyio.connect_tcp("127.0.0.1", sim.smpp_port)
        conn = SmppConnection(stream, Session(SessionConfig(Role.ESME)))
        async with anyio.create_task_group() as tg:
            await tg.start(conn.run)
            conn.session.state = conn.session.state.BOUND_TX  # pretend, to send a submit_sm unbound
            resp = await conn.request(SubmitSm(destination_addr="447700900123", short_message=b"x"))
            assert resp.command_status == Status.ESME_RINVBNDSTS
            conn.session.state = conn.session.state.OPEN
            ok = await conn.request(BindTransceiver(system_id="esme", password="pw"))
            assert isinstance(ok, BindTransceiverResp) and ok.command_status == 0 and ok.system_id == "SMSCSIM"
            await conn.unbind()
            tg.cancel_scope.cancel()
