"""Carrier billing end to end: the gateway (MO services, consent, charging, subscriptions, PIN) against the simulator's
handsets and balances.

MO JOIN -> confirm MT -> the handset answers YES -> charged MT -> receipt -> ledger charged -> subscription active;
insufficient funds with a fallback price; a late YES; two YES at once; the PIN flow (wrong PIN, too many attempts,
expired PIN); a renewal that fails then succeeds; kill -9 in the middle of a charge; schemathesis on the routes.
"""

from __future__ import annotations

import functools
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import httpx
import pytest
import yaml

from gateway._config import hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._http import run_http
from tests.e2e.gateway_fixture import (
    API_KEY,
    anyio_backend,
    gateway_config,
    gateway_process,
    listening_url,
    running_gateway,
)
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator

pytestmark = pytest.mark.anyio
_ = anyio_backend

SHORTCODE = "84001"
PIN_KEY = "e2e-pin-key"


def billing(**news: Any) -> dict[str, Any]:
    service: dict[str, Any] = {
        "name": "news", "kind": "subscription", "shortcode": SHORTCODE, "keyword": "JOIN", "price": "1.50",
        "account": "e2e", "handshake_ttl_s": 30, "period": "daily", "fallback_prices": ["1.00"],
        "renewal": {"retry_attempts": 0, "retry_spacing_s": 1}}
    service.update(news)
    return {
        "operators": [{"name": "simop", "smscs": ["sim"], "convention": "service_type",
                       "price_points": [{"price": "1.50", "code": "T150"}, {"price": "1.00", "code": "T100"}],
                       "receipt_errors": {"insufficient_funds": ["069"], "barred": ["011"]},
                       "charge_receipt_mt": True}],
        "services": [service],
        "shortcodes": [{"shortcode": SHORTCODE, "account": "e2e"}],
        "pin": {"length": 4, "ttl_s": 30, "max_attempts": 3, "secret": PIN_KEY},
    }


def sim_config(*, balances: dict[str, int] | None = None) -> dict[str, Any]:
    return make_config(
        receipts={"delay": {"distribution": "fixed", "mean_s": 0.05}, "tick_s": 0.002, "retry_delay_s": 0.1},
        billing={"default_balance": 1000, "balances": balances or {}},
        handsets=[{"to_prefix": "4479", "contains": "Reply YES", "reply": "YES", "after_s": 0.2}],
        accounts=[{"system_id": "esme", "password": "pw", "shortcodes": [SHORTCODE],
                   "billing": {"convention": "service_type", "price_points": {"T150": 150, "T100": 100}}}],
    )


