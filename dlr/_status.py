"""Rule: every stat word and every message_state value maps to exactly one ReceiptStatus; nothing raises.

The status model of delivery receipts. SMPP 3.4 names the states twice: as the 7-letter `stat:` word of the
receipt text (Appendix B) and as the message_state number (§5.2.28). Vendors add spellings of their own
(DELIVERED, FAILED, BUFFRED, ...). `status_from_stat` and `status_from_message_state` fold all of them into
`ReceiptStatus`; a word or number nobody has seen yet becomes `ReceiptStatus.UNKNOWN`.

Finality follows what gateways do in the field rather than the letter of §5.2.28: ACCEPTED is *not* final.
The specification calls it a final state ("read on behalf of the subscriber by customer service"), but
operators send ACCEPTD to say the SMSC took the message and a later receipt follows; Kannel treats
message_state 6 and the word ACCEPTD as "buffered" (gw/smsc/smsc_smpp.c, handle_dlr), and so do we.

`fold_part_statuses` turns the statuses of the parts of a long message into the status of the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from smpp import MessageState

__all__ = [
    "FAILURE_PRECEDENCE",
    "ReceiptStatus",
    "fold_part_statuses",
    "status_from_message_state",
    "status_from_stat",
]


class ReceiptStatus(Enum):
    """The delivery status a receipt reports, in our words (values are the spellings used at the edges)."""

    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"
    ENROUTE = "enroute"

    # Members are singletons compared by identity, so they may hash by identity, in C: Enum's own __hash__ hashes
    # the name in Python (0.16 against 0.03 us a lookup), and every receipt is looked up in a few tables.
    __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        """True when no later receipt is expected: delivered or failed for good (UNKNOWN included)."""
        return self is not _ENROUTE and self is not _ACCEPTED

    @property
    def is_failure(self) -> bool:
        """True for a final status other than DELIVERED."""
        return self.is_final and self is not ReceiptStatus.DELIVERED

    @property
    def stat(self) -> str:
        """The 7-character stat word of SMPP 3.4 Appendix B (DELIVRD, UNDELIV, ...)."""
        return _STAT_WORD[self]

    @property
    def message_state(self) -> MessageState:
        """The message_state value of §5.2.28 for this status."""
        return _MESSAGE_STATE[self]


_ENROUTE = ReceiptStatus.ENROUTE
_ACCEPTED = ReceiptStatus.ACCEPTED

_STAT_WORD: dict[ReceiptStatus, str] = {
    ReceiptStatus.DELIVERED: "DELIVRD",
    ReceiptStatus.UNDELIVERABLE: "UNDELIV",
    ReceiptStatus.EXPIRED: "EXPIRED",
    ReceiptStatus.REJECTED: "REJECTD",
    ReceiptStatus.DELETED: "DELETED",
    ReceiptStatus.ACCEPTED: "ACCEPTD",
    ReceiptStatus.UNKNOWN: "UNKNOWN",
    ReceiptStatus.ENROUTE: "ENROUTE",
}

_MESSAGE_STATE: dict[ReceiptStatus, MessageState] = {
    ReceiptStatus.DELIVERED: MessageState.DELIVERED,
    ReceiptStatus.UNDELIVERABLE: MessageState.UNDELIVERABLE,
    ReceiptStatus.EXPIRED: MessageState.EXPIRED,
    ReceiptStatus.REJECTED: MessageState.REJECTED,
    ReceiptStatus.DELETED: MessageState.DELETED,
    ReceiptStatus.ACCEPTED: MessageState.ACCEPTED,
    ReceiptStatus.UNKNOWN: MessageState.UNKNOWN,
    ReceiptStatus.ENROUTE: MessageState.ENROUTE,
}

_S = ReceiptStatus
# Upper-cased stat words. The first word of each group is Appendix B's; the others are vendor spellings seen in
# the field (Kannel's handle_dlr counts ACKED, BUFFRED and BUFFERD as buffered).
_STAT_WORDS: dict[str, ReceiptStatus] = {
    "DELIVRD": _S.DELIVERED, "DELIVERED": _S.DELIVERED, "DELIVER": _S.DELIVERED, "DELIVRED": _S.DELIVERED,
    "UNDELIV": _S.UNDELIVERABLE, "UNDELIVERABLE": _S.UNDELIVERABLE, "UNDELIVERED": _S.UNDELIVERABLE,
    "UNDELIVRD": _S.UNDELIVERABLE, "FAILED": _S.UNDELIVERABLE, "FAIL": _S.UNDELIVERABLE,
    "FAILURE": _S.UNDELIVERABLE, "UNDELIVD": _S.UNDELIVERABLE,
    "EXPIRED": _S.EXPIRED, "EXPIRD": _S.EXPIRED,
    "REJECTD": _S.REJECTED, "REJECTED": _S.REJECTED, "REJECT": _S.REJECTED,
    "DELETED": _S.DELETED, "DELETD": _S.DELETED,
    "ACCEPTD": _S.ACCEPTED, "ACCEPTED": _S.ACCEPTED, "ACKED": _S.ACCEPTED,
    "UNKNOWN": _S.UNKNOWN,
    "ENROUTE": _S.ENROUTE, "EN_ROUTE": _S.ENROUTE, "BUFFRED": _S.ENROUTE, "BUFFERD": _S.ENROUTE,
    "BUFFERED": _S.ENROUTE, "SCHEDULED": _S.ENROUTE, "SCHEDLD": _S.ENROUTE, "PENDING": _S.ENROUTE,
    # SMPP 5.0 SKIPPED (§4.7.15 of 5.0): accepted but deliberately not transmitted; final, never delivered.
    "SKIPPED": _S.UNDELIVERABLE,
}

# §5.2.28, with SMPP 5.0's SCHEDULED (0) and SKIPPED (9); values outside the table are UNKNOWN.
_STATES: dict[int, ReceiptStatus] = {
    MessageState.SCHEDULED: _S.ENROUTE,
    MessageState.ENROUTE: _S.ENROUTE,
    MessageState.DELIVERED: _S.DELIVERED,
    MessageState.EXPIRED: _S.EXPIRED,
    MessageState.DELETED: _S.DELETED,
    MessageState.UNDELIVERABLE: _S.UNDELIVERABLE,
    MessageState.ACCEPTED: _S.ACCEPTED,
    MessageState.UNKNOWN: _S.UNKNOWN,
    MessageState.REJECTED: _S.REJECTED,
    MessageState.SKIPPED: _S.UNDELIVERABLE,
}


def status_from_stat(word: str) -> ReceiptStatus:
    """The status for a `stat:` word of a receipt text, in any case; UNKNOWN for a word not in the table.

    Args:
        word: the stat value as received (DELIVRD, delivered, UNDELIV, ...).
    """
    return _STAT_WORDS.get(word.strip().upper(), _S.UNKNOWN)


def status_from_message_state(value: int) -> ReceiptStatus:
    """The status for a message_state value (§5.2.28; SMPP 5.0's 0 and 9 too); UNKNOWN outside the table."""
    return _STATES.get(value, _S.UNKNOWN)


# Which failure a long message reports when its parts failed differently: the first in this tuple wins.
# A refusal by the network (REJECTED) says most about the message or the number, then a handset or
# subscriber that could not be reached (UNDELIVERABLE), then the validity period running out (EXPIRED),
# then removal by the SMSC or an operator (DELETED), and an unexplained outcome (UNKNOWN) last.
FAILURE_PRECEDENCE: tuple[ReceiptStatus, ...] = (
    _S.REJECTED,
    _S.UNDELIVERABLE,
    _S.EXPIRED,
    _S.DELETED,
    _S.UNKNOWN,
)
_FAILURE_RANK = {status: rank for rank, status in enumerate(FAILURE_PRECEDENCE)}


def fold_part_statuses(parts: Iterable[ReceiptStatus | None]) -> ReceiptStatus | None:
    """The status of a long message from the latest status of each of its parts.

    Rules, in order:
      1. any part failed for good: the message failed, with the failure first in FAILURE_PRECEDENCE
         among the parts (a later part failing with a higher-precedence status can still refine it);
      2. every part DELIVERED: DELIVERED;
      3. no part has reported yet: None;
      4. otherwise the message is still pending: ENROUTE while a part has no receipt or is ENROUTE,
         ACCEPTED when every part not yet delivered is ACCEPTED.

    Args:
        parts: one entry per part, None for a part with no receipt yet. An empty iterable gives None.
    """
    failure: ReceiptStatus | None = None
    seen = delivered = total = 0
    enroute = False
    for status in parts:
        total += 1
        if status is None:
            enroute = True
            continue
        seen += 1
        rank = _FAILURE_RANK.get(status)
        if rank is not None:
            if failure is None or rank < _FAILURE_RANK[failure]:
                failure = status
        elif status is _S.DELIVERED:
            delivered += 1
        elif status is _S.ENROUTE:
            enroute = True
    if failure is not None:
        return failure
    if seen == 0:
        return None
    if delivered == total:
        return _S.DELIVERED
    return _S.ENROUTE if enroute else _S.ACCEPTED
