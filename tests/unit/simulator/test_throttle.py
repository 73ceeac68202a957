"""simulator/_throttle.py: the sliding window with a fake clock."""

from __future__ import annotations

import pytest

from simulator._throttle import SlidingWindow


def test_the_limit_holds_within_the_window() -> None:
    w = SlidingWindow(10, window_s=1.0, buckets=10)
    t = 100.0
    assert [w.admit(t) for _ in range(12)] == [True] * 10 + [False] * 2
    assert not w.admit(t + 0.5)  # still inside the same second
    assert w.in_window(t + 0.5) == 10


def test_slots_leave_the_window_as_time_passes() -> None:
    w = SlidingWindow(10, window_s=1.0, buckets=10)
    for i in range(10):
        assert w.admit(100.0 + i * 0.1)  # one per slot, the window full at 100.9
    assert not w.admit(100.95)
    assert w.admit(101.0)  # the slot of 100.0 left the window
    assert not w.admit(101.05)
    assert w.admit(101.1)  # and the slot of 100.1
    assert w.in_window(103.0) == 0  # a long gap clears everything
    stats = w.statistics(103.0)
    assert (stats.limit, stats.admitted, stats.refused) == (10, 12, 2)


def test_a_longer_window_allows_bursts_up_to_rate_times_window() -> None:
    w = SlidingWindow(5, window_s=2.0)
    assert sum(w.admit(0.0) for _ in range(20)) == 10


def test_a_clock_going_back_does_not_reopen_the_window() -> None:
    w = SlidingWindow(2, window_s=1.0)
    assert w.admit(10.0) and w.admit(10.0)
    assert not w.admit(9.0)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(0)
    with pytest.raises(ValueError, match="allows no message"):
        SlidingWindow(0.5, window_s=1.0)
