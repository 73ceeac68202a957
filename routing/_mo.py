"""MO routing: which service gets a message sent to one of our shortcodes.

Rule 1 (order): reserved words first (STOP, STOPALL, START, HELP and their synonyms, on every shortcode),
then the shortcode's keyword rules on the first word, then its pattern-only rules in the order given, then
the shortcode's default service, then the router's global fallback; with none of those it is unrouted.

Rule 2 (matching): words are compared folded: NFKD, combining marks dropped, casefolded (`Stóp` is
`stop`). The first word is the first run of letters, digits or `_`, so `Stop.`, `stop please` and
`!!STOP` are STOP while `stopwatch for sale` is not. After a reserved word, a second word that is one of
the shortcode's keywords (or aliases) names the target service: `STOP NEWS` stops NEWS only.

Rule 3 (patterns): a rule's regex must match the whole normalised text, that is the folded text with
runs of whitespace made one space and the ends stripped; write patterns in lower case without accents
(`vote [1-5]`, `\\d{4}`).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ._errors import RoutingConfigError

__all__ = [
    "DEFAULT_HELP_WORDS",
    "DEFAULT_START_WORDS",
    "DEFAULT_STOPALL_WORDS",
    "DEFAULT_STOP_WORDS",
    "MoDecision",
    "MoKind",
    "MoReservedWords",
    "MoRouter",
    "MoRule",
    "MoShortcode",
    "fold_text",
]

DEFAULT_STOP_WORDS = frozenset({"STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
DEFAULT_STOPALL_WORDS = frozenset({"STOPALL"})
DEFAULT_START_WORDS = frozenset({"START", "UNSTOP"})
DEFAULT_HELP_WORDS = frozenset({"HELP", "INFO"})

# Every character with a non-zero canonical combining class lies in Unicode planes 0 and 1, so one scan of
# them at import builds the table that translate() uses to drop accents after NFKD.
_COMBINING_MARKS: dict[int, None] = {
    cp: None for cp in range(0x20000) if unicodedata.combining(chr(cp))
}
_WORD = re.compile(r"\w+")
_REST_LEAD = " \t\r\n.,;:!?"


def fold_text(text: str) -> str:
    """`text` folded for comparison: NFKD, combining marks dropped, casefolded (`'Élan'` -> `'elan'`)."""
    return unicodedata.normalize("NFKD", text).translate(_COMBINING_MARKS).casefold()


def _single_word(word: str) -> str | None:
    """`word` folded when it is exactly one word, else None."""
    folded = fold_text(word)
    return folded if _WORD.fullmatch(folded) else None


class MoKind(enum.Enum):
    """What the MO router made of a message."""

    KEYWORD = "keyword"
    """The first word is a keyword (or alias) of the shortcode."""
    PATTERN = "pattern"
    """A pattern-only rule of the shortcode matched the whole text."""
    STOP = "stop"
    """An opt-out from the target service, or from the shortcode's default service."""
    STOPALL = "stopall"
    """An opt-out from everything on the shortcode."""
    START = "start"
    """An opt-in again after a STOP."""
    HELP = "help"
    """A request for help."""
    DEFAULT = "default"
    """No rule matched: the shortcode's default service, or the router's global fallback."""
    UNROUTED = "unrouted"
    """No rule matched and there is no default or fallback service."""


@dataclass(frozen=True, slots=True)
class MoReservedWords:
    """The words handled before any keyword, on every shortcode (written as shown to users, any case).

    Raises:
        RoutingConfigError: a word that is not a single word, or a word in two sets (`rule` is
            `reserved_words`).
    """

    stop: frozenset[str] = DEFAULT_STOP_WORDS
    stopall: frozenset[str] = DEFAULT_STOPALL_WORDS
    start: frozenset[str] = DEFAULT_START_WORDS
    help: frozenset[str] = DEFAULT_HELP_WORDS

    def table(self) -> dict[str, tuple[MoKind, str]]:
        """Folded word -> (kind, the word as configured)."""
        table: dict[str, tuple[MoKind, str]] = {}
        for kind, words in (
            (MoKind.STOP, self.stop),
            (MoKind.STOPALL, self.stopall),
            (MoKind.START, self.start),
            (MoKind.HELP, self.help),
        ):
            for word in sorted(words):
                folded = _single_word(word)
                if folded is None:
                    raise RoutingConfigError(f"reserved word {word!r} is not a single word", rule="reserved_words")
                if folded in table:
                    raise RoutingConfigError(
                        f"reserved word {word!r} is both {table[folded][0].value} and {kind.value}",
                        rule="reserved_words",
                    )
                table[folded] = (kind, word)
        return table

    def __post_init__(self) -> None:
        self.table()


