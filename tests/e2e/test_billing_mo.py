"""MO services against the simulator: STOP / START / HELP with consent records and the opt-out check, forward to
a local application with retries and one reply, auto-reply, long MOs, and an MO left unprocessed by a crash."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway._mo import MoRecord, mo_doc
from gateway._store import SqliteStore, Writes
from tests.e2e.gateway_fixture import (
    RunningGateway,
    anyio_backend,
    gateway_config,
    local_server,
    running_gateway,
    signature_ok,
)
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator

pytestmark = pytest.mark.anyio
_ = anyio_backend

SHORTCODE = "84001"
FORWARD_SECRET = "forward-secret"
HELP_TEXT = "ACME on {shortcode}: NEWS 1.50 EUR/week, CHAT free. Support 0800 123. Text STOP to end."


@dataclass
class App:
    """The application behind a forward service: checks signatures, fails `fail_next` times, then replies."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    bad_signatures: int = 0
    fail_next: int = 0
    reply: str | None = "Thanks for {text}"

    async def receive(self, request: Request) -> Response:
        self.attempts += 1
        body = await request.body()
        if not signature_ok(FORWARD_SECRET, request, body):
            self.bad_signatures += 1
            return Response(status_code=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response(status_code=503)
        data = json.loads(body)
        self.received.append(data)
        if self.reply is None:
            return Response(status_code=204)
        return Response(json.dumps({"reply": self.reply.format(text=data["text"])}), media_type="application/json")

    @classmethod
    @asynccontextmanager
    async def running(cls) -> AsyncIterator[App]:
        app = cls()
        async with local_server(Starlette(routes=[Route("/mo", app.receive, methods=["POST"])])) as base:
            app.url = f"{base}/mo"
            yield app


def billing(app_url: str = "http://127.0.0.1:9/unused") -> dict[str, Any]:
    return {
        "mo_account": "e2e",
        "shortcodes": [{"shortcode": SHORTCODE, "default_service": "chat", "help_text": HELP_TEXT}],
        "services": [
            {"name": "chat", "kind": "forward", "shortcode": SHORTCODE, "keyword": "CHAT", "support": "0800 123",
             "forward": {"url": app_url, "secret": FORWARD_SECRET, "timeout_s": 2, "retry_initial_s": 0.05,
                         "retry_max_s": 0.2}},
            {"name": "echo", "kind": "autoreply", "shortcode": SHORTCODE, "keyword": "ECHO", "aliases": ["REPEAT"],
             "reply_text": "{service} got '{rest}' from {from} ({keyword}) on {shortcode}"},
            {"name": "news", "kind": "subscription", "shortcode": SHORTCODE, "keyword": "NEWS", "price": "1.50",
             "display_name": "ACME News", "support": "0800 123", "consent_text_version": "news-v3"},
        ],
    }


async def inject(sim: RunningSimulator, sender: str, text: str) -> None:
    async with sim.http() as http:
        r = await http.post("/mo", json={"from": sender, "to": SHORTCODE, "text": text})
        assert r.status_code == 202, r.text


async def mts_to(sim: RunningSimulator, msisdn: str) -> list[dict[str, Any]]:
    async with sim.http() as http:
        r = await http.get("/messages", params={"destination": msisdn, "direction": "mt", "limit": 1000})
        assert r.status_code == 200
        result: list[dict[str, Any]] = r.json()["messages"]
        return result


async def wait_mts(sim: RunningSimulator, msisdn: str, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    with anyio.fail_after(timeout_s):
        while len(found := await mts_to(sim, msisdn)) < count:
            await anyio.sleep(0.03)
    return found


async def wait_processed(gw: RunningGateway, count: int, timeout_s: float = 10) -> None:
    with anyio.fail_after(timeout_s):
        while len(gw.gw.store.docs("mo", state="processed")) < count:
            await anyio.sleep(0.02)


async def test_stop_refuses_mts_but_otp_passes_then_start_opts_back_in(tmp_path: Path) -> None:
    who = "447700900101"
    async with running_simulator(make_config()) as sim, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing()), base_dir=tmp_path) as gw:
        before = await gw.api.post("/v1/messages", json={"to": who, "from": SHORTCODE, "text": "hello"})
        assert before.status_code == 202, before.text
        await inject(sim, who, "Stop.")
        mts = await wait_mts(sim, who, 2)
        confirmation = mts[-1]
        assert confirmation["source"] == SHORTCODE
        assert "no more messages" in confirmation["text"] or "left" in confirmation["text"]

        refused = await gw.api.post("/v1/messages", json={"to": who, "from": SHORTCODE, "text": "promo"})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "opted_out"
        assert refused.json()["error"]["field"] == "to"
        otp = await gw.api.post("/v1/messages", json={"to": who, "from": SHORTCODE, "text": "code 1234",
                                                      "category": "otp"})
        assert otp.status_code == 202, otp.text
        other_source = await gw.api.post("/v1/messages", json={"to": who, "from": "ACME", "text": "not 84001"})
        assert other_source.status_code == 202, other_source.text

        consents = (await gw.api.get(f"/v1/consents/{who}")).json()
        assert set(consents["opted_out"]) == {SHORTCODE, "chat"}
        stop_records = [r for r in consents["records"] if r["action"] == "opt_out"]
        assert {r["scope"] for r in stop_records} == {SHORTCODE, "chat"}
        mo_ids = [d.id for d in gw.gw.store.docs("mo")]
        confirmation_msg = gw.gw.store.get(stop_records[0]["message_ids"][1])
        assert confirmation_msg is not None and confirmation_msg.to == who and confirmation_msg.source == SHORTCODE
        assert stop_records[0]["message_ids"][0] in mo_ids
        assert {r["method"] for r in stop_records} == {"keyword"}

        await inject(sim, who, "START")
        await wait_mts(sim, who, 5)  # hello, STOP confirmation, otp, ACME, START confirmation
        again = await gw.api.post("/v1/messages", json={"to": who, "from": SHORTCODE, "text": "welcome back"})
        assert again.status_code == 202, again.text
        consents = (await gw.api.get(f"/v1/consents/{who}")).json()
        assert consents["opted_out"] == []
        assert [r["action"] for r in consents["records"]].count("opt_in") == 2


