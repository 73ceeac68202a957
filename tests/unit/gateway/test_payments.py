"""Payment requests: quiet-hours arithmetic and reminder planning (pure, with hypothesis), and the service through
the HTTP API (httpx's ASGI transport over a real Gateway and SQLite store; no connectors, MTs stay queued) with a
fake clock driving the scheduler.

The quiet-hours oracle is Python's own datetime with a fixed-offset time zone, not our modular arithmetic.
"""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._accept import ErrorResponse
from gateway._config import QuietHoursConfig, hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._http import create_app
from gateway._model import Message
from gateway._payments import (
    DAY_S,
    KIND,
    MAX_REMINDERS,
    PaymentRequestCreated,
    PaymentRequestView,
    Payments,
    QuietHours,
    decode_payment,
    due_instant,
    install,
    plan_reminders,
    quiet_hours_for,
)
from gateway._store import StoreClosed, Writes
from tests.conftest import ManualClock

pytestmark = pytest.mark.anyio

# 2030-01-07 00:00:00 UTC, a Monday: the tests' day 0.
D0 = calendar.timegm((2030, 1, 7, 0, 0, 0))
H = 3600


def utc(day: int, hour: int, minute: int = 0) -> int:
    return D0 + day * DAY_S + hour * H + minute * 60


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- quiet hours (pure) ----------------------------------------------------------------------------------

NIGHT = QuietHours(21 * H, 8 * H, 0)


def test_quiet_period_crossing_midnight() -> None:
    assert not NIGHT.contains(utc(0, 20, 59))
    assert NIGHT.contains(utc(0, 21))
    assert NIGHT.contains(utc(0, 23, 30))
    assert NIGHT.contains(utc(1, 7, 59))
    assert not NIGHT.contains(utc(1, 8))
    assert NIGHT.end_after(utc(0, 23, 30)) == utc(1, 8)  # to the next morning
    assert NIGHT.end_after(utc(1, 2)) == utc(1, 8)  # after midnight: the same morning
    assert NIGHT.end_after(utc(0, 12)) == utc(0, 12)  # not quiet: unchanged


def test_quiet_period_in_local_time() -> None:
    paris_winter = QuietHours(21 * H, 8 * H, 60 * 60)  # UTC+01:00
    assert paris_winter.contains(utc(0, 20, 30))  # 21:30 local
    assert paris_winter.end_after(utc(0, 20, 30)) == utc(1, 7)  # 08:00 local
    assert not paris_winter.contains(utc(1, 7))
    honolulu = QuietHours(22 * H, 7 * H, -10 * 60 * 60)
    assert honolulu.contains(utc(1, 8))  # 22:00 local the day before
    assert honolulu.end_after(utc(1, 8)) == utc(1, 17)


def test_quiet_period_within_a_day_and_empty() -> None:
    lunch = QuietHours(12 * H, 14 * H, 0)
    assert lunch.contains(utc(0, 13)) and not lunch.contains(utc(0, 14)) and not lunch.contains(utc(0, 11))
    assert lunch.end_after(utc(0, 12, 30)) == utc(0, 14)
    never = QuietHours(9 * H, 9 * H, 0)
    assert not any(never.contains(utc(0, h)) for h in range(24))


def test_the_longest_prefix_wins() -> None:
    rules = [QuietHoursConfig(prefix="", start="22:00", end="07:00"),
             QuietHoursConfig(prefix="44", start="21:00", end="08:00"),
             QuietHoursConfig(prefix="447", start="20:00", end="09:00", utc_offset_minutes=60)]
    assert quiet_hours_for(rules, "447911123456") == QuietHours(20 * H, 9 * H, 3600)
    assert quiet_hours_for(rules, "442071234567") == QuietHours(21 * H, 8 * H, 0)
    assert quiet_hours_for(rules, "33612345678") == QuietHours(22 * H, 7 * H, 0)
    assert quiet_hours_for(rules[1:], "33612345678") is None
    assert quiet_hours_for([], "447911123456") is None


