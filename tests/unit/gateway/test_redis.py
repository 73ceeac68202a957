"""The Redis store's own primitives for several nodes: the shared queue (streams, claims, reclaims, delayed retries),
compare-and-set record writes, receipts across nodes, exactly-once commits through outages, key layout and TTLs.

Two "nodes" are two RedisStore instances on one redis-server (tests.redis_fixture), each with its node name.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import redis

from gateway._cluster import ClusterStore
from gateway._model import Message, MessageStatus, new_message_id
from gateway._redis import (
    LIBRARY,
    PendingCommit,
    ReceiptHit,
    RedisStore,
    RedisUnavailable,
    RedisWrites,
    key_prefix,
)
from gateway._store import Doc, StoreClosed, Writes
from tests.redis_fixture import RedisServer, redis_server, unique_group

__all__ = ["redis_server"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
def group() -> str:
    return unique_group()


def message(status: MessageStatus = MessageStatus.QUEUED, **kw: Any) -> Message:
    fields: dict[str, Any] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                              "text": "hello", "created_at": 1.0, "expires_at": 1e12, "status": status}
    fields.update(kw)
    return Message(**fields)


@asynccontextmanager
async def nodes(url: str, group: str, *names: str, **kw: Any) -> AsyncIterator[list[RedisStore]]:
    stores = [RedisStore(url, node=n, group=group, **kw) for n in names]
    async with anyio.create_task_group() as tg:
        for s in stores:
            await tg.start(s.run)
        try:
            yield stores
        finally:
            tg.cancel_scope.cancel()


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


# ---- the shared queue ----------------------------------------------------------------------------------------


async def test_enqueue_goes_with_the_record_and_two_consumers_share_the_stream(redis_server: RedisServer,
                                                                               group: str) -> None:
    msgs = [message() for _ in range(40)]
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.ensure_group("sim")
        await a.commit(RedisWrites(messages=msgs, enqueue=[("sim", m.id) for m in msgs]))
        got_a = await a.claim("sim", "a", 25)
        got_b = await b.claim("sim", "b", 25)
        assert len(got_a) == 25 and len(got_b) == 15
        assert sorted(e.message_id for e in got_a + got_b) == sorted(m.id for m in msgs)  # each entry once
        assert await b.claim("sim", "b", 10) == []
        stats = await a.queue_statistics("sim")
        assert (stats.length, stats.pending, stats.consumers) == (40, 40, {"a": 25, "b": 15})
        # The outcome's record write and the ack commit together; an acked entry leaves the stream.
        await a.commit(RedisWrites(messages=[msgs[0]], ack=[("sim", e.entry_id) for e in got_a]))
        assert await b.ack("sim", [e.entry_id for e in got_b]) == 15
        stats = await a.queue_statistics("sim")
        assert (stats.length, stats.pending) == (0, 0)


async def test_claim_creates_the_group_from_the_start_of_the_stream(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a") as (a,):
        await a.commit(RedisWrites(messages=[m], enqueue=[("sim", m.id)]))  # before any consumer group exists
        (entry,) = await a.claim("sim", "a", 10)
        assert entry.message_id == m.id and entry.stream == "sim"


async def test_claim_records_takes_entries_with_their_records_in_one_call(redis_server: RedisServer,
                                                                        group: str) -> None:
    m1, m2 = message(), message(id="id:with%colon")
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        assert await a.claim_records("sim", "a", 10) == []  # no group yet: created from the stream's start
        await a.commit(RedisWrites(messages=[m1, m2], enqueue=[("sim", m1.id), ("sim", m2.id), ("sim", "ghost")]))
        m1.attempts = 2
        await a.commit(RedisWrites(messages=[m1]))  # version 2
        got = await a.claim_records("sim", "a", 10)
        assert [(e.stream, e.message_id, v) for e, v in got] == [("sim", m1.id, (m1, 2)), ("sim", m2.id, (m2, 1)),
                                                                  ("sim", "ghost", None)]
        # Claimed as XREADGROUP claims: the others do not get them, they stay pending for "a" until acked.
        assert await b.claim_records("sim", "b", 10) == [] and await b.claim("sim", "b", 10) == []
        stats = await a.queue_statistics("sim")
        assert (stats.pending, dict(stats.consumers)) == (3, {"a": 3})
        taken = await b.reclaim("sim", "b", 0, 10, only_from=["a"])
        assert sorted(e.entry_id for e in taken) == sorted(e.entry_id for e, _ in got)


async def test_claim_records_takes_at_most_count(redis_server: RedisServer, group: str) -> None:
    msgs = [message() for _ in range(5)]
    async with nodes(redis_server.url, group, "a") as (a,):
        await a.ensure_group("sim")
        await a.commit(RedisWrites(messages=msgs, enqueue=[("sim", m.id) for m in msgs]))
        first = await a.claim_records("sim", "a", 3)
        rest = await a.claim_records("sim", "a", 3)
        assert [e.message_id for e, _ in first + rest] == [m.id for m in msgs]


async def test_a_blocked_claim_returns_when_an_entry_arrives(redis_server: RedisServer, group: str) -> None:
    m = message()
    got: list[Any] = []
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.ensure_group("sim")

        async def claimer() -> None:
            got.extend(await a.claim("sim", "a", 10, block_ms=10_000))

        async with anyio.create_task_group() as tg:
            tg.start_soon(claimer)
            await anyio.sleep(0.05)
            await b.enqueue("sim", m.id)
        assert [e.message_id for e in got] == [m.id]


async def test_a_dead_consumers_entries_are_reclaimed(redis_server: RedisServer, group: str) -> None:
    msgs = [message() for _ in range(6)]
    async with nodes(redis_server.url, group, "a", "b", "c") as (a, b, c):
        await a.ensure_group("sim")
        await a.commit(RedisWrites(messages=msgs, enqueue=[("sim", m.id) for m in msgs]))
        dead = await a.claim("sim", "a", 3)  # node a claims, then dies without acking
        mine = await b.claim("sim", "b", 3)
        await b.heartbeat(60)
        await c.heartbeat(60)
        assert await c.live_nodes() == {"b", "c"}
        assert await c.dead_consumers("sim") == ["a"]
        taken = await c.reclaim("sim", "c", 0, 10, only_from=await c.dead_consumers("sim"))
        assert sorted(e.message_id for e in taken) == sorted(e.message_id for e in dead)  # b's stay with b
        stats = await c.queue_statistics("sim")
        assert stats.consumers == {"b": 3, "c": 3}  # XPENDING lists consumers that hold entries
        # XAUTOCLAIM takes from anyone idle long enough: b's entries, now.
        taken = await c.reclaim("sim", "c", 0, 10)
        assert {e.message_id for e in mine} <= {e.message_id for e in taken}


async def test_touch_keeps_entries_from_being_reclaimed(redis_server: RedisServer, group: str) -> None:
    msgs = [message(), message()]
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.ensure_group("sim")
        await a.commit(RedisWrites(messages=msgs, enqueue=[("sim", m.id) for m in msgs]))
        claimed = await a.claim("sim", "a", 2)
        await anyio.sleep(0.4)
        await a.touch("sim", "a", [claimed[0].entry_id])  # still working on the first one
        taken = await b.reclaim("sim", "b", 300, 10)
        assert [e.message_id for e in taken] == [claimed[1].message_id]


async def test_delayed_entries_move_to_the_stream_when_due(redis_server: RedisServer, group: str) -> None:
    m1, m2, m3 = message(), message(), message()
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.ensure_group("sim")
        await a.commit(RedisWrites(messages=[m1, m2], delay=[("sim", m1.id, 1000.0), ("sim", m2.id, 3000.0)]))
        await a.commit(RedisWrites(delay=[("sim", m3.id, 2000.0)]))  # a message not written in this commit
        assert await a.next_due("sim") == 1000.0
        assert await a.move_due("sim", 999.0) == 0 and await a.claim("sim", "a", 10) == []
        assert await b.move_due("sim", 2000.0) == 2
        assert [e.message_id for e in await a.claim("sim", "a", 10)] == [m1.id, m3.id]
        assert await a.next_due("sim") == 3000.0
        assert await a.move_due("sim", 1e9) == 1 and await a.move_due("sim", 1e9) == 0
        assert await a.next_due("sim") is None
        assert [e.message_id for e in await b.claim("sim", "b", 10)] == [m2.id]


async def test_concurrent_movers_move_each_entry_once(redis_server: RedisServer, group: str) -> None:
    msgs = [message() for _ in range(300)]
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.ensure_group("sim")
        await a.commit(RedisWrites(messages=msgs, delay=[("sim", m.id, float(i)) for i, m in enumerate(msgs)]))
        async with anyio.create_task_group() as tg:
            for store in (a, b) * 5:
                tg.start_soon(store.move_due, "sim", 1e9, 20)
            for _ in range(30):
                tg.start_soon(a.move_due, "sim", 1e9, 10)
        stats = await a.queue_statistics("sim")
        assert (stats.length, stats.delayed) == (300, 0)


# ---- compare-and-set -----------------------------------------------------------------------------------------


async def test_a_write_based_on_an_old_version_loses_to_the_newer_one(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        created = await a.commit(RedisWrites(messages=[m], expect={m.id: 0}))
        assert created.versions == {m.id: 1} and not created.conflicts
        again = await b.commit(RedisWrites(messages=[m], expect={m.id: 0}))  # create-only: it exists now
        assert again.conflicts[m.id].version == 1 and not again.versions
        stored = await b.aget_versioned(m.id)
        assert stored is not None and stored[1] == 1
        # Node b cancels the message (version 2); node a, still holding version 1, writes "submitted" and a retry.
        cancelled = stored[0]
        cancelled.set_status(MessageStatus.CANCELLED, 5.0, "cancelled by the API")
        assert (await b.commit(RedisWrites(messages=[cancelled], expect={m.id: 1}))).versions == {m.id: 2}
        m.set_status(MessageStatus.SUBMITTED, 6.0)
        lost = await a.commit(RedisWrites(messages=[m], expect={m.id: 1}, delay=[("sim", m.id, 10.0)],
                                          enqueue=[("sim", m.id)]))
        conflict = lost.conflicts[m.id]
        assert conflict.version == 2 and conflict.message is not None
        assert conflict.message.status is MessageStatus.CANCELLED
        got = await a.aget(m.id)
        assert got is not None and got.status is MessageStatus.CANCELLED
        stats = await a.queue_statistics("sim")
        assert (stats.length, stats.delayed) == (0, 0)  # the refused write's queue operations were skipped


async def test_a_nodes_own_writes_in_flight_do_not_conflict(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.commit(RedisWrites(messages=[m]))  # version 1
        # Two changes of node a, both based on version 1, in flight together (one commit or two).
        first = a.commit_nowait(RedisWrites(messages=[m], expect={m.id: 1}))
        second = a.commit_nowait(RedisWrites(messages=[m], expect={m.id: 1}))
        await second.done.wait()
        assert first.result().versions == {m.id: 2} and second.result().versions == {m.id: 3}
        # ... but node b, based on version 1 too, loses.
        assert (await b.commit(RedisWrites(messages=[m], expect={m.id: 1}))).conflicts[m.id].version == 3
        # Writes without `expect` always win (the Store protocol's plain upsert).
        assert (await b.commit(Writes(messages=[m]))).versions == {m.id: 4}


# ---- receipts across nodes -----------------------------------------------------------------------------------


async def test_a_receipt_finds_a_message_another_node_registered(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.commit(RedisWrites(messages=[m], smsc_ids=[("sim", "4f2a", m.id, 1)]))
        assert await b.alookup_smsc_id("sim", ["20266", "4f2a"]) == (m.id, 1)
        assert b.lookup_smsc_id("sim", ["4f2a"]) == (m.id, 1)
        assert await b.match_or_park("sim", ["4f2a"], b"pdu") == (m.id, 1)
        assert await b.aearly_receipts() == []  # a hit parks nothing


async def test_a_parked_receipt_is_returned_to_the_node_that_registers_its_id(redis_server: RedisServer,
                                                                              group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        parked = await b.match_or_park("sim", ["77", "0x4d"], b"deliver_sm", at=1234.5)
        assert isinstance(parked, int)
        assert [(e.id, e.smsc, e.at, e.pdu) for e in await a.aearly_receipts()] == [(parked, "sim", 1234.5,
                                                                                      b"deliver_sm")]
        other = await a.commit(RedisWrites(smsc_ids=[("other", "77", "x", 0)]))  # same key, another SMSC
        assert other.parked == ()
        result = await a.commit(RedisWrites(messages=[m], smsc_ids=[("sim", "0x4d", m.id, 2)]))
        (receipt,) = result.parked
        assert (receipt.id, receipt.smsc, receipt.pdu, receipt.message_id, receipt.part) == (
            parked, "sim", b"deliver_sm", m.id, 2)
        # It stays parked until the node that applied it says so, in the write of the receipt's outcome.
        await a.commit(RedisWrites(messages=[m], early_receipts_done=[receipt.id]))
        assert await a.aearly_receipts() == []
        again = await a.commit(RedisWrites(smsc_ids=[("sim", "77", m.id, 2)]))
        assert again.parked == ()


async def register(node: RedisStore, ids: list[str], i: int, returned: dict[str, int]) -> None:
    """Register message `i`'s SMSC id `k{i}` on `node`; note each parked receipt the commit hands back."""
    result = await node.commit(RedisWrites(smsc_ids=[("sim", f"k{i}", ids[i], 0)]))
    for p in result.parked:
        returned[p.message_id] = int(p.pdu[1:])


