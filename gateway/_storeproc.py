"""The SQLite store's writing side: one transaction per group commit, in the daemon or in a process of its own.

Rule 1: a batch is ten lists of SQL parameters in a fixed order (`BATCH_FIELDS`); `execute_batch` applies
them in one transaction, in that order, or not at all.
Rule 2: the writer process answers each batch with one frame, after COMMIT and never before, so the daemon
sends a 202 only for rows another process can already read.
Rule 3: the write-ahead log stays bounded under constant writes (`checkpoint`).

With `store.writer: process` the daemon starts `python -m gateway._storeproc PATH SYNCHRONOUS INTERVAL`
and talks to it over its stdin and stdout: a frame is a 4-byte big-endian length and a MessagePack body.
The first frame the process writes says it is ready; each request frame is a batch; each answer is
`[error, early_receipt_row_ids, rows]` (error "" on success). The process ignores SIGINT and SIGTERM (a
service manager signals the whole group; the daemon decides when its store stops) and ends when its stdin
closes: after the daemon's last commit, or when the daemon died.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from typing import Any, BinaryIO

import msgspec

__all__ = ["BATCH_FIELDS", "RESTART_FRAMES", "checkpoint", "connect", "execute_batch", "main"]

BATCH_FIELDS = ("messages", "callbacks_cleared", "smsc_ids", "idempotency", "early_receipts",
                "early_receipts_done", "mo", "docs", "ledger", "ledger_outcomes")

_SQL = (
    "INSERT INTO messages(id, account, final, callback_pending, updated_at, record) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET final = excluded.final, "
    "callback_pending = excluded.callback_pending, updated_at = excluded.updated_at, record = excluded.record",
    # after the records: the clear is the newest fact about these messages
    "UPDATE messages SET callback_pending = 0 WHERE id = ?",
    "INSERT INTO smsc_ids(smsc, key, message_id, part, at) VALUES (?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO idempotency(account, key, body_hash, message_ids, at) VALUES (?, ?, ?, ?, ?)",
    "INSERT INTO early_receipts(smsc, at, pdu) VALUES (?, ?, ?)",
    "DELETE FROM early_receipts WHERE id = ?",
    "INSERT OR REPLACE INTO mo(id, at, record) VALUES (?, ?, ?)",
    "INSERT INTO docs(kind, id, msisdn, scope, state, due, at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(kind, id) DO UPDATE SET msisdn = excluded.msisdn, scope = excluded.scope, "
    "state = excluded.state, due = excluded.due, at = excluded.at, body = excluded.body",
    "INSERT OR IGNORE INTO ledger(id, at, msisdn, service, operator, amount, currency, price_point, "
    "smsc, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT INTO ledger_outcomes(attempt_id, at, state, reason, smsc_message_id) VALUES (?, ?, ?, ?, ?)",
)
_EARLY = BATCH_FIELDS.index("early_receipts")
RESTART_FRAMES = 4096  # log frames (pages, 4 KiB by default) past which a checkpoint restarts the log (Rule 3)
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of log file kept when the log restarts


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, the given synchronous level."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")  # the log file trimmed back when it restarts
    return conn


def execute_batch(conn: sqlite3.Connection, batch: tuple[list[Any], ...] | list[list[Any]]) -> tuple[list[int], int]:
    """Apply one batch in one transaction; returns the row ids of the new early receipts and the rows written."""
    rows = 0
    early_ids: list[int] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for i, params in enumerate(batch):
            if not params:
                continue
            if i == _EARLY:
                for p in params:
                    early_ids.append(int(conn.execute(_SQL[i], p).lastrowid or 0))
            else:
                conn.executemany(_SQL[i], params)
            rows += len(params)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return early_ids, rows


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if not data:
        return None
    while len(data) < n:  # a pipe may hand a long frame over in pieces
        more = stream.read(n - len(data))
        if not more:
            return None
        data += more
    return data


def _write_frame(stream: BinaryIO, body: bytes) -> None:
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()


def checkpoint(conn: sqlite3.Connection) -> int:
    """One checkpoint of the WAL by `conn` (not the writer's connection); returns the log's frames before it.

    Rule 3: PASSIVE copies the log into the database without holding the writer up, but under constant writes
    it never copies the frames the writer appended meanwhile, so the writer never starts the log afresh: it grew
    by about 3 KB a message for good, and every read of a page searched more of it (the store writer's CPU a
    message +68 % after five 30,000-message runs, bench/RESULTS.md "The write-ahead log's growth"). Once the log
    holds more than `RESTART_FRAMES`, a RESTART follows: it copies the few frames left, holding the writer's
    next commit back meanwhile, and then the writer starts the log from its beginning (and `journal_size_limit`
    trims the file)."""
    busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if not busy and frames > RESTART_FRAMES:
        conn.execute("PRAGMA wal_checkpoint(RESTART)")
    return int(frames)


def _checkpoints(path: str, synchronous: str, interval_s: float) -> None:
    conn = connect(path, synchronous)
    while True:
        time.sleep(interval_s)
        try:
            checkpoint(conn)
        except sqlite3.Error as exc:  # busy or locked: the next one catches up
            print(f"smppgw store writer: checkpoint failed: {exc}", file=sys.stderr, flush=True)


def serve(path: str, synchronous: str, checkpoint_interval_s: float, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Apply the batches read from `stdin` until it closes; 0 at a clean end, 1 after a failed commit."""
    conn = connect(path, synchronous)
    if synchronous != "full":  # WAL "normal": commits never fsync; a thread checkpoints (and fsyncs) instead
        conn.execute("PRAGMA wal_autocheckpoint=0")
        threading.Thread(target=_checkpoints, args=(path, synchronous, checkpoint_interval_s), daemon=True,
                         name="checkpoints").start()
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder().decode
    _write_frame(stdout, encode(["ready", [], 0]))
    while True:
        header = _read_exactly(stdin, 4)
        if header is None:
            break
        body = _read_exactly(stdin, int.from_bytes(header, "big"))
        if body is None:
            break
        try:
            early_ids, rows = execute_batch(conn, decode(body))
        except Exception as exc:  # the daemon learns it and stops making messages durable
            _write_frame(stdout, encode([f"{type(exc).__name__}: {exc}", [], 0]))
            conn.close()
            return 1
        _write_frame(stdout, encode(["", early_ids, rows]))
    conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m gateway._storeproc PATH normal|full CHECKPOINT_INTERVAL_S", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return serve(args[0], args[1], float(args[2]), sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
