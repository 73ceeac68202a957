"""Rule: the first rule whose prefix and text both match an MT decides the handset's reply; at most one per MT.

Scripted handsets make double opt-in and PIN flows run unattended: "when an MT to 4479 contains 'Reply YES',
answer YES to its source after 2 s". A rule matches on the destination prefix first (a cheap check done for
every MT), then on the text (`contains`, case-insensitive, or a regular expression). The reply may quote the
match: `{0}` is the matched text and `{1}`, `{2}`, ... the pattern's groups, so "PIN ([0-9]{4})" with reply
"{1}" answers with the PIN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ._config import HandsetRule

__all__ = ["HandsetReply", "Handsets"]


@dataclass(frozen=True, slots=True)
class HandsetReply:
    """The MO a handset will send.

    Attributes:
        source: the handset's number (the MT's destination).
        destination: where the reply goes (the MT's source, or the rule's `reply_to`).
        text: the reply text.
        after_s: seconds after the MT reached the handset.
    """

    source: str
    destination: str
    text: str
    after_s: float


# Characters that GSM 7-bit (one septet per octet), IA5 and Latin-1 all write as their ASCII byte, so a needle
# made of them can be looked for in the raw short_message before any decoding (3GPP TS 23.038 §6.2.1).
_SAME_BYTE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#%&'()*+,-./:;<=>?")
_PLAIN_CODINGS = frozenset({0x00, 0x01, 0x03})


@dataclass(frozen=True, slots=True)
class _Rule:
    to_prefix: str
    contains: str | None
    pattern: re.Pattern[str] | None
    reply: str
    after_s: float
    reply_to: str | None
    needle: bytes | None  # `contains` lower-cased as bytes, when every character is written as its ASCII byte


class Handsets:
    """The scripted handset rules, compiled."""

    __slots__ = ("_prefixes", "_rules", "rules")

    def __init__(self, rules: Sequence[HandsetRule]) -> None:
        """Compile the rules (checked by the config loader or `check_rule`)."""
        self.rules = tuple(rules)
        self._rules = tuple(
            _Rule(r.to_prefix, r.contains.lower() if r.contains is not None else None,
                  re.compile(r.pattern) if r.pattern is not None else None, r.reply, r.after_s, r.reply_to,
                  r.contains.lower().encode("ascii") if r.contains is not None and set(r.contains) <= _SAME_BYTE
                  else None)
            for r in rules
        )
        self._prefixes = tuple(sorted({r.to_prefix for r in rules}))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def watches(self, destination: str) -> bool:
        """True when some rule's prefix covers `destination` (so its text is worth decoding)."""
        return destination.startswith(self._prefixes) if self._prefixes else False

    def may_reply(self, destination: str, data_coding: int, short_message: bytes) -> bool:
        """False when no rule can match this MT, judged from its raw bytes without decoding them.

        Only a `contains` rule whose needle is plain ASCII can rule itself out here, and only for a short_message
        in GSM 7-bit (unpacked), IA5 or Latin-1 without a UDH; any other rule for the destination says True.
        """
        lowered: bytes | None = None
        for rule in self._rules:
            if not destination.startswith(rule.to_prefix):
                continue
            if rule.needle is None or data_coding not in _PLAIN_CODINGS:
                return True
            if lowered is None:
                lowered = short_message.lower()
            if rule.needle in lowered:
                return True
        return False

    def reply_for(self, *, destination: str, source: str, text: str) -> HandsetReply | None:
        """The reply of the handset at `destination` to an MT from `source` with `text`, or None."""
        folded: str | None = None
        for rule in self._rules:
            if not destination.startswith(rule.to_prefix):
                continue
            if rule.contains is not None:
                if folded is None:
                    folded = text.lower()
                at = folded.find(rule.contains)
                if at < 0:
                    continue
                reply = rule.reply.format(text[at:at + len(rule.contains)])
            else:
                assert rule.pattern is not None
                m = rule.pattern.search(text)
                if m is None:
                    continue
                reply = rule.reply.format(m.group(0), *(g or "" for g in m.groups()))
            return HandsetReply(destination, rule.reply_to or source, reply, rule.after_s)
        return None
