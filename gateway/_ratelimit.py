"""Per-account submit rate limits for the HTTP API.

Rule: an account's limit counts messages, not requests (a batch of n messages takes n tokens). A request is
admitted when the account's bucket holds at least min(n, burst) tokens and then takes all n, so the bucket may
go below zero: a batch larger than the burst is admitted from a full bucket and the account then waits until
the debt has refilled. Over any long period an account gets no more than `rate_limit_per_s` messages a second.
Time is handed in by the caller's clock, so every rule here is tested without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._config import AccountConfig

__all__ = ["AccountRateLimiter", "RateLimitStatistics"]


class _Bucket:
    __slots__ = ("at", "burst", "rate_per_s", "tokens")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: float, n: int) -> float:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate_per_s)
            self.at = now
        need = min(float(n), self.burst)
        if self.tokens >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate_per_s


@dataclass(frozen=True, slots=True)
class RateLimitStatistics:
    admitted: int
    refused: int
    accounts: int


class AccountRateLimiter:
    """One bucket per account that has `rate_limit_per_s` set.

    Args:
        clock: seconds on a monotonic clock (tests hand in a fake one).

    The burst defaults to one second's worth of the rate when the account sets no `rate_limit_burst`.
    A reload that changes an account's rate or burst starts its bucket afresh (full).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float, _Bucket]] = {}
        self.admitted = 0
        self.refused = 0

    def take(self, account: AccountConfig, n: int) -> float:
        """Admit `n` messages for `account`: 0.0 when admitted, else the seconds to wait before asking again."""
        rate = account.rate_limit_per_s
        if rate is None:
            self.admitted += 1
            return 0.0
        burst = float(account.rate_limit_burst) if account.rate_limit_burst is not None else max(1.0, rate)
        entry = self._buckets.get(account.id)
        now = self.clock()
        if entry is None or entry[0] != rate or entry[1] != burst:
            entry = (rate, burst, _Bucket(rate, burst, now))
            self._buckets[account.id] = entry
        wait = entry[2].take(now, n)
        if wait > 0.0:
            self.refused += 1
        else:
            self.admitted += 1
        return wait

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """The Retry-After header value (RFC 9110 §10.2.3: whole seconds) for a wait: rounded up, at least 1."""
        return max(1, math.ceil(wait_s))

    def statistics(self) -> RateLimitStatistics:
        return RateLimitStatistics(self.admitted, self.refused, len(self._buckets))
