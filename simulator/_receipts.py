"""Rule: every receipt is the deliver_sm `dlr.build_receipt_pdu` would build, made without its per-receipt cost.

The text comes from `dlr.format_receipt_text`, called once per (submit minute, done minute, status, err) with
marker characters where the id and the excerpt go; each receipt then joins the cached pieces with its id and
excerpt. At tens of thousands of receipts a second this saves the two strftime calls and the excerpt decoding
that dominate a receipt's cost. A unit test holds the result equal to `build_receipt_pdu` for the same inputs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dlr import TEXT_EXCERPT_CHARS, NetworkError, ReceiptStatus, format_receipt_text, mt_text_excerpt
from smpp import DataSm, DeliverSm, EsmClass, SubmitSm, Tlvs

__all__ = ["ReceiptWriter"]

_ID_MARK = "\x01"
_TEXT_MARK = "\x02"
_UDHI = int(EsmClass.UDHI)
_UCS2 = 0x08
_TAG_RECEIPTED_ID = 0x001E
_TAG_MESSAGE_STATE = 0x0427
_TAG_NETWORK_ERROR = 0x0423
# Appendix B's excerpt as dlr.mt_text_excerpt writes it for an 8-bit coding: printable ASCII kept, the rest '?'.
_PRINTABLE = bytes(b if 0x20 <= b <= 0x7E else 0x3F for b in range(256))
_MAX_TEMPLATES = 4096


class ReceiptWriter:
    """Builds one account's receipts (its options fixed at creation)."""

    __slots__ = ("_templates", "seconds", "text", "tlvs", "utc")

    def __init__(self, *, seconds: bool = False, utc: bool = False, tlvs: bool = True, text: bool = True) -> None:
        """Create a writer.

        Args:
            seconds: dates as YYMMDDhhmmss instead of YYMMDDhhmm.
            utc: dates in UTC instead of local time.
            tlvs: add receipted_message_id, message_state and network_error_code (§5.3.2.12, .35, .31).
            text: write the first 20 characters of the MT after `text:` (else nothing).
        """
        self.seconds = seconds
        self.utc = utc
        self.tlvs = tlvs
        self.text = text
        self._templates: dict[tuple[int, int, ReceiptStatus, int], tuple[str, str]] = {}

    def _date(self, slot: int) -> datetime:
        t = slot if self.seconds else slot * 60
        if self.utc:
            return datetime.fromtimestamp(t, UTC).replace(tzinfo=None)
        return datetime.fromtimestamp(t)

    def _template(self, key: tuple[int, int, ReceiptStatus, int]) -> tuple[str, str]:
        body = format_receipt_text(message_id=_ID_MARK, status=key[2], submit_date=self._date(key[0]),
                                   done_date=self._date(key[1]), err=key[3], text=_TEXT_MARK, seconds=self.seconds)
        head, rest = body.split(_ID_MARK)
        middle, tail = rest.split(_TEXT_MARK)
        assert not tail, "the excerpt ends the receipt text (Appendix B)"
        if len(self._templates) >= _MAX_TEMPLATES:
            self._templates.clear()
        pieces = (head, middle)
        self._templates[key] = pieces
        return pieces

    def excerpt(self, mt: SubmitSm | DataSm) -> str:
        """The first 20 characters of the MT's text, as `dlr.mt_text_excerpt` writes them."""
        if not self.text:
            return ""
        if type(mt) is SubmitSm:
            sm = mt.short_message
            if sm and not mt.esm_class & _UDHI and mt.data_coding != _UCS2:
                return sm[:TEXT_EXCERPT_CHARS].translate(_PRINTABLE).decode("ascii")
        return mt_text_excerpt(mt)

    def build(
        self,
        mt: SubmitSm | DataSm,
        *,
        smsc_message_id: str,
        text_id: str,
        status: ReceiptStatus,
        submit_at: float,
        done_at: float,
        err: int = 0,
        network_error: NetworkError | None = None,
        kind: int = 0x04,
        sequence_number: int = 0,
    ) -> DeliverSm:
        """The receipt for `mt`.

        Args:
            mt: the MT (for a submit_multi, a SubmitSm standing for one of its destinations).
            smsc_message_id: the id of submit_sm_resp (the receipted_message_id TLV).
            text_id: the id as the receipt text writes it.
            status: the status reported.
            submit_at: when the MT was submitted (wall clock, seconds since the epoch).
            done_at: when it reached `status` (wall clock).
            err: the `err:` code.
            network_error: the network_error_code TLV, when the receipt reports one.
            kind: the esm_class (0x04 receipt, 0x20 intermediate notification).
            sequence_number: the PDU's sequence number.
        """
        if self.seconds:
            key = (int(submit_at), int(done_at), status, err)
        else:
            key = (int(submit_at // 60), int(done_at // 60), status, err)
        pieces = self._templates.get(key)
        if pieces is None:
            pieces = self._template(key)
        body = f"{pieces[0]}{text_id}{pieces[1]}{self.excerpt(mt)}"
        if self.tlvs:
            pairs: tuple[tuple[int, int | str | bytes], ...] = (
                (_TAG_RECEIPTED_ID, smsc_message_id), (_TAG_MESSAGE_STATE, int(status.message_state)))
            if network_error is not None:
                pairs += ((_TAG_NETWORK_ERROR, network_error.to_tlv()),)
            tlvs = Tlvs.from_pairs(pairs)
        else:
            tlvs = Tlvs.from_pairs(())
        return DeliverSm(
            sequence_number=sequence_number,
            service_type=mt.service_type,
            source_addr_ton=mt.dest_addr_ton,
            source_addr_npi=mt.dest_addr_npi,
            source_addr=mt.destination_addr,
            dest_addr_ton=mt.source_addr_ton,
            dest_addr_npi=mt.source_addr_npi,
            destination_addr=mt.source_addr,
            esm_class=kind,
            short_message=body.encode("ascii", "replace"),
            tlvs=tlvs,
        )
