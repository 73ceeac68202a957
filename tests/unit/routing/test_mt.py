"""Tests for routing._mt: MT rules, precedence, and route resolution."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import (
    FailoverRoute,
    MtDecision,
    MtRouter,
    MtRule,
    NoSmscUp,
    RoutingConfigError,
    SmscChoice,
    WeightedRoute,
)

UK = FailoverRoute("uk", ("vodafone-a", "vodafone-b"))
UK_MOBILE = WeightedRoute("uk-mobile", (("o2", 3), ("ee", 1)))
ACME = FailoverRoute("acme", ("premium",))
SHORT = FailoverRoute("short", ("shortcode-smsc",))
BOTH = FailoverRoute("both", ("dedicated",))
WORLD = FailoverRoute("world", ("wholesale",))


def never() -> float:
    raise AssertionError("a failover route draws no random number")


ROUTER = MtRouter(
    [
        MtRule("default", "", WORLD),
        MtRule("uk", "44", UK),
        MtRule("uk-mobile", "447", UK_MOBILE),
        MtRule("uk-acme", "447", ACME, account="acme"),
        MtRule("uk-shortcode", "447", SHORT, source="80001"),
        MtRule("uk-both", "447", BOTH, source="80001", account="acme"),
        MtRule("uk-79-foo", "4479", ACME, account="foo"),
    ]
)


@pytest.mark.parametrize(
    ("msisdn", "source", "account", "rule"),
    [
        ("33612345678", None, None, "default"),
        ("442071234567", None, None, "uk"),
        ("447811123456", None, None, "uk-mobile"),
        ("447811123456", "ACME", "other", "uk-mobile"),
        ("447811123456", None, "acme", "uk-acme"),
        ("447811123456", "80001", None, "uk-shortcode"),
        ("447811123456", "80001", "other", "uk-shortcode"),
        ("447811123456", "80001", "acme", "uk-both"),
        ("447811123456", "80002", "acme", "uk-acme"),
        # 4479 has a rule only for account foo: others fall back to the next shorter prefix.
        ("447911123456", None, "acme", "uk-acme"),
        ("447911123456", None, "foo", "uk-79-foo"),
        # The longest prefix wins over a more specific rule at a shorter prefix.
        ("447911123456", "80001", "foo", "uk-79-foo"),
    ],
)
def test_precedence(msisdn: str, source: str | None, account: str | None, rule: str) -> None:
    decision = ROUTER.decide(msisdn, source=source, account=account)
    assert decision.rule is not None
    assert decision.rule.name == rule
    assert decision.route is decision.rule.route
    assert decision.prefix == decision.rule.prefix


def test_no_rule_applies() -> None:
    router = MtRouter([MtRule("uk-acme", "44", ACME, account="acme")])
    decision = router.decide("447911123456", account="other")
    assert decision.rule is None
    assert decision.route is None
    assert decision.prefix is None
    assert decision.passed_over == (router.rules[0],)
    assert "no rule applies to 447911123456" in decision.reason
    assert "passed over (conditions not met): rule 'uk-acme' (prefix '44' account 'acme')" in decision.reason
    assert MtRouter([]).decide("447911123456").rule is None


def test_reason_explains_the_choice() -> None:
    decision = ROUTER.decide("447911123456", source="80001", account="acme")
    assert decision.reason == (
        "longest matching prefix '447', rule 'uk-both' matching source '80001' and account 'acme' "
        "-> route 'both' (failover dedicated); passed over (conditions not met): "
        "rule 'uk-79-foo' (prefix '4479' account 'foo')"
    )
    plain = ROUTER.decide("447811123456")
    assert plain.reason == (
        "longest matching prefix '447', rule 'uk-mobile' for any source and account "
        "-> route 'uk-mobile' (weighted o2=3, ee=1)"
    )
    assert ROUTER.decide("33612345678").reason.startswith("catch-all prefix '', rule 'default'")


def test_specificity_order() -> None:
    assert [MtRule("r", "", WORLD, source=s, account=a).specificity for s, a in
            [("x", "y"), ("x", None), (None, "y"), (None, None)]] == [3, 2, 1, 0]


def test_decision_and_rules_are_hashable_values() -> None:
    a = ROUTER.decide("447811123456", account="acme")
    b = ROUTER.decide("447811123456", account="acme")
    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a, MtDecision)
    assert len({UK, UK_MOBILE, FailoverRoute("uk", ("vodafone-a", "vodafone-b"))}) == 2


def test_duplicate_rule_is_refused_and_named() -> None:
    with pytest.raises(RoutingConfigError, match="same prefix, source and account as rule 'a'") as info:
        MtRouter([MtRule("a", "44", UK, account="x"), MtRule("b", "44", ACME, account="x")])
    assert info.value.rule == "b"
    with pytest.raises(RoutingConfigError, match="rule name given twice") as info:
        MtRouter([MtRule("a", "44", UK), MtRule("a", "33", UK)])
    assert info.value.rule == "a"


@pytest.mark.parametrize(
    ("build", "rule", "says"),
    [
        (lambda: FailoverRoute("r", ()), "r", "at least one SMSC"),
        (lambda: FailoverRoute("r", ("a", "b", "a")), "r", "SMSC 'a' listed twice"),
        (lambda: FailoverRoute("r", ("",)), "r", "must not be empty"),
        (lambda: FailoverRoute("", ("a",)), "<unnamed route>", "needs a name"),
        (lambda: WeightedRoute("w", ()), "w", "at least one SMSC"),
        (lambda: WeightedRoute("w", (("a", 0),)), "w", "weight of SMSC 'a' must be a positive integer, got 0"),
        (lambda: WeightedRoute("w", (("a", -2),)), "w", "got -2"),
        (lambda: WeightedRoute("w", (("a", 1.5),)), "w", "got 1.5"),  # type: ignore[arg-type]
        (lambda: WeightedRoute("w", (("a", True),)), "w", "got True"),
        (lambda: WeightedRoute("w", (("a", 1), ("a", 2))), "w", "listed twice"),
        (lambda: MtRule("m", "44x", UK), "m", "prefix must be digits"),
        (lambda: MtRule("m", "+44", UK), "m", "prefix must be digits"),
        (lambda: MtRule("m", "44", UK, source=""), "m", "source must not be empty"),
        (lambda: MtRule("m", "44", UK, account=""), "m", "account must not be empty"),
        (lambda: MtRule("", "44", UK), "<unnamed rule>", "needs a name"),
    ],
)
def test_bad_definitions_are_refused_and_named(build: object, rule: str, says: str) -> None:
    with pytest.raises(RoutingConfigError, match=says) as info:
        build()  # type: ignore[operator]
    assert info.value.rule == rule


def test_failover_takes_the_first_up() -> None:
    route = FailoverRoute("r", ("a", "b", "c"))
    assert route.resolve({"a", "b", "c"}, never) == SmscChoice("a", ("b", "c"))
    assert route.resolve({"c", "b"}, never) == SmscChoice("b", ("c",))
    assert route.resolve(frozenset({"c"}), never) == SmscChoice("c", ())
    assert route.resolve(set(), never) == NoSmscUp("r", ("a", "b", "c"))
    assert route.resolve({"z"}, never) == NoSmscUp("r", ("a", "b", "c"))


def test_weighted_pick_follows_the_cumulative_weights() -> None:
    route = WeightedRoute("w", (("a", 3), ("b", 1), ("c", 4)))
    up = {"a", "b", "c"}
    # Total 8: [0, 3) -> a, [3, 4) -> b, [4, 8) -> c.
    assert route.resolve(up, lambda: 0.0).smsc == "a"  # type: ignore[union-attr]
    assert route.resolve(up, lambda: 2.99 / 8).smsc == "a"  # type: ignore[union-attr]
    assert route.resolve(up, lambda: 3 / 8).smsc == "b"  # type: ignore[union-attr]
    assert route.resolve(up, lambda: 4 / 8).smsc == "c"  # type: ignore[union-attr]
    assert route.resolve(up, lambda: 0.999999).smsc == "c"  # type: ignore[union-attr]
    assert route.resolve(up, lambda: 1.0).smsc == "c"  # type: ignore[union-attr]
    assert route.resolve(up, lambda: 0.0) == SmscChoice("a", ("c", "b"))
    # With c down the total is 4: [0, 3) -> a, [3, 4) -> b.
    assert route.resolve({"a", "b"}, lambda: 0.74) == SmscChoice("a", ("b",))
    assert route.resolve({"a", "b"}, lambda: 0.75) == SmscChoice("b", ("a",))
    assert route.resolve(set(), lambda: 0.5) == NoSmscUp("w", ("a", "b", "c"))


def test_weighted_shares_with_a_seeded_source() -> None:
    route = WeightedRoute("w", (("a", 3), ("b", 1)))
    rng = random.Random(20261124)
    counts = collections.Counter(
        choice.smsc for choice in (route.resolve({"a", "b"}, rng.random) for _ in range(8000))
        if isinstance(choice, SmscChoice)
    )
    # Expected 6000 / 2000; 5 standard deviations is about 194.
    assert abs(counts["a"] - 6000) < 200
    assert counts["a"] + counts["b"] == 8000


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 100)), min_size=1, max_size=8,
             unique_by=lambda pair: pair[0]),
    st.sets(st.sampled_from("abcdefghxyz")),
    st.floats(0.0, 1.0, exclude_max=True),
)
def test_weighted_picks_only_return_up_smscs(
    weights: list[tuple[str, int]], up: set[str], draw: float
) -> None:
    route = WeightedRoute("w", tuple(weights))
    result = route.resolve(up, lambda: draw)
    live = [smsc for smsc, _ in weights if smsc in up]
    if not live:
        assert result == NoSmscUp("w", route.smscs)
        return
    assert isinstance(result, SmscChoice)
    assert result.smsc in up
    assert set(result.alternates) <= up
    assert sorted([result.smsc, *result.alternates]) == sorted(live)


@given(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True), st.sets(st.sampled_from("abcdefz")))
def test_failover_picks_only_up_smscs_in_order(smscs: list[str], up: set[str]) -> None:
    result = FailoverRoute("f", tuple(smscs)).resolve(up, never)
    live = tuple(s for s in smscs if s in up)
    assert result == (SmscChoice(live[0], live[1:]) if live else NoSmscUp("f", tuple(smscs)))
