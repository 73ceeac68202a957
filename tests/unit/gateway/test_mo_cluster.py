"""MoIntake on the billing node of a cluster (gateway/_mo.py Rule 3), with the store faked: parts from the `mo`
stream become MOs acked in the same commit, a part fed once is never fed twice, and a commit that fails (Redis away)
leaves the entries to be taken again, not lost."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from gateway._mo import MoIntake
from gateway._redis import QueueEntry, RedisWrites
from gateway._store import Doc, StoreClosed, Writes
from smpp import DeliverSm, encode_pdu

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def part(doc_id: str, text: str) -> Doc:
    pdu = DeliverSm(source_addr="447900000001", destination_addr="84001", short_message=text.encode())
    return Doc("mo_part", doc_id, "447900000001", "84001", "pending", None, 1.0, encode_pdu(pdu) + b"sim")


class FakeInner:
    def __init__(self, docs: dict[str, Doc], batches: list[list[QueueEntry]]) -> None:
        self.docs = docs
        self.batches = batches

    async def ensure_group(self, stream: str) -> None:
        pass

    async def reclaim(self, stream: str, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]:
        return []

    async def claim(self, stream: str, consumer: str, count: int, block_ms: int) -> list[QueueEntry]:
        if self.batches:
            return self.batches.pop(0)
        await anyio.sleep(block_ms / 1000)
        return []

    async def adoc_many(self, kind: str, doc_ids: list[str]) -> list[Doc | None]:
        return [self.docs.get(d) for d in doc_ids]


class FakeStore:
    def __init__(self, inner: FakeInner, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.commits: list[RedisWrites] = []

    async def write(self, writes: Writes) -> list[int]:
        if self.failures:
            self.failures -= 1
            raise StoreClosed("redis is away")
        assert isinstance(writes, RedisWrites)
        self.commits.append(writes)
        for doc in writes.docs:  # what the commit makes true, as the next read sees it
            if doc.kind == "mo_part":
                self.inner.docs[doc.id] = doc
        return []


def intake(store: FakeStore) -> MoIntake:
    numbering = SimpleNamespace(normalise=lambda addr, country=None: addr)
    gw: Any = SimpleNamespace(config=SimpleNamespace(node="gw1", store=SimpleNamespace(backend="redis"),
                                                     numbering=SimpleNamespace(default_country=None)),
                              store=store, core=SimpleNamespace(numbering=numbering))
    return MoIntake(gw)


async def test_parts_become_mos_acked_in_their_commit_and_a_failed_commit_is_tried_again() -> None:
    docs = {"p1": part("p1", "JOIN"), "p2": part("p2", "STOP")}
    entries = [QueueEntry("mo", "1-0", "p1"), QueueEntry("mo", "2-0", "p2")]
    again = [QueueEntry("mo", "1-0", "p1")]  # the same entry delivered twice (a reclaim): fed once
    store = FakeStore(FakeInner(docs, [entries, again]), failures=1)
    mo = intake(store)
    assert mo.clustered
    async with anyio.create_task_group() as tg:
        await tg.start(mo.run_cluster)
        with anyio.fail_after(5):
            while len(mo._queue) < 2 or store.inner.batches:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    [commit, *rest] = store.commits
    assert sorted(a[1] for a in commit.ack) == ["1-0", "2-0"]  # acked with the MOs they became
    made = [d for d in commit.docs if d.kind == "mo"]
    assert sorted(mo._records[d.id].text for d in made) == ["JOIN", "STOP"]
    assert {d.id: d.state for d in commit.docs if d.kind == "mo_part"} == {"p1": "used", "p2": "used"}
    assert len(mo._queue) == 2  # one MO each, although the first commit failed and p1 came twice
    assert all(not any(d.kind == "mo" for d in c.docs) for c in rest)
