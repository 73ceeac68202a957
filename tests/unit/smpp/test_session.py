"""The session state machine alone, fed bytes by hand; time is a number, never a clock."""

from __future__ import annotations

import struct

import pytest

from smpp import (
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    LocalProtocolError,
    Status,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode_pdu,
    encode_pdu,
)
from smpp._session import (
    MAX_SEQUENCE_NUMBER,
    ConnectionClosed,
    PduRejected,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    ResponseUndecodable,
    Role,
    Session,
    SessionConfig,
    State,
    UnexpectedResponse,
    WindowFull,
)


def sent_pdus(sess: Session) -> list[object]:
    data = sess.data_to_send()
    out = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append(decode_pdu(data, pos, pos + length))
        pos += length
    return out


def bound_esme(window: int = 10, **kw: object) -> Session:
    sess = Session(SessionConfig(Role.ESME, window=window, **kw), now=0.0)  # type: ignore[arg-type]
    bind = sess.send(BindTransceiver(system_id="esme", password="pw"))
    sess.data_to_send()
    events = sess.receive_data(encode_pdu(BindTransceiverResp(sequence_number=bind.sequence_number, system_id="SMSC")))
    assert isinstance(events[0], ResponseReceived)
    assert sess.state is State.BOUND_TRX
    return sess


def test_bind_success_moves_esme_to_bound_state() -> None:
    sess = Session(SessionConfig(Role.ESME), now=0.0)
    bind = sess.send(BindTransmitter(system_id="esme", password="pw"))
    assert bind.sequence_number == 1
    assert sent_pdus(sess) == [bind]
    resp = BindTransmitterResp(sequence_number=1, system_id="SMSC")
    (ev,) = sess.receive_data(encode_pdu(resp))
    assert ev == ResponseReceived(bind, resp)
    assert sess.state is State.BOUND_TX


def test_bind_refused_leaves_session_open() -> None:
    sess = Session(SessionConfig(Role.ESME), now=0.0)
    sess.send(BindTransceiver(system_id="esme", password="bad"))
    (ev,) = sess.receive_data(encode_pdu(BindTransceiverResp(command_status=Status.ESME_RINVPASWD, sequence_number=1)))
    assert isinstance(ev, ResponseReceived)
    assert ev.response.command_status == Status.ESME_RINVPASWD
    assert sess.state is State.OPEN
    sess.send(BindTransceiver(system_id="esme", password="good"))  # a second attempt is allowed


def test_second_bind_while_first_pending_is_refused_locally() -> None:
    sess = Session(SessionConfig(Role.ESME), now=0.0)
    sess.send(BindTransceiver())
    with pytest.raises(LocalProtocolError, match="already awaiting"):
        sess.send(BindTransceiver())


def test_submit_before_bind_is_a_local_error() -> None:
    sess = Session(SessionConfig(Role.ESME), now=0.0)
    with pytest.raises(LocalProtocolError, match="may not send submit_sm in state open"):
        sess.send(SubmitSm(destination_addr="1"))


def test_receiver_bind_cannot_submit() -> None:
    sess = Session(SessionConfig(Role.ESME), now=0.0)
    sess.send(BindTransceiver())  # wrong kind on purpose: the resp decides the state
    sess.receive_data(encode_pdu(BindTransceiverResp(sequence_number=1)))
    sess.state = State.BOUND_RX
    with pytest.raises(LocalProtocolError):
        sess.send(SubmitSm())


def test_sequence_numbers_increase_and_wrap_to_one() -> None:
    sess = bound_esme(window=100)
    a = sess.send(SubmitSm())
    b = sess.send(SubmitSm())
    assert (a.sequence_number, b.sequence_number) == (2, 3)
    sess._next_seq = MAX_SEQUENCE_NUMBER
    c = sess.send(SubmitSm())
    d = sess.send(SubmitSm())
    assert c.sequence_number == MAX_SEQUENCE_NUMBER
    assert d.sequence_number == 1  # 0 is never used (§5.1.4)


