"""The durable store: the interface every backend implements, and the embedded SQLite backend.

Rule 1: `write()` returns only after its rows are committed; whoever answers a client or an SMSC (202, a
deliver_sm_resp) awaits it first. Writes from every task that arrive while a commit runs go into the next
commit together (group commit), so one fsync serves hundreds of messages.
Rule 2: one writer: a single connection writes, in the daemon or in a process of its own (`writer`, see
_storeproc); reads use their own connection (WAL lets them run beside the writer).
Rule 3: a message row holds the whole record as MessagePack plus the few columns that queries need (final,
callback_pending); receipt correlation is append-only inserts into smsc_ids, never updates of an indexed column.
Rule 4: commits keep the order of writes, except a bulk write (`write(..., bulk=True)`: new messages that no
other write waits for): it may commit after writes made later, so that a burst of accepted messages cannot hold
up the outcomes that free the SMSC windows (SqliteStore).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from ._model import ENCODER, FINAL_STATUSES, Message, decode_record
from ._storeproc import BATCH_FIELDS, checkpoint, connect, execute_batch

__all__ = [
    "EarlyReceipt", "IdempotencyRecord", "SqliteStore", "Store", "StoreClosed", "StoreStatistics", "StoreVersionError",
    "Writes",
]

log = logging.getLogger(__name__)

# 2: records are MessagePack arrays (_model Rule 5); this version still reads version 1's maps, an older one cannot
# read the arrays, so it must not open the database (it does not check; versions from 2 on do, `open_sync`).
SCHEMA_VERSION = "2"


class StoreVersionError(Exception):
    """The database was written by a newer version of the gateway, whose records this one cannot read."""


class StoreClosed(Exception):
    """The store is closed or its last commit failed; nothing more can be made durable."""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    account: str
    key: str
    body_hash: str
    message_ids: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class EarlyReceipt:
    """A receipt that came before its submit_sm_resp (or for an id we do not know), kept until matched."""

    id: int
    smsc: str
    at: float
    pdu: bytes


class Doc(NamedTuple):
    """A record of the billing flows (docs/billing.md): consent, subscription, handshake, verification, payment
    request, MO, forward job... `body` is the kind's own MessagePack record; the other fields are what queries use.
    A named tuple, not a frozen dataclass: the MO path builds several per MO, and it is its docs row as it is.

    Attributes:
        kind: the record type ("consent", "subscription", ...).
        id: unique within its kind.
        msisdn: the subscriber it concerns ("" when none).
        scope: the service or shortcode it concerns ("" when none).
        state: the kind's state ("active", "pending", ...).
        due: when its next scheduled action is due (wall-clock seconds), None when nothing is scheduled.
        at: when it was created or last changed.
    """

    kind: str
    id: str
    msisdn: str = ""
    scope: str = ""
    state: str = ""
    due: float | None = None
    at: float = 0.0
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One charge attempt (the ledger is append-only: an attempt is inserted once, its outcome once)."""

    id: str
    at: float
    msisdn: str
    service: str
    operator: str
    amount: str
    currency: str
    price_point: str = ""
    smsc: str = ""
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class LedgerOutcome:
    """The final state of a charge attempt: charged, failed (with a reason) or unknown (for reconciliation)."""

    attempt_id: str
    at: float
    state: str
    reason: str = ""
    smsc_message_id: str = ""


