"""Tests for dlr._ids: id formats and policies, canonical keys, and the resp/receipt quirks meeting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr import (
    IdFormat,
    IdPolicy,
    Receipt,
    ReceiptStatus,
    correlation_keys,
    normalize_smsc_id,
    receipt_keys,
    smsc_id_keys,
)

UUID = "74e02ee1-4e2f-4a6e-a78b-4b247d756a22"  # cloudhopper parseReceiptWithTimestampIncludingSeconds


def _meet(resp_id: str, receipt_id: str, policy: str) -> bool:
    return bool(set(correlation_keys(resp_id, policy)) & set(receipt_keys(receipt_id, policy)))


@pytest.mark.parametrize(
    ("raw", "fmt", "key"),
    [
        ("12345", "decimal", "12345"),
        ("0000000012345678", "decimal", "12345678"),  # Nexmo's zero-padded receipt id
        ("000", "decimal", "0"),
        (" 42 ", "decimal", "42"),
        ("3039", "hex", "12345"),
        ("00FF", "hex", "255"),
        ("0x1f", "hex", "31"),
        ("0X1F", "hex", "31"),
        # cloudhopper toMessageIdAsHexString / toMessageIdAsLong: 98765432101 <-> "16fee0e525".
        ("16fee0e525", "hex", "98765432101"),
        ("16FEE0E525", "hex", "98765432101"),
        ("98765432101", "decimal", "98765432101"),
        (" 0059113978\t", "as-is", "0059113978"),
        ("AbC", "as-is", "AbC"),
        # Not a number in the base: the trimmed text, never an exception.
        (UUID, "hex", UUID),
        (UUID, "decimal", UUID),
        ("12ab", "decimal", "12ab"),
        ("+12", "decimal", "+12"),
        ("1_000", "decimal", "1_000"),
        ("١٢٣", "decimal", "١٢٣"),  # Arabic-Indic digits are not SMPP digits
        ("", "hex", ""),
        ("   ", "decimal", ""),
        (" 0059113978 ", "auto", "0059113978"),
    ],
)
def test_normalize_smsc_id(raw: str, fmt: str, key: str) -> None:
    assert normalize_smsc_id(raw, fmt) == key
    assert normalize_smsc_id(raw, IdFormat(fmt)) == key


def test_normalize_defaults_to_as_is() -> None:
    assert normalize_smsc_id(" 007 ") == "007"


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("12345", ("12345", "74565")),
        ("0059113978", ("0059113978", "59113978", "1494301048")),
        ("38601fa", ("38601fa", "59113978")),
        ("3039", ("3039", "12345")),
        ("0", ("0",)),
        (UUID, (UUID,)),
        ("a29f6845555647139e5c8f3b817f2c9a", ("a29f6845555647139e5c8f3b817f2c9a",
                                               str(int("a29f6845555647139e5c8f3b817f2c9a", 16)))),
        ("", ()),
    ],
)
def test_auto_keys_most_exact_first(raw: str, keys: tuple[str, ...]) -> None:
    assert smsc_id_keys(raw, IdFormat.AUTO) == keys


@pytest.mark.parametrize(
    ("resp_id", "receipt_id", "policy"),
    [
        # The classic quirk: decimal in submit_sm_resp, hex in the receipt.
        ("12345", "3039", "decimal/hex"),
        ("12345", "3039", "auto"),
        ("98765432101", "16FEE0E525", "decimal/hex"),
        # The other way round, as Nexmo documents it ("submit_sm_resp: hexadecimal, deliver_sm: decimal").
        ("3039", "12345", "hex/decimal"),
        ("3039", "12345", "auto"),
        ("16fee0e525", "0098765432101", "hex/decimal"),
        # cloudhopper's captured receipt: the TLV (= resp) id in hex, the text id decimal with zeros.
        ("38601fa", "0059113978", "hex/decimal"),
        ("38601fa", "0059113978", "auto"),
        # Same base, different spelling.
        ("0000000012345678", "12345678", "decimal"),
        ("00ff", "FF", "hex"),
        ("ff", "00FF", "auto"),
        # UUIDs and other strings meet as they are.
        (UUID, UUID, "as-is"),
        (UUID, UUID, "hex"),
        (UUID, UUID, "decimal/hex"),
        (UUID, UUID, "auto"),
        ("0118Z-0122I-2309U-57DGB", "0118Z-0122I-2309U-57DGB", "auto"),
    ],
)
def test_ids_that_denote_the_same_message_meet(resp_id: str, receipt_id: str, policy: str) -> None:
    assert _meet(resp_id, receipt_id, policy)


@pytest.mark.parametrize(
    ("resp_id", "receipt_id", "policy"),
    [
        ("12345", "3039", "as-is"),
        ("12345", "3039", "decimal"),  # the quirk needs a policy that knows it
        ("12345", "12346", "auto"),
        ("0059113978", "59113978", "as-is"),
        (UUID, UUID.upper(), "as-is"),
        ("", "", "auto"),
    ],
)
def test_ids_that_do_not_meet(resp_id: str, receipt_id: str, policy: str) -> None:
    assert not _meet(resp_id, receipt_id, policy)


def test_receipt_keys_try_the_tlv_id_first_with_the_resp_format() -> None:
    r = Receipt(smsc_message_id="38601fa", status=ReceiptStatus.DELIVERED, receipted_message_id="38601fa",
                text_id="0059113978")
    assert receipt_keys(r, "hex/decimal") == ("59113978",)
    assert receipt_keys(r, "as-is") == ("38601fa", "0059113978")
    assert receipt_keys(r, "auto") == ("38601fa", "59113978", "0059113978", "1494301048")
    text_only = Receipt(smsc_message_id="3039", status=ReceiptStatus.DELIVERED, text_id="3039")
    assert receipt_keys(text_only, "decimal/hex") == ("12345",)
    nothing = Receipt(smsc_message_id="", status=ReceiptStatus.UNKNOWN)
    assert receipt_keys(nothing, "auto") == ()


def test_receipt_keys_when_the_text_repeats_the_tlv_id() -> None:
    """The usual receipt: the same id in the TLV and the text. Read alike, the text adds nothing; read in another
    format ("decimal/hex"), its keys still come after the TLV's."""
    r = Receipt(smsc_message_id="255", status=ReceiptStatus.DELIVERED, receipted_message_id="255", text_id="255")
    assert receipt_keys(r, "auto") == ("255", "597")
    assert receipt_keys(r, "decimal") == ("255",)
    assert receipt_keys(r, "decimal/hex") == ("255", "597")
    assert receipt_keys(r, "hex/decimal") == ("597", "255")


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("hex", IdPolicy(IdFormat.HEX, IdFormat.HEX)),
        ("DECIMAL", IdPolicy(IdFormat.DECIMAL, IdFormat.DECIMAL)),
        ("as-is", IdPolicy()),
        ("as_is", IdPolicy()),
        (" auto ", IdPolicy(IdFormat.AUTO, IdFormat.AUTO)),
        ("decimal/hex", IdPolicy(IdFormat.DECIMAL, IdFormat.HEX)),
        ("hex / auto", IdPolicy(IdFormat.HEX, IdFormat.AUTO)),
    ],
)
def test_policy_parse(text: str, policy: IdPolicy) -> None:
    assert IdPolicy.parse(text) == policy
    assert IdPolicy.parse(str(policy)) == policy
    assert IdPolicy.of(text) == policy


