"""Every SMPP 3.4 PDU, declared once: field order is wire order, each field names its wire type.

Rule 1: no PDU has encode or decode code of its own; the codec compiles these declarations at import.
Rule 2: every request names its response (`response=`), and every command_id of §5.1.2.1 is declared once.

A PDU is an immutable value. It is stored as a tuple (header first, then the body in wire order, then the
TLVs), because building a tuple is about six times cheaper than a frozen dataclass's `__init__`, and the
codec decodes half a million PDUs a second per core. The type checker sees a frozen, keyword-only dataclass.

This module reads its own annotations at import (the field specs live in `Annotated`), so it does not use
`from __future__ import annotations`.
"""

from operator import itemgetter
from typing import Annotated, Any, ClassVar, Self, dataclass_transform, get_args, get_origin, get_type_hints

from ._constants import CommandId, Status
from ._fields import (
    CStr,
    DestAddressList,
    DistributionList,
    FieldSpec,
    Int,
    Octets,
    SmeAddress,
    UnsuccessSme,
    UnsuccessSmeList,
)
from ._tlv import NO_TLVS, Tlvs

__all__ = [
    "PDU_CLASSES",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "FieldInfo",
    "GenericNack",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
]

# command_id -> class, filled as the classes below are declared.
PDU_CLASSES: dict[int, "type[Pdu]"] = {}
_HEADER = ("command_status", "sequence_number")
_tuple_new = tuple.__new__


class FieldInfo:
    """One body field of a PDU class: name, wire spec, default and index in the tuple."""

    __slots__ = ("default", "index", "name", "spec")

    def __init__(self, name: str, spec: FieldSpec, default: object, index: int) -> None:
        self.name = name
        self.spec = spec
        self.default = default
        self.index = index

    def __repr__(self) -> str:
        return f"FieldInfo({self.name!r}, {self.spec!r})"


@dataclass_transform(kw_only_default=True, frozen_default=True)
class _PduMeta(type):
    """Turns a PDU declaration into a tuple subclass with a property per field and a keyword-only constructor."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwargs: Any) -> "_PduMeta":
        ns["__slots__"] = ()
        if kwargs.get("command_id") is None:
            return super().__new__(mcls, name, bases, ns, **kwargs)  # the abstract base
        own = dict(ns.get("__annotations__", {}))
        defaults = {k: ns.pop(k) for k in own if k in ns}
        cls = super().__new__(mcls, name, bases, ns, **kwargs)
        hints = get_type_hints(cls, include_extras=True)
        body: list[FieldInfo] = []
        for fname, default in defaults.items():
            if fname in _HEADER or fname == "tlvs":
                continue
            hint = hints[fname]
            if get_origin(hint) is not Annotated:
                raise TypeError(f"{name}.{fname}: declare the wire type with Annotated[...]")
            spec = get_args(hint)[1]
            body.append(FieldInfo(fname, spec, default, 2 + len(body)))
        _finish(cls, body)
        return cls


def _finish(cls: Any, body: list[FieldInfo]) -> None:
    names = [*_HEADER, *(f.name for f in body), "tlvs"]
    for i, fname in enumerate(names):
        setattr(cls, fname, property(itemgetter(i), doc=fname))
    cls.fields = tuple(body)
    cls.field_names = tuple(names)
    setattr(cls, "__match_args__", tuple(f.name for f in body))  # noqa: B010 - read-only to the checker
    params = ", ".join(
        ["command_status=0", "sequence_number=0", *(f"{f.name}=_d{f.index}" for f in body), "tlvs=_NO_TLVS"]
    )
    values = ", ".join(names)
    src = f"def __new__(cls, *, {params}):\n    return _tuple_new(cls, ({values},))\n"
    env: dict[str, Any] = {"_tuple_new": _tuple_new, "_NO_TLVS": NO_TLVS}
    env.update({f"_d{f.index}": f.default for f in body})
    exec(src, env)
    new = env["__new__"]
    new.__qualname__ = f"{cls.__name__}.__new__"
    cls.__new__ = new
    cls._body_defaults = (*(f.default for f in body), NO_TLVS)
    PDU_CLASSES[cls.command_id] = cls


class Pdu(tuple[Any, ...], metaclass=_PduMeta):
    """Base of every PDU: the header fields every PDU has. command_length is computed when encoding."""

    command_id: ClassVar[int]
    response: ClassVar["type[Pdu] | None"] = None
    _body_defaults: ClassVar[tuple[Any, ...]] = ()  # the body's defaults and no TLVs (set by `_finish`)
    request: ClassVar["type[Pdu] | None"] = None
    fields: ClassVar[tuple[FieldInfo, ...]] = ()
    field_names: ClassVar[tuple[str, ...]] = ()
    name: ClassVar[str] = ""

    command_status: int = 0
    sequence_number: int = 0
    tlvs: Tlvs = NO_TLVS

    def __init_subclass__(cls, *, command_id: int | None = None, response: "type[Pdu] | None" = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if command_id is None:
            return
        cls.command_id = command_id
        cls.name = CommandId(command_id).name
        if response is not None:
            cls.response = response
            response.request = cls

    @property
    def is_response(self) -> bool:
        """True for a *_resp and for generic_nack (§5.1.2.1: bit 31 set)."""
        return bool(self.command_id & 0x8000_0000)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed."""
        values = dict(zip(self.field_names, self, strict=True))
        values.update(changes)
        return type(self)(**values)

    def with_sequence_number(self, sequence_number: int) -> Self:
        """A copy with another sequence_number (what the session does to every request it sends)."""
        return _tuple_new(type(self), (self[0], sequence_number, *self[2:]))

    def as_dict(self) -> dict[str, Any]:
        """Header and body fields and the TLVs, by name."""
        return dict(zip(self.field_names, self, strict=True))

    def make_response(self, **fields: Any) -> "Pdu":
        """The response to this request, with its sequence_number (§2.6: a response repeats it).

        Raises:
            TypeError: this PDU is not a request with a response.
        """
        response = self.response
        if response is None:
            raise TypeError(f"{self.name} has no response PDU")
        if not fields:  # every body field its default: the tuple at once (0.3 against 0.7 us, timeit)
            return _tuple_new(response, (0, self[1], *response._body_defaults))
        return response(sequence_number=self[1], **fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return tuple.__eq__(self, other)
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(self)))

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={v!r}" for n, v in zip(self.field_names, self, strict=True)
                          if n != "tlvs" or v)
        return f"{type(self).__name__}({parts})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), tuple(self)))


