"""Rule: percentiles are exact nearest-rank values of every latency recorded, never estimates.

The load generator appends each latency (seconds, a float) to an array as it happens and sorts once at the
end: 8 bytes a sample, and a million samples sort in well under a second. The p-th percentile of n sorted
samples is the one at rank ceil(p / 100 * n) (the nearest-rank definition), so p100 is the maximum and every
reported value is one that was measured.

`Tally` is the mutable scoreboard the drivers write into; `Report` is its frozen summary, printed as text or
as JSON for benchmarks.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "PERCENTILES",
    "LatencySummary",
    "Report",
    "Tally",
    "format_report",
    "percentile",
    "progress_line",
    "report_json",
    "summarize",
]

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile of values sorted ascending.

    Raises:
        ValueError: no values, or p outside (0, 100].
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    rank = math.ceil(p / 100.0 * n - 1e-9)  # the epsilon keeps 0.9 * 10 at rank 9, not 10
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency percentiles in seconds."""

    count: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    mean_s: float


def summarize(values: Iterable[float]) -> LatencySummary | None:
    """The summary of some latencies, or None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    p50, p90, p99 = (percentile(ordered, p) for p in PERCENTILES)
    return LatencySummary(len(ordered), p50, p90, p99, ordered[-1], math.fsum(ordered) / len(ordered))


@dataclass(slots=True)
class Tally:
    """What happened so far; the drivers update it in their hot loops (plain attributes, no methods to call).

    Counts are of requests: submit_sm PDUs over SMPP (a long message is several), HTTP requests over HTTP.

    Attributes:
        messages_planned: messages the run means to send.
        messages_started: messages whose first request went out.
        requests_planned: submit_sm (or HTTP requests) those messages take.
        sent: requests sent.
        ok: requests answered with success (ESME_ROK, HTTP 2xx and an id).
        errors: requests answered with an error, by command_status name or `HTTP nnn`.
        unanswered: requests that never got an answer (timeout, connection lost), by reason.
        receipts_expected: final receipts (or callbacks) to wait for.
        receipts: final receipts (or callbacks) matched to a request, by status.
        intermediate: intermediate receipts (ENROUTE) and non-final callbacks.
        unmatched: receipts whose id matched no request of this run.
        mo: deliver_sm that were MO messages, not receipts.
        rejected: PDUs from the target that broke the protocol (answered with generic_nack or an error).
        response_s: latency of each answer, from send (or due time) to response.
        receipt_s: latency of each final receipt, from send (or due time) to receipt.
        first_send: clock time of the first send; last_response / last_receipt likewise.
    """

    messages_planned: int = 0
    messages_started: int = 0
    requests_planned: int = 0
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unanswered: dict[str, int] = field(default_factory=dict)
    receipts_expected: int = 0
    receipts: dict[str, int] = field(default_factory=dict)
    intermediate: int = 0
    unmatched: int = 0
    mo: int = 0
    rejected: int = 0
    response_s: array[float] = field(default_factory=lambda: array("d"))
    receipt_s: array[float] = field(default_factory=lambda: array("d"))
    first_send: float | None = None
    last_response: float | None = None
    last_receipt: float | None = None

    @property
    def answered(self) -> int:
        """Requests answered either way."""
        return self.ok + sum(self.errors.values())

    @property
    def receipts_received(self) -> int:
        """Final receipts matched so far."""
        return sum(self.receipts.values())

    def add_error(self, key: str, n: int = 1) -> None:
        """Count `n` requests answered with error `key`."""
        self.errors[key] = self.errors.get(key, 0) + n

    def add_unanswered(self, reason: str, n: int = 1) -> None:
        """Count `n` requests that will never be answered, for `reason`."""
        self.unanswered[reason] = self.unanswered.get(reason, 0) + n


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a run.

    `request_per_s` is answered requests over the time from the first send to the last answer;
    `receipt_per_s` is final receipts over the time from the first send to the last receipt. `ok` is False
    when a request went unanswered, a planned message was never sent or an expected receipt never came.
    """

    target: str
    mode: str
    unit: str
    messages_planned: int
    messages_started: int
    requests_planned: int
    sent: int
    ok_requests: int
    errors: Mapping[str, int]
    unanswered: Mapping[str, int]
    receipts_expected: int
    receipts_received: int
    receipts_by_status: Mapping[str, int]
    receipts_missing: int
    intermediate: int
    unmatched: int
    mo: int
    rejected: int
    response: LatencySummary | None
    receipt: LatencySummary | None
    elapsed_s: float
    request_per_s: float
    receipt_per_s: float
    cpu_s: float
    settings: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @classmethod
    def build(cls, tally: Tally, *, target: str, mode: str, unit: str, started: float, finished: float,
              cpu_s: float, settings: Mapping[str, Any] | None = None,
              problems: Sequence[str] = ()) -> Report:
        """Summarize a tally. `started` and `finished` bound the run on the drivers' clock."""
        first = tally.first_send if tally.first_send is not None else started
        answered = tally.answered
        rps = answered / (tally.last_response - first) if tally.last_response and tally.last_response > first else 0.0
        received = tally.receipts_received
        rcs = received / (tally.last_receipt - first) if tally.last_receipt and tally.last_receipt > first else 0.0
        missing = max(tally.receipts_expected - received, 0)
        found = list(problems)
        unanswered = sum(tally.unanswered.values())
        if unanswered:
            found.append(f"{unanswered} {unit} never answered")
        not_started = tally.messages_planned - tally.messages_started
        if not_started > 0:
            found.append(f"{not_started} messages never sent")
        if missing:
            found.append(f"{missing} expected receipts never came")
        return cls(
            target=target, mode=mode, unit=unit,
            messages_planned=tally.messages_planned, messages_started=tally.messages_started,
            requests_planned=tally.requests_planned, sent=tally.sent, ok_requests=tally.ok,
            errors=dict(sorted(tally.errors.items())), unanswered=dict(sorted(tally.unanswered.items())),
            receipts_expected=tally.receipts_expected, receipts_received=received,
            receipts_by_status=dict(sorted(tally.receipts.items())), receipts_missing=missing,
            intermediate=tally.intermediate, unmatched=tally.unmatched, mo=tally.mo, rejected=tally.rejected,
            response=summarize(tally.response_s), receipt=summarize(tally.receipt_s),
            elapsed_s=finished - started, request_per_s=rps, receipt_per_s=rcs, cpu_s=cpu_s,
            settings=dict(settings or {}), problems=tuple(found),
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _latency_line(label: str, s: LatencySummary | None) -> str:
    if s is None:
        return f"  {label:<9} -"
    return (f"  {label:<9} p50 {_ms(s.p50_s)} ms  p90 {_ms(s.p90_s)} ms  p99 {_ms(s.p99_s)} ms  "
            f"max {_ms(s.max_s)} ms  ({s.count})")


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def format_report(r: Report) -> str:
    """The report as lines of text for a terminal."""
    per_k = r.cpu_s / r.sent * 1e6 if r.sent else 0.0
    lines = [
        f"target    {r.target} ({r.mode})",
        f"messages  {r.messages_started} of {r.messages_planned} sent as {r.sent} {r.unit}",
        f"answers   ok {r.ok_requests}, errors: {_counts(r.errors)}; unanswered: {_counts(r.unanswered)}"
        + (f"; {r.rejected} malformed PDUs from the target" if r.rejected else ""),
        f"receipts  {r.receipts_received} of {r.receipts_expected} ({_counts(r.receipts_by_status)}); "
        f"intermediate {r.intermediate}, unmatched {r.unmatched}, MO {r.mo}",
        f"rate      {r.request_per_s:,.0f} {r.unit}/s answered, {r.receipt_per_s:,.0f} receipts/s, "
        f"in {r.elapsed_s:.2f} s",
        "latency",
        _latency_line("response", r.response),
        _latency_line("receipt", r.receipt),
        f"cpu       {r.cpu_s:.2f} s of this process ({per_k:.1f} us per {r.unit[:-1] if r.unit.endswith('s') else r.unit})",
    ]
    if r.problems:
        lines.append("FAILED    " + "; ".join(r.problems))
    return "\n".join(lines)


def report_json(r: Report) -> str:
    """The report as one JSON object (seconds as floats, counts as integers)."""
    data = asdict(r)
    data["ok"] = r.ok
    data["problems"] = list(r.problems)
    return json.dumps(data, sort_keys=True)


def progress_line(t: Tally, elapsed_s: float) -> str:
    """One status line for a terminal, rewritten in place while the run goes on."""
    rate = t.answered / elapsed_s if elapsed_s > 0 else 0.0
    return (f"{elapsed_s:6.1f} s  sent {t.sent:,}  answered {t.answered:,}  errors {sum(t.errors.values()):,}  "
            f"receipts {t.receipts_received:,}/{t.receipts_expected:,}  {rate:,.0f}/s")
