"""Rule: a charged MT is charged once, against its destination's balance, before its outcome is drawn.

Carrier billing as operators run it: an MT is *charged* when it carries a price point, which each account marks
by its operator's convention (`Tariff`): a tariff code in service_type, a vendor TLV, or a premium source
shortcode. The `Ledger` holds a balance per MSISDN (opening balances by longest prefix, exact numbers set at run
time) and the barred numbers. A charge to a barred number fails as `BARRED`; a price above the balance fails as
`INSUFFICIENT_FUNDS`; otherwise the balance is debited. Amounts are integers in minor currency units.
Every attempt is kept in a bounded list of recent charges.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from smpp import DataSm, SubmitMulti, SubmitSm

from ._outcomes import PrefixTable

__all__ = ["Charge", "ChargeResult", "Convention", "Ledger", "LedgerStatistics", "Tariff"]


class Convention(Enum):
    """How an operator marks a charged MT."""

    NONE = "none"
    SERVICE_TYPE = "service_type"
    TLV = "tlv"
    SHORTCODE = "shortcode"


class ChargeResult(Enum):
    """What a charge attempt came to."""

    CHARGED = "charged"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    BARRED = "barred"


@dataclass(frozen=True, slots=True)
class Tariff:
    """One account's billing convention: which field names the price point, and the price of each."""

    convention: Convention
    price_points: Mapping[str, int]
    tlv_tag: int = 0x1400

    def price_point(self, mt: SubmitSm | SubmitMulti | DataSm) -> tuple[str, int] | None:
        """The (price point code, price) an MT carries, or None for a free MT."""
        convention = self.convention
        if convention is Convention.SERVICE_TYPE:
            code = mt.service_type
        elif convention is Convention.SHORTCODE:
            code = mt.source_addr
        elif convention is Convention.TLV:
            tlvs = mt.tlvs
            if not tlvs:
                return None
            value = next((v for t, v in tlvs.items_in_order() if t == self.tlv_tag), None)
            if value is None:
                return None
            if isinstance(value, bytes):
                code = value.rstrip(b"\x00").decode("latin-1")
            else:
                code = str(value)
        else:
            return None
        price = self.price_points.get(code)
        return None if price is None else (code, price)


@dataclass(frozen=True, slots=True)
class Charge:
    """One charge attempt.

    Attributes:
        at: wall-clock time (seconds since the epoch).
        account: the ESME account that sent the MT.
        msisdn: the charged number (the MT's destination).
        price: the price asked, in minor units.
        price_point: the tariff code, TLV value or shortcode that marked it.
        message_id: the SMSC message id given to the MT.
        result: what the attempt came to.
        balance_after: the balance after the attempt.
    """

    at: float
    account: str
    msisdn: str
    price: int
    price_point: str
    message_id: str
    result: ChargeResult
    balance_after: int


@dataclass(frozen=True, slots=True)
class LedgerStatistics:
    """Counters of a ledger."""

    charged: int
    charged_amount: int
    insufficient_funds: int
    barred: int
    balances: int


class Ledger:
    """Balances per MSISDN, barred numbers and recent charges."""

    def __init__(
        self,
        *,
        default_balance: int,
        opening_balances: Mapping[str, int],
        barred: Sequence[str] = (),
        max_charges: int = 100_000,
    ) -> None:
        """Create a ledger.

        Args:
            default_balance: the opening balance of a number no prefix of `opening_balances` covers.
            opening_balances: opening balance by MSISDN prefix (the longest prefix wins).
            barred: barred MSISDN prefixes (a whole number is a prefix of itself).
            max_charges: how many recent charge attempts are kept.
        """
        self.default_balance = default_balance
        self._opening: PrefixTable[int] = PrefixTable(list(opening_balances.items()))
        self._barred: PrefixTable[bool] = PrefixTable([(p, True) for p in barred])
        self._balances: dict[str, int] = {}
        self._charges: deque[Charge] = deque(maxlen=max_charges)
        self._charged = 0
        self._charged_amount = 0
        self._insufficient = 0
        self._barred_count = 0

    def balance(self, msisdn: str) -> int:
        """The current balance of a number."""
        value = self._balances.get(msisdn)
        if value is not None:
            return value
        opening = self._opening.lookup(msisdn)
        return self.default_balance if opening is None else opening

    def set_balance(self, msisdn: str, balance: int) -> None:
        """Set a number's balance."""
        self._balances[msisdn] = balance

    def is_barred(self, msisdn: str) -> bool:
        """True when a barred prefix covers the number."""
        return self._barred.lookup(msisdn) is not None

    def bar(self, msisdn: str) -> None:
        """Bar a number (or a prefix)."""
        self._barred.set(msisdn, True)

    def unbar(self, msisdn: str) -> bool:
        """Lift a bar set on exactly this number or prefix; False when there was none."""
        return self._barred.remove(msisdn)

    def barred(self) -> list[str]:
        """Every barred prefix."""
        return [p for p, _ in self._barred.items()]

    def known_balances(self) -> dict[str, int]:
        """The balances of numbers that were charged or set."""
        return dict(self._balances)

    def charge(self, *, msisdn: str, price: int, price_point: str, account: str, message_id: str,
               at: float) -> Charge:
        """Try to charge `price` to `msisdn` and record the attempt."""
        balance = self.balance(msisdn)
        if self.is_barred(msisdn):
            result = ChargeResult.BARRED
            self._barred_count += 1
        elif price > balance:
            result = ChargeResult.INSUFFICIENT_FUNDS
            self._insufficient += 1
        else:
            balance -= price
            self._balances[msisdn] = balance
            result = ChargeResult.CHARGED
            self._charged += 1
            self._charged_amount += price
        charge = Charge(at, account, msisdn, price, price_point, message_id, result, balance)
        self._charges.append(charge)
        return charge

    def charges(self, *, msisdn: str | None = None, account: str | None = None, limit: int = 1000) -> list[Charge]:
        """The most recent charge attempts (oldest first), optionally for one number or account."""
        found: list[Charge] = []
        for c in reversed(self._charges):
            if (msisdn is None or c.msisdn == msisdn) and (account is None or c.account == account):
                found.append(c)
                if len(found) >= limit:
                    break
        found.reverse()
        return found

    def statistics(self) -> LedgerStatistics:
        """A snapshot of the counters."""
        return LedgerStatistics(self._charged, self._charged_amount, self._insufficient, self._barred_count,
                                len(self._balances))
