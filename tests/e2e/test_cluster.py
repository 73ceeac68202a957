"""Two gateway nodes sharing one Redis, the simulator behind them (issue 7).

Load goes in through both nodes; messages are sent by the node holding the bind; receipts that land on the
other node still find their message; a per-account limit holds across both nodes; and a node killed with -9
mid-load loses nothing: the other node takes over what it had claimed, and no message is sent twice.
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
import yaml

from tests.e2e.gateway_fixture import (
    API_KEY,
    CallbackSink,
    RunningGateway,
    anyio_backend,
    gateway_config,
    gateway_process,
    listening_url,
    running_gateway,
)
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator
from tests.redis_fixture import RedisServer, redis_server, unique_group

pytestmark = pytest.mark.anyio
_ = (anyio_backend, redis_server)

FINAL = {"delivered", "undeliverable", "expired", "rejected", "failed", "unknown", "cancelled"}


def sim_config() -> dict[str, Any]:
    return make_config(receipts={"delay": {"distribution": "fixed", "mean_s": 0.02}, "tick_s": 0.002},
                       session={"window": 1000, "response_timeout_s": 5, "enquire_link_interval_s": 30})


def node_config(tmp_path: Path, sim: RunningSimulator, redis: RedisServer, group: str, node: str,
                callback_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """One node's config: the simulator's `esme` account as a transmitter on gw1 and a receiver on gw2, so that
    every receipt of a message gw1 sent arrives at gw2."""
    common = {"port": sim.smpp_port, "system_id": "esme", "password": "pw", "window": 50, "receipt_scope": "sim",
              "enquire_link_interval_s": 5, "reconnect": {"initial_s": 0.1, "max_s": 0.5}}
    cfg = gateway_config(tmp_path, sim, callback_url=callback_url, smscs=[
        {"name": "sim-tx", "bind": "tx", "nodes": {"gw1": 1}, **common},
        {"name": "sim-rx", "bind": "rx", "nodes": {"gw2": 1}, **common},
    ], routes=[{"name": "all", "prefix": "", "smscs": ["sim-tx"]}])
    cfg["node"] = node
    cfg["store"] = {"backend": "redis", "redis_url": redis.url, "redis_group": group}
    cfg["cluster"] = {"heartbeat_s": 0.5, "node_timeout_s": 2}
    cfg.update(overrides)
    return cfg


@asynccontextmanager
async def two_nodes(tmp_path: Path, sim: RunningSimulator, redis: RedisServer,
                    **overrides: Any) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    group = unique_group("cl")
    async with AsyncExitStack() as stack:
        nodes = []
        for name in ("gw1", "gw2"):
            cfg = node_config(tmp_path, sim, redis, group, name, **overrides)
            nodes.append(await stack.enter_async_context(running_gateway(cfg, base_dir=tmp_path, wait_ready=False)))
        with anyio.fail_after(10):
            while not nodes[0].gw.connectors["sim-tx"].can_submit or not any(
                    s.state == "bound" for s in nodes[1].gw.connectors["sim-rx"].sessions):
                await anyio.sleep(0.02)
        yield nodes[0], nodes[1]


async def test_load_through_both_nodes_and_receipts_on_the_other_node(tmp_path: Path,
                                                                     redis_server: RedisServer) -> None:
    async with running_simulator(sim_config()) as sim, two_nodes(tmp_path, sim, redis_server) as (gw1, gw2):
        ids: list[str] = []
        for gw in (gw1, gw2, gw1, gw2):
            r = await gw.api.post("/v1/messages/batch", json={"messages": [
                {"to": f"4479{len(ids) + i:08d}", "from": "ACME", "text": f"cluster {len(ids) + i}"}
                for i in range(100)]})
            assert r.status_code == 202, r.text
            ids.extend(x["id"] for x in r.json()["results"])
        views = await gw2.wait_final(ids, timeout_s=30)  # any node answers for any message
        assert {v["status"] for v in views.values()} == {"delivered"}
        assert {v["smsc"] for v in views.values()} == {"sim-tx"}  # sent by gw1, the node with the bind
        assert gw2.gw.connectors["sim-rx"].statistics().receipts == len(ids)  # every receipt landed on gw2
        assert gw1.gw.connectors["sim-tx"].statistics().receipts == 0
        async with sim.http() as http:
            received = (await http.get("/messages", params={"limit": 10000})).json()["messages"]
        assert collections.Counter(m["text"] for m in received) == {f"cluster {i}": 1 for i in range(len(ids))}


async def test_every_final_status_reaches_its_callback_whichever_node_applied_it(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Receipts at once, half of them before their submit_sm_resp, all of them on gw2: most are parked in Redis and
    applied by gw1 when it registers the SMSC id (Rule 4 of _cluster); those statuses need their callbacks too."""
    accounts = make_config()["accounts"]
    for account in accounts:
        if account["system_id"] == "esme":
            account["faults"] = {"receipt_before_resp_rate": 0.5}
    sim_cfg = make_config(accounts=accounts, receipts={"delay": {"distribution": "fixed", "mean_s": 0.0},
                                                       "tick_s": 0.002})
    async with running_simulator(sim_cfg) as sim, CallbackSink.running() as sink:
        async with two_nodes(tmp_path, sim, redis_server, callback_url=sink.url) as (gw1, gw2):
            ids: list[str] = []
            for gw in (gw1, gw2):
                r = await gw.api.post("/v1/messages/batch", json={"messages": [
                    {"to": f"4479{len(ids) + i:08d}", "from": "ACME", "text": f"callback {len(ids) + i}"}
                    for i in range(150)]})
                assert r.status_code == 202, r.text
                ids.extend(x["id"] for x in r.json()["results"])
            got = await sink.wait_for(set(ids), timeout_s=30)
            assert {item["status"] for items in got.values() for item in items} == {"delivered"}
            assert sink.bad_signatures == 0
            parked = sum(g.gw.core.cluster.statistics()["parked_applied"] for g in (gw1, gw2))  # type: ignore[union-attr]
            assert parked > 0  # the path under test was taken


