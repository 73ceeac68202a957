"""MSISDN normalisation: whatever a person or an application typed, to E.164 digits without '+'.

Rule: a number is read by the first form that fits, in this order, and then checked for length:

1. `+` then digits: international.
2. With a country's rule: one of its international prefixes (`00`, `011`, ...) then digits: international.
3. With a country's rule: its trunk prefix (`0`, `1`, `8`, ...) then a national number of one of its
   lengths (any length when the rule lists none): national.
4. With a country's rule: a national number of one of its lengths, without trunk prefix: national.
5. Any other digits not starting with 0: already international (the msisdn form itself), unless a country
   was named that has no rule, in which case only form 1 is accepted.

Spaces, dashes, dots and parentheses are separators and are dropped first. No country code starts with 0,
so digits starting with 0 are always a national or prefixed number and need a rule (`no_rule`).

Forms 3 and 4 make the output of a plan idempotent for the country's own numbers, but a foreign number
written without `+` or an international prefix can look national (a 10-digit foreign msisdn in a country
whose national numbers have 10 digits): applications should send foreign numbers with `+`.

The country code's length is known without a database: E.164 country codes form a prefix code in which
1 and 7 are the only one-digit codes and `_TWO_DIGIT_COUNTRY_CODES` lists the two-digit ones (ITU-T E.164
assigned codes); every other code has three digits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._errors import InvalidMsisdn, MsisdnReason, RoutingConfigError

__all__ = [
    "E164_MAX_DIGITS",
    "MIN_MSISDN_DIGITS",
    "NumberingPlan",
    "NumberingRule",
    "country_code_of",
    "mask_msisdn",
]

E164_MAX_DIGITS = 15
"""ITU-T E.164 §6: an international number has at most 15 digits, country code included."""

MIN_MSISDN_DIGITS = 7
"""Default shortest msisdn accepted: a three-digit country code and a four-digit subscriber number
(Saint Helena's +290 XXXX is among the shortest in service)."""

_ONE_DIGIT_COUNTRY_CODES = frozenset({"1", "7"})
_TWO_DIGIT_COUNTRY_CODES = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)

# Separators people put in numbers: spaces (also no-break and narrow no-break), dashes (ASCII and the
# Unicode hyphens word processors substitute), dots and parentheses. One translate() drops them all.
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f-\u2010\u2011\u2012\u2013.()")

_MASK_TAIL_DIGITS = 3
_MASK_MIN_HIDDEN = 4


def _is_digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def country_code_of(msisdn: str) -> str:
    """The E.164 country code that starts `msisdn` (1 to 3 digits; '' when `msisdn` is empty).

    The code is found by its length alone (see the module's docstring), so a spare code such as 28 or 83
    comes back as its three-digit block.
    """
    if msisdn[:1] in _ONE_DIGIT_COUNTRY_CODES:
        return msisdn[:1]
    if msisdn[:2] in _TWO_DIGIT_COUNTRY_CODES:
        return msisdn[:2]
    return msisdn[:3]


def mask_msisdn(msisdn: str) -> str:
    """`msisdn` for a log line: the country code and the last 3 digits kept, the rest as `*`.

    At least 4 characters are always hidden, so a short number shows fewer trailing digits (or none);
    the length is kept. Anything but ASCII digits is hidden whole. Never raises, whatever it is given
    (a bad number may well be what is logged).

    Example: `mask_msisdn('447911123456') == '44*******456'`.
    """
    if not _is_digits(msisdn):
        return "*" * len(msisdn)
    head = len(country_code_of(msisdn))
    hidden = len(msisdn) - head
    if hidden <= 0:
        return "*" * len(msisdn)
    tail = min(_MASK_TAIL_DIGITS, max(0, hidden - _MASK_MIN_HIDDEN))
    return msisdn[:head] + "*" * (hidden - tail) + msisdn[len(msisdn) - tail :]