@dataclass(slots=True)
class Writes:
    """What one call to `write()` makes durable together."""

    messages: list[Message] = field(default_factory=list)
    smsc_ids: list[tuple[str, str, str, int]] = field(default_factory=list)  # smsc, key, message_id, part
    idempotency: list[IdempotencyRecord] = field(default_factory=list)
    early_receipts: list[tuple[str, bytes]] = field(default_factory=list)  # smsc, encoded deliver_sm
    early_receipts_done: list[int] = field(default_factory=list)
    mo: list[tuple[str, float, bytes]] = field(default_factory=list)  # id, at, record
    docs: list[Doc] = field(default_factory=list)  # upserted by (kind, id)
    ledger: list[LedgerEntry] = field(default_factory=list)
    ledger_outcomes: list[LedgerOutcome] = field(default_factory=list)
    # Ids of messages whose callback was acknowledged: SqliteStore clears the column alone (`clear_callbacks`).
    callbacks_cleared: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages or self.smsc_ids or self.idempotency or self.early_receipts
                    or self.early_receipts_done or self.mo or self.docs or self.ledger or self.ledger_outcomes
                    or self.callbacks_cleared)

    def extend(self, other: Writes) -> None:
        """Add everything `other` holds (one commit for both)."""
        self.messages.extend(other.messages)
        self.smsc_ids.extend(other.smsc_ids)
        self.idempotency.extend(other.idempotency)
        self.early_receipts.extend(other.early_receipts)
        self.early_receipts_done.extend(other.early_receipts_done)
        self.mo.extend(other.mo)
        self.docs.extend(other.docs)
        self.ledger.extend(other.ledger)
        self.ledger_outcomes.extend(other.ledger_outcomes)
        self.callbacks_cleared.extend(other.callbacks_cleared)


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    commits: int
    rows_written: int
    last_commit_s: float
    pending_writes: int
    open: bool


class Store(Protocol):
    """What the gateway needs from a durable store (SQLite here; Redis for several nodes)."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...

    async def write(self, writes: Writes, *, bulk: bool = False) -> list[int]: ...

    def write_nowait(self, writes: Writes) -> anyio.Event: ...

    def get(self, message_id: str) -> Message | None: ...

    def find_idempotency(self, account: str, key: str) -> IdempotencyRecord | None: ...

    def lookup_smsc_id(self, smsc: str, keys: Sequence[str]) -> tuple[str, int] | None: ...

    def open_messages(self) -> Iterator[Message]: ...

    def callback_pending(self) -> Iterator[Message]: ...

    def early_receipts(self) -> list[EarlyReceipt]: ...

    def doc(self, kind: str, doc_id: str) -> Doc | None: ...

    def docs(self, kind: str, *, msisdn: str | None = None, scope: str | None = None, state: str | None = None,
             since: float | None = None, limit: int | None = None) -> list[Doc]: ...

    def docs_due(self, kind: str, before: float, limit: int = 1000) -> list[Doc]: ...

    def ledger(self, *, msisdn: str | None = None, service: str | None = None, operator: str | None = None,
               state: str | None = None, since: float | None = None, until: float | None = None,
               limit: int = 1000) -> list[dict[str, object]]: ...

    def statistics(self) -> StoreStatistics: ...

    @property
    def is_open(self) -> bool: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    final INTEGER NOT NULL,
    callback_pending INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_open ON messages(final) WHERE final = 0;
CREATE INDEX IF NOT EXISTS messages_callbacks ON messages(callback_pending) WHERE callback_pending = 1;
CREATE TABLE IF NOT EXISTS smsc_ids (
    smsc TEXT NOT NULL, key TEXT NOT NULL, message_id TEXT NOT NULL, part INTEGER NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS smsc_ids_key ON smsc_ids(smsc, key);
CREATE TABLE IF NOT EXISTS idempotency (
    account TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL, message_ids TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS early_receipts (id INTEGER PRIMARY KEY, smsc TEXT NOT NULL, at REAL NOT NULL, pdu BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mo (id TEXT PRIMARY KEY, at REAL NOT NULL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, id TEXT NOT NULL, msisdn TEXT NOT NULL, scope TEXT NOT NULL, state TEXT NOT NULL,
    due REAL, at REAL NOT NULL, body BLOB NOT NULL, PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_msisdn ON docs(kind, msisdn, scope);
CREATE INDEX IF NOT EXISTS docs_due ON docs(kind, due) WHERE due IS NOT NULL;
CREATE INDEX IF NOT EXISTS docs_state ON docs(kind, state);
CREATE TABLE IF NOT EXISTS ledger (
    id TEXT PRIMARY KEY, at REAL NOT NULL, msisdn TEXT NOT NULL, service TEXT NOT NULL, operator TEXT NOT NULL,
    amount TEXT NOT NULL, currency TEXT NOT NULL, price_point TEXT NOT NULL, smsc TEXT NOT NULL,
    message_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_at ON ledger(at);
CREATE INDEX IF NOT EXISTS ledger_msisdn ON ledger(msisdn, at);
CREATE INDEX IF NOT EXISTS ledger_service ON ledger(service, at);
CREATE TABLE IF NOT EXISTS ledger_outcomes (
    attempt_id TEXT NOT NULL, at REAL NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    smsc_message_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_outcomes_attempt ON ledger_outcomes(attempt_id);
"""


