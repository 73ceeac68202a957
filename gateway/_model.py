"""The message record and its statuses.

Rule 1: a message's status only moves forward: queued -> submitted -> a final status, or straight to a final
status; once final it never changes (a late receipt for a message already final is recorded in its history
but does not change its status).
Rule 2: every change of status appends to `history`, with the time and what caused it.
Rule 3: a charged message that may have reached the SMSC (`on_wire`) is never submitted again by the gateway
itself: after a crash it becomes `unknown`, for reconciliation.
Rule 4: a record holds plain data only (strings, numbers, lists and dicts of them, its Parts and StatusChanges),
never a reference back to itself or to a live object. So Message, Part and StatusChange are left out of the
cyclic garbage collector (`gc=False`): tens of thousands of them live while they wait for their receipts, and
the collector walked them on every pass for nothing: 83 -> 30 ms of its time in a batch run of 55,000
messages (bench/RESULTS.md, "The store's bulk lane", 2026-11-25).
Rule 5: a record is stored as a MessagePack array of Message's fields in their order (`array_like`): 190 to 250
bytes against 480 to 540 as a map, so the store writes about half the bytes and its writer spends a sixth less
CPU (bench/RESULTS.md, "Fewer Python calls a message, and records as arrays", 2026-11-25). So a new field goes
at the end, with a default (a shorter array decodes with the defaults), and no field is ever removed, renamed
into another's place or reordered; `test_model_record.py` pins the order. Records written before, as maps, are
still read (`decode_record`).
"""

from __future__ import annotations

import os
import time
from enum import StrEnum
from typing import Any, NewType

import msgspec

__all__ = [
    "FINAL_STATUSES",
    "STATUS_VALUE",
    "Message",
    "MessageId",
    "MessageStatus",
    "Part",
    "StatusChange",
    "decode_record",
    "new_message_id",
]

MessageId = NewType("MessageId", str)


class MessageStatus(StrEnum):
    """Where a message is in its life (docs/http-api.md lists them for API users)."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


# Each status's value (the string stored and sent): `.value` is a Python property, 0.18 us against 0.03 here.
STATUS_VALUE: dict[MessageStatus, str] = {s: s.value for s in MessageStatus}

FINAL_STATUSES = frozenset({
    MessageStatus.DELIVERED, MessageStatus.UNDELIVERABLE, MessageStatus.EXPIRED, MessageStatus.REJECTED,
    MessageStatus.FAILED, MessageStatus.UNKNOWN, MessageStatus.CANCELLED,
})


class StatusChange(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One entry of a message's history: when, which status, and why (a short reason or SMPP status name)."""

    at: float
    status: str
    detail: str = ""
    smsc: str = ""


class Part(msgspec.Struct, array_like=True, gc=False):
    """One submit_sm of a message: the SMSC's id for it once accepted, and its receipt status once known."""

    smsc_message_id: str | None = None
    receipt: str | None = None
    smsc: str | None = None


class Message(msgspec.Struct, kw_only=True, gc=False, array_like=True):
    """One MT message, as stored (MessagePack, Rule 5) and as kept in memory while it is not final."""

    id: str
    account: str
    to: str
    source: str
    text: str
    encoding: str = "auto"
    reference: str | None = None
    callback_url: str | None = None
    created_at: float
    send_at: float | None = None
    expires_at: float
    status: MessageStatus = MessageStatus.QUEUED
    status_at: float = 0.0
    attempts: int = 0
    next_attempt_at: float = 0.0
    smsc: str | None = None
    route: str | None = None
    parts: list[Part] = []
    concat_ref: int | None = None
    data_coding: int | None = None
    error: dict[str, Any] | None = None
    history: list[StatusChange] = []
    on_wire: bool = False
    charged: bool = False
    resend_after_crash: bool = True
    category: str | None = None
    idempotency_key: str | None = None
    callback_pending: bool = False
    registered_delivery: bool = True
    meta: dict[str, Any] = {}

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def set_status(self, status: MessageStatus, now: float, detail: str = "", smsc: str = "") -> bool:
        """Move to `status` (Rule 1); returns False and only records history when the message is already final."""
        if self.status in FINAL_STATUSES:  # is_final, without a property's call
            self.history.append(StatusChange(now, f"late:{status.value}", detail, smsc))
            return False
        self.status = status
        self.status_at = now
        self.history.append(StatusChange(now, STATUS_VALUE[status], detail, smsc))
        return True

    def to_json(self) -> dict[str, Any]:
        """The API view of the message (docs/http-api.md)."""
        return {
            "id": self.id,
            "status": self.status.value,
            "to": self.to,
            "from": self.source,
            "account": self.account,
            "reference": self.reference,
            "created_at": iso_time(self.created_at),
            "send_at": iso_time(self.send_at) if self.send_at else None,
            "expires_at": iso_time(self.expires_at),
            "status_at": iso_time(self.status_at),
            "attempts": self.attempts,
            "smsc": self.smsc,
            "parts": [{"smsc_message_id": p.smsc_message_id, "receipt": p.receipt} for p in self.parts],
            "error": self.error,
            "charged": self.charged,
            "history": [{"at": iso_time(h.at), "status": h.status, "detail": h.detail or None, "smsc": h.smsc or None}
                        for h in self.history],
        }


