"""Token buckets with a hand-held clock."""

from __future__ import annotations

import pytest

from gateway._throttle import AdaptiveRate, TokenBucket


def test_unlimited_bucket_never_waits() -> None:
    b = TokenBucket(None)
    assert all(b.take(0.0) == 0.0 for _ in range(10_000))


def test_bucket_allows_burst_then_paces_at_rate() -> None:
    b = TokenBucket(100.0, burst=10, now=0.0)
    assert [b.take(0.0) for _ in range(10)] == [0.0] * 10
    wait = b.take(0.0)
    assert wait == pytest.approx(0.01)
    assert b.take(0.01) == 0.0  # one token refilled after 10 ms


def test_bucket_never_holds_more_than_burst() -> None:
    b = TokenBucket(100.0, burst=5, now=0.0)
    for _ in range(5):
        b.take(0.0)
    b.take(1000.0)  # a long idle period refills to the burst only
    taken = sum(1 for _ in range(20) if b.take(1000.0) == 0.0)
    assert taken == 4


def test_throttle_halves_and_recovers_towards_the_ceiling() -> None:
    r = AdaptiveRate(100.0, recover_s=1.0, now=0.0)
    r.throttled(0.0, observed_per_s=100.0)
    assert r.current_per_s == 50.0
    r.throttled(0.1, observed_per_s=50.0)  # within recover_s/4: ignored
    assert r.current_per_s == 50.0
    r.take(1.0)
    assert r.current_per_s == 60.0
    for t in range(2, 12):
        r.take(float(t))
    assert r.current_per_s == 100.0  # never above the configured ceiling
    assert r.statistics().slowdowns == 1


def test_unlimited_rate_learns_a_limit_from_the_first_throttle() -> None:
    r = AdaptiveRate(None, recover_s=1.0, now=0.0)
    assert r.current_per_s is None
    r.throttled(5.0, observed_per_s=400.0)
    assert r.current_per_s == 200.0
    r.take(6.0)
    assert r.current_per_s == pytest.approx(220.0)


def test_rate_never_falls_below_the_floor() -> None:
    r = AdaptiveRate(4.0, recover_s=1.0, floor_per_s=1.0, now=0.0)
    for i in range(10):
        r.throttled(float(i), observed_per_s=1.0)
    assert r.current_per_s == 1.0
