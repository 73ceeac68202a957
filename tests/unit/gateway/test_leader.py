"""The billing lease (gateway/_leader.py) against a real redis-server: one holder at a time, the others learn who
holds it, a clean stop hands it over at once, and a holder whose lease was taken stops instead of going on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import redis

from gateway._config import ClusterConfig
from gateway._daemon import Listening
from gateway._leader import BillingLeader, LeadershipLost
from tests.redis_fixture import RedisServer, redis_server
from tests.unit.gateway.test_redis import anyio_backend, group, nodes

pytestmark = pytest.mark.anyio
_ = (anyio_backend, group, redis_server)


def leader(store: Any, name: str, port: int) -> BillingLeader:
    gw = SimpleNamespace(store=SimpleNamespace(inner=store), http=Listening("127.0.0.1", port),
                         config=SimpleNamespace(node=name, cluster=ClusterConfig()))
    return BillingLeader(gw, heartbeat_s=0.1, ttl_s=1.0)  # type: ignore[arg-type]


async def test_one_holder_the_other_follows_and_takes_over_after_a_clean_stop(redis_server: RedisServer,
                                                                              group: str) -> None:
    started: list[str] = []
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        first, second = leader(a, "a", 8001), leader(b, "b", 8002)

        def start(name: str) -> Any:
            async def go() -> None:
                started.append(name)
            return go

        first_scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_run_in, first_scope, first, start("a"))
            with anyio.fail_after(5):
                while not first.is_leader:
                    await anyio.sleep(0.01)
            await tg.start(second.run, start("b"))
            with anyio.fail_after(5):
                while second.leader != "a":
                    await anyio.sleep(0.01)
            assert second.leader_url == "http://127.0.0.1:8001" and not second.is_leader
            await anyio.sleep(1.5)  # renewals keep it: the TTL is 1 s
            assert first.is_leader and not second.is_leader and started == ["a"]
            first_scope.cancel()  # a clean stop: the lease is released
            with anyio.fail_after(2):
                while not second.is_leader:
                    await anyio.sleep(0.01)
            assert started == ["a", "b"] and not first.is_leader
            tg.cancel_scope.cancel()


async def _run_in(scope: anyio.CancelScope, lead: BillingLeader, start: Any) -> None:
    with scope:
        await lead.run(start)


async def test_a_holder_whose_lease_was_taken_stops(redis_server: RedisServer, group: str) -> None:
    async with nodes(redis_server.url, group, "a") as (a,):
        lead = leader(a, "a", 8001)

        async def nothing() -> None:
            pass

        lost: list[LeadershipLost] = []

        async def run() -> None:
            try:
                await lead.run(nothing)
            except LeadershipLost as exc:
                lost.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                while not lead.is_leader:
                    await anyio.sleep(0.01)
                redis.Redis.from_url(redis_server.url).set(lead.key, "b|http://elsewhere|x")  # say, after a pause
        assert len(lost) == 1 and not lead.is_leader
