"""Several gateway nodes on one Redis: the shared MT queue, claims, compare-and-set writes, cross-node receipts.

Rule 1: an accepted message is a record plus an entry in its route's stream (`r:{route}`), written in one commit;
a node claims entries only from routes where it holds a bound SMSC, so the work follows the binds. The entry stays
pending (owned by the node) until the message is submitted, final, or handed back to the queue (a retry, a bind
lost): then it is acknowledged in the same commit as the record that says why.
Rule 2: every record write is a compare-and-set against the version this node last saw. A write refused because
another node wrote the record since (a receipt that arrived there) is merged with the stored record
(`merge_records`) and written again, so neither node's facts are lost.
Rule 3: a node that stops heartbeating is dead: another node holding binds for the same route takes over the
entries it had claimed. A message that may have been on the wire and may not be resent (charged, or its account
forbids it) becomes `unknown`; the others are sent again.
Rule 4: a receipt is looked up and, when its message is unknown yet, parked in Redis in one atomic step; the node
that later registers the SMSC id gets it back from its commit and applies it. So a receipt finds its message
whichever node submitted it and whichever node it reaches.
Rule 5: two kinds of document go to a stream in the commit that writes them (`ClusterStore` does it for every
writer): an MO part received (`mo_part`, pending) to `mo`, which the billing node takes (_leader, _mo), and a
consent record to `consent`, which every node follows (_consent) so that each node refuses MTs to opted-out numbers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import msgspec

from dlr import ReceiptStatus, fold_part_statuses, parse_receipt, receipt_keys
from smpp import DeliverSm, decode_pdu

from ._config import AccountConfig
from ._core import RECEIPT_TO_STATUS
from ._model import FINAL_STATUSES, Message, MessageStatus, Part, StatusChange
from ._redis import CommitResult, PendingCommit, QueueEntry, RedisStore, RedisWrites
from ._store import Writes

__all__ = ["CONSENT_STREAM", "MO_STREAM", "Cluster", "ClusterStore", "merge_records", "route_stream"]

log = logging.getLogger(__name__)

_ORDER = {MessageStatus.QUEUED: 0, MessageStatus.SUBMITTED: 1}

MO_STREAM = "mo"  # entry value: the id of an `mo_part` document (Rule 5)
CONSENT_STREAM = "consent"  # entry value: "<node> <id of a consent record>" (Rule 5)


def route_stream(route: str) -> str:
    """The stream of a route's messages."""
    return f"r:{route}"


def merge_records(ours: Message, theirs: Message) -> Message:
    """One record holding what both versions know (Rule 2).

    Parts keep every SMSC id and receipt either side saw; a final status wins over a non-final one, the stored
    (theirs) over ours when both are final; the history is the union in time order; the status is folded again
    from the parts' receipts, so two nodes each applying one part's receipt end with the message's true status.
    """
    merged = msgspec.structs.replace(theirs)  # a shallow copy
    n = max(len(ours.parts), len(theirs.parts))
    parts = []
    for i in range(n):
        a = ours.parts[i] if i < len(ours.parts) else Part()
        b = theirs.parts[i] if i < len(theirs.parts) else Part()
        parts.append(Part(b.smsc_message_id or a.smsc_message_id, b.receipt or a.receipt, b.smsc or a.smsc))
    merged.parts = parts
    merged.history = sorted(set(theirs.history) | set(ours.history), key=lambda h: (h.at, h.status))
    merged.attempts = max(ours.attempts, theirs.attempts)
    merged.concat_ref = theirs.concat_ref if theirs.concat_ref is not None else ours.concat_ref
    merged.smsc = theirs.smsc or ours.smsc
    if theirs.is_final:
        return merged
    if ours.is_final:
        merged.status, merged.status_at, merged.error = ours.status, ours.status_at, ours.error
        merged.callback_pending = ours.callback_pending
        return merged
    if _ORDER.get(ours.status, 0) > _ORDER.get(theirs.status, 0):
        merged.status, merged.status_at = ours.status, ours.status_at
    merged.on_wire = ours.on_wire or theirs.on_wire
    receipts = [p.receipt for p in parts]
    if all(receipts):
        folded = fold_part_statuses(ReceiptStatus(r) for r in receipts if r)
        if folded is not None and folded.is_final:
            status = RECEIPT_TO_STATUS.get(folded, MessageStatus.UNKNOWN)
            merged.status, merged.status_at = status, max(ours.status_at, theirs.status_at)
            merged.history.append(StatusChange(merged.status_at, status.value, "merged from two nodes"))
    return merged


