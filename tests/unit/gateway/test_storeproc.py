"""The store writer process (gateway/_storeproc.py, store.writer process): its frames, its transactions, its
signals and its end, and what SqliteStore does when it dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.abc
import msgspec
import pytest

import gateway._store
from gateway._model import Message, new_message_id
from gateway._store import PIPELINE_DEPTH, SqliteStore, StoreClosed, Writes, sql_batch
from gateway._storeproc import BATCH_FIELDS, connect, execute_batch

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def message(**kw: object) -> Message:
    fields: dict[str, object] = {"id": new_message_id(), "account": "acme", "to": "447911123456", "source": "ACME",
                                 "text": "hello", "created_at": 1.0, "expires_at": 1e12}
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


def schema(path: Path) -> None:
    """A database with the store's schema, as the daemon leaves it before it starts the writer process."""
    store = SqliteStore(path, writer="process")
    store.open_sync()
    store._close()


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def read_frame(stream: object) -> list[object]:
    assert hasattr(stream, "read")
    size = int.from_bytes(stream.read(4), "big")
    return list(msgspec.msgpack.decode(stream.read(size)))


def start_writer(path: Path) -> subprocess.Popen[bytes]:
    """The schema at `path`, then a writer process on it that said it is ready."""
    schema(path)
    proc = subprocess.Popen([sys.executable, "-m", "gateway._storeproc", str(path), "normal", "0.05"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert read_frame(proc.stdout) == ["ready", [], 0]
    return proc


def ask(proc: subprocess.Popen[bytes], batch: object) -> list[object]:
    """Send one batch frame to the writer process and read its answer."""
    assert proc.stdin is not None
    proc.stdin.write(frame(msgspec.msgpack.encode(batch)))
    proc.stdin.flush()
    return read_frame(proc.stdout)


def with_null_outcome(batch: Sequence[Sequence[tuple[object, ...]]]) -> list[list[tuple[object, ...]]]:
    """`batch` with a ledger outcome whose state is NULL, which the schema refuses (NOT NULL)."""
    broken = [list(rows) for rows in batch]
    broken[BATCH_FIELDS.index("ledger_outcomes")] = [("a1", 1.0, None, "", "")]
    return broken


def count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_a_batch_is_one_transaction_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    schema(path)
    conn = connect(str(path), "normal")
    good = sql_batch(Writes(messages=[message()], smsc_ids=[("sim", "1", "m1", 0)]))
    assert execute_batch(conn, good) == ([], 2)
    # The last list breaks a NOT NULL constraint: the rows before it in the same batch are rolled back too.
    bad = with_null_outcome(sql_batch(Writes(messages=[message()], smsc_ids=[("sim", "2", "m2", 0)])))
    with pytest.raises(sqlite3.IntegrityError):
        execute_batch(conn, bad)
    conn.close()
    assert count(path, "messages") == 1 and count(path, "smsc_ids") == 1


def test_the_process_answers_each_batch_after_commit_and_ends_when_its_input_closes(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    proc = start_writer(path)
    assert proc.stdin is not None
    batch = sql_batch(Writes(messages=[message(), message()], early_receipts=[("sim", b"pdu1"), ("sim", b"pdu2")]))
    error, early_ids, rows = ask(proc, batch)
    assert (error, rows) == ("", 4)
    assert isinstance(early_ids, list) and len(early_ids) == 2 and early_ids[0] < early_ids[1]
    assert count(path, "messages") == 2  # committed: another connection reads it before the next frame
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_the_process_ignores_the_signals_a_service_manager_sends_the_whole_group(tmp_path: Path) -> None:
    proc = start_writer(tmp_path / "gw.db")
    assert proc.stdin is not None
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    # Still committing: the daemon decides when its writer ends.
    assert ask(proc, sql_batch(Writes(messages=[message()]))) == ["", [], 1]
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_a_failed_commit_is_answered_and_ends_the_process(tmp_path: Path) -> None:
    proc = start_writer(tmp_path / "gw.db")
    error, early_ids, rows = ask(proc, with_null_outcome([[] for _ in BATCH_FIELDS]))
    assert str(error).startswith("IntegrityError") and early_ids == [] and rows == 0
    assert proc.wait(timeout=10) == 1


async def test_a_write_waiting_when_the_writer_dies_fails_instead_of_hanging(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", writer="process", commit_interval_s=5.0)  # the write waits 5 s
    errors: list[BaseException] = []

    async def write() -> None:
        try:
            await store.write(Writes(messages=[message()]))
        except StoreClosed as exc:
            errors.append(exc)

    with pytest.raises(BaseExceptionGroup):
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            tg.start_soon(write)
            await anyio.sleep(0.1)
            assert store._process is not None
            store._process.kill()
            with anyio.fail_after(10):
                while not errors:
                    await anyio.sleep(0.01)
    assert "ended" in str(errors[0])


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_the_store_runs_its_writer_process_and_stops_it(tmp_path: Path, synchronous: str) -> None:
    store = SqliteStore(tmp_path / "gw.db", writer="process", synchronous=synchronous)
    m = message()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        assert store._process is not None
        child = store._process.pid
        assert store.writer_pid == child  # what the metrics read the writer's CPU and memory from
        await store.write(Writes(messages=[m]))
        assert store.get(m.id) == m  # the daemon's own read connection sees what the child committed
        store.write_nowait(Writes(smsc_ids=[("sim", "77", m.id, 0)]))  # pending at the stop: committed on the way
        tg.cancel_scope.cancel()
    assert not store.is_open
    assert store.writer_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # it ended and was reaped
    again = SqliteStore(tmp_path / "gw.db", writer="process")
    again.open_sync()
    try:
        assert again.lookup_smsc_id("sim", ["77"]) == (m.id, 0)
    finally:
        again._close()


async def test_a_writer_process_that_dies_fails_the_store_and_its_waiters(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", writer="process")
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            await store.run()
        except* StoreClosed as group:
            failure.extend(group.exceptions)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(30):
            while not store.is_open:
                await anyio.sleep(0.01)
        assert store._process is not None
        store._process.kill()
        with anyio.fail_after(10):
            while store.is_open:  # noticed while idle, not at the next commit
                await anyio.sleep(0.01)
        with pytest.raises(StoreClosed):
            with anyio.fail_after(10):
                await store.write(Writes(messages=[message()]))
    assert failure and "ended (exit status -9)" in str(failure[0])
    assert not store.is_open
    with pytest.raises(StoreClosed):
        store.write_nowait(Writes(messages=[message()]))


async def _until(check: object, timeout_s: float = 10.0) -> None:
    assert callable(check)
    with anyio.fail_after(timeout_s):
        while not check():
            await anyio.sleep(0.005)


async def test_the_next_batches_go_to_the_writer_while_it_commits_the_one_before(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", writer="process")
    finished: list[str] = []
    sent = [message() for _ in range(PIPELINE_DEPTH)]
    later, last = message(), message()

    async def write(name: str, writes: Writes) -> None:
        await store.write(writes)
        finished.append(name)

    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        assert store._process is not None
        os.kill(store._process.pid, signal.SIGSTOP)  # the child takes its time over each commit
        try:
            for n, m in enumerate(sent, 1):
                tg.start_soon(write, f"sent {n}", Writes(messages=[m]))
                await _until(lambda n=n: len(store._inflight) == n)  # sent before the ones before are answered
            tg.start_soon(write, "later", Writes(messages=[later]))
            tg.start_soon(write, "barrier", Writes())
            await anyio.sleep(0.05)
            tg.start_soon(write, "last", Writes(messages=[last]))
            await anyio.sleep(0.05)
            # PIPELINE_DEPTH batches in flight: the next waits, and what comes meanwhile joins it.
            assert len(store._inflight) == PIPELINE_DEPTH and finished == []
            assert [m.id for m in store._batch.writes.messages] == [later.id, last.id]
        finally:
            os.kill(store._process.pid, signal.SIGCONT)
        await _until(lambda: len(finished) == PIPELINE_DEPTH + 3)
        # Answered in the order sent; the empty write waited for everything before it.
        assert finished == [f"sent {n}" for n in range(1, PIPELINE_DEPTH + 1)] + ["later", "barrier", "last"]
        assert [store.get(m.id) for m in (*sent, later, last)] == [*sent, later, last]
        tg.cancel_scope.cancel()


async def test_a_failed_commit_fails_the_batch_sent_after_it_which_is_never_applied(tmp_path: Path) -> None:
    from gateway._store import LedgerOutcome

    path = tmp_path / "gw.db"
    store = SqliteStore(path, writer="process")
    errors: dict[str, BaseException] = {}
    failure: list[BaseException] = []
    after = message()

    async def write(name: str, writes: Writes) -> None:
        try:
            await store.write(writes)
        except StoreClosed as exc:
            errors[name] = exc

    async def run(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await store.run(task_status=task_status)
        except* StoreClosed as group:
            failure.extend(group.exceptions)

    async with anyio.create_task_group() as tg:
        await tg.start(run)
        assert store._process is not None
        os.kill(store._process.pid, signal.SIGSTOP)
        try:
            # state NULL: the schema refuses it (NOT NULL), so this commit fails in the child
            bad = Writes(ledger_outcomes=[LedgerOutcome("a1", 1.0, None)])  # type: ignore[arg-type]
            tg.start_soon(write, "bad", bad)
            await _until(lambda: len(store._inflight) == 1)
            tg.start_soon(write, "after", Writes(messages=[after]))
            await _until(lambda: len(store._inflight) == 2)
        finally:
            os.kill(store._process.pid, signal.SIGCONT)
        await _until(lambda: len(errors) == 2)
    assert "IntegrityError" in str(errors["bad"]) and "IntegrityError" in str(errors["after"])
    assert failure and not store.is_open
    assert count(path, "messages") == 0  # the child stopped at the failed commit



async def test_bulk_writes_in_flight_stay_within_a_commit_s_worth_and_later_writes_pass_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway._store, "BULK_PER_COMMIT", 4)  # small frames: a stopped child reads none
    store = SqliteStore(tmp_path / "gw.db", writer="process")
    bulks = [[message() for _ in range(3)] for _ in range(3)]  # no two share a commit
    ordinary = message()
    finished: list[str] = []

    async def write(name: str, writes: Writes, bulk: bool = False) -> None:
        await store.write(writes, bulk=bulk)
        finished.append(name)

    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        assert store._process is not None
        os.kill(store._process.pid, signal.SIGSTOP)  # the first commit stays in flight
        try:
            for n, msgs in enumerate(bulks):
                tg.start_soon(write, f"bulk {n}", Writes(messages=msgs), True)
            await _until(lambda: len(store._inflight) == 1)
            tg.start_soon(write, "ordinary", Writes(messages=[ordinary]))
            await _until(lambda: len(store._inflight) == 2)  # sent at once, past the bulk writes still waiting
            await anyio.sleep(0.05)
            assert len(store._inflight) == 2 and len(store._bulk) == 2
            assert [len(b.riders) for b, _ in store._inflight] == [1, 0]
        finally:
            os.kill(store._process.pid, signal.SIGCONT)
        await _until(lambda: len(finished) == 4)
        assert finished == ["bulk 0", "ordinary", "bulk 1", "bulk 2"]
        assert all(store.get(m.id) == m for msgs in bulks for m in msgs)
        tg.cancel_scope.cancel()


async def test_bulk_writes_waiting_when_the_writer_dies_fail_instead_of_hanging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway._store, "BULK_PER_COMMIT", 4)
    store = SqliteStore(tmp_path / "gw.db", writer="process")
    errors: list[BaseException] = []

    async def write() -> None:
        try:
            await store.write(Writes(messages=[message() for _ in range(3)]), bulk=True)
        except StoreClosed as exc:
            errors.append(exc)

    with pytest.raises(BaseExceptionGroup):
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            assert store._process is not None
            os.kill(store._process.pid, signal.SIGSTOP)
            for _ in range(3):
                tg.start_soon(write)
            await _until(lambda: len(store._inflight) == 1 and len(store._bulk) == 2)
            store._process.kill()
            await _until(lambda: len(errors) == 3)
    assert all("ended" in str(e) for e in errors)


# ---- the write-ahead log stays bounded (Rule 3) --------------------------------------------------------------


def test_a_checkpoint_restarts_the_log_once_it_outgrew_the_limit(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway._storeproc as storeproc

    monkeypatch.setattr(storeproc, "RESTART_FRAMES", 20)
    path = tmp_path / "gw.db"
    schema(path)
    writer = connect(str(path), "normal")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as the writer process runs: checkpoints are another's job
    checkpointer = connect(str(path), "normal")
    done: list[str] = []
    checkpointer.set_trace_callback(done.append)
    execute_batch(writer, sql_batch(Writes(messages=[message() for _ in range(5)])))
    assert storeproc.checkpoint(checkpointer) <= 20  # a small log: copied, not restarted
    assert not any("RESTART" in sql for sql in done)
    for _ in range(10):
        execute_batch(writer, sql_batch(Writes(messages=[message() for _ in range(200)])))
    assert storeproc.checkpoint(checkpointer) > 20
    assert any("wal_checkpoint(RESTART)" in sql for sql in done)
    # The writer's next commit starts the log from its beginning: only its own frames are in it.
    execute_batch(writer, sql_batch(Writes(messages=[message()])))
    _, frames, _ = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert 0 < frames <= 20
    writer.close()
    checkpointer.close()
