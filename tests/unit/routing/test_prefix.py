"""Tests for routing._prefix: the longest-prefix table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import PrefixMatch, PrefixTable, RoutingConfigError

digits = st.text(alphabet="0123456789", max_size=8)


def naive_longest(pairs: dict[str, int], query: str) -> PrefixMatch[int] | None:
    hits = [p for p in pairs if query.startswith(p)]
    if not hits:
        return None
    best = max(hits, key=len)
    return PrefixMatch(best, pairs[best])


def test_longest_prefix_wins() -> None:
    table = PrefixTable([("44", "uk"), ("447", "uk-mobile"), ("4479", "uk-79"), ("1", "nanp")])
    assert table.lookup("447911123456") == PrefixMatch("4479", "uk-79")
    assert table.lookup("447811123456") == PrefixMatch("447", "uk-mobile")
    assert table.lookup("442071234567") == PrefixMatch("44", "uk")
    assert table.lookup("12125551234") == PrefixMatch("1", "nanp")
    assert table.lookup("33612345678") is None


def test_query_shorter_than_the_prefixes() -> None:
    table = PrefixTable([("4479", "a"), ("4", "b")])
    assert table.lookup("447") == PrefixMatch("4", "b")
    assert table.lookup("") is None


def test_empty_prefix_is_a_catch_all() -> None:
    table = PrefixTable([("", "default"), ("44", "uk")])
    assert table.lookup("33612345678") == PrefixMatch("", "default")
    assert table.lookup("") == PrefixMatch("", "default")
    assert table.lookup("4470") == PrefixMatch("44", "uk")


def test_empty_table_matches_nothing() -> None:
    table: PrefixTable[int] = PrefixTable()
    assert table.lookup("447911123456") is None
    assert list(table.matches("447911123456")) == []
    assert len(table) == 0


def test_matches_lists_every_prefix_longest_first() -> None:
    table = PrefixTable([("", 0), ("4", 1), ("447", 3), ("4479", 4), ("5", 9)])
    assert [m.prefix for m in table.matches("447911")] == ["4479", "447", "4", ""]


def test_exact_access_and_size() -> None:
    table = PrefixTable([("44", 1), ("447", 2)])
    assert table.get("44") == 1
    assert table.get("4") is None
    assert table.get("4470") is None
    assert "447" in table
    assert "4" not in table
    assert 447 not in table
    assert len(table) == 2
    assert [(m.prefix, m.value) for m in table] == [("44", 1), ("447", 2)]


@pytest.mark.parametrize("prefix", ["44a", "+44", " 44", "٤٤", "4 4"])
def test_non_digit_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(RoutingConfigError) as info:
        PrefixTable([(prefix, 1)])
    assert info.value.rule == repr(prefix)


def test_duplicate_prefix_is_refused() -> None:
    with pytest.raises(RoutingConfigError, match="prefix given twice") as info:
        PrefixTable([("44", 1), ("33", 2), ("44", 3)])
    assert info.value.rule == "'44'"


def test_table_and_matches_are_immutable() -> None:
    table = PrefixTable([("44", 1)])
    match = table.lookup("4471")
    assert match is not None
    with pytest.raises(AttributeError):
        match.value = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        table.extra = 1  # type: ignore[attr-defined]
    assert hash(match) == hash(PrefixMatch("44", 1))


@given(st.dictionaries(digits, st.integers(), max_size=40), st.lists(digits, max_size=20))
def test_lookup_agrees_with_a_naive_scan(pairs: dict[str, int], queries: list[str]) -> None:
    table = PrefixTable(pairs.items())
    # Also query every stored prefix and its extensions, where hits are.
    for query in [*queries, *pairs, *(p + "7" for p in pairs)]:
        assert table.lookup(query) == naive_longest(pairs, query)
        expected = sorted((p for p in pairs if query.startswith(p)), key=len, reverse=True)
        assert [m.prefix for m in table.matches(query)] == expected
