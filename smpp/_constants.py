"""Names for the numbers of SMPP 3.4: command ids, command_status codes and field values.

Rule: every spelling here is the specification's (SMPP 3.4, issue 1.2, §5.1 and §5.2); where SMPP 5.0
renamed a status, the 5.0 name is an alias of the same value.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "GENERIC_NACK",
    "RESPONSE_BIT",
    "CommandId",
    "DataCoding",
    "EsmClass",
    "MessageState",
    "Npi",
    "RegisteredDelivery",
    "Status",
    "Ton",
]

RESPONSE_BIT = 0x8000_0000
GENERIC_NACK = 0x8000_0000


class CommandId(IntEnum):
    """command_id values (§5.1.2.1)."""

    generic_nack = 0x8000_0000
    bind_receiver = 0x0000_0001
    bind_receiver_resp = 0x8000_0001
    bind_transmitter = 0x0000_0002
    bind_transmitter_resp = 0x8000_0002
    query_sm = 0x0000_0003
    query_sm_resp = 0x8000_0003
    submit_sm = 0x0000_0004
    submit_sm_resp = 0x8000_0004
    deliver_sm = 0x0000_0005
    deliver_sm_resp = 0x8000_0005
    unbind = 0x0000_0006
    unbind_resp = 0x8000_0006
    replace_sm = 0x0000_0007
    replace_sm_resp = 0x8000_0007
    cancel_sm = 0x0000_0008
    cancel_sm_resp = 0x8000_0008
    bind_transceiver = 0x0000_0009
    bind_transceiver_resp = 0x8000_0009
    outbind = 0x0000_000B
    enquire_link = 0x0000_0015
    enquire_link_resp = 0x8000_0015
    submit_multi = 0x0000_0021
    submit_multi_resp = 0x8000_0021
    alert_notification = 0x0000_0102
    data_sm = 0x0000_0103
    data_sm_resp = 0x8000_0103


class Status(IntEnum):
    """command_status values (§5.1.3). 0x400-0x4FF are reserved for SMSC vendors."""

    ESME_ROK = 0x0000_0000
    ESME_RINVMSGLEN = 0x0000_0001
    ESME_RINVCMDLEN = 0x0000_0002
    ESME_RINVCMDID = 0x0000_0003
    ESME_RINVBNDSTS = 0x0000_0004
    ESME_RALYBND = 0x0000_0005
    ESME_RINVPRTFLG = 0x0000_0006
    ESME_RINVREGDLVFLG = 0x0000_0007
    ESME_RSYSERR = 0x0000_0008
    ESME_RINVSRCADR = 0x0000_000A
    ESME_RINVDSTADR = 0x0000_000B
    ESME_RINVMSGID = 0x0000_000C
    ESME_RBINDFAIL = 0x0000_000D
    ESME_RINVPASWD = 0x0000_000E
    ESME_RINVSYSID = 0x0000_000F
    ESME_RCANCELFAIL = 0x0000_0011
    ESME_RREPLACEFAIL = 0x0000_0013
    ESME_RMSGQFUL = 0x0000_0014
    ESME_RINVSERTYP = 0x0000_0015
    ESME_RINVNUMDESTS = 0x0000_0033
    ESME_RINVDLNAME = 0x0000_0034
    ESME_RINVDESTFLAG = 0x0000_0040
    ESME_RINVSUBREP = 0x0000_0042
    ESME_RINVESMCLASS = 0x0000_0043
    ESME_RCNTSUBDL = 0x0000_0044
    ESME_RSUBMITFAIL = 0x0000_0045
    ESME_RINVSRCTON = 0x0000_0048
    ESME_RINVSRCNPI = 0x0000_0049
    ESME_RINVDSTTON = 0x0000_0050
    ESME_RINVDSTNPI = 0x0000_0051
    ESME_RINVSYSTYP = 0x0000_0053
    ESME_RINVREPFLAG = 0x0000_0054
    ESME_RINVNUMMSGS = 0x0000_0055
    ESME_RTHROTTLED = 0x0000_0058
    ESME_RINVSCHED = 0x0000_0061
    ESME_RINVEXPIRY = 0x0000_0062
    ESME_RINVDFTMSGID = 0x0000_0063
    ESME_RX_T_APPN = 0x0000_0064
    ESME_RX_P_APPN = 0x0000_0065
    ESME_RX_R_APPN = 0x0000_0066
    ESME_RQUERYFAIL = 0x0000_0067
    ESME_RINVOPTPARSTREAM = 0x0000_00C0
    ESME_ROPTPARNOTALLWD = 0x0000_00C1
    ESME_RINVPARLEN = 0x0000_00C2
    ESME_RMISSINGOPTPARAM = 0x0000_00C3
    ESME_RINVOPTPARAMVAL = 0x0000_00C4
    ESME_RDELIVERYFAILURE = 0x0000_00FE
    ESME_RUNKNOWNERR = 0x0000_00FF
    # SMPP 5.0 spellings of the same values (§4.7.6 of 5.0), kept as aliases.
    ESME_RINVTLVSTREAM = 0x0000_00C0
    ESME_RTLVNOTALLWD = 0x0000_00C1
    ESME_RINVTLVLEN = 0x0000_00C2
    ESME_RMISSINGTLV = 0x0000_00C3
    ESME_RINVTLVVAL = 0x0000_00C4

    @classmethod
    def describe(cls, value: int) -> str:
        """The status name for `value`, or a hex spelling for vendor and unassigned codes."""
        try:
            return cls(value).name
        except ValueError:
            if 0x400 <= value <= 0x4FF:
                return f"vendor_0x{value:08X}"
            return f"0x{value:08X}"


class Ton(IntEnum):
    """Type of Number (§5.2.5)."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER_NUMBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6


