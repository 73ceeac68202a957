"""simulator/_handsets.py: rules by prefix and text, quoted groups, the raw-bytes prefilter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator._config import HandsetRule
from simulator._handsets import HandsetReply, Handsets
from smpp import Alphabet, TextEncodeError, encode_text

RULES = [
    HandsetRule(to_prefix="4479", contains="Reply YES", reply="YES", after_s=2),
    HandsetRule(to_prefix="447700901", pattern=r"PIN:? *([0-9]{4,8})", reply="{1}", after_s=1, reply_to="84999"),
    HandsetRule(to_prefix="", contains="STOP", reply="You said {0}", after_s=0),
]


def test_the_first_matching_rule_answers() -> None:
    h = Handsets(RULES)
    assert h.reply_for(destination="447911123456", source="84001", text="Join? reply yes to confirm") == \
        HandsetReply("447911123456", "84001", "YES", 2)
    assert h.reply_for(destination="447700901300", source="84001", text="Your PIN: 4821") == \
        HandsetReply("447700901300", "84999", "4821", 1)
    assert h.reply_for(destination="33612345678", source="84001", text="send stop to end") == \
        HandsetReply("33612345678", "84001", "You said stop", 0)
    assert h.reply_for(destination="33612345678", source="84001", text="hello") is None
    assert h.reply_for(destination="447911123456", source="84001", text="Your PIN: 4821") is None


def test_watches_only_covered_destinations() -> None:
    h = Handsets(RULES[:2])
    assert h.watches("447911123456") and h.watches("447700901300")
    assert not h.watches("447700900100") and not h.watches("33612345678")
    assert not Handsets([]).watches("447911123456") and not Handsets([])


def test_the_prefilter_rules_out_from_raw_bytes() -> None:
    h = Handsets(RULES[:2])
    assert not h.may_reply("447911123456", 0, b"nothing here")
    assert h.may_reply("447911123456", 0, b"please REPLY yes")
    assert h.may_reply("447911123456", 8, b"\x00R")  # UCS-2 is not judged from bytes
    assert h.may_reply("447700901300", 0, b"no pin")  # a pattern rule is never ruled out
    assert not h.may_reply("33612345678", 0, b"Reply YES")  # no rule for this destination


_NOISE = st.text(alphabet="ReplyYESyesrpl @$_!?.ÄÖäöüàé€[]{}~^\\|\n", max_size=30)


@given(_NOISE, _NOISE, st.lists(st.booleans(), min_size=9, max_size=9),
       st.sampled_from([Alphabet.GSM7, Alphabet.LATIN_1, Alphabet.IA5]))
def test_the_prefilter_never_hides_a_match(before: str, after: str, upper: list[bool], alphabet: Alphabet) -> None:
    needle = "".join(c.upper() if u else c.lower() for c, u in zip("Reply YES", upper, strict=True))
    text = before + needle + after
    try:
        data = encode_text(text, alphabet).data
    except TextEncodeError:
        return
    h = Handsets(RULES[:1])
    assert h.reply_for(destination="447911123456", source="84001", text=text) is not None
    assert h.may_reply("447911123456", int(alphabet), data)


@given(_NOISE)
def test_the_prefilter_agrees_with_the_rules_on_gsm_text(text: str) -> None:
    try:
        data = encode_text(text, Alphabet.GSM7).data
    except TextEncodeError:
        return
    h = Handsets(RULES[:1])
    matched = h.reply_for(destination="447911123456", source="84001", text=text) is not None
    assert not matched or h.may_reply("447911123456", 0, data)