@dataclass(frozen=True, slots=True)
class NumberingRule:
    """How one country writes its numbers; the gateway builds these from its `numbering:` config.

    Attributes:
        country: the name the rule is known by, by convention the ISO 3166-1 alpha-2 code (`GB`).
        country_code: the E.164 country code, 1 to 3 digits (`44`).
        trunk_prefix: the national (trunk) prefix written before national numbers (`0`; `1` in the NANP;
            `8` in Russia); `''` when the country has none.
        international_prefixes: the prefixes dialled before a country code (`00`; `011` in the NANP).
        national_lengths: the lengths, in digits, of a national significant number (without trunk
            prefix); empty when the country's lengths vary too much to list, which disables form 4 and
            the length check.

    Raises:
        RoutingConfigError: a field is malformed; the error's `rule` is `country`.
    """

    country: str
    country_code: str
    trunk_prefix: str = ""
    international_prefixes: tuple[str, ...] = ("00",)
    national_lengths: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        rule = self.country or "<no country>"
        if not self.country:
            raise RoutingConfigError("country must not be empty", rule=rule)
        cc = self.country_code
        if not (_is_digits(cc) and 1 <= len(cc) <= 3) or cc[0] == "0":
            raise RoutingConfigError(
                f"country_code must be 1 to 3 digits not starting with 0, got {cc!r}", rule=rule
            )
        if country_code_of(cc + "000") != cc:
            raise RoutingConfigError(
                f"country_code {cc!r} is not an E.164 country code: numbers starting with it have country "
                f"code {country_code_of(cc + '000')!r}",
                rule=rule,
            )
        if self.trunk_prefix and not _is_digits(self.trunk_prefix):
            raise RoutingConfigError(f"trunk_prefix must be digits, got {self.trunk_prefix!r}", rule=rule)
        if not self.international_prefixes:
            raise RoutingConfigError("international_prefixes must not be empty", rule=rule)
        for idp in self.international_prefixes:
            if not _is_digits(idp):
                raise RoutingConfigError(f"international prefix must be digits, got {idp!r}", rule=rule)
            if idp == self.trunk_prefix:
                raise RoutingConfigError(f"international prefix {idp!r} equals the trunk prefix", rule=rule)
        longest = E164_MAX_DIGITS - len(cc)
        for length in self.national_lengths:
            if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= longest:
                raise RoutingConfigError(
                    f"national length {length!r} is not between 1 and {longest} (E.164 allows "
                    f"{E164_MAX_DIGITS} digits with the country code)",
                    rule=rule,
                )