def _rebuild(cls: type[Pdu], values: tuple[Any, ...]) -> Pdu:
    return _tuple_new(cls, values)


S = Status
# C-Octet string widths of §4, NUL included.
SystemId = Annotated[str, CStr(16, bad=S.ESME_RINVSYSID)]
Password = Annotated[str, CStr(9, bad=S.ESME_RINVPASWD)]
SystemType = Annotated[str, CStr(13, bad=S.ESME_RINVSYSTYP)]
ServiceType = Annotated[str, CStr(6, bad=S.ESME_RINVSERTYP)]
MessageId = Annotated[str, CStr(65, bad=S.ESME_RINVMSGID)]
SourceAddr21 = Annotated[str, CStr(21, bad=S.ESME_RINVSRCADR)]
DestAddr21 = Annotated[str, CStr(21, bad=S.ESME_RINVDSTADR)]
SourceAddr65 = Annotated[str, CStr(65, bad=S.ESME_RINVSRCADR)]
DestAddr65 = Annotated[str, CStr(65, bad=S.ESME_RINVDSTADR)]
ScheduleTime = Annotated[str, CStr(17, bad=S.ESME_RINVSCHED)]
ValidityTime = Annotated[str, CStr(17, bad=S.ESME_RINVEXPIRY)]
SrcTon = Annotated[int, Int(1, bad=S.ESME_RINVSRCTON)]
SrcNpi = Annotated[int, Int(1, bad=S.ESME_RINVSRCNPI)]
DstTon = Annotated[int, Int(1, bad=S.ESME_RINVDSTTON)]
DstNpi = Annotated[int, Int(1, bad=S.ESME_RINVDSTNPI)]
EsmClassField = Annotated[int, Int(1, bad=S.ESME_RINVESMCLASS)]
ProtocolId = Annotated[int, Int(1, bad=S.ESME_RSYSERR)]
PriorityFlag = Annotated[int, Int(1, bad=S.ESME_RINVPRTFLG)]
RegisteredDeliveryField = Annotated[int, Int(1, bad=S.ESME_RINVREGDLVFLG)]
ReplaceIfPresent = Annotated[int, Int(1, bad=S.ESME_RINVREPFLAG)]
DataCodingField = Annotated[int, Int(1, bad=S.ESME_RSYSERR)]
DefaultMsgId = Annotated[int, Int(1, bad=S.ESME_RINVDFTMSGID)]
ShortMessage = Annotated[bytes, Octets(254, bad=S.ESME_RINVMSGLEN)]
U8 = Annotated[int, Int(1)]
U32 = Annotated[int, Int(4)]


# ---- §4.1 binds -------------------------------------------------------------------------------------


class BindTransmitterResp(Pdu, command_id=CommandId.bind_transmitter_resp):
    """bind_transmitter_resp (§4.1.2). Its body may be empty when command_status is an error."""

    system_id: SystemId = ""