_last_second: list[tuple[int, str]] = [(-1, "")]


def iso_time(t: float) -> str:
    """`t` (seconds since the epoch) as the API spells times: UTC to the millisecond, `2026-11-24T16:00:12.250Z`.

    The date and time of the last second asked for is cached: times come in bursts within one second (a batch,
    its statuses, the MOs of a burst), and strftime was about half of the 1.4 us a call took (timeit; 0.7 us
    now)."""
    second = int(t // 1)
    cached = _last_second[0]
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _last_second[0] = cached
    return f"{cached[1]}.{int((t % 1) * 1000):03d}Z"


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> two characters
_POOL_BYTES = 6400  # random bytes read from the OS at a time: 400 ids per getrandom(2) call
# A random byte's low five bits as a character: 256 is a multiple of 32, so each is uniform over the alphabet.
_RANDOM_CHAR = bytes(_ALPHABET.encode("ascii")[b & 31] for b in range(256))


class _RandomPool:
    """Random ids' tails: 16 characters of 5 random bits each (80 bits), from os.urandom in blocks, turned into
    characters a block at a time by one `bytes.translate`."""

    __slots__ = ("pos", "text")

    def __init__(self) -> None:
        self.text = ""
        self.pos = 0

    def tail(self) -> str:
        pos = self.pos
        if pos + 16 > len(self.text):
            self.text = os.urandom(_POOL_BYTES).translate(_RANDOM_CHAR).decode("ascii")
            pos = 0
        self.pos = pos + 16
        return self.text[pos:pos + 16]


_random_tail = _RandomPool().tail
_head: list[tuple[int, str]] = [(-1, "")]  # the last millisecond asked for, and its ten characters


def new_message_id(now: float | None = None) -> MessageId:
    """A 26-character id that sorts by creation time: 48 bits of milliseconds (two zero bits ahead of them, the
    first ten characters), then 80 random bits (sixteen).

    The time's characters are kept for the millisecond (a batch's ids share it) and the random ones are made
    6,400 bytes at a time: 0.42 us an id, against 1.45 us for encoding each id's 130 bits by pairs
    (bench/RESULTS.md, "Smaller steps on every message's path")."""
    ms = int((time.time() if now is None else now) * 1000)
    cached = _head[0]
    if cached[0] != ms:
        p = _PAIRS
        cached = (ms, p[ms >> 40] + p[(ms >> 30) & 1023] + p[(ms >> 20) & 1023] + p[(ms >> 10) & 1023]
                  + p[ms & 1023])
        _head[0] = cached
    return MessageId(cached[1] + _random_tail())


class _MapRecord(Message, array_like=False, gc=False):
    """A record as written before Rule 5: a map of field names."""


ENCODER = msgspec.msgpack.Encoder()
DECODER = msgspec.msgpack.Decoder(Message)
_MAP_DECODER = msgspec.msgpack.Decoder(_MapRecord)
_MAP_HEADS = frozenset((*range(0x80, 0x90), 0xDE, 0xDF))  # fixmap, map 16, map 32


def decode_record(data: bytes | memoryview) -> Message:
    """A stored record: an array (Rule 5), or a map written by an earlier version."""
    if data[0] not in _MAP_HEADS:
        return DECODER.decode(data)
    old = _MAP_DECODER.decode(data)
    return Message(**{name: getattr(old, name) for name in Message.__struct_fields__})
