"""ESME and SMSC sessions wired to each other in memory (h11's ConnectionPair idea): both sides' states agree."""

from __future__ import annotations

import pytest

from smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    EsmClass,
    Outbind,
    Pdu,
    Status,
    SubmitSm,
    Unbind,
)
from smpp._session import (
    ConnectionClosed,
    Event,
    PduRejected,
    RequestReceived,
    ResponseReceived,
    Role,
    Session,
    SessionConfig,
    State,
)


class Pair:
    def __init__(self) -> None:
        self.esme = Session(SessionConfig(Role.ESME, enquire_link_interval_s=60.0), now=0.0)
        self.smsc = Session(SessionConfig(Role.SMSC, enquire_link_interval_s=60.0), now=0.0)

    def pump(self, now: float = 0.0) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until quiet; returns (events at the ESME, events at the SMSC)."""
        at_esme: list[Event] = []
        at_smsc: list[Event] = []
        while True:
            to_smsc = self.esme.data_to_send()
            to_esme = self.smsc.data_to_send()
            if not to_smsc and not to_esme:
                return at_esme, at_smsc
            if to_smsc and not self.smsc.closed:
                at_smsc += self.smsc.receive_data(to_smsc, now=now)
            if to_esme and not self.esme.closed:
                at_esme += self.esme.receive_data(to_esme, now=now)

    def bind(self, pdu: Pdu) -> None:
        self.esme.send(pdu)
        _, at_smsc = self.pump()
        (req,) = at_smsc
        assert isinstance(req, RequestReceived)
        self.smsc.send(req.pdu.make_response(system_id="SMSC"))
        self.pump()


@pytest.mark.parametrize(("bind", "state"), [(BindTransmitter(), State.BOUND_TX), (BindReceiver(), State.BOUND_RX),
                                             (BindTransceiver(), State.BOUND_TRX)])
def test_each_bind_kind_gives_both_sides_the_same_state(bind: Pdu, state: State) -> None:
    pair = Pair()
    pair.bind(bind)
    assert pair.esme.state is state
    assert pair.smsc.state is state


def test_submit_and_receipt_on_a_transceiver_bind() -> None:
    pair = Pair()
    pair.bind(BindTransceiver(system_id="esme"))
    sub = pair.esme.send(SubmitSm(destination_addr="447911123456", short_message=b"hi", registered_delivery=1))
    _, at_smsc = pair.pump()
    (req,) = at_smsc
    assert isinstance(req, RequestReceived) and req.pdu == sub
    pair.smsc.send(sub.make_response(message_id="abc"))
    receipt = pair.smsc.send(DeliverSm(esm_class=EsmClass.DELIVERY_RECEIPT, short_message=b"id:abc stat:DELIVRD"))
    at_esme, at_smsc = pair.pump()
    assert isinstance(at_esme[0], ResponseReceived) and at_esme[0].response.message_id == "abc"  # type: ignore[attr-defined]
    assert isinstance(at_esme[1], RequestReceived) and at_esme[1].pdu == receipt
    pair.esme.send(receipt.make_response())
    _, at_smsc = pair.pump()
    assert [type(e) for e in at_smsc] == [ResponseReceived]
    assert pair.esme.outstanding == 0 and pair.smsc.outstanding == 0


def test_smsc_cannot_deliver_to_a_transmitter_bind() -> None:
    pair = Pair()
    pair.bind(BindTransmitter())
    with pytest.raises(Exception, match="may not send deliver_sm"):
        pair.smsc.send(DeliverSm())


def test_esme_refuses_deliver_sm_on_transmitter_bind_from_a_rogue_smsc() -> None:
    pair = Pair()
    pair.bind(BindTransmitter())
    pair.smsc.state = State.BOUND_TRX  # the SMSC believes otherwise
    pair.smsc.send(DeliverSm())
    at_esme, at_smsc = pair.pump()
    assert isinstance(at_esme[0], PduRejected)
    assert isinstance(at_smsc[0], ResponseReceived)
    assert at_smsc[0].response.command_status == Status.ESME_RINVBNDSTS


@pytest.mark.parametrize("side", ["esme", "smsc"])
def test_unbind_from_either_side_closes_both(side: str) -> None:
    pair = Pair()
    pair.bind(BindTransceiver())
    initiator = pair.esme if side == "esme" else pair.smsc
    initiator.send(Unbind())
    at_esme, at_smsc = pair.pump()
    assert pair.esme.state is State.CLOSED and pair.smsc.state is State.CLOSED
    closed_here = at_esme if side == "esme" else at_smsc
    closed_there = at_smsc if side == "esme" else at_esme
    assert closed_here[-1] == ConnectionClosed(by_peer=False)
    assert closed_there[-1] == ConnectionClosed(by_peer=True)


def test_enquire_link_both_ways_keeps_both_alive() -> None:
    pair = Pair()
    pair.bind(BindTransceiver())
    pair.esme.poll(61.0)
    pair.smsc.poll(61.0)
    at_esme, at_smsc = pair.pump(now=61.0)
    assert at_esme == [] and at_smsc == []
    assert pair.esme.outstanding == 0 and pair.smsc.outstanding == 0


def test_outbind_then_receiver_bind() -> None:
    pair = Pair()
    pair.smsc.send(Outbind(system_id="SMSC", password="pw"))
    at_esme, _ = pair.pump()
    assert isinstance(at_esme[0], RequestReceived) and isinstance(at_esme[0].pdu, Outbind)
    pair.bind(BindReceiver(system_id="esme"))
    assert pair.esme.state is State.BOUND_RX
