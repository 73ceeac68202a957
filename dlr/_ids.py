"""Rule: a resp id and a receipt id that denote the same message give at least one equal correlation key.

SMSC message ids (§4.4.2 message_id, §5.3.2.12 receipted_message_id) are C-Octet strings, but operators
write the same number differently on the two paths: decimal in submit_sm_resp and hexadecimal in the
receipt text is the classic quirk (Kannel's `msg-id-type` exists for it), and the reverse is documented by
Nexmo ("submit_sm_resp: hexadecimal, deliver_sm: decimal"). Receipts also pad ids with zeros
("id:0000000012345678") or change the case of hex digits.

An `IdPolicy` says, per SMSC, how ids are written in submit_sm_resp (`resp`; the receipted_message_id TLV
repeats that id, §5.3.2.12) and in the receipt text (`receipt`). Each side is one `IdFormat`:

- `AS_IS`: the string, trimmed of surrounding blanks, is the key.
- `DECIMAL` / `HEX`: the id is read as a number and the key is its canonical decimal spelling (no leading
  zeros, hex digits in any case, an optional 0x), so "decimal/hex" makes 12345 and "3039" meet. An id
  that is not a number in that base falls back to its trimmed string (it never raises).
- `AUTO`: every reading that applies, in this order: the trimmed string, the decimal number, the hex
  number. Both sides produce the same kind of set, so the quirk is met whichever way round it is. The
  price is that an all-digit receipt id can also denote a *different* number (decimal 3039 vs hex 0x3039):
  the Correlator tries the keys in order (the exact string first) and flags a receipt whose keys reach
  different messages as ambiguous. Pin the format in the configuration once it is known.

The gateway stores `correlation_keys(resp_id, policy)` for each submit_sm_resp and looks up
`receipt_keys(receipt, policy)` in order for each receipt, all scoped by the SMSC's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._receipt import Receipt

__all__ = [
    "IdFormat",
    "IdPolicy",
    "correlation_keys",
    "normalize_smsc_id",
    "receipt_keys",
    "smsc_id_keys",
]


class IdFormat(Enum):
    """How an SMSC writes a message id on one path (values are the configuration spellings)."""

    AS_IS = "as-is"
    DECIMAL = "decimal"
    HEX = "hex"
    AUTO = "auto"

    @classmethod
    def parse(cls, text: str) -> IdFormat:
        """The format named `text` ("as-is", "decimal", "hex", "auto"; case and `_` for `-` are forgiven).

        Raises:
            ValueError: the name is none of these.
        """
        try:
            return cls(text.strip().lower().replace("_", "-"))
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise ValueError(f"unknown message id format {text!r}: expected one of {names}") from None


@dataclass(frozen=True, slots=True)
class IdPolicy:
    """How one SMSC writes message ids: in submit_sm_resp (and receipted_message_id) and in receipt text."""

    resp: IdFormat = IdFormat.AS_IS
    receipt: IdFormat = IdFormat.AS_IS

    @classmethod
    def parse(cls, text: str) -> IdPolicy:
        """A policy from its configuration spelling: one format for both sides ("hex"), or "resp/receipt".

        Example:
            IdPolicy.parse("decimal/hex") is decimal in submit_sm_resp and hex in the receipt text.

        Raises:
            ValueError: a format name is unknown, or there are more than two.
        """
        parts = text.split("/")
        if len(parts) == 1:
            fmt = IdFormat.parse(parts[0])
            return cls(fmt, fmt)
        if len(parts) == 2:
            return cls(IdFormat.parse(parts[0]), IdFormat.parse(parts[1]))
        raise ValueError(f"message id format {text!r}: expected FORMAT or RESP_FORMAT/RECEIPT_FORMAT")

    @classmethod
    def of(cls, value: IdPolicy | IdFormat | str) -> IdPolicy:
        """`value` as a policy: a policy as it is, a format for both sides, or a spelling for `parse`."""
        if isinstance(value, IdPolicy):
            return value
        if isinstance(value, IdFormat):
            return cls(value, value)
        return cls.parse(value)

    def __str__(self) -> str:
        if self.resp is self.receipt:
            return self.resp.value
        return f"{self.resp.value}/{self.receipt.value}"


_AS_IS = IdFormat.AS_IS  # module globals: reading an enum member per call costs ~0.1 us in 3.11
_DECIMAL_FMT = IdFormat.DECIMAL
_HEX_FMT = IdFormat.HEX
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")


def _decimal_key(s: str) -> str | None:
    if not (s.isascii() and s.isdecimal()):  # [0-9]+ (ASCII decimals are the ten digits), without a regex
        return None
    return s.lstrip("0") or "0"


def _hex_key(s: str) -> str | None:
    m = _HEX.fullmatch(s)
    if m is None:
        return None
    return str(int(m.group(1), 16))


def smsc_id_keys(raw: str, fmt: IdFormat | str) -> tuple[str, ...]:
    """Every correlation key of one id written in format `fmt`, most exact first; () for a blank id.

    Args:
        raw: the id as received.
        fmt: the format of this id (an IdFormat or its spelling).
    """
    s = raw.strip()
    if not s:
        return ()
    f = fmt if isinstance(fmt, IdFormat) else IdFormat.parse(fmt)
    if f is _AS_IS:
        return (s,)
    if f is _DECIMAL_FMT:
        return (_decimal_key(s) or s,)
    if f is _HEX_FMT:
        return (_hex_key(s) or s,)
    keys = [s]
    for key in (_decimal_key(s), _hex_key(s)):
        if key is not None and key not in keys:
            keys.append(key)
    return tuple(keys)


def normalize_smsc_id(raw: str, fmt: IdFormat | str = IdFormat.AS_IS) -> str:
    """The canonical key of one id: its number in decimal for DECIMAL and HEX, its trimmed text otherwise.

    For AUTO there is no single canonical form; this returns the trimmed text (the first of
    `smsc_id_keys`). Correlate with `correlation_keys` and `receipt_keys`, which handle AUTO.

    Example:
        normalize_smsc_id("00FF", "hex") == normalize_smsc_id("255", "decimal") == "255"
    """
    keys = smsc_id_keys(raw, fmt)
    return keys[0] if keys else ""


def correlation_keys(resp_id: str, policy: IdPolicy | IdFormat | str) -> tuple[str, ...]:
    """The keys to store for the message_id of a submit_sm_resp (or data_sm_resp) under `policy`."""
    return smsc_id_keys(resp_id, IdPolicy.of(policy).resp)


def receipt_keys(receipt: Receipt | str, policy: IdPolicy | IdFormat | str) -> tuple[str, ...]:
    """The keys to look up, in order, for a receipt (or for a receipt-text id given as a string).

    The receipted_message_id TLV repeats the submit_sm_resp id (§5.3.2.12), so it is read with the policy's
    `resp` format and tried first; the id in the text is read with the `receipt` format. Duplicates are dropped.
    """
    pol = IdPolicy.of(policy)
    if isinstance(receipt, str):
        return smsc_id_keys(receipt, pol.receipt)
    keys: list[str] = []
    if receipt.receipted_message_id is not None:
        keys.extend(smsc_id_keys(receipt.receipted_message_id, pol.resp))
    text_id = receipt.text_id
    # The text's id is most often the TLV's again: read alike, it would only give the same keys.
    if text_id is not None and (text_id != receipt.receipted_message_id or pol.receipt is not pol.resp):
        keys.extend(k for k in smsc_id_keys(text_id, pol.receipt) if k not in keys)
    return tuple(keys)
