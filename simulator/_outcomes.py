"""Rule: the longest configured prefix of the destination decides an MT's fate; its draws come from one seeded RNG.

An `OutcomePlan` is compiled once from `receipts.outcomes`: a dict per prefix length, so a lookup is a few dict
probes from the longest length down, with no per-digit branching. Each rule carries its outcome mix as a
cumulative weight table (one `random()` and a bisect; none when the mix has one outcome), the err code and
network error written into failure receipts, an optional submit_sm_resp error, and its delay distribution.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Generic, TypeVar

from dlr import NetworkError, ReceiptStatus

from ._config import STAT_WORDS, Delay, OutcomeRule, parse_status

__all__ = ["DelayDraw", "Outcome", "OutcomePlan", "PrefixTable"]

V = TypeVar("V")


class PrefixTable(Generic[V]):
    """Longest-prefix lookup of digit strings (the empty prefix matches everything)."""

    __slots__ = ("_lengths", "_tables")

    def __init__(self, entries: Sequence[tuple[str, V]] = ()) -> None:
        self._tables: dict[int, dict[str, V]] = {}
        for prefix, value in entries:
            self._tables.setdefault(len(prefix), {})[prefix] = value
        self._lengths = sorted(self._tables, reverse=True)

    def lookup(self, digits: str) -> V | None:
        """The value of the longest prefix of `digits`, or None."""
        n = len(digits)
        for length in self._lengths:
            if length <= n:
                value = self._tables[length].get(digits[:length])
                if value is not None:
                    return value
        return None

    def set(self, prefix: str, value: V) -> None:
        """Add or replace one entry."""
        if len(prefix) not in self._tables:
            self._tables[len(prefix)] = {}
            self._lengths = sorted(self._tables, reverse=True)
        self._tables[len(prefix)][prefix] = value

    def remove(self, prefix: str) -> bool:
        """Remove one entry; False when it was not there."""
        table = self._tables.get(len(prefix))
        if table is None or table.pop(prefix, None) is None:
            return False
        return True

    def items(self) -> list[tuple[str, V]]:
        """Every (prefix, value), shortest prefix first."""
        return [(p, v) for length in reversed(self._lengths) for p, v in self._tables[length].items()]

    def __bool__(self) -> bool:
        return any(self._tables.values())


@dataclass(frozen=True, slots=True)
class DelayDraw:
    """A compiled delay distribution: `draw(rng)` gives seconds."""

    distribution: str
    mean_s: float
    min_s: float
    max_s: float

    @classmethod
    def of(cls, d: Delay) -> DelayDraw:
        return cls(d.distribution, d.mean_s, d.min_s, d.max_s)

    @property
    def constant(self) -> float | None:
        """The delay when it never varies (fixed), else None."""
        return self.mean_s if self.distribution == "fixed" else None

    def draw(self, rng: random.Random) -> float:
        """One delay in seconds."""
        if self.distribution == "fixed":
            return self.mean_s
        if self.distribution == "uniform":
            return rng.uniform(self.min_s, self.max_s)
        value = rng.expovariate(1.0 / self.mean_s) if self.mean_s > 0 else 0.0
        return min(max(value, self.min_s), self.max_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The compiled rule for one prefix.

    Attributes:
        prefix: the rule's prefix.
        statuses: the outcomes of the mix, in configuration order.
        cumulative: running totals of their weights.
        err: the `err:` code of a failure receipt (a delivered receipt writes 0).
        network_error: the network_error_code TLV of a failure receipt, or None.
        submit_status: a command_status for submit_sm_resp instead of accepting the MT, or None.
        delay: the delay distribution.
    """

    prefix: str
    statuses: tuple[ReceiptStatus, ...]
    cumulative: tuple[float, ...]
    err: int
    network_error: NetworkError | None
    submit_status: int | None
    delay: DelayDraw

    def pick(self, rng: random.Random) -> ReceiptStatus:
        """Draw one final status from the mix."""
        statuses = self.statuses
        if len(statuses) == 1:
            return statuses[0]
        r = rng.random() * self.cumulative[-1]
        return statuses[min(bisect_right(self.cumulative, r), len(statuses) - 1)]


class OutcomePlan:
    """Every outcome rule by prefix, with the default rule for destinations no prefix matches."""

    __slots__ = ("default", "table")

    def __init__(self, rules: Sequence[OutcomeRule], delay: Delay) -> None:
        default_delay = DelayDraw.of(delay)
        compiled = [self._compile(r, i, default_delay) for i, r in enumerate(rules)]
        self.table: PrefixTable[Outcome] = PrefixTable([(o.prefix, o) for o in compiled])
        found = self.table.lookup("")
        self.default = found if found is not None else Outcome(
            "", (ReceiptStatus.DELIVERED,), (1.0,), 0, None, None, default_delay)

    @staticmethod
    def _compile(rule: OutcomeRule, index: int, default_delay: DelayDraw) -> Outcome:
        weighted = [(STAT_WORDS[w], weight) for w, weight in rule.mix.items() if weight > 0]
        ne = rule.network_error
        return Outcome(
            prefix=rule.prefix,
            statuses=tuple(s for s, _ in weighted),
            cumulative=tuple(accumulate(weight for _, weight in weighted)),
            err=rule.err,
            network_error=NetworkError(ne.network_type, ne.error_code) if ne is not None else None,
            submit_status=(parse_status(rule.submit_status, f"receipts.outcomes[{index}].submit_status")
                           if rule.submit_status is not None else None),
            delay=DelayDraw.of(rule.delay) if rule.delay is not None else default_delay,
        )

    def lookup(self, destination: str) -> Outcome:
        """The rule for a destination address."""
        found = self.table.lookup(destination)
        return self.default if found is None else found