class NumberingPlan:
    """Immutable per-country rules and the normaliser that reads numbers by them.

    Args:
        rules: one rule per country. Several countries may share a country code (the NANP's `1`); a
            number's length is then checked against all of their lengths.
        min_digits: shortest msisdn accepted when its country has no rule (or no lengths).

    Raises:
        RoutingConfigError: a country appears twice, or `min_digits` is out of range.
    """

    __slots__ = ("_by_country", "_lengths_by_cc", "_min_digits", "_rules")

    def __init__(self, rules: Iterable[NumberingRule] = (), *, min_digits: int = MIN_MSISDN_DIGITS) -> None:
        by_country: dict[str, NumberingRule] = {}
        lengths: dict[str, frozenset[int] | None] = {}
        for rule in rules:
            if rule.country in by_country:
                raise RoutingConfigError("numbering rule given twice", rule=rule.country)
            by_country[rule.country] = rule
            cc = rule.country_code
            if rule.national_lengths and (cc not in lengths or lengths[cc] is not None):
                lengths[cc] = (lengths.get(cc) or frozenset()) | rule.national_lengths
            else:
                # A country with unlisted lengths leaves its whole country code unchecked.
                lengths[cc] = None
        if not 1 <= min_digits <= E164_MAX_DIGITS:
            raise RoutingConfigError(f"min_digits must be between 1 and {E164_MAX_DIGITS}", rule="min_digits")
        self._rules = tuple(by_country.values())
        self._by_country = by_country
        self._lengths_by_cc = {cc: ls for cc, ls in lengths.items() if ls is not None}
        self._min_digits = min_digits

    @property
    def rules(self) -> tuple[NumberingRule, ...]:
        """The rules, in the order given."""
        return self._rules

    def rule_for(self, country: str) -> NumberingRule | None:
        """The rule of `country`, or None."""
        return self._by_country.get(country)

    def normalise(self, raw: str, *, country: str | None = None) -> str:
        """`raw` as an msisdn: E.164 digits without '+'.

        Args:
            raw: the number as written (`'07911 123456'`, `'+44 7911 123456'`, `'0044 7911 123456'`).
            country: the country whose conventions `raw` may follow (the account's or the SMSC's); None
                when `raw` must be international (with `+`) or already an msisdn.

        Returns:
            The msisdn (`'447911123456'`).

        Raises:
            InvalidMsisdn: the number cannot be read; `reason` says why.
        """
        text = raw.translate(_SEPARATORS)
        if not text:
            raise InvalidMsisdn("no digits", reason=MsisdnReason.EMPTY, raw=raw)
        if text[0] == "+":
            digits = text[1:]
            if not digits:
                raise InvalidMsisdn("no digits after '+'", reason=MsisdnReason.EMPTY, raw=raw)
            if not _is_digits(digits):
                raise _bad_character(digits, raw)
            return self._checked(digits, raw)
        if not _is_digits(text):
            raise _bad_character(text, raw)
        rule = None if country is None else self._by_country.get(country)
        if rule is None:
            if country is not None:
                raise InvalidMsisdn(
                    f"no numbering rule for country {country!r}: write the number in international form "
                    f"(+ and the country code)",
                    reason=MsisdnReason.NO_RULE,
                    raw=raw,
                )
            if text[0] == "0":
                raise InvalidMsisdn(
                    "a number starting with 0 is national or has an international prefix, and no country "
                    "was given to read it by",
                    reason=MsisdnReason.NO_RULE,
                    raw=raw,
                )
            return self._checked(text, raw)
        return self._checked(self._from_country(text, rule, raw), raw)

    def _from_country(self, digits: str, rule: NumberingRule, raw: str) -> str:
        for idp in rule.international_prefixes:
            if digits.startswith(idp):
                return digits[len(idp) :]
        lengths = rule.national_lengths
        trunk = rule.trunk_prefix
        if trunk and digits.startswith(trunk):
            national = digits[len(trunk) :]
            # A wrong length falls through to the international reading unless the digits cannot be one
            # (they start with 0): then the national number's length is what is wrong.
            if not lengths or len(national) in lengths or digits[0] == "0":
                return rule.country_code + national
        if len(digits) in lengths:
            return rule.country_code + digits
        if digits[0] == "0":
            raise InvalidMsisdn(
                f"starts with 0, which is neither an international prefix nor the trunk prefix of "
                f"{rule.country}",
                reason=MsisdnReason.BAD_COUNTRY_CODE,
                raw=raw,
            )
        return digits

    def _checked(self, msisdn: str, raw: str) -> str:
        """`msisdn` if it is one, else InvalidMsisdn."""
        if not msisdn:
            raise InvalidMsisdn("no digits after the international prefix", reason=MsisdnReason.EMPTY, raw=raw)
        if msisdn[0] == "0":
            raise InvalidMsisdn(
                "an international number starts with its country code, and no country code starts with 0",
                reason=MsisdnReason.BAD_COUNTRY_CODE,
                raw=raw,
            )
        n = len(msisdn)
        if n > E164_MAX_DIGITS:
            raise InvalidMsisdn(
                f"{n} digits, E.164 allows at most {E164_MAX_DIGITS}", reason=MsisdnReason.TOO_LONG, raw=raw
            )
        cc = country_code_of(msisdn)
        lengths = self._lengths_by_cc.get(cc)
        if lengths is None:
            if n < self._min_digits:
                raise InvalidMsisdn(
                    f"{n} digits, at least {self._min_digits} expected", reason=MsisdnReason.TOO_SHORT, raw=raw
                )
            return msisdn
        national = n - len(cc)
        if national in lengths:
            return msisdn
        expected = " or ".join(str(length) for length in sorted(lengths))
        detail = f"national number of {national} digits for country code {cc}, expected {expected}"
        if national < min(lengths):
            raise InvalidMsisdn(detail, reason=MsisdnReason.TOO_SHORT, raw=raw)
        if national > max(lengths):
            raise InvalidMsisdn(detail, reason=MsisdnReason.TOO_LONG, raw=raw)
        raise InvalidMsisdn(detail, reason=MsisdnReason.BAD_LENGTH, raw=raw)

    def __repr__(self) -> str:
        return f"NumberingPlan({', '.join(r.country for r in self._rules)})"


def _bad_character(text: str, raw: str) -> InvalidMsisdn:
    bad = next((c for c in text if not ("0" <= c <= "9")), "")
    return InvalidMsisdn(
        f"unexpected character {bad!r}: a number holds digits, separators (space - . ( )) and one leading +",
        reason=MsisdnReason.BAD_CHARACTER,
        raw=raw,
    )
