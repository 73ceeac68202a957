"""Rule: a message id is one number, written per account in one of four forms; the forms of one number meet.

The simulator numbers messages with one counter and writes each number the way the account's operator does:
`decimal` ("1234567890"), `hex` ("499602d2"), `HEX` ("499602D2") or `uuid`, a UUID-like string whose last
48 bits are the number ("5f0c9a2e-4b1d-4c3a-9e2f-0000499602d2"). An account may write the receipt text's id in
another form than submit_sm_resp (decimal in the resp and hex in the receipt is the classic operator quirk), and
pad it with zeros to a width. The receipted_message_id TLV always repeats the resp id (§5.3.2.12).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["IdWriter", "id_formatter", "number_of"]

_UUID_NUMBER_BITS = 48


def id_formatter(form: str, salt: int) -> Callable[[int], str]:
    """The function that writes a message number in `form` (decimal, hex, HEX or uuid).

    Args:
        form: the form's configuration spelling.
        salt: 80 bits that fill the UUID-like form's leading groups (fixed per simulator run).

    Raises:
        ValueError: an unknown form.
    """
    if form == "decimal":
        return str
    if form == "hex":
        return "{:x}".format
    if form == "HEX":
        return "{:X}".format
    if form == "uuid":
        a = salt >> 48 & 0xFFFF_FFFF
        b = salt >> 32 & 0xFFFF
        c = 0x4000 | (salt >> 16 & 0x0FFF)  # version nibble 4, as a random UUID has
        d = 0x8000 | (salt & 0x3FFF)  # variant bits 10
        head = f"{a:08x}-{b:04x}-{c:04x}-{d:04x}-"
        mask = (1 << _UUID_NUMBER_BITS) - 1

        def uuid_like(n: int) -> str:
            return f"{head}{n & mask:012x}"

        return uuid_like
    raise ValueError(f"unknown message id form {form!r}")


def number_of(message_id: str, form: str) -> int | None:
    """The message number an id written in `form` stands for, or None when it is not such an id."""
    text = message_id.strip()
    try:
        if form == "decimal":
            return int(text, 10) if text.isdigit() else None
        if form in ("hex", "HEX"):
            return int(text, 16)
        if form == "uuid":
            return int(text.rsplit("-", 1)[-1], 16) if text.count("-") == 4 else None
    except ValueError:
        return None
    raise ValueError(f"unknown message id form {form!r}")


@dataclass(frozen=True, slots=True)
class IdWriter:
    """Writes one account's ids: `resp(n)` for submit_sm_resp, `receipt(n)` for the receipt text."""

    resp: Callable[[int], str]
    receipt: Callable[[int], str]
    resp_form: str
    receipt_form: str

    @classmethod
    def create(cls, resp_form: str, receipt_form: str | None, receipt_width: int, salt: int) -> IdWriter:
        """The writer for an account's `message_ids` settings.

        Args:
            resp_form: the form in submit_sm_resp.
            receipt_form: the form in the receipt text; None for the same as `resp_form`.
            receipt_width: pad the receipt text's id with zeros on the left to this many characters (0: no pad).
            salt: the run's UUID salt (see `id_formatter`).
        """
        resp = id_formatter(resp_form, salt)
        form = receipt_form or resp_form
        receipt = id_formatter(form, salt)
        if receipt_width:
            plain = receipt

            def receipt(n: int) -> str:
                return plain(n).zfill(receipt_width)

        return cls(resp, receipt, resp_form, form)

    @staticmethod
    def new_salt(rng: random.Random) -> int:
        """80 random bits for the UUID-like form."""
        return rng.getrandbits(80)
