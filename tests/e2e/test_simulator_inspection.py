"""GET /messages, /stats, /metrics and /binds."""

from __future__ import annotations

import time

import anyio
import pytest

from smpp import Concatenation, DataCoding, Tlvs, encode_message, split_message
from tests.e2e.simulator_fixture import anyio_backend, esme, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


async def test_messages_are_listed_decoded_and_filtered() -> None:
    cfg = make_config(billing={"default_balance": 1000}, accounts=[
        {"system_id": "esme", "password": "pw",
         "billing": {"convention": "service_type", "price_points": {"T100": 100}}},
        {"system_id": "other", "password": "pw2"}])
    async with running_simulator(cfg) as sim, sim.http() as http:
        async with esme(sim, "esme", "pw") as client:
            long_text = "Ünïcödé long message 😀 " * 6
            parts = split_message(encode_message(long_text), Concatenation.UDH8, 9)
            assert len(parts) >= 2 and parts[0].data_coding == DataCoding.UCS2
            ids = [(await client.submit(destination_addr="447700900111", esm_class=0x40, data_coding=8,
                                        service_type="T100", registered_delivery=1,
                                        short_message=p.short_message)).message_id for p in parts]
            sar = [(await client.submit(destination_addr="447700900112", short_message=chunk, tlvs=Tlvs(
                sar_msg_ref_num=300, sar_total_segments=2, sar_segment_seqnum=n))).message_id
                for n, chunk in ((1, b"first half, "), (2, b"second half"))]
            await client.submit(destination_addr="447700900113", short_message=b"GSM text \x00 \x02 ok")
            since = time.time()
            await client.submit(source_addr="84002", destination_addr="447700900113", short_message=b"later")
        async with esme(sim, "other", "pw2") as client:
            await client.submit(destination_addr="447700900113", short_message=b"from other")
        await anyio.sleep(0.1)

        (long_view,) = (await http.get("/messages", params={"destination": "447700900111"})).json()["messages"]
        assert long_view["text"] == long_text and long_view["encoding"] == "ucs2"
        assert long_view["total_parts"] == len(parts) and long_view["complete"] is True
        assert [p["id"] for p in long_view["parts"]] == ids
        assert long_view["charge"] == {"price": 100, "price_point": "T100", "result": "charged",
                                       "balance_after": 900}
        assert long_view["status"] == "delivered" and long_view["account"] == "esme"

        (sar_view,) = (await http.get("/messages", params={"destination": "447700900112"})).json()["messages"]
        assert sar_view["text"] == "first half, second half" and [p["id"] for p in sar_view["parts"]] == sar

        views = (await http.get("/messages", params={"destination": "447700900113"})).json()["messages"]
        assert [v["text"] for v in views] == ["GSM text @ $ ok", "later", "from other"]
        assert views[0]["encoding"] == "gsm7" and views[0]["charge"] is None
        by_account = (await http.get("/messages", params={"destination": "447700900113", "account": "other"})).json()
        assert [v["text"] for v in by_account["messages"]] == ["from other"]
        by_source = (await http.get("/messages", params={"source": "84002"})).json()
        assert [v["text"] for v in by_source["messages"]] == ["later"]
        recent = (await http.get("/messages", params={"since": str(since)})).json()
        assert [v["text"] for v in recent["messages"]] == ["later", "from other"]
        limited = (await http.get("/messages", params={"limit": "2"})).json()
        assert [v["text"] for v in limited["messages"]] == ["later", "from other"]
        one = (await http.get(f"/messages/{ids[1]}")).json()
        assert one["text"] == long_text
        assert (await http.get("/messages/nope")).status_code == 404
        assert (await http.get("/messages", params={"since": "yesterday"})).status_code == 400


async def test_stats_metrics_and_binds() -> None:
    cfg = make_config(accounts=[{"system_id": "esme", "password": "pw", "throughput_per_s": 3}])
    async with running_simulator(cfg) as sim, sim.http() as http, esme(sim, "esme", "pw") as client:
        for _ in range(5):
            await client.submit(destination_addr="447700900123", short_message=b"x", registered_delivery=1)
        await client.wait_delivered(3)
        await anyio.sleep(1.1)  # one rate sample later
        stats = (await http.get("/stats")).json()
        (acct,) = stats["accounts"]
        assert acct["system_id"] == "esme" and acct["submitted"] == 5 and acct["accepted"] == 3
        assert acct["throttled"] == 2 and acct["receipts_sent"] == 3 and acct["deliver_acked"] == 3
        assert acct["responses"] == {"ESME_ROK": 3, "ESME_RTHROTTLED": 2}
        assert acct["binds"] == {"transceiver": 1}
        assert stats["links"] == 1 and "esme" in stats["rates_per_s"]
        metrics = (await http.get("/metrics")).text
        assert 'smppsim_submitted_total{account="esme"} 5.0' in metrics
        assert 'smppsim_responses_total{account="esme",status="ESME_RTHROTTLED"} 2.0' in metrics
        assert 'smppsim_binds{account="esme",type="transceiver"} 1.0' in metrics
        binds = (await http.get("/binds")).json()["binds"]
        assert [(b["account"], b["bind_type"], b["state"]) for b in binds] == [("esme", "transceiver", "bound_trx")]
        assert (await http.get("/health")).json()["status"] == "ok"
