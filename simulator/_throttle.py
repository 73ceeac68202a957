"""Rule: at most `limit_per_s * window_s` messages are admitted in any sliding window of `window_s` seconds.

The window is cut into `buckets` slots of equal width, so the count is exact to one slot: a message admitted
at time t stops counting between `t + window_s - window_s / buckets` and `t + window_s`. Admission is O(1):
a slot index, a comparison and two additions; slots that time has passed are zeroed when the clock moves.
Time is handed in (seconds, any monotonic origin); the window never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SlidingWindow", "SlidingWindowStatistics"]


@dataclass(frozen=True, slots=True)
class SlidingWindowStatistics:
    """How full the window is."""

    limit: int
    window_s: float
    in_window: int
    admitted: int
    refused: int


class SlidingWindow:
    """A per-account throughput limit (messages per second over a sliding window)."""

    __slots__ = ("_admitted", "_counts", "_current", "_inv_width", "_refused", "_total", "limit", "window_s")

    def __init__(self, limit_per_s: float, window_s: float = 1.0, buckets: int = 20) -> None:
        """Create an empty window.

        Args:
            limit_per_s: messages per second allowed on average over the window.
            window_s: the window's length in seconds.
            buckets: how many slots the window is cut into (its time resolution).

        Raises:
            ValueError: a non-positive argument, or a limit below one message per window.
        """
        if limit_per_s <= 0 or window_s <= 0 or buckets < 1:
            raise ValueError("limit_per_s, window_s and buckets must be positive")
        self.limit = int(limit_per_s * window_s)
        if self.limit < 1:
            raise ValueError(f"{limit_per_s}/s over {window_s} s allows no message at all")
        self.window_s = window_s
        self._counts = [0] * buckets
        self._inv_width = buckets / window_s
        self._current: int | None = None
        self._total = 0
        self._admitted = 0
        self._refused = 0

    def _advance(self, slot: int) -> None:
        counts = self._counts
        n = len(counts)
        current = self._current
        if current is None or slot - current >= n:
            for i in range(n):
                counts[i] = 0
            self._total = 0
        elif slot > current:
            for s in range(current + 1, slot + 1):
                i = s % n
                self._total -= counts[i]
                counts[i] = 0
        else:
            return  # the clock did not move forward: keep the newer slot
        self._current = slot

    def admit(self, now: float) -> bool:
        """Count one message at `now` if the window has room; False (and nothing counted) when it is full."""
        slot = int(now * self._inv_width)
        if slot != self._current:
            self._advance(slot)
        if self._total >= self.limit:
            self._refused += 1
            return False
        self._counts[(self._current or 0) % len(self._counts)] += 1
        self._total += 1
        self._admitted += 1
        return True

    def in_window(self, now: float) -> int:
        """How many admitted messages still count at `now`."""
        slot = int(now * self._inv_width)
        if slot != self._current:
            self._advance(slot)
        return self._total

    def statistics(self, now: float) -> SlidingWindowStatistics:
        """A snapshot at `now`."""
        return SlidingWindowStatistics(self.limit, self.window_s, self.in_window(now), self._admitted,
                                       self._refused)
