"""The load generator's plan: text mix, the weighted cycle, the built-in texts' encoding and the pacer."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator._load_plan import (
    BUILTIN_TEXTS,
    LoadPlan,
    MessageKind,
    Pacer,
    TextMix,
    cycle_length,
    parse_mix,
    weighted_cycle,
)
from smpp import Alphabet, decode_text

KNOWN = list(BUILTIN_TEXTS)


def test_parse_mix() -> None:
    assert parse_mix("gsm=8,ucs2=1,long=1", KNOWN) == {"gsm": 8.0, "ucs2": 1.0, "long": 1.0}
    assert parse_mix(" gsm , long_ucs2=0.5 ", KNOWN) == {"gsm": 1.0, "long_ucs2": 0.5}
    assert parse_mix("gsm=1,ucs2=0", KNOWN) == {"gsm": 1.0, "ucs2": 0.0}


@pytest.mark.parametrize(("text", "message"), [
    ("latin=1", "unknown text kind 'latin'"),
    ("gsm=1,gsm=2", "appears twice"),
    ("gsm=x", "not a number"),
    ("gsm=-1", "finite number >= 0"),
    ("gsm=inf", "finite number >= 0"),
    ("gsm=0", "at least one kind"),
    ("", "at least one kind"),
])
def test_parse_mix_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mix(text, KNOWN)


def test_weighted_cycle_spreads_picks_evenly() -> None:
    # Smooth weighted round robin with weights 5, 1, 1 gives a a b a c a a (nginx's published example).
    assert weighted_cycle([5, 1, 1], 7) == [0, 0, 1, 0, 2, 0, 0]
    assert weighted_cycle([1, 1], 4) == [0, 1, 0, 1]
    assert weighted_cycle([0, 3], 3) == [1, 1, 1]
    with pytest.raises(ValueError):
        weighted_cycle([0, 0], 3)
    with pytest.raises(ValueError):
        weighted_cycle([1, -1], 3)


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=5).filter(any),
       st.integers(min_value=1, max_value=4))
def test_weighted_cycle_holds_each_weight_per_period(weights: list[int], periods: int) -> None:
    total = sum(weights)
    picks = weighted_cycle(weights, total * periods)
    for p in range(periods):
        block = Counter(picks[p * total:(p + 1) * total])
        assert [block.get(i, 0) for i in range(len(weights))] == weights


def test_cycle_length_is_one_exact_period_when_short() -> None:
    assert cycle_length([8, 1, 1]) == 10
    assert cycle_length([2, 1]) == 3
    assert cycle_length([0.5, 0.25]) == 3
    assert cycle_length([1 / 3, 1]) == 10_000  # not in thousandths: a long cycle approximates it
    assert cycle_length([9999, 2]) == 10_000  # a period of 10,001 is too long


def test_builtin_texts_encode_as_documented() -> None:
    kinds = {name: MessageKind.create(name, text) for name, text in BUILTIN_TEXTS.items()}
    assert (kinds["gsm"].encoded.alphabet, kinds["gsm"].parts) == (Alphabet.GSM7, 1)
    assert (kinds["ucs2"].encoded.alphabet, kinds["ucs2"].parts) == (Alphabet.UCS2, 1)
    assert (kinds["long"].encoded.alphabet, kinds["long"].parts) == (Alphabet.GSM7, 3)
    assert (kinds["long_ucs2"].encoded.alphabet, kinds["long_ucs2"].parts) == (Alphabet.UCS2, 3)


def test_long_parts_carry_the_reference_in_an_8bit_concatenation_udh() -> None:
    kind = MessageKind.create("long", BUILTIN_TEXTS["long"])
    for reference in (0, 7, 300):
        wire = kind.wire_parts(reference)
        assert len(wire) == 3
        for seqnum, (esm_class, short_message, data_coding) in enumerate(wire, 1):
            assert esm_class == 0x40 and data_coding == 0  # UDHI (SMPP §5.2.12), GSM default alphabet
            # 23.040 §9.2.3.24.1: UDHL 5, IEI 0x00, IEDL 3, reference, total, sequence number.
            assert short_message[:6] == bytes([5, 0, 3, reference & 0xFF, 3, seqnum])
        text = "".join(decode_text(0, sm[6:]) for _, sm, _ in wire)
        assert text == BUILTIN_TEXTS["long"]
    assert kind.wire_parts(7) is kind.wire_parts(7 + 256)  # cached per 8-bit reference


def test_single_part_kinds_have_no_udh() -> None:
    kind = MessageKind.create("ucs2", BUILTIN_TEXTS["ucs2"])
    [(esm_class, short_message, data_coding)] = kind.wire_parts(5)
    assert esm_class == 0 and data_coding == 8
    assert short_message == BUILTIN_TEXTS["ucs2"].encode("utf-16-be")


def test_text_mix_order_and_part_counts() -> None:
    mix = TextMix.from_mix({"gsm": 2, "long": 1, "ucs2": 0})
    assert [k.name for k in mix.kinds] == ["gsm", "long"]
    names = [mix.kind_of(i).name for i in range(6)]
    assert Counter(names) == {"gsm": 4, "long": 2}
    assert mix.parts_in(3) == 2 * 1 + 3
    assert mix.parts_in(3000) == 2000 + 3000
    assert [mix.kind_of(i + 3).name for i in range(3)] == names[:3]
    single = TextMix.single("hi")
    assert single.kind_of(17).text == "hi" and single.parts_in(4) == 4


def test_destinations_cycle() -> None:
    plan = LoadPlan(count=10, mix=TextMix.single("x"), destination="447400000000", recipients=3)
    assert [plan.destination_of(i) for i in range(4)] == ["447400000000", "447400000001", "447400000002",
                                                          "447400000000"]
    assert LoadPlan(count=1, mix=TextMix.single("x"), recipients=1).destination_of(9) == "447400000000"


def test_pacer_with_a_fake_clock() -> None:
    pacer = Pacer(10.0, start=100.0, limit=25)
    assert pacer.due(99.99) == 0
    assert pacer.due(100.0) == 1  # the first message is due at the start
    assert pacer.due(100.05) == 1
    assert pacer.due(100.1) == 2
    assert pacer.due(100.999) == 10
    assert pacer.due(101.0) == 11
    assert pacer.due(1000.0) == 25  # never more than the limit
    assert pacer.due_time(0) == 100.0 and pacer.due_time(10) == pytest.approx(101.0)
    with pytest.raises(ValueError):
        Pacer(0.0, 0.0, 1)


@given(st.floats(min_value=0.5, max_value=200_000, allow_nan=False), st.floats(min_value=0, max_value=1e6),
       st.integers(min_value=0, max_value=100_000))
def test_a_message_is_due_at_its_due_time_and_not_before(rate: float, start: float, k: int) -> None:
    pacer = Pacer(rate, start, limit=10**9)
    t = pacer.due_time(k)
    assert pacer.due(t) >= k + 1
    if k > 0:
        # Just before message k's time, at most k messages are due (up to float rounding of the time itself).
        assert pacer.due(pacer.due_time(k - 1)) <= k + 1
