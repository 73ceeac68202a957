"""The load generator's percentiles, tally, report and its text and JSON forms."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator._load_stats import (
    Report,
    Tally,
    format_report,
    percentile,
    progress_line,
    report_json,
    summarize,
)


def test_nearest_rank_percentiles_of_published_examples() -> None:
    # The nearest-rank examples of the Wikipedia article "Percentile" (nearest-rank method).
    five = [15, 20, 35, 40, 50]
    assert [percentile(five, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    ten = [3, 6, 7, 8, 8, 10, 13, 15, 16, 20]
    assert [percentile(ten, p) for p in (25, 50, 75, 100)] == [7, 8, 15, 20]
    assert percentile(ten, 90) == 16  # rank ceil(0.9 * 10) = 9, not 10


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e3, allow_nan=False), min_size=1, max_size=300),
       st.floats(min_value=0.1, max_value=100))
def test_a_percentile_is_a_sample_with_enough_below_it(values: list[float], p: float) -> None:
    ordered = sorted(values)
    v = percentile(ordered, p)
    assert v in ordered
    at_or_below = sum(1 for x in ordered if x <= v)
    assert at_or_below >= math.ceil(p / 100 * len(ordered) - 1e-9)
    assert sum(1 for x in ordered if x < v) < math.ceil(p / 100 * len(ordered) - 1e-9) or v == ordered[0]


def test_summarize() -> None:
    assert summarize([]) is None
    s = summarize([0.004, 0.001, 0.002, 0.003] * 25)
    assert s is not None
    assert (s.count, s.p50_s, s.p90_s, s.p99_s, s.max_s) == (100, 0.002, 0.004, 0.004, 0.004)
    assert s.mean_s == pytest.approx(0.0025)


def _tally() -> Tally:
    t = Tally(messages_planned=10, messages_started=10, requests_planned=12, sent=12, ok=11,
              receipts_expected=11, first_send=100.0, last_response=102.0, last_receipt=104.0)
    t.add_error("ESME_RTHROTTLED")
    t.receipts["DELIVRD"] = 10
    t.receipts["UNDELIV"] = 1
    t.response_s.extend([0.001] * 12)
    t.receipt_s.extend([0.5] * 11)
    return t


def test_report_of_a_good_run() -> None:
    r = Report.build(_tally(), target="smpp://x@h:1", mode="closed loop", unit="submit_sm", started=99.0,
                     finished=105.0, cpu_s=0.25)
    assert r.ok and r.problems == ()
    assert r.request_per_s == 6.0  # 12 answered over the 2 s from the first send to the last answer
    assert r.receipt_per_s == 11 / 4
    assert r.receipts_received == 11 and r.receipts_missing == 0 and r.elapsed_s == 6.0
    text = format_report(r)
    assert "ESME_RTHROTTLED 1" in text and "p99 1.00 ms" in text and "DELIVRD 10" in text
    assert "FAILED" not in text
    data = json.loads(report_json(r))
    assert data["ok"] is True and data["errors"] == {"ESME_RTHROTTLED": 1}
    assert data["receipt"]["p50_s"] == 0.5 and data["cpu_s"] == 0.25


def test_report_names_what_is_missing() -> None:
    t = _tally()
    t.messages_started = 8
    t.add_unanswered("response timeout", 2)
    t.receipts_expected = 14
    r = Report.build(t, target="t", mode="m", unit="submit_sm", started=99.0, finished=105.0, cpu_s=0.0,
                     problems=["every submitting bind was lost"])
    assert not r.ok
    assert r.problems == ("every submitting bind was lost", "2 submit_sm never answered", "2 messages never sent",
                          "3 expected receipts never came")
    assert "FAILED" in format_report(r)
    assert json.loads(report_json(r))["ok"] is False


def test_report_with_nothing_answered() -> None:
    r = Report.build(Tally(messages_planned=1), target="t", mode="m", unit="messages", started=0.0, finished=1.0,
                     cpu_s=0.0)
    assert r.request_per_s == 0.0 and r.response is None and not r.ok
    assert "response  -" in format_report(r)


def test_progress_line() -> None:
    line = progress_line(_tally(), 2.0)
    assert "sent 12" in line and "answered 12" in line and "receipts 11/11" in line and "6/s" in line
