"""MO injection through the control API, and scripted handsets."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpp import Reassembler
from tests.e2e.simulator_fixture import anyio_backend, esme, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


async def test_mo_goes_to_the_account_owning_the_shortcode() -> None:
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw", bind="receiver") as mine, \
            esme(sim, "other", "pw2", bind="receiver") as theirs:
        r = await http.post("/mo", json={"from": "+447700900123", "to": "84001", "text": "STOP"})
        assert r.status_code == 202 and r.json()["account"] == "esme" and r.json()["parts"] == 1
        mo = await mine.next_deliver()
        assert mo.esm_class == 0 and mo.source_addr == "447700900123" and mo.destination_addr == "84001"
        assert mo.short_message == b"STOP" and mo.data_coding == 0
        r = await http.post("/mo", json={"from": "447700900124", "to": "85001", "text": "HELP"})
        assert r.json()["account"] == "other"
        assert (await theirs.next_deliver()).short_message == b"HELP"
        assert len(mine.delivered) == 1
        r = await http.post("/mo", json={"from": "447700900124", "to": "99999", "text": "lost"})
        assert r.status_code == 404
        r = await http.post("/mo", json={"from": "447700900124", "to": "84001", "text": "x", "bogus": 1})
        assert r.status_code == 400 and "bogus" in r.json()["error"]


async def test_a_batch_of_mos_goes_out_in_order_and_a_bad_one_does_not_stop_the_rest() -> None:
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw", bind="receiver") as mine:
        batch = [{"from": f"44770090{i:04d}", "to": "84001", "text": f"chat {i}"} for i in range(5)]
        batch.insert(2, {"from": "447700900999", "to": "99999", "text": "nobody owns 99999"})
        batch.insert(4, {"from": "447700900998", "to": "84001", "text": "Ж", "encoding": "gsm7"})
        r = await http.post("/mo/batch", json={"messages": batch})
        assert r.status_code == 202 and r.json()["injected"] == 5
        results = r.json()["results"]
        assert [x.get("status") for x in results] == [None, None, 404, None, 400, None, None]
        assert "99999" in results[2]["error"]
        assert all(x["account"] == "esme" and x["parts"] == 1 for i, x in enumerate(results) if i not in (2, 4))
        got = [(await mine.next_deliver()) for _ in range(5)]
        assert [(p.source_addr, p.short_message) for p in got] == [
            (f"44770090{i:04d}", f"chat {i}".encode()) for i in range(5)]


async def test_a_bad_mo_batch_is_refused_whole() -> None:
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw", bind="receiver") as mine:
        good = {"from": "447700900123", "to": "84001", "text": "fine"}
        for body, names in [({"messages": [good, {"from": "447700900124", "text": "no to"}]}, "messages[1]"),
                            ({"messages": [good, {"from": 447700900124, "to": "84001"}]}, "messages[1].from"),
                            ({"messages": []}, "messages"),
                            ({"messages": [good] * 1001}, "1001"),
                            ({"mos": [good]}, "mos")]:
            r = await http.post("/mo/batch", json=body)
            assert r.status_code == 400 and names in r.json()["error"], (body.keys(), r.json())
        r = await http.post("/mo/batch", content=b"[not json")
        assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
        r = await http.post("/mo", json=good)
        assert r.status_code == 202
        assert (await mine.next_deliver()).short_message == b"fine"  # the first MO to go out
        assert not mine.delivered[1:]


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=20),
                         st.sampled_from(["84001", "99999", "447700900123", "", "gsm7", "ucs2", "latin1", "auto"]))
_MO_BODIES = st.dictionaries(st.sampled_from(["from", "to", "text", "encoding", "extra"]), _JSON_VALUES, max_size=5)
_BATCH_BODIES = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(_MO_BODIES, max_size=8)}),
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
        {"from": st.sampled_from(["447700900123", "+447700900124"]), "to": st.sampled_from(["84001", "99999"])},
        optional={"text": st.text(max_size=200), "encoding": st.sampled_from(["auto", "gsm7", "ucs2", "nope"])}),
        min_size=1, max_size=8)}),
    st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=3),
    st.lists(_JSON_VALUES, max_size=3), _JSON_VALUES)


async def test_any_batch_body_gets_202_with_one_result_per_mo_or_400_with_none_sent() -> None:
    async with running_simulator() as sim:
        url = sim.control_url

        @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(body=_BATCH_BODIES)
        def check(body: Any) -> None:
            with httpx.Client(base_url=url, timeout=10) as http:
                before = sum(a["mo_sent"] for a in http.get("/stats").json()["accounts"])
                r = http.post("/mo/batch", json=body)
                assert r.status_code in (202, 400), (body, r.status_code, r.text)
                stats = http.get("/stats").json()
                # no receiver is bound: the MOs that went out wait in the backlog, counted as sent when delivered
                queued = sum(a["backlog"] for a in stats["accounts"])
                if r.status_code == 400:
                    assert isinstance(r.json()["error"], str) and r.json()["error"]
                    assert queued == check.queued  # type: ignore[attr-defined]
                    return
                answer = r.json()
                assert len(answer["results"]) == len(body["messages"])
                ok = [x for x in answer["results"] if "error" not in x]
                assert answer["injected"] == len(ok)
                assert queued == check.queued + sum(x["parts"] for x in ok)  # type: ignore[attr-defined]
                assert before == sum(a["mo_sent"] for a in stats["accounts"])
                check.queued = queued  # type: ignore[attr-defined]

        check.queued = 0  # type: ignore[attr-defined]
        await anyio.to_thread.run_sync(check)


async def test_a_long_mo_is_segmented_with_udh() -> None:
    texts = ["a long mobile originated message, " * 8, "Длинное сообщение на русском языке " * 4]
    async with running_simulator() as sim, sim.http() as http, esme(sim, "esme", "pw") as client:
        reassembler = Reassembler()
        for text in texts:
            r = await http.post("/mo", json={"from": "447700900123", "to": "84001", "text": text})
            parts = r.json()["parts"]
            assert parts >= 2
            whole = None
            for _ in range(parts):
                pdu = await client.next_deliver()
                assert pdu.esm_class == 0x40
                whole = reassembler.add(source=pdu.source_addr, destination=pdu.destination_addr,
                                        data_coding=pdu.data_coding, short_message=pdu.short_message, udhi=True,
                                        now=time.monotonic())
            assert whole is not None and whole.text() == text
        messages = (await http.get("/messages", params={"direction": "mo"})).json()["messages"]
        assert [(m["text"], m["encoding"], m["total_parts"]) for m in messages] == [
            (texts[0], "gsm7", 2), (texts[1], "ucs2", 3)]


async def test_an_mo_waits_for_a_receiver() -> None:
    async with running_simulator() as sim, sim.http() as http:
        r = await http.post("/mo", json={"from": "447700900123", "to": "84001", "text": "early"})
        assert r.json()["queued"] is True
        async with esme(sim, "esme", "pw") as client:
            assert (await client.next_deliver()).short_message == b"early"


async def test_handsets_reply_to_matching_mts() -> None:
    cfg = make_config(receipts={"delay": {"mean_s": 0.02}}, handsets=[
        {"to_prefix": "4479", "contains": "Reply YES", "reply": "YES", "after_s": 0.2},
        {"to_prefix": "447700901", "pattern": "PIN:? *([0-9]{4,8})", "reply": "{1}", "after_s": 0.05},
    ])
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client, sim.http() as http:
        start = time.monotonic()
        await client.submit(destination_addr="447911123456", short_message=b"Join the club? reply yes to confirm")
        await client.submit(destination_addr="447911123457", short_message=b"Nothing to answer here")
        await client.submit(destination_addr="447700901300", short_message=b"Your PIN: 4821")
        pin = await client.next_deliver()
        assert (pin.source_addr, pin.destination_addr, pin.short_message) == ("447700901300", "84001", b"4821")
        yes = await client.next_deliver()
        assert (yes.source_addr, yes.destination_addr, yes.short_message) == ("447911123456", "84001", b"YES")
        assert time.monotonic() - start >= 0.2
        await anyio.sleep(0.3)
        assert len(client.delivered) == 2
        # Rules change at run time.
        r = await http.put("/handsets", json=[{"to_prefix": "", "contains": "ping", "reply": "pong", "after_s": 0}])
        assert r.status_code == 200
        await client.submit(destination_addr="447700900001", short_message=b"PING?")
        assert (await client.next_deliver()).short_message == b"pong"
        bad = await http.put("/handsets", json=[{"contains": "x", "reply": "{1}"}])
        assert bad.status_code == 400 and "handsets[0].reply" in bad.json()["error"]


async def test_a_handset_answers_a_long_mt_once_when_whole() -> None:
    from smpp import Concatenation, encode_message, split_message

    cfg = make_config(receipts={"delay": {"mean_s": 0.02}}, handsets=[
        {"to_prefix": "4479", "contains": "Reply YES", "reply": "YES", "after_s": 0.05}])
    async with running_simulator(cfg) as sim, esme(sim, "esme", "pw") as client:
        text = "x" * 150 + " To confirm your subscription, Reply YES now."
        for part in split_message(encode_message(text), Concatenation.UDH8, 3):
            await client.submit(destination_addr="447911123456", esm_class=0x40, short_message=part.short_message)
        assert (await client.next_deliver()).short_message == b"YES"
        await anyio.sleep(0.2)
        assert len(client.delivered) == 1
