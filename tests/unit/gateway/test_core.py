"""The core's decisions with a real store, fake connectors and a hand-held wall clock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dlr import ReceiptStatus, parse_receipt_text
from gateway._config import parse_config
from gateway._core import GatewayCore, SubmitOutcome, classify_status
from gateway._model import Message, MessageStatus, Part, new_message_id
from gateway._store import SqliteStore, Writes
from smpp import Status
from tests.conftest import ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


CONFIG: dict[str, Any] = {
    "accounts": [{"id": "acme", "callback": {"url": "http://127.0.0.1:1/cb"}}],
    "smscs": [{"name": "a", "system_id": "a", "password": "x"}, {"name": "b", "system_id": "b", "password": "x"}],
    "routes": [{"prefix": "44", "smscs": ["a", "b"]}, {"prefix": "33", "weights": {"a": 1}}],
    "messages": {"retry": {"initial_s": 10, "max_s": 100, "multiplier": 2}},
}


class FakeConnector:
    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.up = up
        self.queued: list[Message] = []
        self.limit = 100

    @property
    def can_submit(self) -> bool:
        return self.up

    @property
    def backlog(self) -> int:
        return len(self.queued)

    @property
    def backlog_limit(self) -> int:
        return self.limit

    def enqueue(self, message: Message) -> None:
        self.queued.append(message)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[tuple[GatewayCore, ManualClock, dict[str, FakeConnector]]]:
    cfg = parse_config(CONFIG, base_dir=tmp_path)
    store = SqliteStore(tmp_path / "gw.db")
    clock = ManualClock(1_000_000.0)
    c = GatewayCore(cfg, store, wall=clock, rng=lambda: 0.5)
    conns = {"a": FakeConnector("a"), "b": FakeConnector("b")}
    c.connectors.update(conns)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        yield c, clock, conns
        tg.cancel_scope.cancel()


def msg(clock: ManualClock, **kw: Any) -> Message:
    fields: dict[str, Any] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                              "text": "hi", "created_at": clock.now, "expires_at": clock.now + 3600}
    fields.update(kw)
    return Message(**fields)


@pytest.mark.parametrize(("status", "outcome"), [
    (Status.ESME_ROK, SubmitOutcome.OK),
    (Status.ESME_RTHROTTLED, SubmitOutcome.THROTTLED),
    (Status.ESME_RMSGQFUL, SubmitOutcome.THROTTLED),
    (Status.ESME_RINVDSTADR, SubmitOutcome.PERMANENT),
    (Status.ESME_RINVSRCADR, SubmitOutcome.PERMANENT),
    (Status.ESME_RSYSERR, SubmitOutcome.RETRY),
    (Status.ESME_RSUBMITFAIL, SubmitOutcome.RETRY),
    (0x0400, SubmitOutcome.RETRY),  # a vendor code: assume temporary
])
def test_classify_status(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


async def test_accept_persists_then_failover_route_picks_first_up(core: Any) -> None:
    c, clock, conns = core
    m = msg(clock)
    await c.accept([m])
    assert c.store.get(m.id) is not None
    conns["a"].up = False
    c.dispatch_due()
    assert conns["b"].queued == [m] and conns["a"].queued == []
    assert m.route == "routes[0]"


async def test_every_smsc_down_keeps_the_message_waiting_until_validity(core: Any) -> None:
    c, clock, conns = core
    for conn in conns.values():
        conn.up = False
    m = msg(clock, expires_at=clock.now + 5)
    await c.accept([m])
    assert c.dispatch_due() == pytest.approx(1.0)  # parked: looked at again within a second
    assert m.status is MessageStatus.QUEUED and c.ready_count == 1
    clock.now += 6
    c.dispatch_due()
    assert m.status is MessageStatus.EXPIRED
    assert m.callback_pending  # the account has a callback URL


async def test_no_route_fails_the_message(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, to="12125550100")
    await c.accept([m])
    c.dispatch_due()
    assert m.status is MessageStatus.FAILED and m.error["code"] == "no_route"


async def test_scheduled_message_waits_for_send_at(core: Any) -> None:
    c, clock, conns = core
    m = msg(clock, send_at=clock.now + 60)
    await c.accept([m])
    assert c.dispatch_due() == pytest.approx(60)
    assert conns["a"].queued == []
    clock.now += 60
    c.dispatch_due()
    assert conns["a"].queued == [m]


async def test_busy_connector_defers_and_spills_to_alternate(core: Any) -> None:
    c, clock, conns = core
    conns["a"].limit = 1
    ms = [msg(clock) for _ in range(3)]
    await c.accept(ms)
    c.dispatch_due()
    assert conns["a"].queued == ms[:1]
    assert conns["b"].queued == ms[1:]  # the failover alternate takes what a cannot
    conns["b"].limit = 2
    more = [msg(clock) for _ in range(2)]
    await c.accept(more)
    c.dispatch_due()
    assert c.ready_count == 2  # both full: parked, not spinning
    conns["a"].queued.clear()
    c.kick()
    c.dispatch_due()
    assert conns["a"].queued == more[:1] and c.ready_count == 1


async def test_a_parked_message_keeps_its_route_decision_until_a_reload(core: Any, tmp_path: Path) -> None:
    c, clock, conns = core
    conns["a"].limit = conns["b"].limit = 0
    m = msg(clock)
    await c.accept([m])
    decisions: list[str] = []
    router = c.router

    class Counting:
        def decide(self, to: str, **kw: Any) -> Any:
            decisions.append(to)
            return router.decide(to, **kw)

    c.router = Counting()
    c.dispatch_due()  # decided once, then parked: both SMSCs are full
    c.kick()
    c.dispatch_due()  # routed again from its parking: the kept decision
    assert decisions == [m.to] and c.ready_count == 1
    conns["a"].limit = 1
    c.kick()
    c.dispatch_due()
    assert conns["a"].queued == [m] and decisions == [m.to]
    assert m.id not in c._decided  # enqueued: nothing kept for it
    conns["a"].queued.clear()
    conns["a"].limit = 0
    other = msg(clock)
    await c.accept([other])
    c.dispatch_due()
    assert other.id in c._decided
    c.apply_config(parse_config(CONFIG, base_dir=tmp_path))  # a reload: decided again under the new routes
    assert other.id not in c._decided


async def test_once_every_connector_is_full_the_rest_of_a_pass_is_parked_without_routing(core: Any) -> None:
    c, clock, conns = core
    conns["a"].limit = conns["b"].limit = 0
    ms = [msg(clock) for _ in range(4)]
    late = msg(clock, expires_at=clock.now + 5)
    for m in [*ms, late]:
        c.decided(m, c.router.decide(m.to, source=m.source, account=m.account))  # as the API does at accept
    await c.accept([*ms, late])
    clock.now += 10  # `late` is past its validity now
    routed: list[str] = []
    route = c._route

    def counting(m: Message, *args: Any) -> str:
        routed.append(m.id)
        return route(m, *args)
    c._route = counting
    c.dispatch_due()
    # The first found both SMSCs full; the others wait under their kept route without being routed, except the
    # one whose validity ended: routing ends it.
    assert routed == [ms[0].id, late.id] and late.status is MessageStatus.EXPIRED
    assert c.ready_count == 4 and [m.id for m in c._parked["routes[0]"]] == [m.id for m in ms]
    conns["a"].limit = 10
    c.kick()
    c.dispatch_due()
    assert conns["a"].queued == ms  # in their order


async def test_a_parked_message_that_ends_drops_its_kept_decision(core: Any) -> None:
    c, clock, conns = core
    conns["a"].limit = conns["b"].limit = 0
    m = msg(clock)
    await c.accept([m])
    c.dispatch_due()
    assert m.id in c._decided and c.ready_count == 1  # parked with its decision
    assert c.cancel(m)
    assert m.id not in c._decided


async def test_a_pass_of_the_dispatcher_routes_at_most_its_batch(core: Any) -> None:
    c, clock, conns = core
    c.dispatch_batch = 3
    conns["a"].limit = 1000
    ms = [msg(clock) for _ in range(7)]
    await c.accept(ms)
    assert c.dispatch_due() == 0.0  # more is due: call again after the loop's other tasks ran
    assert conns["a"].queued == ms[:3]
    assert c.dispatch_due() == 0.0
    assert c.dispatch_due() is None  # the last one: nothing waits now
    assert conns["a"].queued == ms
    # Parked messages share the budget and keep their order across passes.
    conns["a"].limit = conns["b"].limit = 0
    more = [msg(clock) for _ in range(5)]
    await c.accept(more)
    c.dispatch_due()
    c.dispatch_due()
    assert c.ready_count == 5
    conns["a"].queued.clear()
    conns["a"].limit = 1000
    c.kick()
    assert c.dispatch_due() == 0.0 and conns["a"].queued == more[:3]
    assert c.dispatch_due() is None and conns["a"].queued == more and c.ready_count == 0


async def test_all_parts_acked_make_the_message_submitted(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, parts=[Part(), Part()])
    await c.accept([m])
    w = Writes()
    c.submit_ok(m, 0, "a", "1A", w)
    assert m.status is MessageStatus.QUEUED
    c.submit_ok(m, 1, "a", "1B", w)
    assert m.status is MessageStatus.SUBMITTED and m.smsc == "a"
    assert ("a", "1A", m.id, 0) in [(s, k, i, p) for s, k, i, p in w.smsc_ids] or any(
        k.lower() == "1a" for _, k, _, _ in w.smsc_ids)


async def test_throttled_submit_is_requeued_quickly(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, parts=[Part()])
    await c.accept([m])
    w = Writes()
    assert c.submit_failed(m, 0, "a", Status.ESME_RTHROTTLED, w) == SubmitOutcome.THROTTLED
    assert m.status is MessageStatus.QUEUED and m.next_attempt_at == pytest.approx(clock.now + 0.05)
    assert w.messages == []  # nothing to persist: the status did not change


async def test_permanent_error_fails_with_the_smpp_status(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, parts=[Part()])
    await c.accept([m])
    w = Writes()
    c.submit_failed(m, 0, "a", Status.ESME_RINVDSTADR, w)
    assert m.status is MessageStatus.FAILED
    assert m.error == {"code": "smsc_refused", "smpp_status": 0x0B, "smpp_status_name": "ESME_RINVDSTADR",
                       "message": "a refused part 1 with ESME_RINVDSTADR"}
    assert m.id not in c.messages


async def test_temporary_error_backs_off_then_expires(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, parts=[Part()], expires_at=clock.now + 25)
    await c.accept([m])
    c.submit_failed(m, 0, "a", Status.ESME_RSYSERR, Writes())
    assert m.status is MessageStatus.QUEUED and m.attempts == 1
    assert m.next_attempt_at == pytest.approx(clock.now + 10)  # initial_s with the middle of the jitter
    c.submit_failed(m, 0, "a", Status.ESME_RSYSERR, Writes())
    assert m.next_attempt_at == pytest.approx(clock.now + 20)
    c.submit_failed(m, 0, "a", Status.ESME_RSYSERR, Writes())  # the next try (40 s) is past the validity
    assert m.status is MessageStatus.EXPIRED


async def test_lost_outcome_resends_free_but_never_charged(core: Any) -> None:
    c, clock, _ = core
    free = msg(clock, parts=[Part()])
    charged = msg(clock, parts=[Part()], charged=True)
    await c.accept([free, charged])
    c.submit_lost(free, 0, "a", "no submit_sm_resp", Writes())
    c.submit_lost(charged, 0, "a", "no submit_sm_resp", Writes())
    assert free.status is MessageStatus.QUEUED and free.attempts == 1
    assert charged.status is MessageStatus.UNKNOWN and charged.error["code"] == "outcome_unknown"


async def test_restore_marks_charged_on_wire_unknown_and_requeues_the_rest(core: Any, tmp_path: Path) -> None:
    c, clock, _ = core
    on_wire_charged = msg(clock, charged=True, on_wire=True)
    on_wire_free = msg(clock, on_wire=True)
    no_resend = msg(clock, on_wire=True, resend_after_crash=False)
    submitted = msg(clock, status=MessageStatus.SUBMITTED)
    await c.store.write(Writes(messages=[on_wire_charged, on_wire_free, no_resend, submitted]))
    fresh = GatewayCore(c.config, c.store, wall=clock)
    requeued, unknown = fresh.restore()
    assert (requeued, unknown) == (1, 2)
    assert fresh.messages[on_wire_free.id].on_wire is False
    assert submitted.id in fresh.messages  # awaits its receipt
    await anyio.sleep(0.05)
    stored = c.store.get(on_wire_charged.id)
    assert stored is not None and stored.status is MessageStatus.UNKNOWN


async def test_receipts_fold_parts_and_late_receipts_only_add_history(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, parts=[Part("A"), Part("B")], status=MessageStatus.SUBMITTED)
    await c.accept([m])
    delivered = parse_receipt_text("id:A stat:DELIVRD err:000")
    assert delivered is not None and delivered.status is ReceiptStatus.DELIVERED
    w = Writes()
    c.apply_receipt(m.id, 0, delivered, "a", w)
    assert m.status is MessageStatus.SUBMITTED
    c.apply_receipt(m.id, 1, delivered, "a", w)
    assert m.status is MessageStatus.DELIVERED and m.callback_pending
    undeliv = parse_receipt_text("id:B stat:UNDELIV err:001")
    assert undeliv is not None
    c.apply_receipt(m.id, 1, undeliv, "a", w)
    assert m.status is MessageStatus.DELIVERED  # final stays final
    assert m.history[-1].status == "late:undeliverable"


async def test_failed_part_fails_the_message_with_receipt_error(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, parts=[Part("A"), Part("B")], status=MessageStatus.SUBMITTED)
    await c.accept([m])
    undeliv = parse_receipt_text("id:A stat:UNDELIV err:034")
    assert undeliv is not None
    c.apply_receipt(m.id, 0, undeliv, "a", Writes())
    assert m.status is MessageStatus.UNDELIVERABLE
    assert m.error is not None and m.error["err"] == "034"


async def test_cancel_only_before_submission(core: Any) -> None:
    c, clock, _ = core
    m = msg(clock, send_at=clock.now + 60)
    await c.accept([m])
    assert c.cancel(m) and m.status is MessageStatus.CANCELLED
    n = msg(clock, parts=[Part("X")])
    await c.accept([n])
    assert not c.cancel(n)


async def test_accept_nowait_queues_once_the_commit_is_durable_and_nothing_from_a_commit_that_failed(
        tmp_path: Path) -> None:
    from gateway._store import LedgerOutcome

    store = SqliteStore(tmp_path / "gw.db")  # inline: its commits are run by hand below
    store.open_sync()
    clock = ManualClock(1_000_000.0)
    c = GatewayCore(parse_config(CONFIG, base_dir=tmp_path), store, wall=clock, rng=lambda: 0.5)
    good, bad = msg(clock), msg(clock)
    durable = c.accept_nowait([good])
    assert not durable.is_set() and good.id not in c.messages  # queued for the next commit only
    await store._commit_pending()
    assert durable.is_set() and store.get(good.id) == good

    async def post_commit() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(c.run_post_commit)
            with anyio.fail_after(5):
                while c._post:
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()

    await post_commit()
    assert good.id in c.messages and c.accepted_total == 1 and conns_queued(c) == [good]
    broken = Writes(ledger_outcomes=[LedgerOutcome("a1", 1.0, None)])  # type: ignore[arg-type]  # NOT NULL
    failed = c.accept_nowait([bad], broken)
    with pytest.raises(sqlite3.IntegrityError):
        await store._commit_pending()
    assert failed.is_set() and not store.is_open
    await post_commit()
    assert bad.id not in c.messages and c.accepted_total == 1  # its commit failed: never accepted
    store._close()


def conns_queued(c: GatewayCore) -> list[Message]:
    """What the core has scheduled: its messages waiting in the ready heap."""
    return [c.messages[mid] for _, _, mid in sorted(c._heap)]
