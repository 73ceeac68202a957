"""Rule: one heap of (due time, order, kind, item) holds every timed action; a tick takes all that are due at once.

Receipts, intermediate receipts, handset replies, delayed responses and redeliveries wait here, keyed by
monotonic due time; entries due at the same time keep their order of scheduling. Nothing is a task of its own:
the simulator's one ticker pops what is due and hands it to the sessions in a batch.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from enum import IntEnum
from typing import Any

__all__ = ["Action", "Scheduler"]


class Action(IntEnum):
    """What a scheduled entry does when it is due."""

    FINAL = 0  # a message reaches its final status: its receipt, if wanted, goes out
    ENROUTE = 1  # an intermediate ENROUTE receipt
    HANDSET = 2  # a scripted handset's reply (an MO)
    RESPONSE = 3  # a response held back by the response-delay fault
    REDELIVER = 4  # a deliver_sm the ESME answered with a temporary error


class Scheduler:
    """A min-heap of timed actions (time is handed in)."""

    __slots__ = ("_heap", "_order", "on_wake")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Action, Any]] = []
        self._order = 0
        self.on_wake: Callable[[], None] | None = None

    def push(self, due: float, action: Action, item: Any) -> None:
        """Schedule `item` for `due`; calls `on_wake` when it became the earliest entry (so a sleeping ticker
        wakes up sooner)."""
        heap = self._heap
        self._order += 1
        order = self._order
        heapq.heappush(heap, (due, order, action, item))
        if heap[0][1] == order and self.on_wake is not None:
            self.on_wake()

    def pop_due(self, now: float) -> list[tuple[Action, Any]]:
        """Remove and return every entry due at or before `now`, in due order."""
        heap = self._heap
        due: list[tuple[Action, Any]] = []
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            entry = pop(heap)
            due.append((entry[2], entry[3]))
        return due

    def next_due(self) -> float | None:
        """The earliest due time, or None when nothing is scheduled."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