@dataclass(frozen=True, slots=True)
class MoRule:
    """One service on a shortcode, reached by a keyword (and its aliases), a pattern, or both.

    Attributes:
        name: names the rule in errors and decisions (the config loader uses its path).
        service: the service that gets matching messages.
        keyword: the first word that selects the rule (any case, accents ignored), or None for a
            pattern-only rule.
        aliases: other first words that select the rule.
        pattern: a regex the whole normalised text must match (Rule 3); with a keyword, both must match.

    Raises:
        RoutingConfigError: no keyword and no pattern, a keyword or alias that is not one word, aliases
            without a keyword, or a pattern that does not compile (the error's `rule` is `name`).
    """

    name: str
    service: str
    keyword: str | None = None
    aliases: frozenset[str] = frozenset()
    pattern: str | None = None

    def __post_init__(self) -> None:
        rule = self.name or "<unnamed rule>"
        if not self.name:
            raise RoutingConfigError("a rule needs a name", rule=rule)
        if not self.service:
            raise RoutingConfigError("a rule needs a service", rule=rule)
        if self.keyword is None and self.pattern is None:
            raise RoutingConfigError("a rule needs a keyword, a pattern or both", rule=rule)
        if self.keyword is None and self.aliases:
            raise RoutingConfigError("aliases need a keyword", rule=rule)
        for word in self.words:
            if _single_word(word) is None:
                raise RoutingConfigError(f"keyword {word!r} is not a single word", rule=rule)
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise RoutingConfigError(f"pattern {self.pattern!r} does not compile: {exc}", rule=rule) from None

    @property
    def words(self) -> tuple[str, ...]:
        """The keyword then the aliases (sorted), as configured; empty for a pattern-only rule."""
        return () if self.keyword is None else (self.keyword, *sorted(self.aliases))


@dataclass(frozen=True, slots=True)
class MoShortcode:
    """The rules of one shortcode (or long number) that MO messages are sent to.

    Attributes:
        shortcode: the destination address of the MO, as the SMSC sends it.
        rules: keyword and pattern rules.
        default_service: the service that gets what no rule matches, or None.
    """

    shortcode: str
    rules: tuple[MoRule, ...] = ()
    default_service: str | None = None

    def __post_init__(self) -> None:
        if not self.shortcode:
            raise RoutingConfigError("a shortcode must not be empty", rule="<empty shortcode>")
        if self.default_service == "":
            raise RoutingConfigError("default_service must not be empty (leave it out)", rule=self.shortcode)


class MoDecision(NamedTuple):
    """What the MO router decided for one message, and why.

    Attributes:
        shortcode: where the message was sent.
        kind: what the message is.
        service: the service to hand it to: the matched rule's; for STOP, START and HELP the target's,
            else the shortcode's default service; None for STOPALL and UNROUTED (or with no default).
        keyword: the keyword of the matched rule or the reserved word, as configured (`'STOP'`,
            `'NEWS'`); None otherwise.
        target: for STOP, START and HELP, the keyword (as configured) of the service named after it.
        rule: the name of the matched rule (the keyword or pattern rule; for STOP and friends, the
            target's), or None.
        rest: the text after the first word (after the reserved word for STOP and friends), without the
            separators that followed it, as written; the whole text when no word was consumed.
        reason: why, in one sentence.
    """

    shortcode: str
    kind: MoKind
    service: str | None
    keyword: str | None
    target: str | None
    rule: str | None
    rest: str
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class _CompiledShortcode:
    keywords: dict[str, MoRule] = field(default_factory=dict)
    keyword_patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)
    patterns: tuple[tuple[MoRule, re.Pattern[str]], ...] = ()
    default_service: str | None = None

    @property
    def has_patterns(self) -> bool:
        return bool(self.patterns or self.keyword_patterns)