minutes = st.integers(0, 24 * 60 - 1)
offsets_min = st.integers(-14 * 60, 14 * 60)
instants = st.integers(D0 - 400 * DAY_S, D0 + 400 * DAY_S)


def oracle_contains(t: int, start: int, end: int, offset_min: int) -> bool:
    local = datetime.fromtimestamp(t, timezone(timedelta(minutes=offset_min))).time()
    a, b = time(start // 60, start % 60), time(end // 60, end % 60)
    if a < b:
        return a <= local < b
    if a > b:
        return local >= a or local < b
    return False


def oracle_end(t: int, end: int, offset_min: int) -> int:
    tz = timezone(timedelta(minutes=offset_min))
    local = datetime.fromtimestamp(t, tz)
    candidate = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return int(candidate.timestamp())


@given(t=instants, start=minutes, end=minutes, offset_min=offsets_min)
def test_quiet_arithmetic_agrees_with_datetime(t: int, start: int, end: int, offset_min: int) -> None:
    q = QuietHours(start * 60, end * 60, offset_min * 60)
    assert q.contains(t) == oracle_contains(t, start, end, offset_min)
    moved = q.end_after(t)
    if q.contains(t):
        assert moved == oracle_end(t, end, offset_min)
        assert q.contains(moved - 1)
    else:
        assert moved == t
    assert not q.contains(moved)
    assert t <= moved < t + DAY_S


# ---- the reminder plan (pure) ----------------------------------------------------------------------------

quiet_hours = st.one_of(st.none(), st.builds(lambda a, b, o: QuietHours(a * 60, b * 60, o * 60),
                                             minutes, minutes, offsets_min))


@settings(max_examples=500)
@given(due_at=instants, ahead_s=st.integers(0, 40 * DAY_S), offsets=st.lists(st.integers(0, 30), max_size=6),
       quiet=quiet_hours)
def test_a_planned_reminder_is_never_in_quiet_hours_nor_late(due_at: int, ahead_s: int, offsets: list[int],
                                                            quiet: QuietHours | None) -> None:
    created = due_at - ahead_s + 0.25
    plan = plan_reminders(due_at=due_at, created_at=created, offsets_days=offsets, quiet=quiet)
    assert len(plan) <= MAX_REMINDERS
    distinct = list(dict.fromkeys(offsets))[:MAX_REMINDERS]
    assert [p.at for p in plan] == sorted({p.at for p in plan})  # increasing, no two at once
    for p in plan:
        assert p.offset_days in distinct
        assert p.nominal_at == due_at - p.offset_days * DAY_S
        assert p.nominal_at > created  # offsets already past are skipped
        assert p.nominal_at <= p.at < p.nominal_at + DAY_S
        assert p.at <= due_at + DAY_S  # never after due + 1 day
        if quiet is not None:
            assert not quiet.contains(p.at)
        else:
            assert p.at == p.nominal_at
    if quiet is None:
        assert {p.offset_days for p in plan} == {o for o in distinct if due_at - o * DAY_S > created}


def test_the_default_plan() -> None:
    due = utc(8, 12)
    plan = plan_reminders(due_at=due, created_at=utc(0, 12), offsets_days=(7, 3, 0), quiet=NIGHT)
    assert [(p.offset_days, p.at) for p in plan] == [(7, utc(1, 12)), (3, utc(5, 12)), (0, utc(8, 12))]
    # Due at 22:30: each reminder moves to 08:00 the next morning; 7 days before is already past.
    plan = plan_reminders(due_at=utc(3, 22, 30), created_at=utc(0, 12), offsets_days=(7, 3, 0), quiet=NIGHT)
    assert [(p.offset_days, p.at) for p in plan] == [(3, utc(1, 8)), (0, utc(4, 8))]
    # Only the first three distinct offsets count.
    plan = plan_reminders(due_at=due, created_at=utc(0, 0), offsets_days=(1, 1, 2, 3, 4), quiet=None)
    assert [p.offset_days for p in plan] == [3, 2, 1]


def test_due_instant() -> None:
    now = utc(0, 14, 30) + 0.7
    assert due_instant("2030-01-10", now=now, utc_offset_s=0) == (utc(3, 14, 30), "2030-01-10")
    # The local day and time of day of the recipient (UTC+02:00: 16:30 local).
    assert due_instant("2030-01-10", now=now, utc_offset_s=7200) == (utc(3, 14, 30), "2030-01-10")
    assert due_instant("2030-01-07", now=now, utc_offset_s=0) == (utc(0, 14, 30), "2030-01-07")  # today
    assert due_instant("2030-01-15T18:00:00+01:00", now=now, utc_offset_s=0) == (utc(8, 17),
                                                                                  "2030-01-15 18:00")
    assert due_instant("2030-01-15T18:00:00.5Z", now=now, utc_offset_s=0)[0] == utc(8, 18) + 1
    late_evening = utc(0, 11)  # 2030-01-08 01:00 at UTC+14: the 7th is already yesterday there
    with pytest.raises(ValueError, match="past"):
        due_instant("2030-01-07", now=late_evening, utc_offset_s=14 * 3600)
    for bad, why in (("2030-01-06", "past"), ("2030-01-07T10:00:00Z", "past"), ("2030-01-09T10:00:00", "offset"),
                     ("2041-01-10", "days ahead"), ("2030-02-30", "day is out of range")):
        with pytest.raises(ValueError, match=why):
            due_instant(bad, now=now, utc_offset_s=0)


# ---- the service through the HTTP API --------------------------------------------------------------------

ACME = {"Authorization": "Bearer acme-key"}
BETA = {"Authorization": "Bearer beta-key"}
PAYER = "447911123456"

CONFIG: dict[str, Any] = {
    "accounts": [
        {"id": "acme", "api_keys": [{"sha256": hash_api_key("acme-key")}], "country": "GB"},
        {"id": "beta", "api_keys": [{"sha256": hash_api_key("beta-key")}], "default_source": "BETA",
         "allowed_sources": ["BETA"]},
    ],
    "smscs": [{"name": "a", "system_id": "a", "password": "x"}],
    "routes": [{"name": "uk", "prefix": "44", "smscs": ["a"]}],
    "numbering": {"countries": [{"country": "GB", "country_code": "44", "trunk_prefix": "0",
                                 "national_lengths": [10]}]},
    "store": {"path": "gw.db"},
    "billing": {"payments": {"source": "84001",
                             "quiet_hours": [{"prefix": "44", "start": "21:00", "end": "08:00"}]}},
}


@dataclass
class Consent:
    """Stands in for the consent register (gateway._consent): opted-out (msisdn, scope) pairs."""

    out: set[tuple[str, str]] = field(default_factory=set)
    asked: list[tuple[str, list[str]]] = field(default_factory=list)

    def mt_scopes(self, account: str, source: str) -> tuple[str, ...]:
        return (source,)

    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool:
        self.asked.append((msisdn, list(scopes)))
        return any((msisdn, s) in self.out for s in self.asked[-1][1])


@dataclass
class Env:
    client: httpx.AsyncClient
    gw: Gateway
    payments: Payments
    clock: ManualClock
    consent: Consent

    async def create(self, headers: dict[str, str] = ACME, **kw: Any) -> httpx.Response:
        body = {"msisdn": "07911 123456", "amount": "12.50", "currency": "EUR", "description": "Invoice 117",
                "pay_url": "https://pay.example.com/i/117", "due": iso(utc(8, 12)), **kw}
        return await self.client.post("/v1/payment-requests", json=body, headers=headers)

    async def view(self, pid: str, headers: dict[str, str] = ACME) -> dict[str, Any]:
        r = await self.client.get(f"/v1/payment-requests/{pid}", headers=headers)
        assert r.status_code == 200, r.text
        msgspec.convert(r.json(), PaymentRequestView)
        body: dict[str, Any] = r.json()
        return body

    async def at(self, t: float) -> int | None:
        self.clock.now = t
        return await self.payments.fire_due()

    def mts(self) -> list[Message]:
        return sorted(self.gw.core.messages.values(), key=lambda m: m.created_at)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    gw = Gateway(parse_config(CONFIG, base_dir=tmp_path))
    clock = ManualClock(utc(0, 12))
    payments = gw.extensions.get("payments") or install(gw)
    payments.wall = clock
    consent = Consent()
    gw.extensions["consent"] = consent
    app = create_app(gw)
    async with anyio.create_task_group() as tg:
        await tg.start(gw.store.run)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as client:
            yield Env(client, gw, payments, clock, consent)
        tg.cancel_scope.cancel()


def error(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = msgspec.convert(r.json(), ErrorResponse)
    assert body.error.code == code, r.text
    if field is not None:
        assert body.error.field == field, r.text


async def test_create_sends_one_mt_and_plans_three_reminders(env: Env) -> None:
    r = await env.create(reference="inv-117")
    assert r.status_code == 201, r.text
    created = msgspec.convert(r.json(), PaymentRequestCreated)
    assert r.headers["location"] == f"/v1/payment-requests/{created.id}"
    assert created.text == "Invoice 117: 12.50 EUR due 2030-01-15 12:00. Pay: https://pay.example.com/i/117"
    assert created.parts == 1 and created.warning is None
    assert created.msisdn == PAYER and created.source == "84001" and created.status == "open"
    [mt] = env.mts()
    assert (mt.to, mt.source, mt.text, mt.account, mt.category, mt.reference) == (
        PAYER, "84001", created.text, "acme", "payment", "inv-117")
    view = await env.view(created.id)
    assert [m["id"] for m in view["messages"]] == [mt.id]
    assert view["messages"][0]["kind"] == "request" and view["messages"][0]["status"] == "queued"
    assert [(x["offset_days"], x["at"], x["state"]) for x in view["reminders"]] == [
        (7, "2030-01-08T12:00:00.000Z", "planned"), (3, "2030-01-12T12:00:00.000Z", "planned"),
        (0, "2030-01-15T12:00:00.000Z", "planned")]
    doc = env.payments.store.doc(KIND, created.id)
    assert doc is not None and doc.due == utc(1, 12) and doc.state == "open" and doc.msisdn == PAYER
    assert env.consent.asked == [(PAYER, ["84001"])]


async def test_a_text_longer_than_one_part_is_sent_with_a_warning(env: Env) -> None:
    r = await env.create(description="x" * 150)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["parts"] == 2 and "2 parts" in body["warning"]
    assert len(env.mts()[0].parts) == 2


async def test_requests_refused(env: Env) -> None:
    error(await env.create(amount="0.00"), 422, "invalid_field", "amount")
    error(await env.create(amount="12,50"), 422, "invalid_field", "amount")
    error(await env.create(currency="eur"), 422, "invalid_field", "currency")
    error(await env.create(due="2030-01-06"), 422, "invalid_field", "due")
    error(await env.create(due="2030-01-09T10:00:00"), 422, "invalid_field", "due")
    error(await env.create(pay_url="ftp://pay.example.com/x"), 422, "invalid_field", "pay_url")
    error(await env.create(msisdn="12"), 422, "invalid_field", "msisdn")
    error(await env.create(msisdn="+33612345678"), 422, "no_route", "msisdn")
    error(await env.create(msisdn="+" + PAYER, source="OTHER", headers=BETA), 422, "invalid_field", "source")
    error(await env.create(description="\U0001F600" * 160, pay_url="https://pay.example.com/" + "x" * 600), 422,
          "too_long", "description")
    error(await env.create(colour="red"), 422, "unknown_field", "colour")
    error(await env.create(headers={}), 401, "unauthorized")
    r = await env.client.post("/v1/payment-requests", content=b"{", headers=ACME)
    error(r, 400, "malformed_json")
    env.gw.config = msgspec.structs.replace(env.gw.config, billing=msgspec.structs.replace(
        env.gw.config.billing, payments=msgspec.structs.replace(env.gw.config.billing.payments, source=None)))
    error(await env.create(), 422, "missing_field", "source")
    r = await env.create(msisdn="+" + PAYER, headers=BETA)  # the account's default source
    assert r.status_code == 201 and r.json()["source"] == "BETA"
    assert len(env.mts()) == 1


async def test_an_opted_out_number_is_refused_unless_payments_are_exempt(env: Env) -> None:
    env.consent.out.add((PAYER, "84001"))
    error(await env.create(), 422, "opted_out", "msisdn")
    assert env.mts() == []
    consent = msgspec.structs.replace(env.gw.config.billing.consent, exempt_categories=("otp", "payment"))
    env.gw.config = msgspec.structs.replace(env.gw.config,
                                            billing=msgspec.structs.replace(env.gw.config.billing, consent=consent))
    assert (await env.create()).status_code == 201


async def test_only_the_owner_reads_or_changes_a_request(env: Env) -> None:
    pid = (await env.create()).json()["id"]
    error(await env.client.get(f"/v1/payment-requests/{pid}", headers=BETA), 404, "not_found", "id")
    error(await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=BETA), 404, "not_found")
    error(await env.client.delete(f"/v1/payment-requests/{pid}", headers=BETA), 404, "not_found")
    error(await env.client.get("/v1/payment-requests/nope", headers=ACME), 404, "not_found")
    assert (await env.view(pid))["status"] == "open"


async def test_reminders_fire_on_time_and_stop_when_paid(env: Env) -> None:
    pid = (await env.create()).json()["id"]
    assert await env.at(utc(1, 11, 59)) == utc(1, 12)  # not yet; says when
    assert len(env.mts()) == 1
    calls: list[tuple[list[Message], Writes]] = []
    accept = env.gw.core.accept

    async def spy(messages: list[Message], writes: Writes | None = None) -> None:
        assert writes is not None
        calls.append((list(messages), writes))
        await accept(messages, writes)

    env.gw.core.accept = spy  # type: ignore[method-assign]
    assert await env.at(utc(1, 12)) == utc(5, 12)
    [(sent, writes)] = calls  # Rule 1: the reminder and the record's new state in one commit
    [reminder] = sent
    assert reminder.text == "Reminder: Invoice 117, 12.50 EUR due 2030-01-15 12:00. Pay: https://pay.example.com/i/117"
    [doc] = writes.docs
    assert decode_payment(doc).reminders[0].message_id == reminder.id and doc.due == utc(5, 12)
    view = await env.view(pid)
    assert [x["state"] for x in view["reminders"]] == ["sent", "planned", "planned"]
    assert view["reminders"][0]["message_id"] == reminder.id
    assert [m["kind"] for m in view["messages"]] == ["request", "reminder"]

    env.clock.now = utc(2, 9)
    r = await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=ACME,
                              json={"invoice_url": "https://pay.example.com/inv/117.pdf"})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["status"] == "paid" and view["invoice_url"] == "https://pay.example.com/inv/117.pdf"
    assert [x["state"] for x in view["reminders"]] == ["sent", "cancelled", "cancelled"]
    receipt = env.mts()[-1]
    assert receipt.text == ("Thank you: 12.50 EUR received for Invoice 117. "
                            "Invoice: https://pay.example.com/inv/117.pdf")
    assert await env.at(utc(9, 12)) is None  # nothing left to fire
    assert len(env.mts()) == 3
    r = await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=ACME)  # again: nothing more
    assert r.status_code == 200 and len(env.mts()) == 3
    error(await env.client.delete(f"/v1/payment-requests/{pid}", headers=ACME), 409, "not_open")
    assert env.payments.statistics().reminders_sent == 1 and env.payments.statistics().receipts_sent == 1