class ClusterStore:
    """The store as one node of a cluster sees it: RedisStore with compare-and-set writes and queue bookkeeping.

    Everything the Store protocol offers is passed through; `write`/`write_nowait` add, for each message written,
    the version this node last saw (`expect`) and, when the message leaves this node's hands, the ack of the stream
    entry it claimed. The returned event is set only when the write, merged and retried after any conflict, is
    durable.

    `write_nowait` calls made before the commit loop takes the batch share one RedisWrites, one PendingCommit and
    one event: they would have gone into the same commit anyway, and sharing saves the objects and the settling
    per call. A call joins only the newest queued commit (`RedisStore.queued_last`), so writes keep their order.
    """

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.versions: dict[str, int] = {}
        self.entries: dict[str, QueueEntry] = {}  # message id -> the stream entry this node claimed
        self.on_parked: Callable[[list[Any], Writes], None] | None = None
        self.on_merged: Callable[[Message], None] | None = None
        self.on_follow: Callable[[Writes], object] | None = None  # writes parked receipts caused (with callbacks)
        self._pending: deque[tuple[PendingCommit, RedisWrites, anyio.Event]] = deque()
        self._open: tuple[PendingCommit, RedisWrites, anyio.Event] | None = None  # the one write_nowait joins
        self._wake = anyio.Event()
        self.conflicts = 0
        self.parked_applied = 0  # receipts parked by any node, handed back by this node's commits

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    # ---- reads that learn versions ---------------------------------------------------------------------

    def get(self, message_id: str) -> Message | None:
        got = self.inner.get_versioned(message_id)
        if got is None:
            return None
        msg, version = got
        self.versions[message_id] = version
        return msg

    async def aget(self, message_id: str) -> Message | None:
        got = await self.inner.aget_versioned(message_id)
        if got is None:
            return None
        msg, version = got
        self.versions[message_id] = version
        return msg

    # ---- writes (Rule 1 and 2) ---------------------------------------------------------------------------

    def _prepare(self, writes: Writes, into: RedisWrites | None = None) -> RedisWrites:
        """`writes` with the cluster's bookkeeping, added to `into` (None: to `writes` itself if a RedisWrites)."""
        if into is not None:
            rw = into
        else:
            rw = writes if isinstance(writes, RedisWrites) else RedisWrites()
        if rw is not writes:
            rw.extend(writes)
        for doc in writes.docs:  # Rule 5
            if doc.kind == "mo_part" and doc.state == "pending":
                rw.enqueue.append((MO_STREAM, doc.id))
            elif doc.kind == "consent":
                rw.enqueue.append((CONSENT_STREAM, f"{self.inner.node} {doc.id}"))
        for m in writes.messages:
            rw.expect.setdefault(m.id, self.versions.get(m.id, 0))
            entry = self.entries.get(m.id)
            if entry is not None and (m.status in FINAL_STATUSES or m.status is MessageStatus.SUBMITTED):
                rw.ack.append((entry.stream, entry.entry_id))
                del self.entries[m.id]
        return rw

    def requeue(self, msg: Message, due: float) -> None:
        """Hand a message back to its route's queue, due at `due` (a retry, a throttle, a lost bind)."""
        entry = self.entries.pop(msg.id, None)
        rw = RedisWrites(delay=[(route_stream(msg.route or ""), msg.id, due)])
        if entry is not None:
            rw.ack.append((entry.stream, entry.entry_id))
        rw.messages.append(msg)
        self.write_nowait(rw)

    def write_nowait(self, writes: Writes) -> anyio.Event:
        group = self._open
        if group is not None and self._joins(group[1], writes) and self.inner.queued_last(group[0]):
            self._prepare(writes, group[1])
            return group[2]
        rw = self._prepare(writes, RedisWrites())  # a copy of its own: later calls may join it
        done = anyio.Event()
        group = (self.inner.commit_nowait(rw), rw, done)
        self._pending.append(group)
        self._open = None if writes.early_receipts else group
        self._wake.set()
        return done

    @staticmethod
    def _joins(rw: RedisWrites, writes: Writes) -> bool:
        """Whether `writes` can share the commit of `rw`: not when its early receipts' ids matter, nor when it
        names, for a message, another version to compare with than `rw` does (one `expect` per message)."""
        if writes.early_receipts:
            return False
        if isinstance(writes, RedisWrites) and writes.expect:
            have = rw.expect
            return all(have.get(mid, v) == v for mid, v in writes.expect.items())
        return True

    async def write(self, writes: Writes, *, bulk: bool = False) -> list[int]:
        """The Store protocol's write. Commits keep their order here: a bulk write is an ordinary one."""
        rw = self._prepare(writes)
        result = await self.inner.commit(rw)
        await self._settle(rw, result)
        return list(result.early_ids)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The Redis store's own commit loop (the daemon starts it as it starts any store)."""
        await self.inner.run(task_status=task_status)

    async def settle_loop(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Settle commits in order: learn versions, merge conflicts, hand parked receipts over."""
        task_status.started()
        while True:
            while not self._pending:
                self._wake = anyio.Event()
                await self._wake.wait()
            pending, rw, done = self._pending[0]
            await pending.done.wait()
            self._pending.popleft()
            try:
                await self._settle(rw, pending.result())
            except Exception:
                log.exception("cluster: settling a commit failed")
                raise
            finally:
                done.set()

    async def _settle(self, rw: RedisWrites, result: CommitResult) -> None:
        self.versions.update(result.versions)
        while result.conflicts:
            retry = RedisWrites()
            latest = {m.id: m for m in rw.messages}  # a message's last write in the commit
            for mid, conflict in result.conflicts.items():
                self.conflicts += 1
                ours = latest.get(mid)
                if ours is None or conflict.message is None:
                    continue
                merged = merge_records(ours, conflict.message)
                for name in Message.__struct_fields__:  # in place: the connector's jobs hold this very object
                    setattr(ours, name, getattr(merged, name))
                merged = ours
                retry.messages.append(merged)
                retry.expect[mid] = conflict.version
                log.info("id=%s written by another node meanwhile: merged (version %d)", mid, conflict.version)
                if self.on_merged is not None:
                    self.on_merged(merged)
            owned = {e.entry_id for e in self.entries.values()}
            retry.ack.extend(a for a in rw.ack if a[1] not in owned)
            retry.enqueue.extend(e for e in rw.enqueue if e[1] in result.conflicts)
            retry.delay.extend(d for d in rw.delay if d[1] in result.conflicts)
            if not retry.messages:
                break
            result = await self.inner.commit(retry)
            self.versions.update(result.versions)
            rw = retry
        if result.parked and self.on_parked is not None:
            self.parked_applied += len(result.parked)
            follow = Writes()
            self.on_parked(list(result.parked), follow)
            if follow and self.on_follow is not None:
                self.on_follow(follow)
            elif follow:
                self.write_nowait(follow)


class Cluster:
    """One node's part in the cluster: claim loops per route, the mover of delayed retries, heartbeats, takeovers."""

    def __init__(self, gw: Any, store: ClusterStore, *, heartbeat_s: float = 2.0, node_timeout_s: float = 10.0,
                 claim_batch: int = 500) -> None:
        self.gw = gw
        self.store = store
        self.node: str = gw.config.node
        self.heartbeat_s = heartbeat_s
        self.node_timeout_s = node_timeout_s
        self.claim_batch = claim_batch
        self.claimed_total = 0
        self.reclaimed_total = 0
        self.mo_backlog = 0  # entries of the `mo` stream at the last heartbeat
        self._limiter: Any = None
        self._buckets: dict[str, AccountConfig] = {}
        store.on_parked = self._apply_parked
        store.on_follow = gw.core.write_then

    # ---- which routes this node serves -----------------------------------------------------------------

    def _routes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i, r in enumerate(self.gw.config.routes):
            out[r.name or f"routes[{i}]"] = list(r.smscs) or list(r.weights)
        return out

    def _local_up(self, smscs: list[str]) -> list[str]:
        return [n for n in smscs if (c := self.gw.core.connectors.get(n)) is not None and c.can_submit]

    # ---- the tasks -------------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self.store.settle_loop)
            await self.store.inner.heartbeat(self.node_timeout_s)
            tg.start_soon(self._heartbeats)
            tg.start_soon(self._mover)
            tg.start_soon(self._reaper)
            tg.start_soon(self._early_receipts)
            for route in self._routes():
                stream = route_stream(route)
                await self.store.inner.ensure_group(stream)
                # What this node had claimed before it stopped (a crash, kill -9): take it back first (Rule 3).
                mine = await self.store.inner.reclaim(stream, self.node, 0, 1_000_000, only_from=[self.node])
                if mine:
                    log.warning("cluster: %d messages of %s were claimed by this node before it stopped", len(mine),
                                route)
                    self.reclaimed_total += len(mine)
                    await self._take(mine, reclaimed=True)
                tg.start_soon(self._claim_loop, route)
            task_status.started()

    async def _heartbeats(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_s)
            try:
                await self.store.inner.heartbeat(self.node_timeout_s)
                # MO parts not taken yet by the billing node, or taken and not finished (metrics, alerts).
                self.mo_backlog = (await self.store.inner.queue_statistics(MO_STREAM)).length
            except Exception:
                log.warning("cluster: heartbeat failed", exc_info=True)

    async def _mover(self) -> None:
        while True:
            now = time.time()
            for route in self._routes():
                try:
                    await self.store.inner.move_due(route_stream(route), now)
                except Exception:
                    log.warning("cluster: moving due retries of %s failed", route, exc_info=True)
            await anyio.sleep(0.05)

    async def _claim_loop(self, route: str) -> None:
        stream = route_stream(route)
        while True:
            smscs = self._routes().get(route)
            if smscs is None:
                return  # the route was removed by a reload
            up = self._local_up(smscs)
            room = sum(max(0, c.backlog_limit - c.backlog) for n in up if (c := self.gw.core.connectors.get(n)))
            if not up or room <= 0:
                await anyio.sleep(0.05)
                continue
            count = min(room, self.claim_batch)
            try:
                # Entries with their records in one call; only when there are none, wait for one (a function
                # cannot block) and read those records apart.
                claimed = await self.store.inner.claim_records(stream, self.node, count)
                if claimed:
                    self.claimed_total += len(claimed)
                    self._take_records(claimed, reclaimed=False)
                    continue
                entries = await self.store.inner.claim(stream, self.node, count, block_ms=100)
            except Exception:
                log.warning("cluster: claiming from %s failed", stream, exc_info=True)
                await anyio.sleep(0.5)
                continue
            if entries:
                self.claimed_total += len(entries)
                await self._take(entries, reclaimed=False)

    async def _early_receipts(self) -> None:
        """Receipts handed to a node that stopped before it applied them (Rule 4): whoever runs this picks them
        up once they are older than a node's timeout, if their message is known by now."""
        core = self.gw.core
        while True:
            await anyio.sleep(self.node_timeout_s)
            try:
                early = await self.store.inner.aearly_receipts()
            except Exception:
                log.warning("cluster: reading parked receipts failed", exc_info=True)
                continue
            cutoff = time.time() - self.node_timeout_s
            writes = Writes()
            for e in early:
                if e.at > cutoff:
                    continue
                pdu = decode_pdu(e.pdu)
                receipt = parse_receipt(pdu) if isinstance(pdu, DeliverSm) else None
                if receipt is None:
                    writes.early_receipts_done.append(e.id)
                    continue
                smsc = next((s.name for s in self.gw.config.smscs if core.scope(s.name) == e.smsc), e.smsc)
                hit = await self.store.inner.alookup_smsc_id(e.smsc, receipt_keys(receipt, core.policy(smsc)))
                if hit is not None:
                    core.apply_receipt(hit[0], hit[1], receipt, smsc, writes)
                    writes.early_receipts_done.append(e.id)
            if writes:
                core.write_then(writes)  # messages the receipts made final get their callbacks once durable

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_s * 2)
            for route, smscs in self._routes().items():
                if not self._local_up(smscs):
                    continue
                stream = route_stream(route)
                try:
                    dead = await self.store.inner.dead_consumers(stream)
                    if not dead:
                        continue
                    entries = await self.store.inner.reclaim(stream, self.node, 0, self.claim_batch, only_from=dead)
                except Exception:
                    log.warning("cluster: taking over from dead nodes on %s failed", stream, exc_info=True)
                    continue
                if entries:
                    self.reclaimed_total += len(entries)
                    log.warning("cluster: took over %d messages of %s from dead node(s) %s", len(entries), route,
                                ", ".join(dead))
                    await self._take(entries, reclaimed=True)

    async def _take(self, entries: list[QueueEntry], *, reclaimed: bool) -> None:
        """Claimed entries: load their records and route them to this node's connectors (Rule 1 and 3)."""
        got = await self.store.inner.aget_many_versioned([e.message_id for e in entries])
        self._take_records(list(zip(entries, got, strict=True)), reclaimed=reclaimed)

    def _take_records(self, claimed: list[tuple[QueueEntry, tuple[Message, int] | None]], *, reclaimed: bool) -> None:
        """`_take` for entries whose records (and versions) are read already."""
        store = self.store
        core = self.gw.core
        now = time.time()
        done = RedisWrites()
        for entry, versioned in claimed:
            if versioned is None or versioned[0].is_final or versioned[0].status is MessageStatus.SUBMITTED:
                done.ack.append((entry.stream, entry.entry_id))  # nothing to send any more
                continue
            msg, store.versions[entry.message_id] = versioned
            if reclaimed and msg.on_wire and (msg.charged or not msg.resend_after_crash):
                msg.set_status(MessageStatus.UNKNOWN, now, "the node sending it stopped; not resent")
                msg.error = {"code": "outcome_unknown", "message": "a gateway node stopped while the message was on "
                             "the wire"}
                core._finalise(msg)
                store.entries[msg.id] = entry
                core.write_then(Writes(messages=[msg]))
                continue
            msg.on_wire = False
            store.entries[msg.id] = entry
            core.messages[msg.id] = msg
            core.schedule(msg, now)
        if done.ack:
            store.write_nowait(done)

    # ---- an SMSC's throughput across nodes ---------------------------------------------------------------

    async def smsc_tokens(self, smsc: Any, n: int) -> float:
        """Take `n` submit_sm from the SMSC's one bucket shared by every node (its `throughput_per_s` holds for
        the nodes together); 0.0 when taken, else the seconds to wait before asking again."""
        if self._limiter is None:
            from ._ratelimit_redis import SharedRateLimiter

            self._limiter = SharedRateLimiter(self.store.inner.client, key_prefix=self.store.inner.prefix)
        bucket = self._buckets.get(smsc.name)
        if bucket is None or bucket.rate_limit_per_s != smsc.throughput_per_s:
            bucket = AccountConfig(id=f"smsc.{smsc.name}", rate_limit_per_s=smsc.throughput_per_s,
                                   rate_limit_burst=max(1, n))
            self._buckets[smsc.name] = bucket
        wait: float = await self._limiter.take(bucket, n)
        return wait

    # ---- what the core hands over -----------------------------------------------------------------------

    async def accept(self, messages: list[Message], writes: Writes | None, now: float) -> None:
        """Make messages durable with their queue entries (Rule 1): the route's stream, or its delayed set."""
        rw = RedisWrites()
        if writes is not None:
            rw.extend(writes)
        core = self.gw.core
        for msg in messages:
            if msg.route is None:
                decision = core.router.decide(msg.to, source=msg.source, account=msg.account)
                msg.route = decision.route.name if decision.route is not None else ""
            rw.messages.append(msg)
            rw.expect[msg.id] = 0
            stream = route_stream(msg.route)
            if msg.send_at is not None and msg.send_at > now:
                rw.delay.append((stream, msg.id, msg.send_at))
            else:
                rw.enqueue.append((stream, msg.id))
        await self.store.write(rw)

    def release(self, msg: Message, due: float) -> None:
        """Give a claimed message back to its route's queue (no bind up here, or a bind lost)."""
        self.store.requeue(msg, due)

    async def match_or_park(self, smsc: str, receipt: Any, pdu: bytes) -> tuple[str, int] | None:
        keys = receipt_keys(receipt, self.gw.core.policy(smsc))
        hit = await self.store.inner.match_or_park(self.gw.core.scope(smsc), keys, pdu)
        if isinstance(hit, tuple):
            return hit
        return None

    async def match_or_park_many(self, smsc: str, receipts: list[tuple[Any, bytes]]
                                 ) -> list[tuple[str, int, Message | None] | None]:
        """`match_or_park` for a batch of one SMSC's receipts in one round trip (Rule 4).

        Per receipt, in order: None when it was parked until its submit_sm_resp comes, else (message_id, part,
        the record to fold it into, None when there is none). The record is this node's own when it holds one
        (`GatewayCore.held`, as `find` prefers), else the stored one that came with the match, whose version is
        noted for the compare-and-set as `ClusterStore.get` does. Receipts of one message share one record.

        Raises:
            StoreClosed: the store is closed, or Redis did not answer (RedisUnavailable).
        """
        core = self.gw.core
        policy = core.policy(smsc)
        scope = core.scope(smsc)
        got = await self.store.inner.match_or_park_many([(scope, receipt_keys(r, policy), pdu) for r, pdu in receipts])
        records: dict[str, Message | None] = {}
        out: list[tuple[str, int, Message | None] | None] = []
        for hit in got:
            if isinstance(hit, int):
                out.append(None)
                continue
            mid = hit.message_id
            if mid in records:
                msg = records[mid]
            else:
                msg = core.held(mid)
                if msg is None and hit.record is not None:
                    msg = hit.record
                    self.store.versions[mid] = hit.version
                records[mid] = msg
            out.append((mid, hit.part, msg))
        return out

    # ---- receipts (Rule 4) -----------------------------------------------------------------------------

    def _apply_parked(self, parked: list[Any], writes: Writes) -> None:
        core = self.gw.core
        for p in parked:
            pdu = decode_pdu(p.pdu)
            receipt = parse_receipt(pdu) if isinstance(pdu, DeliverSm) else None
            if receipt is not None:
                core.apply_receipt(p.message_id, p.part, receipt, p.smsc, writes)
            writes.early_receipts_done.append(p.id)

    def statistics(self) -> dict[str, int]:
        return {"claimed": self.claimed_total, "reclaimed": self.reclaimed_total, "conflicts": self.store.conflicts,
                "owned": len(self.store.entries), "parked_applied": self.store.parked_applied,
                "mo_backlog": self.mo_backlog}
