"""The PIN web flow: PINs from `secrets`, stored as an HMAC only, attempt limit, TTL, rate limit per number, and the
consent + subscription (or purchase) a right PIN starts."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway import _pin
from gateway._config import hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._http import create_app
from gateway._model import Message
from gateway._store import Writes

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
MSISDN = "447700900123"
KEY = "acme-key"
SECRET = "pin-hmac-key"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@dataclass
class FakeConsent:
    records: list[dict[str, Any]] = field(default_factory=list)
    out: set[tuple[str, str]] = field(default_factory=set)

    def record(self, *, msisdn: str, scope: str, opted_in: bool, method: str, text_version: str | None,
               message_ids: list[str], now: float, writes: Writes, record_id: str | None = None) -> None:
        self.records.append({"msisdn": msisdn, "scope": scope, "opted_in": opted_in, "method": method,
                             "text_version": text_version, "message_ids": list(message_ids), "id": record_id})

    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool:
        return any((msisdn, s) in self.out for s in scopes)


def config(tmp_path: Path, **pin: Any) -> dict[str, Any]:
    return {
        "store": {"path": str(tmp_path / "gw.db")},
        "accounts": [{"id": "acme", "api_keys": [{"sha256": hash_api_key(KEY)}]},
                     {"id": "other", "api_keys": [{"sha256": hash_api_key("other-key")}]}],
        "smscs": [{"name": "sim", "system_id": "gw", "password": "x"}],
        "routes": [{"name": "all", "prefix": "", "smscs": ["sim"]}],
        "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                               "trunk_prefix": "0"}]},
        "billing": {
            "operators": [{"name": "op1", "smscs": ["sim"], "price_points": [{"price": "1.50", "code": "T150"}]}],
            "services": [{"name": "news", "kind": "subscription", "shortcode": "84001", "price": "1.50",
                          "account": "acme", "consent_text_version": "web-2"},
                         {"name": "game", "kind": "one_off", "shortcode": "84001", "price": "1.50",
                          "account": "acme"}],
            "pin": {"length": 6, "ttl_s": 300, "max_attempts": 3, "max_per_msisdn_per_hour": 3,
                    "secret": SECRET, **pin},
        },
    }


@dataclass
class Harness:
    gw: Gateway
    now: list[float]
    consent: FakeConsent
    api: httpx.AsyncClient

    def pin_of(self, message_id: str) -> str:
        msg = self.gw.core.messages[message_id]
        found = re.search(r"PIN is (\d+)", msg.text)
        assert found is not None, msg.text
        return found.group(1)

    def charged(self) -> list[Message]:
        return [m for m in self.gw.core.messages.values() if m.charged]

    async def start(self, msisdn: str = MSISDN, service: str = "news") -> dict[str, Any]:
        r = await self.api.post("/v1/verifications", json={"msisdn": msisdn, "service": service})
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    async def check(self, vid: str, pin: str) -> httpx.Response:
        return await self.api.post(f"/v1/verifications/{vid}/check", json={"pin": pin})


@asynccontextmanager
async def harness(tmp_path: Path, **pin: Any) -> AsyncIterator[Harness]:
    gw = Gateway(parse_config(config(tmp_path, **pin), base_dir=tmp_path))
    now = [T0]
    gw.core.wall = lambda: now[0]
    consent = FakeConsent()
    gw.extensions["consent"] = consent
    _pin.install(gw)
    async with anyio.create_task_group() as tg:
        await tg.start(gw.store.run)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw)), base_url="http://gw",
                                     headers={"Authorization": f"Bearer {KEY}"}) as api:
            yield Harness(gw, now, consent, api)
        tg.cancel_scope.cancel()


def test_pins_come_from_the_secrets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def randbelow(n: int) -> int:
        asked.append(n)
        return 42

    monkeypatch.setattr(secrets, "randbelow", randbelow)
    assert _pin.new_pin(6) == "000042"
    assert asked == [10 ** 6]


def test_the_stored_form_is_hmac_sha256_of_id_and_pin() -> None:
    # RFC 2104 HMAC computed by the standard library's hmac module, independently of pin_mac's formatting.
    expected = hmac.new(b"k", b"ver-1:1234", hashlib.sha256).hexdigest()
    assert _pin.pin_mac(b"k", "ver-1", "1234") == expected
    assert _pin.pin_mac(b"k", "ver-2", "1234") != expected  # the same PIN on another verification differs


async def test_right_pin_records_consent_and_starts_the_subscription(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = await h.start("07700 900123")
        assert (v["msisdn"], v["state"], v["attempts_left"], v["subscription_id"]) == (MSISDN, "pending", 3, None)
        pin = h.pin_of(v["message_id"])
        assert len(pin) == 6
        mt = h.gw.core.messages[v["message_id"]]
        assert mt.text == f"Your news PIN is {pin}. It expires in 5 minutes. Do not share it."
        assert mt.category == "otp" and not mt.charged and mt.expires_at == T0 + 300
        doc = h.gw.store.doc("verification", v["id"])
        assert doc is not None
        assert pin.encode() not in doc.body  # only its HMAC is stored
        assert hmac.new(SECRET.encode(), f"{v['id']}:{pin}".encode(), hashlib.sha256).hexdigest().encode() in doc.body
        h.now[0] += 60
        r = await h.check(v["id"], pin)
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["subscription_id"]) == ("verified", f"sub-{v['id']}")
        assert h.consent.records == [{"msisdn": MSISDN, "scope": "news", "opted_in": True, "method": "web_pin",
                                      "text_version": "web-2", "message_ids": [v["message_id"]],
                                      "id": f"{v['id']}:news"}]
        [charged] = h.charged()
        assert charged.meta["charge"]["attempt"] == f"sub-{v['id']}.0.0"
        sub = (await h.api.get(f"/v1/subscriptions/sub-{v['id']}")).json()
        assert (sub["state"], sub["consent_method"]) == ("active", "web_pin")
        r = await h.check(v["id"], pin)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "already_verified")
        assert len(h.charged()) == 1
        r = await h.api.post("/v1/verifications", json={"msisdn": MSISDN, "service": "news"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "already_subscribed")


async def test_one_off_service_is_charged_once(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = await h.start(service="game")
        r = await h.check(v["id"], h.pin_of(v["message_id"]))
        assert r.json()["subscription_id"] == f"buy-{v['id']}"
        [charged] = h.charged()
        assert charged.meta["charge"]["service"] == "game"


async def test_wrong_pins_up_to_the_limit_then_every_check_is_refused(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = await h.start()
        pin = h.pin_of(v["message_id"])
        wrong = f"{(int(pin) + 1) % 10 ** 6:06d}"
        for left in (2, 1, 0):
            r = await h.check(v["id"], wrong)
            assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (422, "wrong_pin", "pin")
            assert f"{left} attempt(s) left" in r.json()["error"]["message"]
        r = await h.check(v["id"], pin)  # the right PIN, too late
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (
            429, "too_many_attempts", "pin")
        assert h.charged() == [] and h.consent.records == []
        assert (await h.api.get(f"/v1/verifications/{v['id']}")).json()["state"] == "failed"
    # Wrong attempts are durable: a restart gives none back.
    async with harness(tmp_path) as h:
        r = await h.check(v["id"], "123456")
        assert r.status_code == 429


async def test_expired_pin_is_gone(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = await h.start()
        pin = h.pin_of(v["message_id"])
        h.now[0] += 300
        assert (await h.api.get(f"/v1/verifications/{v['id']}")).json()["state"] == "expired"
        r = await h.check(v["id"], pin)
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (410, "expired", "id")
        record = h.gw.store.doc("verification", v["id"])
        assert record is not None and record.state == "expired"
        assert h.charged() == []


async def test_rate_limit_per_number_and_hour(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for i in range(3):
            h.now[0] = T0 + i * 600
            await h.start()
        await h.start("447700900124")  # another number is not limited by this one
        r = await h.api.post("/v1/verifications", json={"msisdn": MSISDN, "service": "news"})
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (429, "rate_limited",
                                                                                          "msisdn")
        assert r.headers["retry-after"] == str(3600 - 1200)
    async with harness(tmp_path) as h:  # the window is rebuilt from the store after a restart
        h.now[0] = T0 + 1200
        r = await h.api.post("/v1/verifications", json={"msisdn": MSISDN, "service": "news"})
        assert r.status_code == 429
        h.now[0] = T0 + 3600
        await h.start()


async def test_refusals_name_the_field(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = await h.start()
        for path, body, status, code, fld in [
            ("/v1/verifications", {"msisdn": "x", "service": "news"}, 422, "invalid_field", "msisdn"),
            ("/v1/verifications", {"msisdn": MSISDN, "service": "none"}, 422, "invalid_field", "service"),
            ("/v1/verifications", {"msisdn": MSISDN}, 422, "missing_field", "service"),
            (f"/v1/verifications/{v['id']}/check", {"pin": "12ab"}, 422, "invalid_field", "pin"),
            (f"/v1/verifications/{v['id']}/check", {"pin": 1234}, 422, "invalid_field", "pin"),
            ("/v1/verifications/ver-nope/check", {"pin": "1234"}, 404, "not_found", "id"),
        ]:
            r = await h.api.post(path, json=body)
            assert (r.status_code, r.json()["error"]["code"], r.json()["error"].get("field")) == (status, code, fld)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(h.gw)), base_url="http://gw",
                                     headers={"Authorization": "Bearer other-key"}) as other:
            r = await other.post(f"/v1/verifications/{v['id']}/check", json={"pin": "123456"})
            assert r.status_code == 404  # another account's verification does not exist for it
        assert (await h.api.get(f"/v1/verifications/{v['id']}")).json()["attempts_left"] == 3


async def test_opted_out_number_gets_a_pin_only_when_otp_is_exempt(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.consent.out.add((MSISDN, "news"))
        await h.start()  # "otp" is exempt by default: the PIN is the way back in
    async with harness(tmp_path / "b") as h:
        h.gw.config = parse_config({**config(tmp_path / "b"), "billing": {
            **config(tmp_path / "b")["billing"], "consent": {"exempt_categories": []}}}, base_dir=tmp_path)
        h.consent.out.add((MSISDN, "news"))
        r = await h.api.post("/v1/verifications", json={"msisdn": MSISDN, "service": "news"})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "opted_out")


async def test_secret_file_keys_the_hmac(tmp_path: Path) -> None:
    (tmp_path / "pin.key").write_text("from-a-file\n")
    async with harness(tmp_path, secret=None, secret_file="pin.key") as h:
        v = await h.start()
        pin = h.pin_of(v["message_id"])
        doc = h.gw.store.doc("verification", v["id"])
        assert doc is not None
        assert _pin.pin_mac(b"from-a-file", v["id"], pin).encode() in doc.body
        assert (await h.check(v["id"], pin)).status_code == 200


async def test_two_right_pins_at_once_after_a_restart_charge_once(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        v = await h.start(service="game")
        pin = h.pin_of(v["message_id"])
    async with harness(tmp_path) as h:
        answers: list[int] = []

        async def check() -> None:
            answers.append((await h.check(v["id"], pin)).status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(check)
            tg.start_soon(check)
        assert sorted(answers) == [200, 409]
        assert len(h.charged()) == 1
        assert len(h.gw.store.ledger()) == 1
