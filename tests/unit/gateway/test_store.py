"""The SQLite store: durability, group commit, the lookups the gateway needs."""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

import anyio
import pytest

from gateway._model import Message, MessageStatus, new_message_id
from gateway._store import (
    SCHEMA_VERSION,
    IdempotencyRecord,
    SqliteStore,
    StoreClosed,
    StoreVersionError,
    Writes,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


def message(status: MessageStatus = MessageStatus.QUEUED, **kw: object) -> Message:
    fields: dict[str, object] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                                 "text": "hello", "created_at": 1.0, "expires_at": 1e12, "status": status}
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


async def test_written_messages_survive_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    store = SqliteStore(db)
    msgs = [message() for _ in range(3)] + [message(MessageStatus.DELIVERED)]
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        await store.write(Writes(messages=msgs))
        tg.cancel_scope.cancel()
    again = SqliteStore(db)
    again.open_sync()
    assert again.get(msgs[0].id) == msgs[0]
    assert {m.id for m in again.open_messages()} == {m.id for m in msgs[:3]}


def schema_of(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()[0])


def test_an_older_database_opens_and_is_marked_with_this_schema(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    SqliteStore(db).open_sync()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET v = '1' WHERE k = 'schema_version'")  # as version 1 left it
    store = SqliteStore(db)
    store.open_sync()
    store._close()
    assert schema_of(db) == SCHEMA_VERSION == "2"


def test_a_database_of_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    SqliteStore(db).open_sync()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET v = '3' WHERE k = 'schema_version'")
    with pytest.raises(StoreVersionError, match=r"gw\.db: schema_version 3 was written by a newer smppgw.*schema 2"):
        SqliteStore(db).open_sync()
    assert schema_of(db) == "3"


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        async with anyio.create_task_group() as writers:
            for _ in range(500):
                writers.start_soon(store.write, Writes(messages=[message()]))
        stats = store.statistics()
        assert stats.rows_written == 500
        assert stats.commits < 100  # group commit: many writers per fsync
        tg.cancel_scope.cancel()


async def test_a_message_written_twice_in_one_batch_keeps_its_last_state(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    m = message()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        store.write_nowait(Writes(messages=[m]))
        m2 = message(id=m.id, status=MessageStatus.SUBMITTED)
        await store.write(Writes(messages=[m2]))
        got = store.get(m.id)
        assert got is not None and got.status is MessageStatus.SUBMITTED
        tg.cancel_scope.cancel()


async def test_lookups(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    m = message(callback_pending=True, status=MessageStatus.DELIVERED)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        rows = await store.write(Writes(
            messages=[m],
            smsc_ids=[("sim", "12345", m.id, 0), ("sim", "abc", m.id, 1)],
            idempotency=[IdempotencyRecord("acme", "k1", "hash", (m.id,), 1.0)],
            early_receipts=[("sim", b"\x00\x01")],
        ))
        assert len(rows) == 1
        assert store.lookup_smsc_id("sim", ["nope", "abc"]) == (m.id, 1)
        assert store.lookup_smsc_id("other", ["12345"]) is None  # ids are per SMSC
        rec = store.find_idempotency("acme", "k1")
        assert rec is not None and rec.message_ids == (m.id,) and rec.body_hash == "hash"
        assert store.find_idempotency("acme", "k2") is None
        assert [x.id for x in store.callback_pending()] == [m.id]
        early = store.early_receipts()
        assert [(e.id, e.smsc, e.pdu) for e in early] == [(rows[0], "sim", b"\x00\x01")]
        await store.write(Writes(early_receipts_done=[rows[0]]))
        assert store.early_receipts() == []
        tg.cancel_scope.cancel()


async def test_pending_writes_are_committed_on_shutdown(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    store = SqliteStore(db, commit_interval_s=10.0)  # would wait 10 s before committing
    m = message()
    bulks = bulk_writes()  # the bulk lane (Rule 4) needs several commits for them: all are made on the way out
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        store.write_nowait(Writes(messages=[m]))
        for msgs in bulks:
            tg.start_soon(partial(store.write, Writes(messages=msgs), bulk=True))
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    again = SqliteStore(db)
    again.open_sync()
    assert again.get(m.id) is not None
    assert sum(1 for _ in again.open_messages()) == 1 + 1200


async def test_writing_to_a_closed_store_raises(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    with pytest.raises(StoreClosed):
        await store.write(Writes(messages=[message()]))


async def test_clear_callbacks_updates_the_column_and_reads_follow_it(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    done = message(MessageStatus.DELIVERED, callback_pending=True)
    waiting = message(MessageStatus.DELIVERED, callback_pending=True)
    store = SqliteStore(path)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        await store.write(Writes(messages=[done, waiting]))
        await store.clear_callbacks([done]).wait()
        got = store.get(done.id)
        assert got is not None and not got.callback_pending and got.status is MessageStatus.DELIVERED
        assert [m.id for m in store.callback_pending()] == [waiting.id]
        tg.cancel_scope.cancel()
    reopened = SqliteStore(path)  # durable: a restart sends only the callback still pending
    reopened.open_sync()
    assert [m.id for m in reopened.callback_pending()] == [waiting.id]
    again = reopened.get(done.id)
    assert again is not None and not again.callback_pending


@pytest.mark.parametrize("writer", ["inline", "process"])
async def test_cleared_callbacks_start_no_commit_but_ride_the_next_one_or_the_lazy_flush(
        tmp_path: Path, writer: str) -> None:
    store = SqliteStore(tmp_path / "gw.db", writer=writer)
    store.lazy_flush_s = 0.3
    a, b = message(MessageStatus.DELIVERED, callback_pending=True), message(MessageStatus.DELIVERED,
                                                                            callback_pending=True)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        await store.write(Writes(messages=[a, b]))
        commits = store.statistics().commits
        done = store.clear_callbacks([a])
        await anyio.sleep(0.05)
        assert not done.is_set() and store.statistics().commits == commits  # no commit of its own
        await store.write(Writes(messages=[message()]))  # the next commit takes it along
        assert done.is_set() and {m.id for m in store.callback_pending()} == {b.id}
        done = store.clear_callbacks([b])
        with anyio.fail_after(5):
            await done.wait()  # alone, it is committed within lazy_flush_s
        assert list(store.callback_pending()) == []
        await store.write(Writes())  # an empty write is a barrier: it returns once a commit has run
        tg.cancel_scope.cancel()


# ---- the bulk lane (Rule 4) ------------------------------------------------------------------------------


def bulk_writes(n: int = 3, size: int = 400) -> list[list[Message]]:
    return [[message() for _ in range(size)] for _ in range(n)]


async def test_bulk_writes_commit_a_few_hundred_messages_at_a_time_and_later_writes_go_first(
        tmp_path: Path) -> None:
    from gateway._store import BULK_PER_COMMIT

    assert 400 <= BULK_PER_COMMIT < 800  # two writes of 400 never share a commit
    store = SqliteStore(tmp_path / "gw.db", commit_interval_s=0.05)  # all four are waiting at the first commit
    bulks = bulk_writes()
    ordinary = message(MessageStatus.SUBMITTED)
    finished: list[str] = []

    async def write(name: str, writes: Writes, bulk: bool) -> None:
        assert await store.write(writes, bulk=bulk) == []
        finished.append(name)

    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        commits = store.statistics().commits
        async with anyio.create_task_group() as writers:
            for n, msgs in enumerate(bulks):
                writers.start_soon(write, f"bulk {n}", Writes(messages=msgs), True)
            writers.start_soon(write, "ordinary", Writes(messages=[ordinary]), False)
        # The ordinary write, made last, rode the first commit with the oldest bulk write; the others followed,
        # one commit each, in the order they were made.
        assert set(finished[:2]) == {"ordinary", "bulk 0"} and finished[2:] == ["bulk 1", "bulk 2"]
        assert store.statistics().commits - commits == 3
        assert all(store.get(m.id) == m for msgs in bulks for m in msgs)
        assert store.get(ordinary.id) == ordinary
        tg.cancel_scope.cancel()


async def test_an_empty_write_waits_for_every_bulk_write_made_before_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", commit_interval_s=0.05)
    bulks = bulk_writes()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for msgs in bulks:
            tg.start_soon(partial(store.write, Writes(messages=msgs), bulk=True))
        await anyio.sleep(0)  # they are in the lane
        assert store.statistics().pending_writes == 1200
        await store.write(Writes())
        assert all(store.get(m.id) is not None for msgs in bulks for m in msgs)
        assert store.statistics().pending_writes == 0
        tg.cancel_scope.cancel()


async def test_a_bulk_write_takes_no_early_receipts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        with pytest.raises(ValueError, match="early receipts"):
            await store.write(Writes(early_receipts=[("sim", b"pdu")]), bulk=True)
        tg.cancel_scope.cancel()