def test_wrap_skips_numbers_still_outstanding() -> None:
    sess = bound_esme(window=100)
    first = sess.send(SubmitSm())  # seq 2 outstanding
    sess._next_seq = first.sequence_number
    nxt = sess.send(SubmitSm())
    assert nxt.sequence_number == first.sequence_number + 1


def test_window_full_raises_until_a_response_frees_a_slot() -> None:
    sess = bound_esme(window=2)
    a = sess.send(SubmitSm())
    sess.send(SubmitSm())
    assert sess.window_free == 0
    with pytest.raises(WindowFull):
        sess.send(SubmitSm())
    sess.send(EnquireLink())  # link control does not count against the window
    sess.data_to_send()
    (ev,) = sess.receive_data(encode_pdu(SubmitSmResp(sequence_number=a.sequence_number, message_id="77")))
    assert isinstance(ev, ResponseReceived)
    assert ev.response.message_id == "77"  # type: ignore[attr-defined]
    assert sess.window_free == 1
    sess.send(SubmitSm())


def test_response_timeout_fires_at_deadline_and_late_response_is_unexpected() -> None:
    sess = bound_esme(response_timeout_s=5.0, enquire_link_interval_s=None)
    req = sess.send(SubmitSm(), now=10.0)
    assert sess.next_deadline() == 15.0
    assert sess.poll(14.9) == []
    assert sess.poll(15.0) == [ResponseTimedOut(req)]
    assert sess.outstanding == 0
    late = SubmitSmResp(sequence_number=req.sequence_number, message_id="x")
    assert sess.receive_data(encode_pdu(late)) == [UnexpectedResponse(late)]


def test_generic_nack_answers_the_request_with_its_sequence_number() -> None:
    sess = bound_esme()
    req = sess.send(SubmitSm())
    nack = GenericNack(command_status=Status.ESME_RINVCMDLEN, sequence_number=req.sequence_number)
    assert sess.receive_data(encode_pdu(nack)) == [ResponseReceived(req, nack)]
    assert sess.outstanding == 0


def test_response_of_the_wrong_kind_does_not_complete_the_request() -> None:
    sess = bound_esme()
    req = sess.send(SubmitSm())
    wrong = DeliverSmResp(sequence_number=req.sequence_number)
    assert sess.receive_data(encode_pdu(wrong)) == [UnexpectedResponse(wrong)]
    assert sess.outstanding == 1


def test_enquire_link_is_answered_automatically() -> None:
    sess = bound_esme()
    assert sess.receive_data(encode_pdu(EnquireLink(sequence_number=9))) == []
    assert sent_pdus(sess) == [EnquireLinkResp(sequence_number=9)]


def test_enquire_link_sent_when_idle_and_its_timeout_reported() -> None:
    sess = bound_esme(enquire_link_interval_s=30.0, response_timeout_s=10.0)
    assert sess.next_deadline() == 30.0
    assert sess.poll(29.0) == []
    assert sess.poll(30.0) == []
    (link,) = sent_pdus(sess)
    assert isinstance(link, EnquireLink)
    assert sess.poll(35.0) == []  # only one in flight
    assert sess.poll(40.0) == [ResponseTimedOut(link)]


def test_traffic_postpones_enquire_link() -> None:
    sess = bound_esme(enquire_link_interval_s=30.0)
    sess.receive_data(encode_pdu(DeliverSm(sequence_number=5)), now=20.0)
    sess.data_to_send()
    assert sess.next_deadline() == 50.0
    sess.poll(49.0)
    assert sess.data_to_send() == b""