async def test_stop_in_many_forms_each_answered_once(tmp_path: Path) -> None:
    forms = ["stop", "Stop.", "STOP please", "stop news", "STOPALL", "UNSUBSCRIBE", "cancel", "End", "quit",
             "  !!Stóp  "]
    senders = [f"4477009002{i:02d}" for i in range(len(forms))]
    async with running_simulator(make_config()) as sim, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing()), base_dir=tmp_path) as gw:
        for sender, text in zip(senders, forms, strict=True):
            await inject(sim, sender, text)
        await wait_processed(gw, len(forms))
        await anyio.sleep(0.3)
        for sender, text in zip(senders, forms, strict=True):
            mts = await wait_mts(sim, sender, 1)
            assert len(mts) == 1, (text, mts)
            out = (await gw.api.get(f"/v1/consents/{sender}")).json()["opted_out"]
            if text == "stop news":
                assert out == ["news"]
                assert "ACME News" in mts[0]["text"]
            elif text == "STOPALL":
                assert set(out) == {SHORTCODE, "chat", "echo", "news"}
            else:
                assert set(out) == {SHORTCODE, "chat"}, text
        # the words after STOP that are no keyword do not matter; a word that merely starts with stop is no STOP
        await inject(sim, "447700900299", "stopwatch for sale")
        await wait_processed(gw, len(forms) + 1)
        assert (await gw.api.get("/v1/consents/447700900299")).json()["records"] == []


