"""simulator/_schedule.py: due order, ties in scheduling order, the wake-up callback."""

from __future__ import annotations

from simulator._schedule import Action, Scheduler


def test_pop_due_in_time_then_scheduling_order() -> None:
    s = Scheduler()
    s.push(3.0, Action.FINAL, "c")
    s.push(1.0, Action.FINAL, "a")
    s.push(1.0, Action.ENROUTE, "b")
    s.push(5.0, Action.HANDSET, "d")
    assert s.next_due() == 1.0 and len(s) == 4
    assert s.pop_due(0.5) == []
    assert s.pop_due(3.0) == [(Action.FINAL, "a"), (Action.ENROUTE, "b"), (Action.FINAL, "c")]
    assert s.pop_due(10.0) == [(Action.HANDSET, "d")]
    assert not s and s.next_due() is None


def test_wakes_when_an_entry_becomes_the_earliest() -> None:
    woken: list[int] = []
    s = Scheduler()
    s.on_wake = lambda: woken.append(1)
    s.push(5.0, Action.FINAL, 1)  # the first entry
    s.push(6.0, Action.FINAL, 2)  # later than the earliest: no need to wake
    s.push(4.0, Action.FINAL, 3)  # earlier than the earliest
    assert len(woken) == 2