async def test_cancel_stops_the_reminders(env: Env) -> None:
    pid = (await env.create()).json()["id"]
    r = await env.client.delete(f"/v1/payment-requests/{pid}", headers=ACME)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert {x["state"] for x in r.json()["reminders"]} == {"cancelled"}
    assert await env.at(utc(30, 12)) is None
    assert len(env.mts()) == 1
    assert (await env.client.delete(f"/v1/payment-requests/{pid}", headers=ACME)).status_code == 200
    error(await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=ACME), 409, "not_open")
    error(await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=ACME,
                                json={"invoice_url": "mailto:x"}), 422, "invalid_field", "invoice_url")


async def test_paid_without_a_body_sends_a_receipt_without_a_link(env: Env) -> None:
    pid = (await env.create()).json()["id"]
    assert (await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=ACME)).status_code == 200
    assert env.mts()[-1].text == "Thank you: 12.50 EUR received for Invoice 117."


async def test_a_reminder_planned_in_quiet_hours_waits_for_their_end(env: Env) -> None:
    pid = (await env.create(due=iso(utc(3, 22, 30)))).json()["id"]
    view = await env.view(pid)
    assert [(x["offset_days"], x["at"]) for x in view["reminders"]] == [
        (3, "2030-01-08T08:00:00.000Z"), (0, "2030-01-11T08:00:00.000Z")]
    assert await env.at(utc(0, 22, 30)) == utc(1, 8)  # the unshifted time: nothing
    assert await env.at(utc(1, 7, 59)) == utc(1, 8)
    assert len(env.mts()) == 1
    await env.at(utc(1, 8))
    assert len(env.mts()) == 2


