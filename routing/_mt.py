"""MT routing: which route carries a message to an msisdn, and which SMSC of that route takes it now.

Rule 1 (precedence): the rule with the longest prefix of the destination that applies wins. At one prefix,
the most specific rule that applies wins: source and account given, then source only, then account only,
then neither. A rule applies when each condition it gives (source, account) equals the message's. So a
rule for account `acme` at prefix `44` loses to a rule for anyone at `447`: give `acme` a rule at `447`
too when it must keep its route there.

Rule 2 (resolution): a failover route takes the first SMSC of its list that is up; a weighted route picks
among the SMSCs that are up with probability proportional to their weights. When none is up the answer is
`NoSmscUp`, not an error: the gateway keeps the message queued until one comes back.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from ._errors import RoutingConfigError
from ._prefix import PrefixTable

__all__ = [
    "FailoverRoute",
    "MtDecision",
    "MtRouter",
    "MtRule",
    "NoSmscUp",
    "Route",
    "RouteResolution",
    "SmscChoice",
    "WeightedRoute",
]


class SmscChoice(NamedTuple):
    """The SMSC to submit through now.

    Attributes:
        smsc: the chosen SMSC.
        alternates: the route's other SMSCs that are up, in the order to try them if `smsc` refuses
            the message with a transient error (failover order, or heaviest weight first).
    """

    smsc: str
    alternates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoSmscUp:
    """Every SMSC of the route is down: keep the message queued (it has not failed)."""

    route: str
    smscs: tuple[str, ...]


RouteResolution: TypeAlias = SmscChoice | NoSmscUp


def _check_route_name(name: str) -> None:
    if not name:
        raise RoutingConfigError("a route needs a name", rule="<unnamed route>")


def _check_smsc_names(names: Iterable[str], route: str) -> None:
    seen: set[str] = set()
    for smsc in names:
        if not smsc:
            raise RoutingConfigError("an SMSC name must not be empty", rule=route)
        if smsc in seen:
            raise RoutingConfigError(f"SMSC {smsc!r} listed twice", rule=route)
        seen.add(smsc)


@dataclass(frozen=True, slots=True)
class FailoverRoute:
    """An ordered list of SMSCs: the first one up takes the message.

    Raises:
        RoutingConfigError: the list is empty or names an SMSC twice (the error's `rule` is `name`).
    """

    name: str
    smscs: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_route_name(self.name)
        if not self.smscs:
            raise RoutingConfigError("a failover route needs at least one SMSC", rule=self.name)
        _check_smsc_names(self.smscs, self.name)

    def resolve(self, up: Container[str], rng: Callable[[], float]) -> RouteResolution:
        """The first SMSC that is up, with the ones after it that are up as alternates.

        Args:
            up: the SMSCs currently bound and able to submit.
            rng: unused; taken so that every route resolves with the same call.
        """
        live = tuple(smsc for smsc in self.smscs if smsc in up)
        if not live:
            return NoSmscUp(self.name, self.smscs)
        return SmscChoice(live[0], live[1:])

    def describe(self) -> str:
        """`failover a -> b -> c`, for `smppgw route` and logs."""
        return "failover " + " -> ".join(self.smscs)


@dataclass(frozen=True, slots=True)
class WeightedRoute:
    """SMSCs sharing traffic by weight: each message picks one of those up, in proportion to its weight.

    Attributes:
        name: the route's name.
        weights: (SMSC, weight) pairs; weights are positive integers (a share, not a percentage: 3 and 1
            send three quarters to the first).

    Raises:
        RoutingConfigError: no SMSC, an SMSC named twice, or a weight that is not a positive integer.
    """

    name: str
    weights: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        _check_route_name(self.name)
        if not self.weights:
            raise RoutingConfigError("a weighted route needs at least one SMSC", rule=self.name)
        _check_smsc_names((smsc for smsc, _ in self.weights), self.name)
        for smsc, weight in self.weights:
            if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
                raise RoutingConfigError(
                    f"weight of SMSC {smsc!r} must be a positive integer, got {weight!r}", rule=self.name
                )

    @property
    def smscs(self) -> tuple[str, ...]:
        """The SMSC names, in the order given."""
        return tuple(smsc for smsc, _ in self.weights)

    def resolve(self, up: Container[str], rng: Callable[[], float]) -> RouteResolution:
        """A weighted pick among the SMSCs that are up.

        Args:
            up: the SMSCs currently bound and able to submit.
            rng: returns a float in [0, 1), as `random.random` does; pass a seeded `random.Random(...).random`
                or a constant in tests.

        Returns:
            The pick, with the other live SMSCs as alternates (heaviest first), or `NoSmscUp`.
        """
        live = [(smsc, weight) for smsc, weight in self.weights if smsc in up]
        if not live:
            return NoSmscUp(self.name, self.smscs)
        cumulative = list(itertools.accumulate(weight for _, weight in live))
        # rng() < 1, so the index is always < len(live); min() guards a source that returns exactly 1.0.
        index = min(bisect.bisect_right(cumulative, rng() * cumulative[-1]), len(live) - 1)
        chosen = live[index][0]
        rest = sorted((pair for i, pair in enumerate(live) if i != index), key=lambda pair: -pair[1])
        return SmscChoice(chosen, tuple(smsc for smsc, _ in rest))

    def describe(self) -> str:
        """`weighted a=3, b=1`, for `smppgw route` and logs."""
        return "weighted " + ", ".join(f"{smsc}={weight}" for smsc, weight in self.weights)


Route: TypeAlias = FailoverRoute | WeightedRoute


@dataclass(frozen=True, slots=True)
class MtRule:
    """Send messages whose destination starts with `prefix` through `route`, optionally only for one
    source address (or shortcode) and/or one account.

    Attributes:
        name: names the rule in errors and in decisions (the config loader uses its path, `mt_routes[3]`).
        prefix: the destination prefix, ASCII digits of an msisdn; `''` matches every destination.
        route: where matching messages go.
        source: when given, the rule applies only to messages from exactly this source address.
        account: when given, the rule applies only to messages of this account.

    Raises:
        RoutingConfigError: an empty name, a prefix with other than digits, or an empty source or account
            (use None for "any").
    """

    name: str
    prefix: str
    route: Route
    source: str | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise RoutingConfigError("a rule needs a name", rule="<unnamed rule>")
        if self.prefix and not (self.prefix.isdigit() and self.prefix.isascii()):
            raise RoutingConfigError(f"prefix must be digits, got {self.prefix!r}", rule=self.name)
        if self.source == "":
            raise RoutingConfigError("source must not be empty (leave it out to match any)", rule=self.name)
        if self.account == "":
            raise RoutingConfigError("account must not be empty (leave it out to match any)", rule=self.name)

    @property
    def specificity(self) -> int:
        """3 for source and account, 2 for source, 1 for account, 0 for neither (Rule 1's order)."""
        return (2 if self.source is not None else 0) + (1 if self.account is not None else 0)

    def describe(self) -> str:
        """`prefix 447 source ACME account acme`, the rule's conditions in words."""
        words = [f"prefix {self.prefix!r}" if self.prefix else "any destination"]
        if self.source is not None:
            words.append(f"source {self.source!r}")
        if self.account is not None:
            words.append(f"account {self.account!r}")
        return " ".join(words)


class MtDecision(NamedTuple):
    """What the MT router decided for one message, and why.

    Attributes:
        msisdn: the destination.
        source: the message's source address.
        account: the message's account.
        rule: the rule that won, or None when no rule applies (the message is unroutable).
        passed_over: longer prefixes that had rules, none of which applied (their conditions differ).
    """

    msisdn: str
    source: str | None
    account: str | None
    rule: MtRule | None
    passed_over: tuple[MtRule, ...] = ()

    @property
    def route(self) -> Route | None:
        """The chosen route, or None when unroutable."""
        return None if self.rule is None else self.rule.route

    @property
    def prefix(self) -> str | None:
        """The prefix that matched, or None when unroutable."""
        return None if self.rule is None else self.rule.prefix

    @property
    def reason(self) -> str:
        """Why, in one sentence, for `smppgw route` and logs (it names the msisdn: mask it at INFO)."""
        rule = self.rule
        skipped = ""
        if self.passed_over:
            skipped = "; passed over (conditions not met): " + ", ".join(
                f"rule {r.name!r} ({r.describe()})" for r in self.passed_over
            )
        if rule is None:
            return (
                f"no rule applies to {self.msisdn} from source {self.source!r} account {self.account!r}"
                f"{skipped}"
            )
        if rule.prefix:
            where = f"longest matching prefix {rule.prefix!r}"
        else:
            where = "catch-all prefix ''"
        conditions = []
        if rule.source is not None:
            conditions.append(f"source {rule.source!r}")
        if rule.account is not None:
            conditions.append(f"account {rule.account!r}")
        which = f"rule {rule.name!r} matching {' and '.join(conditions)}" if conditions else (
            f"rule {rule.name!r} for any source and account"
        )
        return f"{where}, {which} -> route {rule.route.name!r} ({rule.route.describe()}){skipped}"


# At one prefix, the (source, account) keys tried in Rule 1's order; None means "any".
_Key: TypeAlias = tuple[str | None, str | None]


class MtRouter:
    """An immutable MT routing table: destination prefix (longest wins), then source and account.

    Args:
        rules: the rules, in any order (precedence comes from Rule 1, not from order).

    Raises:
        RoutingConfigError: two rules with the same prefix, source and account (the error's `rule` is
            the later rule's name), or two rules with the same name.
    """

    __slots__ = ("_rules", "_table")

    def __init__(self, rules: Iterable[MtRule]) -> None:
        by_prefix: dict[str, dict[_Key, MtRule]] = {}
        names: set[str] = set()
        ordered: list[MtRule] = []
        for rule in rules:
            if rule.name in names:
                raise RoutingConfigError("rule name given twice", rule=rule.name)
            names.add(rule.name)
            at_prefix = by_prefix.setdefault(rule.prefix, {})
            key = (rule.source, rule.account)
            if key in at_prefix:
                raise RoutingConfigError(
                    f"same prefix, source and account as rule {at_prefix[key].name!r}", rule=rule.name
                )
            at_prefix[key] = rule
            ordered.append(rule)
        self._rules = tuple(ordered)
        self._table: PrefixTable[dict[_Key, MtRule]] = PrefixTable(by_prefix.items())

    @property
    def rules(self) -> tuple[MtRule, ...]:
        """The rules, in the order given."""
        return self._rules

    def decide(self, msisdn: str, *, source: str | None = None, account: str | None = None) -> MtDecision:
        """The rule and route for a message to `msisdn`.

        Args:
            msisdn: the destination, already normalised (see `NumberingPlan.normalise`).
            source: the message's source address (sender id or shortcode), if any.
            account: the account that submitted the message, if any.

        Returns:
            The decision; its `rule` is None when nothing applies.
        """
        passed_over: list[MtRule] = []
        keys: tuple[_Key, ...] = ((source, account), (source, None), (None, account), (None, None))
        for match in self._table.matches(msisdn):
            at_prefix = match.value
            for key in keys:
                rule = at_prefix.get(key)
                if rule is not None:
                    return MtDecision(msisdn, source, account, rule, tuple(passed_over))
            passed_over.extend(at_prefix.values())
        return MtDecision(msisdn, source, account, None, tuple(passed_over))

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"MtRouter(<{len(self._rules)} rules>)"
