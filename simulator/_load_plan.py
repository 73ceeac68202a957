"""Rule: what the load generator sends is decided before it starts; the hot loop only looks things up.

A run's `LoadPlan` holds the text mix and the pacing. The mix is a fixed cycle of message kinds drawn by smooth
weighted round robin, spread evenly and exact per period (with weights gsm=8, ucs2=1, long=1, messages 0-9,
10-19, ... each hold eight GSM, one UCS-2 and one long message), and a run is the same every time. Each kind's text is encoded and split once; a long kind's parts are cached per concatenation
reference (256 references with an 8-bit UDH, 23.040 §9.2.3.24.1). `Pacer` turns a rate into send times
for open-loop runs: message k is due at `start + k / rate`, whatever happened to the messages before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from smpp import Concatenation, EncodedText, Part, count_parts, encode_message, split_message

__all__ = [
    "BUILTIN_TEXTS",
    "DEFAULT_MIX",
    "LoadPlan",
    "MessageKind",
    "Pacer",
    "TextMix",
    "WirePart",
    "cycle_length",
    "parse_mix",
    "weighted_cycle",
]

BUILTIN_TEXTS: Mapping[str, str] = {
    # One GSM 7-bit part; the braces, tilde and euro sign come from the extension table (23.038 §6.2.1.1).
    "gsm": "smppgw load test: GSM 7-bit text with the extension table {[~]} and 5€, one part.",
    # One UCS-2 part: Cyrillic and an emoji (a surrogate pair), 55 UTF-16 code units.
    "ucs2": "Ваш код подтверждения: 4821. Нагрузочный тест smppgw 😀",
    # Three GSM 7-bit parts of 153 septets at most.
    "long": ("smppgw load test, long message: " + "the quick brown fox jumps over the lazy dog; " * 9).strip(),
    # Three UCS-2 parts of 67 code units at most.
    "long_ucs2": "Длинное сообщение нагрузочного теста smppgw: " + "съешь же ещё этих мягких булок. " * 4,
}

DEFAULT_MIX: Mapping[str, float] = {"gsm": 8.0, "ucs2": 1.0, "long": 1.0}

_MAX_CYCLE = 10_000
_CONCAT = Concatenation.UDH8
_UDHI = 0x40  # esm_class bit 6 (SMPP 3.4 §5.2.12)

WirePart = tuple[int, bytes, int]
"""The submit_sm fields that vary between parts: esm_class, short_message, data_coding."""


def parse_mix(text: str, known: Sequence[str]) -> dict[str, float]:
    """Read a mix such as `gsm=8,ucs2=1,long=1` (a name alone weighs 1).

    Args:
        text: comma-separated `NAME=WEIGHT` items.
        known: the kind names allowed.

    Raises:
        ValueError: an unknown name, a name given twice, a weight that is not a finite number >= 0, or no
            weight above 0.
    """
    mix: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, weight_text = item.partition("=")
        name = name.strip()
        if name not in known:
            raise ValueError(f"unknown text kind {name!r}: expected one of {', '.join(known)}")
        if name in mix:
            raise ValueError(f"text kind {name!r} appears twice")
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError:
            raise ValueError(f"weight of {name!r} is not a number: {weight_text!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {weight_text!r}")
        mix[name] = weight
    if not any(w > 0 for w in mix.values()):
        raise ValueError("the mix needs at least one kind with a weight above 0")
    return mix


def weighted_cycle(weights: Sequence[float], length: int) -> list[int]:
    """`length` picks of indexes into `weights` by smooth weighted round robin (deterministic, evenly spread).

    Each step adds every weight to its running score, picks the highest score (the lowest index on a tie) and
    takes the total weight off the pick. Over any `sum(weights)`-long stretch of integer weights each index is
    picked exactly its weight's number of times.

    Raises:
        ValueError: no weight above 0, or a negative weight.
    """
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValueError("weights must be >= 0 with at least one above 0")
    total = float(sum(weights))
    scores = [0.0] * len(weights)
    picks: list[int] = []
    for _ in range(length):
        best = 0
        for i, w in enumerate(weights):
            scores[i] += w
            if scores[i] > scores[best]:
                best = i
        scores[best] -= total
        picks.append(best)
    return picks


@dataclass(slots=True)
class MessageKind:
    """One text of the mix, encoded once.

    Attributes:
        name: the kind's name in the mix (`gsm`, `ucs2`, ...).
        text: the text as sent over HTTP.
        encoded: the text as the SMPP path sends it (GSM 7-bit unpacked, or UCS-2).
        parts: how many submit_sm one message of this kind takes.
    """

    name: str
    text: str
    encoded: EncodedText
    parts: int
    _cache: dict[int, list[Part]] = field(default_factory=dict, repr=False)
    _wire: dict[int, list[WirePart]] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, name: str, text: str) -> MessageKind:
        """Encode `text` in the cheapest alphabet and count its parts (8-bit UDH concatenation).

        Raises:
            TextEncodeError: the text holds an unpaired surrogate.
            ValueError: the text needs more than 255 parts.
        """
        encoded = encode_message(text, method=_CONCAT)
        return cls(name, text, encoded, count_parts(encoded, _CONCAT))

    def parts_for(self, reference: int) -> list[Part]:
        """The parts of one message with concatenation reference `reference` (only its low 8 bits count)."""
        ref = reference & 0xFF if self.parts > 1 else 0
        parts = self._cache.get(ref)
        if parts is None:
            parts = self._cache[ref] = split_message(self.encoded, _CONCAT, ref)
        return parts

    def wire_parts(self, reference: int) -> list[WirePart]:
        """`parts_for(reference)` as the submit_sm fields that vary: (esm_class, short_message, data_coding)."""
        ref = reference & 0xFF if self.parts > 1 else 0
        wire = self._wire.get(ref)
        if wire is None:
            wire = self._wire[ref] = [(_UDHI if p.udhi else 0, p.short_message, p.data_coding)
                                      for p in self.parts_for(ref)]
        return wire


def cycle_length(weights: Sequence[float]) -> int:
    """The length of the mix's cycle: one period of the weights in thousandths when that is at most
    `_MAX_CYCLE` long (then each kind's share is exact), else `_MAX_CYCLE`."""
    units = [round(w * 1000) for w in weights]
    if all(abs(u - w * 1000) < 1e-6 for u, w in zip(units, weights, strict=True)):
        divisor = math.gcd(*units)
        period = sum(units) // divisor if divisor else 0
        if 0 < period <= _MAX_CYCLE:
            return period
    return _MAX_CYCLE


class TextMix:
    """The kinds of a run and the order they are sent in: message i is `kind_of(i)`."""

    def __init__(self, kinds: Sequence[MessageKind], weights: Sequence[float]) -> None:
        if len(kinds) != len(weights) or not kinds:
            raise ValueError("one weight per kind, and at least one kind")
        self.kinds = tuple(kinds)
        self.weights = tuple(weights)
        self._cycle = [self.kinds[i] for i in weighted_cycle(weights, cycle_length(weights))]

    @classmethod
    def from_mix(cls, mix: Mapping[str, float], texts: Mapping[str, str] = BUILTIN_TEXTS) -> TextMix:
        """The mix of named texts with their weights (kinds weighing 0 are left out)."""
        chosen = [(name, w) for name, w in mix.items() if w > 0]
        return cls([MessageKind.create(name, texts[name]) for name, _ in chosen], [w for _, w in chosen])

    @classmethod
    def single(cls, text: str) -> TextMix:
        """A mix of one custom text."""
        return cls([MessageKind.create("custom", text)], [1.0])

    def kind_of(self, index: int) -> MessageKind:
        """The kind of message number `index` (0-based) of the run."""
        return self._cycle[index % len(self._cycle)]

    def parts_in(self, count: int) -> int:
        """How many submit_sm the first `count` messages take."""
        full, rest = divmod(count, len(self._cycle))
        per_cycle = sum(k.parts for k in self._cycle)
        return full * per_cycle + sum(k.parts for k in self._cycle[:rest])


class Pacer:
    """Open-loop send times: message k (0-based) is due at `start + k / rate_per_s`.

    The sender asks `due(now)` how many messages should have gone by `now` and sends the difference; a sender
    that fell behind catches up at once rather than shifting the schedule, so the offered rate holds and each
    message's latency is measured from its due time, not from when a busy sender got round to it.
    """

    __slots__ = ("limit", "rate_per_s", "start")

    def __init__(self, rate_per_s: float, start: float, limit: int) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate must be above 0, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self.start = start
        self.limit = limit

    def due(self, now: float) -> int:
        """How many messages are due by `now` (the first is due at `start`), at most `limit`."""
        if now < self.start:
            return 0
        # Estimate the last message due, then settle it against due_time itself, so that message k is due at
        # exactly due_time(k) whatever the rounding of (now - start) * rate.
        k = int((now - self.start) * self.rate_per_s)
        while self.due_time(k + 1) <= now:
            k += 1
        while k > 0 and self.due_time(k) > now:
            k -= 1
        return min(self.limit, k + 1)

    def due_time(self, k: int) -> float:
        """When message `k` (0-based) is due."""
        return self.start + k / self.rate_per_s


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to send, whatever the target.

    Attributes:
        count: messages to send.
        mix: their texts.
        rate_per_s: open loop at this many messages per second; None for closed loop (the window decides).
        duration_s: stop starting messages after this long, even below `count`; None for no limit.
        receipts: ask for receipts (registered_delivery 1, or a callback URL) and wait for them.
        receipt_timeout_s: how long to wait for the last receipts after the last answer.
        destination: the first destination MSISDN.
        recipients: destinations cycle through `destination` and the `recipients - 1` numbers after it.
    """

    count: int
    mix: TextMix
    rate_per_s: float | None = None
    duration_s: float | None = None
    receipts: bool = True
    receipt_timeout_s: float = 30.0
    destination: str = "447400000000"
    recipients: int = 1000

    def destination_of(self, index: int) -> str:
        """The destination of message number `index`."""
        if self.recipients <= 1:
            return self.destination
        return str(int(self.destination) + index % self.recipients)
