"""Charge attempts, their settlement into the ledger, the receipt MT, and the ledger API.

The receipt `err` codes in these tests are the ones the SMPP 3.4 Appendix B receipt carries (`err:069`), written
the way operators document them ("69", "069", "011").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway import _charging
from gateway._charging import Charging, classify, next_lower_price, render
from gateway._config import OperatorConfig, ReceiptErrorsConfig, hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._http import create_app
from gateway._model import Message, MessageStatus, Part, StatusChange
from gateway._store import Writes

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
MSISDN = "447700900123"
KEY = "acme-key"
DAY = 86400.0


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@dataclass
class FakeConsent:
    out: set[tuple[str, str]] = field(default_factory=set)

    def record(self, **kw: Any) -> None:
        raise AssertionError("charging records no consent")

    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool:
        return any((msisdn, s) in self.out for s in scopes)


OPERATOR = OperatorConfig(name="op", smscs=["sim"], receipt_errors=ReceiptErrorsConfig(
    insufficient_funds=["69"], barred=["011"], unknown_subscriber=["1", "UNKNOWN"]))


def final(status: MessageStatus, err: str | None = None, code: str = "receipt", smsc: str | None = "sim") -> Message:
    msg = Message(id="m1", account="acme", to=MSISDN, source="84001", text="x", created_at=T0, expires_at=T0 + 99,
                  parts=[Part(smsc_message_id="abc", smsc=smsc)], charged=True, smsc=smsc)
    msg.set_status(status, T0 + 1, "", smsc or "")
    if status is not MessageStatus.DELIVERED:
        msg.error = {"code": code, "err": err}
    return msg


def test_classify_maps_final_statuses_and_receipt_errors() -> None:
    assert classify(final(MessageStatus.DELIVERED), OPERATOR) == _charging.ChargeOutcome("charged", "", "sim", "abc")
    cases = [
        (MessageStatus.UNDELIVERABLE, "069", "receipt", "failed", "insufficient_funds"),
        (MessageStatus.UNDELIVERABLE, "69", "receipt", "failed", "insufficient_funds"),
        (MessageStatus.REJECTED, "11", "receipt", "failed", "barred"),
        (MessageStatus.UNDELIVERABLE, "001", "receipt", "failed", "unknown_subscriber"),
        (MessageStatus.UNDELIVERABLE, "unknown", "receipt", "failed", "unknown_subscriber"),
        (MessageStatus.UNDELIVERABLE, "027", "receipt", "failed", "undeliverable"),
        (MessageStatus.EXPIRED, None, "receipt", "failed", "expired"),
        (MessageStatus.FAILED, None, "smsc_refused", "failed", "smsc_refused"),
        (MessageStatus.FAILED, None, "no_price_point", "failed", "no_price_point"),
        (MessageStatus.CANCELLED, None, "", "failed", "cancelled"),
        (MessageStatus.UNKNOWN, None, "outcome_unknown", "unknown", "outcome_unknown"),
    ]
    for status, err, code, state, reason in cases:
        outcome = classify(final(status, err, code), OPERATOR)
        assert (outcome.state, outcome.reason) == (state, reason), (status, err)
    # Without the operator, no receipt error has a meaning.
    assert classify(final(MessageStatus.UNDELIVERABLE, "069"), None).reason == "undeliverable"
    # The SMSC comes from the history when the record has none (refused at submit).
    msg = final(MessageStatus.FAILED, None, "smsc_refused", smsc=None)
    msg.history.append(StatusChange(T0, "failed", "", "sim2"))
    assert classify(msg, None).smsc == "sim2"


def test_fallback_prices_step_down_by_value() -> None:
    cfg = parse_config({"smscs": [{"name": "s", "system_id": "x", "password": "x"}], "billing": {"services": [
        {"name": "n", "kind": "subscription", "shortcode": "1", "price": "3.00",
         "fallback_prices": ["1.5", "0.50", "2.00", "5.00"]}]}})
    service = cfg.billing.services[0]
    assert [next_lower_price(service, p) for p in ("3.00", "2.00", "1.50", "0.5")] == ["2.00", "1.5", "0.50", None]


def test_render_keeps_unknown_placeholders_and_bad_templates() -> None:
    assert render("{service} {nope} {{x}}", {"service": "NEWS"}) == "NEWS {nope} {x}"
    assert render("bad {", {"service": "NEWS"}) == "bad {"
    assert render("{0} {service.upper}", {"service": "NEWS"}) == "{0} {service.upper}"


def config(tmp_path: Path, *, receipt_mt: bool = True) -> dict[str, Any]:
    return {
        "store": {"path": str(tmp_path / "gw.db")},
        "accounts": [{"id": "acme", "api_keys": [{"sha256": hash_api_key(KEY)}]}, {"id": "other-account"}],
        "smscs": [{"name": "sim", "system_id": "gw", "password": "x"},
                  {"name": "other", "system_id": "gw", "password": "x"}],
        "routes": [{"name": "gb", "prefix": "44", "smscs": ["sim"]}, {"name": "fr", "prefix": "33",
                                                                       "smscs": ["other"]}],
        "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                               "trunk_prefix": "0"}]},
        "billing": {
            "operators": [
                {"name": "op1", "smscs": ["sim"], "convention": "service_type",
                 "price_points": [{"price": "1.50", "code": "T150"}, {"price": "1.00", "code": "T100"}],
                 "receipt_errors": {"insufficient_funds": ["069"]}, "charge_receipt_mt": receipt_mt},
                {"name": "op2", "smscs": ["other"], "prefixes": ["3361"], "convention": "shortcode",
                 "price_points": [{"price": "1.50", "code": "84500"}]}],
            "services": [{"name": "news", "kind": "subscription", "shortcode": "84001", "price": "1.50",
                          "account": "acme"},
                         {"name": "secret", "kind": "subscription", "shortcode": "84002", "price": "1.00",
                          "account": "other-account"}],
        },
    }


@dataclass
class Harness:
    gw: Gateway
    charging: Charging
    consent: FakeConsent
    now: list[float]

    def attempt(self, attempt: str, price: str = "1.50", msisdn: str = MSISDN, service: str = "news") -> tuple[
            Message, Writes]:
        svc = self.gw.config.service(service)
        assert svc is not None
        writes = Writes()
        msg = self.charging.attempt(attempt=attempt, owner="test:x", msisdn=msisdn, service=svc, price=price,
                                    account="acme", text="content", now=self.now[0], writes=writes)
        return msg, writes

    def ledger(self, **kw: Any) -> list[dict[str, Any]]:
        return self.gw.store.ledger(**kw)


@asynccontextmanager
async def harness(tmp_path: Path, **kw: Any) -> AsyncIterator[Harness]:
    gw = Gateway(parse_config(config(tmp_path, **kw), base_dir=tmp_path))
    now = [T0]
    gw.core.wall = lambda: now[0]
    consent = FakeConsent()
    gw.extensions["consent"] = consent
    charging = _charging.install(gw)
    async with anyio.create_task_group() as tg:
        await tg.start(gw.store.run)
        yield Harness(gw, charging, consent, now)
        tg.cancel_scope.cancel()


async def settle(h: Harness, msg: Message, status: MessageStatus, err: str | None = None) -> None:
    msg.smsc = "sim"
    msg.parts[0].smsc_message_id = "smsc-1"
    msg.set_status(status, h.now[0], "")
    if status is not MessageStatus.DELIVERED:
        msg.error = {"code": "receipt", "err": err}
    h.gw.core.messages.pop(msg.id, None)
    h.charging.on_final(msg)
    await h.charging.settle_queued()


async def test_an_attempt_is_a_ledger_entry_and_a_charged_mt_in_one_commit(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        msg, writes = h.attempt("s1.0.0")
        assert h.ledger() == []  # nothing before the commit
        await h.gw.core.accept([msg], writes)
        [entry] = h.ledger()
        assert {k: entry[k] for k in ("id", "msisdn", "service", "operator", "amount", "currency", "price_point",
                                      "smsc", "message_id", "state")} == {
            "id": "s1.0.0", "msisdn": MSISDN, "service": "news", "operator": "op1", "amount": "1.50",
            "currency": "EUR", "price_point": "T150", "smsc": "sim", "message_id": msg.id, "state": "pending"}
        stored = h.gw.store.get(msg.id)
        assert stored is not None and stored.charged and not stored.resend_after_crash
        assert stored.meta["charge"] == {"price": "1.50", "currency": "EUR", "service": "news",
                                         "attempt": "s1.0.0", "owner": "test:x"}
        # The operator comes from its prefixes when it has them, else from the route's SMSCs.
        assert h.charging.operator_for("33612345678", "84001", "acme", "1.50")[0].name == "op2"  # type: ignore[union-attr]
        assert h.charging.operator_for("4915112345678", "84001", "acme", "1.50") == (None, "")


async def test_delivered_is_charged_once_with_a_free_receipt_mt(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        h.now[0] += 5
        await settle(h, msg, MessageStatus.DELIVERED)
        [entry] = h.ledger()
        assert (entry["state"], entry["reason"], entry["smsc_message_id"], entry["final_at"]) == (
            "charged", "", "smsc-1", T0 + 5)
        [receipt] = [m for m in h.gw.core.messages.values() if m.to == MSISDN]
        assert receipt.text == "You were charged 1.50 EUR for news. Reply STOP to end."
        assert not receipt.charged and receipt.source == "84001"
        # The same final MT handed over again (a restart's reconciliation and the hook) is settled once.
        h.charging.on_final(msg)
        assert await h.charging.settle_queued() == 0
        assert len(h.ledger()) == 1
        assert h.charging.statistics().settled == {"charged": 1, "failed": 0, "unknown": 0}


async def test_no_receipt_mt_when_opted_out_or_not_required(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.consent.out.add((MSISDN, "84001"))
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        await settle(h, msg, MessageStatus.DELIVERED)
        assert h.ledger()[0]["state"] == "charged"
        assert list(h.gw.core.messages.values()) == []
    async with harness(tmp_path / "b", receipt_mt=False) as h:
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        await settle(h, msg, MessageStatus.DELIVERED)
        assert list(h.gw.core.messages.values()) == []


async def test_failures_carry_the_operators_reason(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        await settle(h, msg, MessageStatus.UNDELIVERABLE, "069")
        assert [(e["state"], e["reason"]) for e in h.ledger()] == [("failed", "insufficient_funds")]
        assert list(h.gw.core.messages.values()) == []  # no receipt MT for a failed charge


async def test_owner_handler_adds_its_next_step_to_the_same_commit(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        seen: list[_charging.Settlement] = []

        def owner(st: _charging.Settlement, writes: Writes, messages: list[Message]) -> None:
            seen.append(st)
            retry, more = h.attempt("s1.0.1", price="1.00")
            writes.extend(more)
            messages.append(retry)

        h.charging.owners["test"] = owner
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        await settle(h, msg, MessageStatus.UNDELIVERABLE, "069")
        [st] = seen
        assert (st.attempt, st.owner_kind, st.owner_id, st.price, st.outcome.reason) == (
            "s1.0.0", "test", "x", "1.50", "insufficient_funds")
        assert sorted((e["id"], e["state"]) for e in h.ledger()) == [("s1.0.0", "failed"), ("s1.0.1", "pending")]


async def test_cancel_attempt_before_it_left(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        w = Writes()
        assert h.charging.cancel_attempt("s1.0.0", T0 + 1, w)
        await h.gw.core.accept([], w)
        assert [(e["state"], e["reason"]) for e in h.ledger()] == [("failed", "cancelled")]
        assert h.gw.store.get(msg.id).status is MessageStatus.CANCELLED  # type: ignore[union-attr]
        assert not h.charging.cancel_attempt("s1.0.0", T0 + 1, Writes())
        msg2, writes2 = h.attempt("s2.0.0")
        await h.gw.core.accept([msg2], writes2)
        msg2.on_wire = True
        assert not h.charging.cancel_attempt("s2.0.0", T0 + 1, Writes())


async def test_a_restart_settles_attempts_whose_mt_ended_before_the_stop(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        msg, writes = h.attempt("s1.0.0")
        await h.gw.core.accept([msg], writes)
        msg.set_status(MessageStatus.UNKNOWN, T0 + 1, "restart")
        msg.error = {"code": "outcome_unknown"}
        await h.gw.store.write(Writes(messages=[msg]))  # the MT's final status is durable, its settlement is not
    async with harness(tmp_path) as h:
        assert h.charging.reconcile() == 1
        assert await h.charging.settle_queued() == 1
        assert [(e["state"], e["reason"]) for e in h.ledger()] == [("unknown", "outcome_unknown")]
        assert h.charging.reconcile() == 0


async def test_ledger_api_filters_and_totals(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        outcomes = [(MessageStatus.DELIVERED, None), (MessageStatus.UNDELIVERABLE, "069"),
                    (MessageStatus.DELIVERED, None), (None, None)]
        for i, (status, err) in enumerate(outcomes):
            h.now[0] = T0 + i * DAY / 2
            msg, writes = h.attempt(f"s{i}.0.0", price="1.50" if i != 2 else "1.00",
                                    msisdn=MSISDN if i < 3 else "447700900999")
            await h.gw.core.accept([msg], writes)
            if status is not None:
                await settle(h, msg, status, err)
        msg, writes = h.attempt("x.0.0", service="secret")  # another account's service
        await h.gw.core.accept([msg], writes)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(h.gw)), base_url="http://gw",
                                     headers={"Authorization": f"Bearer {KEY}"}) as api:
            r = await api.get("/v1/charges")
            assert r.status_code == 200
            assert [c["id"] for c in r.json()["charges"]] == ["s3.0.0", "s2.0.0", "s1.0.0", "s0.0.0"]
            r = await api.get("/v1/charges", params={"msisdn": "07700 900123", "state": "charged"})
            assert [(c["id"], c["amount"], c["reason"]) for c in r.json()["charges"]] == [
                ("s2.0.0", "1.00", None), ("s0.0.0", "1.50", None)]
            r = await api.get("/v1/charges", params={"state": "failed"})
            [failed] = r.json()["charges"]
            assert (failed["id"], failed["reason"], failed["price_point"], failed["operator"]) == (
                "s1.0.0", "insufficient_funds", "T150", "op1")
            r = await api.get("/v1/charges", params={"since": str(T0 + DAY / 2), "until": "2023-11-15T22:13:20Z",
                                                     "limit": "1"})
            assert [c["id"] for c in r.json()["charges"]] == ["s1.0.0"]
            assert (await api.get("/v1/charges", params={"service": "secret"})).json() == {"charges": []}
            r = await api.get("/v1/charges/totals")
            totals = r.json()
            assert totals["since"] is None and [
                (t["service"], t["day"], t["attempts"], t["charged"], t["failed"], t["pending"], t["amount"])
                for t in totals["totals"]] == [
                ("news", "2023-11-14", 1, 1, 0, 0, {"EUR": "1.50"}),
                ("news", "2023-11-15", 2, 1, 1, 0, {"EUR": "1.00"}),
                ("news", "2023-11-16", 1, 0, 0, 1, {})]
            r = await api.get("/v1/charges/totals", params={"since": str(T0 + DAY)})
            assert [(t["day"], t["attempts"]) for t in r.json()["totals"]] == [("2023-11-15", 1), ("2023-11-16", 1)]
            for params, fld in [({"state": "paid"}, "state"), ({"since": "yesterday"}, "since"),
                                ({"until": "nan"}, "until"), ({"limit": "1001"}, "limit"),
                                ({"msisdn": "abc"}, "msisdn")]:
                r = await api.get("/v1/charges", params=params)
                assert r.status_code == 422 and r.json()["error"]["field"] == fld, params
            assert (await api.get("/v1/charges", headers={"Authorization": "Bearer nope"})).status_code == 401