def test_request_in_wrong_state_answered_with_rinvbndsts() -> None:
    sess = Session(SessionConfig(Role.ESME), now=0.0)
    (ev,) = sess.receive_data(encode_pdu(DeliverSm(sequence_number=3)))
    assert isinstance(ev, PduRejected)
    assert ev.error.status == Status.ESME_RINVBNDSTS
    assert sent_pdus(sess) == [DeliverSmResp(command_status=Status.ESME_RINVBNDSTS, sequence_number=3)]
    assert sess.state is State.OPEN


def test_smsc_answers_second_bind_with_ralybnd() -> None:
    smsc = Session(SessionConfig(Role.SMSC), now=0.0)
    (ev,) = smsc.receive_data(encode_pdu(BindTransceiver(sequence_number=1, system_id="a")))
    assert isinstance(ev, RequestReceived)
    smsc.send(ev.pdu.make_response(system_id="SMSC"))
    assert smsc.state is State.BOUND_TRX
    smsc.data_to_send()
    (ev2,) = smsc.receive_data(encode_pdu(BindTransceiver(sequence_number=2, system_id="a")))
    assert isinstance(ev2, PduRejected)
    assert sent_pdus(smsc) == [BindTransceiverResp(command_status=Status.ESME_RALYBND, sequence_number=2)]


def test_smsc_refusing_a_bind_stays_open() -> None:
    smsc = Session(SessionConfig(Role.SMSC), now=0.0)
    (ev,) = smsc.receive_data(encode_pdu(BindTransmitter(sequence_number=1, system_id="a")))
    assert isinstance(ev, RequestReceived)
    smsc.send(ev.pdu.make_response(command_status=Status.ESME_RINVPASWD))
    assert smsc.state is State.OPEN


def test_unknown_command_gets_generic_nack_and_session_lives() -> None:
    sess = bound_esme()
    bad = struct.pack(">IIII", 16, 0x0000_0099, 0, 42)
    good = encode_pdu(DeliverSm(sequence_number=43))
    events = sess.receive_data(bad + good)
    assert isinstance(events[0], PduRejected)
    assert events[0].error.status == Status.ESME_RINVCMDID
    assert isinstance(events[1], RequestReceived)
    assert sent_pdus(sess) == [GenericNack(command_status=Status.ESME_RINVCMDID, sequence_number=42)]
    assert sess.state is State.BOUND_TRX


def test_bad_field_gets_its_status_in_the_response() -> None:
    smsc = Session(SessionConfig(Role.SMSC), now=0.0)
    smsc.receive_data(encode_pdu(BindTransmitter(sequence_number=1)))
    smsc.send(BindTransmitterResp(sequence_number=1))
    smsc.data_to_send()
    pdu = bytearray(encode_pdu(SubmitSm(sequence_number=7, source_addr="1" * 20)))
    # Lengthen source_addr to 21 characters (max is 20 + NUL): ESME_RINVSRCADR (§4.4.1).
    at = pdu.index(b"1" * 20)
    pdu[at + 20:at + 20] = b"1"
    pdu[0:4] = struct.pack(">I", len(pdu))
    (ev,) = smsc.receive_data(bytes(pdu))
    assert isinstance(ev, PduRejected)
    assert ev.error.status == Status.ESME_RINVSRCADR
    assert sent_pdus(smsc) == [SubmitSmResp(command_status=Status.ESME_RINVSRCADR, sequence_number=7)]


def test_partial_reads_and_many_pdus_per_read() -> None:
    sess = bound_esme()
    wire = b"".join(encode_pdu(DeliverSm(sequence_number=i, short_message=b"x" * i)) for i in range(1, 40))
    events = []
    for i in range(0, len(wire), 7):
        events += sess.receive_data(wire[i:i + 7])
    assert [e.pdu.sequence_number for e in events] == list(range(1, 40))  # type: ignore[union-attr]
    assert len(sess.receive_data(wire)) == 39


