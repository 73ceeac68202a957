"""The carrier-billing flows on two gateway nodes sharing one Redis (issues 5 and 7, gateway/_leader.py).

Both nodes bind the simulator, so MOs and receipts reach either one. One node holds the billing lease and runs the
flows; the other forwards the billing API to it, passes its MOs on through the `mo` stream and follows the consent
records. A subscription started by MO, answered YES by the handset and charged; a STOP whose opt-out both nodes
honour at once; the billing node stopping, and the other taking over the flows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from tests.e2e.gateway_fixture import RunningGateway, anyio_backend, gateway_config, running_gateway
from tests.e2e.simulator_fixture import RunningSimulator, running_simulator
from tests.e2e.test_billing_flows import (
    SHORTCODE,
    billing,
    eventually,
    ledger,
    send_mo,
    settled,
    sim_charges,
    sim_config,
    subscriptions,
    wait_mt,
)
from tests.redis_fixture import RedisServer, redis_server, unique_group

pytestmark = pytest.mark.anyio
_ = (anyio_backend, redis_server)


def node(tmp_path: Path, sim: RunningSimulator, redis: RedisServer, group: str, name: str) -> dict[str, Any]:
    cfg = gateway_config(tmp_path, sim, billing=billing(), smscs=[
        {"name": "sim", "port": sim.smpp_port, "system_id": "esme", "password": "pw", "window": 50, "bind": "trx",
         "nodes": {"gw1": 1, "gw2": 1}, "enquire_link_interval_s": 5, "reconnect": {"initial_s": 0.1, "max_s": 0.5}}])
    cfg["accounts"][0]["callback"] = {}
    cfg["node"] = name
    cfg["store"] = {"backend": "redis", "redis_url": redis.url, "redis_group": group}
    cfg["cluster"] = {"heartbeat_s": 0.25, "node_timeout_s": 2.0}
    return cfg


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    with anyio.fail_after(timeout_s):
        while not check():
            await anyio.sleep(0.02)


async def mt_status(gw: RunningGateway, msisdn: str) -> int:
    r = await gw.api.post("/v1/messages", json={"to": msisdn, "from": SHORTCODE, "text": "news of the day"})
    assert r.status_code in (202, 422), r.text
    return r.status_code


async def hold(cfg: dict[str, Any], base_dir: Path, stop: anyio.Event, *,
               task_status: anyio.abc.TaskStatus[RunningGateway] = anyio.TASK_STATUS_IGNORED) -> None:
    """One node, in a task of its own: it stops when `stop` is set, whichever node stops first."""
    async with running_gateway(cfg, base_dir=base_dir, wait_ready=False) as gw:
        task_status.started(gw)
        await stop.wait()


async def test_billing_flows_run_on_one_node_and_follow_it_when_it_stops(tmp_path: Path,
                                                                         redis_server: RedisServer) -> None:
    group = unique_group("bill")
    async with running_simulator(sim_config()) as sim, sim.http() as http, anyio.create_task_group() as tg:
        stops = {name: anyio.Event() for name in ("gw1", "gw2")}
        nodes = {name: await tg.start(hold, node(tmp_path, sim, redis_server, group, name), tmp_path, stops[name])
                 for name in ("gw1", "gw2")}
        gw1, gw2 = nodes["gw1"], nodes["gw2"]
        await until(lambda: any(n.gw.leader is not None and n.gw.leader.is_leader for n in (gw1, gw2)))
        leader, follower = (gw1, gw2) if gw1.gw.leader is not None and gw1.gw.leader.is_leader else (gw2, gw1)
        assert follower.gw.leader is not None and not follower.gw.leader.is_leader
        await until(lambda: follower.gw.leader is not None and follower.gw.leader.leader == leader.config.node)
        for n, expected in ((leader, "1.0"), (follower, "0.0")):
            metrics = (await n.api.get("/metrics")).text
            assert f"smppgw_cluster_billing_node {expected}" in metrics
            assert "smppgw_cluster_mo_backlog " in metrics

        # MO JOIN (received by either node), the handshake MT, the handset's YES, one charge.
        msisdn = "447900000101"
        await send_mo(http, msisdn, "join")
        await wait_mt(http, msisdn, "Reply YES")
        [entry] = await settled(follower.api, msisdn, 1)  # forwarded to the billing node
        assert (entry["state"], entry["amount"]) == ("charged", "1.50")
        assert len(await sim_charges(http, msisdn)) == 1
        [sub] = await subscriptions(follower.api, msisdn)
        assert sub["state"] == "active"
        assert follower.gw.leader.forwarded_total >= 2

        # STOP: recorded by the billing node, honoured by both nodes (the follower through the stream).
        assert await mt_status(follower, msisdn) == 202
        await send_mo(http, msisdn, "STOP")
        await wait_mt(http, msisdn, "You have left news")
        assert await eventually(lambda: refused(follower, msisdn), timeout_s=5)
        assert await mt_status(leader, msisdn) == 422
        assert follower.gw.consent.followed_total >= 1

        # Every MO reached the billing node, whichever node received it, and was processed once.
        assert leader.gw.mo.processed_total == 3  # join, yes, stop
        assert follower.gw.mo.processed_total == 0

        # The billing node stops (it releases its lease): the other node takes the flows over.
        stops[leader.config.node].set()
        await until(lambda: follower.gw.leader is not None and follower.gw.leader.is_leader)
        msisdn2 = "447900000102"
        await send_mo(http, msisdn2, "JOIN")
        await wait_mt(http, msisdn2, "Reply YES")
        [entry] = await settled(follower.api, msisdn2, 1)
        assert entry["state"] == "charged"
        assert len(await sim_charges(http, msisdn2)) == 1
        [sub] = await subscriptions(follower.api, msisdn2)
        assert sub["state"] == "active"
        assert len(await ledger(follower.api, msisdn)) == 1  # the first billing node's ledger, read on the second
        assert await mt_status(follower, msisdn) == 422  # and its opt-out
        stops[follower.config.node].set()


async def refused(gw: RunningGateway, msisdn: str) -> bool:
    return await mt_status(gw, msisdn) == 422
