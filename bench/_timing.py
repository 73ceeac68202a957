"""Timing helpers shared by the benchmarks that time one function in a loop (codec.py, hotpath.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["rate"]


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`: the best of rounds lasting about `seconds` in total."""
    n = 1
    while True:  # calibrate a round to about 50 ms
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt > 0.05:
            break
        n *= 2
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t))
    return best