async def test_help_answers_a_number_that_never_subscribed(tmp_path: Path) -> None:
    who = "447700900301"
    async with running_simulator(make_config()) as sim, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing()), base_dir=tmp_path) as gw:
        await inject(sim, who, "help")
        await inject(sim, who, "INFO NEWS")
        mts = await wait_mts(sim, who, 2)
        texts = [m["text"] for m in mts]
        assert texts[0] == HELP_TEXT.format(shortcode=SHORTCODE)
        assert "ACME News" in texts[1] and "1.50 EUR/week" in texts[1] and "0800 123" in texts[1]
        assert "STOP" in texts[1]
        assert (await gw.api.get(f"/v1/consents/{who}")).json()["records"] == []


async def test_forward_retries_and_sends_one_reply(tmp_path: Path) -> None:
    who = "447700900401"
    async with running_simulator(make_config()) as sim, App.running() as app, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing(app.url)), base_dir=tmp_path) as gw:
        app.fail_next = 2
        await inject(sim, who, "chat hello there")
        mts = await wait_mts(sim, who, 1)
        assert mts[0]["text"] == "Thanks for chat hello there"
        assert mts[0]["source"] == SHORTCODE
        assert app.attempts == 3 and app.bad_signatures == 0
        body = app.received[0]
        assert body["from"] == who and body["to"] == SHORTCODE and body["keyword"] == "CHAT"
        assert body["rest"] == "hello there" and body["service"] == "chat" and body["attempt"] == 3
        assert body["opted_out"] is False
        # the default service takes what no keyword matches
        await inject(sim, who, "what time is it")
        await wait_mts(sim, who, 2)
        await anyio.sleep(0.3)
        assert len(await mts_to(sim, who)) == 2
        jobs = gw.gw.store.docs("forward_job")
        assert [j.state for j in jobs] == ["done", "done"]


async def test_autoreply_with_template(tmp_path: Path) -> None:
    who = "447700900501"
    async with running_simulator(make_config()) as sim, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing()), base_dir=tmp_path) as gw:
        await inject(sim, who, "Écho ping {text}")
        mts = await wait_mts(sim, who, 1)
        assert mts[0]["text"] == f"echo got 'ping {{text}}' from {who} (ECHO) on {SHORTCODE}"
        assert gw.gw.store.docs("mo", state="processed")


async def test_long_mo_is_reassembled_before_routing(tmp_path: Path) -> None:
    who = "447700900601"
    long_rest = "word " * 60
    async with running_simulator(make_config()) as sim, App.running() as app, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing(app.url)), base_dir=tmp_path):
        app.reply = None
        await inject(sim, who, "CHAT " + long_rest)
        with anyio.fail_after(10):
            while not app.received:
                await anyio.sleep(0.02)
        assert app.received[0]["text"] == "CHAT " + long_rest
        assert app.received[0]["parts"] > 1 and app.received[0]["keyword"] == "CHAT"
        await anyio.sleep(0.2)
        assert await mts_to(sim, who) == []  # a 204 answer: no reply


async def test_mo_left_received_by_a_crash_is_handled_once_after_restart(tmp_path: Path) -> None:
    stopper, chatter = "447700900701", "447700900702"
    async with running_simulator(make_config()) as sim, App.running() as app:
        cfg = gateway_config(tmp_path, sim, billing=billing(app.url))
        # What a kill -9 in the middle of processing leaves: MOs durable as "received", nothing of their effects.
        now = time.time()
        records = [MoRecord(id=f"mo-crash-{i}", smsc="sim", msisdn=who, source_addr=who, to=SHORTCODE, text=text,
                            data_coding=0, received_at=now + i)
                   for i, (who, text) in enumerate([(stopper, "STOP"), (chatter, "chat are you there")])]
        store = SqliteStore(tmp_path / "gw.db")
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            await store.write(Writes(docs=[mo_doc(r) for r in records]))
            tg.cancel_scope.cancel()
        async with running_gateway(cfg, base_dir=tmp_path) as gw:
            await wait_processed(gw, 2)
            stop_mts = await wait_mts(sim, stopper, 1)
            chat_mts = await wait_mts(sim, chatter, 1)
            await anyio.sleep(0.3)
            assert len(await mts_to(sim, stopper)) == 1 and len(await mts_to(sim, chatter)) == 1
            assert stop_mts[0]["source"] == chat_mts[0]["source"] == SHORTCODE
            assert len(app.received) == 1 and app.received[0]["id"] == "mo-crash-1"
            consents = (await gw.api.get(f"/v1/consents/{stopper}")).json()
            assert {r["message_ids"][0] for r in consents["records"]} == {"mo-crash-0"}