class MoRouter:
    """An immutable MO routing table (see the module's rules for the order).

    Args:
        shortcodes: the shortcodes and their rules.
        reserved: the reserved words.
        fallback_service: the service for messages no shortcode rule or default takes, or None.

    Raises:
        RoutingConfigError: a shortcode given twice (`rule` is the shortcode); a keyword or alias used
            twice on one shortcode or equal to a reserved word (`rule` is the later rule's name).
    """

    __slots__ = ("_fallback", "_reserved", "_shortcodes", "_tables")

    def __init__(
        self,
        shortcodes: Iterable[MoShortcode],
        *,
        reserved: MoReservedWords | None = None,
        fallback_service: str | None = None,
    ) -> None:
        reserved = MoReservedWords() if reserved is None else reserved
        reserved_table = reserved.table()
        tables: dict[str, _CompiledShortcode] = {}
        kept: list[MoShortcode] = []
        for sc in shortcodes:
            if sc.shortcode in tables:
                raise RoutingConfigError("shortcode given twice", rule=sc.shortcode)
            tables[sc.shortcode] = _compile_shortcode(sc, reserved_table)
            kept.append(sc)
        if fallback_service == "":
            raise RoutingConfigError("fallback_service must not be empty (leave it out)", rule="fallback_service")
        self._shortcodes = tuple(kept)
        self._tables = tables
        self._reserved = reserved_table
        self._fallback = fallback_service

    @property
    def shortcodes(self) -> tuple[MoShortcode, ...]:
        """The shortcodes, in the order given."""
        return self._shortcodes

    def decide(self, *, to: str, text: str) -> MoDecision:
        """The service and kind for an MO `text` sent to `to`.

        Args:
            to: the MO's destination address (our shortcode or long number).
            text: the decoded message text (reassembled when it came in parts).
        """
        table = self._tables.get(to)
        nfc = unicodedata.normalize("NFC", text)
        first = _WORD.search(nfc)
        word = "" if first is None else fold_text(first.group())
        rest = nfc.strip() if first is None else nfc[first.end() :].lstrip(_REST_LEAD).rstrip()

        reserved = self._reserved.get(word)
        if reserved is not None:
            return self._reserved_decision(to, table, reserved, rest)
        if table is not None:
            # Rule 3's normalised text, made only when a pattern will read it.
            normalised = " ".join(fold_text(nfc).split()) if table.has_patterns else ""
            rule = table.keywords.get(word)
            missed = ""
            if rule is not None:
                pattern = table.keyword_patterns.get(rule.name)
                if pattern is None or pattern.fullmatch(normalised):
                    return MoDecision(
                        to, MoKind.KEYWORD, rule.service, rule.keyword, None, rule.name, rest,
                        f"first word {word!r} is keyword {rule.keyword!r} of rule {rule.name!r} on {to}",
                    )
                missed = f"keyword {rule.keyword!r} of rule {rule.name!r} matched but its pattern did not; "
            for pattern_rule, pattern in table.patterns:
                if pattern.fullmatch(normalised):
                    return MoDecision(
                        to, MoKind.PATTERN, pattern_rule.service, None, None, pattern_rule.name, nfc.strip(),
                        f"{missed}text matches the pattern of rule {pattern_rule.name!r} on {to}",
                    )
            if table.default_service is not None:
                return MoDecision(
                    to, MoKind.DEFAULT, table.default_service, None, None, None, nfc.strip(),
                    f"{missed}no keyword or pattern of {to} matches first word {word!r}: default service "
                    f"of {to}",
                )
            lead = f"{missed}no keyword or pattern of {to} matches first word {word!r} and {to} has no default"
        else:
            lead = f"shortcode {to} has no rules"
        if self._fallback is not None:
            return MoDecision(
                to, MoKind.DEFAULT, self._fallback, None, None, None, nfc.strip(), f"{lead}: global fallback"
            )
        return MoDecision(
            to, MoKind.UNROUTED, None, None, None, None, nfc.strip(), f"{lead}, and there is no global fallback"
        )

    def _reserved_decision(
        self, to: str, table: _CompiledShortcode | None, reserved: tuple[MoKind, str], rest: str
    ) -> MoDecision:
        kind, configured = reserved
        default = None if table is None else table.default_service
        if kind is MoKind.STOPALL:
            return MoDecision(
                to, kind, None, configured, None, None, rest,
                f"reserved word {configured!r}: opt out of everything on {to}",
            )
        second = _WORD.search(rest)
        target = None
        if second is not None and table is not None:
            target = table.keywords.get(fold_text(second.group()))
        if target is not None:
            return MoDecision(
                to, kind, target.service, configured, target.keyword, target.name, rest,
                f"reserved word {configured!r} ({kind.value}) for keyword {target.keyword!r} of rule "
                f"{target.name!r} on {to}",
            )
        whose = f"default service of {to}" if default is not None else f"{to}, which has no default service"
        return MoDecision(
            to, kind, default, configured, None, None, rest,
            f"reserved word {configured!r} ({kind.value}) without a keyword after it: {whose}",
        )

    def __repr__(self) -> str:
        return f"MoRouter(<{len(self._shortcodes)} shortcodes>)"


def _compile_shortcode(sc: MoShortcode, reserved: dict[str, tuple[MoKind, str]]) -> _CompiledShortcode:
    keywords: dict[str, MoRule] = {}
    keyword_patterns: dict[str, re.Pattern[str]] = {}
    patterns: list[tuple[MoRule, re.Pattern[str]]] = []
    names: set[str] = set()
    for rule in sc.rules:
        if rule.name in names:
            raise RoutingConfigError(f"rule name given twice on shortcode {sc.shortcode}", rule=rule.name)
        names.add(rule.name)
        for word in rule.words:
            folded = fold_text(word)
            if folded in reserved:
                raise RoutingConfigError(
                    f"keyword {word!r} is the reserved word {reserved[folded][1]!r}", rule=rule.name
                )
            if folded in keywords:
                other = keywords[folded]
                raise RoutingConfigError(
                    f"keyword {word!r} is already used on shortcode {sc.shortcode} by rule {other.name!r}",
                    rule=rule.name,
                )
            keywords[folded] = rule
        if rule.pattern is not None:
            compiled = re.compile(rule.pattern)
            if rule.keyword is None:
                patterns.append((rule, compiled))
            else:
                keyword_patterns[rule.name] = compiled
    return _CompiledShortcode(keywords, keyword_patterns, tuple(patterns), sc.default_service)