def config(tmp_path: Path, sim: RunningSimulator, **overrides: Any) -> dict[str, Any]:
    cfg = gateway_config(tmp_path, sim, **overrides)
    cfg["accounts"][0]["callback"] = {}
    return cfg


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy; returns it."""
    with anyio.fail_after(timeout_s):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.05)


async def send_mo(sim: httpx.AsyncClient, msisdn: str, text: str) -> None:
    r = await sim.post("/mo", json={"from": msisdn, "to": SHORTCODE, "text": text})
    assert r.status_code == 202, r.text


async def mts_to(sim: httpx.AsyncClient, msisdn: str) -> list[dict[str, Any]]:
    r = await sim.get("/messages", params={"destination": msisdn, "direction": "mt"})
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


async def wait_mt(sim: httpx.AsyncClient, msisdn: str, starts: str, count: int = 1) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        hits = [m for m in await mts_to(sim, msisdn) if m["text"].startswith(starts)]
        return hits if len(hits) >= count else []
    result: list[dict[str, Any]] = await eventually(found)
    return result


async def sim_charges(sim: httpx.AsyncClient, msisdn: str) -> list[dict[str, Any]]:
    charges: list[dict[str, Any]] = (await sim.get("/billing/charges", params={"msisdn": msisdn})).json()["charges"]
    return sorted(charges, key=lambda c: c["at"])


async def ledger(api: httpx.AsyncClient, msisdn: str) -> list[dict[str, Any]]:
    r = await api.get("/v1/charges", params={"msisdn": msisdn})
    assert r.status_code == 200, r.text
    return sorted(r.json()["charges"], key=lambda c: (c["at"], c["id"]))


async def settled(api: httpx.AsyncClient, msisdn: str, n: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        rows = await ledger(api, msisdn)
        return rows if len(rows) >= n and all(r["state"] != "pending" for r in rows) else []
    result: list[dict[str, Any]] = await eventually(check)
    return result


async def subscriptions(api: httpx.AsyncClient, msisdn: str) -> list[dict[str, Any]]:
    r = await api.get("/v1/subscriptions", params={"msisdn": msisdn})
    assert r.status_code == 200, r.text
    subs: list[dict[str, Any]] = r.json()["subscriptions"]
    return subs


async def test_join_handshake_handset_yes_charged_receipt_active(tmp_path: Path) -> None:
    msisdn = "447900000001"
    async with running_simulator(sim_config()) as sim, sim.http() as http, \
            running_gateway(config(tmp_path, sim, billing=billing())) as gw:
        await send_mo(http, msisdn, "join")
        [confirm] = await wait_mt(http, msisdn, "Reply YES")
        assert confirm["source"] == SHORTCODE and confirm.get("service_type", "") == ""  # free
        [entry] = await settled(gw.api, msisdn, 1)
        assert (entry["state"], entry["amount"], entry["currency"], entry["price_point"], entry["operator"]) == (
            "charged", "1.50", "EUR", "T150", "simop")
        [charge] = await sim_charges(http, msisdn)
        assert (charge["price"], charge["price_point"], charge["result"]) == (150, "T150", "charged")
        assert entry["smsc_message_id"] == charge["message_id"]
        assert (await http.get(f"/billing/balances/{msisdn}")).json()["balance"] == 850
        [receipt] = await wait_mt(http, msisdn, "You were charged 1.50 EUR for news")
        assert receipt.get("service_type", "") == ""  # the receipt MT is free
        [sub] = await subscriptions(gw.api, msisdn)
        assert (sub["state"], sub["consent_method"], sub["charges"], sub["pending_charge"]) == (
            "active", "keyword", 1, None)
        # The consent record cites the confirm MT and the handset's YES.
        consents = (await gw.api.get(f"/v1/consents/{msisdn}")).json()["records"]
        opt_in = [c for c in consents if c["action"] == "opt_in" and c["scope"] == "news"]
        assert len(opt_in) == 1 and opt_in[0]["method"] == "keyword" and opt_in[0]["text_version"] == "v1"
        yes = gw.gw.store.docs("mo", msisdn=msisdn)
        assert len(yes) == 2 and opt_in[0]["message_ids"][1] == yes[1].id
        assert (await gw.api.get(f"/v1/messages/{opt_in[0]['message_ids'][0]}")).json()["to"] == msisdn
        # JOIN again: already subscribed, nothing charged.
        await send_mo(http, msisdn, "JOIN")
        await wait_mt(http, msisdn, "You are already subscribed to news")
        assert len(await sim_charges(http, msisdn)) == 1


async def test_insufficient_funds_falls_back_then_suspends(tmp_path: Path) -> None:
    msisdn = "447900000002"
    async with running_simulator(sim_config(balances={msisdn: 0})) as sim, sim.http() as http, \
            running_gateway(config(tmp_path, sim, billing=billing())) as gw:
        await send_mo(http, msisdn, "JOIN")
        entries = await settled(gw.api, msisdn, 2)
        assert [(e["amount"], e["state"], e["reason"]) for e in entries] == [
            ("1.50", "failed", "insufficient_funds"), ("1.00", "failed", "insufficient_funds")]
        charges = await sim_charges(http, msisdn)
        assert [(c["price_point"], c["result"]) for c in charges] == [("T150", "insufficient_funds"),
                                                                      ("T100", "insufficient_funds")]
        await wait_mt(http, msisdn, "news is suspended")

        async def suspended() -> bool:
            subs = await subscriptions(gw.api, msisdn)
            return bool(subs) and subs[0]["state"] == "suspended"
        await eventually(suspended)
        assert not [m for m in await mts_to(http, msisdn) if m["text"].startswith("You were charged")]


async def test_late_yes_gets_an_explanation_and_no_charge(tmp_path: Path) -> None:
    msisdn = "447700900300"  # no handset rule: the test answers
    async with running_simulator(sim_config()) as sim, sim.http() as http, \
            running_gateway(config(tmp_path, sim, billing=billing(handshake_ttl_s=1))) as gw:
        await send_mo(http, msisdn, "JOIN")
        await wait_mt(http, msisdn, "Reply YES")
        await anyio.sleep(1.2)
        await send_mo(http, msisdn, "YES")
        await wait_mt(http, msisdn, "Sorry, that offer has expired")
        assert await sim_charges(http, msisdn) == []
        assert await ledger(gw.api, msisdn) == []
        assert await subscriptions(gw.api, msisdn) == []


async def test_two_yes_at_once_charge_once(tmp_path: Path) -> None:
    msisdn = "447700900400"
    async with running_simulator(sim_config()) as sim, sim.http() as http, \
            running_gateway(config(tmp_path, sim, billing=billing())) as gw:
        await send_mo(http, msisdn, "JOIN")
        await wait_mt(http, msisdn, "Reply YES")
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_mo, http, msisdn, "YES")
            tg.start_soon(send_mo, http, msisdn, "yes!")

        async def processed() -> bool:
            docs = gw.gw.store.docs("mo", msisdn=msisdn, state="processed")
            return len(docs) == 3
        await eventually(processed)
        [entry] = await settled(gw.api, msisdn, 1)
        assert entry["state"] == "charged"
        await anyio.sleep(0.5)
        assert len(await sim_charges(http, msisdn)) == 1
        assert len(await ledger(gw.api, msisdn)) == 1


async def test_pin_flow_wrong_pin_too_many_attempts_and_expiry(tmp_path: Path) -> None:
    cfg = billing()
    cfg["pin"]["ttl_s"] = 3
    async with running_simulator(sim_config()) as sim, sim.http() as http, \
            running_gateway(config(tmp_path, sim, billing=cfg)) as gw:
        async def start(msisdn: str) -> tuple[str, str]:
            r = await gw.api.post("/v1/verifications", json={"msisdn": msisdn, "service": "news"})
            assert r.status_code == 202, r.text
            [mt] = await wait_mt(http, msisdn, "Your news PIN is")
            found = re.search(r"PIN is (\d{4})\.", mt["text"])
            assert found is not None
            return r.json()["id"], found.group(1)

        def other(pin: str) -> str:
            return f"{(int(pin) + 1) % 10000:04d}"

        async def check(vid: str, pin: str) -> httpx.Response:
            return await gw.api.post(f"/v1/verifications/{vid}/check", json={"pin": pin})

        expiring, expiring_pin = await start("447700900502")
        # A wrong PIN, then the right one.
        vid, pin = await start("447700900500")
        r = await check(vid, other(pin))
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (422, "wrong_pin", "pin")
        r = await check(vid, pin)
        assert r.status_code == 200 and r.json()["state"] == "verified"
        [entry] = await settled(gw.api, "447700900500", 1)
        assert (entry["state"], entry["price_point"]) == ("charged", "T150")
        [sub] = await subscriptions(gw.api, "447700900500")
        assert (sub["state"], sub["consent_method"]) == ("active", "web_pin")
        # Too many attempts: the right PIN after three wrong ones is refused.
        vid, pin = await start("447700900501")
        for _ in range(3):
            assert (await check(vid, other(pin))).status_code == 422
        r = await check(vid, pin)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_attempts")
        # Expired.
        await anyio.sleep(max(0.0, 3.1 - 0.0))
        r = await check(expiring, expiring_pin)
        assert (r.status_code, r.json()["error"]["code"]) == (410, "expired")
        for msisdn in ("447700900501", "447700900502"):
            assert await sim_charges(http, msisdn) == []
            assert await subscriptions(gw.api, msisdn) == []


async def test_renewal_fails_for_funds_then_succeeds_on_retry(tmp_path: Path) -> None:
    msisdn = "447900000006"
    cfg = billing(period_s=2.5, fallback_prices=[], renewal={"retry_attempts": 2, "retry_spacing_s": 1})
    async with running_simulator(sim_config()) as sim, sim.http() as http, \
            running_gateway(config(tmp_path, sim, billing=cfg)) as gw:
        await send_mo(http, msisdn, "JOIN")
        [first] = await settled(gw.api, msisdn, 1)
        assert first["state"] == "charged"
        sid = first["id"].rsplit(".", 2)[0]
        assert (await http.put(f"/billing/balances/{msisdn}", json={"balance": 0})).status_code == 200
        rows = await settled(gw.api, msisdn, 2)
        assert (rows[1]["id"], rows[1]["state"], rows[1]["reason"]) == (f"{sid}.1.0", "failed", "insufficient_funds")
        assert (await http.put(f"/billing/balances/{msisdn}", json={"balance": 1000})).status_code == 200
        rows = await settled(gw.api, msisdn, 3)
        assert (rows[2]["id"], rows[2]["state"], rows[2]["amount"]) == (f"{sid}.1.1", "charged", "1.50")
        sub = (await gw.api.get(f"/v1/subscriptions/{sid}")).json()
        assert sub["state"] == "active" and sub["charges"] >= 2
        charges = [c["result"] for c in await sim_charges(http, msisdn)]
        assert charges[:3] == ["charged", "insufficient_funds", "charged"]


# ---- kill -9 in the middle of a charge ---------------------------------------------------------------------------

@asynccontextmanager
async def ready_api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as api:
        with anyio.fail_after(20):
            while (await api.get("/readyz")).status_code != 200:
                await anyio.sleep(0.05)
        yield api


async def test_kill_9_during_a_charge_leaves_it_unknown_and_never_charges_twice(tmp_path: Path) -> None:
    msisdn = "447700900700"
    async with running_simulator(sim_config()) as sim, sim.http() as http:
        cfg = config(tmp_path, sim, billing=billing())
        cfg["smscs"][0]["response_timeout_s"] = 120  # the outcome is lost by the kill, not by a timeout
        cfg["logging"] = {"level": "info"}
        cfg_path = tmp_path / "gateway.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        log_path = tmp_path / "gateway.log"
        with gateway_process(cfg_path, log_path) as first:
            async with ready_api(await listening_url(log_path, first)) as api:
                r = await api.post("/v1/verifications", json={"msisdn": msisdn, "service": "news"})
                assert r.status_code == 202, r.text
                vid = r.json()["id"]
                [mt] = await wait_mt(http, msisdn, "Your news PIN is")
                pin = str(re.findall(r"\d{4}", mt["text"])[0])
                # The SMSC charges the MT and holds its submit_sm_resp back: the gateway cannot know the outcome.
                assert (await http.put("/faults/esme", json={"response_delay_s": 60})).status_code == 200
                r = await api.post(f"/v1/verifications/{vid}/check", json={"pin": pin})
                assert r.status_code == 200, r.text
                [charge] = await eventually(lambda: sim_charges(http, msisdn))
                assert charge["result"] == "charged"
                assert (await ledger(api, msisdn))[0]["state"] == "pending"
                first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert (await http.delete("/faults/esme")).status_code == 200
        with gateway_process(cfg_path, log_path) as second:
            async with ready_api(await listening_url(log_path, second, 1)) as api:
                [entry] = await settled(api, msisdn, 1)
                assert (entry["state"], entry["reason"]) == ("unknown", "outcome_unknown")
                msg = (await api.get(f"/v1/messages/{entry['message_id']}")).json()
                assert msg["status"] == "unknown" and msg["charged"]
                await anyio.sleep(1.5)  # time for a resend, if there were one
                assert len(await sim_charges(http, msisdn)) == 1
                assert len(await ledger(api, msisdn)) == 1
                [sub] = await subscriptions(api, msisdn)
                assert sub["state"] == "active" and sub["pending_charge"] is None
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0


# ---- the OpenAPI document against the server (schemathesis) -------------------------------------------------------

OPERATIONS = [("POST", "/v1/subscriptions"), ("GET", "/v1/subscriptions"), ("GET", "/v1/subscriptions/{id}"),
              ("DELETE", "/v1/subscriptions/{id}"), ("GET", "/v1/charges"), ("GET", "/v1/charges/totals"),
              ("POST", "/v1/verifications"), ("GET", "/v1/verifications/{id}"),
              ("POST", "/v1/verifications/{id}/check")]


def test_schemathesis_on_the_billing_routes(tmp_path: Path) -> None:
    """Every billing operation, with data that fits its schema and data that does not: no 5xx, every answer in the
    document, negative data refused with a 4xx. No SMSC is connected: MTs stay queued."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    cfg = {"accounts": [{"id": "e2e", "api_keys": [{"sha256": hash_api_key(API_KEY)}],
                         "rate_limit_per_s": 100_000}],
           "smscs": [{"name": "sim", "system_id": "gw", "password": "x"}],
           "routes": [{"name": "all", "prefix": "", "smscs": ["sim"]}],
           "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                                  "trunk_prefix": "0"}]},
           "store": {"path": str(tmp_path / "gw.db")}, "billing": billing()}
    gw = Gateway(parse_config(cfg, base_dir=tmp_path))  # installs the billing flows and their routes

    @asynccontextmanager
    async def serving() -> AsyncIterator[str]:
        async with anyio.create_task_group() as tg:
            await tg.start(gw.store.run)
            where = await tg.start(functools.partial(run_http, gw, listen="127.0.0.1:0"))
            yield f"http://{where.host}:{where.port}"
            tg.cancel_scope.cancel()

    auth = {"Authorization": f"Bearer {API_KEY}"}
    with anyio.from_thread.start_blocking_portal("asyncio", backend_options={"use_uvloop": True}) as portal, \
            portal.wrap_async_context_manager(serving()) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=schemathesis.Config.from_dict({
            "headers": auth,
            "checks": {"positive_data_acceptance": {"enabled": False}, "use_after_free": {"enabled": False}}}))
        fuzz = settings(max_examples=25, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                        suppress_health_check=list(HealthCheck))
        for method, path in OPERATIONS:
            operation = schema[path][method]
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @fuzz
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case: Any) -> None:
                    case.call_and_validate(base_url=base_url, headers=auth)

                check()