def test_policy_of_and_str() -> None:
    p = IdPolicy(IdFormat.DECIMAL, IdFormat.HEX)
    assert IdPolicy.of(p) is p
    assert IdPolicy.of(IdFormat.HEX) == IdPolicy(IdFormat.HEX, IdFormat.HEX)
    assert str(p) == "decimal/hex"
    assert str(IdPolicy()) == "as-is"


@pytest.mark.parametrize("text", ["", "octal", "hex/decimal/auto", "hex/", "/hex"])
def test_policy_parse_errors_name_the_choices(text: str) -> None:
    with pytest.raises(ValueError, match="format"):
        IdPolicy.parse(text)


def test_bad_format_name_raises() -> None:
    with pytest.raises(ValueError, match="as-is, decimal, hex, auto"):
        normalize_smsc_id("1", "base64")


_policies = st.sampled_from(["auto", "decimal/hex", "hex/decimal", "hex", "decimal"])


@given(n=st.integers(0, 2**128), resp_zeros=st.integers(0, 6), receipt_zeros=st.integers(0, 6),
       upper=st.booleans(), policy=_policies)
def test_any_number_meets_across_bases_and_padding(n: int, resp_zeros: int, receipt_zeros: int, upper: bool,
                                                  policy: str) -> None:
    def spell(fmt: IdFormat, zeros: int) -> str:
        digits = format(n, "X" if upper else "x") if fmt is IdFormat.HEX else str(n)
        return "0" * zeros + digits

    pol = IdPolicy.parse(policy)
    resp_fmt = IdFormat.DECIMAL if pol.resp is IdFormat.AUTO else pol.resp
    receipt_fmt = IdFormat.HEX if pol.receipt is IdFormat.AUTO else pol.receipt
    assert _meet(spell(resp_fmt, resp_zeros), spell(receipt_fmt, receipt_zeros), policy)


@given(st.text(max_size=80), st.sampled_from(list(IdFormat)))
def test_keys_never_raise_and_are_trimmed(raw: str, fmt: IdFormat) -> None:
    keys = smsc_id_keys(raw, fmt)
    assert all(k and k == k.strip() for k in keys)
    assert len(keys) == len(set(keys))
    assert (keys == ()) is (raw.strip() == "")


@given(st.text(alphabet=st.sampled_from("0123456789abfxX \u0663\u00b2\uff11-"), max_size=12))
def test_a_decimal_id_is_ascii_digits_only(raw: str) -> None:
    # DECIMAL reads [0-9]+ alone: other Unicode digits (Arabic-Indic, superscript, fullwidth) are not a number here.
    s = raw.strip()
    expected = (str(int(s)),) if s and all("0" <= c <= "9" for c in s) else ((s,) if s else ())
    assert smsc_id_keys(raw, IdFormat.DECIMAL) == expected
