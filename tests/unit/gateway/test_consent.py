"""The consent register: append-only records, the in-memory opt-out state and its reload, the MT check, and the
HTTP routes (who sees what, the export) over httpx.ASGITransport with a real SqliteStore in tmp_path."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from gateway import _consent
from gateway._accept import ApiError
from gateway._config import AccountConfig, hash_api_key, parse_config
from gateway._consent import CONSENT_KIND, ConsentRegister, ScopeTable, decode_consent, service_account
from gateway._daemon import Gateway
from gateway._store import Writes

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
WHO = "447700900123"
KEYS = {"acme-key": "acme", "other-key": "other", "third-key": "third"}
ADMIN_KEY = "admin-key"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


def config(tmp_path: Path, **billing: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "mo_account": "acme",
        "shortcodes": [{"shortcode": "84001", "default_service": "chat"},
                       {"shortcode": "85001", "account": "other"}],
        "services": [
            {"name": "chat", "kind": "forward", "shortcode": "84001", "keyword": "CHAT",
             "forward": {"url": "http://app.test/mo"}},
            {"name": "news", "kind": "subscription", "shortcode": "84001", "keyword": "NEWS", "price": "1.50",
             "consent_text_version": "news-v3"},
            {"name": "games", "kind": "subscription", "shortcode": "84001", "keyword": "GAMES", "price": "3.00",
             "account": "other"},
            {"name": "quiz", "kind": "autoreply", "shortcode": "85001", "keyword": "QUIZ", "reply_text": "ok"},
        ],
    }
    b.update(billing)
    return {
        "store": {"path": str(tmp_path / "gw.db")},
        "accounts": [{"id": acc, "api_keys": [{"sha256": hash_api_key(key)}]} for key, acc in KEYS.items()]
        + [{"id": "sender", "allowed_sources": ["84001"]}],
        "http": {"admin_keys": [{"sha256": hash_api_key(ADMIN_KEY)}]},
        "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                              "trunk_prefix": "0"}]},
        "billing": b,
    }


@asynccontextmanager
async def gateway(tmp_path: Path, **billing: Any) -> AsyncIterator[Gateway]:
    """A gateway whose store runs (nothing else does)."""
    gw = Gateway(parse_config(config(tmp_path, **billing), base_dir=tmp_path))
    async with anyio.create_task_group() as tg:
        await tg.start(gw.store.run)
        try:
            yield gw
        finally:
            tg.cancel_scope.cancel()


def opt(register: ConsentRegister, scope: str, opted_in: bool, now: float, writes: Writes,
        msisdn: str = WHO, method: str = "keyword") -> None:
    register.record(msisdn=msisdn, scope=scope, opted_in=opted_in, method=method, text_version="v1",
                    message_ids=["mo-1", "mt-1"], now=now, writes=writes)


async def test_records_are_appended_and_the_latest_decides(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        register = ConsentRegister(gw)
        writes = Writes()
        opt(register, "84001", False, T0, writes)
        assert register.opted_out(WHO, ["84001"]) is True  # honoured before the commit (Rule 2)
        assert register.opted_out(WHO, ["news"]) is False
        opt(register, "84001", True, T0 + 1, writes)
        opt(register, "84001", False, T0 + 2, writes)
        await gw.store.write(writes)
        docs = gw.store.docs(CONSENT_KIND, msisdn=WHO)
        assert [d.state for d in docs] == ["out", "in", "out"]  # three records, none changed (Rule 1)
        first = decode_consent(docs[0])
        assert (first.scope, first.scope_kind, first.method, first.text_version, first.message_ids) == (
            "84001", "shortcode", "keyword", "v1", ["mo-1", "mt-1"])
        assert register.opted_out(WHO, ["news", "84001"]) is True

        # A new register (a restart) reads the same state back from the store.
        again = ConsentRegister(gw)
        assert again.load() == 1
        assert again.opted_out(WHO, ["84001"]) is True and again.scopes_out(WHO) == {"84001"}


async def test_the_reload_orders_records_by_time_not_by_writing_order(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        register = ConsentRegister(gw)
        writes = Writes()
        opt(register, "news", True, T0 + 10, writes)  # written first, but later in time
        opt(register, "news", False, T0, writes)
        await gw.store.write(writes)
        assert ConsentRegister(gw).opted_out(WHO, ["news"]) is False


async def test_a_service_opt_in_lifts_the_shortcode_opt_out_with_a_second_record(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        register = ConsentRegister(gw)
        writes = Writes()
        opt(register, "84001", False, T0, writes)
        register.record(msisdn=WHO, scope="news", opted_in=True, method="web_pin", text_version="news-v3",
                        message_ids=["pin-mt"], now=T0 + 5, writes=writes, record_id="ver-1")
        assert register.opted_out(WHO, ["84001", "news"]) is False
        await gw.store.write(writes)
        records = register.records(WHO)
        assert [(r.scope, r.opted_in, r.method, r.id) for r in records] == [
            ("84001", False, "keyword", records[0].id), ("news", True, "web_pin", "ver-1"),
            ("84001", True, "web_pin", "ver-1+84001")]
        assert records[2].message_ids == ["pin-mt"] and records[2].text_version == "news-v3"
        # Without an opt-out of the shortcode, an opt-in is one record.
        writes = Writes()
        register.record(msisdn="447700900999", scope="news", opted_in=True, method="api", text_version=None,
                        message_ids=[], now=T0, writes=writes)
        assert len(writes.docs) == 1


async def test_an_unknown_method_is_refused(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        with pytest.raises(ValueError, match="unknown consent method"):
            ConsentRegister(gw).record(msisdn=WHO, scope="news", opted_in=False, method="telepathy",
                                       text_version=None, message_ids=[], now=T0, writes=Writes())


async def test_the_mt_check_refuses_opted_out_sources_and_services_but_not_exempt_categories(
        tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        register = ConsentRegister(gw)
        register.load()
        register.check_mt("acme", WHO, "84001", None)  # nobody opted out: passes
        opt(register, "news", False, T0, Writes())
        # acme sends news and chat from 84001: an API MT from it belongs to them (Rule 4)
        with pytest.raises(ApiError) as err:
            register.check_mt("acme", WHO, "84001", None)
        assert (err.value.status, err.value.code, err.value.field) == (422, "opted_out", "to")
        register.check_mt("acme", WHO, "84001", "otp")  # exempt
        register.check_mt("other", WHO, "84001", None)  # other runs games there, not news
        register.check_mt("sender", WHO, "84001", None)  # runs no service there
        register.check_mt("acme", WHO, "ACME", None)  # another source
        register.check_mt("acme", "447700900001", "84001", None)  # another number
        opt(register, "84001", False, T0 + 1, Writes())
        for account in ("other", "sender"):
            with pytest.raises(ApiError):
                register.check_mt(account, WHO, "84001", "marketing")
        assert register.refused_total == 3


async def test_exempt_categories_come_from_the_config(tmp_path: Path) -> None:
    async with gateway(tmp_path, consent={"exempt_categories": ["otp", "fraud_alert"]}) as gw:
        register = ConsentRegister(gw)
        opt(register, "84001", False, T0, Writes())
        register.check_mt("acme", WHO, "84001", "fraud_alert")
        with pytest.raises(ApiError):
            register.check_mt("acme", WHO, "84001", "OTP")  # categories are compared exactly


async def test_scope_table_owners_and_reply_accounts(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        cfg = gw.core.config
        assert service_account(cfg, cfg.service("news"), "84001") == "acme"  # billing.mo_account
        assert service_account(cfg, cfg.service("games"), "84001") == "other"  # its own
        assert service_account(cfg, cfg.service("quiz"), "85001") == "other"  # the shortcode's
        assert service_account(cfg, None, "99999") == "acme"
        table = ScopeTable.build(cfg)
        assert table.owners["news"] == {"acme"} and table.owners["games"] == {"other"}
        assert table.owners["84001"] == {"acme", "other", "sender"}  # sender may send from 84001
        assert table.owners["85001"] == {"other"}
        assert table.mt_scopes[("acme", "84001")] == ("84001", "chat", "news")
        assert table.kind_of("news") == "service" and table.kind_of("84001") == "shortcode"
        assert table.visible("news", None) and not table.visible("news", "third")


async def test_iter_all_pages_through_records_made_at_one_instant(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        register = ConsentRegister(gw)
        writes = Writes()
        for i in range(7):
            opt(register, "news", False, T0, writes, msisdn=f"4477009000{i:02d}")
        for i in range(5):
            opt(register, "news", True, T0 + 1 + i // 2, writes, msisdn=f"4477009001{i:02d}")
        await gw.store.write(writes)
        pages = list(register.iter_all(page=3))
        ids = [r.id for page in pages for r in page]
        assert len(ids) == 12 and len(set(ids)) == 12
        assert [r.at for page in pages for r in page] == sorted(r.at for page in pages for r in page)
        assert sum(len(p) for p in register.iter_all(since=T0 + 1, page=2)) == 5


# ---- HTTP --------------------------------------------------------------------------------------------------


class FakeApi:
    """The `api` object routes get from the HTTP app: `account(request)` reads the Bearer key."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def account(self, request: Request) -> AccountConfig:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        account = self.gw.core.config.account(KEYS.get(key, ""))
        if account is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        return account


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return Response(json.dumps({"error": {"code": exc.code, "field": exc.field}}), status_code=exc.status,
                    media_type="application/json")


