"""The HTTP API through httpx's ASGI transport, over a real Gateway and SQLite store (no sockets, no connectors:
accepted messages stay queued)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway._accept import ErrorResponse, MessageView, SubmitResult
from gateway._config import hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._http import FastPaths, create_app, openapi_document, parse_listen
from gateway._model import MessageStatus
from gateway._ratelimit import AccountRateLimiter
from gateway._store import SqliteStore
from tests.conftest import ManualClock

pytestmark = pytest.mark.anyio

ACME = {"Authorization": "Bearer acme-key"}
BETA = {"Authorization": "Bearer beta-key"}

CONFIG: dict[str, Any] = {
    "accounts": [
        {"id": "acme", "api_keys": [{"sha256": hash_api_key("acme-key")}], "country": "GB"},
        {"id": "beta", "api_keys": [{"sha256": hash_api_key("beta-key")}], "default_source": "BETA",
         "rate_limit_per_s": 5, "rate_limit_burst": 5, "max_batch": 3},
    ],
    "smscs": [{"name": "a", "system_id": "a", "password": "x"}],
    "routes": [{"name": "uk", "prefix": "44", "smscs": ["a"]}],
    "numbering": {"countries": [{"country": "GB", "country_code": "44", "trunk_prefix": "0",
                                 "national_lengths": [10]}]},
    "http": {"max_body_bytes": 20_000},
    "store": {"path": "gw.db"},
}


@dataclass
class Api:
    client: httpx.AsyncClient
    gw: Gateway
    clock: ManualClock
    store_scope: anyio.CancelScope

    async def send(self, to: str = "+447911123456", headers: dict[str, str] = ACME, **kw: Any) -> httpx.Response:
        body = {"to": to, "from": "ACME", "text": "hello", **kw}
        return await self.client.post("/v1/messages", json=body, headers=headers)


@pytest.fixture(params=["starlette", "fast paths"])
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """Every test runs against the app and against the app behind FastPaths (what run_http serves): the message
    endpoints must answer the same either way."""
    gw = Gateway(parse_config(CONFIG, base_dir=tmp_path))
    clock = ManualClock(100.0)
    app: Any = create_app(gw, clock=clock)
    if request.param == "fast paths":
        app = FastPaths(app)
    store_scope = anyio.CancelScope()

    async def run_store(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with store_scope:
            await gw.store.run(task_status=task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(run_store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as client:
            yield Api(client, gw, clock, store_scope)
        tg.cancel_scope.cancel()


def error(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    msgspec.convert(body, ErrorResponse)  # the error shape /openapi.json declares
    return body["error"]  # type: ignore[no-any-return]


# ---- submitting ------------------------------------------------------------------------------------------


async def test_submit_is_durable_then_202(api: Api) -> None:
    r = await api.send(to="07911 123456", reference="r-1")
    assert r.status_code == 202
    result = msgspec.convert(r.json(), SubmitResult)
    assert (result.status, result.parts, result.to, result.from_, result.reference) == (
        MessageStatus.QUEUED, 1, "447911123456", "ACME", "r-1")
    assert r.headers["location"] == f"/v1/messages/{result.id}"
    stored = api.gw.store.get(result.id)
    assert stored is not None and stored.status is MessageStatus.QUEUED and stored.account == "acme"


async def test_authentication(api: Api) -> None:
    for headers in ({}, {"Authorization": "Basic YWNtZTprZXk="}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer wrong-key"}, {"Authorization": "acme-key"}):
        for r in (await api.send(headers=headers),
                  await api.client.post("/v1/messages/batch", json={"messages": []}, headers=headers),
                  await api.client.get("/v1/messages/x", headers=headers),
                  await api.client.delete("/v1/messages/x", headers=headers)):
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert error(r)["code"] == "unauthorized"
    assert (await api.send(headers={"Authorization": "bearer acme-key"})).status_code == 202


async def test_request_errors_are_json_naming_the_problem(api: Api) -> None:
    r = await api.client.post("/v1/messages", content=b'{"to": "+447911123456",', headers=ACME)
    assert r.status_code == 400
    err = error(r)
    assert err["code"] == "malformed_json" and "JSON" in err["message"]
    r = await api.send(colour="red")
    assert r.status_code == 422 and error(r)["field"] == "colour"
    r = await api.send(to="+1")
    assert r.status_code == 422
    assert error(r) == {"code": "invalid_field", "field": "to", "reason": "too_short",
                        "message": error(r)["message"]}
    r = await api.send(to="+33612345678")
    assert (r.status_code, error(r)["code"]) == (422, "no_route")
    r = await api.send(text="ж" * 700)
    assert (r.status_code, error(r)["code"], error(r)["field"]) == (422, "too_long", "text")
    r = await api.client.post("/v1/messages", content=b"to=1", headers={**ACME, "Content-Type": "text/plain"})
    assert (r.status_code, error(r)["code"]) == (415, "unsupported_media_type")


async def test_body_limit_is_413(api: Api) -> None:
    big = {"to": "+447911123456", "from": "ACME", "text": "x" * 25_000}
    r = await api.client.post("/v1/messages", json=big, headers=ACME)
    assert (r.status_code, error(r)["code"]) == (413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"to": "+447911123456", "text": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    r = await api.client.post("/v1/messages", content=chunks(), headers={**ACME, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert len(api.gw.core.messages) == 0


# ---- batches ---------------------------------------------------------------------------------------------


async def test_batch_results_in_order_in_one_commit(api: Api) -> None:
    items = [{"to": "+447911123456", "from": "ACME", "text": "a"}, {"to": "+1", "from": "ACME", "text": "b"},
             {"to": "07911 000001", "from": "ACME", "text": "c"}, {"to": "+447911123457", "text": "d"}]
    commits = api.gw.store.statistics().commits
    r = await api.client.post("/v1/messages/batch", json={"messages": items}, headers=ACME)
    assert r.status_code == 202
    results = r.json()["results"]
    assert len(results) == 4
    first = msgspec.convert(results[0], SubmitResult)
    third = msgspec.convert(results[2], SubmitResult)
    assert third.to == "447911000001"
    assert results[1]["error"]["field"] == "to"
    assert results[3]["error"] == {"code": "missing_field", "field": "from",
                                   "message": "from: required (the account has no default_source)"}
    assert api.gw.store.statistics().commits == commits + 1  # one durable write for the whole batch
    for mid in (first.id, third.id):
        assert api.gw.store.get(mid) is not None


async def test_batch_limits(api: Api) -> None:
    four = {"messages": [{"to": "+447911123456", "text": "x"}] * 4}
    r = await api.client.post("/v1/messages/batch", json=four, headers=BETA)  # beta's max_batch is 3
    assert (r.status_code, error(r)["code"], error(r)["field"]) == (422, "batch_too_large", "messages")
    thousand = {"messages": [{"to": "+447911123456", "from": "ACME", "text": "x"}] * 1000}
    r = await api.client.post("/v1/messages/batch", json=thousand, headers=ACME)
    assert r.status_code == 413  # 1000 messages do not fit in this config's 20000-byte bodies
    api.gw.config = msgspec.structs.replace(api.gw.config, http=msgspec.structs.replace(
        api.gw.config.http, max_body_bytes=1_000_000))
    many = {"messages": [{"to": "+447911123456", "from": "ACME", "text": "x"}] * 1001}
    r = await api.client.post("/v1/messages/batch", json=many, headers=ACME)
    assert (r.status_code, error(r)["field"]) == (422, "messages")
    r = await api.client.post("/v1/messages/batch", json={"messages": []}, headers=ACME)
    assert r.status_code == 422
    r = await api.client.post("/v1/messages/batch", json={"messages": [{"to": "+447911123456", "text": 1}]},
                              headers=ACME)
    assert (r.status_code, error(r)["field"]) == (422, "messages[0].text")
    r = await api.client.post("/v1/messages/batch", json=thousand, headers=ACME)
    assert r.status_code == 202 and len(r.json()["results"]) == 1000
    assert len(api.gw.core.messages) == 1000


# ---- rate limits and intake ------------------------------------------------------------------------------


async def test_rate_limit_counts_messages_with_retry_after(api: Api) -> None:
    for _ in range(5):
        assert (await api.send(headers=BETA)).status_code == 202
    r = await api.send(headers=BETA)
    assert (r.status_code, error(r)["code"]) == (429, "rate_limited")
    assert r.headers["retry-after"] == "1"
    api.clock.now += 0.2  # one token back at 5 per second
    assert (await api.send(headers=BETA)).status_code == 202
    assert (await api.send(headers=BETA)).status_code == 429
    assert (await api.send(headers=ACME)).status_code == 202  # acme has no limit
    api.clock.now += 10  # full again: 5 tokens
    three = {"messages": [{"to": "+447911123456", "text": "x"}] * 3}
    assert (await api.client.post("/v1/messages/batch", json=three, headers=BETA)).status_code == 202
    r = await api.client.post("/v1/messages/batch", json=three, headers=BETA)  # 2 tokens left, 3 needed
    assert (r.status_code, r.headers["retry-after"]) == (429, "1")
    api.clock.now += 0.2
    assert (await api.client.post("/v1/messages/batch", json=three, headers=BETA)).status_code == 202


def test_a_batch_larger_than_the_burst_runs_into_debt() -> None:
    account = parse_config({"accounts": [{"id": "x", "rate_limit_per_s": 10, "rate_limit_burst": 5}]}).accounts[0]
    clock = ManualClock(100.0)
    limiter = AccountRateLimiter(clock)
    assert limiter.take(account, 50) == 0.0  # admitted from a full bucket: 45 tokens owed
    wait = limiter.take(account, 1)
    assert wait == pytest.approx(4.6)  # (1 - (-45)) / 10
    assert limiter.retry_after(wait) == 5
    clock.now += 4.7
    assert limiter.take(account, 1) == 0.0
    assert limiter.statistics().refused == 1
    unlimited = parse_config({"accounts": [{"id": "y"}]}).accounts[0]
    assert all(limiter.take(unlimited, 1000) == 0.0 for _ in range(10))
    default_burst = parse_config({"accounts": [{"id": "z", "rate_limit_per_s": 3}]}).accounts[0]
    assert [limiter.take(default_burst, 1) == 0.0 for _ in range(4)] == [True, True, True, False]


async def test_queue_full_and_draining_are_503(api: Api) -> None:
    ok = await api.send()
    api.gw.config = msgspec.structs.replace(api.gw.config, store=msgspec.structs.replace(
        api.gw.config.store, max_queue=1))
    r = await api.send()
    assert (r.status_code, error(r)["code"], r.headers["retry-after"]) == (503, "queue_full", "1")
    api.gw.config = msgspec.structs.replace(api.gw.config, store=msgspec.structs.replace(
        api.gw.config.store, max_queue=100))
    api.gw.draining = True
    r = await api.send()
    assert (r.status_code, error(r)["code"]) == (503, "draining")
    r = await api.client.post("/v1/messages/batch", json={"messages": [{"to": "+447911123456", "from": "A",
                                                                        "text": "x"}]}, headers=ACME)
    assert r.status_code == 503
    r = await api.client.get(f"/v1/messages/{ok.json()['id']}", headers=ACME)  # reading still works
    assert r.status_code == 200


async def test_store_closed_is_503(api: Api) -> None:
    api.store_scope.cancel()
    with anyio.fail_after(5):
        while api.gw.store.is_open:
            await anyio.sleep(0)
    r = await api.send()
    assert (r.status_code, error(r)["code"]) == (503, "store_unavailable")
    r = await api.client.get("/v1/messages/01aaaaaaaaaaaaaaaaaaaaaaaa", headers=ACME)
    assert (r.status_code, error(r)["code"]) == (503, "store_unavailable")


# ---- idempotency -----------------------------------------------------------------------------------------


async def test_idempotency_over_http(api: Api) -> None:
    key = {**ACME, "Idempotency-Key": "order-17"}
    body = {"to": "+447911123456", "from": "ACME", "text": "once"}
    a = await api.client.post("/v1/messages", json=body, headers=key)
    b = await api.client.post("/v1/messages", content=json.dumps(body, indent=1, sort_keys=True).encode(),
                              headers={**key, "Content-Type": "application/json"})
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] == b.json()["id"]
    assert "idempotent-replayed" not in a.headers and b.headers["idempotent-replayed"] == "true"
    c = await api.client.post("/v1/messages", json={**body, "text": "twice"}, headers=key)
    assert (c.status_code, error(c)["code"]) == (409, "idempotency_conflict")
    d = await api.client.post("/v1/messages/batch", json={"messages": [body]}, headers=key)
    assert d.status_code == 409  # same key, another endpoint: another request
    for bad in (b"has space", b"x" * 256, b"\xe9", b"tab\there"):
        r = await api.client.post("/v1/messages", json=body,
                                  headers=[(b"Authorization", b"Bearer acme-key"), (b"Idempotency-Key", bad)])
        assert (r.status_code, error(r)["field"]) == (400, "Idempotency-Key")
    assert len(api.gw.core.messages) == 1


async def test_concurrent_duplicates_make_one_message(api: Api) -> None:
    key = {**ACME, "Idempotency-Key": "burst"}
    answers: list[httpx.Response] = []

    async def post() -> None:
        answers.append(await api.client.post("/v1/messages", json={"to": "+447911123456", "from": "ACME",
                                                                    "text": "x"}, headers=key))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(post)
    assert [r.status_code for r in answers] == [202] * 20
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum("idempotent-replayed" in r.headers for r in answers) == 19
    store = api.gw.store
    assert isinstance(store, SqliteStore)
    assert store.count() == (1, 1)


async def test_batch_replay(api: Api) -> None:
    key = {**ACME, "Idempotency-Key": "batch-1"}
    body = {"messages": [{"to": "+447911123456", "from": "ACME", "text": "a"}, {"to": "0", "from": "A", "text": "b"}]}
    a = await api.client.post("/v1/messages/batch", json=body, headers=key)
    b = await api.client.post("/v1/messages/batch", json=body, headers=key)
    assert a.json() == b.json() and b.headers["idempotent-replayed"] == "true"
    assert len(api.gw.core.messages) == 1


# ---- status and cancel -----------------------------------------------------------------------------------


async def test_get_shows_own_messages_with_history(api: Api) -> None:
    mid = (await api.send(reference="r")).json()["id"]
    r = await api.client.get(f"/v1/messages/{mid}", headers=ACME)
    assert r.status_code == 200
    view = msgspec.convert(r.json(), MessageView)
    assert (view.id, view.status, view.account, view.reference) == (mid, MessageStatus.QUEUED, "acme", "r")
    assert [h.status for h in view.history] == ["queued"]
    assert len(view.parts) == 1
    r = await api.client.get(f"/v1/messages/{mid}", headers=BETA)
    assert (r.status_code, error(r)["code"]) == (404, "not_found")
    r = await api.client.get("/v1/messages/nonexistent", headers=ACME)
    assert r.status_code == 404


async def test_cancel_a_scheduled_message(api: Api) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    mid = (await api.send(send_at=at)).json()["id"]
    r = await api.client.delete(f"/v1/messages/{mid}", headers=BETA)
    assert r.status_code == 404
    r = await api.client.delete(f"/v1/messages/{mid}", headers=ACME)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert [h["status"] for h in r.json()["history"]] == ["queued", "cancelled"]
    stored = api.gw.store.get(mid)
    assert stored is not None and stored.status is MessageStatus.CANCELLED  # durable before the answer
    assert mid not in api.gw.core.messages
    r = await api.client.delete(f"/v1/messages/{mid}", headers=ACME)
    assert (r.status_code, error(r)["code"]) == (409, "not_cancellable")
    assert (await api.client.get(f"/v1/messages/{mid}", headers=ACME)).json()["status"] == "cancelled"


async def test_a_submitted_message_cannot_be_cancelled(api: Api) -> None:
    mid = (await api.send()).json()["id"]
    api.gw.core.messages[mid].set_status(MessageStatus.SUBMITTED, 1.0)
    r = await api.client.delete(f"/v1/messages/{mid}", headers=ACME)
    assert (r.status_code, error(r)["code"]) == (409, "not_cancellable")
    assert "submitted" in error(r)["message"]


# ---- health, readiness, metrics, OpenAPI, routing errors -------------------------------------------------


class UpConnector:
    name = "a"
    can_submit = True
    backlog = 0
    backlog_limit = 10


async def test_health_and_readiness(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"ready": False, "store_open": True, "draining": False, "routes": {"uk": False},
                        "open_messages": 0}
    api.gw.connectors["a"] = UpConnector()  # type: ignore[assignment]
    r = await api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["routes"] == {"uk": True}
    api.gw.draining = True
    r = await api.client.get("/readyz")
    assert r.status_code == 503 and r.json()["draining"] is True


async def test_metrics(api: Api) -> None:
    r = await api.client.get("/metrics")  # the gateway's own registry
    assert r.status_code == 200 and "smppgw_messages_accepted_total" in r.text
    del api.gw.extensions["metrics"]
    r = await api.client.get("/metrics")
    assert (r.status_code, error(r)["code"]) == (404, "not_found")

    @dataclass
    class Metrics:
        registry: CollectorRegistry

    registry = CollectorRegistry()
    Counter("smppgw_test_total", "A test counter", registry=registry).inc(3)
    api.gw.extensions["metrics"] = Metrics(registry)
    r = await api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "smppgw_test_total 3.0" in r.text


async def test_openapi_document(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    own = json.loads(msgspec.json.encode(openapi_document(api.gw.config)))
    extensions = api.gw.extensions.get("openapi_paths", {})
    assert doc["paths"] == {**own["paths"], **json.loads(msgspec.json.encode(extensions))}
    assert doc["openapi"].startswith("3.1")
    assert set(own["paths"]) == {"/v1/messages", "/v1/messages/batch", "/v1/messages/{id}", "/healthz", "/readyz",
                                 "/metrics", "/openapi.json"}
    submit = doc["components"]["schemas"]["SubmitRequest"]
    assert submit["additionalProperties"] is False
    assert set(submit["required"]) == {"to", "text"}
    assert set(submit["properties"]) == {"to", "from", "text", "encoding", "send_at", "validity_s", "reference",
                                         "callback_url", "category"}
    assert submit["properties"]["reference"]["anyOf"][0]["maxLength"] == 64
    batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["messages"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    post = doc["paths"]["/v1/messages"]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "409", "413", "415", "422", "429", "503"}
    assert post["responses"]["429"]["headers"]["Retry-After"]["required"] is True


async def test_unknown_paths_and_methods_are_json(api: Api) -> None:
    r = await api.client.get("/v2/messages")
    assert (r.status_code, error(r)["code"]) == (404, "not_found")
    r = await api.client.put("/v1/messages/x", headers=ACME)
    assert (r.status_code, error(r)["code"]) == (405, "method_not_allowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}
    r = await api.client.get("/v1/messages", headers=ACME)
    assert r.status_code == 405


async def test_logs_hold_no_text_key_or_full_msisdn(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.send(text="secret text 4711")
    await api.send(headers={"Authorization": "Bearer not-a-key-0815"})
    await api.client.post("/v1/messages/batch", json={"messages": [{"to": "+447911123456", "from": "A",
                                                                    "text": "secret text 4711"}]}, headers=ACME)
    mid = (await api.send(send_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())).json()["id"]
    await api.client.delete(f"/v1/messages/{mid}", headers=ACME)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "gateway" in " ".join(r.name for r in caplog.records)
    for secret in ("secret text 4711", "acme-key", "not-a-key-0815", "447911123456"):
        assert secret not in logged


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    for bad in ("8080", "host:", "host:http", "h:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


async def test_a_handler_that_fails_answers_500_and_the_error_goes_on_to_the_server(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(body: bytes) -> Any:
        raise RuntimeError("a bug")

    app_api = api.client._transport.app  # type: ignore[attr-defined]
    inner = app_api.app if isinstance(app_api, FastPaths) else app_api
    monkeypatch.setattr(inner.state.api.acceptor, "decode_submit", broken)
    transport = httpx.ASGITransport(app_api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        with caplog.at_level(logging.ERROR, logger="gateway._http"):
            r = await client.post("/v1/messages", json={"to": "447911123456", "from": "ACME", "text": "x"},
                                  headers=ACME)
    assert r.status_code == 500 and error(r)["code"] == "internal_error"
    assert "POST /v1/messages failed: RuntimeError" in caplog.text
