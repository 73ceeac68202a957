"""The gateway's heart: accepted messages in, routed to connectors, results and receipts back into statuses.

Rule 1: accepted means durable: `accept` returns only after the store committed the messages.
Rule 2: every non-final message is in `messages` or in the store, and in exactly one of: the ready heap,
a connector's backlog, or in flight on a session; a message leaves them only by becoming final or by going
back to the heap (retry, failover, throttling).
Rule 3: a charged message, or one whose account forbids resending, is marked `on_wire` durably before its
first submit_sm; after a crash, or when its outcome is lost (response timeout, connection lost), it becomes
`unknown` and is never sent again by the gateway itself.
Rule 4: a deliver_sm (receipt or MO) is answered only after what it told us is durable.
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from dlr import (
    Correlator,
    IdPolicy,
    Receipt,
    ReceiptStatus,
    correlation_keys,
    fold_part_statuses,
    receipt_keys,
)
from routing import MtDecision, MtRouter, NoSmscUp, NumberingPlan, mask_msisdn
from smpp import Pdu, Status, encode_pdu

from ._config import Config, SmscConfig
from ._model import Message, MessageStatus, Part, StatusChange
from ._mt import same_price
from ._store import Store, Writes

if TYPE_CHECKING:
    from ._cluster import Cluster

__all__ = ["CoreStatistics", "GatewayCore", "SubmitOutcome", "classify_status"]

log = logging.getLogger(__name__)


class SubmitOutcome:
    """How a submit_sm_resp status is handled (see classify_status)."""

    OK = "ok"
    THROTTLED = "throttled"
    RETRY = "retry"
    PERMANENT = "permanent"


# §5.1.3 statuses that mean "slow down and try again": the SMSC is healthy but saturated.
_THROTTLE = frozenset({Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL})
# Statuses that say the message itself is wrong or refused for good: resending cannot help.
_PERMANENT = frozenset({
    Status.ESME_RINVMSGLEN, Status.ESME_RINVCMDLEN, Status.ESME_RINVCMDID, Status.ESME_RINVPRTFLG,
    Status.ESME_RINVREGDLVFLG, Status.ESME_RINVSRCADR, Status.ESME_RINVDSTADR, Status.ESME_RINVSERTYP,
    Status.ESME_RINVESMCLASS, Status.ESME_RINVSRCTON, Status.ESME_RINVSRCNPI, Status.ESME_RINVDSTTON,
    Status.ESME_RINVDSTNPI, Status.ESME_RINVSCHED, Status.ESME_RINVEXPIRY, Status.ESME_RINVDFTMSGID,
    Status.ESME_RX_P_APPN, Status.ESME_RX_R_APPN, Status.ESME_RINVOPTPARSTREAM, Status.ESME_ROPTPARNOTALLWD,
    Status.ESME_RINVPARLEN, Status.ESME_RMISSINGOPTPARAM, Status.ESME_RINVOPTPARAMVAL, Status.ESME_RINVNUMDESTS,
    Status.ESME_RINVDESTFLAG, Status.ESME_RINVREPFLAG,
})
_MAX_KEPT_DECISIONS = 200_000  # route decisions kept for messages accepted or waiting (`decided`, `_route`)


def classify_status(status: int) -> str:
    """Sort a submit_sm_resp command_status into OK, THROTTLED, RETRY or PERMANENT.

    Temporary failures (ESME_RSYSERR, ESME_RSUBMITFAIL, ESME_RX_T_APPN, ESME_RDELIVERYFAILURE, vendor codes
    and anything unassigned) are retried with backoff until the message's validity ends.
    """
    if status == 0:  # ESME_ROK
        return SubmitOutcome.OK
    if status in _THROTTLE:
        return SubmitOutcome.THROTTLED
    if status in _PERMANENT:
        return SubmitOutcome.PERMANENT
    return SubmitOutcome.RETRY


_RECEIPT_VALUE = {s: s.value for s in ReceiptStatus}  # `.value` is a Python property: 0.18 us, this 0.03

RECEIPT_TO_STATUS = {
    ReceiptStatus.DELIVERED: MessageStatus.DELIVERED,
    ReceiptStatus.UNDELIVERABLE: MessageStatus.UNDELIVERABLE,
    ReceiptStatus.EXPIRED: MessageStatus.EXPIRED,
    ReceiptStatus.REJECTED: MessageStatus.REJECTED,
    ReceiptStatus.DELETED: MessageStatus.FAILED,
    ReceiptStatus.UNKNOWN: MessageStatus.UNKNOWN,
}


class ConnectorPort(Protocol):
    """What the core needs of a connector."""

    name: str

    @property
    def can_submit(self) -> bool: ...

    @property
    def backlog(self) -> int: ...

    @property
    def backlog_limit(self) -> int: ...

    def enqueue(self, message: Message) -> None: ...


@dataclass(frozen=True, slots=True)
class CoreStatistics:
    open_messages: int
    ready: int
    accepted_total: int
    final_total: int
    receipts_total: int
    receipts_unmatched_total: int


CallbackHook = Callable[[Message], None]


class GatewayCore:
    """Holds the working set of non-final messages and moves them between the store, the heap and connectors."""

    def __init__(self, config: Config, store: Store, *, wall: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random) -> None:
        self.store = store
        self.wall = wall
        self.rng = rng
        self.messages: dict[str, Message] = {}
        self.connectors: dict[str, ConnectorPort] = {}
        self.on_final: CallbackHook | None = None
        self.cluster: Cluster | None = None  # when several nodes share a Redis store (gateway._cluster)
        # Called once for each message that became final, after its final status is durable (billing: the
        # ledger, receipt MTs, renewals). A hook must not block; it may schedule work.
        self.final_hooks: list[Callable[[Message], None]] = []
        # Takes each MO deliver_sm a connector receives (gateway._mo.MoIntake.on_deliver): it adds the MO's
        # writes and returns what to do once they are durable.
        self.mo_hook: Callable[..., Callable[[], None] | None] | None = None
        # Metrics hooks: a message became submitted / final; the float is seconds since it was accepted
        # (or since its send_at for a scheduled message).
        self.observe_submitted: Callable[[Message, float], None] | None = None
        self.observe_final: Callable[[Message, float], None] | None = None
        self._heap: list[tuple[float, int, str]] = []
        self._parked: dict[str, deque[Message]] = {}
        self._parked_count = 0
        self._kicked = False
        self._parked_recheck = 0.0
        self._seq = 0
        self._wake = anyio.Event()
        self._waiting_logged: set[str] = set()
        # Route decisions the HTTP API made at accept, by message id, for the first dispatch to reuse (`_route`);
        # they hold for the router they came from, so a reload drops them.
        self._decided: dict[str, MtDecision] = {}
        self.dispatch_batch = 500  # messages routed per pass of the dispatcher (`dispatch_due`)
        self._submitted_lru: OrderedDict[str, None] = OrderedDict()
        # Messages that became final lately: a duplicate or late receipt must see the final record even
        # before its write is committed (the store would still hold the older state).
        self._recent_final: OrderedDict[str, Message] = OrderedDict()
        self.max_recent_final = 50_000
        self.max_submitted_in_memory = 200_000
        self.correlator = Correlator()
        self._early_rows: dict[int, int] = {}  # id(receipt) -> early_receipts row
        self._post: deque[tuple[anyio.Event, Callable[[], None]]] = deque()  # what to do once durable
        self._post_wake = anyio.Event()
        self.accepted_total = 0
        self.final_total = 0
        self.receipts_total = 0
        self.receipts_unmatched_total = 0
        self.apply_config(config)

    # ---- configuration ---------------------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Swap in a new config (validated already): router, numbering plan, id policies."""
        self.config = config
        self.router: MtRouter = config.mt_router()
        self._decided = {}
        self.numbering: NumberingPlan = config.numbering_plan()
        self._policies = {s.name: _policy(s) for s in config.smscs}
        self._accounts = {a.id: a for a in config.accounts}
        # SMSC entries that are one operator account (a TX bind here, its RX bind elsewhere) share receipt ids.
        self._scopes = {s.name: s.receipt_scope or s.name for s in config.smscs}

    def decided(self, msg: Message, decision: MtDecision) -> None:
        """The route decision the API made for `msg` at accept under the running router: `_route` reuses it
        instead of deciding again (a few microseconds per message)."""
        if self.cluster is None:  # on a cluster another node may dispatch it
            if len(self._decided) >= _MAX_KEPT_DECISIONS:  # decisions of messages gone another way: never left to
                self._decided.clear()  # pile up (a dropped one is only decided again)
            self._decided[msg.id] = decision

    def scope(self, smsc: str) -> str:
        """The namespace of an SMSC's message ids (receipt correlation): its receipt_scope, else its name."""
        return self._scopes.get(smsc, smsc)

    def policy(self, smsc: str) -> IdPolicy:
        return self._policies.get(smsc) or IdPolicy.parse("auto")

    # ---- startup ---------------------------------------------------------------------------------------

    def restore(self) -> tuple[int, int]:
        """Load every non-final message after a (re)start; returns (requeued, marked unknown).

        A message that may have been on the wire and may not be resent (Rule 3) becomes `unknown` now.
        """
        now = self.wall()
        requeued = unknown = 0
        writes = Writes()
        for msg in self.store.open_messages():
            if msg.status is MessageStatus.SUBMITTED:
                self.messages[msg.id] = msg
                self._remember_submitted(msg.id)
                continue
            if msg.on_wire and (msg.charged or not msg.resend_after_crash):
                msg.set_status(MessageStatus.UNKNOWN, now, "restart: may have reached the SMSC; not resent")
                msg.error = {"code": "outcome_unknown", "message": "the gateway stopped while the message was on the wire"}
                self._finalise(msg)
                writes.messages.append(msg)
                unknown += 1
                continue
            msg.on_wire = False
            self.messages[msg.id] = msg
            self.schedule(msg, max(now, msg.next_attempt_at, msg.send_at or 0.0))
            requeued += 1
        for early in self.store.early_receipts():
            from smpp import DeliverSm, decode_pdu

            pdu = decode_pdu(early.pdu)
            if isinstance(pdu, DeliverSm):
                from dlr import parse_receipt

                receipt = parse_receipt(pdu)
                if receipt is not None:
                    self.correlator.match(early.smsc, receipt, time.monotonic(), policy=self.policy(early.smsc))
                    self._early_rows[id(receipt)] = early.id
        if writes.messages:
            self.write_then(writes)
        return requeued, unknown

    # ---- the ready heap --------------------------------------------------------------------------------

    def schedule(self, msg: Message, due: float) -> None:
        """Put `msg` in the ready heap, due at wall-clock time `due`."""
        msg.next_attempt_at = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, msg.id))
        self._wake.set()

    @property
    def ready_count(self) -> int:
        return len(self._heap) + self._parked_count

    async def run_dispatcher(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Route due messages to connectors until cancelled."""
        task_status.started()
        while True:
            self._wake = anyio.Event()
            delay = self.dispatch_due()
            if delay is None:
                await self._wake.wait()
            elif delay == 0.0:  # more is due than one pass routes: let reads, acks and commits run first
                await anyio.lowlevel.checkpoint()
            else:
                with anyio.move_on_after(delay):
                    await self._wake.wait()

    def dispatch_due(self) -> float | None:
        """Route due messages, at most `dispatch_batch` of them; returns the seconds until the next one is due
        (0.0: more is due already, None: nothing waits).

        A message whose route has no SMSC up, or whose SMSCs' backlogs are full, is parked in its route's
        FIFO; a route's parked messages are routed again, in order and only until the route is full again,
        when one of its connectors binds or frees room (`kick`) and at least once a second. Once every connector
        up is full, the rest of the pass parks what is due under the route decided at accept without routing it
        (routing would only conclude the same); a charged message, one past its validity or one with no kept
        decision is still routed.

        The batch bound keeps the event loop's turns short under a burst (a batch request of 1,000 messages,
        a restart with a full queue): routing also builds each message's PDUs, and 10,000 at once would hold
        the submit_sm_resps, receipts and commits of every session for about 100 ms.
        """
        now = self.wall()
        heap = self._heap
        writes = Writes()
        busy: set[str] = set()
        up = {name for name, c in self.connectors.items() if c.can_submit}
        budget = self.dispatch_batch
        if self._parked_count and (self._kicked or now >= self._parked_recheck):
            budget = self._unpark(now, up, busy, writes, budget)
        parked = self._parked
        decided = self._decided
        full = False  # every connector up has a full backlog: what is due now waits under its route
        while heap and heap[0][0] <= now:
            if budget <= 0:
                break
            budget -= 1
            _, _, mid = heapq.heappop(heap)
            msg = self.messages.get(mid)
            if msg is None or msg.is_final or msg.status is not MessageStatus.QUEUED:
                continue
            if full and not msg.charged and now < msg.expires_at:
                decision = decided.get(mid)
                if decision is not None and decision.route is not None:  # what _route would conclude, for less
                    parked.setdefault(decision.route.name, deque()).append(msg)
                    self._parked_count += 1
                    continue
            outcome = self._route(msg, now, up, busy)
            if outcome == "written":
                writes.messages.append(msg)
            elif outcome != "enqueued":
                parked.setdefault(outcome, deque()).append(msg)
                self._parked_count += 1
                full = self.cluster is None and bool(busy) and busy >= up
        if writes.messages:
            self.write_then(writes)
        if budget <= 0 and (self._kicked or (heap and heap[0][0] <= now)):
            return 0.0
        nxt = heap[0][0] - now if heap else None
        if self._parked_count:
            if self._parked_recheck <= now:
                self._parked_recheck = now + 1.0
            wait = self._parked_recheck - now
            nxt = wait if nxt is None else min(nxt, wait)
        return None if nxt is None else max(0.0, nxt)

    def _unpark(self, now: float, up: set[str], busy: set[str], writes: Writes, budget: int) -> int:
        """Route parked messages again (see `dispatch_due`), at most `budget`; returns what is left of it. Stopped
        by the budget, it stays kicked so that the next pass goes on."""
        self._kicked = False
        sweep = now >= self._parked_recheck  # once a second: also end what expired while parked
        if sweep:
            self._parked_recheck = now + 1.0
        for route_name in list(self._parked):
            queue = self._parked[route_name]
            if sweep:
                alive: deque[Message] = deque()
                for msg in queue:
                    if msg.is_final:
                        continue
                    if now >= msg.expires_at:
                        self._route(msg, now, up, busy)  # ends it as expired
                        writes.messages.append(msg)
                    else:
                        alive.append(msg)
                queue = self._parked[route_name] = alive
            while queue:
                msg = queue[0]
                if msg.is_final or msg.status is not MessageStatus.QUEUED:
                    queue.popleft()
                    continue
                if budget <= 0:  # the next pass goes on from here (the sweep above still covers every route)
                    self._kicked = True
                    break
                budget -= 1
                outcome = self._route(msg, now, up, busy)
                if outcome == "enqueued" or outcome == "written":
                    queue.popleft()
                    if outcome == "written":
                        writes.messages.append(msg)
                    continue
                if outcome != route_name:  # the route changed (a reload): move it
                    queue.popleft()
                    self._parked.setdefault(outcome, deque()).append(msg)
                    continue
                break  # the route is full or down again: the rest keep their place
            if not queue:
                del self._parked[route_name]
        self._parked_count = sum(len(q) for q in self._parked.values())
        return budget

    def _can_charge(self, smsc: str, msg: Message) -> bool:
        op = self.config.operator_for_smsc(smsc)
        price = str((msg.meta.get("charge") or {}).get("price", ""))
        return op is not None and any(same_price(pp.price, price) for pp in op.price_points)

    def kick(self) -> None:
        """A connector bound or has room again: parked messages get another chance now."""
        if self._parked_count:
            self._kicked = True
            self._wake.set()

    def _route(self, msg: Message, now: float, up: set[str], busy: set[str]) -> str:
        """Route one message: "enqueued", "written" (it became final), or its route's name when it must wait.

        The route decision (made at accept, `decided`, or here) is kept while the message waits, so routing it
        again when its route has room (`_unpark`) does not decide again; a reload drops the kept decisions."""
        decision = self._decided.get(msg.id)
        if decision is None:
            decision = self.router.decide(msg.to, source=msg.source, account=msg.account)
        outcome = self._route_by(msg, decision, now, up, busy)
        if outcome == "enqueued" or outcome == "written":
            self._decided.pop(msg.id, None)
        elif len(self._decided) < _MAX_KEPT_DECISIONS:
            self._decided[msg.id] = decision
        return outcome

    def _route_by(self, msg: Message, decision: MtDecision, now: float, up: set[str], busy: set[str]) -> str:
        if now >= msg.expires_at:
            msg.set_status(MessageStatus.EXPIRED, now, "validity ended before the message could be submitted")
            msg.error = {"code": "validity_expired", "message": "no SMSC accepted the message within its validity"}
            self._finalise(msg)
            return "written"
        route = decision.route
        if route is None:
            msg.set_status(MessageStatus.FAILED, now, "no route")
            msg.error = {"code": "no_route", "message": decision.reason}
            self._finalise(msg)
            return "written"
        choice = route.resolve(up, self.rng)
        if isinstance(choice, NoSmscUp) and self.cluster is not None:
            self.messages.pop(msg.id, None)  # no bind up on this node: back to the shared queue
            self.cluster.release(msg, now + 0.2)
            return "enqueued"
        if isinstance(choice, NoSmscUp):
            if route.name not in self._waiting_logged:
                self._waiting_logged.add(route.name)
                log.warning("route=%s every SMSC is down: its messages wait (up to their validity)", route.name)
            return route.name
        candidates = (choice.smsc, *choice.alternates)
        if msg.charged:  # only through an operator that can charge its price (_mt Rule 2)
            candidates = tuple(n for n in candidates if self._can_charge(n, msg))
            if not candidates:
                price = (msg.meta.get("charge") or {}).get("price")
                msg.set_status(MessageStatus.FAILED, now, "no price point")
                msg.error = {"code": "no_price_point",
                             "message": f"no SMSC of route {route.name} that is up can charge {price}"}
                self._finalise(msg)
                return "written"
        for name in candidates:
            if name in busy:
                continue
            connector = self.connectors[name]
            if connector.backlog >= connector.backlog_limit:
                busy.add(name)
                continue
            self._waiting_logged.discard(route.name)
            msg.route = route.name
            connector.enqueue(msg)
            return "enqueued"
        return route.name

    # ---- accepting -------------------------------------------------------------------------------------

    async def accept(self, messages: list[Message], writes: Writes | None = None, *, bulk: bool = False) -> None:
        """Make `messages` durable, then queue them (Rule 1). With `bulk` (the HTTP API's messages, whose
        `writes` hold nothing but their idempotency record), the store may commit them after writes made later
        (Rule 4 of _store): never for writes that update what another write may update too.

        Raises:
            StoreClosed: the store cannot make them durable; nothing was accepted.
        """
        now = self.wall()
        if self.cluster is not None:  # the shared queue: a claim loop of a node holding binds takes it (_cluster)
            await self.cluster.accept(messages, writes, now)
            self.accepted_total += len(messages)
            return
        w = writes or Writes()
        w.messages.extend(messages)
        await self.store.write(w, bulk=bulk)
        self._queue_accepted(messages, now)

    def accept_nowait(self, messages: list[Message], writes: Writes | None = None) -> anyio.Event:
        """`accept` without waiting, on one node: the writes join the store's current batch now, so calls commit in
        their order, and the messages are queued once that batch is durable (`run_post_commit`, in commit order).
        Returns the event set when the batch is durable or failed. Nothing is queued once the store has failed
        (then the daemon stops, and a restart resumes what was durable).

        Raises:
            StoreClosed: the store is closed or failed; nothing was accepted.
        """
        assert self.cluster is None, "a cluster accepts through Redis: await accept()"
        now = self.wall()
        w = writes or Writes()
        w.messages.extend(messages)
        done: anyio.Event = self.store.write_nowait(w)
        if messages:
            self._post.append((done, partial(self._queue_if_durable, messages, now)))
            self._post_wake.set()
        return done

    async def accept_in_order(self, messages: list[Message], writes: Writes | None = None, *,
                              wait: bool = False) -> anyio.Event | None:
        """Accept behind everything written before: on one node `accept_nowait`, whose event it returns, unless
        `wait`; on a cluster (or with `wait`) `accept`, which returns once the commit is done (and this, None).

        Raises:
            StoreClosed: the store is closed or failed; nothing was accepted.
        """
        if wait or self.cluster is not None:
            await self.accept(messages, writes)
            return None
        return self.accept_nowait(messages, writes)

    def _queue_if_durable(self, messages: list[Message], now: float) -> None:
        if self.store.is_open:  # else the commit failed (the daemon stops): these were never accepted
            self._queue_accepted(messages, now)

    def _queue_accepted(self, messages: list[Message], now: float) -> None:
        for msg in messages:
            self.messages[msg.id] = msg
            self.schedule(msg, max(now, msg.send_at or 0.0))
        self.accepted_total += len(messages)

    def cancel(self, msg: Message) -> bool:
        """Cancel a message that has not been submitted yet; False when it is too late."""
        if msg.is_final or msg.status is not MessageStatus.QUEUED or msg.on_wire or any(
                p.smsc_message_id for p in msg.parts):
            return False
        live = self.messages.get(msg.id)
        if live is not None and live is not msg and (live.on_wire or live.status is not MessageStatus.QUEUED):
            return False
        target = live or msg
        target.set_status(MessageStatus.CANCELLED, self.wall(), "cancelled by the API")
        self._finalise(target)
        return True

    # ---- writes that end in callbacks ------------------------------------------------------------------

    def write_then(self, writes: Writes) -> anyio.Event:
        """Queue `writes`; once durable, the messages among them that became final go to their callbacks.

        Returns the event that is set when the writes are durable.
        """
        done: anyio.Event = self.store.write_nowait(writes)
        finals = [m for m in writes.messages if m.is_final]
        if finals:
            self._post.append((done, partial(self.after_commit, finals)))
            self._post_wake.set()
        return done

    async def run_post_commit(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hand final messages to the callback sender (write_then) and queue accepted ones (accept_nowait), in
        commit order."""
        task_status.started()
        while True:
            while not self._post:
                self._post_wake = anyio.Event()
                await self._post_wake.wait()
            done, then = self._post[0]
            await done.wait()
            self._post.popleft()
            then()

    def fail(self, msg: Message, code: str, message: str, smsc: str = "") -> None:
        """End `msg` as failed now (an error that no SMSC could change), durably and with its callback."""
        msg.set_status(MessageStatus.FAILED, self.wall(), message, smsc)
        msg.error = {"code": code, "message": message}
        self._finalise(msg)
        self.write_then(Writes(messages=[msg]))

    # ---- results from connectors -----------------------------------------------------------------------

    def _finalise(self, msg: Message) -> None:
        """Bookkeeping when `msg` became final: leave the working set, flag its callback."""
        self.messages.pop(msg.id, None)
        self._submitted_lru.pop(msg.id, None)
        self._decided.pop(msg.id, None)  # a parked message cancelled or expired: its kept decision goes with it
        recent = self._recent_final
        recent[msg.id] = msg
        if len(recent) > self.max_recent_final:
            recent.popitem(last=False)
        self.final_total += 1
        if self.observe_final is not None:
            self.observe_final(msg, msg.status_at - max(msg.created_at, msg.send_at or 0.0))
        if self.callback_target(msg) is not None:
            msg.callback_pending = True

    def callback_target(self, msg: Message) -> str | None:
        if msg.callback_url:
            return msg.callback_url
        account = self._accounts.get(msg.account)
        return account.callback.url if account is not None else None

    def after_commit(self, msgs: Iterable[Message]) -> None:
        """Hand messages that became final (and are durable now) to `final_hooks` and the callback sender."""
        hook = self.on_final
        hooks = self.final_hooks
        for m in msgs:
            if not m.is_final:
                continue
            for h in hooks:
                h(m)
            if hook is not None and m.callback_pending:
                hook(m)

    def submit_ok(self, msg: Message, part: int, smsc: str, smsc_message_id: str, writes: Writes) -> list[Receipt]:
        """A part was accepted by the SMSC. Returns receipts that had arrived before this resp."""
        now = self.wall()
        msg.parts[part].smsc_message_id = smsc_message_id
        msg.parts[part].smsc = smsc
        policy = self.policy(smsc)
        scope = self.scope(smsc)
        keys = correlation_keys(smsc_message_id, policy)
        for key in keys:
            writes.smsc_ids.append((scope, key, msg.id, part))
        # On a cluster, receipts that came first are parked in Redis and come back with this commit (_cluster).
        early = [] if self.cluster is not None else self.correlator.register(
            scope, smsc_message_id, msg.id, part, time.monotonic(), policy=policy, destination=msg.to, keys=keys)
        parts = msg.parts
        if (len(parts) == 1 or all(p.smsc_message_id for p in parts)) and msg.status is MessageStatus.QUEUED:
            msg.smsc = smsc
            msg.set_status(MessageStatus.SUBMITTED, now, "", smsc)
            msg.on_wire = False
            if self.cluster is not None:
                # Another node may apply its receipts from now on: this node's copy would go stale (_cluster).
                self.messages.pop(msg.id, None)
            else:
                self._remember_submitted(msg.id)
            if self.observe_submitted is not None:
                self.observe_submitted(msg, now - max(msg.created_at, msg.send_at or 0.0))
        writes.messages.append(msg)
        return early

    def _remember_submitted(self, mid: str) -> None:
        lru = self._submitted_lru
        lru[mid] = None
        while len(lru) > self.max_submitted_in_memory:
            old, _ = lru.popitem(last=False)
            self.messages.pop(old, None)  # still in the store; a receipt reloads it

    def submit_failed(self, msg: Message, part: int, smsc: str, status: int, writes: Writes) -> str:
        """A part was refused; returns the SubmitOutcome applied (the caller slows down on THROTTLED)."""
        now = self.wall()
        outcome = classify_status(status)
        name = Status.describe(status)
        if outcome == SubmitOutcome.THROTTLED:
            self._requeue(msg, now + 0.05, None)
            return outcome
        if outcome == SubmitOutcome.PERMANENT or (msg.charged and any(p.smsc_message_id for p in msg.parts)):
            msg.set_status(MessageStatus.FAILED, now, name, smsc)
            msg.error = {"code": "smsc_refused", "smpp_status": status, "smpp_status_name": name,
                         "message": f"{smsc} refused part {part + 1} with {name}"}
            msg.on_wire = False
            self._finalise(msg)
            writes.messages.append(msg)
            return SubmitOutcome.PERMANENT
        msg.attempts += 1
        retry = self.config.messages.retry
        delay = min(retry.max_s, retry.initial_s * retry.multiplier ** max(0, msg.attempts - 1))
        if now + delay >= msg.expires_at:
            msg.set_status(MessageStatus.EXPIRED, now, f"{name}; validity ends before the next attempt", smsc)
            msg.error = {"code": "validity_expired", "smpp_status": status, "smpp_status_name": name,
                         "message": "temporary SMSC errors until the validity ended"}
            self._finalise(msg)
        else:
            msg.history.append(StatusChange(now, "retry", name, smsc))
            self._requeue(msg, now + delay * (0.8 + 0.4 * self.rng()), None)
        msg.on_wire = False
        writes.messages.append(msg)
        return SubmitOutcome.RETRY

    def submit_lost(self, msg: Message, part: int, smsc: str, reason: str, writes: Writes) -> None:
        """A part's outcome is unknown (response timeout, connection lost, undecodable response): Rule 3."""
        now = self.wall()
        if msg.is_final:
            return
        if msg.charged or not msg.resend_after_crash:
            msg.set_status(MessageStatus.UNKNOWN, now, reason, smsc)
            msg.error = {"code": "outcome_unknown", "message": f"{reason}; the message may have been delivered and "
                         "is not resent"}
            self._finalise(msg)
        else:
            msg.history.append(StatusChange(now, "retry", reason, smsc))
            msg.attempts += 1
            self._requeue(msg, now + 0.5, None)
        msg.on_wire = False
        writes.messages.append(msg)

    def _requeue(self, msg: Message, due: float, detail: str | None) -> None:
        if detail:
            msg.history.append(StatusChange(self.wall(), "requeued", detail))
        self.schedule(msg, due)

    def give_back(self, msgs: Iterable[Message]) -> None:
        """A connector returns messages it could not send (it went down): route them again now."""
        now = self.wall()
        for msg in msgs:
            if not msg.is_final and msg.id in self.messages:
                if self.cluster is not None:  # back to the shared queue: a node with a bind takes it
                    self.messages.pop(msg.id, None)
                    self.cluster.release(msg, now)
                else:
                    self.schedule(msg, now)

    # ---- receipts --------------------------------------------------------------------------------------

    async def match_or_park(self, smsc: str, receipt: Receipt, pdu: Pdu) -> tuple[str, int] | None:
        """Our (message_id, part) for a receipt; None when it is parked durably until its submit_sm_resp comes.
        `pdu` (the deliver_sm) is encoded only to be parked: most receipts match in memory."""
        if self.cluster is not None:
            return await self.cluster.match_or_park(smsc, receipt, encode_pdu(pdu))
        hit = self.match_receipt(smsc, receipt)
        if hit is None:
            await self.park_early(smsc, receipt, pdu)
        return hit

    async def park_early(self, smsc: str, receipt: Receipt, pdu: Pdu) -> None:
        """Keep a receipt that `match_receipt` found no part for durably, until its submit_sm_resp comes."""
        rows = await self.store.write(Writes(early_receipts=[(self.scope(smsc), encode_pdu(pdu))]))
        if rows:
            self.park_rows(receipt, rows[0])

    def match_receipt(self, smsc: str, receipt: Receipt) -> tuple[str, int] | None:
        """Our (message_id, part) for a receipt, from memory or the store; None parks it as early."""
        mono = time.monotonic()
        policy = self.policy(smsc)
        smsc = self.scope(smsc)
        m = self.correlator.match(smsc, receipt, mono, policy=policy)
        if m is not None:
            return m.message_id, m.part
        keys = receipt_keys(receipt, policy)
        hit = self.store.lookup_smsc_id(smsc, keys)
        if hit is None:
            return None
        mid, part = hit
        # Known to the store only (a restart, or evicted from memory): register it so the parked receipt,
        # which the correlator now holds, is handed back and the next receipt for it is matched in memory.
        for key in keys:
            self.correlator.register(smsc, key, mid, part, mono, policy=IdPolicy.parse("as-is"))
        return mid, part

    def apply_receipt(self, mid: str, part: int, receipt: Receipt, smsc: str, writes: Writes) -> Message | None:
        """Fold a receipt into its message (Rule 1 of _model); the message to write, or None if unknown."""
        return self.apply_receipt_to(self.find(mid), mid, part, receipt, smsc, writes)

    def apply_receipt_to(self, msg: Message | None, mid: str, part: int, receipt: Receipt, smsc: str,
                         writes: Writes) -> Message | None:
        """`apply_receipt` with the record already in hand (None: there is none): on a cluster it comes with the
        receipt's match (Cluster.match_or_park_many), so that nothing on the receipt path blocks on a read."""
        self.receipts_total += 1
        if msg is None:
            self.receipts_unmatched_total += 1
            log.error("smsc=%s id=%s receipt for a message the store does not know", smsc, mid)
            return None
        now = self.wall()
        if part >= len(msg.parts):
            msg.parts.extend(Part() for _ in range(part + 1 - len(msg.parts)))
        rstatus = receipt.status
        value = _RECEIPT_VALUE[rstatus]
        detail = receipt.stat or value
        code = receipt.error_code
        if code is not None:
            detail = f"{detail} err={code}"
        if not rstatus.is_final:
            msg.history.append(StatusChange(now, value.lower(), detail, smsc))
            writes.messages.append(msg)
            return msg
        msg.parts[part].receipt = value
        if len(msg.parts) == 1:  # the fold of one part is its status
            folded: ReceiptStatus | None = rstatus
        else:
            folded = fold_part_statuses(ReceiptStatus(p.receipt) if p.receipt else None for p in msg.parts)
        if folded is None or not folded.is_final:
            msg.history.append(StatusChange(now, f"part {part + 1}: {value.lower()}", detail, smsc))
            writes.messages.append(msg)
            return msg
        status = RECEIPT_TO_STATUS.get(folded, MessageStatus.UNKNOWN)
        if msg.set_status(status, now, detail, smsc):
            if status is not MessageStatus.DELIVERED:
                msg.error = {"code": "receipt", "receipt_status": folded.value, "err": receipt.err,
                             "network_error": None if receipt.network_error is None else
                             [receipt.network_error.network_type, receipt.network_error.error_code]}
            self._finalise(msg)
        writes.messages.append(msg)
        return msg

    def find(self, mid: str) -> Message | None:
        """The freshest record of a message: the working set, the recently final ones, then the store."""
        return self.messages.get(mid) or self._recent_final.get(mid) or self.store.get(mid)

    def held(self, mid: str) -> Message | None:
        """This node's own record of a message (the working set, the recently final ones), which `find` prefers
        to the store's."""
        return self.messages.get(mid) or self._recent_final.get(mid)

    def park_rows(self, receipt: Receipt, row: int) -> None:
        self._early_rows[id(receipt)] = row

    def early_row(self, receipt: Receipt) -> int | None:
        return self._early_rows.pop(id(receipt), None)

    def statistics(self) -> CoreStatistics:
        return CoreStatistics(len(self.messages), len(self._heap), self.accepted_total, self.final_total,
                              self.receipts_total, self.receipts_unmatched_total)


def _policy(s: SmscConfig) -> IdPolicy:
    return IdPolicy.parse(s.receipt_id_format.value)


def describe(msg: Message) -> dict[str, Any]:
    """Log fields for a message (MSISDN masked, no text)."""
    return {"id": msg.id, "to": mask_msisdn(msg.to), "status": msg.status.value}