def each_matched_or_returned(ids: list[str], matched: dict[int, tuple[str, int]],
                             returned: dict[str, int]) -> None:
    """Receipt `r{i}` of message i was either matched or handed back to its registrar, never both or neither."""
    for i, mid in enumerate(ids):
        assert (matched.get(i) == (mid, 0)) != (returned.get(mid) == i), i


async def test_no_receipt_is_lost_between_parking_and_registering(redis_server: RedisServer, group: str) -> None:
    """Receipts race their submit_sm_resp on another node: each is either matched or handed to the registrar."""
    ids = [message().id for _ in range(150)]
    matched: dict[int, tuple[str, int]] = {}
    returned: dict[str, int] = {}
    async with nodes(redis_server.url, group, "a", "b") as (a, b):

        async def receipt(i: int) -> None:
            got = await b.match_or_park("sim", [f"k{i}"], f"r{i}".encode())
            if isinstance(got, tuple):
                matched[i] = got

        async with anyio.create_task_group() as tg:
            for i in range(len(ids)):
                tg.start_soon(receipt, i)
                tg.start_soon(register, a, ids, i, returned)
    each_matched_or_returned(ids, matched, returned)
    assert len(matched) + len(returned) == len(ids)


# ---- commits through outages ---------------------------------------------------------------------------------