async def test_a_per_account_limit_holds_across_both_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    async with running_simulator(sim_config()) as sim:
        group = unique_group("rl")
        cfgs = []
        for name in ("gw1", "gw2"):
            cfg = node_config(tmp_path, sim, redis_server, group, name)
            cfg["accounts"][0]["rate_limit_per_s"] = 20
            cfg["accounts"][0]["rate_limit_burst"] = 20
            cfgs.append(cfg)
        async with running_gateway(cfgs[0], base_dir=tmp_path, wait_ready=False) as gw1, \
                running_gateway(cfgs[1], base_dir=tmp_path, wait_ready=False) as gw2:
            admitted = 0
            started = time.monotonic()
            for i in range(30):
                for gw in (gw1, gw2):
                    r = await gw.api.post("/v1/messages", json={"to": "447911000001", "from": "ACME",
                                                                "text": f"limit {i}"})
                    assert r.status_code in (202, 429), r.text
                    admitted += r.status_code == 202
            elapsed = time.monotonic() - started
        # One bucket for the account, whichever node a request reached: at most the burst plus what refilled.
        assert admitted <= 20 + 20 * elapsed + 1
        assert admitted < 60  # two buckets of their own would have admitted every request in this time


# ---- kill -9 of a node mid-load (real processes) --------------------------------------------------------


async def test_kill_9_of_a_node_mid_load_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path, redis_server: RedisServer) -> None:
    group = unique_group("k9")
    async with running_simulator(sim_config()) as sim:
        common = {"port": sim.smpp_port, "system_id": "esme", "password": "pw", "window": 20,
                  "enquire_link_interval_s": 5, "reconnect": {"initial_s": 0.1, "max_s": 0.5}}
        paths = {}
        for name in ("gw1", "gw2"):
            cfg = gateway_config(tmp_path, sim, smscs=[{"name": "sim", "bind": "trx", **common}],
                                 routes=[{"name": "all", "prefix": "", "smscs": ["sim"]}])
            cfg.update(node=name, store={"backend": "redis", "redis_url": redis_server.url, "redis_group": group},
                       cluster={"heartbeat_s": 0.3, "node_timeout_s": 1.5}, logging={"level": "info"})
            cfg["accounts"][0]["callback"] = {}
            cfg["messages"]["resend_free_after_crash"] = False  # a message on the wire at the kill is never resent
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            paths[name] = path
        accepted: list[str] = []
        with gateway_process(paths["gw1"], tmp_path / "gw1.log") as p1, \
                gateway_process(paths["gw2"], tmp_path / "gw2.log") as p2:
            urls = [await listening_url(tmp_path / "gw1.log", p1), await listening_url(tmp_path / "gw2.log", p2)]
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(headers=headers, timeout=10) as http:
                with anyio.fail_after(20):
                    for u in urls:
                        while (await http.get(f"{u}/readyz")).status_code != 200:
                            await anyio.sleep(0.05)
                for batch in range(20):
                    url = urls[batch % 2]
                    r = await http.post(f"{url}/v1/messages/batch", json={"messages": [
                        {"to": f"4479{batch:04d}{i:04d}", "from": "ACME", "text": f"k9 {batch}-{i}"}
                        for i in range(100)]})
                    assert r.status_code == 202, r.text
                    results = r.json()["results"]
                    assert all("id" in x for x in results), [x for x in results if "id" not in x][:3]
                    accepted.extend(x["id"] for x in results)
                    if batch == 10:
                        p1.send_signal(signal.SIGKILL)  # gw1 dies with claimed messages, some on the wire
                        urls = [urls[1], urls[1]]
                statuses: dict[str, str] = {}
                pending = set(accepted)
                with anyio.move_on_after(60):
                    while pending:
                        for mid in list(pending)[:200]:
                            r = await http.get(f"{urls[1]}/v1/messages/{mid}")
                            assert r.status_code == 200, f"{mid} got a 202 but is unknown to the surviving node"
                            if r.json()["status"] in FINAL:
                                statuses[mid] = r.json()["status"]
                                pending.discard(mid)
                        await anyio.sleep(0.05)
                if pending:  # say which ones, and where they are stuck
                    views = [(await http.get(f"{urls[1]}/v1/messages/{mid}")).json() for mid in list(pending)[:3]]
                    raise AssertionError(f"{len(pending)} messages never became final, e.g. {views}")
            p2.send_signal(signal.SIGTERM)
            p2.wait(30)
        assert len(statuses) == len(accepted) == 2000
        assert set(statuses.values()) <= {"delivered", "unknown"}
        async with sim.http() as http:
            received = (await http.get("/messages", params={"limit": 10000})).json()["messages"]
        counts = collections.Counter(m["text"] for m in received)
        assert max(counts.values()) == 1, {t: n for t, n in counts.items() if n > 1}  # nothing sent twice
        delivered = sum(1 for s in statuses.values() if s == "delivered")
        unknown = len(statuses) - delivered
        # Delivered messages all reached the SMSC; `unknown` ones were on the wire at the kill (the SMSC may have
        # taken them before gw1 could record it), so at most what gw1 had in flight: one window.
        assert delivered <= len(counts) <= delivered + unknown
        assert unknown <= 20


