"""The Redis store behind Redis Sentinel: the redis+sentinel:// URL, and a store that follows a failover.

The URL tests are pure. The others run real processes on 127.0.0.1 (tests.redis_fixture): a primary, a replica and
one Sentinel with quorum 1 and a 500 ms down-after, so that killing the primary (SIGKILL) promotes the replica
within a few seconds. They skip without redis-server, except under SMPPGW_REQUIRE_INTEROP=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from gateway._model import Message, MessageStatus, new_message_id
from gateway._redis import RedisStore, SentinelUrl, parse_sentinel_url
from gateway._store import Writes
from tests.redis_fixture import RedisSentinel, RedisServer, start_replica, unique_group


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


def message(**kw: Any) -> Message:
    fields: dict[str, Any] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                              "text": "hello", "created_at": 1.0, "expires_at": 1e12, "status": MessageStatus.QUEUED}
    fields.update(kw)
    return Message(**fields)


# ---- the URL -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://10.0.0.1:26379/gw", SentinelUrl((("10.0.0.1", 26379),), "gw")),
    ("redis+sentinel://s1:26380,s2,[::1]:26381/gw/3",
     SentinelUrl((("s1", 26380), ("s2", 26379), ("::1", 26381)), "gw", 3)),
    ("redis+sentinel://:p%40ss@s1:1/my%20gw", SentinelUrl((("s1", 1),), "my gw", password="p@ss")),
    ("redis+sentinel://app:pw@s1:1/gw/0?sentinel_password=spw",
     SentinelUrl((("s1", 1),), "gw", username="app", password="pw", sentinel_password="spw")),
    ("rediss+sentinel://s1:1/gw?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=true",
     SentinelUrl((("s1", 1),), "gw", ssl=True, ssl_ca_certs="/etc/ca.pem", ssl_check_hostname=True)),
])
def test_good_sentinel_urls(url: str, expected: SentinelUrl) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(("url", "error"), [
    ("redis://s1:1/gw", "expected a redis+sentinel:// or rediss+sentinel:// URL, got scheme 'redis'"),
    ("redis+sentinel:///gw", "a Sentinel URL needs at least one Sentinel host:port"),
    ("redis+sentinel://s1:26379", "a Sentinel URL needs the service name as its path: .../service_name[/db]"),
    ("redis+sentinel://s1:26379/", "a Sentinel URL needs the service name as its path: .../service_name[/db]"),
    ("redis+sentinel://s1:1/gw/x", "the path of a Sentinel URL is /service_name[/db] with a number as db, got '/gw/x'"),
    ("redis+sentinel://s1:1/gw/0/1", "the path of a Sentinel URL is /service_name[/db] with a number as db"),
    ("redis+sentinel://s1:0/gw", "bad Sentinel address 's1:0': the port must be 1 to 65535"),
    ("redis+sentinel://s1:x/gw", "bad Sentinel address 's1:x': the port must be 1 to 65535"),
    ("redis+sentinel://s1:1,,s2:1/gw", "bad Sentinel address '': the host is empty"),
    ("redis+sentinel://[::1/gw", "bad Sentinel address '[::1': expected [IPv6]:port"),
    ("redis+sentinel://pw@s1:1/gw", "the credentials of a Sentinel URL are user:password@ or :password@"),
    ("redis+sentinel://s1:1/gw?ssl_ca_certs=/ca.pem", "unknown query parameter 'ssl_ca_certs' in a redis+sentinel://"),
    ("redis+sentinel://s1:1/gw?password=x", "unknown query parameter 'password'"),
    ("redis+sentinel://s1:1/gw?sentinel_password=a&sentinel_password=b",
     "query parameter 'sentinel_password' given twice"),
    ("redis+sentinel://s1:1/gw?sentinel_password", "the query of a Sentinel URL is not name=value&..."),
    ("rediss+sentinel://s1:1/gw?ssl_check_hostname=yes", "ssl_check_hostname is true or false, got 'yes'"),
    ("redis+sentinel://s1:1/gw#x", "a Sentinel URL has no #fragment"),
])
def test_bad_sentinel_urls_name_what_is_wrong(url: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_sentinel_url(url)
    assert str(info.value).startswith(error)


def test_the_passwords_stay_out_of_the_repr() -> None:
    u = parse_sentinel_url("redis+sentinel://app:secret1@s1:1/gw?sentinel_password=secret2")
    assert "secret" not in repr(u)


def test_a_bad_sentinel_url_is_refused_when_the_store_is_made() -> None:
    with pytest.raises(ValueError, match="needs the service name"):
        RedisStore("redis+sentinel://127.0.0.1:26379", node="a")


# ---- through a Sentinel ------------------------------------------------------------------------------------


async def _wait_for(what: str, check: Any, timeout_s: float, detail: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:g} s; {detail()}")
        await anyio.sleep(0.05)


def _offset(server: RedisServer) -> int:
    """How far a server's replication stream goes (a primary's written, a replica's received)."""
    with redis.Redis(host="127.0.0.1", port=server.port) as client:
        return int(client.info("replication")["master_repl_offset"])


