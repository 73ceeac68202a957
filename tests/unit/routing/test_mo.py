"""Tests for routing._mo: MO keyword routing, reserved words and folding."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from routing import (
    DEFAULT_STOP_WORDS,
    MoDecision,
    MoKind,
    MoReservedWords,
    MoRouter,
    MoRule,
    MoShortcode,
    RoutingConfigError,
    fold_text,
)

NEWS = MoRule("news", "news-service", keyword="NEWS", aliases=frozenset({"NOUVELLES", "Café"}))
VOTE = MoRule("vote", "tv-vote", keyword="VOTE", pattern=r"vote [1-5]")
PIN = MoRule("pin", "billing-pin", pattern=r"\d{4}")
SHORTCODE = MoShortcode("80001", (NEWS, VOTE, PIN), default_service="catch-80001")
BARE = MoShortcode("80002", (MoRule("jobs", "jobs-service", keyword="JOBS"),))
ROUTER = MoRouter([SHORTCODE, BARE])
WITH_FALLBACK = MoRouter([SHORTCODE, BARE], fallback_service="global")


def decide(text: str, to: str = "80001", router: MoRouter = ROUTER) -> MoDecision:
    return router.decide(to=to, text=text)


@pytest.mark.parametrize(
    ("text", "kind", "keyword"),
    [
        ("STOP", MoKind.STOP, "STOP"),
        ("stop", MoKind.STOP, "STOP"),
        ("Stop.", MoKind.STOP, "STOP"),
        ("stop please", MoKind.STOP, "STOP"),
        ("  !!STOP!!  ", MoKind.STOP, "STOP"),
        ("Stóp", MoKind.STOP, "STOP"),
        ("ＳＴＯＰ", MoKind.STOP, "STOP"),  # fullwidth letters: NFKD makes them ASCII
        ("unsubscribe", MoKind.STOP, "UNSUBSCRIBE"),
        ("Cancel", MoKind.STOP, "CANCEL"),
        ("end", MoKind.STOP, "END"),
        ("QUIT", MoKind.STOP, "QUIT"),
        ("stopall", MoKind.STOPALL, "STOPALL"),
        ("START", MoKind.START, "START"),
        ("unstop", MoKind.START, "UNSTOP"),
        ("help", MoKind.HELP, "HELP"),
        ("Info?", MoKind.HELP, "INFO"),
    ],
)
def test_reserved_words(text: str, kind: MoKind, keyword: str) -> None:
    decision = decide(text)
    assert decision.kind is kind
    assert decision.keyword == keyword


@pytest.mark.parametrize("text", ["stopwatch for sale", "stopping by", "Stop_watch", "helpdesk", "Informations"])
def test_words_that_only_start_like_reserved_ones_are_not(text: str) -> None:
    decision = decide(text)
    assert decision.kind is MoKind.DEFAULT
    assert decision.service == "catch-80001"


def test_stop_names_its_target_service() -> None:
    decision = decide("STOP NEWS")
    assert decision.kind is MoKind.STOP
    assert (decision.service, decision.keyword, decision.target, decision.rule) == (
        "news-service", "STOP", "NEWS", "news",
    )
    assert decision.rest == "NEWS"
    assert decision.reason == "reserved word 'STOP' (stop) for keyword 'NEWS' of rule 'news' on 80001"
    assert decide("stop, nouvelles please").target == "NEWS"
    assert decide("help cafe").service == "news-service"
    assert decide("START news").kind is MoKind.START


def test_stop_without_target_goes_to_the_default_service() -> None:
    decision = decide("stop please")
    assert (decision.kind, decision.service, decision.target, decision.rest) == (
        MoKind.STOP, "catch-80001", None, "please",
    )
    assert "without a keyword after it: default service of 80001" in decision.reason
    bare = decide("STOP", to="80002")
    assert bare.service is None
    assert "80002, which has no default service" in bare.reason
    unknown = decide("stop", to="99999")
    assert (unknown.kind, unknown.service) == (MoKind.STOP, None)


def test_stopall_ignores_what_follows() -> None:
    decision = decide("STOPALL NEWS")
    assert (decision.kind, decision.service, decision.target) == (MoKind.STOPALL, None, None)
    assert decision.reason == "reserved word 'STOPALL': opt out of everything on 80001"


@pytest.mark.parametrize(
    ("text", "keyword", "rest"),
    [
        ("NEWS", "NEWS", ""),
        ("news today", "NEWS", "today"),
        ("News: Élections 2026", "NEWS", "Élections 2026"),
        ("nouvelles du jour", "NEWS", "du jour"),
        ("CAFÉ au lait", "NEWS", "au lait"),
        ("cafe\u0301 noir", "NEWS", "noir"),  # decomposed accent, as some handsets send it
        ("vote 3", "VOTE", "3"),
        ("Vote   4 ", "VOTE", "4"),
    ],
)
def test_keywords_and_aliases(text: str, keyword: str, rest: str) -> None:
    decision = decide(text)
    assert decision.kind is MoKind.KEYWORD
    assert decision.keyword == keyword
    assert decision.rest == rest


def test_keyword_decision_fields() -> None:
    assert decide("Nouvelles!") == MoDecision(
        "80001", MoKind.KEYWORD, "news-service", "NEWS", None, "news", "",
        "first word 'nouvelles' is keyword 'NEWS' of rule 'news' on 80001",
    )


def test_keyword_whose_pattern_fails_falls_through() -> None:
    decision = decide("vote 9")
    assert decision.kind is MoKind.DEFAULT
    assert decision.reason.startswith("keyword 'VOTE' of rule 'vote' matched but its pattern did not; ")


def test_pattern_only_rule_matches_the_whole_normalised_text() -> None:
    decision = decide(" 1234 ")
    assert (decision.kind, decision.service, decision.rule, decision.rest) == (
        MoKind.PATTERN, "billing-pin", "pin", "1234",
    )
    assert decide("12345").kind is MoKind.DEFAULT
    assert decide("my pin 1234").kind is MoKind.DEFAULT


def test_default_fallback_and_unrouted() -> None:
    assert decide("hello").kind is MoKind.DEFAULT
    assert decide("hello").rest == "hello"
    unrouted = decide("hello", to="80002")
    assert (unrouted.kind, unrouted.service) == (MoKind.UNROUTED, None)
    assert unrouted.reason == (
        "no keyword or pattern of 80002 matches first word 'hello' and 80002 has no default, "
        "and there is no global fallback"
    )
    fallback = decide("hello", to="80002", router=WITH_FALLBACK)
    assert (fallback.kind, fallback.service) == (MoKind.DEFAULT, "global")
    unknown = decide("JOBS", to="12345", router=WITH_FALLBACK)
    assert (unknown.kind, unknown.service, unknown.reason) == (
        MoKind.DEFAULT, "global", "shortcode 12345 has no rules: global fallback",
    )
    assert decide("JOBS", to="12345").kind is MoKind.UNROUTED
    # Keywords belong to their shortcode.
    assert decide("JOBS").kind is MoKind.DEFAULT


def test_empty_text() -> None:
    decision = decide("")
    assert (decision.kind, decision.service, decision.rest) == (MoKind.DEFAULT, "catch-80001", "")
    assert decide("   ", to="80002").kind is MoKind.UNROUTED


def test_reserved_words_are_configurable() -> None:
    reserved = MoReservedWords(
        stop=DEFAULT_STOP_WORDS | {"ARRET", "BAJA"}, start=frozenset({"START", "ALTA"}), help=frozenset({"AIDE"})
    )
    router = MoRouter([MoShortcode("80001", (MoRule("info", "info-service", keyword="INFO"),))], reserved=reserved)
    assert router.decide(to="80001", text="Arrêt").kind is MoKind.STOP
    assert router.decide(to="80001", text="Arrêt").keyword == "ARRET"
    assert router.decide(to="80001", text="baja").kind is MoKind.STOP
    assert router.decide(to="80001", text="aide").kind is MoKind.HELP
    # INFO is no longer reserved here, so it can be a keyword.
    assert router.decide(to="80001", text="info").kind is MoKind.KEYWORD
    assert router.decide(to="80001", text="unstop").kind is MoKind.UNROUTED


@pytest.mark.parametrize(
    ("build", "rule", "says"),
    [
        (lambda: MoRule("r", "s"), "r", "needs a keyword, a pattern or both"),
        (lambda: MoRule("r", "s", aliases=frozenset({"A"}), pattern="x"), "r", "aliases need a keyword"),
        (lambda: MoRule("r", "s", keyword="TWO WORDS"), "r", "'TWO WORDS' is not a single word"),
        (lambda: MoRule("r", "s", keyword=""), "r", "not a single word"),
        (lambda: MoRule("r", "s", keyword="A", aliases=frozenset({"B!"})), "r", "'B!' is not a single word"),
        (lambda: MoRule("r", "s", pattern="vote [1-5"), "r", "does not compile"),
        (lambda: MoRule("", "s", keyword="A"), "<unnamed rule>", "needs a name"),
        (lambda: MoRule("r", "", keyword="A"), "r", "needs a service"),
        (lambda: MoShortcode(""), "<empty shortcode>", "must not be empty"),
        (lambda: MoShortcode("80001", default_service=""), "80001", "default_service must not be empty"),
        (lambda: MoReservedWords(help=frozenset({"STOP"})), "reserved_words", "both stop and help"),
        (lambda: MoReservedWords(start=frozenset({"re start"})), "reserved_words", "not a single word"),
        (
            lambda: MoRouter([MoShortcode("1", (NEWS, MoRule("other", "x", keyword="news")))]),
            "other", "keyword 'news' is already used on shortcode 1 by rule 'news'",
        ),
        (
            lambda: MoRouter([MoShortcode("1", (NEWS, MoRule("other", "x", keyword="X", aliases=frozenset({"cafe"}))))]),
            "other", "keyword 'cafe' is already used",
        ),
        (
            lambda: MoRouter([MoShortcode("1", (MoRule("own", "x", keyword="A", aliases=frozenset({"a"})),))]),
            "own", "already used",
        ),
        (lambda: MoRouter([MoShortcode("1", (MoRule("s", "x", keyword="Stop"),))]), "s", "reserved word 'STOP'"),
        (lambda: MoRouter([MoShortcode("1", (NEWS, NEWS))]), "news", "rule name given twice"),
        (lambda: MoRouter([MoShortcode("1"), MoShortcode("1")]), "1", "shortcode given twice"),
        (lambda: MoRouter([], fallback_service=""), "fallback_service", "must not be empty"),
    ],
)
def test_bad_definitions_are_refused_and_named(build: object, rule: str, says: str) -> None:
    with pytest.raises(RoutingConfigError, match=says) as info:
        build()  # type: ignore[operator]
    assert info.value.rule == rule


def test_same_keyword_on_two_shortcodes_is_fine() -> None:
    router = MoRouter([MoShortcode("1", (NEWS,)), MoShortcode("2", (MoRule("n2", "other", keyword="NEWS"),))])
    assert router.decide(to="1", text="news").service == "news-service"
    assert router.decide(to="2", text="news").service == "other"
    assert router.shortcodes[0].shortcode == "1"


def test_rules_are_hashable_values() -> None:
    assert hash(SHORTCODE) == hash(MoShortcode("80001", (NEWS, VOTE, PIN), default_service="catch-80001"))
    assert NEWS.words == ("NEWS", "Café", "NOUVELLES")


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Élan", "elan"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("ﬁn", "fin"),  # U+FB01 LATIN SMALL LIGATURE FI decomposes to 'fi' under NFKD
        ("ＳＴＯＰ", "stop"),
        ("cafe\u0301", "cafe"),
        ("Ångström", "angstrom"),
    ],
)
def test_fold_text(text: str, folded: str) -> None:
    assert fold_text(text) == folded


@given(st.text(max_size=30))
def test_fold_is_idempotent(text: str) -> None:
    once = fold_text(text)
    assert fold_text(once) == once


@given(st.text(alphabet=st.characters(categories=["Lu", "Ll", "Nd"]), min_size=1, max_size=12), st.text(max_size=20))
@example("Stop", "news")
@example("stopwatch", "")
@example("QUİT", "")
def test_only_a_reserved_first_word_is_reserved(word: str, tail: str) -> None:
    decision = decide(f"{word} {tail}")
    folded = fold_text(word)
    reserved = {"stop", "unsubscribe", "cancel", "end", "quit", "stopall", "start", "unstop", "help", "info"}
    if folded in reserved:
        assert decision.kind in {MoKind.STOP, MoKind.STOPALL, MoKind.START, MoKind.HELP}
    else:
        assert decision.kind not in {MoKind.STOP, MoKind.STOPALL, MoKind.START, MoKind.HELP}


def test_combining_marks_all_lie_in_planes_0_and_1() -> None:
    # fold_text's table scans planes 0 and 1 only; this checks that claim against the running Unicode data.
    assert not any(unicodedata.combining(chr(cp)) for cp in range(0x20000, 0x110000))