def test_command_length_below_header_closes_with_generic_nack() -> None:
    sess = bound_esme()
    req = sess.send(SubmitSm())
    sess.data_to_send()
    good = encode_pdu(DeliverSm(sequence_number=5))
    events = sess.receive_data(good + struct.pack(">IIII", 8, 4, 0, 6))
    assert isinstance(events[0], RequestReceived)  # what came before the bad header is not lost
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.error is not None and closed.error.status == Status.ESME_RINVCMDLEN
    assert closed.unanswered == (req,)
    assert sess.state is State.CLOSED
    assert sent_pdus(sess) == [GenericNack(command_status=Status.ESME_RINVCMDLEN, sequence_number=6)]
    with pytest.raises(LocalProtocolError):
        sess.receive_data(b"more")


def test_oversized_pdu_refused_from_its_header_alone() -> None:
    sess = Session(SessionConfig(Role.SMSC, max_command_length=1024), now=0.0)
    # Only the first four octets have arrived: the session does not wait for a megabyte.
    (ev,) = sess.receive_data(struct.pack(">I", 1 << 20))
    assert isinstance(ev, ConnectionClosed)
    assert sess.state is State.CLOSED


def test_peer_unbind_is_answered_and_closes() -> None:
    sess = bound_esme()
    req = sess.send(SubmitSm())
    sess.data_to_send()
    (ev,) = sess.receive_data(encode_pdu(Unbind(sequence_number=50)))
    assert ev == ConnectionClosed(by_peer=True, unanswered=(req,))
    assert sent_pdus(sess) == [UnbindResp(sequence_number=50)]


def test_our_unbind_keeps_accepting_deliveries_until_unbind_resp() -> None:
    sess = bound_esme()
    unbind = sess.send(Unbind())
    assert sess.state is State.UNBINDING
    with pytest.raises(LocalProtocolError):
        sess.send(SubmitSm())
    (ev,) = sess.receive_data(encode_pdu(DeliverSm(sequence_number=77)))
    assert isinstance(ev, RequestReceived)
    sess.send(DeliverSmResp(sequence_number=77))
    events = sess.receive_data(encode_pdu(UnbindResp(sequence_number=unbind.sequence_number)))
    assert isinstance(events[0], ResponseReceived)
    assert events[1] == ConnectionClosed(by_peer=False)
    assert sess.state is State.CLOSED


def test_unbind_timeout_closes() -> None:
    sess = bound_esme(response_timeout_s=2.0, enquire_link_interval_s=None)
    unbind = sess.send(Unbind(), now=1.0)
    events = sess.poll(3.0)
    assert events[0] == ResponseTimedOut(unbind)
    assert isinstance(events[1], ConnectionClosed)


def test_response_to_unknown_request_is_a_local_error() -> None:
    smsc = Session(SessionConfig(Role.SMSC), now=0.0)
    with pytest.raises(LocalProtocolError, match="answers no request"):
        smsc.send(SubmitSmResp(sequence_number=3))


def test_undecodable_response_reports_unknown_outcome() -> None:
    sess = bound_esme()
    req = sess.send(SubmitSm())
    body = b"x" * 70  # message_id without a NUL within 65 octets
    resp = struct.pack(">IIII", 16 + len(body), 0x8000_0004, 0, req.sequence_number) + body
    (ev,) = sess.receive_data(resp)
    assert isinstance(ev, ResponseUndecodable)
    assert ev.request == req
    assert ev.error.status == Status.ESME_RINVMSGID
    assert sess.outstanding == 0


def test_connection_lost_reports_unanswered_requests() -> None:
    sess = bound_esme()
    a = sess.send(SubmitSm())
    b = sess.send(SubmitSm())
    assert sess.connection_lost() == [ConnectionClosed(by_peer=True, unanswered=(a, b))]
    assert sess.connection_lost() == []


def test_statistics_count_traffic() -> None:
    sess = bound_esme()
    sess.send(SubmitSm())
    stats = sess.statistics()
    assert stats.state is State.BOUND_TRX
    assert stats.outstanding == 1
    assert stats.pdus_sent == 2 and stats.pdus_received == 1
