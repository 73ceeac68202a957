"""Tests for dlr._status: stat words, message_state values, finality and the folding of part statuses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr import (
    FAILURE_PRECEDENCE,
    ReceiptStatus,
    fold_part_statuses,
    status_from_message_state,
    status_from_stat,
)
from smpp import MessageState

S = ReceiptStatus


@pytest.mark.parametrize(
    ("word", "status"),
    [
        # The stat words of SMPP 3.4 Appendix B, and ENROUTE (SMPP 5.0).
        ("DELIVRD", S.DELIVERED),
        ("EXPIRED", S.EXPIRED),
        ("DELETED", S.DELETED),
        ("UNDELIV", S.UNDELIVERABLE),
        ("ACCEPTD", S.ACCEPTED),
        ("UNKNOWN", S.UNKNOWN),
        ("REJECTD", S.REJECTED),
        ("ENROUTE", S.ENROUTE),
        # Vendor spellings.
        ("DELIVERED", S.DELIVERED),
        ("UNDELIVERABLE", S.UNDELIVERABLE),
        ("FAILED", S.UNDELIVERABLE),
        ("REJECTED", S.REJECTED),
        ("SCHEDULED", S.ENROUTE),
        # Kannel's handle_dlr (gw/smsc/smsc_smpp.c) counts ACKED, BUFFRED and BUFFERD as buffered.
        ("ACKED", S.ACCEPTED),
        ("BUFFRED", S.ENROUTE),
        ("BUFFERD", S.ENROUTE),
        # Case and blanks do not matter.
        ("delivrd", S.DELIVERED),
        (" Undeliv ", S.UNDELIVERABLE),
    ],
)
def test_stat_words(word: str, status: ReceiptStatus) -> None:
    assert status_from_stat(word) is status


@pytest.mark.parametrize("word", ["", "XYZZY", "DELIVRD!", "0", "\x00"])
def test_unknown_stat_words_are_unknown(word: str) -> None:
    assert status_from_stat(word) is S.UNKNOWN


@given(st.text())
def test_status_from_stat_never_raises(word: str) -> None:
    assert isinstance(status_from_stat(word), ReceiptStatus)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        # §5.2.28; 0 SCHEDULED and 9 SKIPPED are SMPP 5.0's additions.
        (0, S.ENROUTE),
        (1, S.ENROUTE),
        (2, S.DELIVERED),
        (3, S.EXPIRED),
        (4, S.DELETED),
        (5, S.UNDELIVERABLE),
        (6, S.ACCEPTED),
        (7, S.UNKNOWN),
        (8, S.REJECTED),
        (9, S.UNDELIVERABLE),
        (10, S.UNKNOWN),
        (255, S.UNKNOWN),
        (-1, S.UNKNOWN),
    ],
)
def test_message_states(value: int, status: ReceiptStatus) -> None:
    assert status_from_message_state(value) is status


@given(st.integers())
def test_status_from_message_state_never_raises(value: int) -> None:
    assert isinstance(status_from_message_state(value), ReceiptStatus)


@pytest.mark.parametrize("status", list(ReceiptStatus))
def test_each_status_round_trips_through_its_stat_word_and_message_state(status: ReceiptStatus) -> None:
    assert len(status.stat) == 7
    assert status_from_stat(status.stat) is status
    assert status_from_message_state(status.message_state) is status
    assert isinstance(status.message_state, MessageState)


def test_members_hash_by_identity_and_find_themselves_in_tables() -> None:
    # ReceiptStatus hashes by identity (in C) instead of Enum's hash of the name: equality is identity, so
    # every table keyed by members must still find each member, and only it.
    table = {s: s.value for s in ReceiptStatus}
    assert all(table[s] == s.value for s in ReceiptStatus)
    assert len({hash(s) for s in ReceiptStatus}) == len(ReceiptStatus)
    assert all(hash(s) == object.__hash__(s) for s in ReceiptStatus)
    assert ReceiptStatus("delivered") in {S.DELIVERED}


def test_finality_follows_kannel_not_the_letter_of_5_2_28() -> None:
    # Kannel's handle_dlr: message_state 1 (ENROUTE) and 6 (ACCEPTED) are "buffered"; 2 success;
    # 3, 4, 5, 7, 8 failures.
    assert {s for s in ReceiptStatus if not s.is_final} == {S.ENROUTE, S.ACCEPTED}
    assert not status_from_message_state(1).is_final
    assert not status_from_message_state(6).is_final
    assert status_from_message_state(2).is_final and not status_from_message_state(2).is_failure
    for value in (3, 4, 5, 7, 8):
        assert status_from_message_state(value).is_failure


def test_failure_precedence_lists_every_failure_once() -> None:
    assert set(FAILURE_PRECEDENCE) == {s for s in ReceiptStatus if s.is_failure}
    assert len(FAILURE_PRECEDENCE) == len(set(FAILURE_PRECEDENCE))
    assert FAILURE_PRECEDENCE[0] is S.REJECTED


@pytest.mark.parametrize(
    ("parts", "folded"),
    [
        ([], None),
        ([None], None),
        ([None, None, None], None),
        ([S.DELIVERED], S.DELIVERED),
        ([S.DELIVERED, S.DELIVERED, S.DELIVERED], S.DELIVERED),
        ([S.DELIVERED, None], S.ENROUTE),
        ([S.DELIVERED, S.ENROUTE], S.ENROUTE),
        ([S.DELIVERED, S.ACCEPTED], S.ACCEPTED),
        ([S.ACCEPTED, S.ACCEPTED], S.ACCEPTED),
        ([S.ACCEPTED, None], S.ENROUTE),
        # One final failure decides, even while other parts are pending.
        ([S.DELIVERED, S.EXPIRED, None], S.EXPIRED),
        ([S.UNDELIVERABLE, S.ENROUTE], S.UNDELIVERABLE),
        # Among failures, FAILURE_PRECEDENCE decides.
        ([S.EXPIRED, S.REJECTED, S.DELIVERED], S.REJECTED),
        ([S.UNKNOWN, S.DELETED], S.DELETED),
        ([S.UNKNOWN, S.EXPIRED, S.UNDELIVERABLE], S.UNDELIVERABLE),
        ([S.UNKNOWN, S.DELIVERED], S.UNKNOWN),
    ],
)
def test_fold_part_statuses(parts: list[ReceiptStatus | None], folded: ReceiptStatus | None) -> None:
    assert fold_part_statuses(parts) is folded


def test_fold_takes_any_iterable() -> None:
    assert fold_part_statuses(s for s in (S.DELIVERED, S.DELIVERED)) is S.DELIVERED


_part = st.one_of(st.none(), st.sampled_from(list(ReceiptStatus)))


@given(st.lists(_part, max_size=8))
def test_fold_is_order_free_and_consistent(parts: list[ReceiptStatus | None]) -> None:
    folded = fold_part_statuses(parts)
    for perm in itertools.islice(itertools.permutations(parts), 24):
        assert fold_part_statuses(perm) is folded
    failures = [p for p in parts if p is not None and p.is_failure]
    if failures:
        assert folded is min(failures, key=FAILURE_PRECEDENCE.index)
    elif parts and all(p is S.DELIVERED for p in parts):
        assert folded is S.DELIVERED
    elif all(p is None for p in parts):
        assert folded is None
    else:
        assert folded is not None and not folded.is_final
