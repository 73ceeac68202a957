"""Routing: MSISDN normalisation, longest-prefix tables, MT routes and MO keyword routing.

Everything here is a pure function or an immutable table. The gateway builds new tables from its config on
reload and swaps the references atomically; a table is never changed in place, so a message being routed
keeps the table it started with.

Configuring numbering rules
---------------------------
No numbering database ships: each country the gateway reads national numbers for gets one
`NumberingRule`, built from the config's `numbering:` section, for example::

    numbering:
      GB: {country_code: "44", trunk_prefix: "0", national_lengths: [10]}
      US: {country_code: "1", trunk_prefix: "1", international_prefixes: ["011"], national_lengths: [10]}
      ES: {country_code: "34", national_lengths: [9]}            # no trunk prefix
      DE: {country_code: "49", trunk_prefix: "0"}                # lengths vary: none listed

`international_prefixes` defaults to `["00"]`. An account or SMSC names the country its numbers follow;
`NumberingPlan.normalise(raw, country=...)` then reads `07911 123456`, `+44 7911 123456` and
`0044 7911 123456` as `447911123456`. Without a country, only `+...` and bare msisdns are accepted.
The module docstring of `routing._msisdn` gives the exact order in which a number's forms are tried.

MT precedence
-------------
The longest prefix with an applicable rule wins; at one prefix, a rule with source and account beats one
with source only, which beats one with account only, which beats one with neither. See `routing._mt`.

MO order
--------
Reserved words (STOP, STOPALL, START, HELP and synonyms), then keywords on the first word, then patterns,
then the shortcode's default service, then the global fallback, else unrouted. See `routing._mo`.
"""

from __future__ import annotations

from ._errors import InvalidMsisdn, MsisdnReason, RoutingConfigError, RoutingError
from ._mo import (
    DEFAULT_HELP_WORDS,
    DEFAULT_START_WORDS,
    DEFAULT_STOP_WORDS,
    DEFAULT_STOPALL_WORDS,
    MoDecision,
    MoKind,
    MoReservedWords,
    MoRouter,
    MoRule,
    MoShortcode,
    fold_text,
)
from ._msisdn import (
    E164_MAX_DIGITS,
    MIN_MSISDN_DIGITS,
    NumberingPlan,
    NumberingRule,
    country_code_of,
    mask_msisdn,
)
from ._mt import (
    FailoverRoute,
    MtDecision,
    MtRouter,
    MtRule,
    NoSmscUp,
    Route,
    RouteResolution,
    SmscChoice,
    WeightedRoute,
)
from ._prefix import PrefixMatch, PrefixTable

__all__ = [
    "DEFAULT_HELP_WORDS",
    "DEFAULT_START_WORDS",
    "DEFAULT_STOPALL_WORDS",
    "DEFAULT_STOP_WORDS",
    "E164_MAX_DIGITS",
    "MIN_MSISDN_DIGITS",
    "FailoverRoute",
    "InvalidMsisdn",
    "MoDecision",
    "MoKind",
    "MoReservedWords",
    "MoRouter",
    "MoRule",
    "MoShortcode",
    "MsisdnReason",
    "MtDecision",
    "MtRouter",
    "MtRule",
    "NoSmscUp",
    "NumberingPlan",
    "NumberingRule",
    "PrefixMatch",
    "PrefixTable",
    "Route",
    "RouteResolution",
    "RoutingConfigError",
    "RoutingError",
    "SmscChoice",
    "WeightedRoute",
    "country_code_of",
    "fold_text",
    "mask_msisdn",
]
