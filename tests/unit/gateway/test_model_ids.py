"""new_message_id (gateway/_model.py): 26 characters that sort by creation time, then 80 random bits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway._model import new_message_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def spelt(ms: int, random80: int) -> str:
    """The id of the millisecond `ms` with random bits `random80`, 130 bits written five at a time (the
    definition the API documents: the time first, so that ids sort by it)."""
    v = (ms << 80) | random80
    return "".join(ALPHABET[(v >> shift) & 31] for shift in range(125, -1, -5))


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_the_first_ten_characters_spell_the_millisecond(ms: int) -> None:
    t = ms / 1000
    mid = new_message_id(t)
    assert mid[:10] == spelt(int(t * 1000), 0)[:10]  # the millisecond of `t`, as the function reads it
    assert len(mid) == 26 and set(mid) <= set(ALPHABET)


@given(st.integers(min_value=0, max_value=2**47), st.integers(min_value=1, max_value=10**9))
def test_ids_sort_by_their_millisecond(ms: int, later: int) -> None:
    t1, t2 = ms / 1000, (ms + later) / 1000
    if int(t1 * 1000) < int(t2 * 1000):
        assert new_message_id(t1) < new_message_id(t2)


def test_the_random_tails_are_unique_and_use_every_character_in_every_place() -> None:
    ids = [new_message_id(1_800_000_000.0) for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert {mid[:10] for mid in ids} == {spelt(1_800_000_000_000, 0)[:10]}
    for place in range(10, 26):
        assert {mid[place] for mid in ids} == set(ALPHABET)
