"""Handshake double opt-in, subscriptions, renewals, retries, reminders and cancellation, on a fake clock.

The gateway runs its SQLite store only (no dispatcher, no SMSC): the tests play the SMSC by ending the charged MTs
themselves and handing them to the final hook, then settle them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from gateway import _pin
from gateway._charging import Charging
from gateway._config import hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._http import create_app
from gateway._mo import MoRecord, MoResult
from gateway._model import Message, MessageStatus
from gateway._store import Doc, Writes
from gateway._subscriptions import Subscriptions, confirm_words, first_word, period_end
from tests.conftest import ManualClock

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
MSISDN = "447700900123"
KEY = "acme-key"
OTHER_KEY = "other-key"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@dataclass
class FakeConsent:
    """The consent register's interface (gateway._consent), in memory."""

    records: list[dict[str, Any]] = field(default_factory=list)
    out: set[tuple[str, str]] = field(default_factory=set)

    def record(self, *, msisdn: str, scope: str, opted_in: bool, method: str, text_version: str | None,
               message_ids: list[str], now: float, writes: Writes, record_id: str | None = None) -> None:
        self.records.append({"msisdn": msisdn, "scope": scope, "opted_in": opted_in, "method": method,
                             "text_version": text_version, "message_ids": list(message_ids), "at": now,
                             "id": record_id})
        if opted_in:
            self.out.discard((msisdn, scope))
        else:
            self.out.add((msisdn, scope))

    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool:
        return any((msisdn, s) in self.out for s in scopes)


def billing(**service: Any) -> dict[str, Any]:
    news = {"name": "news", "kind": "subscription", "shortcode": "84001", "keyword": "NEWS", "aliases": ["NOUVELLES"],
            "price": "1.50", "fallback_prices": ["1.00", "0.50"], "account": "acme", "period": "weekly",
            "handshake_ttl_s": 600, "consent_text_version": "news-v3",
            "renewal": {"retry_attempts": 1, "retry_spacing_s": 3600, "reminder_before_s": 86400},
            "texts": {"welcome": "Welcome to {service}"}}
    news.update(service)
    return {
        "operators": [{"name": "op1", "smscs": ["sim"], "convention": "service_type",
                       "price_points": [{"price": "1.50", "code": "T150"}, {"price": "1.00", "code": "T100"},
                                        {"price": "0.50", "code": "T050"}],
                       "receipt_errors": {"insufficient_funds": ["69"], "barred": ["011"],
                                          "unknown_subscriber": ["001"]}}],
        "services": [news,
                     {"name": "game", "kind": "one_off", "shortcode": "84001", "keyword": "GAME", "price": "1.00",
                      "account": "acme", "double_opt_in": False},
                     {"name": "quiz", "kind": "subscription", "shortcode": "84001", "keyword": "QUIZ",
                      "price": "1.00", "account": "acme", "period": "daily"}],
        "shortcodes": [{"shortcode": "84001", "account": "acme"}],
    }


def config_dict(tmp_path: Path, **service: Any) -> dict[str, Any]:
    return {
        "store": {"path": str(tmp_path / "gw.db")},
        "accounts": [{"id": "acme", "api_keys": [{"sha256": hash_api_key(KEY)}]},
                     {"id": "other", "api_keys": [{"sha256": hash_api_key(OTHER_KEY)}]}],
        "smscs": [{"name": "sim", "system_id": "gw", "password": "x"}],
        "routes": [{"name": "all", "prefix": "", "smscs": ["sim"]}],
        "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                               "trunk_prefix": "0"}]},
        "billing": billing(**service),
    }