async def test_quiet_hours_are_checked_again_when_a_reminder_fires(env: Env) -> None:
    pid = (await env.create(msisdn="+447700900123")).json()["id"]
    assert (await env.view(pid))["reminders"][0]["at"] == "2030-01-08T12:00:00.000Z"
    # The config is reloaded with quiet hours at lunch for 4477: the reminder planned at 12:00 is now quiet.
    payments = msgspec.structs.replace(env.gw.config.billing.payments, quiet_hours=[
        QuietHoursConfig(prefix="44", start="21:00", end="08:00"),
        QuietHoursConfig(prefix="4477", start="11:00", end="13:00")])
    env.gw.config = msgspec.structs.replace(env.gw.config,
                                            billing=msgspec.structs.replace(env.gw.config.billing, payments=payments))
    assert await env.at(utc(1, 12)) == utc(1, 13)
    assert len(env.mts()) == 1
    assert (await env.view(pid))["reminders"][0]["at"] == "2030-01-08T13:00:00.000Z"
    await env.at(utc(1, 13))
    assert len(env.mts()) == 2
    # The gateway was down from before the second reminder (12:00) until 23:00: it waits for the morning.
    env.gw.config = parse_config(CONFIG, base_dir=Path(env.gw.config.base_dir))
    assert await env.at(utc(5, 23)) == utc(6, 8)
    assert len(env.mts()) == 2
    await env.at(utc(6, 8))
    assert len(env.mts()) == 3
    assert [x["state"] for x in (await env.view(pid))["reminders"]] == ["sent", "sent", "planned"]


