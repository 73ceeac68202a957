"""The store contract: every test runs on SqliteStore (in tmp_path; its SQL in the daemon and in a writer process)
and on RedisStore (against a redis-server the tests start on 127.0.0.1, tests.redis_fixture), and all must answer
the same.

What the contract holds: `write()` returns only when its rows are durable (they survive the storage going down
hard: SIGKILL of redis-server, which runs with appendfsync always); `write_nowait()`'s event is set then; every
read of the Store protocol (get, find_idempotency, lookup_smsc_id, open_messages, callback_pending,
early_receipts, doc, docs, docs_due, ledger) means what SqliteStore means by it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway._model import Message, MessageStatus, new_message_id
from gateway._redis import RedisStore
from gateway._store import (
    Doc,
    IdempotencyRecord,
    LedgerEntry,
    LedgerOutcome,
    SqliteStore,
    Store,
    StoreClosed,
    Writes,
)
from tests.redis_fixture import RedisServer, redis_server, unique_group

__all__ = ["redis_server"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """redis.asyncio runs on asyncio only (the daemon runs on asyncio with uvloop)."""
    return ("asyncio", {"use_uvloop": True})


AnyStore = SqliteStore | RedisStore


@dataclass
class Backend:
    """How to open a store on one storage, and how to take that storage down hard and back."""

    name: str
    new: Callable[..., AnyStore]
    crash: Callable[[], None]

    def mo(self, store: AnyStore, mo_id: str) -> tuple[float, bytes] | None:
        """An MO record as stored (`Writes.mo` has no read in the protocol; each backend has its own)."""
        if isinstance(store, RedisStore):
            return store.mo(mo_id)
        row = store._read().execute("SELECT at, record FROM mo WHERE id = ?", (mo_id,)).fetchone()
        return None if row is None else (float(row[0]), bytes(row[1]))


@pytest.fixture(params=["sqlite", "sqlite-process", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "gw.db"
        return Backend("sqlite", lambda **kw: SqliteStore(path, **kw), lambda: None)
    if request.param == "sqlite-process":  # the SQL in a writer process of its own (store.writer process)
        path = tmp_path / "gw.db"
        return Backend("sqlite-process", lambda **kw: SqliteStore(path, writer="process", **kw), lambda: None)
    server: RedisServer = request.getfixturevalue("redis_server")
    group = unique_group()
    return Backend("redis", lambda **kw: RedisStore(server.url, node="n1", group=group, **kw), server.restart)


@asynccontextmanager
async def running(store: AnyStore) -> AsyncIterator[AnyStore]:
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        try:
            yield store
        finally:
            tg.cancel_scope.cancel()


def message(status: MessageStatus = MessageStatus.QUEUED, **kw: Any) -> Message:
    fields: dict[str, Any] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                              "text": "hello", "created_at": 1.0, "expires_at": 1e12, "status": status}
    fields.update(kw)
    return Message(**fields)


def test_both_stores_implement_the_protocol() -> None:
    protocol = {name for name in dir(Store) if not name.startswith("_")}
    for cls in (SqliteStore, RedisStore):
        assert protocol <= set(dir(cls)), (cls, protocol - set(dir(cls)))


async def test_written_messages_are_read_back(backend: Backend) -> None:
    m = message(reference="r1", meta={"k": [1, "x"]}, history=[])
    async with running(backend.new()) as store:
        assert store.get(m.id) is None
        await store.write(Writes(messages=[m]))
        assert store.get(m.id) == m
        m.set_status(MessageStatus.SUBMITTED, 2.0, "", "sim")
        await store.write(Writes(messages=[m]))
        got = store.get(m.id)
        assert got is not None and got.status is MessageStatus.SUBMITTED and got.history == m.history


async def test_what_write_returned_survives_the_storage_going_down(backend: Backend) -> None:
    queued = message()
    final = message(MessageStatus.DELIVERED, callback_pending=True)
    doc = Doc("consent", "c1", "447911123456", "svc", "in", 50.5, 10.25, b"\x00body")
    entry = LedgerEntry("a1", 3.5, "447911123456", "svc", "op1", "1.50", "EUR", "pp1", "sim", queued.id)
    async with running(backend.new()) as store:
        rows = await store.write(Writes(
            messages=[queued, final], smsc_ids=[("sim", "abc123", final.id, 0)],
            idempotency=[IdempotencyRecord("acme", "key-1", "h1", (queued.id, "!422:bad"), 5.0)],
            early_receipts=[("sim", b"\x01\x02pdu")], mo=[("mo1", 7.5, b"mo-record")], docs=[doc], ledger=[entry],
            ledger_outcomes=[LedgerOutcome("a1", 4.5, "charged", "", "smsc-9")]))
    backend.crash()
    async with running(backend.new()) as store:
        assert store.get(queued.id) == queued and store.get(final.id) == final
        assert [m.id for m in store.open_messages()] == [queued.id]
        assert [m.id for m in store.callback_pending()] == [final.id]
        assert store.lookup_smsc_id("sim", ["abc123"]) == (final.id, 0)
        assert store.find_idempotency("acme", "key-1") == IdempotencyRecord("acme", "key-1", "h1",
                                                                            (queued.id, "!422:bad"), 5.0)
        assert [(e.id, e.smsc, e.pdu) for e in store.early_receipts()] == [(rows[0], "sim", b"\x01\x02pdu")]
        assert backend.mo(store, "mo1") == (7.5, b"mo-record")
        assert store.doc("consent", "c1") == doc
        (row,) = store.ledger()
        assert (row["id"], row["state"], row["smsc_message_id"], row["final_at"]) == ("a1", "charged", "smsc-9", 4.5)


async def test_concurrent_writes_share_commits(backend: Backend) -> None:
    msgs = [message() for _ in range(500)]
    async with running(backend.new()) as store:
        async with anyio.create_task_group() as writers:
            for m in msgs:
                writers.start_soon(store.write, Writes(messages=[m]))
        stats = store.statistics()
        assert stats.rows_written == 500
        assert stats.commits < 100  # group commit: many writers per round trip
        assert all(store.get(m.id) == m for m in msgs[::50])


async def test_a_message_written_twice_in_one_batch_keeps_its_last_state(backend: Backend) -> None:
    m = message()
    async with running(backend.new()) as store:
        store.write_nowait(Writes(messages=[m]))
        await store.write(Writes(messages=[message(id=m.id, status=MessageStatus.SUBMITTED)]))
        got = store.get(m.id)
        assert got is not None and got.status is MessageStatus.SUBMITTED


async def test_open_messages_and_callback_pending_follow_each_record(backend: Backend) -> None:
    a, b, c = message(), message(), message()
    async with running(backend.new()) as store:
        await store.write(Writes(messages=[a, b, c]))
        assert {m.id for m in store.open_messages()} == {a.id, b.id, c.id}
        assert list(store.callback_pending()) == []
        a.set_status(MessageStatus.DELIVERED, 2.0)
        a.callback_pending = True
        b.set_status(MessageStatus.FAILED, 2.0)
        await store.write(Writes(messages=[a, b]))
        assert {m.id for m in store.open_messages()} == {c.id}
        assert [m.id for m in store.callback_pending()] == [a.id]
        a.callback_pending = False
        await store.write(Writes(messages=[a]))
        assert list(store.callback_pending()) == []


async def test_lookup_smsc_id(backend: Backend) -> None:
    m1, m2 = message(), message()
    async with running(backend.new()) as store:
        await store.write(Writes(smsc_ids=[("sim", "12345", m1.id, 0), ("sim", "0x3039", m1.id, 0),
                                           ("sim", "abc", m1.id, 2), ("other", "xyz", m2.id, 1)]))
        assert store.lookup_smsc_id("sim", ["nope", "abc", "12345"]) == (m1.id, 2)  # the first key found wins
        assert store.lookup_smsc_id("sim", ["0x3039"]) == (m1.id, 0)
        assert store.lookup_smsc_id("sim", ["xyz"]) is None  # ids are per SMSC
        assert store.lookup_smsc_id("other", ["xyz"]) == (m2.id, 1)
        assert store.lookup_smsc_id("sim", []) is None
        await store.write(Writes(smsc_ids=[("sim", "12345", m2.id, 3)]))  # an SMSC reused an id: the latest wins
        assert store.lookup_smsc_id("sim", ["12345"]) == (m2.id, 3)


async def test_the_first_idempotency_record_of_a_key_wins(backend: Backend) -> None:
    async with running(backend.new()) as store:
        await store.write(Writes(idempotency=[IdempotencyRecord("acme", "k:1 x", "h1", ("m1", "m2"), 1.5)]))
        await store.write(Writes(idempotency=[IdempotencyRecord("acme", "k:1 x", "h2", ("m3",), 2.5),
                                              IdempotencyRecord("beta", "k:1 x", "h3", (), 3.0)]))
        assert store.find_idempotency("acme", "k:1 x") == IdempotencyRecord("acme", "k:1 x", "h1", ("m1", "m2"), 1.5)
        assert store.find_idempotency("beta", "k:1 x") == IdempotencyRecord("beta", "k:1 x", "h3", (), 3.0)
        assert store.find_idempotency("acme", "k:2") is None


async def test_early_receipts_get_ids_in_order_and_leave_when_done(backend: Backend) -> None:
    async with running(backend.new()) as store:
        first = await store.write(Writes(early_receipts=[("sim", b"one"), ("sim2", b"two")]))
        second = await store.write(Writes(early_receipts=[("sim", b"three")]))
        assert len(first) == 2 and len(second) == 1 and first[0] < first[1] < second[0]
        assert await store.write(Writes(messages=[message()])) == []
        assert [(e.id, e.smsc, e.pdu) for e in store.early_receipts()] == [
            (first[0], "sim", b"one"), (first[1], "sim2", b"two"), (second[0], "sim", b"three")]
        await store.write(Writes(early_receipts_done=[first[1], second[0]]))
        assert [e.pdu for e in store.early_receipts()] == [b"one"]


async def test_write_nowait_sets_its_event_once_durable(backend: Backend) -> None:
    m = message()
    async with running(backend.new()) as store:
        done = store.write_nowait(Writes(messages=[m]))
        await done.wait()
        assert store.get(m.id) == m
        with pytest.raises(ValueError):
            store.write_nowait(Writes(early_receipts=[("sim", b"x")]))


def _doc(kind: str, doc_id: str, msisdn: str = "", scope: str = "", state: str = "", due: float | None = None,
         at: float = 0.0) -> Doc:
    return Doc(kind, doc_id, msisdn, scope, state, due, at, f"{doc_id}@{at}".encode())


async def test_docs_upsert_moves_a_record_between_filters(backend: Backend) -> None:
    async with running(backend.new()) as store:
        await store.write(Writes(docs=[_doc("sub", "s1", "4471", "news", "pending", 100.0, 1.0)]))
        await store.write(Writes(docs=[_doc("sub", "s1", "4472", "sport", "active", None, 2.0)]))
        assert store.doc("sub", "s1") == _doc("sub", "s1", "4472", "sport", "active", None, 2.0)
        assert store.docs("sub", msisdn="4471") == [] and store.docs("sub", state="pending") == []
        assert [d.id for d in store.docs("sub", msisdn="4472", scope="sport", state="active")] == ["s1"]
        assert store.docs_due("sub", 1e9) == []
        assert store.doc("sub", "s2") is None and store.doc("other", "s1") is None


async def test_docs_filters_since_limit_and_order(backend: Backend) -> None:
    docs = [_doc("c", "b", "4471", "x", "in", at=5.0), _doc("c", "a", "4471", "y", "out", at=5.0),
            _doc("c", "c", "4472", "x", "in", at=3.0), _doc("c", "d", "", "", "", at=9.0),
            _doc("other", "e", "4471", "x", "in", at=1.0)]
    async with running(backend.new()) as store:
        await store.write(Writes(docs=docs))
        assert [d.id for d in store.docs("c")] == ["c", "a", "b", "d"]  # by (at, id)
        assert [d.id for d in store.docs("c", msisdn="4471")] == ["a", "b"]
        assert [d.id for d in store.docs("c", scope="x", state="in")] == ["c", "b"]
        assert [d.id for d in store.docs("c", msisdn="")] == ["d"]
        assert [d.id for d in store.docs("c", since=5.0)] == ["a", "b", "d"]
        assert [d.id for d in store.docs("c", since=5.0, limit=2)] == ["a", "b"]
        assert [d.id for d in store.docs("c", msisdn="4471", state="out", since=4.0)] == ["a"]
        assert store.docs("c", limit=0) == []
        assert store.docs("nothing") == []


async def test_docs_due(backend: Backend) -> None:
    async with running(backend.new()) as store:
        await store.write(Writes(docs=[_doc("pay", "p1", due=30.0, at=1.0), _doc("pay", "p2", due=10.0, at=2.0),
                                       _doc("pay", "p3", at=3.0), _doc("pay", "p4", due=20.0, at=4.0),
                                       _doc("other", "p5", due=1.0)]))
        assert [d.id for d in store.docs_due("pay", 20.0)] == ["p2", "p4"]
        assert [d.id for d in store.docs_due("pay", float("inf"), 2)] == ["p2", "p4"]
        assert [d.id for d in store.docs_due("pay", float("inf"), 1 << 62)] == ["p2", "p4", "p1"]
        assert [r["id"] for r in store.ledger(limit=1 << 62)] == []
        assert [d.id for d in store.docs_due("pay", 9.9)] == []
        await store.write(Writes(docs=[_doc("pay", "p2", at=5.0)]))  # nothing due any more
        assert [d.id for d in store.docs_due("pay", float("inf"))] == ["p4", "p1"]


def _entry(attempt: str, at: float, msisdn: str = "4471", service: str = "news", operator: str = "op1") -> LedgerEntry:
    return LedgerEntry(attempt, at, msisdn, service, operator, "1.00", "EUR", "pp", "sim", f"m-{attempt}")


async def test_ledger_latest_outcome_and_filters(backend: Backend) -> None:
    async with running(backend.new()) as store:
        await store.write(Writes(ledger=[_entry("a", 1.0), _entry("b", 2.0, "4472"), _entry("c", 3.0, service="tv"),
                                         _entry("d", 4.0, operator="op2")],
                                 ledger_outcomes=[LedgerOutcome("a", 5.0, "unknown", "timeout")]))
        await store.write(Writes(ledger=[_entry("a", 99.0, "9999")],  # an attempt is inserted once
                                 ledger_outcomes=[LedgerOutcome("a", 6.0, "charged", "", "sx"),
                                                  LedgerOutcome("a", 5.5, "failed", "late"),  # older: not the latest
                                                  LedgerOutcome("b", 7.0, "failed", "no credit")]))
        rows = store.ledger()
        assert [r["id"] for r in rows] == ["d", "c", "b", "a"]
        assert rows[3] == {"id": "a", "at": 1.0, "msisdn": "4471", "service": "news", "operator": "op1",
                           "amount": "1.00", "currency": "EUR", "price_point": "pp", "smsc": "sim", "message_id": "m-a",
                           "state": "charged", "reason": "", "smsc_message_id": "sx", "final_at": 6.0}
        assert rows[0]["state"] == "pending" and rows[0]["final_at"] is None and rows[0]["reason"] is None
        assert [r["id"] for r in store.ledger(state="pending")] == ["d", "c"]
        assert [r["id"] for r in store.ledger(state="failed")] == ["b"]
        assert [r["id"] for r in store.ledger(msisdn="4471", state="charged")] == ["a"]
        assert [r["id"] for r in store.ledger(service="tv")] == ["c"]
        assert [r["id"] for r in store.ledger(operator="op1", since=2.0)] == ["c", "b"]
        assert [r["id"] for r in store.ledger(since=2.0, until=4.0)] == ["c", "b"]
        assert [r["id"] for r in store.ledger(limit=2)] == ["d", "c"]


async def test_mo_records_are_stored(backend: Backend) -> None:
    async with running(backend.new()) as store:
        await store.write(Writes(mo=[("mo-1", 1.5, b"first"), ("mo-2", 2.5, b"second")]))
        await store.write(Writes(mo=[("mo-1", 3.5, b"replaced")]))
        assert backend.mo(store, "mo-1") == (3.5, b"replaced")
        assert backend.mo(store, "mo-2") == (2.5, b"second")
        assert backend.mo(store, "mo-3") is None


async def test_statistics_and_is_open(backend: Backend) -> None:
    store = backend.new()
    assert not store.is_open
    async with running(store):
        assert store.is_open
        await store.write(Writes(messages=[message(), message()], smsc_ids=[("sim", "1", "m", 0)]))
        stats = store.statistics()
        assert stats.open and stats.commits >= 1 and stats.rows_written == 3 and stats.pending_writes == 0
    assert not store.is_open
    with pytest.raises(StoreClosed):
        await store.write(Writes(messages=[message()]))


async def test_writing_to_a_store_that_never_ran_raises(backend: Backend) -> None:
    store = backend.new()
    with pytest.raises(StoreClosed):
        await store.write(Writes(messages=[message()]))
    with pytest.raises(StoreClosed):
        store.write_nowait(Writes(messages=[message()]))


async def test_pending_writes_are_committed_on_shutdown(backend: Backend) -> None:
    m = message()
    async with running(backend.new(commit_interval_s=10.0)) as store:  # would wait 10 s before committing
        store.write_nowait(Writes(messages=[m]))
        await anyio.sleep(0.05)
    async with running(backend.new()) as store:
        assert store.get(m.id) == m


async def test_both_stores_answer_every_query_alike(redis_server: RedisServer, tmp_path: Path) -> None:
    """Seeded random records and queries; the two stores' answers must be equal, order included."""
    rng = random.Random(7)
    msisdns, scopes, states = ["4471", "4472", "4473", ""], ["news", "tv", "", "a:b"], ["in", "out", "pending", ""]
    docs = [Doc(rng.choice(["c", "s"]), f"d{i:03d}", rng.choice(msisdns), rng.choice(scopes), rng.choice(states),
                rng.choice([None, float(rng.randrange(50))]), float(rng.randrange(30)), bytes([i % 256]))
            for i in range(300)]
    docs += [Doc(d.kind, d.id, rng.choice(msisdns), d.scope, rng.choice(states), None, d.at + 100, b"v2")
             for d in docs[::7]]  # upserts that move records between filters
    entries = [LedgerEntry(f"l{i:03d}", float(i) + rng.random(), rng.choice(msisdns), rng.choice(scopes),
                           rng.choice(["op1", "op2"]), "2.00", "EUR") for i in range(200)]
    outcomes = [LedgerOutcome(e.id, e.at + rng.random() * 10, rng.choice(["charged", "failed", "unknown"]))
                for e in entries if rng.random() < 0.7]
    queries: list[tuple[str, dict[str, Any]]] = []
    for _ in range(120):
        filters: dict[str, Any] = {k: rng.choice(v) for k, v in (("msisdn", msisdns), ("scope", scopes), ("state", states))
                   if rng.random() < 0.4}
        if rng.random() < 0.3:
            filters["since"] = float(rng.randrange(130))
        if rng.random() < 0.3:
            filters["limit"] = rng.randrange(1, 40)
        queries.append(("docs", {"kind": rng.choice(["c", "s"]), **filters}))
        queries.append(("docs_due", {"kind": rng.choice(["c", "s"]), "before": float(rng.randrange(60)),
                                     "limit": rng.randrange(1, 100)}))
        ledger_filters: dict[str, Any] = {k: rng.choice(v) for k, v in (
            ("msisdn", msisdns), ("service", scopes), ("operator", ["op1", "op2"]),
            ("state", ["charged", "failed", "unknown", "pending"])) if rng.random() < 0.4}
        if rng.random() < 0.4:
            ledger_filters["since"] = float(rng.randrange(200))
        if rng.random() < 0.4:
            ledger_filters["until"] = float(rng.randrange(200))
        ledger_filters["limit"] = rng.randrange(1, 300)
        queries.append(("ledger", ledger_filters))

    async def answers(store: AnyStore) -> list[Any]:
        async with running(store):
            for i in range(0, len(docs), 50):
                await store.write(Writes(docs=docs[i:i + 50]))
            await store.write(Writes(ledger=entries, ledger_outcomes=outcomes))
            out: list[Any] = []
            for name, query in queries:
                kw = dict(query)
                if name == "docs":
                    out.append(store.docs(kw.pop("kind"), **kw))
                elif name == "docs_due":
                    out.append(store.docs_due(kw["kind"], kw["before"], kw["limit"]))
                else:
                    out.append(store.ledger(**kw))
            return out

    sqlite_answers = await answers(SqliteStore(tmp_path / "gw.db"))
    redis_answers = await answers(RedisStore(redis_server.url, node="n1", group=unique_group()))
    assert len(sqlite_answers) == len(redis_answers) == 360
    assert sum(1 for a in sqlite_answers if a) > 200  # the queries find something
    for (name, kw), a, b in zip(queries, sqlite_answers, redis_answers, strict=True):
        assert a == b, (name, kw)
