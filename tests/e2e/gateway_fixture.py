"""Run the gateway in-process against the simulator, over real sockets on 127.0.0.1, and receive its callbacks.

    from tests.e2e.gateway_fixture import anyio_backend, gateway_config, running_gateway, CallbackSink
    from tests.e2e.simulator_fixture import make_config, running_simulator

    async def test_x(tmp_path):
        async with running_simulator(sim_config()) as sim, CallbackSink.running() as sink, \\
                running_gateway(gateway_config(tmp_path, sim, callback_url=sink.url)) as gw:
            r = await gw.api.post("/v1/messages", json={...})

Shutdown comes from an event, never a signal (STYLE.md, tests/e2e). For a test that kills the gateway,
`gateway_process` runs `smppgw run` in a process of its own and `listening_url` reads where it listens.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway._config import Config, hash_api_key, parse_config
from gateway._daemon import Gateway, serve
from gateway._http import run_http
from tests.e2e.simulator_fixture import RunningSimulator, anyio_backend

__all__ = ["API_KEY", "CallbackSink", "RunningGateway", "anyio_backend", "gateway_config", "gateway_process",
           "listening_url", "local_server", "running_gateway", "signature_ok"]

API_KEY = "e2e-key"
CALLBACK_SECRET = "e2e-callback-secret"


def gateway_config(tmp_path: Path, sim: RunningSimulator, *, callback_url: str | None = None,
                   smscs: list[dict[str, Any]] | None = None, routes: list[dict[str, Any]] | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """A gateway config (as a dict) whose SMSC `sim` is the running simulator's `esme` account."""
    cfg: dict[str, Any] = {
        "store": {"path": str(tmp_path / "gw.db")},
        "accounts": [{
            "id": "e2e", "api_keys": [{"sha256": hash_api_key(API_KEY)}],
            "callback": {"url": callback_url, "secret": CALLBACK_SECRET, "retry_initial_s": 0.1},
        }],
        "smscs": smscs or [{"name": "sim", "port": sim.smpp_port, "system_id": "esme", "password": "pw",
                            "window": 50, "enquire_link_interval_s": 5, "response_timeout_s": 3,
                            "reconnect": {"initial_s": 0.1, "max_s": 0.5}}],
        "routes": routes or [{"name": "all", "prefix": "", "smscs": ["sim"]}],
        "numbering": {"default_country": "GB", "countries": [{"country": "GB", "country_code": "44",
                                                              "trunk_prefix": "0"}]},
        "messages": {"retry": {"initial_s": 0.2, "max_s": 1.0}},
        "shutdown": {"drain_s": 5},
    }
    cfg.update(overrides)
    return cfg


@dataclass
class RunningGateway:
    gw: Gateway
    url: str
    api: httpx.AsyncClient

    @property
    def config(self) -> Config:
        return self.gw.config

    async def send(self, **fields: Any) -> dict[str, Any]:
        body = {"from": "ACME", **fields}
        r = await self.api.post("/v1/messages", json=body)
        assert r.status_code == 202, r.text
        result: dict[str, Any] = r.json()
        return result

    async def status(self, mid: str) -> dict[str, Any]:
        r = await self.api.get(f"/v1/messages/{mid}")
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def wait_final(self, ids: list[str], timeout_s: float = 15.0) -> dict[str, dict[str, Any]]:
        """Poll until every message is final; returns id -> its API view."""
        final = {"delivered", "undeliverable", "expired", "rejected", "failed", "unknown", "cancelled"}
        views: dict[str, dict[str, Any]] = {}
        with anyio.fail_after(timeout_s):
            while True:
                for mid in ids:
                    if mid not in views or views[mid]["status"] not in final:
                        views[mid] = await self.status(mid)
                if all(v["status"] in final for v in views.values()):
                    return views
                await anyio.sleep(0.05)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        with anyio.fail_after(timeout_s):
            while not self.gw.ready:
                await anyio.sleep(0.02)


@asynccontextmanager
async def running_gateway(cfg: dict[str, Any], *, base_dir: Path | None = None, wait_ready: bool = True
                          ) -> AsyncIterator[RunningGateway]:
    """The gateway with `cfg`, its HTTP API on a free port; drained and stopped when the block ends."""
    config = parse_config(cfg, base_dir=base_dir or Path(cfg["store"]["path"]).parent)
    gw = Gateway(config)
    stop = anyio.Event()

    async def http(gw: Gateway, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        await run_http(gw, listen="127.0.0.1:0", task_status=task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(serve, gw, stop.wait, http=http))
        assert gw.http is not None
        url = f"http://{gw.http.host}:{gw.http.port}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                                     timeout=10) as api:
            running = RunningGateway(gw, url, api)
            if wait_ready:
                await running.wait_ready()
            try:
                yield running
            finally:
                stop.set()


@dataclass
class CallbackSink:
    """A local HTTP server that records the callbacks it receives and checks their signatures."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    fail_next: int = 0
    requests: int = 0

    def by_id(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for item in self.received:
            out.setdefault(item["id"], []).append(item)
        return out

    async def wait_for(self, ids: set[str], timeout_s: float = 15.0) -> dict[str, list[dict[str, Any]]]:
        with anyio.fail_after(timeout_s):
            while not ids <= set(self.by_id()):
                await anyio.sleep(0.05)
        return self.by_id()

    async def _receive(self, request: Request) -> Response:
        self.requests += 1
        body = await request.body()
        if not signature_ok(CALLBACK_SECRET, request, body):
            self.bad_signatures += 1
            return Response(status_code=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response(status_code=503)
        data = json.loads(body)
        self.received.extend(data if isinstance(data, list) else [data])
        return Response(status_code=204)

    @classmethod
    @asynccontextmanager
    async def running(cls) -> AsyncIterator[CallbackSink]:
        sink = cls()
        async with local_server(Starlette(routes=[Route("/cb", sink._receive, methods=["POST"])])) as base:
            sink.url = f"{base}/cb"
            yield sink


@asynccontextmanager
async def local_server(app: Starlette) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 and a free port; yields its base URL once it accepts connections."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    server.capture_signals = _no_signals  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True


@contextmanager
def _no_signals() -> Iterator[None]:
    yield  # the test owns signals; uvicorn must not install handlers


_ = anyio_backend  # re-exported for test modules


def signature_ok(secret: str, request: Request, body: bytes) -> bool:
    """Whether `request` carries the gateway's signature of `body` under `secret` (computed here, not with the
    gateway's own function: docs/callbacks.md is what the test holds it to)."""
    ts = request.headers.get("x-smppgw-timestamp", "")
    expected = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers.get("x-smppgw-signature", ""))


@contextmanager
def gateway_process(cfg_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`smppgw run -c cfg_path --http 127.0.0.1:0` in a process of its own, its output appended to `log_path`;
    killed (SIGKILL) if it still runs when the block ends."""
    log = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg_path), "--http", "127.0.0.1:0"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()


async def listening_url(log_path: Path, proc: subprocess.Popen[bytes], seen: int = 0) -> str:
    """The base URL of the HTTP API from the 'http api listening on' lines of `log_path`: the one after the first
    `seen` of them (a log appended to by several starts). Fails when the process exits first."""
    with anyio.fail_after(20):
        while True:
            found = re.findall(r"http api listening on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
            if len(found) > seen:
                return str(found[seen])
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
            await anyio.sleep(0.05)
