"""Receipts: outcomes per prefix, delays, ENROUTE, TLVs per account, id forms, long messages, the backlog."""

from __future__ import annotations

import re
import time

import anyio
import pytest

from dlr import NetworkError, ReceiptKind, ReceiptStatus, parse_receipt
from smpp import Concatenation as Concat
from smpp import Status, encode_message, split_message
from tests.e2e.simulator_fixture import anyio_backend, esme, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

OUTCOMES = [
    {"prefix": "4477009001", "mix": {"UNDELIV": 1}, "err": 1, "network_error": {"network_type": 3, "error_code": 1}},
    {"prefix": "4477009002", "mix": {"EXPIRED": 1}, "err": 27},
    {"prefix": "4477009003", "mix": {"REJECTD": 1}, "err": 11},
    {"prefix": "4477009004", "mix": {"ACCEPTD": 1}},
    {"prefix": "4477009005", "mix": {"UNKNOWN": 1}},
    {"prefix": "4477009006", "mix": {"DELETED": 1}},
    {"prefix": "4477009007", "mix": {"DELIVRD": 1, "UNDELIV": 1}, "err": 1},
]


async def test_outcome_per_destination_prefix() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.02}, "outcomes": OUTCOMES})
    expected = {
        "447700900000": ("DELIVRD", ReceiptStatus.DELIVERED, "000"),
        "447700900100": ("UNDELIV", ReceiptStatus.UNDELIVERABLE, "001"),
        "447700900200": ("EXPIRED", ReceiptStatus.EXPIRED, "027"),
        "447700900300": ("REJECTD", ReceiptStatus.REJECTED, "011"),
        "447700900400": ("ACCEPTD", ReceiptStatus.ACCEPTED, "000"),
        "447700900500": ("UNKNOWN", ReceiptStatus.UNKNOWN, "000"),
        "447700900600": ("DELETED", ReceiptStatus.DELETED, "000"),
    }
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        for dest in expected:
            await client.submit(destination_addr=dest, short_message=b"x", registered_delivery=1)
        receipts = await client.wait_delivered(len(expected))
        for pdu in receipts:
            stat, status, err = expected[pdu.source_addr]
            r = parse_receipt(pdu)
            assert r is not None and r.stat == stat and r.status is status and r.err == err
        failed = next(parse_receipt(p) for p in receipts if p.source_addr == "447700900100")
        assert failed is not None and failed.network_error == NetworkError(3, 1)
        # A mix: both outcomes show up over 40 messages (seeded RNG).
        for _ in range(40):
            await client.submit(destination_addr="447700900700", short_message=b"x", registered_delivery=1)
        mixed = (await client.wait_delivered(len(expected) + 40))[len(expected):]
        stats = {parse_receipt(p).stat for p in mixed}  # type: ignore[union-attr]
        assert stats == {"DELIVRD", "UNDELIV"}


async def test_receipt_waits_for_its_delay() -> None:
    cfg = make_config(receipts={"delay": {"distribution": "uniform", "min_s": 0.3, "max_s": 0.4}})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        start = time.monotonic()
        await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
        await client.next_deliver()
        assert 0.28 <= time.monotonic() - start < 2.0


async def test_enroute_intermediate_then_final() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.3}, "enroute": {"mode": "requested", "after_s": 0.05}})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        # registered_delivery 0x11: a final receipt and intermediate notifications (§5.2.17).
        resp = await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=0x11)
        first, second = await client.wait_delivered(2)
        r1, r2 = parse_receipt(first), parse_receipt(second)
        assert r1 is not None and r1.kind is ReceiptKind.INTERMEDIATE_NOTIFICATION and r1.stat == "ENROUTE"
        assert r2 is not None and r2.kind is ReceiptKind.SMSC_DELIVERY_RECEIPT and r2.stat == "DELIVRD"
        assert r1.smsc_message_id == r2.smsc_message_id == resp.message_id
        # Without bit 4 there is no intermediate receipt in "requested" mode.
        await client.submit(destination_addr="447700900124", short_message=b"x", registered_delivery=1)
        await client.wait_delivered(3)
        await anyio.sleep(0.1)
        assert len(client.delivered) == 3


async def test_receipt_on_failure_only() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.02}, "outcomes": OUTCOMES})
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        await client.submit(destination_addr="447700900000", short_message=b"ok", registered_delivery=2)
        await client.submit(destination_addr="447700900100", short_message=b"bad", registered_delivery=2)
        (only,) = await client.wait_delivered(1)
        await anyio.sleep(0.15)
        assert len(client.delivered) == 1 and only.source_addr == "447700900100"


