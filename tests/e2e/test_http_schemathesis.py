"""The HTTP API over a real socket: schemathesis against /openapi.json, and run_http's lifecycle.

The gateway runs in a thread (an AnyIO blocking portal on asyncio + uvloop, as the daemon runs) with its SQLite
store and `run_http` on 127.0.0.1 port 0; no SMSC is connected, so accepted messages stay queued. Schemathesis
checks every operation with data that fits the schema and data that does not, and a stateful run follows the
document's links (submit, then read and cancel the message it created). It must find no 5xx and no response
that breaks the schema (status codes, content types, headers, bodies); negative data must be refused with a 4xx.

Two checks are left out on purpose: `positive_data_acceptance`, because a request can fit the schema and still be
refused with a 422 for what no schema can say (a number that is not a number, a text that needs too many parts);
and `use_after_free`, because DELETE cancels a message, which stays readable with the status `cancelled` (the
contract of issue 4), where that check expects a deleted resource to be gone.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.schemas import OpenApiSchema

from gateway._config import hash_api_key, parse_config
from gateway._connector import ConnectorStatistics, SessionInfo
from gateway._daemon import Gateway, Listening
from gateway._http import run_http
from gateway._store import SqliteStore

DEMO_KEY = "demo-key-change-me"
AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}
EXAMPLES = 60


def demo_config(tmp: Path) -> dict[str, Any]:
    return {
        "accounts": [{"id": "demo", "api_keys": [{"sha256": hash_api_key(DEMO_KEY)}], "default_source": "DEMO",
                      "rate_limit_per_s": 100_000}],
        "smscs": [{"name": "sim", "system_id": "gw", "password": "x"}],
        "routes": [{"name": "all", "prefix": "", "smscs": ["sim"]}],
        "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                               "trunk_prefix": "0"}]},
        "store": {"path": str(tmp / "gw.db")},
    }


class UpConnector:
    """Stands in for a bound SMSC, so /readyz answers 200; the dispatcher does not run, nothing is sent."""

    name = "sim"
    can_submit = True
    backlog = 0
    backlog_limit = 10

    def statistics(self) -> ConnectorStatistics:
        return ConnectorStatistics(
            name=self.name, sessions=(SessionInfo(0, "trx", "bound"),), binds_up=1, backlog=0, inflight=0,
            window=10, rate_per_s=None, throttle_slowdowns=0, throttle_waits=0, submits={}, receipts=0, mo=0,
            bind_failures=0, reconnects=0)


@asynccontextmanager
async def serving(gw: Gateway) -> AsyncIterator[Listening]:
    async with anyio.create_task_group() as tg:
        await tg.start(gw.store.run)
        listening: Listening = await tg.start(functools.partial(run_http, gw, listen="127.0.0.1:0"))
        yield listening
        tg.cancel_scope.cancel()


@dataclass
class Live:
    base_url: str
    gw: Gateway


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("gw")
    gw = Gateway(parse_config(demo_config(tmp), base_dir=tmp))
    gw.connectors["sim"] = UpConnector()  # type: ignore[assignment]
    with anyio.from_thread.start_blocking_portal("asyncio", backend_options={"use_uvloop": True}) as portal:
        with portal.wrap_async_context_manager(serving(gw)) as where:
            yield Live(f"http://{where.host}:{where.port}", gw)


@pytest.fixture(scope="module")
def api_schema(live: Live) -> OpenApiSchema:
    config = schemathesis.Config.from_dict({
        "headers": AUTH,
        "checks": {"positive_data_acceptance": {"enabled": False}, "use_after_free": {"enabled": False}},
    })
    return schemathesis.openapi.from_url(f"{live.base_url}/openapi.json", config=config)


# The third value: the operation takes input (parameters or a body) that negative data can break.
OPERATIONS = [
    ("POST", "/v1/messages", True), ("POST", "/v1/messages/batch", True), ("GET", "/v1/messages/{id}", True),
    ("DELETE", "/v1/messages/{id}", True), ("GET", "/healthz", False), ("GET", "/readyz", False),
    ("GET", "/metrics", False), ("GET", "/openapi.json", False),
    ("POST", "/v1/payment-requests", True), ("GET", "/v1/payment-requests/{id}", True),
    ("DELETE", "/v1/payment-requests/{id}", True), ("POST", "/v1/payment-requests/{id}/paid", True),
    ("GET", "/v1/consents/{msisdn}", True), ("GET", "/v1/consents/export", True),
    ("POST", "/v1/subscriptions", True), ("GET", "/v1/subscriptions", True), ("GET", "/v1/subscriptions/{id}", True),
    ("DELETE", "/v1/subscriptions/{id}", True), ("GET", "/v1/charges", True), ("GET", "/v1/charges/totals", True),
    ("POST", "/v1/verifications", True), ("GET", "/v1/verifications/{id}", True),
    ("POST", "/v1/verifications/{id}/check", True), ("POST", "/admin/reload", False),
]
CASES = [(m, p, mode) for m, p, has_input in OPERATIONS
         for mode in ((GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,))]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def test_the_document_lists_every_operation(api_schema: OpenApiSchema) -> None:
    found = set()
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the loader could not read is an error here
        found.add((result.ok().method.upper(), result.ok().path))
    # Schemathesis leaves out the operation that serves the schema it loaded; it is fuzzed below by name.
    assert found == {(m, p) for m, p, _ in OPERATIONS} - {("GET", "/openapi.json")}


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_operation_conforms(api_schema: OpenApiSchema, live: Live, method: str, path: str,
                            mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=live.base_url, headers=AUTH)

    check()


def test_stateful_links(api_schema: OpenApiSchema, live: Live) -> None:
    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"base_url": live.base_url, "headers": AUTH}

    Workflow.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None, database=None,
                                   suppress_health_check=list(HealthCheck)))


def test_some_messages_were_accepted(live: Live, api_schema: OpenApiSchema) -> None:
    """The runs above reached the accept path, not only its refusals (explicit examples are valid)."""
    store = live.gw.store
    assert isinstance(store, SqliteStore)
    total, _ = store.count()
    assert total > 0


def test_run_http_serves_batches_and_stops_cleanly(tmp_path: Path) -> None:
    """run_http on port 0 reports the real port, accepts 20 batches of 1000, and stops when cancelled.

    Prints the batch accept rate (the client runs in this process too, so the figure is a floor).
    """

    async def main() -> tuple[int, float, int]:
        gw = Gateway(parse_config(demo_config(tmp_path), base_dir=tmp_path))
        batches = [{"messages": [{"to": f"+4479{i:08d}", "text": f"message {i}"}
                                 for i in range(b * 1000, b * 1000 + 1000)]} for b in range(20)]
        async with anyio.create_task_group() as tg:
            await tg.start(gw.store.run)
            with anyio.fail_after(60):  # a hang guard: stopping must not wait for anything outside
                async with anyio.create_task_group() as http_tg:
                    where: Listening = await http_tg.start(functools.partial(run_http, gw, listen="127.0.0.1:0"))
                    assert where.port != 0
                    async with httpx.AsyncClient(base_url=f"http://{where.host}:{where.port}",
                                                 headers=AUTH) as client:
                        started = time.perf_counter()
                        accepted = 0
                        for body in batches:
                            r = await client.post("/v1/messages/batch", json=body)
                            assert r.status_code == 202
                            accepted += sum("id" in x for x in r.json()["results"])
                        elapsed = time.perf_counter() - started
                    http_tg.cancel_scope.cancel()
            port = where.port
            store = gw.store
            assert isinstance(store, SqliteStore)
            assert store.count() == (20_000, 20_000)
            tg.cancel_scope.cancel()
        return accepted, elapsed, port

    accepted, elapsed, port = anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    assert accepted == 20_000
    print(f"\nbatch accept over a socket: {accepted} messages in {elapsed:.2f} s = {accepted / elapsed:,.0f} msgs/s")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # the listener is closed
