"""simulator/_receipts.py: every receipt equals dlr.build_receipt_pdu's for the same inputs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from dlr import NetworkError, ReceiptKind, ReceiptStatus, build_receipt_pdu
from simulator._receipts import ReceiptWriter
from smpp import DataSm, SubmitSm, Tlvs, decode_pdu, encode_pdu

# SMPP 3.4 Appendix B, with the widths it gives.
APPENDIX_B = re.compile(rb"id:(\S{1,65}) sub:\d{3} dlvrd:\d{3} submit date:\d{10} done date:\d{10} "
                        rb"stat:[A-Z]{7} err:\d{3} text:.{0,20}", re.S)


def when(t: float, utc: bool) -> datetime:
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None) if utc else datetime.fromtimestamp(t)


def test_a_delivered_receipt_reads_as_appendix_b() -> None:
    mt = SubmitSm(source_addr="84001", destination_addr="447911123456", short_message=b"Hello\x01world, how are you?")
    pdu = ReceiptWriter().build(mt, smsc_message_id="1234", text_id="4d2", status=ReceiptStatus.DELIVERED,
                                submit_at=1_700_000_000, done_at=1_700_000_090, sequence_number=9)
    assert APPENDIX_B.fullmatch(pdu.short_message)
    assert b"id:4d2 sub:001 dlvrd:001 " in pdu.short_message and pdu.short_message.endswith(b"text:Hello?world, how are")
    assert (pdu.source_addr, pdu.destination_addr, pdu.esm_class, pdu.sequence_number) == (
        "447911123456", "84001", 0x04, 9)
    assert pdu.tlvs == Tlvs(receipted_message_id="1234", message_state=2)
    assert decode_pdu(encode_pdu(pdu)) == pdu


STATUSES = st.sampled_from(list(ReceiptStatus))
# Whole microseconds: datetime rounds a float timestamp to the microsecond, the writer's slots truncate it, and the
# two only differ within a microsecond of a second's end, which no clock here resolves.
TIMES = st.integers(1_000_000_000_000_000, 2_000_000_000_000_000).map(lambda us: us / 1e6)
DURATIONS = st.integers(0, 86_400 * 3 * 1_000_000)


@settings(max_examples=300)
@given(
    status=STATUSES, submit_at=TIMES, extra_us=DURATIONS,
    err=st.integers(0, 999), data_coding=st.sampled_from([0, 1, 3, 8, 0xF0]),
    sm=st.binary(max_size=80), udhi=st.booleans(), seconds=st.booleans(), utc=st.booleans(),
    tlvs=st.booleans(), text=st.booleans(), network=st.none() | st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF)),
    data_sm=st.booleans(), text_id=st.text(alphabet="0123456789abcdefABCDEF-", min_size=1, max_size=36),
)
def test_equal_to_dlr_build_receipt_pdu(status: ReceiptStatus, submit_at: float, extra_us: int, err: int,
                                        data_coding: int, sm: bytes, udhi: bool, seconds: bool, utc: bool,
                                        tlvs: bool, text: bool, network: tuple[int, int] | None, data_sm: bool,
                                        text_id: str) -> None:
    if udhi and sm:
        sm = bytes((min(sm[0], len(sm) - 1),)) + sm[1:]  # a UDH length that fits
    mt: SubmitSm | DataSm
    if data_sm:
        mt = DataSm(source_addr="84001", destination_addr="33612345678", esm_class=0x40 if udhi else 0,
                    data_coding=data_coding, tlvs=Tlvs(message_payload=sm))
    else:
        mt = SubmitSm(service_type="T1", source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr="447911123456", esm_class=0x40 if udhi else 0, data_coding=data_coding,
                      short_message=sm)
    ne = NetworkError(*network) if network is not None else None
    done_at = (round(submit_at * 1e6) + extra_us) / 1e6
    kind = ReceiptKind.INTERMEDIATE_NOTIFICATION if status is ReceiptStatus.ENROUTE else \
        ReceiptKind.SMSC_DELIVERY_RECEIPT
    writer = ReceiptWriter(seconds=seconds, utc=utc, tlvs=tlvs, text=text)
    for _ in range(2):  # the second build comes from the template cache
        ours = writer.build(mt, smsc_message_id="m-1", text_id=text_id, status=status, submit_at=submit_at,
                            done_at=done_at, err=err, network_error=ne, kind=kind.value, sequence_number=3)
        theirs = build_receipt_pdu(mt, smsc_message_id="m-1", text_id=text_id, status=status,
                                   submit_date=when(submit_at, utc), done_date=when(done_at, utc), err=err,
                                   network_error=ne, text=None if text else "", seconds=seconds, with_tlvs=tlvs,
                                   kind=kind, sequence_number=3)
        assert ours == theirs
