"""`iso_time` (gateway/_model.py): the API's spelling of a time, with the last second's date and time cached."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from gateway._model import iso_time


def spelt(t: float) -> str:
    """The same time spelt without any cache: what the API has always answered."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def test_examples() -> None:
    assert iso_time(1_795_536_012.25) == "2026-11-24T16:00:12.250Z"
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1_700_000_000.999) == "2023-11-14T22:13:20.999Z"


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
def test_a_run_of_times_in_and_across_seconds_is_spelt_as_without_the_cache(times: list[float]) -> None:
    for t in times:
        for u in (t, t + 0.0005, t + 0.5, t + 1.0):  # the same second, the next: the cache must follow
            assert iso_time(u) == spelt(u)
