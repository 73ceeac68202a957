"""Rule 5 of gateway/_model.py: a record is a MessagePack array of Message's fields, in an order that never changes;
records written earlier as maps are still read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from gateway._model import ENCODER, Message, MessageStatus, Part, StatusChange, decode_record, new_message_id
from gateway._store import SqliteStore

# The stored order. Append new fields at the end (with a default) and add them here; never edit what is above.
FIELDS = (
    "id", "account", "to", "source", "text", "encoding", "reference", "callback_url", "created_at", "send_at",
    "expires_at", "status", "status_at", "attempts", "next_attempt_at", "smsc", "route", "parts", "concat_ref",
    "data_coding", "error", "history", "on_wire", "charged", "resend_after_crash", "category", "idempotency_key",
    "callback_pending", "registered_delivery", "meta",
)


def record() -> Message:
    msg = Message(id=new_message_id(), account="acme", to="447911123456", source="ACME", text="hello",
                  created_at=1.0, expires_at=2.0, parts=[Part("1a", "DELIVRD", "sim"), Part()],
                  history=[StatusChange(1.0, "queued", "accepted")], meta={"charge": {"price": "1.50"}},
                  error={"code": "receipt", "err": 0}, charged=True, callback_pending=True)
    msg.set_status(MessageStatus.DELIVERED, 1.5, "DELIVRD", "sim")
    return msg


def as_map(msg: Message) -> bytes:
    """The record as versions before Rule 5 wrote it: a map from field name to value (independent of msgspec's
    array_like option: built by hand from the fields)."""
    def plain(value: object) -> object:
        if isinstance(value, (Part, StatusChange)):
            return [plain(getattr(value, f)) for f in value.__struct_fields__]  # both were arrays already
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value
    return msgspec.msgpack.encode({f: plain(getattr(msg, f)) for f in msg.__struct_fields__})


def test_the_field_order_is_the_stored_one() -> None:
    assert Message.__struct_fields__ == FIELDS


def test_a_record_is_an_array_in_field_order() -> None:
    msg = record()
    data = ENCODER.encode(msg)
    raw = msgspec.msgpack.decode(data)
    assert isinstance(raw, list) and len(raw) == len(FIELDS)
    assert raw[FIELDS.index("id")] == msg.id and raw[FIELDS.index("status")] == "delivered"
    assert raw[FIELDS.index("meta")] == {"charge": {"price": "1.50"}}
    assert len(data) < len(as_map(msg)) / 2
    assert decode_record(data) == msg
    assert decode_record(memoryview(b"xx" + data)[2:]) == msg  # the Redis store hands a view of its value


def test_a_record_written_as_a_map_is_still_read() -> None:
    msg = record()
    old = decode_record(as_map(msg))
    assert old == msg and type(old) is Message


def test_a_shorter_array_takes_the_defaults_of_the_fields_it_lacks() -> None:
    # What a record written before a field was appended looks like to the version that appended it.
    msg = record()
    raw = msgspec.msgpack.decode(ENCODER.encode(msg))
    short = decode_record(msgspec.msgpack.encode(raw[:FIELDS.index("registered_delivery")]))
    assert short.callback_pending is True and short.registered_delivery is True and short.meta == {}


@pytest.mark.parametrize("data", [b"", b"\xc1", ENCODER.encode(record())[:20]])
def test_a_damaged_record_raises(data: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, IndexError)):
        decode_record(data)


def test_the_store_reads_rows_of_both_forms(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    store.open_sync()
    old, new = record(), record()
    new.id = new_message_id()
    with sqlite3.connect(tmp_path / "gw.db") as conn:
        for msg, data in ((old, as_map(old)), (new, ENCODER.encode(new))):
            conn.execute("INSERT INTO messages(id, account, final, callback_pending, updated_at, record) "
                         "VALUES (?, ?, 1, 1, ?, ?)", (msg.id, msg.account, msg.status_at, data))
    assert store.get(old.id) == old
    assert store.get(new.id) == new
    assert sorted(m.id for m in store.callback_pending()) == sorted([old.id, new.id])
    store._close()