class Npi(IntEnum):
    """Numbering Plan Indicator (§5.2.6)."""

    UNKNOWN = 0
    ISDN = 1
    DATA = 3
    TELEX = 4
    LAND_MOBILE = 6
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    INTERNET = 14
    WAP_CLIENT_ID = 18


class EsmClass(IntFlag):
    """esm_class bits (§5.2.12).

    Bits 1-0 are the messaging mode, bits 5-2 the message type, bits 7-6 the GSM network features.
    """

    DEFAULT_MODE = 0x00
    DATAGRAM_MODE = 0x01
    FORWARD_MODE = 0x02
    STORE_AND_FORWARD_MODE = 0x03
    MODE_MASK = 0x03
    DELIVERY_RECEIPT = 0x04
    DELIVERY_ACK = 0x08
    MANUAL_USER_ACK = 0x10
    CONVERSATION_ABORT = 0x18
    INTERMEDIATE_NOTIFICATION = 0x20
    TYPE_MASK = 0x3C
    UDHI = 0x40
    REPLY_PATH = 0x80


class RegisteredDelivery(IntFlag):
    """registered_delivery bits (§5.2.17)."""

    NONE = 0x00
    RECEIPT_ALWAYS = 0x01
    RECEIPT_ON_FAILURE = 0x02
    RECEIPT_MASK = 0x03
    SME_ACK_DELIVERY = 0x04
    SME_ACK_USER = 0x08
    SME_ACK_BOTH = 0x0C
    INTERMEDIATE = 0x10


class DataCoding(IntEnum):
    """data_coding values of the low nibble scheme (§5.2.19)."""

    SMSC_DEFAULT = 0x00
    IA5 = 0x01
    OCTET_UNSPECIFIED_2 = 0x02
    LATIN_1 = 0x03
    OCTET_UNSPECIFIED = 0x04
    JIS = 0x05
    CYRILLIC = 0x06
    LATIN_HEBREW = 0x07
    UCS2 = 0x08
    PICTOGRAM = 0x09
    ISO_2022_JP = 0x0A
    EXTENDED_KANJI = 0x0D
    KS_C_5601 = 0x0E


class MessageState(IntEnum):
    """message_state values (§5.2.28), as in query_sm_resp and the message_state TLV."""

    SCHEDULED = 0
    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8
    SKIPPED = 9