async def test_forward_job_pending_at_restart_is_sent_and_replied_once(tmp_path: Path) -> None:
    who = "447700900801"
    async with running_simulator(make_config()) as sim, App.running() as app:
        cfg = gateway_config(tmp_path, sim, billing=billing(app.url))
        async with running_gateway(cfg, base_dir=tmp_path) as gw:
            app.fail_next = 10_000  # the application is down: the job stays pending
            await inject(sim, who, "chat anyone")
            with anyio.fail_after(10):
                while app.attempts < 2:
                    await anyio.sleep(0.02)
        assert gw.gw.store.is_open is False
        app.fail_next = 0
        async with running_gateway(cfg, base_dir=tmp_path) as gw:
            mts = await wait_mts(sim, who, 1)
            await anyio.sleep(0.3)
            assert len(await mts_to(sim, who)) == 1
            assert mts[0]["text"] == "Thanks for chat anyone"
            assert [j.state for j in gw.gw.store.docs("forward_job")] == ["done"]


async def test_consent_export_streams_csv_and_jsonl(tmp_path: Path) -> None:
    async with running_simulator(make_config()) as sim, \
            running_gateway(gateway_config(tmp_path, sim, billing=billing()), base_dir=tmp_path) as gw:
        for i in range(3):
            await inject(sim, f"44770090090{i}", "STOP NEWS")
        await wait_processed(gw, 3)
        r = await gw.api.get("/v1/consents/export", params={"format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        lines = r.text.strip().split("\r\n")
        assert lines[0].startswith("id,at,msisdn,action,scope")
        assert len(lines) == 4 and all(",opt_out,news,service," in line for line in lines[1:])
        r = await gw.api.get("/v1/consents/export")
        rows = [json.loads(line) for line in r.text.splitlines()]
        assert [row["msisdn"] for row in rows] == [f"44770090090{i}" for i in range(3)]
        assert {row["text_version"] for row in rows} == {"news-v3"}
        bad = await gw.api.get("/v1/consents/export", params={"format": "xml"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"


async def test_stop_during_a_pending_handshake_cancels_it_and_a_later_yes_charges_nothing(tmp_path: Path) -> None:
    who = "447700900901"
    cfg = billing()
    cfg["operators"] = [{"name": "simop", "smscs": ["sim"], "convention": "service_type",
                         "price_points": [{"price": "1.50", "code": "T150"}]}]
    async with running_simulator(make_config()) as sim, \
            running_gateway(gateway_config(tmp_path, sim, billing=cfg), base_dir=tmp_path) as gw:
        await inject(sim, who, "NEWS")
        confirm = (await wait_mts(sim, who, 1))[0]
        assert "YES" in confirm["text"] and "ACME News" in confirm["text"]
        await inject(sim, who, "stop")  # a reserved word is never taken for the handshake's answer
        stop = (await wait_mts(sim, who, 2))[1]
        assert stop["text"] == "You have left ACME News. You will not be charged again."
        await inject(sim, who, "YES")
        await wait_processed(gw, 3)
        await anyio.sleep(0.5)
        assert gw.gw.store.ledger(msisdn=who) == []
        assert not any(m["charge"] for m in await mts_to(sim, who) if m.get("charge"))
        assert {d.state for d in gw.gw.store.docs("handshake", msisdn=who)} == {"cancelled"}
        consents = (await gw.api.get(f"/v1/consents/{who}")).json()
        assert set(consents["opted_out"]) == {SHORTCODE, "chat"}