@dataclass
class Servers:
    primary: RedisServer
    replica: RedisServer | None
    sentinel: RedisSentinel


@contextmanager
def servers(tmp_path: Path, *, replica: bool) -> Iterator[Servers]:
    """A primary, a replica of it when asked, and a Sentinel watching it; all stopped when the block ends."""
    started: list[RedisServer | RedisSentinel] = []
    try:
        primary = RedisServer.start(tmp_path / "primary")
        started.append(primary)
        second = start_replica(tmp_path / "replica", primary) if replica else None
        if second is not None:
            started.append(second)
        sentinel = RedisSentinel.start(tmp_path / "sentinel", primary)
        started.append(sentinel)
        yield Servers(primary, second, sentinel)
    finally:
        for process in reversed(started):
            process.stop()


@pytest.mark.anyio
async def test_a_store_through_one_sentinel_commits_and_reads(tmp_path: Path) -> None:
    with servers(tmp_path, replica=False) as sv:
        store = RedisStore(sv.sentinel.url(), node="a", group=unique_group())
        msgs = [message() for _ in range(5)]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(store.run)
                await store.write(Writes(messages=msgs[:3]))
                await store.write(Writes(messages=msgs[3:]))
                assert [await store.aget(m.id) for m in msgs] == msgs
                assert [store.get(m.id) for m in msgs] == msgs  # the blocking client goes through the Sentinel too
                tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_the_store_follows_a_failover_without_a_restart(tmp_path: Path) -> None:
    with servers(tmp_path, replica=True) as sv:
        primary, replica, sentinel = sv.primary, sv.replica, sv.sentinel
        assert replica is not None
        assert sentinel.primary_address() == ("127.0.0.1", primary.port)
        store = RedisStore(sentinel.url(), node="a", group=unique_group(), wait_replicas=1, wait_timeout_ms=300,
                           retry_max_s=0.2)
        before = [message() for _ in range(10)]
        after = [message() for _ in range(10)]
        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                await tg.start(store.run)
                for m in before:
                    await store.write(Writes(messages=[m]))
                # WAIT 1 waited up to 300 ms for the replica on each commit; on a busy machine it can take longer, so
                # wait until it has everything: what the new primary must have is then known exactly.
                await _wait_for("the replica caught up", lambda: _offset(primary) == _offset(replica), 5)
                assert store.get(before[0].id) == before[0]  # the blocking client is connected to the old primary

                primary.kill()
                # Commits go on while the Sentinel notices and promotes: they wait, resent, until a primary answers.
                pendings = [store.commit_nowait(Writes(messages=[m])) for m in after[:5]]
                await _wait_for("the Sentinel promoted the replica",
                                lambda: sentinel.primary_address() == ("127.0.0.1", replica.port),
                                15, sentinel.log_tail)
                for p in pendings:
                    await p.done.wait()
                    p.result()
                for m in after[5:]:
                    await store.write(Writes(messages=[m]))
                assert store.is_open
                assert store.commit_retries > 0  # the outage was seen and ridden out
                assert [await store.aget(m.id) for m in before + after] == before + after
                assert [store.get(m.id) for m in before + after] == before + after
                tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_the_store_follows_a_switchover_to_the_replica(tmp_path: Path) -> None:
    # SENTINEL FAILOVER demotes a live primary: its clients are cut (or answered READONLY) and must go to the new one.
    with servers(tmp_path, replica=True) as sv:
        replica, sentinel = sv.replica, sv.sentinel
        assert replica is not None
        store = RedisStore(sentinel.url(), node="a", group=unique_group(), wait_replicas=1, wait_timeout_ms=300,
                           retry_max_s=0.2)
        msgs = [message() for _ in range(10)]
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(store.run)
                for m in msgs[:5]:
                    await store.write(Writes(messages=[m]))
                assert store.get(msgs[0].id) == msgs[0]
                redis.Redis(host="127.0.0.1", port=sentinel.port).sentinel_failover(sentinel.service)
                await _wait_for("the Sentinel switched to the replica",
                                lambda: sentinel.primary_address() == ("127.0.0.1", replica.port),
                                15, sentinel.log_tail)
                for m in msgs[5:]:
                    await store.write(Writes(messages=[m]))
                assert store.is_open
                assert [await store.aget(m.id) for m in msgs] == msgs
                assert [store.get(m.id) for m in msgs] == msgs
                new_primary = redis.Redis(host="127.0.0.1", port=replica.port)
                assert new_primary.info("replication")["role"] == "master"
                tg.cancel_scope.cancel()
