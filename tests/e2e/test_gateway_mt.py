"""The gateway against the simulator over real sockets: texts, parts, receipts, callbacks, failover, limits."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.gateway_fixture import CallbackSink, anyio_backend, gateway_config, running_gateway
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator

pytestmark = pytest.mark.anyio
_ = anyio_backend

OUTCOMES = [
    {"prefix": "", "mix": {"DELIVRD": 1}},
    {"prefix": "4477009001", "mix": {"UNDELIV": 1}, "err": 1, "network_error": {"network_type": 3, "error_code": 1}},
    {"prefix": "4477009002", "mix": {"EXPIRED": 1}, "err": 27},
    {"prefix": "4477009003", "mix": {"REJECTD": 1}, "err": 11},
    {"prefix": "4477009008", "submit_status": "ESME_RINVDSTADR"},
]


def sim_config(**overrides: Any) -> dict[str, Any]:
    receipts = {"delay": {"distribution": "fixed", "mean_s": 0.05}, "tick_s": 0.002, "retry_delay_s": 0.1,
                "outcomes": OUTCOMES}
    return make_config(receipts=receipts, **overrides)


async def sim_messages(sim: RunningSimulator, **params: Any) -> list[dict[str, Any]]:
    async with sim.http() as http:
        r = await http.get("/messages", params={"limit": 10000, **params})
        assert r.status_code == 200
        result: list[dict[str, Any]] = r.json()["messages"]
        return result


TEXTS = {
    "gsm": "Hello @ £5 {braces} [x] ~ € ^ |",
    "ucs2": "Привет, мир! 😀 Ж",
    "long_gsm": "0123456789" * 40 + " € end",
    "long_ucs2": "Жук " * 50 + "😀" * 5,
}


async def test_every_encoding_arrives_intact_and_parts_share_one_reference(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim, running_gateway(gateway_config(tmp_path, sim)) as gw:
        sent = {}
        for name, text in TEXTS.items():
            r = await gw.send(to="07911123456", text=text)
            sent[name] = r
        # Two long messages to one handset at once: their references must differ (the simulator
        # reassembles by reference, so a collision would mix their parts).
        twins = [await gw.send(to="07911000001", text=f"twin {i} " + "x" * 300) for i in range(2)]
        views = await gw.wait_final([r["id"] for r in [*sent.values(), *twins]])
        assert {v["status"] for v in views.values()} == {"delivered"}
        got = {m["text"]: m for m in await sim_messages(sim, destination="447911123456")}
        for name, text in TEXTS.items():
            assert text in got, name
            assert got[text]["complete"], name
            assert got[text]["part_count"] == sent[name]["parts"], name
        assert got[TEXTS["gsm"]]["encoding"] == "gsm7"
        assert got[TEXTS["ucs2"]]["encoding"] == "ucs2"
        twin_texts = {m["text"] for m in await sim_messages(sim, destination="447911000001")}
        assert twin_texts == {f"twin {i} " + "x" * 300 for i in range(2)}
        refs = {gw.gw.core.find(t["id"]).concat_ref for t in twins}  # type: ignore[union-attr]
        assert len(refs) == 2


async def test_receipts_become_statuses_and_signed_callbacks(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim, CallbackSink.running() as sink, \
            running_gateway(gateway_config(tmp_path, sim, callback_url=sink.url)) as gw:
        cases = {"447911123456": "delivered", "447700900100": "undeliverable", "447700900200": "expired",
                 "447700900300": "rejected", "447700900800": "failed"}
        ids = {}
        for to, expected in cases.items():
            ids[(await gw.send(to=to, text=f"to {to}", reference=f"ref-{to}"))["id"]] = expected
        views = await gw.wait_final(list(ids))
        assert {mid: v["status"] for mid, v in views.items()} == ids
        failed = next(v for v in views.values() if v["status"] == "failed")
        assert failed["error"]["smpp_status_name"] == "ESME_RINVDSTADR"
        undeliv = next(v for v in views.values() if v["status"] == "undeliverable")
        assert undeliv["error"]["err"] == "001"
        calls = await sink.wait_for(set(ids))
        assert sink.bad_signatures == 0
        for mid, expected in ids.items():
            assert [c["status"] for c in calls[mid]] == [expected]
            assert calls[mid][0]["reference"].startswith("ref-")


async def test_failed_callbacks_are_retried(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim, CallbackSink.running() as sink, \
            running_gateway(gateway_config(tmp_path, sim, callback_url=sink.url)) as gw:
        sink.fail_next = 2
        mid = (await gw.send(to="447911123456", text="retry my callback"))["id"]
        calls = await sink.wait_for({mid})
        assert [c["status"] for c in calls[mid]] == ["delivered"]
        assert sink.requests >= 3


async def test_failover_when_the_first_smsc_is_down(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim:
        with anyio.fail_after(5):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            dead_port = listener.extra(anyio.abc.SocketAttribute.local_port)
            await listener.aclose()  # nothing listens there now
        smscs = [
            {"name": "dead", "port": dead_port, "system_id": "esme", "password": "pw",
             "reconnect": {"initial_s": 0.1, "max_s": 0.2}},
            {"name": "sim", "port": sim.smpp_port, "system_id": "esme", "password": "pw"},
        ]
        cfg = gateway_config(tmp_path, sim, smscs=smscs,
                             routes=[{"name": "uk", "prefix": "44", "smscs": ["dead", "sim"]}])
        async with running_gateway(cfg, wait_ready=False) as gw:
            with anyio.fail_after(10):
                while not gw.gw.connectors["sim"].can_submit:
                    await anyio.sleep(0.02)
            ids = [(await gw.send(to="447911123456", text=f"failover {i}"))["id"] for i in range(20)]
            views = await gw.wait_final(ids)
            assert {v["status"] for v in views.values()} == {"delivered"}
            assert {v["smsc"] for v in views.values()} == {"sim"}


async def test_messages_wait_while_every_smsc_is_down_then_go(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim:
        cfg = gateway_config(tmp_path, sim)
        cfg["smscs"][0]["password"] = "wrong"  # the bind is refused: the route has no SMSC up
        async with running_gateway(cfg, wait_ready=False) as gw:
            r = await gw.api.get("/readyz")
            assert r.status_code == 503
            mid = (await gw.send(to="447911123456", text="patience"))["id"]
            await anyio.sleep(0.5)
            assert (await gw.status(mid))["status"] == "queued"
            stats = gw.gw.connectors["sim"].statistics()
            assert stats.bind_failures >= 1 and stats.binds_up == 0


async def test_configured_throughput_holds(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim:
        cfg = gateway_config(tmp_path, sim)
        cfg["smscs"][0]["throughput_per_s"] = 40
        async with running_gateway(cfg) as gw:
            r = await gw.api.post("/v1/messages/batch", json={"messages": [
                {"to": "447911123456", "from": "ACME", "text": f"paced {i}"} for i in range(100)]})
            assert r.status_code == 202
            ids = [x["id"] for x in r.json()["results"]]
            await gw.wait_final(ids, timeout_s=20)
        received = sorted(m["received_at"] for m in await sim_messages(sim, destination="447911123456"))
        assert len(received) == 100
        # No one-second window holds more than the rate plus the bucket's burst (a tenth of the rate).
        worst = max(sum(1 for t in received if start <= t < start + 1.0) for start in received)
        assert worst <= 40 + 4 + 1


async def test_simulator_quirks_lose_nothing(tmp_path: Path) -> None:
    quirky = {"system_id": "quirky", "password": "q", "message_ids": {"resp": "decimal", "receipt": "hex"},
              "receipts": {"tlvs": False}}
    throttled = {"system_id": "slow", "password": "s", "throughput_per_s": 20, "queue_limit": 1000}
    flaky = {"system_id": "flaky", "password": "f",
             "faults": {"receipt_before_resp_rate": 0.5, "disconnect_after_pdus": 25}}
    accounts = [*make_config()["accounts"], quirky, throttled, flaky]
    async with running_simulator(sim_config(accounts=accounts)) as sim:
        common = {"port": sim.smpp_port, "window": 10, "response_timeout_s": 3,
                  "reconnect": {"initial_s": 0.05, "max_s": 0.2}}
        smscs = [
            {"name": "quirky", "system_id": "quirky", "password": "q", "receipt_id_format": "auto", **common},
            {"name": "slow", "system_id": "slow", "password": "s", **common},
            {"name": "flaky", "system_id": "flaky", "password": "f", **common},
        ]
        routes = [{"name": "q", "prefix": "4471", "smscs": ["quirky"]},
                  {"name": "s", "prefix": "4472", "smscs": ["slow"]},
                  {"name": "f", "prefix": "4473", "smscs": ["flaky"]}]
        cfg = gateway_config(tmp_path, sim, smscs=smscs, routes=routes)
        async with running_gateway(cfg) as gw:
            ids: dict[str, str] = {}
            for prefix in ("4471", "4472", "4473"):
                r = await gw.api.post("/v1/messages/batch", json={"messages": [
                    {"to": f"{prefix}{i:08d}", "from": "ACME", "text": f"{prefix} {i}"} for i in range(60)]})
                assert r.status_code == 202
                ids.update({x["id"]: prefix for x in r.json()["results"]})
            views = await gw.wait_final(list(ids), timeout_s=40)
            by_route = collections.Counter((ids[mid], v["status"]) for mid, v in views.items())
            assert by_route == {("4471", "delivered"): 60, ("4472", "delivered"): 60, ("4473", "delivered"): 60}
            assert gw.gw.connectors["slow"].statistics().submits.get(0x58, 0) > 0  # it was throttled
            assert gw.gw.connectors["flaky"].statistics().reconnects > 0  # it was cut mid-window
            assert gw.gw.core.statistics().receipts_unmatched_total == 0


async def test_idempotency_under_concurrent_duplicates(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim, running_gateway(gateway_config(tmp_path, sim)) as gw:
        body = {"to": "447911123456", "from": "ACME", "text": "only once"}
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await gw.api.post("/v1/messages", json=body, headers={"Idempotency-Key": "k-1"}))
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(post)
        assert {a.status_code for a in answers} == {202}
        ids = {a.json()["id"] for a in answers}
        assert len(ids) == 1
        await gw.wait_final(list(ids))
        await anyio.sleep(0.2)
        assert len([m for m in await sim_messages(sim) if m["text"] == "only once"]) == 1
        other = await gw.api.post("/v1/messages", json={**body, "text": "another"}, headers={"Idempotency-Key": "k-1"})
        assert other.status_code == 409
