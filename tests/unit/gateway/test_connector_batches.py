"""The events of one read share one write and one acker entry (_connector Rules 1 and 2, `_Group`).

A real GatewayCore over an inline SqliteStore whose commits the test runs by hand; the connector's acker runs
against a fake connection that records what would be sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from dlr import ReceiptKind, ReceiptStatus, build_receipt_pdu
from gateway._config import parse_config
from gateway._connector import Connector, Job, SessionInfo, _Live
from gateway._core import GatewayCore
from gateway._model import Message, MessageStatus, Part, new_message_id
from gateway._store import SqliteStore, Writes
from smpp import DeliverSm, SubmitSm, SubmitSmResp
from smpp._session import RequestReceived, ResponseReceived
from tests.conftest import ManualClock, RecordingConn

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "accounts": [{"id": "acme"}],
    "smscs": [{"name": "sim", "system_id": "a", "password": "x", "receipt_id_format": "as-is"}],
    "routes": [{"prefix": "", "smscs": ["sim"]}],
}
WHEN = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
WINDOW = 10


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


def receipt(smsc_id: str, seq: int) -> DeliverSm:
    mt = SubmitSm(source_addr="ACME", destination_addr="447911123456", short_message=b"hi")
    return build_receipt_pdu(mt, smsc_message_id=smsc_id, status=ReceiptStatus.DELIVERED, submit_date=WHEN,
                             done_date=WHEN, kind=ReceiptKind.SMSC_DELIVERY_RECEIPT, sequence_number=seq)


async def test_one_read_makes_one_write_and_answers_after_it_is_durable_in_arrival_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")  # inline: the test runs its commits
    store.open_sync()
    clock = ManualClock(1_000_000.0)
    core = GatewayCore(parse_config(CONFIG, base_dir=tmp_path), store, wall=clock, rng=lambda: 0.5)
    finals: list[Message] = []
    core.final_hooks.append(finals.append)
    connector = Connector(core.config.smscs[0], core)
    conn = RecordingConn()
    live = _Live(conn, SessionInfo(0, "trx", "bound"), anyio.Semaphore(WINDOW))  # type: ignore[arg-type]
    msgs = [Message(id=new_message_id(), account="acme", to="447911123456", source="ACME", text="hi",
                    created_at=clock.now, expires_at=clock.now + 3600, parts=[Part()]) for _ in range(3)]
    store.write_nowait(Writes(messages=list(msgs)))
    await store._commit_pending()
    requests = []
    for seq, m in enumerate(msgs, start=1):
        core.messages[m.id] = m
        await live.slots.acquire()
        requests.append(SubmitSm(sequence_number=seq))
        live.inflight[seq] = Job(m, 0, requests[-1])
    writes_queued = []
    write_nowait = store.write_nowait

    def counting(writes: Writes) -> anyio.Event:
        writes_queued.append(writes)
        return write_nowait(writes)
    store.write_nowait = counting  # type: ignore[method-assign]

    # One read: three submit_sm_resp, then the receipts of the first two messages (the second one first).
    events = [ResponseReceived(req, SubmitSmResp(sequence_number=req.sequence_number, message_id=f"S{i}"))
              for i, req in enumerate(requests)]
    events += [RequestReceived(receipt("S1", 71)), RequestReceived(receipt("S0", 72))]
    async with anyio.create_task_group() as tg:
        tg.start_soon(connector._acker, live)
        for ev in events:
            await connector._on_event(live, ev)
        connector._close_group(live)
        assert len(writes_queued) == 1 and len(live.acks) == 1
        assert sorted(m.id for m in writes_queued[0].messages) == sorted([m.id for m in msgs] + [msgs[0].id,
                                                                                                 msgs[1].id])
        await anyio.sleep(0.05)
        assert conn.sent == [] and live.slots.value == WINDOW - 3  # Rules 1 and 2: nothing before the commit
        connector._live.append(live)
        assert connector.statistics().awaiting_commit == 3  # smppgw_smsc_window_awaiting_commit
        await store._commit_pending()
        with anyio.fail_after(5):
            while len(conn.sent) < 2:
                await anyio.sleep(0.005)
        tg.cancel_scope.cancel()
    assert [p.sequence_number for p in conn.sent] == [71, 72]  # answered in arrival order
    assert live.slots.value == WINDOW and not live.acks and live.group is None
    assert connector.statistics().awaiting_commit == 0
    assert [m.id for m in finals] == [msgs[1].id, msgs[0].id]
    stored = [store.get(m.id) for m in msgs]
    assert [s.status if s else None for s in stored] == [MessageStatus.DELIVERED, MessageStatus.DELIVERED,
                                                         MessageStatus.SUBMITTED]
    store._close()


async def test_events_after_a_closed_batch_go_into_the_next(tmp_path: Path) -> None:
    """A batch closed while the reader waits (a timer pass) leaves the rest of the read to a batch of its own,
    answered after the first, still in arrival order."""
    store = SqliteStore(tmp_path / "gw.db")
    store.open_sync()
    core = GatewayCore(parse_config(CONFIG, base_dir=tmp_path), store, wall=ManualClock(1_000_000.0))
    mo_calls: list[str] = []

    def mo_hook(smsc: str, pdu: DeliverSm | Any, writes: Writes) -> None:
        mo_calls.append(pdu.short_message.decode())

    connector = Connector(core.config.smscs[0], core, mo_hook=mo_hook)
    conn = RecordingConn()
    live = _Live(conn, SessionInfo(0, "trx", "bound"), anyio.Semaphore(WINDOW))  # type: ignore[arg-type]

    def mo(seq: int) -> RequestReceived:
        return RequestReceived(DeliverSm(source_addr="447911123456", destination_addr="ACME",
                                         short_message=b"mo%d" % seq, sequence_number=seq))
    async with anyio.create_task_group() as tg:
        tg.start_soon(connector._acker, live)
        await connector._on_event(live, mo(1))
        connector._close_group(live)  # as a timer pass would
        await connector._on_event(live, mo(2))
        await connector._on_event(live, mo(3))
        connector._close_group(live)
        assert len(live.acks) == 2 and [len(a[2]) for a in live.acks] == [1, 2]
        with anyio.fail_after(5):  # no writes: nothing to wait for
            while len(conn.sent) < 3:
                await anyio.sleep(0.005)
        tg.cancel_scope.cancel()
    assert [p.sequence_number for p in conn.sent] == [1, 2, 3] and mo_calls == ["mo1", "mo2", "mo3"]
    store._close()