async def test_an_smsc_throughput_holds_across_both_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    async with running_simulator(sim_config()) as sim:
        group = unique_group("tp")
        cfgs = []
        for name in ("gw1", "gw2"):
            common = {"port": sim.smpp_port, "system_id": "esme", "password": "pw", "window": 20,
                      "throughput_per_s": 40, "reconnect": {"initial_s": 0.1, "max_s": 0.5}}
            cfg = gateway_config(tmp_path, sim, smscs=[{"name": "sim", "bind": "trx", **common}],
                                 routes=[{"name": "all", "prefix": "", "smscs": ["sim"]}])
            cfg.update(node=name, store={"backend": "redis", "redis_url": redis_server.url, "redis_group": group},
                       cluster={"heartbeat_s": 0.5, "node_timeout_s": 2})
            cfgs.append(cfg)
        async with running_gateway(cfgs[0], base_dir=tmp_path) as gw1, running_gateway(cfgs[1], base_dir=tmp_path) as gw2:
            ids: list[str] = []
            for gw in (gw1, gw2):
                r = await gw.api.post("/v1/messages/batch", json={"messages": [
                    {"to": f"4479{len(ids) + i:08d}", "from": "ACME", "text": f"paced {len(ids) + i}"}
                    for i in range(60)]})
                assert r.status_code == 202
                ids.extend(x["id"] for x in r.json()["results"])
            views = await gw1.wait_final(ids, timeout_s=30)
            assert {v["status"] for v in views.values()} == {"delivered"}
        async with sim.http() as http:
            received = sorted(m["received_at"] for m in (await http.get("/messages", params={"limit": 1000})).json()[
                "messages"])
        assert len(received) == 120
        # One bucket for both nodes: no one-second window holds more than the rate plus each node's small chunk
        # and the local bucket's burst (a tenth of the rate).
        worst = max(sum(1 for t in received if start <= t < start + 1.0) for start in received)
        assert worst <= 40 + 2 * 2 + 4 + 1


async def test_a_billing_node_that_loses_its_lease_exits_for_a_restart(tmp_path: Path,
                                                                       redis_server: RedisServer) -> None:
    """_leader Rule 2: another holder of the lease (as after a pause longer than its time to live) makes the
    billing node stop at once, with exit status 75 (EX_TEMPFAIL) for systemd's Restart=on-failure."""
    group = unique_group("lease")
    async with running_simulator(sim_config()) as sim:
        cfg = gateway_config(tmp_path, sim)
        cfg.update(node="gw1", store={"backend": "redis", "redis_url": redis_server.url, "redis_group": group},
                   cluster={"heartbeat_s": 0.2, "node_timeout_s": 2.0}, logging={"level": "info"})
        cfg["accounts"][0]["callback"] = {}
        path = tmp_path / "gw1.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log_path = tmp_path / "gw1.log"
        with gateway_process(path, log_path) as proc:
            with anyio.fail_after(20):
                while "is the billing node now" not in log_path.read_text(errors="replace"):
                    assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                    await anyio.sleep(0.05)
            client = redis.Redis.from_url(redis_server.url)
            [key] = client.keys(f"*{group}*leader:billing")
            client.set(key, "gw9|http://127.0.0.1:9|someone-else")
            with anyio.fail_after(10):
                while proc.poll() is None:
                    await anyio.sleep(0.05)
            assert proc.returncode == 75
            assert "lost the billing lease" in log_path.read_text(errors="replace")
