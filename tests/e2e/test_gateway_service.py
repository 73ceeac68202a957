"""The gateway as a service: a real `python -m gateway.cli run` process against the simulator, watched the way
systemd watches it (a NOTIFY_SOCKET of the test's own), reloaded with SIGHUP and POST /admin/reload, and stopped
with SIGTERM, once and twice; and the unit files in systemd/, checked by `systemd-analyze`.

These are the only e2e tests that use signals: signals are what they test (STYLE.md's "shutdown from an injected
event" is for the in-process tests). The simulator runs in-process with free ports; every gateway process is
killed at the end of its block whatever happens.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import yaml

from gateway._config import hash_api_key, load_config
from tests.conftest import require_command
from tests.e2e.gateway_fixture import API_KEY, anyio_backend, gateway_config
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator
from tests.procfs import store_writer_pid

pytestmark = pytest.mark.anyio
_ = anyio_backend

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"delivered", "undeliverable", "expired", "rejected", "failed", "unknown", "cancelled"}
ADMIN_KEY = "e2e-admin-key"
DRAIN_S = 5.0
WATCHDOG_USEC = 400_000  # WatchdogSec=0.4s: a ping every 0.2 s


# ---- a NOTIFY_SOCKET of our own ------------------------------------------------------------------------------


@dataclass
class NotifySocket:
    """Collects the notify datagrams the gateway sends, each as a dict of its variables."""

    path: Path
    messages: list[dict[str, str]] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    async def _read(self, sock: anyio.abc.UNIXDatagramSocket) -> None:
        while True:
            data, _ = await sock.receive()
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
            self.at.append(time.monotonic())
            self._arrived.set()
            self._arrived = anyio.Event()

    async def wait_for(self, test: Callable[[dict[str, str]], bool], *, after: int = 0,
                       timeout_s: float = 15.0) -> int:
        """The index of the first message from `after` on that passes `test` (waiting for it)."""
        with anyio.fail_after(timeout_s):
            while True:
                for i in range(after, len(self.messages)):
                    if test(self.messages[i]):
                        return i
                await self._arrived.wait()

    def kinds(self, start: int = 0) -> list[str]:
        """The lifecycle variables of each message (WATCHDOG pings and bare STATUS refreshes left out)."""
        out: list[str] = []
        for m in self.messages[start:]:
            for key in ("READY", "RELOADING", "STOPPING"):
                if key in m:
                    out.append(key)
        return out

    @classmethod
    @asynccontextmanager
    async def bound(cls, tmp_path: Path) -> AsyncIterator[NotifySocket]:
        ns = cls(tmp_path / "notify.sock")
        sock = await anyio.create_unix_datagram_socket(local_path=ns.path)
        async with sock, anyio.create_task_group() as tg:
            tg.start_soon(ns._read, sock)
            try:
                yield ns
            finally:
                tg.cancel_scope.cancel()


# ---- the gateway process -------------------------------------------------------------------------------------


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout_s: float) -> int:
        """The exit code (polling: the simulator shares this event loop and must keep serving meanwhile)."""
        with anyio.fail_after(timeout_s):
            while (code := self.proc.poll()) is None:
                await anyio.sleep(0.02)
        return code

    def alive(self) -> bool:
        return self.proc.poll() is None


@asynccontextmanager
async def gateway(cfg_path: Path, tmp_path: Path, notify: NotifySocket | None = None) -> AsyncIterator[GatewayProcess]:
    """`python -m gateway.cli run` on a free port; killed when the block ends if it is still running."""
    log_path = tmp_path / f"gateway-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if notify is not None:
        env.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg_path),
                                 "--http", "127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    gp = GatewayProcess(proc, log_path)
    try:
        with anyio.fail_after(20):
            while not (m := re.search(r"http api listening on (http://127\.0\.0\.1:\d+)", gp.log())):
                if proc.poll() is not None:
                    raise AssertionError(f"the gateway exited early:\n{gp.log()[-3000:]}")
                await anyio.sleep(0.05)
        gp.url = m.group(1)
        yield gp
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def api_client(url: str, key: str = API_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


async def wait_ready(api: httpx.AsyncClient, timeout_s: float = 15.0) -> None:
    with anyio.fail_after(timeout_s):
        while (await api.get("/readyz")).status_code != 200:
            await anyio.sleep(0.05)


async def metric(api: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await api.get("/metrics")).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == (f"{name}{{{want}}}" if want else name):
            return float(value)
    raise AssertionError(f"no series {name}{{{want}}} in /metrics")


async def wait_final(api: httpx.AsyncClient, ids: list[str], timeout_s: float = 30.0) -> dict[str, str]:
    pending = set(ids)
    statuses: dict[str, str] = {}
    with anyio.fail_after(timeout_s):
        while pending:
            for mid in list(pending)[:300]:
                r = await api.get(f"/v1/messages/{mid}")
                assert r.status_code == 200, f"{mid} got a 202 but is unknown now: {r.text}"
                status = r.json()["status"]
                if status in FINAL:
                    statuses[mid] = status
                    pending.discard(mid)
            if pending:
                await anyio.sleep(0.05)
    return statuses


@dataclass
class Load:
    """Clients posting single messages until stopped; every 202 is kept."""

    url: str
    accepted: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)
    unreachable: int = 0
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def _client(self, n: int) -> None:
        async with api_client(self.url) as api:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    r = await api.post("/v1/messages", json={"to": f"+4479{n:02d}{i:06d}", "from": "ACME",
                                                             "text": f"load {n}-{i}"})
                except httpx.TransportError:
                    self.unreachable += 1  # the process is gone: stop this client
                    return
                if r.status_code == 202:
                    self.accepted.append(r.json()["id"])
                else:
                    self.refused[r.status_code] = self.refused.get(r.status_code, 0) + 1
                    await anyio.sleep(0.01)

    @classmethod
    @asynccontextmanager
    async def running(cls, url: str, clients: int = 4) -> AsyncIterator[Load]:
        load = cls(url)
        async with anyio.create_task_group() as tg:
            for n in range(clients):
                tg.start_soon(load._client, n)
            try:
                yield load
            finally:
                load.stop.set()

    async def wait_accepted(self, n: int, timeout_s: float = 15.0) -> None:
        with anyio.fail_after(timeout_s):
            while len(self.accepted) < n:
                await anyio.sleep(0.02)


# ---- configs -------------------------------------------------------------------------------------------------


def sim_config() -> dict[str, Any]:
    return make_config(
        receipts={"delay": {"distribution": "fixed", "mean_s": 0.02}, "tick_s": 0.002, "retry_delay_s": 0.1},
        accounts=[{"system_id": "esme", "password": "pw"}, {"system_id": "other", "password": "pw2"},
                  {"system_id": "third", "password": "pw3"}])


def smsc(name: str, sim: RunningSimulator, system_id: str, password: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": sim.smpp_port, "system_id": system_id, "password": password, "window": 50,
            "enquire_link_interval_s": 5, "response_timeout_s": 10, "reconnect": {"initial_s": 0.1, "max_s": 0.5},
            **extra}


def write_config(path: Path, tmp_path: Path, sim: RunningSimulator, *, smscs: list[dict[str, Any]] | None = None,
                 route: list[str] | None = None) -> Path:
    cfg = gateway_config(tmp_path, sim, smscs=smscs or [smsc("sim", sim, "esme", "pw")],
                         routes=[{"name": "all", "prefix": "", "smscs": route or ["sim"]}])
    cfg["accounts"][0]["callback"] = {}
    cfg["http"] = {"admin_keys": [{"sha256": hash_api_key(ADMIN_KEY)}]}
    cfg["shutdown"] = {"drain_s": DRAIN_S}
    cfg["logging"] = {"level": "info"}
    path.write_text(yaml.safe_dump(cfg))
    return path


async def sim_binds(sim: RunningSimulator) -> dict[str, set[str]]:
    """The simulator's bound peers (host:port of the gateway's side) by account."""
    async with sim.http() as http:
        binds = (await http.get("/binds")).json()["binds"]
    out: dict[str, set[str]] = {}
    for b in binds:
        if b["account"] is not None and b["state"].startswith("bound"):
            out.setdefault(b["account"], set()).add(str(b["peer"]))
    return out


# ---- the tests -----------------------------------------------------------------------------------------------


async def test_notify_sequence_on_start_reload_refused_reload_and_stop(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim, NotifySocket.bound(tmp_path) as notify:
        cfg_path = write_config(tmp_path / "gateway.yaml", tmp_path, sim)
        async with gateway(cfg_path, tmp_path, notify) as gw, api_client(gw.url) as api:
            # Start: READY=1 first, with a status, once the HTTP API answers.
            ready = await notify.wait_for(lambda m: "READY" in m)
            assert ready == 0 and notify.kinds() == ["READY"]
            assert re.fullmatch(r"\d+/1 binds up; \d+ messages open, \d+ queued at SMSCs, \d+ in flight",
                                notify.messages[0]["STATUS"])
            assert (await api.get("/healthz")).status_code == 200
            await wait_ready(api)
            # The watchdog is pinged from the main loop every half WATCHDOG_USEC.
            first_ping = await notify.wait_for(lambda m: m.get("WATCHDOG") == "1")
            third_ping = await notify.wait_for(lambda m: m.get("WATCHDOG") == "1", after=first_ping + 1)
            third_ping = await notify.wait_for(lambda m: m.get("WATCHDOG") == "1", after=third_ping + 1)
            assert notify.at[third_ping] - notify.at[first_ping] < 2.0

            # SIGHUP with a valid change: RELOADING=1 (with MONOTONIC_USEC), then READY=1; the metric stays 1.
            write_config(cfg_path, tmp_path, sim, smscs=[smsc("sim", sim, "esme", "pw", window=20)])
            mark = len(notify.messages)
            gw.signal(signal.SIGHUP)
            reloading = await notify.wait_for(lambda m: "RELOADING" in m, after=mark)
            assert 0 < int(notify.messages[reloading]["MONOTONIC_USEC"]) <= time.clock_gettime_ns(
                time.CLOCK_MONOTONIC) // 1000
            done = await notify.wait_for(lambda m: "READY" in m, after=reloading)
            assert "last reload refused" not in notify.messages[done]["STATUS"]
            assert await metric(api, "smppgw_config_last_reload_successful") == 1.0
            assert await metric(api, "smppgw_smsc_window_size", smsc="sim") == 20.0

            # SIGHUP with a broken file: refused whole, logged as path: problem, metric 0, still serving.
            cfg_path.write_text(cfg_path.read_text().replace("window: 20", "window: twenty"))
            mark = len(notify.messages)
            gw.signal(signal.SIGHUP)
            reloading = await notify.wait_for(lambda m: "RELOADING" in m, after=mark)
            done = await notify.wait_for(lambda m: "READY" in m, after=reloading)
            assert "last reload refused: smscs[0].window: " in notify.messages[done]["STATUS"]
            assert await metric(api, "smppgw_config_last_reload_successful") == 0.0
            assert await metric(api, "smppgw_smsc_window_size", smsc="sim") == 20.0  # the old config runs
            assert re.search(r"config reload refused, the running config is kept: smscs\[0\]\.window: ", gw.log())
            assert gw.alive() and (await api.get("/readyz")).status_code == 200
            r = await api.post("/v1/messages", json={"to": "+447911000001", "from": "ACME", "text": "still here"})
            assert r.status_code == 202
            assert (await wait_final(api, [r.json()["id"]])) == {r.json()["id"]: "delivered"}

            # POST /admin/reload with the file fixed: framed the same way; the metric is back to 1.
            write_config(cfg_path, tmp_path, sim, smscs=[smsc("sim", sim, "esme", "pw", window=30)])
            mark = len(notify.messages)
            async with api_client(gw.url, ADMIN_KEY) as admin:
                r = await admin.post("/admin/reload")
            assert r.status_code == 200, r.text
            assert r.json()["changes"]["smscs"]["updated"] == ["sim"]
            await notify.wait_for(lambda m: "READY" in m, after=mark)
            assert notify.kinds(mark) == ["RELOADING", "READY"]
            assert await metric(api, "smppgw_config_last_reload_successful") == 1.0
            assert await metric(api, "smppgw_smsc_window_size", smsc="sim") == 30.0

            # SIGTERM: STOPPING=1, then exit 0 within the drain time.
            mark = len(notify.messages)
            started = time.monotonic()
            gw.signal(signal.SIGTERM)
            stopping = await notify.wait_for(lambda m: "STOPPING" in m, after=mark)
            assert notify.messages[stopping]["STATUS"].startswith("draining; ")
            assert await gw.wait_exit(DRAIN_S + 5) == 0
            assert time.monotonic() - started < DRAIN_S
            assert notify.kinds(mark) == ["STOPPING"]


async def test_reload_with_a_changed_route_while_messages_flow(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim, NotifySocket.bound(tmp_path) as notify:
        a = smsc("a", sim, "esme", "pw")
        b = smsc("b", sim, "other", "pw2")
        c = smsc("c", sim, "third", "pw3")
        cfg_path = write_config(tmp_path / "gateway.yaml", tmp_path, sim, smscs=[a, b], route=["a"])
        async with gateway(cfg_path, tmp_path, notify) as gw, api_client(gw.url) as api:
            await wait_ready(api)
            with anyio.fail_after(10):
                while set(await sim_binds(sim)) != {"esme", "other"}:
                    await anyio.sleep(0.05)
            binds_before = await sim_binds(sim)
            async with Load.running(gw.url) as load:
                await load.wait_accepted(150)
                # Reload 1: the route moves to b, a's window and rate change in place, c is added.
                write_config(cfg_path, tmp_path, sim, smscs=[{**a, "window": 20, "throughput_per_s": 2000}, b, c],
                             route=["b"])
                mark = len(notify.messages)
                gw.signal(signal.SIGHUP)
                done = await notify.wait_for(lambda m: "READY" in m, after=mark)
                at_reload = len(load.accepted)
                with anyio.fail_after(10):
                    while "third" not in await sim_binds(sim):
                        await anyio.sleep(0.05)
                await load.wait_accepted(at_reload + 150)
                # Reload 2 (POST /admin/reload): c is removed again; it drains and unbinds.
                write_config(cfg_path, tmp_path, sim, smscs=[{**a, "window": 20, "throughput_per_s": 2000}, b],
                             route=["b"])
                async with api_client(gw.url, ADMIN_KEY) as admin:
                    r = await admin.post("/admin/reload")
                assert r.status_code == 200 and r.json()["changes"]["smscs"]["removed"] == ["c"]
                await notify.wait_for(lambda m: "READY" in m, after=done + 1)
                await load.wait_accepted(len(load.accepted) + 100)
            assert notify.kinds(mark) == ["RELOADING", "READY", "RELOADING", "READY"]
            assert done > mark
            accepted = load.accepted
            print(f"accepted={len(accepted)} at the first reload={at_reload}")
            assert load.refused == {} and load.unreachable == 0
            statuses = await wait_final(api, accepted)
            assert set(statuses.values()) == {"delivered"}, statuses
            # No bind dropped: the same peers are bound for a and b; c came and went.
            with anyio.fail_after(10):
                while "third" in await sim_binds(sim):
                    await anyio.sleep(0.05)
            assert await sim_binds(sim) == binds_before
            for name in ("a", "b"):
                assert await metric(api, "smppgw_reconnects_total", smsc=name) == 0.0
                assert await metric(api, "smppgw_bind_failures_total", smsc=name) == 0.0
                assert await metric(api, "smppgw_smsc_binds_up", smsc=name) == 1.0
            assert await metric(api, "smppgw_smsc_window_size", smsc="a") == 20.0
            assert await metric(api, "smppgw_config_last_reload_successful") == 1.0
            # None lost, none twice: the simulator got each accepted message once, through a before the first
            # reload and b after it (messages already queued at a when it was taken off the route go out by a).
            async with sim.http() as http:
                received = (await http.get("/messages", params={"limit": 10000, "direction": "mt"})).json()["messages"]
            by_account: dict[str, int] = {}
            for m in received:
                by_account[m["account"]] = by_account.get(m["account"], 0) + 1
            assert sum(by_account.values()) == len(accepted) == len({m["text"] for m in received})
            assert by_account.get("esme", 0) >= 150 and by_account.get("other", 0) >= 250
            assert "third" not in by_account
            gw.signal(signal.SIGTERM)
            assert await gw.wait_exit(DRAIN_S + 5) == 0


async def delivered_after_restart(cfg_path: Path, tmp_path: Path, accepted: list[str]) -> GatewayProcess:
    """Start the gateway again: every id in `accepted` reaches `delivered`; then it stops cleanly on SIGTERM."""
    async with gateway(cfg_path, tmp_path) as gw, api_client(gw.url) as api:
        await wait_ready(api)
        statuses = await wait_final(api, accepted)
        assert set(statuses.values()) == {"delivered"}, statuses
        gw.signal(signal.SIGTERM)
        assert await gw.wait_exit(DRAIN_S + 5) == 0
    return gw


async def test_sigterm_under_load_then_restart_every_accepted_message_is_final(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim:
        cfg_path = write_config(tmp_path / "gateway.yaml", tmp_path, sim)
        async with gateway(cfg_path, tmp_path) as gw, api_client(gw.url) as api:
            await wait_ready(api)
            async with Load.running(gw.url, clients=6) as load:
                await load.wait_accepted(300)
                started = time.monotonic()
                gw.signal(signal.SIGTERM)
                code = await gw.wait_exit(DRAIN_S + 5)
                elapsed = time.monotonic() - started
            print(f"accepted={len(load.accepted)} refused={load.refused} drain_s={elapsed:.2f}")
            assert code == 0 and elapsed < DRAIN_S, (code, elapsed)
            assert set(load.refused) <= {503}  # while draining: refused, never half-accepted
            accepted = list(load.accepted)
            log = gw.log()
            assert "draining" in log and "stopped" in log
        await delivered_after_restart(cfg_path, tmp_path, accepted)


async def test_a_second_sigterm_exits_at_once_and_loses_nothing(tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim:
        cfg_path = write_config(tmp_path / "gateway.yaml", tmp_path, sim)
        async with sim.http() as control:
            # Submits get their response after 30 s: the windows stay full, so a drain would wait.
            assert (await control.put("/faults/esme", json={"response_delay_s": 30})).status_code == 200
        async with gateway(cfg_path, tmp_path) as gw, api_client(gw.url) as api:
            await wait_ready(api)
            r = await api.post("/v1/messages/batch", json={"messages": [
                {"to": f"+4479110{i:05d}", "from": "ACME", "text": f"stuck {i}"} for i in range(80)]})
            assert r.status_code == 202
            accepted = [x["id"] for x in r.json()["results"]]
            with anyio.fail_after(10):
                while await metric(api, "smppgw_smsc_window_in_use", smsc="sim") < 50:
                    await anyio.sleep(0.05)
            gw.signal(signal.SIGTERM)
            with anyio.fail_after(5):
                while "draining" not in gw.log():
                    await anyio.sleep(0.02)
            await anyio.sleep(0.3)
            assert gw.alive()  # draining: waiting for the window
            started = time.monotonic()
            gw.signal(signal.SIGTERM)
            assert await gw.wait_exit(3) == 128 + signal.SIGTERM
            assert time.monotonic() - started < 1.5
            assert "received again: exiting without draining" in gw.log()
        async with sim.http() as control:
            assert (await control.delete("/faults/esme")).status_code == 200
        # Free messages that were on the wire at the exit are sent again (the gateway's crash rule).
        await delivered_after_restart(cfg_path, tmp_path, accepted)


async def test_a_dead_store_writer_stops_the_daemon_with_a_failure_and_the_restart_loses_nothing(
        tmp_path: Path) -> None:
    async with running_simulator(sim_config()) as sim:
        cfg_path = write_config(tmp_path / "gateway.yaml", tmp_path, sim)
        async with gateway(cfg_path, tmp_path) as gw, api_client(gw.url) as api:
            await wait_ready(api)
            r = await api.post("/v1/messages/batch", json={"messages": [
                {"to": f"+4479110{i:05d}", "from": "ACME", "text": f"before {i}"} for i in range(20)]})
            assert r.status_code == 202
            accepted = [x["id"] for x in r.json()["results"]]
            writer = store_writer_pid(gw.proc.pid)
            assert writer is not None
            os.kill(writer, signal.SIGKILL)
            # Noticed at once, not at the next commit: exit 1 (not 2, which the unit does not restart).
            assert await gw.wait_exit(10) == 1
            assert "store writer process ended" in gw.log()
        gw2 = await delivered_after_restart(cfg_path, tmp_path, accepted)
        assert store_writer_pid(gw2.proc.pid) is None  # it ended with its daemon


# ---- the unit files ------------------------------------------------------------------------------------------

UNITS = ("smppgw.service", "smppgw-simulator.service")
INSTALLED_BIN = "/opt/smppgw/bin/"
"""Where docs/deploy.md installs the virtualenv; the test points it at this test's virtualenv instead, because
`systemd-analyze verify` refuses an ExecStart= whose program does not exist."""


def unit_lines(unit: str) -> set[str]:
    return {line.strip() for line in (ROOT / "systemd" / unit).read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def test_the_gateway_unit_has_what_the_service_needs() -> None:
    lines = unit_lines("smppgw.service")
    for directive in ("Type=notify", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
                      "EnvironmentFile=-/etc/default/smppgw", "StateDirectory=smppgw", "User=smppgw",
                      "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                      "CapabilityBoundingSet=", "AmbientCapabilities=", "LimitNOFILE=65536",
                      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service"):
        assert directive in lines, directive
    seconds = {k: float(v.removesuffix("s")) for k, _, v in (line.partition("=") for line in lines)
               if k in ("WatchdogSec", "TimeoutStopSec")}
    # The daemon exits on its own within shutdown.drain_s; systemd's SIGKILL must come later than that.
    assert seconds["TimeoutStopSec"] > load_config(ROOT / "config" / "gateway.yaml").shutdown.drain_s
    assert seconds["WatchdogSec"] > 0
    assert "ExecStart=/opt/smppgw/bin/smppgw run -c /etc/smppgw/gateway.yaml" in lines
    sim = unit_lines("smppgw-simulator.service")
    assert "ExecStart=/opt/smppgw/bin/python -m simulator -c /etc/smppgw/simulator.yaml" in sim
    assert {"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="} <= sim


@pytest.mark.interop
def test_unit_files_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = require_command("systemd-analyze", "systemd")
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "smppgw").exists(), "pip install . (or -e .) puts smppgw next to the interpreter"
    paths = []
    for unit in UNITS:
        text = (ROOT / "systemd" / unit).read_text()
        assert INSTALLED_BIN in text
        path = tmp_path / unit
        path.write_text(text.replace(INSTALLED_BIN, f"{venv_bin}/"))
        paths.append(str(path))
    r = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value (it only warns), so its output must not name our units.
    assert r.returncode == 0, r.stdout + r.stderr
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if any(u in line for u in UNITS)]
    assert complaints == []
    for unit_path in paths:
        # Exposure 2.0 or less on systemd's 0 (locked down) to 10 (unprotected) scale.
        sec = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", unit_path],
                             capture_output=True,
                             text=True, timeout=60)
        assert sec.returncode == 0, sec.stdout[-2000:] + sec.stderr