class BindTransmitter(Pdu, command_id=CommandId.bind_transmitter, response=BindTransmitterResp):
    """bind_transmitter (§4.1.1): ESME -> SMSC, bind to submit messages."""

    system_id: SystemId = ""
    password: Password = ""
    system_type: SystemType = ""
    interface_version: U8 = 0x34
    addr_ton: SrcTon = 0
    addr_npi: SrcNpi = 0
    address_range: Annotated[str, CStr(41, bad=S.ESME_RINVSRCADR)] = ""


class BindReceiverResp(Pdu, command_id=CommandId.bind_receiver_resp):
    """bind_receiver_resp (§4.1.4)."""

    system_id: SystemId = ""


class BindReceiver(Pdu, command_id=CommandId.bind_receiver, response=BindReceiverResp):
    """bind_receiver (§4.1.3): ESME -> SMSC, bind to receive messages."""

    system_id: SystemId = ""
    password: Password = ""
    system_type: SystemType = ""
    interface_version: U8 = 0x34
    addr_ton: SrcTon = 0
    addr_npi: SrcNpi = 0
    address_range: Annotated[str, CStr(41, bad=S.ESME_RINVSRCADR)] = ""


class BindTransceiverResp(Pdu, command_id=CommandId.bind_transceiver_resp):
    """bind_transceiver_resp (§4.1.6)."""

    system_id: SystemId = ""


class BindTransceiver(Pdu, command_id=CommandId.bind_transceiver, response=BindTransceiverResp):
    """bind_transceiver (§4.1.5): ESME -> SMSC, bind to submit and receive."""

    system_id: SystemId = ""
    password: Password = ""
    system_type: SystemType = ""
    interface_version: U8 = 0x34
    addr_ton: SrcTon = 0
    addr_npi: SrcNpi = 0
    address_range: Annotated[str, CStr(41, bad=S.ESME_RINVSRCADR)] = ""


class Outbind(Pdu, command_id=CommandId.outbind):
    """outbind (§4.1.7): SMSC -> ESME, asks the ESME to bind as receiver. It has no response."""

    system_id: SystemId = ""
    password: Password = ""


# ---- §4.2 unbind, §4.3 generic_nack ------------------------------------------------------------------


class UnbindResp(Pdu, command_id=CommandId.unbind_resp):
    """unbind_resp (§4.2.2)."""


class Unbind(Pdu, command_id=CommandId.unbind, response=UnbindResp):
    """unbind (§4.2.1): either side ends the bind."""


class GenericNack(Pdu, command_id=CommandId.generic_nack):
    """generic_nack (§4.3.1): the answer to a PDU whose header was bad or whose command_id is unknown."""


# ---- §4.4 submit_sm, §4.5 submit_multi ---------------------------------------------------------------


class SubmitSmResp(Pdu, command_id=CommandId.submit_sm_resp):
    """submit_sm_resp (§4.4.2): carries the SMSC's message_id. The body may be empty on error."""

    message_id: MessageId = ""


class SubmitSm(Pdu, command_id=CommandId.submit_sm, response=SubmitSmResp):
    """submit_sm (§4.4.1): ESME -> SMSC, one short message."""

    service_type: ServiceType = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr21 = ""
    dest_addr_ton: DstTon = 0
    dest_addr_npi: DstNpi = 0
    destination_addr: DestAddr21 = ""
    esm_class: EsmClassField = 0
    protocol_id: ProtocolId = 0
    priority_flag: PriorityFlag = 0
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityTime = ""
    registered_delivery: RegisteredDeliveryField = 0
    replace_if_present_flag: ReplaceIfPresent = 0
    data_coding: DataCodingField = 0
    sm_default_msg_id: DefaultMsgId = 0
    short_message: ShortMessage = b""


class SubmitMultiResp(Pdu, command_id=CommandId.submit_multi_resp):
    """submit_multi_resp (§4.5.2): message_id and the destinations that failed."""

    message_id: MessageId = ""
    unsuccess_sme: Annotated[tuple[UnsuccessSme, ...], UnsuccessSmeList()] = ()


class SubmitMulti(Pdu, command_id=CommandId.submit_multi, response=SubmitMultiResp):
    """submit_multi (§4.5.1): ESME -> SMSC, one message to up to 254 SME addresses or distribution lists."""

    service_type: ServiceType = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr21 = ""
    dest_address: Annotated[tuple[SmeAddress | DistributionList, ...], DestAddressList()] = ()
    esm_class: EsmClassField = 0
    protocol_id: ProtocolId = 0
    priority_flag: PriorityFlag = 0
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityTime = ""
    registered_delivery: RegisteredDeliveryField = 0
    replace_if_present_flag: ReplaceIfPresent = 0
    data_coding: DataCodingField = 0
    sm_default_msg_id: DefaultMsgId = 0
    short_message: ShortMessage = b""


