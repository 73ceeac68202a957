"""The PDU declarations against SMPP 3.4: command ids (§5.1.2.1), request/response pairs, body fields (§4).

The tables here are written from the specification, not read from smpp/_pdu.py, so that a wrong declaration
fails a test instead of agreeing with itself.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from smpp import (
    NO_TLVS,
    PDU_CLASSES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    CommandId,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    Status,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    encode_pdu,
)
from smpp._fields import CStr, DestAddressList, Int, Octets, UnsuccessSmeList

# §5.1.2.1, command_id values.
SPEC_COMMAND_IDS: dict[str, int] = {
    "generic_nack": 0x80000000,
    "bind_receiver": 0x00000001,
    "bind_receiver_resp": 0x80000001,
    "bind_transmitter": 0x00000002,
    "bind_transmitter_resp": 0x80000002,
    "query_sm": 0x00000003,
    "query_sm_resp": 0x80000003,
    "submit_sm": 0x00000004,
    "submit_sm_resp": 0x80000004,
    "deliver_sm": 0x00000005,
    "deliver_sm_resp": 0x80000005,
    "unbind": 0x00000006,
    "unbind_resp": 0x80000006,
    "replace_sm": 0x00000007,
    "replace_sm_resp": 0x80000007,
    "cancel_sm": 0x00000008,
    "cancel_sm_resp": 0x80000008,
    "bind_transceiver": 0x00000009,
    "bind_transceiver_resp": 0x80000009,
    "outbind": 0x0000000B,
    "enquire_link": 0x00000015,
    "enquire_link_resp": 0x80000015,
    "submit_multi": 0x00000021,
    "submit_multi_resp": 0x80000021,
    "alert_notification": 0x00000102,
    "data_sm": 0x00000103,
    "data_sm_resp": 0x80000103,
}

CLASS_BY_NAME: dict[str, type[Pdu]] = {
    "generic_nack": GenericNack,
    "bind_receiver": BindReceiver,
    "bind_receiver_resp": BindReceiverResp,
    "bind_transmitter": BindTransmitter,
    "bind_transmitter_resp": BindTransmitterResp,
    "query_sm": QuerySm,
    "query_sm_resp": QuerySmResp,
    "submit_sm": SubmitSm,
    "submit_sm_resp": SubmitSmResp,
    "deliver_sm": DeliverSm,
    "deliver_sm_resp": DeliverSmResp,
    "unbind": Unbind,
    "unbind_resp": UnbindResp,
    "replace_sm": ReplaceSm,
    "replace_sm_resp": ReplaceSmResp,
    "cancel_sm": CancelSm,
    "cancel_sm_resp": CancelSmResp,
    "bind_transceiver": BindTransceiver,
    "bind_transceiver_resp": BindTransceiverResp,
    "outbind": Outbind,
    "enquire_link": EnquireLink,
    "enquire_link_resp": EnquireLinkResp,
    "submit_multi": SubmitMulti,
    "submit_multi_resp": SubmitMultiResp,
    "alert_notification": AlertNotification,
    "data_sm": DataSm,
    "data_sm_resp": DataSmResp,
}

# Each request and the response §4 pairs it with. outbind, alert_notification and generic_nack have none.
PAIRS: list[tuple[type[Pdu], type[Pdu]]] = [
    (BindTransmitter, BindTransmitterResp),
    (BindReceiver, BindReceiverResp),
    (BindTransceiver, BindTransceiverResp),
    (Unbind, UnbindResp),
    (SubmitSm, SubmitSmResp),
    (SubmitMulti, SubmitMultiResp),
    (DeliverSm, DeliverSmResp),
    (DataSm, DataSmResp),
    (QuerySm, QuerySmResp),
    (CancelSm, CancelSmResp),
    (ReplaceSm, ReplaceSmResp),
    (EnquireLink, EnquireLinkResp),
]
UNANSWERED = [Outbind, AlertNotification, GenericNack]

# §4 body tables, in wire order: ("c", N) is a C-Octet String of at most N octets counting its NULL,
# ("i", N) an N-octet Integer, ("o", N) short_message of at most N octets after its sm_length,
# ("dests",) submit_multi's number_of_dests + dest_address list, ("unsuccess",) no_unsuccess + unsuccess_sme.
BIND = [("system_id", ("c", 16)), ("password", ("c", 9)), ("system_type", ("c", 13)),
        ("interface_version", ("i", 1)), ("addr_ton", ("i", 1)), ("addr_npi", ("i", 1)),
        ("address_range", ("c", 41))]
SM_TAIL = [("esm_class", ("i", 1)), ("protocol_id", ("i", 1)), ("priority_flag", ("i", 1)),
           ("schedule_delivery_time", ("c", 17)), ("validity_period", ("c", 17)),
           ("registered_delivery", ("i", 1)), ("replace_if_present_flag", ("i", 1)), ("data_coding", ("i", 1)),
           ("sm_default_msg_id", ("i", 1)), ("short_message", ("o", 254))]
SOURCE_21 = [("source_addr_ton", ("i", 1)), ("source_addr_npi", ("i", 1)), ("source_addr", ("c", 21))]
DEST_21 = [("dest_addr_ton", ("i", 1)), ("dest_addr_npi", ("i", 1)), ("destination_addr", ("c", 21))]
SUBMIT = [("service_type", ("c", 6)), *SOURCE_21, *DEST_21, *SM_TAIL]
MESSAGE_ID = [("message_id", ("c", 65))]

SPEC_BODIES: dict[type[Pdu], list[tuple[str, tuple[Any, ...]]]] = {
    BindTransmitter: BIND,  # §4.1.1
    BindTransmitterResp: [("system_id", ("c", 16))],  # §4.1.2
    BindReceiver: BIND,  # §4.1.3
    BindReceiverResp: [("system_id", ("c", 16))],  # §4.1.4
    BindTransceiver: BIND,  # §4.1.5
    BindTransceiverResp: [("system_id", ("c", 16))],  # §4.1.6
    Outbind: [("system_id", ("c", 16)), ("password", ("c", 9))],  # §4.1.7
    Unbind: [], UnbindResp: [],  # §4.2
    GenericNack: [],  # §4.3.1
    SubmitSm: SUBMIT,  # §4.4.1
    SubmitSmResp: MESSAGE_ID,  # §4.4.2
    SubmitMulti: [("service_type", ("c", 6)), *SOURCE_21, ("dest_address", ("dests",)), *SM_TAIL],  # §4.5.1
    SubmitMultiResp: [*MESSAGE_ID, ("unsuccess_sme", ("unsuccess",))],  # §4.5.2
    DeliverSm: SUBMIT,  # §4.6.1
    # §4.6.2 says message_id is unused and NULL (1 octet); deliberately accepted up to 65 octets, as
    # cloudhopper-smpp's PduDecoderTest decodes a deliver_sm_resp carrying "94258431594".
    DeliverSmResp: MESSAGE_ID,
    DataSm: [("service_type", ("c", 6)), ("source_addr_ton", ("i", 1)), ("source_addr_npi", ("i", 1)),
             ("source_addr", ("c", 65)), ("dest_addr_ton", ("i", 1)), ("dest_addr_npi", ("i", 1)),
             ("destination_addr", ("c", 65)), ("esm_class", ("i", 1)), ("registered_delivery", ("i", 1)),
             ("data_coding", ("i", 1))],  # §4.7.1
    DataSmResp: MESSAGE_ID,  # §4.7.2
    QuerySm: [*MESSAGE_ID, *SOURCE_21],  # §4.8.1
    QuerySmResp: [*MESSAGE_ID, ("final_date", ("c", 17)), ("message_state", ("i", 1)),
                  ("error_code", ("i", 1))],  # §4.8.2
    CancelSm: [("service_type", ("c", 6)), *MESSAGE_ID, *SOURCE_21, *DEST_21],  # §4.9.1
    CancelSmResp: [],  # §4.9.2
    ReplaceSm: [*MESSAGE_ID, *SOURCE_21, ("schedule_delivery_time", ("c", 17)), ("validity_period", ("c", 17)),
                ("registered_delivery", ("i", 1)), ("sm_default_msg_id", ("i", 1)),
                ("short_message", ("o", 254))],  # §4.10.1
    ReplaceSmResp: [],  # §4.10.2
    EnquireLink: [], EnquireLinkResp: [],  # §4.11
    AlertNotification: [("source_addr_ton", ("i", 1)), ("source_addr_npi", ("i", 1)), ("source_addr", ("c", 65)),
                        ("esme_addr_ton", ("i", 1)), ("esme_addr_npi", ("i", 1)),
                        ("esme_addr", ("c", 65))],  # §4.12.1
}

# The §5.1.3 command_status that answers a bad value of a field, wherever the field occurs.
FIELD_STATUS: dict[str, Status] = {
    "system_id": Status.ESME_RINVSYSID,
    "password": Status.ESME_RINVPASWD,
    "system_type": Status.ESME_RINVSYSTYP,
    "service_type": Status.ESME_RINVSERTYP,
    "source_addr": Status.ESME_RINVSRCADR,
    "source_addr_ton": Status.ESME_RINVSRCTON,
    "source_addr_npi": Status.ESME_RINVSRCNPI,
    "destination_addr": Status.ESME_RINVDSTADR,
    "dest_addr_ton": Status.ESME_RINVDSTTON,
    "dest_addr_npi": Status.ESME_RINVDSTNPI,
    "message_id": Status.ESME_RINVMSGID,
    "esm_class": Status.ESME_RINVESMCLASS,
    "priority_flag": Status.ESME_RINVPRTFLG,
    "registered_delivery": Status.ESME_RINVREGDLVFLG,
    "replace_if_present_flag": Status.ESME_RINVREPFLAG,
    "schedule_delivery_time": Status.ESME_RINVSCHED,
    "validity_period": Status.ESME_RINVEXPIRY,
    "sm_default_msg_id": Status.ESME_RINVDFTMSGID,
    "short_message": Status.ESME_RINVMSGLEN,
    "dest_address": Status.ESME_RINVNUMDESTS,
}

ALL_CLASSES = list(CLASS_BY_NAME.values())


def _spec_of(spec: object) -> tuple[Any, ...]:
    if isinstance(spec, CStr):
        return ("c", spec.max_len)
    if isinstance(spec, Int):
        return ("i", spec.size)
    if isinstance(spec, Octets):
        return ("o", spec.max_len)
    if isinstance(spec, DestAddressList):
        return ("dests",)
    assert isinstance(spec, UnsuccessSmeList)
    return ("unsuccess",)


def _cls_id(cls: type[Pdu]) -> str:
    return cls.__name__


# ---- command ids and pairs -----------------------------------------------------------------------------


def test_every_command_id_of_the_spec_is_declared_once() -> None:
    assert {name: int(cid) for name, cid in SPEC_COMMAND_IDS.items()} == {c.name: c.value for c in CommandId}
    assert set(PDU_CLASSES) == set(SPEC_COMMAND_IDS.values())
    assert len(PDU_CLASSES) == 27


@pytest.mark.parametrize("name", sorted(SPEC_COMMAND_IDS))
def test_command_id_and_name_match_the_spec(name: str) -> None:
    cls = CLASS_BY_NAME[name]
    assert cls.command_id == SPEC_COMMAND_IDS[name]
    assert cls.name == name
    assert PDU_CLASSES[SPEC_COMMAND_IDS[name]] is cls


@pytest.mark.parametrize(("request_cls", "response_cls"), PAIRS, ids=[r.__name__ for r, _ in PAIRS])
def test_each_request_is_paired_with_its_response(request_cls: type[Pdu], response_cls: type[Pdu]) -> None:
    assert request_cls.response is response_cls
    assert response_cls.request is request_cls
    # §5.1.2.1: a response's command_id is its request's with bit 31 set.
    assert response_cls.command_id == request_cls.command_id | 0x8000_0000
    assert not request_cls().is_response
    assert response_cls().is_response
    assert response_cls.response is None


@pytest.mark.parametrize("cls", UNANSWERED, ids=_cls_id)
def test_outbind_alert_notification_and_generic_nack_have_no_response(cls: type[Pdu]) -> None:
    assert cls.response is None
    assert cls.request is None
    with pytest.raises(TypeError, match=cls.name):
        cls().make_response()


def test_every_class_is_a_request_a_response_or_unanswered() -> None:
    requests = {r for r, _ in PAIRS}
    responses = {r for _, r in PAIRS}
    assert requests | responses | set(UNANSWERED) == set(ALL_CLASSES)
    assert len(requests) + len(responses) + len(UNANSWERED) == 27
    assert GenericNack().is_response  # §4.3.1: command_id 0x80000000 has bit 31 set
    assert not Outbind().is_response and not AlertNotification().is_response


# ---- body fields against §4 ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_cls_id)
def test_body_fields_match_the_spec_table_in_wire_order(cls: type[Pdu]) -> None:
    declared = [(f.name, _spec_of(f.spec)) for f in cls.fields]
    assert declared == SPEC_BODIES[cls]
    assert cls.field_names == ("command_status", "sequence_number", *(n for n, _ in declared), "tlvs")
    assert [f.index for f in cls.fields] == list(range(2, 2 + len(cls.fields)))


def test_spec_table_covers_every_class() -> None:
    assert set(SPEC_BODIES) == set(ALL_CLASSES)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_cls_id)
def test_each_field_names_the_status_of_its_bad_value(cls: type[Pdu]) -> None:
    for f in cls.fields:
        if f.name in FIELD_STATUS:
            assert f.spec.bad == FIELD_STATUS[f.name], f"{cls.name}.{f.name}"


def test_every_named_status_is_used_somewhere() -> None:
    names = {f.name for cls in ALL_CLASSES for f in cls.fields}
    assert set(FIELD_STATUS) <= names


# ---- construction and defaults -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_cls_id)
def test_defaults_are_the_null_values(cls: type[Pdu]) -> None:
    pdu = cls()
    assert pdu.command_status == 0
    assert pdu.sequence_number == 0
    assert pdu.tlvs is NO_TLVS
    nulls = {"c": "", "i": 0, "o": b"", "dests": (), "unsuccess": ()}
    for f in cls.fields:
        expected = 0x34 if f.name == "interface_version" else nulls[_spec_of(f.spec)[0]]
        assert getattr(pdu, f.name) == expected, f.name
        assert f.default == expected
    assert len(pdu) == len(cls.field_names)


def test_binds_default_to_interface_version_3_4() -> None:
    for cls in (BindTransmitter, BindReceiver, BindTransceiver):
        assert cls().interface_version == 0x34  # §5.2.4: 0x34 is SMPP 3.4


def test_constructor_is_keyword_only_and_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError):
        SubmitSm(0, 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SubmitSm(no_such_field=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        EnquireLink(system_id="x")  # type: ignore[call-arg]


def test_fields_read_back_as_given() -> None:
    pdu = SubmitSm(command_status=5, sequence_number=9, source_addr="123", destination_addr="456",
                   esm_class=0x40, short_message=b"\x05\x00\x03\x01\x02\x01hi", tlvs=Tlvs(sar_msg_ref_num=7))
    assert (pdu.command_status, pdu.sequence_number) == (5, 9)
    assert (pdu.source_addr, pdu.destination_addr, pdu.esm_class) == ("123", "456", 0x40)
    assert pdu.short_message == b"\x05\x00\x03\x01\x02\x01hi"
    assert pdu.tlvs["sar_msg_ref_num"] == 7


def test_submit_multi_and_its_response_hold_tuples_of_entries() -> None:
    dests = (SmeAddress(1, 1, "447700900001"), DistributionList("staff"))
    pdu = SubmitMulti(dest_address=dests)
    assert pdu.dest_address == dests
    resp = SubmitMultiResp(message_id="m", unsuccess_sme=(UnsuccessSme(1, 1, "447700900001", 0x0B),))
    assert resp.unsuccess_sme[0].error_status_code == 0x0B


# ---- immutability, equality, hashing ---------------------------------------------------------------------


def test_pdus_are_immutable() -> None:
    pdu = SubmitSm(source_addr="1")
    with pytest.raises(AttributeError):
        pdu.source_addr = "2"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        pdu.sequence_number = 3
    with pytest.raises(AttributeError):
        pdu.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pdu[3] = "2"  # type: ignore[index]
    assert not hasattr(pdu, "__dict__")
    assert pdu.source_addr == "1"


def test_equal_values_are_equal_and_hash_alike() -> None:
    a = DeliverSm(sequence_number=1, source_addr="1", tlvs=Tlvs(message_state=2))
    b = DeliverSm(sequence_number=1, source_addr="1", tlvs=Tlvs(message_state=2))
    assert a == b and not a != b
    assert hash(a) == hash(b)
    assert {a: "x"}[b] == "x"
    assert a != a.replace(sequence_number=2)
    assert a != a.replace(tlvs=Tlvs(message_state=3))


def test_pdus_of_different_types_are_never_equal() -> None:
    # Same tuple contents, different commands.
    assert Unbind(sequence_number=1) != UnbindResp(sequence_number=1)
    assert EnquireLink(sequence_number=1) != Unbind(sequence_number=1)
    assert SubmitSm() != DeliverSm()
    assert SubmitSmResp() != DeliverSmResp()
    assert hash(Unbind(sequence_number=1)) != hash(UnbindResp(sequence_number=1))
    # Nor equal to the plain tuple they are stored as.
    assert EnquireLink(sequence_number=1) != (0, 1, NO_TLVS)
    assert EnquireLink(sequence_number=1) != "enquire_link"


def test_pdus_survive_pickle() -> None:
    pdu = SubmitMulti(sequence_number=4, dest_address=(SmeAddress(1, 1, "1"), DistributionList("d")),
                      short_message=b"x", tlvs=Tlvs({"0x1400": b"v", "user_message_reference": 3}))
    back = pickle.loads(pickle.dumps(pdu))
    assert back == pdu
    assert type(back) is SubmitMulti


# ---- replace, as_dict, repr ------------------------------------------------------------------------------


def test_replace_returns_a_changed_copy() -> None:
    pdu = SubmitSm(sequence_number=1, source_addr="1", short_message=b"a")
    other = pdu.replace(source_addr="2", sequence_number=5)
    assert type(other) is SubmitSm
    assert (other.source_addr, other.sequence_number, other.short_message) == ("2", 5, b"a")
    assert (pdu.source_addr, pdu.sequence_number) == ("1", 1)
    assert pdu.replace() == pdu
    with pytest.raises(TypeError):
        pdu.replace(no_such_field=1)


def test_as_dict_names_header_body_and_tlvs_in_order() -> None:
    pdu = QuerySmResp(sequence_number=3, message_id="m", message_state=2)
    assert pdu.as_dict() == {"command_status": 0, "sequence_number": 3, "message_id": "m", "final_date": "",
                             "message_state": 2, "error_code": 0, "tlvs": NO_TLVS}
    assert list(pdu.as_dict()) == list(QuerySmResp.field_names)


def test_repr_names_the_class_and_fields_and_omits_empty_tlvs() -> None:
    text = repr(SubmitSmResp(sequence_number=3, message_id="m"))
    assert text == "SubmitSmResp(command_status=0, sequence_number=3, message_id='m')"
    assert "tlvs=Tlvs(message_state=2)" in repr(DeliverSm(tlvs=Tlvs(message_state=2)))


# ---- make_response ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_cls", "response_cls"), PAIRS, ids=[r.__name__ for r, _ in PAIRS])
def test_make_response_repeats_the_sequence_number(request_cls: type[Pdu], response_cls: type[Pdu]) -> None:
    resp = request_cls(sequence_number=0x7FFFFFFF).make_response()
    assert type(resp) is response_cls
    assert resp.sequence_number == 0x7FFFFFFF  # §2.6: a response carries its request's sequence_number
    assert resp.command_status == 0
    # Without fields it is built at once from the defaults: the same PDU as the keyword constructor's.
    assert resp == response_cls(sequence_number=0x7FFFFFFF)
    assert encode_pdu(resp) == encode_pdu(response_cls(sequence_number=0x7FFFFFFF))


def test_make_response_takes_fields() -> None:
    resp = SubmitSm(sequence_number=42).make_response(message_id="abc", command_status=Status.ESME_RTHROTTLED)
    assert resp == SubmitSmResp(sequence_number=42, message_id="abc", command_status=Status.ESME_RTHROTTLED)
    bind = BindTransceiver(sequence_number=1, system_id="esme").make_response(
        system_id="smsc", tlvs=Tlvs(sc_interface_version=0x34))
    assert bind == BindTransceiverResp(sequence_number=1, system_id="smsc", tlvs=Tlvs(sc_interface_version=0x34))


@pytest.mark.parametrize("response_cls", [r for _, r in PAIRS], ids=_cls_id)
def test_a_response_has_no_response(response_cls: type[Pdu]) -> None:
    with pytest.raises(TypeError):
        response_cls().make_response()


# ---- match --------------------------------------------------------------------------------------------------


def _route(pdu: Pdu) -> str:
    match pdu:
        case DeliverSm(esm_class=esm, tlvs=tlvs) if esm & 0x04 and "receipted_message_id" in tlvs:
            return f"receipt {tlvs.get_str('receipted_message_id')}"
        case DeliverSm(source_addr=src, short_message=text):
            return f"mo {src} {text!r}"
        case SubmitSmResp(command_status=0, message_id=mid):
            return f"accepted {mid}"
        case SubmitSmResp(command_status=status):
            return f"rejected {Status.describe(status)}"
        # Positional: __match_args__ is the body in wire order (set at class creation, so mypy cannot see it).
        case BindTransmitter(system_id, password):  # type: ignore[misc]
            return f"bind {system_id}/{password}"
        case EnquireLink() | Unbind():
            return "session"
        case _:
            return "other"


def test_match_with_class_patterns() -> None:
    assert _route(DeliverSm(esm_class=0x04, tlvs=Tlvs(receipted_message_id="0A"))) == "receipt 0A"
    assert _route(DeliverSm(source_addr="4477", short_message=b"STOP")) == "mo 4477 b'STOP'"
    assert _route(SubmitSmResp(message_id="m1")) == "accepted m1"
    assert _route(SubmitSmResp(command_status=Status.ESME_RTHROTTLED)) == "rejected ESME_RTHROTTLED"
    assert _route(BindTransmitter(system_id="u", password="p")) == "bind u/p"
    assert _route(Unbind()) == "session"
    assert _route(UnbindResp()) == "other"


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=_cls_id)
def test_match_args_are_the_body_fields(cls: type[Pdu]) -> None:
    assert cls.__match_args__ == tuple(f.name for f in cls.fields)
