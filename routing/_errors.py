"""The routing room's one error tree, rooted at RoutingError.

Rule: an error says whose fault it is. `InvalidMsisdn` is the caller's (a number that cannot be made into an
msisdn, with a stable `reason` code an API can return); `RoutingConfigError` is the operator's (a rule that
cannot be built) and names that rule, so the config loader can turn it into a path.
"""

from __future__ import annotations

import enum

__all__ = ["InvalidMsisdn", "MsisdnReason", "RoutingConfigError", "RoutingError"]


class RoutingError(Exception):
    """Base of every error the routing room raises."""


class MsisdnReason(enum.Enum):
    """Why a number was refused; the values are stable codes for API error bodies and metrics labels."""

    EMPTY = "empty"
    """Nothing left once separators were stripped."""
    BAD_CHARACTER = "bad_character"
    """Something other than digits, separators and one leading '+'."""
    BAD_COUNTRY_CODE = "bad_country_code"
    """An international number whose country code starts with 0 (no E.164 country code does)."""
    NO_RULE = "no_rule"
    """A national number (or one written with an international prefix) and no numbering rule to read it by."""
    TOO_SHORT = "too_short"
    """Fewer digits than the plan's minimum, or than the country's shortest national number."""
    TOO_LONG = "too_long"
    """More than E.164's 15 digits, or than the country's longest national number."""
    BAD_LENGTH = "bad_length"
    """Between the country's shortest and longest national number, but not one of its lengths."""


class InvalidMsisdn(RoutingError, ValueError):
    """A number that cannot be normalised to an msisdn.

    The message says why without repeating the number (messages end up in logs, numbers must not).

    Attributes:
        reason: the machine-readable reason.
        raw: the number as it was given, for the caller's error response only.
    """

    def __init__(self, msg: str, *, reason: MsisdnReason, raw: str) -> None:
        super().__init__(msg)
        self.reason = reason
        self.raw = raw

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_invalid_msisdn, (str(self), self.reason, self.raw))


def _rebuild_invalid_msisdn(msg: str, reason: MsisdnReason, raw: str) -> InvalidMsisdn:
    return InvalidMsisdn(msg, reason=reason, raw=raw)


class RoutingConfigError(RoutingError, ValueError):
    """A routing rule, route, table or numbering rule that cannot be built.

    Attributes:
        rule: the name of the offending rule (its `name`, a country, a prefix or a shortcode), which the
            config loader maps back to a path in the YAML file.
    """

    def __init__(self, msg: str, *, rule: str) -> None:
        super().__init__(f"{rule}: {msg}")
        self.rule = rule
        self.detail = msg

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_config_error, (self.detail, self.rule))


def _rebuild_config_error(msg: str, rule: str) -> RoutingConfigError:
    return RoutingConfigError(msg, rule=rule)
