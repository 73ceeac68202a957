"""Carrier billing: charged MTs by each convention, balances, insufficient funds, barred numbers, the API."""

from __future__ import annotations

import pytest

from dlr import parse_receipt
from smpp import Concatenation as Concat
from smpp import Status, Tlvs, encode_message, split_message
from tests.e2e.simulator_fixture import anyio_backend, esme, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


def billing_config(**account: object) -> dict[str, object]:
    return make_config(
        receipts={"delay": {"mean_s": 0.02}},
        billing={"default_balance": 500, "balances": {"4477009010": 0, "4477009012": 150},
                 "barred_numbers": ["4477009011"],
                 "insufficient_funds": {"stat": "UNDELIV", "err": 69},
                 "barred": {"stat": "REJECTD", "err": 11}},
        accounts=[{"system_id": "esme", "password": "pw", **account}],
    )


SERVICE_TYPE = {"billing": {"convention": "service_type", "price_points": {"T100": 100, "T300": 300}}}


async def test_service_type_tariff_is_charged_against_the_balance() -> None:
    async with running_simulator(billing_config(**SERVICE_TYPE)) as sim, esme(sim, "esme", "pw") as client, \
            sim.http() as http:
        resp = await client.submit(service_type="T100", destination_addr="447700900500", short_message=b"paid",
                                   registered_delivery=1)
        receipt = parse_receipt(await client.next_deliver())
        assert receipt is not None and receipt.stat == "DELIVRD"
        balance = (await http.get("/billing/balances/447700900500")).json()
        assert balance == {"msisdn": "447700900500", "balance": 400, "barred": False}
        charges = (await http.get("/billing/charges", params={"msisdn": "447700900500"})).json()["charges"]
        assert [(c["price"], c["price_point"], c["result"], c["message_id"]) for c in charges] == [
            (100, "T100", "charged", resp.message_id)]
        # A free MT (no price point) costs nothing.
        await client.submit(service_type="", destination_addr="447700900500", short_message=b"free")
        assert (await http.get("/billing/balances/447700900500")).json()["balance"] == 400


async def test_insufficient_funds_and_barred_fail_in_the_receipt() -> None:
    async with running_simulator(billing_config(**SERVICE_TYPE)) as sim, esme(sim, "esme", "pw") as client, \
            sim.http() as http:
        for dest in ("447700901000", "447700901100", "447700901200", "447700901200"):
            await client.submit(service_type="T100", destination_addr=dest, short_message=b"x", registered_delivery=1)
        receipts = [parse_receipt(p) for p in await client.wait_delivered(4)]
        outcome = [(r.source_addr, r.stat, r.err) for r in receipts if r is not None]
        assert sorted(outcome) == sorted([
            ("447700901000", "UNDELIV", "069"),  # balance 0
            ("447700901100", "REJECTD", "011"),  # barred
            ("447700901200", "DELIVRD", "000"),  # 150 pays one 100
            ("447700901200", "UNDELIV", "069"),  # but not two
        ])
        results = [c["result"] for c in (await http.get("/billing/charges")).json()["charges"]]
        assert sorted(results) == ["barred", "charged", "insufficient_funds", "insufficient_funds"]
        # Set a balance and lift the bar at run time; bar another number.
        assert (await http.put("/billing/balances/447700901000", json={"balance": 1000})).status_code == 200
        assert (await http.delete("/billing/barred/4477009011")).json()["barred"] is False
        assert (await http.put("/billing/barred/447700900999")).status_code == 200
        for dest in ("447700901000", "447700901100", "447700900999"):
            await client.submit(service_type="T300", destination_addr=dest, short_message=b"x", registered_delivery=1)
        receipts = [parse_receipt(p) for p in (await client.wait_delivered(7))[4:]]
        assert sorted((r.source_addr, r.stat) for r in receipts if r is not None) == [
            ("447700900999", "REJECTD"), ("447700901000", "DELIVRD"), ("447700901100", "DELIVRD")]
        assert (await http.get("/billing/balances/447700901000")).json()["balance"] == 700
        assert (await http.get("/billing/barred")).json()["barred"] == ["447700900999"]


async def test_shortcode_and_vendor_tlv_conventions() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.02}}, billing={"default_balance": 1000}, accounts=[
        {"system_id": "short", "password": "pw",
         "billing": {"convention": "shortcode", "price_points": {"84500": 100, "84501": 300}}},
        {"system_id": "tlv", "password": "pw",
         "billing": {"convention": "tlv", "tlv_tag": 0x1401, "price_points": {"PP250": 250}}},
    ])
    async with running_simulator(cfg) as sim, sim.http() as http:
        async with esme(sim, "short", "pw") as client:
            await client.submit(source_addr="84501", destination_addr="447700900001", short_message=b"x")
            await client.submit(source_addr="84999", destination_addr="447700900001", short_message=b"x")
        async with esme(sim, "tlv", "pw") as client:
            await client.submit(destination_addr="447700900002", short_message=b"x", tlvs=Tlvs({"0x1401": b"PP250"}))
            await client.submit(destination_addr="447700900002", short_message=b"x", tlvs=Tlvs({"0x1401": b"PP999"}))
        assert (await http.get("/billing/balances/447700900001")).json()["balance"] == 700
        assert (await http.get("/billing/balances/447700900002")).json()["balance"] == 750
        charges = (await http.get("/billing/charges")).json()["charges"]
        assert [(c["account"], c["price_point"]) for c in charges] == [("short", "84501"), ("tlv", "PP250")]


async def test_a_long_charged_message_is_charged_once() -> None:
    async with running_simulator(billing_config(**SERVICE_TYPE)) as sim, esme(sim, "esme", "pw") as client, \
            sim.http() as http:
        parts = split_message(encode_message("a charged long message " * 10), Concat.UDH8, 7)
        assert len(parts) == 2
        for part in parts:
            await client.submit(service_type="T100", destination_addr="447700901200", esm_class=0x40,
                                short_message=part.short_message, registered_delivery=1)
        receipts = [parse_receipt(p) for p in await client.wait_delivered(2)]
        assert [r.stat for r in receipts if r is not None] == ["DELIVRD", "DELIVRD"]
        assert (await http.get("/billing/balances/447700901200")).json()["balance"] == 50
        messages = (await http.get("/messages", params={"destination": "447700901200"})).json()["messages"]
        assert len(messages) == 1 and messages[0]["charge"]["price"] == 100 and messages[0]["part_count"] == 2


async def test_a_billing_failure_may_refuse_the_submit() -> None:
    cfg = billing_config(**SERVICE_TYPE)
    cfg["billing"]["insufficient_funds"] = {"stat": "UNDELIV", "err": 69,  # type: ignore[index]
                                            "submit_status": "ESME_RSUBMITFAIL"}
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        resp = await client.submit(service_type="T100", destination_addr="447700901000", short_message=b"x")
        assert resp.command_status == Status.ESME_RSUBMITFAIL