@asynccontextmanager
async def client(gw: Gateway, key: str) -> AsyncIterator[httpx.AsyncClient]:
    _consent.install(gw)
    routes = [r for make in gw.extensions["http_routes"] for r in make(FakeApi(gw))]
    app = Starlette(routes=routes, exception_handlers={ApiError: _api_error})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test",
                                 headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


async def _fill(gw: Gateway) -> None:
    register = _consent.install(gw)
    writes = Writes()
    opt(register, "news", False, T0, writes)
    opt(register, "games", False, T0 + 1, writes)
    opt(register, "85001", False, T0 + 2, writes)
    opt(register, "news", False, T0 + 3, writes, msisdn="447700900777")
    await gw.store.write(writes)


async def test_each_account_sees_the_records_of_its_own_scopes(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        await _fill(gw)
        async with client(gw, "acme-key") as c:
            r = await c.get("/v1/consents/07700 900123")  # read as the account would write a destination
            assert r.status_code == 200
            body = r.json()
            assert body["msisdn"] == WHO
            assert [x["scope"] for x in body["records"]] == ["news"] and body["opted_out"] == ["news"]
            rec = body["records"][0]
            assert rec["action"] == "opt_out" and rec["method"] == "keyword" and rec["at"].startswith("2023-11-14T")
            assert rec["message_ids"] == ["mo-1", "mt-1"] and rec["scope_kind"] == "service"
            assert rec["shortcode"] == "84001"
        async with client(gw, "other-key") as c:
            body = (await c.get(f"/v1/consents/{WHO}")).json()
            assert [x["scope"] for x in body["records"]] == ["games", "85001"]
        async with client(gw, "third-key") as c:
            assert (await c.get(f"/v1/consents/{WHO}")).json()["records"] == []
        async with client(gw, ADMIN_KEY) as c:
            body = (await c.get(f"/v1/consents/+{WHO}")).json()
            assert [x["scope"] for x in body["records"]] == ["news", "games", "85001"]
            assert body["opted_out"] == ["85001", "games", "news"]


async def test_bad_keys_and_numbers_are_refused(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        async with client(gw, "nope") as c:
            assert (await c.get(f"/v1/consents/{WHO}")).status_code == 401
            assert (await c.get("/v1/consents/export")).status_code == 401
        async with client(gw, "acme-key") as c:
            r = await c.get("/v1/consents/not-a-number")
            assert r.status_code == 422 and r.json()["error"]["field"] == "msisdn"
            r = await c.get("/v1/consents/export", params={"since": "yesterday"})
            assert r.status_code == 422 and r.json()["error"]["field"] == "since"
            r = await c.get("/v1/consents/export", params={"format": "xml"})
            assert r.status_code == 422 and r.json()["error"]["field"] == "format"


async def test_export_as_csv_and_json_lines(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        await _fill(gw)
        async with client(gw, ADMIN_KEY) as c:
            r = await c.get("/v1/consents/export", params={"format": "csv"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert [row["scope"] for row in rows] == ["news", "games", "85001", "news"]
            assert rows[0]["message_ids"] == "mo-1 mt-1" and rows[0]["action"] == "opt_out"
            r = await c.get("/v1/consents/export", params={"since": str(T0 + 2)})
            assert r.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in r.text.splitlines()]
            assert [x["scope"] for x in lines] == ["85001", "news"]
            r = await c.get("/v1/consents/export", params={"since": "2023-11-14T22:13:23Z"})
            assert len(r.text.splitlines()) == 1
        async with client(gw, "acme-key") as c:
            lines = (await c.get("/v1/consents/export")).text.splitlines()
            assert [json.loads(x)["msisdn"] for x in lines] == [WHO, "447700900777"]


async def test_install_hangs_the_register_and_its_check_once(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        first = _consent.install(gw)
        assert _consent.install(gw) is first
        assert gw.extensions["consent"] is first
        assert gw.extensions["accept_checks"] == [first.check_mt]
        assert {"/v1/consents/{msisdn}", "/v1/consents/export"} <= set(gw.extensions["openapi_paths"])
        assert {"ConsentList", "ConsentView"} <= set(gw.extensions["openapi_schemas"])
