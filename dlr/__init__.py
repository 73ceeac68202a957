"""Delivery receipts: parse and format receipt texts and TLVs, the status model, and SMSC id correlation.

`parse_receipt` reads a deliver_sm or data_sm (None for an MO message), `format_receipt_text` and
`build_receipt_pdu` write one (for the simulator), `ReceiptStatus` and `fold_part_statuses` are the status
model, `correlation_keys` / `receipt_keys` turn SMSC ids into lookup keys under an `IdPolicy`, and
`Correlator` keeps them in memory, parking receipts that arrive before their submit_sm_resp.
"""

from __future__ import annotations

from ._correlator import Correlator, CorrelatorStatistics, Match
from ._format import TEXT_EXCERPT_CHARS, build_receipt_pdu, format_receipt_text, mt_text_excerpt
from ._ids import IdFormat, IdPolicy, correlation_keys, normalize_smsc_id, receipt_keys, smsc_id_keys
from ._receipt import (
    NetworkError,
    Receipt,
    ReceiptKind,
    is_receipt,
    parse_receipt,
    parse_receipt_text,
    receipt_kind,
)
from ._status import (
    FAILURE_PRECEDENCE,
    ReceiptStatus,
    fold_part_statuses,
    status_from_message_state,
    status_from_stat,
)

__all__ = [
    "FAILURE_PRECEDENCE",
    "TEXT_EXCERPT_CHARS",
    "Correlator",
    "CorrelatorStatistics",
    "IdFormat",
    "IdPolicy",
    "Match",
    "NetworkError",
    "Receipt",
    "ReceiptKind",
    "ReceiptStatus",
    "build_receipt_pdu",
    "correlation_keys",
    "fold_part_statuses",
    "format_receipt_text",
    "is_receipt",
    "mt_text_excerpt",
    "normalize_smsc_id",
    "parse_receipt",
    "parse_receipt_text",
    "receipt_keys",
    "receipt_kind",
    "smsc_id_keys",
    "status_from_message_state",
    "status_from_stat",
]