class _Batch:
    __slots__ = ("barrier", "done", "early_ids", "error", "riders", "writes")

    def __init__(self, writes: Writes | None = None) -> None:
        self.writes = Writes() if writes is None else writes
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.early_ids: list[int] = []
        self.riders: list[_Batch] = []  # bulk writes committed with this batch (Rule 4)
        self.barrier = False  # an empty write() waits on it: every bulk write before it goes with it

    def settle(self, error: BaseException | None = None) -> None:
        """Committed (error None) or failed: wake its waiters and those of its riders."""
        for batch in (self, *self.riders):
            batch.error = error
            batch.done.set()


BULK_PER_COMMIT = 500  # bulk messages sent to be committed and not answered yet, at most (at least one write)


class SqliteStore:
    """The embedded store: SQLite in WAL mode, one writer, group commit.

    Args:
        path: the database file (created with its directory).
        synchronous: "normal" (WAL: a commit survives a process crash; an OS crash may lose the last
            commits) or "full" (fsync per commit: survives power loss).
        commit_interval_s: wait this long after the first write of a batch before committing, to gather
            more (0 commits as soon as the previous commit ended).
        writer: "inline" (this process writes) or "process" (a child process writes, `_storeproc`).

    Inline, with synchronous "normal", a commit only appends to the WAL (no fsync), so it runs on the event
    loop's own thread: handing each batch to a worker thread cost more in GIL hand-offs than the inserts
    themselves. The WAL is checkpointed (the step that fsyncs) by a worker thread every
    `checkpoint_interval_s`, never inside a commit. With "full", each commit fsyncs and runs in a worker
    thread. With writer "process", the SQL of every commit runs in the child: the daemon only turns a batch
    into parameter lists and one MessagePack frame, and its event loop goes on while the child commits
    (bench/RESULTS.md, 22:04: about 23 us of the daemon's 130 us per message move to the other core).
    The next batch is sent while the child still commits the one before (at most `PIPELINE_DEPTH` in
    flight), so the child starts it the moment it is done instead of when the daemon's loop gets round to
    reading the answer. The child applies them in order and stops at the first that fails, and each
    batch's waiters learn of its own commit, so a batch is never reported durable before the ones before it.

    Bulk writes (Rule 4: the HTTP API's accepted messages) wait in a lane of their own. Each commit takes every
    ordinary write, and whole bulk writes while the bulk messages in flight stay within `BULK_PER_COMMIT`. Under
    a burst of batch requests, the writes of submit_sm_resps and receipts, which hold the SMSC window's slots
    until they are durable, so wait behind a few hundred new messages instead of thousands, and the sessions
    keep sending while the burst is accepted. Without the lane the submits crawled at 2,000 to 3,500 a second
    during such a burst (bench/RESULTS.md, "The store's bulk lane", 2026-11-25). An empty write, a barrier,
    takes every bulk write waiting.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "normal", commit_interval_s: float = 0.0,
                 checkpoint_interval_s: float = 1.0, writer: str = "inline") -> None:
        if writer not in ("inline", "process"):
            raise ValueError(f"writer: expected inline or process, got {writer!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.commit_interval_s = commit_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.lazy_flush_s = 1.0  # the longest a write that starts no commit (`clear_callbacks`) waits for one
        self.writer = writer
        self.inline = synchronous != "full" and writer == "inline"
        self._process: anyio.abc.Process | None = None
        self._replies: BufferedByteReceiveStream | None = None
        self._inflight: deque[tuple[_Batch, float]] = deque()  # sent to the writer process, not yet answered
        self._sent = anyio.Event()  # a batch was sent: the collector has an answer to wait for
        self._room = anyio.Event()  # an answer came: a batch may be sent
        self._batch = _Batch()
        self._bulk: deque[_Batch] = deque()  # bulk writes not yet taken by a commit (Rule 4), oldest first
        self._wake = anyio.Event()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._open = False
        self._failed: BaseException | None = None
        self._commits = 0
        self._rows = 0
        self._last_commit_s = 0.0

    # ---- lifecycle -------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return connect(str(self.path), self.synchronous)

    def open_sync(self) -> None:
        """Open the database and create its schema (`run` calls this; with writer "process", `run` then
        starts the writing process before the store counts as open)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = self._connect()
        writer.executescript(_SCHEMA)
        row = writer.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
        if row is not None and int(row[0]) > int(SCHEMA_VERSION):
            writer.close()
            raise StoreVersionError(
                f"{self.path}: schema_version {row[0]} was written by a newer smppgw, which this one (schema "
                f"{SCHEMA_VERSION}) cannot read: restore the backup taken before the upgrade, or run the newer "
                f"version (docs/deploy.md, Upgrade and rollback)")
        # An older database needs no migration: its records stay readable (_model Rule 5), new ones are arrays.
        writer.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        if self.writer == "process":
            writer.close()
        else:
            if self.inline:
                writer.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a thread (see class doc)
            self._writer = writer
        self._reader = self._connect()
        self._open = self.writer == "inline"

    async def _start_process(self) -> None:
        """Start the writing process and wait for its ready frame. It runs this interpreter and imports this copy
        of the package (its directory goes first on the child's PYTHONPATH), whatever the working directory."""
        here = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        self._process = await anyio.open_process(
            [sys.executable, "-m", "gateway._storeproc", str(self.path), self.synchronous,
             str(self.checkpoint_interval_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env)
        assert self._process.stdout is not None
        self._replies = BufferedByteReceiveStream(self._process.stdout)
        with anyio.fail_after(30):
            error, _, _ = await self._reply()
        if error != "ready":
            raise StoreClosed(f"the store writer process did not start: {error!r}")
        self._open = True

    async def _reply(self) -> tuple[str, list[int], int]:
        assert self._replies is not None
        try:
            size = int.from_bytes(await self._replies.receive_exactly(4), "big")
            error, early_ids, rows = msgspec.msgpack.decode(await self._replies.receive_exactly(size))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            raise _writer_ended(self._process.returncode if self._process is not None else None) from None
        return str(error), list(early_ids), int(rows)

    async def _send_to_process(self, batch: _Batch) -> None:
        """Send `batch` to the writer process; `_collect` sets its `done` once it is answered."""
        assert self._process is not None and self._process.stdin is not None
        if self._failed is not None:  # a batch in flight failed while this one waited for room
            self._fail(self._failed, batch)
            return
        body = _FRAME_ENCODER.encode(sql_batch(batch.writes))
        started = time.perf_counter()
        try:
            # Shielded: a frame cut halfway would be misread by the child.
            with anyio.CancelScope(shield=True):
                await self._process.stdin.send(len(body).to_bytes(4, "big") + body)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            failure = _writer_ended(self._process.returncode)
            self._fail(failure, batch)
            raise failure from exc
        self._inflight.append((batch, started))
        self._sent.set()

    async def _wait_inflight(self, most: int) -> None:
        """Wait until at most `most` batches are in flight."""
        while len(self._inflight) > most:
            self._room = anyio.Event()
            await self._room.wait()

    async def _collect(self) -> None:
        """Answer the batches in flight, in the order they were sent, until cancelled between two answers."""
        while True:
            while not self._inflight:
                self._sent = anyio.Event()
                await self._sent.wait()
            await self._collect_one()

    async def _collect_one(self) -> None:
        batch, started = self._inflight[0]
        try:
            # Like a commit in a thread, one in the writer process runs to its end: cancelled halfway, the
            # daemon would not know whether these rows are durable (nor where the next answer starts).
            with anyio.CancelScope(shield=True), anyio.fail_after(
                    max(0.0, started + _PROCESS_COMMIT_TIMEOUT_S - time.perf_counter())):
                error, early_ids, rows = await self._reply()
            if error:
                raise StoreClosed(f"commit failed in the store writer process: {error}")
        except BaseException as exc:  # every batch in flight and every waiter must learn it
            self._fail(exc)
            raise
        self._inflight.popleft()
        self._rows += rows
        batch.early_ids = early_ids
        self._last_commit_s = time.perf_counter() - started
        self._commits += 1
        batch.settle()
        self._room.set()
        if batch.riders and self._bulk:  # room for the bulk writes waiting (`_take_bulk`)
            self._wake.set()

    def _fail(self, exc: BaseException, *batches: _Batch) -> None:
        """The store is unusable: fail `batches` and those in flight."""
        if self._failed is None:
            self._failed = exc
            log.error("store commit failed, the gateway can no longer make messages durable: %r", exc)
        for batch in (*batches, *(b for b, _ in self._inflight)):
            batch.settle(exc)
        self._inflight.clear()
        self._room.set()

    async def _watch_process(self, proc: anyio.abc.Process) -> None:
        """A writer process that ends while the store runs fails the store at once, not at the next commit: the
        daemon stops (and its service manager restarts it) instead of reporting ready on a store that cannot
        commit."""
        code = await proc.wait()
        failure = _writer_ended(code)
        if self._failed is None:
            self._failed = failure
            log.error("store writer process ended, the gateway can no longer make messages durable: exit status %s",
                      code)
        raise failure

    async def _stop_process(self) -> None:
        proc, self._process = self._process, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                await proc.stdin.aclose()  # its end of input: it returns once the last commit is done
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # it has ended already
        with anyio.move_on_after(10):
            await proc.wait()
            return
        log.error("the store writer process did not end within 10 s of its input closing; killing it")
        proc.kill()
        await proc.wait()

    @property
    def is_open(self) -> bool:
        return self._open and self._failed is None

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while it runs (`writer: process`); None otherwise."""
        proc = self._process
        return proc.pid if proc is not None and proc.returncode is None else None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the store, then commit batches until cancelled; on cancel, commit what is pending and close."""
        await anyio.to_thread.run_sync(self.open_sync)
        try:
            if self.writer == "process":
                await self._start_process()
            async with anyio.create_task_group() as tg:
                if self.inline:
                    tg.start_soon(self._checkpoints)
                if self._process is not None:
                    tg.start_soon(self._watch_process, self._process)
                    tg.start_soon(self._collect)
                task_status.started()
                while True:
                    if self._wake.is_set():  # a write is waiting already: no timer to arm (a cancel scope a commit)
                        await anyio.lowlevel.checkpoint()
                    else:
                        with anyio.move_on_after(self.lazy_flush_s):
                            await self._wake.wait()
                    if not self._wake.is_set() and not self._has_pending():
                        continue  # the lazy flush found nothing (an empty write() wakes a commit: a barrier)
                    if self.commit_interval_s > 0:
                        await anyio.sleep(self.commit_interval_s)
                    await self._commit_pending()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    # The collector is gone: the answers to what is in flight are read here.
                    while self._failed is None and self._inflight:
                        await self._collect_one()
                    while self._failed is None and self._has_pending():  # the bulk lane may need several
                        await self._commit_pending()
                        while self._failed is None and self._inflight:
                            await self._collect_one()
                    if self._failed is not None:  # writes waiting for a commit that will not come learn it
                        self._fail(self._failed, self._batch, *self._bulk)
                        self._bulk.clear()
                finally:
                    await self._stop_process()
                    self._close()

    def _has_pending(self) -> bool:
        return bool(self._batch.writes) or bool(self._bulk)

    def _take_bulk(self, batch: _Batch) -> None:
        """Add the oldest bulk writes to `batch` (Rule 4): whole writes, while the bulk messages in flight stay
        within `BULK_PER_COMMIT` (one write at least when none is), or all of them for a barrier. What is left
        goes with a later commit: the next one inline, else the one after an answer frees room (`_collect_one`)."""
        bulk = self._bulk
        taken = sum(len(rider.writes.messages) for sent, _ in self._inflight for rider in sent.riders)
        while bulk:
            size = len(bulk[0].writes.messages)
            if taken and not batch.barrier and taken + size > BULK_PER_COMMIT:
                if self._process is None:
                    self._wake.set()
                return
            rider = bulk.popleft()
            batch.writes.extend(rider.writes)
            batch.riders.append(rider)
            taken += size

    async def _commit_pending(self) -> None:
        if self._process is not None:
            await self._wait_inflight(PIPELINE_DEPTH - 1)  # meanwhile the batch grows
        batch = self._batch
        self._batch = _Batch()
        self._wake = anyio.Event()
        if self._bulk:
            self._take_bulk(batch)
        if not batch.writes:
            if not batch.barrier:  # woken by bulk writes that wait for room: nobody waits for this batch
                return
            await self._wait_inflight(0)  # a barrier: done once everything before it is
            batch.settle(self._failed)
            return
        if self._process is not None:
            await self._send_to_process(batch)
            return
        started = time.perf_counter()
        try:
            if self.inline:
                batch.early_ids = self._apply(batch.writes)
                await anyio.lowlevel.checkpoint()
            else:
                batch.early_ids = await anyio.to_thread.run_sync(self._apply, batch.writes)
        except BaseException as exc:  # the store is unusable now: every waiter must learn it
            self._fail(exc, batch)
            raise
        self._last_commit_s = time.perf_counter() - started
        self._commits += 1
        batch.settle()

    async def _checkpoints(self) -> None:
        conn = self._connect()
        try:
            while True:
                await anyio.sleep(self.checkpoint_interval_s)
                await anyio.to_thread.run_sync(checkpoint, conn)
        finally:
            conn.close()

    def _close(self) -> None:
        self._open = False
        for conn in (self._writer, self._reader):
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._writer = self._reader = None

    # ---- writing ---------------------------------------------------------------------------------------

    def _apply(self, w: Writes) -> list[int]:
        assert self._writer is not None
        early_ids, rows = execute_batch(self._writer, sql_batch(w))
        self._rows += rows
        return early_ids

    async def write(self, writes: Writes, *, bulk: bool = False) -> list[int]:
        """Make `writes` durable (in the next group commit) and return the ids given to new early receipts.

        With `bulk`, for new messages that no other write waits for (Rule 4), they go in the bulk lane: a commit
        soon, but maybe after writes made later.

        Raises:
            StoreClosed: the store is closed or a commit failed.
            ValueError: a bulk write holds early receipts (their row ids come back in order only).
        """
        if not self._open or self._failed is not None:
            raise StoreClosed("the store is not open" if self._failed is None else f"store failed: {self._failed!r}")
        if bulk and writes:
            if writes.early_receipts:
                raise ValueError("early receipts cannot be a bulk write")
            entry = _Batch(writes)
            self._bulk.append(entry)
            self._wake.set()
            await entry.done.wait()
            if entry.error is not None:
                raise StoreClosed(f"commit failed: {entry.error!r}")
            return []
        batch = self._batch
        if not writes:
            batch.barrier = True
        first_early = len(batch.writes.early_receipts)
        batch.writes.extend(writes)
        self._wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise StoreClosed(f"commit failed: {batch.error!r}")
        return batch.early_ids[first_early:first_early + len(writes.early_receipts)]

    def _ensure_open(self) -> None:
        if not self._open or self._failed is not None:
            raise StoreClosed("the store is not open")

    def clear_callbacks(self, records: Sequence[Message]) -> anyio.Event:
        """Make `callback_pending = False` of `records` durable (their callbacks were acknowledged) by updating
        the column alone: about 2 us a message against 5 for rewriting each record. Reads take the flag from
        the column (`_record`), so the records' own copy of it may stay stale.

        Nothing waits for these rows (a clear lost in a crash only sends a callback again), so they start no
        commit of their own: they go with the next commit, and at the latest `lazy_flush_s` later. Under load
        a commit of clears alone would hold up the commits that free window slots."""
        self._ensure_open()
        batch = self._batch
        batch.writes.callbacks_cleared.extend(m.id for m in records)
        if not records:
            batch.barrier = True
        return batch.done

    def write_nowait(self, writes: Writes) -> anyio.Event:
        """Queue `writes` for the next commit without waiting; the returned event is set once it is durable."""
        self._ensure_open()
        if writes.early_receipts:
            raise ValueError("early receipts need write(): their row ids are returned")
        batch = self._batch
        if not writes:
            batch.barrier = True
        batch.writes.extend(writes)
        self._wake.set()
        return batch.done

    # ---- reading ---------------------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreClosed("the store is not open")
        return self._reader

    def get(self, message_id: str) -> Message | None:
        row = self._read().execute("SELECT record, callback_pending FROM messages WHERE id = ?",
                                   (message_id,)).fetchone()
        return None if row is None else _record(row[0], row[1])

    def find_idempotency(self, account: str, key: str) -> IdempotencyRecord | None:
        row = self._read().execute(
            "SELECT body_hash, message_ids, at FROM idempotency WHERE account = ? AND key = ?", (account, key)
        ).fetchone()
        if row is None:
            return None
        return IdempotencyRecord(account, key, row[0], tuple(row[1].split(",")) if row[1] else (), row[2])

    def lookup_smsc_id(self, smsc: str, keys: Sequence[str]) -> tuple[str, int] | None:
        conn = self._read()
        for key in keys:
            row = conn.execute(
                "SELECT message_id, part FROM smsc_ids WHERE smsc = ? AND key = ? ORDER BY at DESC LIMIT 1",
                (smsc, key),
            ).fetchone()
            if row is not None:
                return str(row[0]), int(row[1])
        return None

    def _iter_records(self, sql: str) -> Iterator[Message]:
        for record, pending in self._read().execute(sql):
            yield _record(record, pending)

    def open_messages(self) -> Iterator[Message]:
        """Every message that is not final (for the restart)."""
        return self._iter_records("SELECT record, callback_pending FROM messages WHERE final = 0")

    def callback_pending(self) -> Iterator[Message]:
        """Every message whose final status has not been delivered to its callback yet."""
        return self._iter_records("SELECT record, callback_pending FROM messages WHERE callback_pending = 1")

    def early_receipts(self) -> list[EarlyReceipt]:
        return [EarlyReceipt(int(i), s, float(at), bytes(pdu)) for i, s, at, pdu in
                self._read().execute("SELECT id, smsc, at, pdu FROM early_receipts ORDER BY id")]

    # ---- the billing flows' records ------------------------------------------------------------------

    def doc(self, kind: str, doc_id: str) -> Doc | None:
        row = self._read().execute(
            "SELECT kind, id, msisdn, scope, state, due, at, body FROM docs WHERE kind = ? AND id = ?", (kind, doc_id)
        ).fetchone()
        return None if row is None else _doc(row)

    def docs(self, kind: str, *, msisdn: str | None = None, scope: str | None = None, state: str | None = None,
             since: float | None = None, limit: int | None = None) -> list[Doc]:
        """Records of `kind` matching every filter given, oldest first."""
        sql = ["SELECT kind, id, msisdn, scope, state, due, at, body FROM docs WHERE kind = ?"]
        args: list[object] = [kind]
        for column, value in (("msisdn", msisdn), ("scope", scope), ("state", state)):
            if value is not None:
                sql.append(f"AND {column} = ?")
                args.append(value)
        if since is not None:
            sql.append("AND at >= ?")
            args.append(since)
        sql.append("ORDER BY at, id")
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        return [_doc(row) for row in self._read().execute(" ".join(sql), args)]

    def docs_due(self, kind: str, before: float, limit: int = 1000) -> list[Doc]:
        """Records of `kind` whose `due` is at or before `before`, earliest first."""
        return [_doc(row) for row in self._read().execute(
            "SELECT kind, id, msisdn, scope, state, due, at, body FROM docs WHERE kind = ? AND due IS NOT NULL "
            "AND due <= ? ORDER BY due LIMIT ?", (kind, before, limit))]

    def ledger(self, *, msisdn: str | None = None, service: str | None = None, operator: str | None = None,
               state: str | None = None, since: float | None = None, until: float | None = None,
               limit: int = 1000) -> list[dict[str, object]]:
        """Charge attempts with their latest outcome (state "pending" until one is recorded), newest first."""
        sql = ["SELECT l.id, l.at, l.msisdn, l.service, l.operator, l.amount, l.currency, l.price_point, l.smsc, "
               "l.message_id, o.state, o.reason, o.smsc_message_id, o.at FROM ledger l LEFT JOIN ledger_outcomes o "
               "ON o.rowid = (SELECT rowid FROM ledger_outcomes WHERE attempt_id = l.id ORDER BY at DESC, rowid DESC "
               "LIMIT 1) WHERE 1 = 1"]
        args: list[object] = []
        for column, value in (("l.msisdn", msisdn), ("l.service", service), ("l.operator", operator)):
            if value is not None:
                sql.append(f"AND {column} = ?")
                args.append(value)
        if state is not None:
            sql.append("AND coalesce(o.state, 'pending') = ?")
            args.append(state)
        if since is not None:
            sql.append("AND l.at >= ?")
            args.append(since)
        if until is not None:
            sql.append("AND l.at < ?")
            args.append(until)
        sql.append("ORDER BY l.at DESC LIMIT ?")
        args.append(limit)
        keys = ("id", "at", "msisdn", "service", "operator", "amount", "currency", "price_point", "smsc", "message_id",
                "state", "reason", "smsc_message_id", "final_at")
        out = []
        for row in self._read().execute(" ".join(sql), args):
            item = dict(zip(keys, row, strict=True))
            if item["state"] is None:
                item["state"] = "pending"
            out.append(item)
        return out

    def messages_by_ids(self, ids: Iterable[str]) -> list[Message]:
        return [m for m in (self.get(i) for i in ids) if m is not None]

    def count(self) -> tuple[int, int]:
        """(all messages, open messages)."""
        conn = self._read()
        total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        open_ = conn.execute("SELECT count(*) FROM messages WHERE final = 0").fetchone()[0]
        return int(total), int(open_)

    def statistics(self) -> StoreStatistics:
        pending = 0
        for b in (self._batch.writes, *(entry.writes for entry in self._bulk)):
            pending += len(b.messages) + len(b.smsc_ids) + len(b.idempotency) + len(b.early_receipts) + len(b.mo)
        return StoreStatistics(self._commits, self._rows, self._last_commit_s, pending, self.is_open)


_FRAME_ENCODER = msgspec.msgpack.Encoder()
PIPELINE_DEPTH = 3  # batches sent to the writer process and not yet answered, at most (see SqliteStore)
_PROCESS_COMMIT_TIMEOUT_S = 60.0  # a writer process that takes longer for one commit is taken for hung


def _writer_ended(code: int | None) -> StoreClosed:
    return StoreClosed(f"the store writer process ended (exit status {code})")


def sql_batch(w: Writes) -> tuple[list[tuple[Any, ...]], ...]:
    """`w` as the parameter lists `_storeproc.execute_batch` takes, in the order of `BATCH_FIELDS`."""
    latest = {m.id: m for m in w.messages}  # a message written twice in one batch: its last state
    docs: list[tuple[Any, ...]] = list({(d.kind, d.id): d for d in w.docs}.values())  # a Doc is its row
    now = time.time()
    batch = (
        [(m.id, m.account, int(m.status in FINAL_STATUSES), int(m.callback_pending), m.status_at, ENCODER.encode(m))
         for m in latest.values()],
        [(i,) for i in w.callbacks_cleared],
        [(smsc, key, mid, part, now) for smsc, key, mid, part in w.smsc_ids],
        [(r.account, r.key, r.body_hash, ",".join(r.message_ids), r.at) for r in w.idempotency],
        [(smsc, now, pdu) for smsc, pdu in w.early_receipts],
        [(i,) for i in w.early_receipts_done],
        list(w.mo),
        docs,
        [(e.id, e.at, e.msisdn, e.service, e.operator, e.amount, e.currency, e.price_point, e.smsc, e.message_id)
         for e in w.ledger],
        [(o.attempt_id, o.at, o.state, o.reason, o.smsc_message_id) for o in w.ledger_outcomes],
    )
    assert len(batch) == len(BATCH_FIELDS)
    return batch


def _record(data: bytes, callback_pending: int) -> Message:
    """A stored record, with the callback_pending column's value: `clear_callbacks` changes the column alone."""
    msg = decode_record(data)
    if not callback_pending and msg.callback_pending:
        msg.callback_pending = False
    return msg


def _doc(row: tuple[Any, ...]) -> Doc:
    kind, doc_id, msisdn, scope, state, due, at, body = row
    return Doc(kind, doc_id, msisdn, scope, state, due, at, bytes(body))
