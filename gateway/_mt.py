"""MT messages the gateway writes itself (MO replies, handshakes, charged MTs, PINs, reminders, receipts).

Rule 1: an internal MT is an ordinary `Message`, accepted through `GatewayCore.accept` together with the state
change that caused it (one commit), so it is sent exactly when that change is durable.
Rule 2: a charged MT carries `charged=True` and `meta["charge"]` = {price, currency, service, attempt}; the
connector of the SMSC it goes through marks it in that operator's convention (`charge_fields`), and it is
never resent after its outcome was lost (`_core` Rule 3).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from smpp import Concatenation, TextEncodeError, count_parts, encode_message

from ._config import Config, OperatorConfig
from ._model import Message, Part, StatusChange, new_message_id

__all__ = ["ChargeError", "charge_fields", "internal_mt", "same_price"]


def same_price(a: str, b: str) -> bool:
    """True when two decimal prices are the same amount ("1.5" and "1.50" are)."""
    if a == b:
        return True
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


def internal_mt(config: Config, *, account: str, to: str, source: str, text: str, now: float,
                category: str | None = None, charge: dict[str, Any] | None = None, reference: str | None = None,
                validity_s: float | None = None, send_at: float | None = None, detail: str = "") -> Message:
    """A queued MT from the gateway itself (Rule 1); `charge` makes it charged (Rule 2).

    Raises:
        ValueError: the text cannot be encoded or needs more parts than messages.max_parts.
    """
    try:
        parts = count_parts(encode_message(text, method=Concatenation.UDH8), Concatenation.UDH8)
    except TextEncodeError as exc:
        raise ValueError(str(exc)) from None
    if parts > config.messages.max_parts:
        raise ValueError(f"the text needs {parts} parts, at most {config.messages.max_parts} allowed")
    validity = validity_s if validity_s is not None else config.messages.default_validity_s
    start = send_at if send_at is not None else now
    return Message(
        id=new_message_id(now), account=account, to=to, source=source, text=text, created_at=now, send_at=send_at,
        expires_at=start + validity, status_at=now, parts=[Part() for _ in range(parts)],
        history=[StatusChange(now, "queued", detail or "created by the gateway")], category=category,
        charged=charge is not None, resend_after_crash=charge is None, reference=reference,
        meta={"charge": charge} if charge is not None else {},
    )


class ChargeError(ValueError):
    """A charged MT cannot go through this SMSC (no operator, or no price point for its price)."""


def charge_fields(operator: OperatorConfig | None, smsc: str, msg: Message) -> tuple[str | None, str | None,
                                                                                  dict[str, object]]:
    """How `smsc`'s operator marks the charged `msg`: (service_type, source_addr, extra TLVs); None keeps the default.

    Raises:
        ChargeError: no operator owns the SMSC, or the operator has no price point for the price.
    """
    charge = msg.meta.get("charge") or {}
    price = str(charge.get("price", ""))
    if operator is None:
        raise ChargeError(f"SMSC {smsc} belongs to no billing.operators entry: it cannot carry charged MTs")
    code = next((pp.code for pp in operator.price_points if same_price(pp.price, price)), None)
    if code is None:
        raise ChargeError(f"operator {operator.name} has no price point for {price} {charge.get('currency', '')}")
    if operator.convention == "service_type":
        return code, None, {}
    if operator.convention == "shortcode":
        return None, code, {}
    assert operator.tlv_tag is not None
    return None, None, {f"0x{operator.tlv_tag:04x}": code.encode("latin-1")}