async def test_id_forms_and_the_receipt_id_quirk() -> None:
    cfg = make_config(accounts=[
        {"system_id": "dec", "password": "pw", "message_ids": {"resp": "decimal", "receipt": "hex",
                                                               "receipt_width": 10}},
        {"system_id": "hex", "password": "pw", "message_ids": {"resp": "hex"}},
        {"system_id": "HEX", "password": "pw", "message_ids": {"resp": "HEX"}},
        {"system_id": "uuid", "password": "pw", "message_ids": {"resp": "uuid"},
         "receipts": {"tlvs": False, "seconds": True, "utc": True}},
    ], message_id_start=3_000_000_000)
    async with running_simulator(cfg) as sim:
        async with esme(sim, "dec", "pw") as client:
            resp = await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
            receipt = parse_receipt(await client.next_deliver())
            assert resp.message_id.isdigit()
            assert receipt is not None and receipt.text_id == f"{int(resp.message_id):010x}"
            assert receipt.receipted_message_id == resp.message_id
        async with esme(sim, "hex", "pw") as client:
            resp = await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
            assert re.fullmatch("[0-9a-f]+", resp.message_id)
            receipt = parse_receipt(await client.next_deliver())
            assert receipt is not None and receipt.text_id == resp.message_id
        async with esme(sim, "HEX", "pw") as client:
            resp = await client.submit(destination_addr="447700900123", short_message=b"x")
            assert re.fullmatch("[0-9A-F]+", resp.message_id) and int(resp.message_id, 16) > 3_000_000_000
        async with esme(sim, "uuid", "pw") as client:
            resp = await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
            assert re.fullmatch("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", resp.message_id)
            pdu = await client.next_deliver()
            assert not pdu.tlvs  # this account's receipts carry no TLVs
            assert re.search(rb"submit date:\d{12} done date:\d{12} ", pdu.short_message)
            receipt = parse_receipt(pdu)
            assert receipt is not None and receipt.text_id == resp.message_id


async def test_one_receipt_per_part_of_a_long_message() -> None:
    async with running_simulator() as sim, esme(sim, "esme", "pw") as client:
        text = "part of a long message " * 17
        parts = split_message(encode_message(text), Concat.UDH8, 42)
        assert len(parts) == 3
        ids = []
        for part in parts:
            resp = await client.submit(destination_addr="447700900123", esm_class=0x40, registered_delivery=1,
                                       data_coding=part.data_coding, short_message=part.short_message)
            ids.append(resp.message_id)
        receipts = await client.wait_delivered(3)
        assert sorted(r.tlvs["receipted_message_id"] for r in receipts) == sorted(ids)
        assert len(set(ids)) == 3


async def test_receipts_wait_for_a_receiver_and_the_backlog_is_bounded() -> None:
    cfg = make_config(accounts=[{"system_id": "esme", "password": "pw", "receipts": {"backlog": 3}}])
    async with running_simulator(cfg) as sim:
        ids = []
        async with esme(sim, "esme", "pw", bind="transmitter") as tx:
            for i in range(5):
                resp = await tx.submit(destination_addr=f"44770090012{i}", short_message=b"x", registered_delivery=1)
                ids.append(resp.message_id)
            await anyio.sleep(0.2)
            acct = sim.simulator.smsc.accounts["esme"]
            assert len(acct.backlog) == 3 and acct.receipts_dropped == 2
            async with esme(sim, "esme", "pw", bind="receiver") as rx:
                receipts = await rx.wait_delivered(3)
                # The oldest two were dropped; the three newest came, in order.
                assert [r.tlvs["receipted_message_id"] for r in receipts] == ids[2:]


async def test_unanswered_receipts_go_to_the_next_receiver() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.02}, "retry_delay_s": 0.05})
    async with running_simulator(cfg) as sim:
        async with esme(sim, "esme", "pw") as client:
            # Refuse receipts with a temporary error: the SMSC tries again after retry_delay_s.
            client.ack_status = Status.ESME_RX_T_APPN
            await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
            await client.wait_delivered(2)
            client.ack_status = 0
            await client.wait_delivered(3)
            await anyio.sleep(0.2)
            assert len(client.delivered) == 3  # acknowledged: no more tries
            acct = sim.simulator.smsc.accounts["esme"]
            assert acct.deliver_refused == 2 and acct.deliver_acked == 1


async def test_receipts_unanswered_at_a_disconnect_are_sent_again() -> None:
    async with running_simulator() as sim:
        async with esme(sim, "esme", "pw") as first:
            first.ack = False
            resp = await first.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
            await first.wait_delivered(1)
        async with esme(sim, "esme", "pw", bind="receiver") as second:
            receipt = await second.next_deliver()
            assert receipt.tlvs["receipted_message_id"] == resp.message_id


async def test_the_deliver_sm_window_holds_receipts_back() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0}}, accounts=[{"system_id": "esme", "password": "pw", "window": 2}])
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        client.ack = False
        for _ in range(5):
            await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
        await client.wait_delivered(2)
        await anyio.sleep(0.1)
        assert len(client.delivered) == 2 and len(sim.simulator.smsc.accounts["esme"].backlog) == 3
