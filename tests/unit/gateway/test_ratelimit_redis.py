"""The shared token bucket: two limiters ("two nodes") on one Redis hold an account's rate together.

The oracle is gateway._ratelimit.AccountRateLimiter, one bucket in one process: fed the same sequence of
(time, n), the two shared limiters together must make exactly its decisions. Time is a fake clock handed to the
script as an argument, so no assertion depends on how fast the test runs.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import redis.asyncio

from gateway._config import AccountConfig
from gateway._ratelimit import AccountRateLimiter
from gateway._ratelimit_redis import SharedRateLimiter
from gateway._redis import RedisStore
from tests.conftest import ManualClock
from tests.redis_fixture import RedisServer, redis_server, unique_group

__all__ = ["redis_server"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


def account(rate: float | None, burst: int | None = None, account_id: str = "acme") -> AccountConfig:
    return AccountConfig(id=account_id, rate_limit_per_s=rate, rate_limit_burst=burst)


@asynccontextmanager
async def two_nodes(server: RedisServer, clock: ManualClock | None) -> AsyncIterator[tuple[SharedRateLimiter, ...]]:
    """Two limiters on two clients of one Redis, sharing a deployment's keys."""
    prefix = f"smppgw:{{{unique_group()}}}:"
    clients = [redis.asyncio.Redis.from_url(server.url) for _ in range(2)]
    try:
        yield tuple(SharedRateLimiter(c, key_prefix=prefix, clock=clock) for c in clients)
    finally:
        for c in clients:
            await c.aclose()


async def test_two_nodes_admit_what_one_bucket_would(redis_server: RedisServer) -> None:
    clock = ManualClock(1000.0)
    oracle = AccountRateLimiter(clock)
    acc = account(50.0, 20)
    rng = random.Random(3)
    decisions: list[tuple[float, float]] = []
    async with two_nodes(redis_server, clock) as nodes:
        for _ in range(3000):
            clock.now += rng.choice([0.0, 0.001, 0.005, 0.02, 0.1])
            n = rng.choice([1, 1, 1, 2, 5, 30])
            shared = await nodes[rng.randrange(2)].take(acc, n)
            decisions.append((shared, oracle.take(acc, n)))
        admitted = nodes[0].admitted + nodes[1].admitted
        assert nodes[0].admitted > 100 and nodes[1].admitted > 100  # both nodes took their share
    assert [s for s, _ in decisions] == [o for _, o in decisions]  # the same admissions and the same waits
    assert admitted == oracle.admitted
    assert 0 < oracle.refused < 3000


async def test_the_rate_holds_across_nodes_over_time(redis_server: RedisServer) -> None:
    clock = ManualClock(1000.0)
    acc = account(10.0, 10)
    admitted = 0
    async with two_nodes(redis_server, clock) as (a, b):
        for step in range(2000):  # 20 simulated seconds, a request every 10 ms, alternating nodes
            clock.now = 1000.0 + step * 0.01
            if await (a if step % 2 else b).take(acc, 1) == 0.0:
                admitted += 1
    assert 10 + 10 * 19.99 - 1 <= admitted <= 10 + 10 * 20  # the burst, then 10 a second in total


async def test_a_batch_larger_than_the_burst_leaves_a_debt_for_every_node(redis_server: RedisServer) -> None:
    clock = ManualClock(1000.0)
    acc = account(10.0, 10)
    async with two_nodes(redis_server, clock) as (a, b):
        assert await a.take(acc, 30) == 0.0  # admitted from a full bucket: 20 tokens of debt
        assert await b.take(acc, 1) == pytest.approx(2.1)  # (1 - (-20)) / 10
        clock.now += 2.1
        assert await b.take(acc, 1) == 0.0
        assert (a.admitted, a.refused, b.admitted, b.refused) == (1, 0, 1, 1)


async def test_a_changed_rate_starts_a_full_bucket(redis_server: RedisServer) -> None:
    clock = ManualClock(1000.0)
    async with two_nodes(redis_server, clock) as (a, b):
        assert await a.take(account(5.0, 5), 5) == 0.0
        assert await b.take(account(5.0, 5), 1) > 0.0
        assert await b.take(account(6.0, 5), 5) == 0.0  # a reload changed the rate
        assert await a.take(account(6.0, 5), 1) > 0.0


async def test_accounts_have_buckets_of_their_own(redis_server: RedisServer) -> None:
    clock = ManualClock(1000.0)
    async with two_nodes(redis_server, clock) as (a, b):
        assert await a.take(account(1.0, 1, "one"), 1) == 0.0
        assert await b.take(account(1.0, 1, "two"), 1) == 0.0
        assert await b.take(account(1.0, 1, "one"), 1) == pytest.approx(1.0)
        assert a.statistics().accounts == 1 and b.statistics().accounts == 2


async def test_an_unlimited_account_is_always_admitted(redis_server: RedisServer) -> None:
    async with two_nodes(redis_server, ManualClock(1000.0)) as (a, _):
        for _ in range(100):
            assert await a.take(account(None), 1000) == 0.0
        stats = a.statistics()
        assert (stats.admitted, stats.refused, stats.accounts) == (100, 0, 0)


async def test_redis_time_is_the_clock_when_none_is_given(redis_server: RedisServer) -> None:
    acc = account(0.001, 2)  # a token every 1000 s: nothing refills during the test
    async with two_nodes(redis_server, None) as (a, b):
        assert await a.take(acc, 1) == 0.0
        assert await b.take(acc, 1) == 0.0
        wait = await a.take(acc, 1)
        assert 900.0 < wait <= 1000.0  # generous: some milliseconds of real time refilled


async def test_the_store_hands_its_client_and_prefix_to_the_limiter(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, node="a", group=unique_group())
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        limiter = SharedRateLimiter(store.client, key_prefix=store.prefix, clock=ManualClock(1000.0))
        assert await limiter.take(account(1.0, 1), 1) == 0.0
        assert await limiter.take(account(1.0, 1), 1) == pytest.approx(1.0)
        keys = [k async for k in store.client.scan_iter(match=store.prefix.replace("{", "\\{").replace("}", "\\}") + "rl:*")]
        assert keys == [f"{store.prefix}rl:acme".encode()]
        tg.cancel_scope.cancel()


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert [SharedRateLimiter.retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == [1, 1, 2, 60]
