"""simulator/_link.py: enquire_link silence takes exactly the enquire_link PDUs out of the output."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator._link import strip_enquire_links
from smpp import DeliverSm, EnquireLink, EnquireLinkResp, SubmitSmResp, decode_pdu, encode_pdu

KINDS = [EnquireLink(sequence_number=1), EnquireLinkResp(sequence_number=2),
         SubmitSmResp(sequence_number=3, message_id="abc"),
         DeliverSm(sequence_number=4, source_addr="1", destination_addr="2", short_message=b"\x00\x00\x00\x15")]


@given(st.lists(st.sampled_from(KINDS), max_size=20))
def test_only_enquire_links_are_removed(pdus: list[object]) -> None:
    data = b"".join(encode_pdu(p) for p in pdus)  # type: ignore[arg-type]
    kept = strip_enquire_links(data)
    expected = [p for p in pdus if not isinstance(p, EnquireLink | EnquireLinkResp)]
    decoded = []
    pos = 0
    while pos < len(kept):
        length = int.from_bytes(kept[pos:pos + 4], "big")
        decoded.append(decode_pdu(kept, pos, pos + length))
        pos += length
    assert decoded == expected