async def test_a_number_that_opted_out_later_gets_no_reminder(env: Env) -> None:
    pid = (await env.create()).json()["id"]
    env.consent.out.add((PAYER, "84001"))
    await env.at(utc(1, 12))
    view = await env.view(pid)
    assert view["reminders"][0]["state"] == "skipped_opted_out"
    assert "opted out" in view["reminders"][0]["detail"]
    assert len(env.mts()) == 1
    env.consent.out.clear()  # opted in again: the next reminder goes
    await env.at(utc(5, 12))
    assert [x["state"] for x in (await env.view(pid))["reminders"]] == ["skipped_opted_out", "sent", "planned"]
    env.consent.out.add((PAYER, "84001"))
    r = await env.client.post(f"/v1/payment-requests/{pid}/paid", headers=ACME)
    assert r.status_code == 200 and "receipt not sent" in r.json()["events"][0]
    assert len(env.mts()) == 2
    assert env.payments.statistics().reminders_skipped == 1


async def test_after_downtime_only_the_latest_reminder_goes_and_none_after_due(env: Env) -> None:
    first = (await env.create()).json()["id"]
    await env.at(utc(5, 13))  # down from before the first reminder to after the second
    assert [x["state"] for x in (await env.view(first))["reminders"]] == ["missed", "sent", "planned"]
    assert len(env.mts()) == 2
    env.clock.now = utc(0, 12)
    second = (await env.create()).json()["id"]
    await env.at(utc(9, 12, 1))  # more than a day after due: nothing is sent any more
    assert [x["state"] for x in (await env.view(second))["reminders"]] == ["missed", "missed", "missed"]
    assert [x["state"] for x in (await env.view(first))["reminders"]] == ["missed", "sent", "missed"]
    assert len(env.mts()) == 3
    assert env.payments.statistics().reminders_missed == 5


