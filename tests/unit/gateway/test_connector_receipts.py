"""Receipts on a cluster (_connector Rule 4): queued, resolved in batches in one Redis round trip each, applied to
the records that came with the match, answered once durable, in arrival order.

A real RedisStore, ClusterStore, Cluster and GatewayCore (tests.redis_fixture); the connector's receipt task and
acker run against a fake connection that records what would be sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from dlr import ReceiptKind, ReceiptStatus, build_receipt_pdu
from gateway._cluster import Cluster, ClusterStore
from gateway._config import parse_config
from gateway._connector import Connector, SessionInfo, _Live
from gateway._core import GatewayCore
from gateway._model import Message, MessageStatus, Part, new_message_id
from gateway._redis import RedisStore, RedisUnavailable
from gateway._store import Writes
from smpp import DeliverSm, SubmitSm, encode_pdu
from smpp._session import RequestReceived
from tests.conftest import RecordingConn
from tests.redis_fixture import RedisServer, redis_server, unique_group

__all__ = ["redis_server"]

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "accounts": [{"id": "acme"}],
    "smscs": [{"name": "sim", "system_id": "a", "password": "x"}],
    "routes": [{"prefix": "", "smscs": ["sim"]}],
}
MT = SubmitSm(source_addr="ACME", destination_addr="447911123456", short_message=b"hi")
WHEN = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@dataclass
class Node:
    core: GatewayCore
    store: ClusterStore
    connector: Connector
    finals: list[Message]

    def live(self, tg: anyio.abc.TaskGroup) -> tuple[_Live, RecordingConn]:
        conn = RecordingConn()
        live = _Live(conn, SessionInfo(0, "trx", "bound"), anyio.Semaphore(10))  # type: ignore[arg-type]
        tg.start_soon(self.connector._acker, live)
        return live, conn

    async def submitted(self, *smsc_ids: str) -> Message:
        """A message whose parts the SMSC accepted with `smsc_ids`, durable (and gone from the working set)."""
        m = Message(id=new_message_id(), account="acme", to="447911123456", source="ACME", text="hi",
                    created_at=1.0, expires_at=1e12, parts=[Part() for _ in smsc_ids])
        self.core.messages[m.id] = m
        writes = Writes()
        for i, sid in enumerate(smsc_ids):
            self.core.submit_ok(m, i, "sim", sid, writes)
        await self.store.write(writes)
        assert m.id not in self.core.messages
        return m

    async def stored(self, mid: str) -> Message:
        got = await self.store.inner.aget(mid)
        assert got is not None
        return got


@pytest.fixture
async def node(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Node, anyio.abc.TaskGroup]]:
    cfg = parse_config(CONFIG, base_dir=tmp_path)
    inner = RedisStore(redis_server.url, node="n1", group=unique_group())
    store = ClusterStore(inner)
    core = GatewayCore(cfg, store)
    core.cluster = Cluster(SimpleNamespace(config=SimpleNamespace(node="n1"), core=core), store)
    finals: list[Message] = []
    core.final_hooks.append(finals.append)
    connector = Connector(cfg.smscs[0], core)
    connector._batching = True  # as run() does on a cluster
    async with anyio.create_task_group() as tg:
        await tg.start(inner.run)
        await tg.start(store.settle_loop)
        await tg.start(core.run_post_commit)
        tg.start_soon(connector._receipt_loop)
        yield Node(core, store, connector, finals), tg
        tg.cancel_scope.cancel()


def receipt(smsc_id: str, status: ReceiptStatus = ReceiptStatus.DELIVERED, seq: int = 1) -> DeliverSm:
    kind = ReceiptKind.INTERMEDIATE_NOTIFICATION if status is ReceiptStatus.ENROUTE else \
        ReceiptKind.SMSC_DELIVERY_RECEIPT
    return build_receipt_pdu(MT, smsc_message_id=smsc_id, status=status, submit_date=WHEN, done_date=WHEN, kind=kind,
                             sequence_number=seq)


def mo(seq: int) -> DeliverSm:
    return DeliverSm(source_addr="447911123456", destination_addr="ACME", short_message=b"stop", sequence_number=seq)


async def answered(conn: RecordingConn, n: int) -> list[int]:
    with anyio.fail_after(10):
        while len(conn.sent) < n:
            await anyio.sleep(0.005)
    await anyio.sleep(0.05)  # and nothing more
    return [p.sequence_number for p in conn.sent]


async def test_hits_parks_and_mo_in_one_batch_are_answered_in_arrival_order(node: Any) -> None:
    n, tg = node
    m = await n.submitted("abc")
    live, conn = n.live(tg)
    await n.connector._on_event(live, RequestReceived(receipt("abc", seq=1)))
    await n.connector._on_event(live, RequestReceived(receipt("unknown", seq=2)))  # its submit_sm_resp has not come: parked
    await n.connector._on_event(live, RequestReceived(mo(3)))
    assert await answered(conn, 3) == [1, 2, 3]
    stored = await n.stored(m.id)
    assert stored.status is MessageStatus.DELIVERED and stored.parts[0].receipt == "delivered"
    assert [f.id for f in n.finals] == [m.id]  # its callback goes out once durable
    assert [e.pdu for e in await n.store.inner.aearly_receipts()] == [encode_pdu(receipt("unknown", seq=2))]
    assert n.store.inner.sync_reads == 0  # nothing on the receipt path blocked on a read
    stats = n.connector.statistics()
    assert (stats.receipts, stats.mo) == (2, 1)


async def test_receipts_of_one_message_fold_into_one_record_within_and_across_batches(node: Any) -> None:
    n, tg = node
    m = await n.submitted("p0", "p1")
    live, conn = n.live(tg)
    await n.connector._on_event(live, RequestReceived(receipt("p0", ReceiptStatus.ENROUTE, seq=1)))
    await anyio.sleep(0)  # the receipt task takes it alone; the next ones wait for its write
    await n.connector._on_event(live, RequestReceived(receipt("p0", seq=2)))
    await n.connector._on_event(live, RequestReceived(receipt("p1", seq=3)))
    assert await answered(conn, 3) == [1, 2, 3]
    stored = await n.stored(m.id)
    assert stored.status is MessageStatus.DELIVERED
    assert [p.receipt for p in stored.parts] == ["delivered", "delivered"]
    assert "enroute" in [h.status for h in stored.history]
    assert n.store.conflicts == 0 and n.store.inner.sync_reads == 0


async def test_a_receipt_whose_bind_closed_is_applied_but_not_answered(node: Any) -> None:
    n, tg = node
    m = await n.submitted("abc")
    live, conn = n.live(tg)
    await n.connector._on_event(live, RequestReceived(receipt("abc", seq=1)))
    conn.closed = True
    with anyio.fail_after(10):
        while not n.finals:
            await anyio.sleep(0.005)
    assert (await n.stored(m.id)).status is MessageStatus.DELIVERED
    assert conn.sent == []


async def test_receipts_redis_could_not_resolve_are_not_answered(node: Any, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    n, tg = node
    m = await n.submitted("abc")
    live, conn = n.live(tg)
    real = n.core.cluster.match_or_park_many
    calls = 0

    async def flaky(smsc: str, receipts: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisUnavailable("connection lost")
        return await real(smsc, receipts)

    monkeypatch.setattr(n.core.cluster, "match_or_park_many", flaky)
    await n.connector._on_event(live, RequestReceived(receipt("abc", seq=1)))
    await n.connector._on_event(live, RequestReceived(mo(2)))  # no Redis lookup: still answered
    assert await answered(conn, 1) == [2]
    assert (await n.stored(m.id)).status is MessageStatus.SUBMITTED
    await n.connector._on_event(live, RequestReceived(receipt("abc", seq=3)))  # the SMSC sends it again
    assert await answered(conn, 2) == [2, 3]
    assert (await n.stored(m.id)).status is MessageStatus.DELIVERED