@dataclass
class Harness:
    gw: Gateway
    clock: ManualClock
    consent: FakeConsent
    charging: Charging
    subs: Subscriptions
    seq: int = 0

    def mo(self, text: str, msisdn: str = MSISDN, to: str = "84001") -> MoRecord:
        self.seq += 1
        return MoRecord(id=f"mo-{self.seq}", smsc="sim", msisdn=msisdn, source_addr=msisdn, to=to, text=text,
                        data_coding=0, received_at=self.clock())

    async def commit(self, result: MoResult | None) -> MoResult | None:
        """What the MO intake does with a result: one commit."""
        if result is not None:
            await self.gw.core.accept(result.messages, result.writes)
        return result

    async def keyword(self, text: str = "NEWS", msisdn: str = MSISDN) -> MoResult:
        config = self.gw.config
        decision = config.mo_router().decide(to="84001", text=text)
        assert decision.service is not None
        service = config.service(decision.service)
        assert service is not None
        result = await self.subs.on_keyword(self.mo(text, msisdn), service)
        await self.commit(result)
        return result

    async def reply(self, text: str, msisdn: str = MSISDN) -> MoResult | None:
        if not self.subs.wants_reply(msisdn, "84001"):
            return None
        return await self.commit(await self.subs.on_reply(self.mo(text, msisdn)))

    def ledger(self, **filters: Any) -> list[dict[str, Any]]:
        return sorted(self.gw.store.ledger(**filters), key=lambda r: (r["at"], r["id"]))

    def charged_mts(self) -> list[Message]:
        return [m for m in self.gw.core.messages.values() if m.charged]

    async def finish(self, msg: Message, status: MessageStatus = MessageStatus.DELIVERED, err: str | None = None,
                     code: str = "receipt") -> None:
        """Play the SMSC: end `msg` with `status` (and receipt `err`), then settle it."""
        msg.smsc = "sim"
        msg.parts[0].smsc_message_id = f"smsc-{msg.id[-6:]}"
        msg.set_status(status, self.clock(), "test")
        if status is not MessageStatus.DELIVERED:
            msg.error = {"code": code, "err": err}
        self.gw.core.messages.pop(msg.id, None)
        self.charging.on_final(msg)
        await self.charging.settle_queued()

    async def finish_pending(self, sid: str, status: MessageStatus = MessageStatus.DELIVERED,
                             err: str | None = None) -> str:
        sub = self.subs.find(sid)
        assert sub is not None and sub.pending_attempt
        attempt = sub.pending_attempt
        msg = self.gw.core.messages[sub.pending_message_id]
        await self.finish(msg, status, err)
        return attempt

    def texts_to(self, msisdn: str = MSISDN) -> list[str]:
        return [m.text for m in sorted(self.gw.core.messages.values(), key=lambda m: (m.created_at, m.id))
                if m.to == msisdn and not m.charged]


def doc(h: Harness, doc_id: str) -> Doc:
    found = h.gw.store.doc("handshake", doc_id)
    assert found is not None
    return found


@asynccontextmanager
async def harness(tmp_path: Path, **service: Any) -> AsyncIterator[Harness]:
    gw = Gateway(parse_config(config_dict(tmp_path, **service), base_dir=tmp_path))
    clock = ManualClock(T0)
    gw.core.wall = clock
    consent = FakeConsent()
    gw.extensions["consent"] = consent
    _pin.install(gw)
    async with anyio.create_task_group() as tg:
        await tg.start(gw.store.run)
        yield Harness(gw, clock, consent, gw.extensions["charging"], gw.extensions["subscriptions"])
        tg.cancel_scope.cancel()


# ---- pure rules --------------------------------------------------------------------------------------------


def test_confirm_words_and_first_word_fold_case_accents_and_punctuation() -> None:
    cfg = parse_config({"smscs": [{"name": "s", "system_id": "x", "password": "x"}],
                        "billing": {"services": [{"name": "n", "kind": "subscription", "shortcode": "1",
                                                  "price": "1.00", "confirm_keyword": "Oui",
                                                  "confirm_aliases": ["Sí"]}]}})
    service = cfg.billing.services[0]
    assert confirm_words(service) == {"oui", "si"}
    for text in ("yes!", "YES", " Yés ", "yes please", "¡Yes!"):
        assert first_word(text)[0] == "yes", text
    assert first_word("YES news") == ("yes", "news")
    assert first_word("") == ("", "")
    assert first_word("yesterday")[0] != "yes"