async def test_a_failed_commit_sends_nothing_and_the_retry_sends_once(env: Env) -> None:
    pid = (await env.create()).json()["id"]
    accept = env.gw.core.accept

    async def closed(messages: list[Message], writes: Writes | None = None) -> None:
        raise StoreClosed("disk full")

    env.gw.core.accept = closed  # type: ignore[method-assign]
    with pytest.raises(StoreClosed):
        await env.at(utc(1, 12))
    env.gw.core.accept = accept  # type: ignore[method-assign]
    assert (await env.view(pid))["reminders"][0]["state"] == "planned"
    await env.at(utc(1, 12, 1))
    # A restart (a new service over the same store) finds the reminder sent and sends nothing again.
    restarted = Payments(env.gw, wall=env.clock)
    env.clock.now = utc(1, 12, 2)
    await restarted.fire_due()
    assert len(env.mts()) == 2
    assert [x["state"] for x in (await env.view(pid))["reminders"]] == ["sent", "planned", "planned"]


async def test_an_idempotency_key_creates_one_request(env: Env) -> None:
    key = {**ACME, "Idempotency-Key": "pay-117"}
    first = await env.create(headers=key)
    again = await env.create(headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["text"] == first.json()["text"]
    assert len(env.mts()) == 1
    error(await env.create(headers=key, amount="13.00"), 409, "idempotency_conflict", "Idempotency-Key")


async def test_the_openapi_document_describes_the_routes(env: Env) -> None:
    doc = (await env.client.get("/openapi.json")).json()
    assert {"post"} == set(doc["paths"]["/v1/payment-requests"])
    assert {"get", "delete"} == set(doc["paths"]["/v1/payment-requests/{id}"])
    assert {"post"} == set(doc["paths"]["/v1/payment-requests/{id}/paid"])
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    body = schemas["PaymentRequestBody"]
    assert set(body["required"]) == {"msisdn", "amount", "currency", "description", "pay_url", "due"}


async def test_the_consent_register_decides_opt_outs(env: Env) -> None:
    from gateway._consent import ConsentRegister

    register = ConsentRegister(env.gw)
    env.gw.extensions["consent"] = register

    async def consent(opted_in: bool) -> None:
        writes = Writes()
        register.record(msisdn=PAYER, scope="84001", opted_in=opted_in, method="keyword", text_version=None,
                        message_ids=[], now=env.clock.now, writes=writes)
        await env.gw.store.write(writes)

    await consent(False)  # STOP to 84001
    error(await env.create(), 422, "opted_out", "msisdn")
    await consent(True)  # START
    pid = (await env.create()).json()["id"]
    await consent(False)
    await env.at(utc(1, 12))
    assert (await env.view(pid))["reminders"][0]["state"] == "skipped_opted_out"
    assert len(env.mts()) == 1
