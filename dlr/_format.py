"""Rule: what we write is SMPP 3.4 Appendix B to the character; leniency belongs to the parser only.

The simulator (and any SMSC-side code) writes receipts with these two functions:
`format_receipt_text` gives "id:... sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:EEE text:..." with the widths of Appendix B, and `build_receipt_pdu` wraps it in the
deliver_sm that answers an MT: esm_class 0x04 (§5.2.12), the MT's addresses swapped, and optionally the
receipted_message_id, message_state and network_error_code TLVs (§5.3.2.12, §5.3.2.35, §5.3.2.31).
"""

from __future__ import annotations

from datetime import datetime

from smpp import NO_TLVS, DataSm, DeliverSm, EsmClass, SubmitSm, Tlvs, TlvValue

from ._receipt import NetworkError, ReceiptKind
from ._status import ReceiptStatus

__all__ = ["TEXT_EXCERPT_CHARS", "build_receipt_pdu", "format_receipt_text", "mt_text_excerpt"]

# Appendix B: "text: the first 20 characters of the short message".
TEXT_EXCERPT_CHARS = 20
_UDHI = int(EsmClass.UDHI)


def _date(value: datetime, seconds: bool) -> str:
    return value.strftime("%y%m%d%H%M%S" if seconds else "%y%m%d%H%M")


def format_receipt_text(
    *,
    message_id: str,
    status: ReceiptStatus,
    submit_date: datetime,
    done_date: datetime,
    sub: int = 1,
    dlvrd: int | None = None,
    err: int = 0,
    text: str = "",
    stat: str | None = None,
    seconds: bool = False,
) -> str:
    """The receipt text of SMPP 3.4 Appendix B.

    Args:
        message_id: the id as the text should show it (given as is: pad or convert it before).
        status: the status; its 7-character stat word is written unless `stat` overrides it.
        submit_date: when the MT was submitted (naive, the zone the SMSC reports in).
        done_date: when the message reached this status.
        sub: messages submitted, written as 3 digits.
        dlvrd: messages delivered, 3 digits; by default `sub` when DELIVERED, else 0.
        err: the error code, 3 digits.
        text: the message text; its first 20 characters are written.
        stat: a vendor's stat word in place of the standard one (a simulator's quirk).
        seconds: write YYMMDDhhmmss instead of YYMMDDhhmm (a common vendor variant).

    Raises:
        ValueError: sub, dlvrd or err is negative.
    """
    if dlvrd is None:
        dlvrd = sub if status is ReceiptStatus.DELIVERED else 0
    if sub < 0 or dlvrd < 0 or err < 0:
        raise ValueError("sub, dlvrd and err are counts and codes: they cannot be negative")
    return (
        f"id:{message_id} sub:{sub:03d} dlvrd:{dlvrd:03d} "
        f"submit date:{_date(submit_date, seconds)} done date:{_date(done_date, seconds)} "
        f"stat:{stat if stat is not None else status.stat} err:{err:03d} text:{text[:TEXT_EXCERPT_CHARS]}"
    )


def mt_text_excerpt(mt: SubmitSm | DataSm) -> str:
    """The first 20 characters of an MT's text for the receipt: UDH skipped, UCS-2 (data_coding 8) decoded,
    any other coding read byte for byte, and what is not printable ASCII replaced by '?'.
    """
    payload = mt.short_message if isinstance(mt, SubmitSm) else b""
    if not payload:
        payload = mt.tlvs.get_bytes("message_payload") or b""
    if mt.esm_class & _UDHI and payload:
        payload = payload[1 + payload[0]:]
    if mt.data_coding == 0x08:
        text = payload[: 2 * TEXT_EXCERPT_CHARS].decode("utf-16-be", "replace")
    else:
        text = payload[:TEXT_EXCERPT_CHARS].decode("latin-1")
    return "".join(c if " " <= c <= "~" else "?" for c in text[:TEXT_EXCERPT_CHARS])


def build_receipt_pdu(
    mt: SubmitSm | DataSm,
    *,
    smsc_message_id: str,
    status: ReceiptStatus,
    submit_date: datetime,
    done_date: datetime,
    err: int = 0,
    network_error: NetworkError | None = None,
    text: str | None = None,
    text_id: str | None = None,
    sub: int = 1,
    dlvrd: int | None = None,
    stat: str | None = None,
    seconds: bool = False,
    with_tlvs: bool = True,
    kind: ReceiptKind = ReceiptKind.SMSC_DELIVERY_RECEIPT,
    sequence_number: int = 0,
) -> DeliverSm:
    """The deliver_sm that reports on `mt`: from the MT's destination to its source, esm_class `kind` (0x04).

    Args:
        mt: the submit_sm (or data_sm) the receipt reports on; its addresses are swapped and its
            service_type kept. A data_sm's addresses must fit deliver_sm's 20 characters.
        smsc_message_id: the id returned in submit_sm_resp; receipted_message_id carries it.
        status: the status to report.
        submit_date: when the MT was submitted.
        done_date: when it reached `status`.
        err: the `err:` code of the text.
        network_error: the network_error_code TLV to add (with `with_tlvs`).
        text: the text excerpt; by default the MT's own (`mt_text_excerpt`).
        text_id: the id the text shows, when the SMSC writes it differently from submit_sm_resp
            (hex against decimal, zero padding); by default `smsc_message_id`.
        sub: as in `format_receipt_text`.
        dlvrd: as in `format_receipt_text`.
        stat: as in `format_receipt_text`.
        seconds: as in `format_receipt_text`.
        with_tlvs: add receipted_message_id and message_state (and network_error_code when given).
        kind: the esm_class message type; INTERMEDIATE_NOTIFICATION for an intermediate receipt.
        sequence_number: the PDU's sequence number (the session usually assigns it).

    Raises:
        ValueError: as `format_receipt_text`.
    """
    body = format_receipt_text(
        message_id=smsc_message_id if text_id is None else text_id,
        status=status,
        submit_date=submit_date,
        done_date=done_date,
        sub=sub,
        dlvrd=dlvrd,
        err=err,
        text=mt_text_excerpt(mt) if text is None else text,
        stat=stat,
        seconds=seconds,
    )
    tlvs = NO_TLVS
    if with_tlvs:
        values: dict[str, TlvValue] = {
            "receipted_message_id": smsc_message_id,
            "message_state": int(status.message_state),
        }
        if network_error is not None:
            values["network_error_code"] = network_error.to_tlv()
        tlvs = Tlvs(values)
    return DeliverSm(
        sequence_number=sequence_number,
        service_type=mt.service_type,
        source_addr_ton=mt.dest_addr_ton,
        source_addr_npi=mt.dest_addr_npi,
        source_addr=mt.destination_addr,
        dest_addr_ton=mt.source_addr_ton,
        dest_addr_npi=mt.source_addr_npi,
        destination_addr=mt.source_addr,
        esm_class=kind.value,
        short_message=body.encode("ascii", "replace"),
        tlvs=tlvs,
    )
