"""simulator/_outcomes.py: longest prefix, the outcome mix with a seeded RNG, delay draws."""

from __future__ import annotations

import random
from collections import Counter

from dlr import NetworkError, ReceiptStatus
from simulator._config import Delay, NetworkErrorSpec, OutcomeRule
from simulator._outcomes import DelayDraw, OutcomePlan, PrefixTable
from smpp import Status


def test_prefix_table_longest_match() -> None:
    table = PrefixTable([("", "default"), ("44", "uk"), ("4477", "uk-mobile"), ("447700900", "drama")])
    assert table.lookup("447700900123") == "drama"
    assert table.lookup("447711111111") == "uk-mobile"
    assert table.lookup("441234") == "uk"
    assert table.lookup("33612345678") == "default"
    assert table.lookup("4") == "default"
    table.set("3361", "fr-mobile")
    assert table.lookup("33612345678") == "fr-mobile"
    assert table.remove("3361") and not table.remove("3361")
    assert PrefixTable([("44", 1)]).lookup("33") is None
    assert not PrefixTable([])


def plan(*rules: OutcomeRule, delay: Delay = Delay(mean_s=1)) -> OutcomePlan:
    return OutcomePlan(rules, delay)


def test_rules_compile_and_the_default_delivers() -> None:
    p = plan(OutcomeRule(prefix="4477009001", mix={"UNDELIV": 1}, err=1,
                         network_error=NetworkErrorSpec(network_type=3, error_code=1)),
             OutcomeRule(prefix="4477009008", submit_status="ESME_RINVDSTADR"))
    rng = random.Random(1)
    default = p.lookup("447911123456")
    assert default.pick(rng) is ReceiptStatus.DELIVERED and default.delay.constant == 1
    failing = p.lookup("447700900100")
    assert failing.pick(rng) is ReceiptStatus.UNDELIVERABLE and failing.err == 1
    assert failing.network_error == NetworkError(3, 1)
    assert p.lookup("447700900800").submit_status == Status.ESME_RINVDSTADR


def test_the_network_error_struct_is_taken_from_config() -> None:
    p = plan(OutcomeRule(prefix="1", mix={"REJECTD": 1}, network_error=NetworkErrorSpec(network_type=8, error_code=300)))
    assert p.lookup("1").network_error == NetworkError(8, 300)


def test_the_mix_is_drawn_in_proportion_with_a_seeded_rng() -> None:
    p = plan(OutcomeRule(prefix="", mix={"DELIVRD": 0.7, "UNDELIV": 0.2, "EXPIRED": 0.1}))
    rule = p.lookup("447911123456")
    rng = random.Random(42)
    counts = Counter(rule.pick(rng) for _ in range(10_000))
    assert abs(counts[ReceiptStatus.DELIVERED] - 7000) < 250
    assert abs(counts[ReceiptStatus.UNDELIVERABLE] - 2000) < 200
    assert abs(counts[ReceiptStatus.EXPIRED] - 1000) < 150
    first, second = random.Random(42), random.Random(42)
    assert [rule.pick(first) for _ in range(50)] == [rule.pick(second) for _ in range(50)]  # the seed decides


def test_a_single_outcome_draws_nothing() -> None:
    rule = plan(OutcomeRule(prefix="", mix={"REJECTD": 3})).lookup("1")
    rng = random.Random(5)
    state = rng.getstate()
    assert rule.pick(rng) is ReceiptStatus.REJECTED
    assert rng.getstate() == state


def test_delay_distributions_stay_in_bounds() -> None:
    rng = random.Random(3)
    fixed = DelayDraw.of(Delay(distribution="fixed", mean_s=0.5))
    assert fixed.constant == 0.5 and fixed.draw(rng) == 0.5
    uniform = DelayDraw.of(Delay(distribution="uniform", min_s=1, max_s=2))
    assert uniform.constant is None
    assert all(1 <= uniform.draw(rng) <= 2 for _ in range(1000))
    expo = DelayDraw.of(Delay(distribution="exponential", mean_s=1, min_s=0.1, max_s=3))
    draws = [expo.draw(rng) for _ in range(5000)]
    assert all(0.1 <= d <= 3 for d in draws)
    assert 0.8 < sum(draws) / len(draws) < 1.1  # the mean of an exponential clamped at 3 (about 0.95)
    assert DelayDraw.of(Delay(distribution="exponential", mean_s=0)).draw(rng) == 0


def test_a_rule_may_have_its_own_delay() -> None:
    p = plan(OutcomeRule(prefix="4477009002", mix={"EXPIRED": 1}, delay=Delay(mean_s=3)), delay=Delay(mean_s=0.5))
    assert p.lookup("447700900200").delay.constant == 3
    assert p.lookup("447700900300").delay.constant == 0.5
