"""simulator/_ids.py: the four id forms, and the resp/receipt quirk."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr import IdPolicy, correlation_keys, receipt_keys
from simulator._ids import IdWriter, id_formatter, number_of

SALT = random.Random(7).getrandbits(80)


def test_the_forms() -> None:
    assert id_formatter("decimal", SALT)(1234567890) == "1234567890"
    assert id_formatter("hex", SALT)(1234567890) == "499602d2"
    assert id_formatter("HEX", SALT)(1234567890) == "499602D2"
    text = id_formatter("uuid", SALT)(1234567890)
    parsed = uuid.UUID(text)  # the standard library reads it as a random (version 4) RFC 4122 UUID
    assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert parsed.int & (1 << 48) - 1 == 1234567890
    with pytest.raises(ValueError, match="unknown message id form"):
        id_formatter("base64", SALT)


@given(st.integers(min_value=0, max_value=(1 << 48) - 1), st.sampled_from(["decimal", "hex", "HEX", "uuid"]))
def test_number_of_reads_back_every_form(n: int, form: str) -> None:
    assert number_of(id_formatter(form, SALT)(n), form) == n


def test_number_of_refuses_other_text() -> None:
    assert number_of("12ab", "decimal") is None
    assert number_of("xyz", "hex") is None
    assert number_of("not-a-uuid", "uuid") is None


def test_decimal_resp_and_padded_hex_receipt_meet_in_the_gateway_correlator() -> None:
    writer = IdWriter.create("decimal", "hex", 10, SALT)
    resp, receipt = writer.resp(3_000_000_123), writer.receipt(3_000_000_123)
    assert (resp, receipt) == ("3000000123", "00b2d05e7b")
    # dlr's policy for this quirk ("decimal/hex") correlates the two spellings of one number.
    policy = IdPolicy.parse("decimal/hex")
    assert set(correlation_keys(resp, policy)) & set(receipt_keys(receipt, policy))


def test_same_form_by_default() -> None:
    writer = IdWriter.create("HEX", None, 0, SALT)
    assert writer.receipt_form == "HEX" and writer.receipt(255) == writer.resp(255) == "FF"
