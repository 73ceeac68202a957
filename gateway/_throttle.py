"""Token buckets: an SMSC's submit rate (adaptive) and an account's request rate.

Rule: a bucket holds at most `burst` tokens and refills at `rate_per_s`; time is handed in (`now`, seconds
on a monotonic clock), so every rule here is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveRate", "TokenBucket"]


class TokenBucket:
    """A token bucket. `rate_per_s` None means unlimited."""

    __slots__ = ("_at", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float | None, burst: float | None = None, *, now: float = 0.0) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, (rate_per_s or 1.0) / 10)
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if self.rate_per_s is None:
            return
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def take(self, now: float, n: float = 1.0) -> float:
        """Take `n` tokens; returns 0.0 when they were there, else the seconds to wait before asking again."""
        if self.rate_per_s is None:
            return 0.0
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return 0.0
        return (n - self._tokens) / self.rate_per_s

    def set_rate(self, rate_per_s: float | None, now: float) -> None:
        self._refill(now)
        self.rate_per_s = rate_per_s
        if rate_per_s is not None:
            self.burst = max(1.0, rate_per_s / 10)
            self._tokens = min(self._tokens, self.burst)


@dataclass(frozen=True, slots=True)
class AdaptiveRateStatistics:
    configured_per_s: float | None
    current_per_s: float | None
    slowdowns: int


class AdaptiveRate:
    """An SMSC's submit rate: the configured ceiling, halved when the SMSC says ESME_RTHROTTLED or
    ESME_RMSGQFUL, and raised back by a tenth of the ceiling for each quiet `recover_s`.

    With no configured ceiling the first throttle sets one from the rate observed in the last second.
    """

    def __init__(self, ceiling_per_s: float | None, *, recover_s: float = 1.0, floor_per_s: float = 1.0,
                 now: float = 0.0) -> None:
        self.ceiling_per_s = ceiling_per_s
        self.recover_s = recover_s
        self.floor_per_s = floor_per_s
        self.bucket = TokenBucket(ceiling_per_s, now=now)
        self._last_throttle = -1e18
        self._last_step = now
        self._sent_window: list[float] = []
        self.slowdowns = 0

    @property
    def current_per_s(self) -> float | None:
        return self.bucket.rate_per_s

    def take(self, now: float, n: float = 1.0) -> float:
        """As TokenBucket.take, after stepping the rate back up when the SMSC has been quiet."""
        rate = self.bucket.rate_per_s
        if rate is not None and now - self._last_throttle >= self.recover_s and now - self._last_step >= self.recover_s:
            self._last_step = now
            if self.ceiling_per_s is None:
                self.bucket.set_rate(rate * 1.1, now)
            elif rate < self.ceiling_per_s:
                self.bucket.set_rate(min(self.ceiling_per_s, rate + self.ceiling_per_s / 10), now)
        return self.bucket.take(now, n)

    def throttled(self, now: float, observed_per_s: float) -> None:
        """The SMSC refused for rate: halve the current rate (at most once per `recover_s / 4`)."""
        if now - self._last_throttle < self.recover_s / 4:
            return
        self._last_throttle = now
        self._last_step = now
        self.slowdowns += 1
        base = self.bucket.rate_per_s if self.bucket.rate_per_s is not None else max(observed_per_s, 2 * self.floor_per_s)
        self.bucket.set_rate(max(self.floor_per_s, base / 2), now)

    def statistics(self) -> AdaptiveRateStatistics:
        return AdaptiveRateStatistics(self.ceiling_per_s, self.bucket.rate_per_s, self.slowdowns)
