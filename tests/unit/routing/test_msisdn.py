"""Tests for routing._msisdn: normalisation to msisdns, country codes and masking."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from routing import (
    E164_MAX_DIGITS,
    InvalidMsisdn,
    MsisdnReason,
    NumberingPlan,
    NumberingRule,
    RoutingConfigError,
    country_code_of,
    mask_msisdn,
)

GB = NumberingRule("GB", "44", trunk_prefix="0", national_lengths=frozenset({10}))
# NANP: trunk prefix 1, international prefix 011, ten-digit national numbers.
US = NumberingRule("US", "1", trunk_prefix="1", international_prefixes=("011",), national_lengths=frozenset({10}))
CA = NumberingRule("CA", "1", trunk_prefix="1", international_prefixes=("011",), national_lengths=frozenset({10}))
# Spain has no trunk prefix and nine-digit numbers.
ES = NumberingRule("ES", "34", national_lengths=frozenset({9}))
# Russia: trunk prefix 8, international prefixes 810 and 00.
RU = NumberingRule("RU", "7", trunk_prefix="8", international_prefixes=("810", "00"), national_lengths=frozenset({10}))
# Germany's numbers vary in length: no lengths listed.
DE = NumberingRule("DE", "49", trunk_prefix="0")
PLAN = NumberingPlan([GB, US, CA, ES, RU, DE])


@pytest.mark.parametrize(
    ("raw", "country", "msisdn"),
    [
        ("07911 123456", "GB", "447911123456"),
        ("+44 7911 123456", None, "447911123456"),
        ("+44 7911 123456", "US", "447911123456"),
        ("0044 7911 123456", "GB", "447911123456"),
        ("+44 (0)7911", None, None),
        ("7911 123456", "GB", "447911123456"),
        ("447911123456", "GB", "447911123456"),
        ("447911123456", None, "447911123456"),
        ("07911-123-456", "GB", "447911123456"),
        ("07911.123.456", "GB", "447911123456"),
        ("\u00a007911\u00a0123456 ", "GB", "447911123456"),
        ("(212) 555-1234", "US", "12125551234"),
        ("1 (212) 555-1234", "US", "12125551234"),
        ("12125551234", "US", "12125551234"),
        ("011 44 7911 123456", "US", "447911123456"),
        ("612 345 678", "ES", "34612345678"),
        ("0034 612 345 678", "ES", "34612345678"),
        ("8 916 123-45-67", "RU", "79161234567"),
        ("810 44 7911 123456", "RU", "447911123456"),
        ("+7 916 123 45 67", "RU", "79161234567"),
        # A Chinese msisdn in Russia starts with Russia's trunk prefix 8, but 12 digits is no Russian
        # national number: it is read as the msisdn it is.
        ("8613812345678", "RU", "8613812345678"),
        ("030 1234567", "DE", "49301234567"),
        ("+49 30 1234567", None, "49301234567"),
    ],
)
def test_normalise(raw: str, country: str | None, msisdn: str | None) -> None:
    if msisdn is None:
        with pytest.raises(InvalidMsisdn):
            PLAN.normalise(raw, country=country)
    else:
        assert PLAN.normalise(raw, country=country) == msisdn


@pytest.mark.parametrize(
    ("raw", "country", "reason", "says"),
    [
        ("", None, MsisdnReason.EMPTY, "no digits"),
        (" - ( ) ", "GB", MsisdnReason.EMPTY, "no digits"),
        ("+", None, MsisdnReason.EMPTY, "after '+'"),
        ("00", "GB", MsisdnReason.EMPTY, "after the international prefix"),
        ("07911 12345a", "GB", MsisdnReason.BAD_CHARACTER, "'a'"),
        ("+44 7911 12345x", None, MsisdnReason.BAD_CHARACTER, "'x'"),
        ("++447911123456", None, MsisdnReason.BAD_CHARACTER, "'+'"),
        ("44+7911123456", None, MsisdnReason.BAD_CHARACTER, "'+'"),
        ("٤٤٧٩١١١٢٣٤٥٦", None, MsisdnReason.BAD_CHARACTER, "unexpected character"),
        ("+0447911123456", None, MsisdnReason.BAD_COUNTRY_CODE, "starts with 0"),
        ("0612345678", "ES", MsisdnReason.BAD_COUNTRY_CODE, "neither an international prefix nor the trunk"),
        ("07911123456", None, MsisdnReason.NO_RULE, "no country was given"),
        ("07911123456", "FR", MsisdnReason.NO_RULE, "no numbering rule for country 'FR'"),
        ("447911123456", "FR", MsisdnReason.NO_RULE, "international form"),
        ("0791112345", "GB", MsisdnReason.TOO_SHORT, "9 digits for country code 44, expected 10"),
        ("079111234567", "GB", MsisdnReason.TOO_LONG, "11 digits for country code 44, expected 10"),
        ("+1 212 555 123", None, MsisdnReason.TOO_SHORT, "expected 10"),
        ("+49 1234 5678 9012 34", None, MsisdnReason.TOO_LONG, "16 digits, E.164 allows at most 15"),
        ("+33 1234", None, MsisdnReason.TOO_SHORT, "6 digits, at least 7"),
    ],
)
def test_refused(raw: str, country: str | None, reason: MsisdnReason, says: str) -> None:
    with pytest.raises(InvalidMsisdn) as info:
        PLAN.normalise(raw, country=country)
    assert info.value.reason is reason
    assert says in str(info.value)
    assert info.value.raw == raw
    assert isinstance(info.value, ValueError)


def test_error_messages_do_not_repeat_the_number() -> None:
    with pytest.raises(InvalidMsisdn) as info:
        PLAN.normalise("07911 12345a", country="GB")
    assert "7911" not in str(info.value)


def test_length_between_the_listed_ones_is_bad_length() -> None:
    plan = NumberingPlan([NumberingRule("XX", "46", trunk_prefix="0", national_lengths=frozenset({7, 9}))])
    assert plan.normalise("0 123 4567", country="XX") == "461234567"
    assert plan.normalise("0 123 456 789", country="XX") == "46123456789"
    with pytest.raises(InvalidMsisdn) as info:
        plan.normalise("+46 1234 5678")
    assert info.value.reason is MsisdnReason.BAD_LENGTH
    assert "8 digits for country code 46, expected 7 or 9" in str(info.value)


def test_shared_country_code_checks_every_country_lengths() -> None:
    plan = NumberingPlan(
        [
            NumberingRule("A", "1", trunk_prefix="1", national_lengths=frozenset({10})),
            NumberingRule("B", "1", trunk_prefix="1", national_lengths=frozenset({7})),
        ]
    )
    assert plan.normalise("+1 555 1234") == "15551234"
    assert plan.normalise("+1 212 555 1234") == "12125551234"
    # A country that lists no lengths leaves its country code unchecked.
    open_plan = NumberingPlan([NumberingRule("A", "1", national_lengths=frozenset({10})), NumberingRule("B", "1")])
    assert open_plan.normalise("+1 2345 6789") == "123456789"


def test_min_digits_is_configurable() -> None:
    assert NumberingPlan(min_digits=5).normalise("+33 1234") == "331234"
    with pytest.raises(RoutingConfigError):
        NumberingPlan(min_digits=0)


def test_invalid_msisdn_pickles() -> None:
    with pytest.raises(InvalidMsisdn) as info:
        PLAN.normalise("abc")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.reason, copy.raw) == (str(info.value), MsisdnReason.BAD_CHARACTER, "abc")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"country": "", "country_code": "44"}, "country must not be empty"),
        ({"country": "X", "country_code": ""}, "1 to 3 digits"),
        ({"country": "X", "country_code": "0"}, "not starting with 0"),
        ({"country": "X", "country_code": "4444"}, "1 to 3 digits"),
        ({"country": "X", "country_code": "4"}, "not an E.164 country code"),
        ({"country": "X", "country_code": "440"}, "not an E.164 country code"),
        ({"country": "X", "country_code": "12"}, "not an E.164 country code"),
        ({"country": "X", "country_code": "44", "trunk_prefix": "O"}, "trunk_prefix must be digits"),
        ({"country": "X", "country_code": "44", "international_prefixes": ()}, "must not be empty"),
        ({"country": "X", "country_code": "44", "international_prefixes": ("+",)}, "must be digits"),
        ({"country": "X", "country_code": "44", "trunk_prefix": "0", "international_prefixes": ("0",)}, "equals"),
        ({"country": "X", "country_code": "44", "national_lengths": frozenset({14})}, "between 1 and 13"),
        ({"country": "X", "country_code": "44", "national_lengths": frozenset({0})}, "between 1 and 13"),
    ],
)
def test_bad_rule_is_refused_and_named(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(RoutingConfigError, match=says) as info:
        NumberingRule(**kwargs)  # type: ignore[arg-type]
    assert info.value.rule == (kwargs["country"] or "<no country>")


def test_duplicate_country_is_refused() -> None:
    with pytest.raises(RoutingConfigError) as info:
        NumberingPlan([GB, US, GB])
    assert info.value.rule == "GB"


def test_plan_accessors() -> None:
    assert PLAN.rule_for("GB") is GB
    assert PLAN.rule_for("FR") is None
    assert PLAN.rules == (GB, US, CA, ES, RU, DE)
    assert hash(GB) == hash(NumberingRule("GB", "44", "0", ("00",), frozenset({10})))


@pytest.mark.parametrize(
    ("msisdn", "cc"),
    [
        # ITU-T E.164 assigned country codes: one-digit 1 and 7, two-digit 20..98, the rest three digits.
        ("12125551234", "1"),
        ("79161234567", "7"),
        ("201001234567", "20"),
        ("447911123456", "44"),
        ("4930123456", "49"),
        ("8613812345678", "86"),
        ("919812345678", "91"),
        ("35312345678", "353"),
        ("2348031234567", "234"),
        ("4201234567", "420"),
        ("88012345678", "880"),
        ("9715012345678", "971"),
        ("", ""),
    ],
)
def test_country_code_of(msisdn: str, cc: str) -> None:
    assert country_code_of(msisdn) == cc


@pytest.mark.parametrize(
    ("msisdn", "masked"),
    [
        ("447911123456", "44*******456"),
        ("12125551234", "1*******234"),
        ("35312345678", "353*****678"),
        ("4412345", "44****5"),
        ("441234", "44****"),
        ("12", "1*"),
        ("1", "*"),
        ("", ""),
        ("not a number", "************"),
        ("+447911123456", "*************"),
    ],
)
def test_mask_msisdn(msisdn: str, masked: str) -> None:
    assert mask_msisdn(msisdn) == masked


national_gb = st.from_regex(r"\A7[0-9]{9}\Z")
national_us = st.from_regex(r"\A[2-9][0-9]{2}[2-9][0-9]{6}\Z")
international = st.from_regex(r"\A[1-9][0-9]{6,14}\Z")
separators = st.sampled_from(["", " ", "-", ".", "  "])


@given(national_gb, separators)
def test_gb_forms_agree_and_are_idempotent(national: str, sep: str) -> None:
    spaced = national[:4] + sep + national[4:]
    msisdn = PLAN.normalise("0" + spaced, country="GB")
    assert msisdn == "44" + national
    assert PLAN.normalise("+44" + sep + spaced) == msisdn
    assert PLAN.normalise("0044" + sep + spaced, country="GB") == msisdn
    assert PLAN.normalise(msisdn, country="GB") == msisdn
    assert PLAN.normalise(msisdn) == msisdn


@given(national_us)
def test_nanp_forms_agree_and_are_idempotent(national: str) -> None:
    msisdn = PLAN.normalise(f"({national[:3]}) {national[3:6]}-{national[6:]}", country="US")
    assert msisdn == "1" + national
    assert PLAN.normalise("1" + national, country="US") == msisdn
    assert PLAN.normalise(msisdn, country="US") == msisdn
    assert PLAN.normalise(msisdn, country="CA") == msisdn


@given(international)
def test_normalise_is_idempotent_on_its_own_output(digits: str) -> None:
    try:
        msisdn = PLAN.normalise("+" + digits)
    except InvalidMsisdn as exc:
        assert exc.reason in {MsisdnReason.TOO_SHORT, MsisdnReason.TOO_LONG, MsisdnReason.BAD_LENGTH}
        return
    assert msisdn == digits
    assert PLAN.normalise(msisdn) == msisdn
    assert PLAN.normalise("+" + msisdn, country="GB") == msisdn
    # In a country with a trunk prefix, a foreign msisdn stays itself unless it has a national length.
    for rule in (GB, DE):
        assume(len(msisdn) not in rule.national_lengths)
        assert PLAN.normalise(msisdn, country=rule.country) == msisdn


@given(st.text(max_size=20), st.sampled_from([None, "GB", "US", "ES", "RU", "DE", "FR"]))
def test_anything_normalises_or_is_refused_with_a_reason(raw: str, country: str | None) -> None:
    try:
        msisdn = PLAN.normalise(raw, country=country)
    except InvalidMsisdn as exc:
        assert isinstance(exc.reason, MsisdnReason)
        return
    assert msisdn.isascii() and msisdn.isdigit()
    assert 1 <= len(msisdn) <= E164_MAX_DIGITS
    assert msisdn[0] != "0"
    assert PLAN.normalise(msisdn) == msisdn
    assert PLAN.normalise("+" + msisdn, country=country) == msisdn