def test_period_end_adds_days_weeks_and_calendar_months() -> None:
    cfg = parse_config({"smscs": [{"name": "s", "system_id": "x", "password": "x"}], "billing": {"services": [
        {"name": "m", "kind": "subscription", "shortcode": "1", "price": "1.00", "period": "monthly"},
        {"name": "w", "kind": "subscription", "shortcode": "1", "price": "1.00", "period": "weekly"},
        {"name": "t", "kind": "subscription", "shortcode": "1", "price": "1.00", "period": "daily", "period_s": 5}]}})
    monthly, weekly, short = cfg.billing.services
    jan31 = datetime(2024, 1, 31, 12, 0, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(period_end(monthly, jan31), UTC) == datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    dec15 = datetime(2023, 12, 15, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(period_end(monthly, dec15), UTC) == datetime(2024, 1, 15, tzinfo=UTC)
    assert period_end(weekly, 100.0) == 100.0 + 7 * 86400
    assert period_end(short, 100.0) == 105.0


# ---- the handshake -----------------------------------------------------------------------------------------


async def test_keyword_starts_a_handshake_with_a_free_confirm_mt(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert not h.subs.wants_reply(MSISDN, "84001")
        result = await h.keyword("news")
        assert result.detail.startswith("handshake hs-mo-1 started")
        [confirm] = result.messages
        assert not confirm.charged and confirm.source == "84001" and confirm.to == MSISDN
        assert confirm.text == "Reply YES to join news at 1.50 EUR/week. Help: "
        assert confirm.expires_at == T0 + 600  # no use after the handshake's TTL
        assert h.subs.wants_reply(MSISDN, "84001")
        assert not h.subs.wants_reply("447700900999", "84001")
        record = doc(h, "hs-mo-1")
        assert (record.state, record.msisdn, record.scope, record.due) == ("pending", MSISDN, "news", T0 + 600)
        assert h.ledger() == [] and h.consent.records == []


async def test_yes_confirms_records_consent_activates_and_charges_once(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        [confirm] = (await h.keyword()).messages
        h.clock.now += 30
        result = await h.reply("Yés!")
        assert result is not None and result.detail == "handshake hs-mo-1 confirmed: sub-hs-mo-1"
        [record] = h.consent.records
        assert record == {"msisdn": MSISDN, "scope": "news", "opted_in": True, "method": "keyword",
                          "text_version": "news-v3", "message_ids": [confirm.id, "mo-2"], "at": T0 + 30,
                          "id": "hs-mo-1:news"}
        [charged] = h.charged_mts()
        assert charged.meta["charge"] == {"price": "1.50", "currency": "EUR", "service": "news",
                                          "attempt": "sub-hs-mo-1.0.0", "owner": "subscription:sub-hs-mo-1"}
        assert "Welcome to news" in h.texts_to()
        [entry] = h.ledger()
        assert (entry["id"], entry["state"], entry["amount"], entry["price_point"], entry["operator"],
                entry["message_id"]) == ("sub-hs-mo-1.0.0", "pending", "1.50", "T150", "op1", charged.id)
        sub = h.subs.find("sub-hs-mo-1")
        assert sub is not None and sub.state == "active" and sub.consent_message_ids == [confirm.id, "mo-2"]
        # A second YES (two replies at once are processed one after the other) finds it confirmed.
        again = await h.reply("YES")
        assert again is not None and "confirmed already" in again.detail and again.messages == []
        assert len(h.ledger()) == 1 and len(h.charged_mts()) == 1
        await h.finish(charged)
        assert [r["state"] for r in h.ledger()] == ["charged"]
        sub = h.subs.find("sub-hs-mo-1")
        assert sub is not None and sub.paid_until == T0 + 30 + 7 * 86400 and sub.charges == 1


async def test_aliases_and_yes_naming_the_service_confirm(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword("NEWS")
        await h.keyword("QUIZ")
        result = await h.reply("ok news")  # the alias OK, and the second word picks NEWS over the newer QUIZ
        assert result is not None and "sub-hs-mo-1" in result.detail
        result = await h.reply("y")
        assert result is not None and "sub-hs-mo-2" in result.detail
        assert {e["service"] for e in h.ledger()} == {"news", "quiz"}


async def test_late_yes_gets_the_late_reply_once_and_no_charge(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        h.clock.now += 601
        result = await h.reply("YES")
        assert result is not None and [m.text for m in result.messages] == [
            "Sorry, that offer has expired. Text NEWS to 84001 to join news."]
        assert doc(h, "hs-mo-1").state == "expired"
        second = await h.reply("YES")
        assert second is not None and second.messages == []
        assert h.ledger() == [] and h.charged_mts() == [] and h.consent.records == []
        # Long after, the handshake is forgotten: a YES is no answer to anything.
        h.clock.now += 10_000
        await h.subs.tick()
        assert not h.subs.wants_reply(MSISDN, "84001")


async def test_wrong_reply_is_explained_once_and_the_handshake_stays_pending(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        result = await h.reply("what is this?")
        assert result is not None and [m.text for m in result.messages] == [
            "To join news reply YES. To ignore this offer, do nothing."]
        assert await h.reply("NO") is None  # explained already: the MO handler routes it as any other MO
        assert await h.reply("STOP") is None  # reserved words and keywords are never taken as answers
        assert await h.reply("QUIZ") is None
        assert h.charged_mts() == []
        result = await h.reply("yes")
        assert result is not None and "confirmed" in result.detail
        assert len(h.charged_mts()) == 1


async def test_keyword_while_pending_resends_the_confirm_once(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        second = await h.keyword()
        assert [m.text for m in second.messages] == ["Reply YES to join news at 1.50 EUR/week. Help: "]
        assert "re-sent" in second.detail
        third = await h.keyword()
        assert third.messages == [] and "already" in third.detail
        assert h.gw.store.docs("handshake", state="pending")[0].id == "hs-mo-1"
        assert len(h.gw.store.docs("handshake")) == 1


async def test_keyword_when_subscribed_answers_already_active(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        await h.reply("YES")
        result = await h.keyword()
        assert [m.text for m in result.messages] == ["You are already subscribed to news."]
        assert len(h.ledger()) == 1


async def test_without_double_opt_in_the_keyword_is_the_consent(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        result = await h.keyword("GAME")
        [charged] = result.messages
        assert charged.charged and charged.meta["charge"]["attempt"] == "buy-mo-1.0.0"
        assert h.consent.records[0]["message_ids"] == ["mo-1"]
        assert h.consent.records[0]["method"] == "keyword"
        await h.finish(charged)
        purchase = h.subs.find("buy-mo-1")
        assert purchase is not None and purchase.state == "charged" and purchase.one_off
        assert [r["state"] for r in h.ledger()] == ["charged"]


async def test_handshake_expires_on_schedule(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        h.clock.now += 599
        await h.subs.tick()
        assert doc(h, "hs-mo-1").state == "pending"
        h.clock.now += 1
        await h.subs.tick()
        assert doc(h, "hs-mo-1").state == "expired"


# ---- charging outcomes and the schedule ---------------------------------------------------------------------


async def subscribed(h: Harness) -> str:
    await h.keyword()
    await h.reply("YES")
    await h.finish_pending("sub-hs-mo-1")
    return "sub-hs-mo-1"


async def test_renewal_with_reminder_fallback_retry_and_success(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        sid = await subscribed(h)
        week = 7 * 86400
        h.clock.now = T0 + week - 86400  # the reminder, a day before
        assert await h.subs.tick() == 1
        assert h.texts_to()[-1] == f"news renews on {datetime.fromtimestamp(T0 + week, UTC):%Y-%m-%d} at 1.50 EUR. " \
                                   "Text STOP to 84001 to end."
        assert h.charged_mts() == []
        h.clock.now = T0 + week
        await h.subs.tick()
        assert await h.finish_pending(sid, MessageStatus.UNDELIVERABLE, "069") == f"{sid}.1.0"
        # Insufficient funds: the next lower price at once, not the same price again.
        [fallback] = h.charged_mts()
        assert fallback.meta["charge"]["price"] == "1.00" and fallback.meta["charge"]["attempt"] == f"{sid}.1.1"
        await h.finish_pending(sid, MessageStatus.UNDELIVERABLE, "069")
        assert h.charged_mts()[0].meta["charge"]["price"] == "0.50"
        await h.finish_pending(sid, MessageStatus.UNDELIVERABLE, "069")
        # The price chain is used up: one retry (retry_attempts 1) after retry_spacing_s, at the full price.
        sub = h.subs.find(sid)
        assert sub is not None and sub.state == "active" and sub.renew_at == h.clock.now + 3600
        h.clock.now += 3599
        await h.subs.tick()
        assert h.charged_mts() == []
        h.clock.now += 1
        await h.subs.tick()
        [retry] = h.charged_mts()
        assert retry.meta["charge"] == {"price": "1.50", "currency": "EUR", "service": "news",
                                        "attempt": f"{sid}.1.3", "owner": f"subscription:{sid}"}
        await h.finish(retry)
        sub = h.subs.find(sid)
        assert sub is not None and sub.state == "active" and sub.period == 1 and sub.charges == 2
        assert sub.paid_until == h.clock.now + week
        states = [(r["id"], r["state"], r["reason"]) for r in h.ledger()]
        assert states == [(f"{sid}.0.0", "charged", ""), (f"{sid}.1.0", "failed", "insufficient_funds"),
                          (f"{sid}.1.1", "failed", "insufficient_funds"), (f"{sid}.1.2", "failed", "insufficient_funds"),
                          (f"{sid}.1.3", "charged", "")]


async def test_retries_used_up_suspend_and_tell_the_user(tmp_path: Path) -> None:
    async with harness(tmp_path, fallback_prices=[], renewal={"retry_attempts": 1, "retry_spacing_s": 60}) as h:
        sid = await subscribed(h)
        h.clock.now = T0 + 7 * 86400
        await h.subs.tick()
        await h.finish_pending(sid, MessageStatus.UNDELIVERABLE, "69")
        h.clock.now += 60
        await h.subs.tick()
        await h.finish_pending(sid, MessageStatus.UNDELIVERABLE, "69")
        sub = h.subs.find(sid)
        assert sub is not None and (sub.state, sub.reason, sub.renew_at) == ("suspended", "insufficient_funds", None)
        assert h.texts_to()[-1] == "news is suspended: we could not charge you. Text NEWS to 84001 to rejoin."
        h.clock.now += 30 * 86400
        await h.subs.tick()
        assert h.charged_mts() == []
        # Rejoining: a new handshake; its YES cancels the suspended subscription and starts a new one.
        await h.keyword()
        await h.reply("YES")
        old, new = h.subs.find(sid), h.subs.find("sub-hs-mo-3")
        assert old is not None and (old.state, old.reason) == ("cancelled", "rejoined")
        assert new is not None and new.state == "active"


async def test_barred_suspends_unknown_subscriber_cancels_unknown_is_not_retried(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        sid = await subscribed(h)
        h.clock.now = T0 + 7 * 86400
        await h.subs.tick()
        await h.finish_pending(sid, MessageStatus.REJECTED, "011")
        sub = h.subs.find(sid)
        assert sub is not None and (sub.state, sub.reason) == ("suspended", "barred")
        assert h.ledger()[-1]["reason"] == "barred"
    async with harness(tmp_path / "b") as h:
        sid = await subscribed(h)
        h.clock.now = T0 + 7 * 86400
        await h.subs.tick()
        await h.finish_pending(sid, MessageStatus.UNDELIVERABLE, "001")
        sub = h.subs.find(sid)
        assert sub is not None and (sub.state, sub.reason) == ("cancelled", "unknown_subscriber")
    async with harness(tmp_path / "c") as h:
        sid = await subscribed(h)
        h.clock.now = T0 + 7 * 86400
        await h.subs.tick()
        msg = h.charged_mts()[0]
        msg.error = {"code": "outcome_unknown"}
        await h.finish(msg, MessageStatus.UNKNOWN)
        assert h.ledger()[-1]["state"] == "unknown"
        assert h.charged_mts() == []  # never retried by itself
        sub = h.subs.find(sid)
        assert sub is not None and sub.state == "active" and sub.renew_at == h.clock.now + 7 * 86400


async def test_renewal_checks_the_opt_out_when_it_fires(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        sid = await subscribed(h)
        h.consent.out.add((MSISDN, "84001"))  # opted out of the shortcode by other means than STOP
        h.clock.now = T0 + 7 * 86400 - 86400
        await h.subs.tick()
        sub = h.subs.find(sid)
        assert sub is not None and (sub.state, sub.reason) == ("cancelled", "opted_out")
        h.clock.now = T0 + 7 * 86400
        await h.subs.tick()
        assert h.charged_mts() == [] and len(h.ledger()) == 1
        assert not any("renews" in t for t in h.texts_to())


async def test_stop_cancels_subscriptions_handshakes_and_a_queued_charge(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        await h.reply("YES")  # its first charge is queued, not sent
        await h.keyword("QUIZ")  # a pending handshake
        writes = Writes()
        assert h.subs.stop(MSISDN, ["news", "quiz", "game"], h.clock(), writes) == ["news", "quiz"]
        await h.gw.core.accept([], writes)
        sub = h.subs.find("sub-hs-mo-1")
        assert sub is not None and (sub.state, sub.reason) == ("cancelled", "stop")
        assert h.charged_mts() == []
        [entry] = h.ledger()
        assert (entry["state"], entry["reason"]) == ("failed", "cancelled")
        assert doc(h, "hs-mo-3").state == "cancelled"
        late = await h.reply("YES")
        assert late is not None and "late reply" in late.detail and len(h.ledger()) == 1


async def test_stop_after_the_charge_left_lets_its_outcome_in_but_nothing_follows(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        await h.reply("YES")
        [msg] = h.charged_mts()
        msg.on_wire = True  # submitted: too late to cancel
        writes = Writes()
        h.subs.stop(MSISDN, ["news"], h.clock(), writes)
        await h.gw.core.accept([], writes)
        await h.finish(msg, MessageStatus.UNDELIVERABLE, "069")
        assert [(r["state"], r["reason"]) for r in h.ledger()] == [("failed", "insufficient_funds")]
        assert h.charged_mts() == []  # no fallback for a cancelled subscription


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        sid = await subscribed(h)
        await h.keyword("QUIZ")
    async with harness(tmp_path) as h:
        assert h.subs.wants_reply(MSISDN, "84001")  # the first MO after a restart may be the YES
        sub = h.subs.find(sid)
        assert sub is not None and sub.state == "active"
        result = await h.reply("yes")
        assert result is not None and "sub-hs-mo-3" in result.detail
        h.clock.now = T0 + 7 * 86400
        await h.subs.tick()
        assert {m.meta["charge"]["attempt"] for m in h.charged_mts()} == {f"{sid}.1.0", "sub-hs-mo-3.0.0"}


# ---- the HTTP API ------------------------------------------------------------------------------------------


def client(h: Harness, key: str = KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(h.gw)), base_url="http://gw",
                             headers={"Authorization": f"Bearer {key}"})


async def test_post_subscription_starts_a_handshake_the_yes_completes(tmp_path: Path) -> None:
    async with harness(tmp_path) as h, client(h) as api:
        r = await api.post("/v1/subscriptions", json={"msisdn": "07700 900123", "service": "news"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert (body["msisdn"], body["service"], body["state"], body["subscription_id"]) == (
            MSISDN, "news", "pending", None)
        again = await api.post("/v1/subscriptions", json={"msisdn": MSISDN, "service": "news"})
        assert again.status_code == 200 and again.json()["id"] == body["id"]
        assert len([t for t in h.texts_to() if t.startswith("Reply YES")]) == 1
        await h.reply("YES")
        r = await api.get("/v1/subscriptions", params={"msisdn": MSISDN})
        [sub] = r.json()["subscriptions"]
        assert (sub["state"], sub["consent_method"], sub["pending_charge"]) == (
            "active", "keyword", f"sub-{body['id']}.0.0")
        r = await api.post("/v1/subscriptions", json={"msisdn": MSISDN, "service": "news"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_subscribed"
        async with client(h, OTHER_KEY) as other:
            assert (await other.get(f"/v1/subscriptions/{sub['id']}")).status_code == 404
            assert (await other.get("/v1/subscriptions")).json() == {"subscriptions": []}
        r = await api.delete(f"/v1/subscriptions/{sub['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["reason"] == "api"
        assert h.charged_mts() == []  # the queued first charge went with it
        assert [(e["state"], e["reason"]) for e in h.ledger()] == [("failed", "cancelled")]
        r = await api.get("/v1/subscriptions", params={"state": "cancelled", "service": "news"})
        assert [s["id"] for s in r.json()["subscriptions"]] == [sub["id"]]


async def test_post_subscription_refusals_name_the_field(tmp_path: Path) -> None:
    async with harness(tmp_path) as h, client(h) as api:
        h.consent.out.add(("447700900555", "news"))
        for body, status, code, fld in [
            ({"msisdn": "447700900555", "service": "news"}, 422, "opted_out", "msisdn"),
            ({"msisdn": "12", "service": "news"}, 422, "invalid_field", "msisdn"),
            ({"msisdn": MSISDN, "service": "nope"}, 422, "invalid_field", "service"),
            ({"msisdn": MSISDN}, 422, "missing_field", "service"),
            ({"msisdn": MSISDN, "service": "news", "x": 1}, 422, "unknown_field", "x"),
            ({"msisdn": 5, "service": "news"}, 422, "invalid_field", "msisdn"),
        ]:
            r = await api.post("/v1/subscriptions", json=body)
            assert (r.status_code, r.json()["error"]["code"], r.json()["error"].get("field")) == (status, code, fld)
        r = await api.post("/v1/subscriptions", content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = await api.get("/v1/subscriptions", params={"state": "sleeping"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "state"
        r = await api.get("/v1/subscriptions", params={"limit": "0"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
        async with client(h, "wrong") as anon:
            assert (await anon.get("/v1/subscriptions")).status_code == 401


async def test_openapi_documents_the_routes(tmp_path: Path) -> None:
    async with harness(tmp_path) as h, client(h) as api:
        doc = msgspec.json.decode((await api.get("/openapi.json")).content)
        for path in ("/v1/subscriptions", "/v1/subscriptions/{id}", "/v1/charges", "/v1/charges/totals",
                     "/v1/verifications", "/v1/verifications/{id}", "/v1/verifications/{id}/check"):
            assert path in doc["paths"], path
        for name in ("SubscriptionView", "HandshakeView", "ChargeView", "TotalsRow", "VerificationView", "PinCheck"):
            assert name in doc["components"]["schemas"], name


async def test_a_restart_settles_a_charge_before_anything_else_touched_the_subscriptions(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword()
        await h.reply("YES")
        [msg] = h.charged_mts()
        msg.on_wire = True
        await h.gw.store.write(Writes(messages=[msg]))  # submitted when the gateway stopped
    async with harness(tmp_path) as h:
        msg = h.gw.store.get(msg.id)  # type: ignore[assignment]
        assert msg is not None
        msg.set_status(MessageStatus.UNKNOWN, h.clock(), "restart: may have reached the SMSC; not resent")
        msg.error = {"code": "outcome_unknown"}
        h.charging.on_final(msg)  # what the core's restore hands the final hook
        assert await h.charging.settle_queued() == 1
        sub = h.subs.find("sub-hs-mo-1")
        assert sub is not None and sub.state == "active" and sub.pending_attempt == ""
        assert sub.renew_at == T0 + 7 * 86400  # an unknown outcome counts the period as paid; never retried
        assert [(e["state"], e["reason"]) for e in h.ledger()] == [("unknown", "outcome_unknown")]
        assert h.charged_mts() == []


async def test_stop_ends_a_purchase_only_while_its_charge_can_be_stopped(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.keyword("GAME")
        await h.keyword("GAME", msisdn="447700900124")
        on_wire = next(m for m in h.charged_mts() if m.to == "447700900124")
        on_wire.on_wire = True
        writes = Writes()
        assert h.subs.stop(MSISDN, ["game"], h.clock(), writes) == ["game"]
        assert h.subs.stop("447700900124", ["game"], h.clock(), writes) == []
        await h.gw.core.accept([], writes)
        stopped, going = h.subs.find("buy-mo-1"), h.subs.find("buy-mo-2")
        assert stopped is not None and (stopped.state, stopped.reason) == ("cancelled", "stop")
        assert going is not None and going.state == "pending"
        await h.finish(on_wire)
        going = h.subs.find("buy-mo-2")
        assert going is not None and going.state == "charged"