async def test_a_commit_is_applied_once_when_resent(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a") as (a,):
        await a.ensure_group("sim")
        writes = RedisWrites(messages=[m], enqueue=[("sim", m.id)], early_receipts=[("sim", b"x")])
        a._seq += 1
        args, _, _ = a._build([(writes, PendingCommit())], a._seq)
        first = await a._call_commit(args)
        second = await a._call_commit(args)  # the reply was lost: the same commit again
        assert first == second
        stats = await a.queue_statistics("sim")
        assert stats.length == 1 and len(await a.aearly_receipts()) == 1 and await a.acount() == (1, 1)
        assert (await a.aget_versioned(m.id) or (None, 0))[1] == 1


async def test_writes_wait_through_a_redis_restart_and_land_once(tmp_path: Path, group: str) -> None:
    server = RedisServer.start(tmp_path / "redis")
    try:
        m1, m2 = message(), message()
        async with nodes(server.url, group, "a", retry_max_s=0.05, socket_timeout_s=2.0) as (a,):
            await a.write(Writes(messages=[m1]))
            server.kill()
            done = a.write_nowait(Writes(messages=[m2], smsc_ids=[("sim", "1", m2.id, 0)]))
            with anyio.fail_after(10):
                while a.is_open:
                    await anyio.sleep(0.01)
            assert not done.is_set()
            server.launch()
            with anyio.fail_after(20):
                await done.wait()
            assert a.is_open
            assert await a.aget(m2.id) == m2 and await a.alookup_smsc_id("sim", ["1"]) == (m2.id, 0)
            assert await a.acount() == (2, 2)
            assert a.commit_retries > 0
    finally:
        server.stop()


async def test_a_commit_in_flight_at_shutdown_is_finished(redis_server: RedisServer, group: str) -> None:
    msgs = [message() for _ in range(5)]
    store = RedisStore(redis_server.url, node="a", group=group)
    pendings = []
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for m in msgs:
            pendings.append(store.commit_nowait(Writes(messages=[m])))
            await anyio.sleep(0)  # the committer takes what is there and sends it
        tg.cancel_scope.cancel()
    assert [p.result().versions for p in pendings] == [{m.id: 1} for m in msgs]


async def test_shutdown_while_redis_is_down_ends_in_time(tmp_path: Path, group: str) -> None:
    server = RedisServer.start(tmp_path / "redis")
    store = RedisStore(server.url, node="a", group=group, close_timeout_s=0.3, retry_max_s=0.05)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(store.run)
                server.kill()
                pending = store.commit_nowait(Writes(messages=[message()]))
                while store.is_open:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        with pytest.raises(StoreClosed):
            pending.result()
    finally:
        server.stop()


async def test_the_functions_are_loaded_again_when_redis_lost_them(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a") as (a,):
        raw(redis_server).function_delete(LIBRARY)
        await a.write(Writes(messages=[m]))
        assert a.get(m.id) == m


async def test_wait_replicas_counts_commits_no_replica_took(redis_server: RedisServer, group: str) -> None:
    async with nodes(redis_server.url, group, "a", wait_replicas=1, wait_timeout_ms=5) as (a,):
        await a.write(Writes(messages=[message()]))
        assert a.under_replicated_commits == 1


# ---- reads, key layout, TTLs ---------------------------------------------------------------------------------


async def test_async_twins_answer_as_the_blocking_reads(redis_server: RedisServer, group: str) -> None:
    m, f = message(), message(MessageStatus.DELIVERED, callback_pending=True)
    async with nodes(redis_server.url, group, "a") as (a,):
        await a.write(Writes(messages=[m, f], smsc_ids=[("sim", "9", m.id, 0)]))
        assert await a.aget(m.id) == a.get(m.id) == m
        assert await a.aget_many([m.id, "nope", f.id]) == [m, None, f]
        assert a.messages_by_ids([f.id, "nope"]) == [f]
        assert [x async for x in a.aopen_messages()] == list(a.open_messages()) == [m]
        assert [x async for x in a.acallback_pending()] == list(a.callback_pending()) == [f]
        assert await a.alookup_smsc_id("sim", ["9"]) == a.lookup_smsc_id("sim", ["9"])
        assert await a.acount() == a.count() == (2, 1)
        assert a.sync_reads > 0


async def test_open_messages_pages_through_many(redis_server: RedisServer, group: str) -> None:
    msgs = [message() for _ in range(2500)]
    async with nodes(redis_server.url, group, "a") as (a,):
        await a.write(Writes(messages=msgs))
        assert {x.id for x in a.open_messages()} == {m.id for m in msgs}


async def test_keys_carry_the_group_hash_tag_and_escape_separators(redis_server: RedisServer, group: str) -> None:
    assert key_prefix("smppgw", "eu-1") == "smppgw:{eu-1}:"
    with pytest.raises(ValueError):
        key_prefix("smppgw", "a}b")
    m1, m2 = message(), message()
    async with nodes(redis_server.url, group, "a") as (a,):
        # "a:b" + "c" and "a" + "b:c" must be two keys.
        await a.write(Writes(smsc_ids=[("a:b", "c", m1.id, 0), ("a", "b:c", m2.id, 0)]))
        assert a.lookup_smsc_id("a:b", ["c"]) == (m1.id, 0) and a.lookup_smsc_id("a", ["b:c"]) == (m2.id, 0)
    keys = {k.decode() for k in raw(redis_server).scan_iter(match=f"smppgw:{{{group}}}:*")}
    assert f"smppgw:{{{group}}}:c:a%3Ab:c" in keys and f"smppgw:{{{group}}}:c:a:b%3Ac" in keys


async def test_a_batch_of_receipts_matches_and_parks_in_one_call(redis_server: RedisServer, group: str) -> None:
    m1, m2 = message(), message(id="id:with%colon")
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        await a.commit(RedisWrites(messages=[m1, m2], smsc_ids=[("sim", "k1", m1.id, 0), ("sim", "k:2", m2.id, 1),
                                                               ("sim", "k3", "gone", 0)]))
        m1.attempts = 3
        await a.commit(RedisWrites(messages=[m1]))  # version 2
        assert await b.match_or_park_many([]) == []
        got = await b.match_or_park_many([("sim", ["x", "k1"], b"r1"), ("sim", ["u1", "u2"], b"r2"),
                                          ("sim", ["k:2"], b"r3"), ("other", ["k1"], b"r4"),
                                          ("sim", ["k3"], b"r5")], at=1234.5)
        hit1, parked1, hit2, parked2, gone = got
        # A hit comes with the record as stored and its version (the compare-and-set needs it), ids escaped or not.
        assert hit1 == ReceiptHit(m1.id, 0, m1, 2) and hit2 == ReceiptHit(m2.id, 1, m2, 1)
        assert gone == ReceiptHit("gone", 0, None, 0)  # registered, but its record is gone (expired)
        assert isinstance(parked1, int) and isinstance(parked2, int)
        assert [(e.id, e.smsc, e.at, e.pdu) for e in await a.aearly_receipts()] == [
            (parked1, "sim", 1234.5, b"r2"), (parked2, "other", 1234.5, b"r4")]


async def test_a_hits_record_is_decoded_when_read(redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a") as (a,):
        await a.commit(RedisWrites(messages=[m], smsc_ids=[("sim", "k1", m.id, 0)]))
        (hit,) = await a.match_or_park_many([("sim", ["k1"], b"r1")])
        assert isinstance(hit, ReceiptHit) and (hit.message_id, hit.part, hit.version) == (m.id, 0, 1)
        assert hit._record is None  # a node that holds the message never decodes the stored one
        assert hit.record == m and hit.record is hit.record


async def test_receipts_parked_by_a_batch_go_to_the_registering_commit_and_later_ones_hit(
        redis_server: RedisServer, group: str) -> None:
    m = message()
    async with nodes(redis_server.url, group, "a", "b") as (a, b):
        # Two receipts of one message in one batch: parking the first is no registration, the second parks too.
        first = await b.match_or_park_many([("sim", ["77", "0x4d"], b"enroute"), ("sim", ["77", "0x4d"], b"delivrd")])
        assert all(isinstance(x, int) for x in first)
        result = await a.commit(RedisWrites(messages=[m], smsc_ids=[("sim", "0x4d", m.id, 2)]))
        assert sorted((p.id, p.pdu, p.message_id, p.part) for p in result.parked) == [
            (first[0], b"enroute", m.id, 2), (first[1], b"delivrd", m.id, 2)]
        # After the registration, a receipt of the same key hits, parked ones before it in its batch or not.
        got = await b.match_or_park_many([("sim", ["nope"], b"other"), ("sim", ["77", "0x4d"], b"again")])
        assert isinstance(got[0], int) and got[1] == ReceiptHit(m.id, 2, m, 1)


async def test_no_receipt_is_lost_between_batched_parking_and_registering(redis_server: RedisServer,
                                                                          group: str) -> None:
    """As above, with the receipts resolved ten at a time."""
    ids = [message().id for _ in range(150)]
    matched: dict[int, tuple[str, int]] = {}
    returned: dict[str, int] = {}
    async with nodes(redis_server.url, group, "a", "b") as (a, b):

        async def receipts(first: int) -> None:
            batch = range(first, min(first + 10, len(ids)))
            got = await b.match_or_park_many([("sim", [f"k{i}"], f"r{i}".encode()) for i in batch])
            for i, hit in zip(batch, got, strict=True):
                if isinstance(hit, ReceiptHit):
                    matched[i] = (hit.message_id, hit.part)

        async with anyio.create_task_group() as tg:
            for i in range(len(ids)):
                if i % 10 == 0:
                    tg.start_soon(receipts, i)
                tg.start_soon(register, a, ids, i, returned)
    each_matched_or_returned(ids, matched, returned)


async def test_a_batch_redis_does_not_answer_is_an_error_to_retry(tmp_path: Path, group: str) -> None:
    server = RedisServer.start(tmp_path / "redis")
    try:
        async with nodes(server.url, group, "a", socket_timeout_s=2.0, close_timeout_s=0.2) as (a,):
            raw(server).function_delete(LIBRARY)  # lost with a restart without the AOF: loaded again
            assert isinstance((await a.match_or_park_many([("sim", ["1"], b"p")]))[0], int)
            server.kill()
            with pytest.raises(RedisUnavailable):
                await a.match_or_park_many([("sim", ["1"], b"p")])
    finally:
        server.stop()


async def test_transient_data_expires(redis_server: RedisServer, group: str) -> None:
    q, f = message(), message(MessageStatus.DELIVERED)
    async with nodes(redis_server.url, group, "a", receipt_wait_s=3600, idempotency_ttl_s=600, final_ttl_s=86400,
                     early_receipt_ttl_s=120) as (a,):
        from gateway._store import IdempotencyRecord

        await a.write(Writes(messages=[q, f], smsc_ids=[("sim", "1", q.id, 0)],
                             idempotency=[IdempotencyRecord("acme", "k", "h", (q.id,), 1.0)]))
        await a.match_or_park("sim", ["2"], b"p")
    r = raw(redis_server)
    p = key_prefix("smppgw", group)
    assert 3500 < r.ttl(f"{p}c:sim:1") <= 3600
    assert 500 < r.ttl(f"{p}i:acme:k") <= 600
    assert 80 < r.ttl(f"{p}p:sim:2") <= 120
    assert 86000 < r.ttl(f"{p}m:{f.id}") <= 86400
    assert r.ttl(f"{p}m:{q.id}") == -1  # not final: kept


async def test_early_receipts_older_than_their_ttl_are_trimmed(redis_server: RedisServer, group: str) -> None:
    async with nodes(redis_server.url, group, "a", early_receipt_ttl_s=100) as (a,):
        now = time.time()
        await a.match_or_park("sim", ["1"], b"old", at=now - 500)
        await a.match_or_park("sim", ["2"], b"new", at=now)
        assert [e.pdu for e in await a.aearly_receipts()] == [b"new"]


async def test_reads_need_an_open_store(redis_server: RedisServer, group: str) -> None:
    store = RedisStore(redis_server.url, node="a", group=group)
    with pytest.raises(StoreClosed):
        store.get("x")
    with pytest.raises(StoreClosed):
        await store.aget("x")
    store.open_sync()  # tools read without running the store
    assert store.get("x") is None


async def test_blocking_reads_can_be_forbidden_inside_the_loop(redis_server: RedisServer, group: str) -> None:
    async with nodes(redis_server.url, group, "a", allow_sync_reads=False) as (a,):
        with pytest.raises(RuntimeError, match="async twin"):
            a.get("x")
        assert await a.aget("x") is None


# ---- ClusterStore on this store ------------------------------------------------------------------------------


async def test_cluster_write_nowait_calls_share_a_commit_and_keep_their_order(redis_server: RedisServer,
                                                                             group: str) -> None:
    m1, m2 = message(), message()
    async with nodes(redis_server.url, group, "a") as (a,):
        cs = ClusterStore(a)
        async with anyio.create_task_group() as tg:
            await tg.start(cs.settle_loop)
            first = cs.write_nowait(Writes(messages=[m1]))
            assert cs.write_nowait(Writes(messages=[m2])) is first  # queued together: one commit, one event
            # Another commit queued in between: a later write goes after it, not into the earlier commit.
            other = a.commit_nowait(Writes(messages=[msgspec.structs.replace(m1, reference="other")]))
            last = cs.write_nowait(Writes(messages=[msgspec.structs.replace(m1, reference="last")]))
            assert last is not first
            # A write naming, for a message, another version to compare with than the queued one does not join it.
            named = cs.write_nowait(RedisWrites(messages=[m2], expect={m1.id: 5}))
            assert named is not last
            # Early receipts' ids are returned per write: such a write has a commit of its own.
            early = cs.write_nowait(Writes(early_receipts=[("sim", b"x")]))
            after = cs.write_nowait(Writes(messages=[m2]))
            assert early is not named and after is not early
            for done in (first, last, named, early, after):  # settled in the order queued
                await done.wait()
            tg.cancel_scope.cancel()
        assert other.result().versions == {m1.id: 2} and cs.conflicts == 0
        stored = await a.aget_versioned(m1.id)
        assert stored is not None and stored[0].reference == "last" and stored[1] == 3 == cs.versions[m1.id]
        assert cs.versions[m2.id] == 3


async def test_cluster_writes_sharing_a_commit_ack_each_entry_once(redis_server: RedisServer, group: str) -> None:
    msgs = [message() for _ in range(3)]
    async with nodes(redis_server.url, group, "a") as (a,):
        cs = ClusterStore(a)
        async with anyio.create_task_group() as tg:
            await tg.start(cs.settle_loop)
            await a.ensure_group("sim")
            await a.commit(RedisWrites(messages=msgs, enqueue=[("sim", m.id) for m in msgs]))
            for entry, versioned in await a.claim_records("sim", "a", 10):
                assert versioned is not None
                cs.entries[entry.message_id] = entry
                cs.versions[entry.message_id] = versioned[1]
            events = set()
            for m in msgs:  # submitted, then final: the first of the two writes acks the entry
                m.set_status(MessageStatus.SUBMITTED, 2.0)
                events.add(cs.write_nowait(Writes(messages=[m])))
                m.set_status(MessageStatus.DELIVERED, 3.0)
                events.add(cs.write_nowait(Writes(messages=[m])))
            (done,) = events
            await done.wait()
            tg.cancel_scope.cancel()
        stats = await a.queue_statistics("sim")
        assert (stats.length, stats.pending, cs.entries) == (0, 0, {})
        assert all(cs.versions[m.id] == 3 for m in msgs) and cs.conflicts == 0


async def test_adoc_many_reads_documents_in_one_call_in_order(redis_server: RedisServer, group: str) -> None:
    async with nodes(redis_server.url, group, "a") as (a,):
        docs = [Doc("mo_part", f"p{i}", "447900000001", "84001", "pending", None, 1.0 + i, b"body%d" % i)
                for i in range(3)]
        await a.commit(RedisWrites(docs=docs))
        got = await a.adoc_many("mo_part", ["p2", "nope", "p0"])
        assert got == [docs[2], None, docs[0]]
        assert await a.adoc_many("mo_part", []) == []
        assert got[0] == await a.adoc("mo_part", "p2")
