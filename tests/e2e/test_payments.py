"""Payment requests end to end: the gateway against the simulator, with the scheduler's clock moved by the test.

A request's MT reaches the simulator; reminders fire when the (fake) clock reaches them, never inside the
recipient's quiet hours; once paid, a receipt goes out and no reminder follows.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from gateway._config import parse_config
from gateway._daemon import Gateway, serve
from gateway._http import run_http
from gateway._payments import DAY_S, Payments, install
from tests.conftest import ManualClock
from tests.e2e.gateway_fixture import API_KEY, RunningGateway, anyio_backend, gateway_config
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator

pytestmark = pytest.mark.anyio
_ = anyio_backend

PAYER = "447911000001"
H = 3600
# Day 0 of the fake clock: a UTC midnight after today's, so that the MTs' validity, counted from the fake clock,
# never ends before the real clock reaches it.
D0 = (math.floor(time.time() / DAY_S) + 2) * DAY_S


def at(day: int, hour: int, minute: int = 0) -> int:
    return D0 + day * DAY_S + hour * H + minute * 60


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config(tmp_path: Path, sim: RunningSimulator) -> dict[str, Any]:
    return gateway_config(tmp_path, sim, billing={"payments": {
        "source": "84001", "quiet_hours": [{"prefix": "44", "start": "21:00", "end": "08:00"}]}})


@asynccontextmanager
async def running(cfg: dict[str, Any], clock: ManualClock) -> AsyncIterator[tuple[RunningGateway, Payments]]:
    """The gateway with the payment service installed and its scheduler on `clock` (whether or not the daemon
    installs and runs it itself)."""
    gw = Gateway(parse_config(cfg, base_dir=Path(cfg["store"]["path"]).parent))
    payments: Payments = gw.extensions.get("payments") or install(gw)
    payments.wall = clock
    stop = anyio.Event()

    async def http(gw: Gateway, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        await run_http(gw, listen="127.0.0.1:0", task_status=task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(serve, gw, stop.wait, http=http))
        if not payments.running:
            await tg.start(payments.run)
        assert gw.http is not None
        url = f"http://{gw.http.host}:{gw.http.port}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                                     timeout=10) as api:
            running_gw = RunningGateway(gw, url, api)
            await running_gw.wait_ready()
            try:
                yield running_gw, payments
            finally:
                stop.set()
                tg.cancel_scope.cancel()


async def sim_mts(sim: RunningSimulator, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The MTs the simulator received for PAYER, once there are `count`."""
    async with sim.http() as http:
        with anyio.fail_after(timeout_s):
            while True:
                r = await http.get("/messages", params={"destination": PAYER, "direction": "mt"})
                messages: list[dict[str, Any]] = r.json()["messages"]
                if len(messages) >= count:
                    return messages
                await anyio.sleep(0.05)


async def settle(sim: RunningSimulator, count: int) -> None:
    """Nothing more than `count` MTs reaches the simulator within a moment."""
    await anyio.sleep(0.5)
    assert len(await sim_mts(sim, count)) == count


async def test_reminders_stop_when_the_request_is_paid(tmp_path: Path) -> None:
    clock = ManualClock(at(0, 12))
    async with running_simulator(make_config()) as sim, running(config(tmp_path, sim), clock) as (gw, payments):
        r = await gw.api.post("/v1/payment-requests", json={
            "msisdn": "+" + PAYER, "amount": "49.90", "currency": "EUR", "description": "Water bill March",
            "pay_url": "https://pay.example.com/w/3", "due": iso(at(8, 12)), "reference": "w-3"})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        assert [x["state"] for x in r.json()["reminders"]] == ["planned"] * 3
        [request] = await sim_mts(sim, 1)
        assert request["source"] == "84001"
        assert "49.90 EUR" in request["text"] and "Water bill March" in request["text"]
        assert "https://pay.example.com/w/3" in request["text"]

        clock.now = at(1, 11, 59)
        await payments.fire_due()
        await settle(sim, 1)
        clock.now = at(1, 12)  # the 7-day reminder: the scheduler task sends it once woken
        payments.wake()
        reminder = (await sim_mts(sim, 2))[1]
        assert reminder["text"].startswith("Reminder: Water bill March")

        r = await gw.api.post(f"/v1/payment-requests/{pid}/paid",
                              json={"invoice_url": "https://pay.example.com/inv/w-3.pdf"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "paid"
        receipt = (await sim_mts(sim, 3))[2]
        assert "49.90 EUR received" in receipt["text"] and "https://pay.example.com/inv/w-3.pdf" in receipt["text"]

        for day in (5, 8, 9):  # the 3-day and due-day reminders never come
            clock.now = at(day, 12)
            payments.wake()
            assert await payments.fire_due() is None
        await settle(sim, 3)
        view = (await gw.api.get(f"/v1/payment-requests/{pid}")).json()
        assert [x["state"] for x in view["reminders"]] == ["sent", "cancelled", "cancelled"]
        assert [m["kind"] for m in view["messages"]] == ["request", "reminder", "receipt"]
        finals = await gw.wait_final([m["id"] for m in view["messages"]])
        assert {v["status"] for v in finals.values()} == {"delivered"}
        assert {v["reference"] for v in finals.values()} == {"w-3"}


async def test_a_reminder_in_quiet_hours_waits_for_the_morning(tmp_path: Path) -> None:
    clock = ManualClock(at(0, 12))
    async with running_simulator(make_config()) as sim, running(config(tmp_path, sim), clock) as (gw, payments):
        r = await gw.api.post("/v1/payment-requests", json={
            "msisdn": PAYER, "amount": "12", "currency": "GBP", "description": "Gym", "due": iso(at(3, 22, 30)),
            "pay_url": "https://pay.example.com/g"})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        # 7 days before is past; 3 days before is 22:30, inside 21:00-08:00: it moves to 08:00 the next morning.
        assert [(x["offset_days"], x["at"]) for x in r.json()["reminders"]] == [
            (3, iso(at(1, 8)).replace("Z", ".000Z")), (0, iso(at(4, 8)).replace("Z", ".000Z"))]
        await sim_mts(sim, 1)
        for t in (at(0, 22, 30), at(1, 2), at(1, 7, 59)):
            clock.now = t
            assert await payments.fire_due() == at(1, 8)
        await settle(sim, 1)
        clock.now = at(1, 8)
        payments.wake()
        reminder = (await sim_mts(sim, 2))[1]
        assert reminder["text"].startswith("Reminder: Gym")
        view = (await gw.api.get(f"/v1/payment-requests/{pid}")).json()
        assert [x["state"] for x in view["reminders"]] == ["sent", "planned"]
