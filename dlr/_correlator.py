"""Rule: a receipt is handed over exactly once: matched now, or parked until its resp registers or it expires.

The in-memory correlation of SMSC message ids to our message ids; the gateway's durable store does the
same in SQL with the same keys (`correlation_keys`, `receipt_keys`). Keys are scoped by SMSC name, since
two SMSCs may issue the same ids.

A receipt can arrive before the submit_sm_resp that tells us its id: on a transceiver bind the SMSC may
write the deliver_sm before the resp, and a fast handset can beat a slow resp on separate binds. Such a
receipt is parked under its keys (bounded count, bounded time) and handed back by the `register` call
that brings its id. Parked receipts that time out, or that are pushed out by newer ones when the parking
is full, come back from `expire` as orphans so that the caller can count and log them.

Time is passed in (`now`, float seconds from a monotonic clock) and must not go backwards; every entry
lives `ttl_s` from its registration, so the oldest entry is always first in line to expire.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final, NamedTuple

from ._ids import IdPolicy, correlation_keys, receipt_keys
from ._receipt import Receipt

__all__ = ["Correlator", "CorrelatorStatistics", "Match"]


class Match(NamedTuple):
    """A receipt matched to one part of one of our messages.

    Attributes:
        message_id: our message id, as registered.
        part: the part index, as registered.
        key: the correlation key that matched.
        ambiguous: the receipt's keys reached more than one registered part; this one was chosen
            (exact id first, then a registration whose destination is the receipt's source_addr).
    """

    message_id: str
    part: int
    key: str
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class CorrelatorStatistics:
    """Sizes and counters of a Correlator, for the metrics collector."""

    entries: int
    parked: int
    registered_total: int
    matched_total: int
    ambiguous_total: int
    unmatchable_total: int
    entries_evicted_total: int
    parked_total: int
    parked_matched_total: int
    parked_expired_total: int
    parked_evicted_total: int


# A registration: (message_id, part, destination, expires_at). A plain tuple of strings and numbers, which the
# cyclic collector stops tracking the first time it sees one: a gateway keeps one per part for 72 hours, and a
# tracked object (a slotted class) was walked again by every collection of its generation.
_Entry = tuple[str, int, str, float]
_MID: Final = 0
_PART: Final = 1
_DEST: Final = 2
_EXPIRES: Final = 3


@dataclass(slots=True)
class _Parked:
    smsc: str
    receipt: Receipt
    keys: tuple[str, ...]
    expires_at: float


def _digits(addr: str) -> str:
    return "".join(c for c in addr if "0" <= c <= "9").lstrip("0")


def _same_number(a: str, b: str) -> bool:
    """The same handset, whatever the TON: one number's digits, trunk and international zeros dropped, end
    the other's (six digits at least): 447700900222, +44 7700 900222 and 07700900222 are one handset.
    """
    da, db = _digits(a), _digits(b)
    if len(da) > len(db):
        da, db = db, da
    return len(da) >= 6 and db.endswith(da)


class Correlator:
    """SMSC message id -> (our message id, part), bounded in size and time, with early receipts parked.

    Example:
        corr = Correlator(default_policy=IdPolicy.parse("decimal/hex"))
        early = corr.register("opA", resp.message_id, "m-1", 0, now)   # receipts that came first
        match = corr.match("opA", receipt, now)                        # None: parked until its resp
    """

    def __init__(
        self,
        *,
        max_entries: int = 1_000_000,
        ttl_s: float = 72 * 3600.0,
        max_parked: int = 10_000,
        park_ttl_s: float = 600.0,
        default_policy: IdPolicy = IdPolicy(),
    ) -> None:
        """Create an empty correlator.

        Args:
            max_entries: correlation keys kept at most; the oldest go first.
            ttl_s: how long a registration is kept (receipts come up to the validity period late).
            max_parked: early receipts kept at most.
            park_ttl_s: how long an early receipt waits for its submit_sm_resp.
            default_policy: the id policy when a call gives none.

        Raises:
            ValueError: a bound is not positive.
        """
        if max_entries <= 0 or max_parked <= 0 or ttl_s <= 0 or park_ttl_s <= 0:
            raise ValueError("Correlator bounds must be positive")
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._max_parked = max_parked
        self._park_ttl_s = park_ttl_s
        self._default_policy = default_policy
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # No entry expires before this (at most the oldest's expiry): most calls need not look at the oldest.
        self._expiry_floor = math.inf
        self._parked: OrderedDict[int, _Parked] = OrderedDict()
        self._parked_by_key: dict[tuple[str, str], list[int]] = {}
        self._orphans: deque[Receipt] = deque(maxlen=max_parked)
        self._next_seq = 0
        self._registered = self._matched = self._ambiguous = self._unmatchable = 0
        self._entries_evicted = 0
        self._parked_total = self._parked_matched = self._parked_expired = self._parked_evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def register(
        self,
        smsc: str,
        resp_id: str,
        message_id: str,
        part: int,
        now: float,
        *,
        policy: IdPolicy | None = None,
        destination: str = "",
        keys: tuple[str, ...] | None = None,
    ) -> list[Receipt]:
        """Record the SMSC id of one part, and return the receipts that were waiting for it (oldest first).

        Registering an id again (an SMSC that reuses ids) replaces the earlier registration.

        Args:
            smsc: the SMSC's name.
            resp_id: message_id from submit_sm_resp, as received.
            message_id: our id of the message.
            part: the part index (0 for a single-part message).
            now: the time, in monotonic seconds.
            policy: the SMSC's id policy (else the default).
            destination: the MT's destination_addr, used only to choose among ambiguous matches.
            keys: `correlation_keys(resp_id, policy)`, when the caller has them already (it stores them too).
        """
        self._expire_entries(now)
        if keys is None:
            keys = correlation_keys(resp_id, policy or self._default_policy)
        if not keys:
            return []
        self._registered += 1
        expires_at = now + self._ttl_s
        entry = (message_id, part, destination, expires_at)
        if expires_at < self._expiry_floor:
            self._expiry_floor = expires_at
        entries = self._entries
        for key in keys:
            k = (smsc, key)
            entries.pop(k, None)
            entries[k] = entry
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
            self._entries_evicted += 1
        return self._unpark(smsc, keys, now)

    def match(self, smsc: str, receipt: Receipt, now: float, *, policy: IdPolicy | None = None) -> Match | None:
        """The part `receipt` reports on; None when its id is not registered yet (the receipt is then parked).

        A receipt with no id at all cannot be matched or parked: it is counted as unmatchable.
        """
        self._expire_entries(now)
        keys = receipt_keys(receipt, policy or self._default_policy)
        if not keys:
            self._unmatchable += 1
            return None
        hits: list[tuple[str, _Entry]] = []
        for key in keys:
            entry = self._entries.get((smsc, key))
            if entry is not None and entry[_EXPIRES] > now:
                hits.append((key, entry))
        if not hits:
            self._park(smsc, receipt, keys, now)
            return None
        self._matched += 1
        key, entry = hits[0]
        if any(e[_MID] != entry[_MID] or e[_PART] != entry[_PART] for _, e in hits):
            self._ambiguous += 1
            for k, e in hits:
                if e[_DEST] and receipt.source_addr and _same_number(e[_DEST], receipt.source_addr):
                    key, entry = k, e
                    break
            return Match(entry[_MID], entry[_PART], key, ambiguous=True)
        return Match(entry[_MID], entry[_PART], key)

    def expire(self, now: float) -> list[Receipt]:
        """Drop what has outlived its time; return the orphans: parked receipts that expired or were pushed out."""
        self._expire_entries(now)
        parked = self._parked
        while parked:
            seq, p = next(iter(parked.items()))
            if p.expires_at > now:
                break
            self._drop_parked(seq)
            self._parked_expired += 1
            self._orphans.append(p.receipt)
        orphans = list(self._orphans)
        self._orphans.clear()
        return orphans

    def statistics(self) -> CorrelatorStatistics:
        """Current sizes and counters."""
        return CorrelatorStatistics(
            entries=len(self._entries),
            parked=len(self._parked),
            registered_total=self._registered,
            matched_total=self._matched,
            ambiguous_total=self._ambiguous,
            unmatchable_total=self._unmatchable,
            entries_evicted_total=self._entries_evicted,
            parked_total=self._parked_total,
            parked_matched_total=self._parked_matched,
            parked_expired_total=self._parked_expired,
            parked_evicted_total=self._parked_evicted,
        )

    def _expire_entries(self, now: float) -> None:
        if now < self._expiry_floor:
            return
        entries = self._entries
        while entries:
            k, entry = next(iter(entries.items()))
            if entry[_EXPIRES] > now:
                self._expiry_floor = entry[_EXPIRES]
                return
            del entries[k]
        self._expiry_floor = math.inf

    def _park(self, smsc: str, receipt: Receipt, keys: tuple[str, ...], now: float) -> None:
        seq = self._next_seq
        self._next_seq += 1
        self._parked[seq] = _Parked(smsc, receipt, keys, now + self._park_ttl_s)
        for key in keys:
            self._parked_by_key.setdefault((smsc, key), []).append(seq)
        self._parked_total += 1
        while len(self._parked) > self._max_parked:
            oldest = next(iter(self._parked))
            self._orphans.append(self._parked[oldest].receipt)
            self._drop_parked(oldest)
            self._parked_evicted += 1

    def _drop_parked(self, seq: int) -> None:
        p = self._parked.pop(seq)
        for key in p.keys:
            k = (p.smsc, key)
            waiting = self._parked_by_key.get(k)
            if waiting is None:
                continue
            waiting.remove(seq)
            if not waiting:
                del self._parked_by_key[k]

    def _unpark(self, smsc: str, keys: tuple[str, ...], now: float) -> list[Receipt]:
        if not self._parked_by_key:
            return []
        found: set[int] = set()
        for key in keys:
            found.update(self._parked_by_key.get((smsc, key), ()))
        if not found:
            return []
        receipts: list[Receipt] = []
        for seq in sorted(found):
            if self._parked[seq].expires_at <= now:
                continue  # expired: `expire` reports it as an orphan
            receipts.append(self._parked[seq].receipt)
            self._drop_parked(seq)
        self._parked_matched += len(receipts)
        self._matched += len(receipts)
        return receipts