# ---- §4.6 deliver_sm, §4.7 data_sm -------------------------------------------------------------------


class DeliverSmResp(Pdu, command_id=CommandId.deliver_sm_resp):
    """deliver_sm_resp (§4.6.2): message_id is unused and set to NULL."""

    message_id: MessageId = ""


class DeliverSm(Pdu, command_id=CommandId.deliver_sm, response=DeliverSmResp):
    """deliver_sm (§4.6.1): SMSC -> ESME, an MO message or a delivery receipt (esm_class bit 2)."""

    service_type: ServiceType = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr21 = ""
    dest_addr_ton: DstTon = 0
    dest_addr_npi: DstNpi = 0
    destination_addr: DestAddr21 = ""
    esm_class: EsmClassField = 0
    protocol_id: ProtocolId = 0
    priority_flag: PriorityFlag = 0
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityTime = ""
    registered_delivery: RegisteredDeliveryField = 0
    replace_if_present_flag: ReplaceIfPresent = 0
    data_coding: DataCodingField = 0
    sm_default_msg_id: DefaultMsgId = 0
    short_message: ShortMessage = b""


class DataSmResp(Pdu, command_id=CommandId.data_sm_resp):
    """data_sm_resp (§4.7.2)."""

    message_id: MessageId = ""


class DataSm(Pdu, command_id=CommandId.data_sm, response=DataSmResp):
    """data_sm (§4.7.1): either direction, the payload travels in TLVs (message_payload)."""

    service_type: ServiceType = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr65 = ""
    dest_addr_ton: DstTon = 0
    dest_addr_npi: DstNpi = 0
    destination_addr: DestAddr65 = ""
    esm_class: EsmClassField = 0
    registered_delivery: RegisteredDeliveryField = 0
    data_coding: DataCodingField = 0


# ---- §4.8 query_sm, §4.9 cancel_sm, §4.10 replace_sm ------------------------------------------------


class QuerySmResp(Pdu, command_id=CommandId.query_sm_resp):
    """query_sm_resp (§4.8.2)."""

    message_id: MessageId = ""
    final_date: Annotated[str, CStr(17)] = ""
    message_state: U8 = 0
    error_code: U8 = 0


class QuerySm(Pdu, command_id=CommandId.query_sm, response=QuerySmResp):
    """query_sm (§4.8.1): the state of a message submitted earlier."""

    message_id: MessageId = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr21 = ""


class CancelSmResp(Pdu, command_id=CommandId.cancel_sm_resp):
    """cancel_sm_resp (§4.9.2)."""


class CancelSm(Pdu, command_id=CommandId.cancel_sm, response=CancelSmResp):
    """cancel_sm (§4.9.1): cancel one message, or every message from a source to a destination."""

    service_type: ServiceType = ""
    message_id: MessageId = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr21 = ""
    dest_addr_ton: DstTon = 0
    dest_addr_npi: DstNpi = 0
    destination_addr: DestAddr21 = ""


class ReplaceSmResp(Pdu, command_id=CommandId.replace_sm_resp):
    """replace_sm_resp (§4.10.2)."""


class ReplaceSm(Pdu, command_id=CommandId.replace_sm, response=ReplaceSmResp):
    """replace_sm (§4.10.1): replace a message submitted earlier that is still pending."""

    message_id: MessageId = ""
    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr21 = ""
    schedule_delivery_time: ScheduleTime = ""
    validity_period: ValidityTime = ""
    registered_delivery: RegisteredDeliveryField = 0
    sm_default_msg_id: DefaultMsgId = 0
    short_message: ShortMessage = b""


# ---- §4.11 enquire_link, §4.12 alert_notification ---------------------------------------------------


class EnquireLinkResp(Pdu, command_id=CommandId.enquire_link_resp):
    """enquire_link_resp (§4.11.2)."""


class EnquireLink(Pdu, command_id=CommandId.enquire_link, response=EnquireLinkResp):
    """enquire_link (§4.11.1): either side checks that the link is alive."""


class AlertNotification(Pdu, command_id=CommandId.alert_notification):
    """alert_notification (§4.12.1): SMSC -> ESME, a handset became reachable. It has no response."""

    source_addr_ton: SrcTon = 0
    source_addr_npi: SrcNpi = 0
    source_addr: SourceAddr65 = ""
    esme_addr_ton: DstTon = 0
    esme_addr_npi: DstNpi = 0
    esme_addr: DestAddr65 = ""
