"""simulator/_store.py: the ring buffer, the id index, long-message groups, the JSON view."""

from __future__ import annotations

from dlr import ReceiptStatus
from simulator._store import MessageRecord, MessageStore, concat_of, describe
from smpp import Concatenation, DeliverSm, SubmitSm, Tlvs, encode_message, split_message


def record(n: int, destination: str = "447700900001", pdu: SubmitSm | None = None, at: float = 0.0,
           due: float = 10.0, status: ReceiptStatus = ReceiptStatus.DELIVERED) -> MessageRecord:
    pdu = pdu or SubmitSm(source_addr="84001", destination_addr=destination, short_message=b"msg %d" % n)
    return MessageRecord(str(n), n, "esme", "mt", pdu, pdu.source_addr, destination, at, due, at + due, status)


def test_the_ring_keeps_the_newest() -> None:
    store = MessageStore(3)
    for n in range(5):
        store.add(record(n, at=float(n)))
    assert len(store) == 3 and store.get("1") is None and store.get("4") is not None
    assert [r.message_id for r in store.newest_first()] == ["4", "3", "2"]
    assert store.statistics().evicted == 2


def test_query_filters_and_limit() -> None:
    store = MessageStore(100)
    for n in range(6):
        store.add(record(n, destination=f"44770090000{n % 2}", at=float(n)))
    assert [r.message_id for r in store.query(destination="447700900001")] == ["1", "3", "5"]  # type: ignore[union-attr]
    assert [r.message_id for r in store.query(since=4.0)] == ["4", "5"]  # type: ignore[union-attr]
    assert [r.message_id for r in store.query(limit=2)] == ["4", "5"]  # type: ignore[union-attr]
    assert store.query(account="other") == [] and store.query(direction="mo") == []


def test_concat_from_udh_and_sar() -> None:
    parts = split_message(encode_message("x" * 200), Concatenation.UDH8, 77)
    assert concat_of(SubmitSm(esm_class=0x40, short_message=parts[1].short_message)) == (77, 2, 2)
    sar = SubmitSm(tlvs=Tlvs(sar_msg_ref_num=500, sar_total_segments=3, sar_segment_seqnum=2))
    assert concat_of(sar) == (500, 3, 2)
    assert concat_of(SubmitSm(short_message=b"plain")) is None
    assert concat_of(SubmitSm(esm_class=0x40, short_message=b"\x09\x00")) is None  # a UDH that runs past the data
    assert concat_of(SubmitSm(tlvs=Tlvs(sar_msg_ref_num=1, sar_total_segments=3, sar_segment_seqnum=4))) is None


def test_a_long_message_is_described_once_with_its_parts() -> None:
    text = "Grüße aus dem Simulator! " * 8
    parts = split_message(encode_message(text), Concatenation.UDH8, 5)
    store = MessageStore(100)
    key = ("esme", "84001", "447700900001", 5, len(parts))
    for n, part in reversed(list(enumerate(parts, 1))):  # out of order on purpose
        pdu = SubmitSm(source_addr="84001", destination_addr="447700900001", esm_class=0x40,
                       data_coding=part.data_coding, short_message=part.short_message)
        r = record(n, pdu=pdu, due=10.0 if n == 1 else 1.0)
        store.add(r)
        store.join_group(r, key, n)
    (group,) = store.query()
    view = describe(group, now=5.0)
    assert view["text"] == text and view["encoding"] == "gsm7" and view["complete"]
    assert [p["seqnum"] for p in view["parts"]] == list(range(1, len(parts) + 1))
    assert view["status"] == "enroute"  # part 1 is still on its way at t=5
    assert describe(group, now=11.0)["status"] == "delivered"
    assert store.open_group(key, 1) is None  # a part number seen again starts a new message


def test_a_missing_part_keeps_the_message_pending() -> None:
    parts = split_message(encode_message("y" * 300), Concatenation.UDH8, 6)
    store = MessageStore(10)
    key = ("esme", "84001", "447700900001", 6, len(parts))
    first = record(1, pdu=SubmitSm(source_addr="84001", destination_addr="447700900001", esm_class=0x40,
                                   short_message=parts[0].short_message), due=0.0)
    store.add(first)
    store.join_group(first, key, 1)
    view = describe(store.query()[0], now=1.0)
    assert not view["complete"] and view["part_count"] == 1 and view["total_parts"] == 2
    assert view["status"] == "enroute" and view["text"] == "y" * 153


def test_states_over_time_and_cancel() -> None:
    r = record(1, due=10.0, status=ReceiptStatus.UNDELIVERABLE)
    assert r.state(5.0) is ReceiptStatus.ENROUTE and r.state(10.0) is ReceiptStatus.UNDELIVERABLE
    r.cancelled = True
    assert r.state(5.0) is ReceiptStatus.DELETED


def test_mo_text_and_payload_text() -> None:
    mo = DeliverSm(source_addr="447700900001", destination_addr="84001", data_coding=8,
                   short_message="Привет".encode("utf-16-be"))
    r = MessageRecord("9", 9, "esme", "mo", mo, mo.source_addr, "84001", 0.0, 0.0, 0.0, ReceiptStatus.DELIVERED)
    assert r.text() == "Привет" and describe(r, 0.0)["encoding"] == "ucs2"
    payload = record(2, pdu=SubmitSm(tlvs=Tlvs(message_payload=b"from the payload")))
    assert payload.text() == "from the payload"
