"""Wire types of mandatory PDU fields, as the PDU declarations name them.

Rule: a field spec says how the field sits on the wire and which command_status answers a bad value; it holds
no code. The codec (_codec.py) reads the specs once, at import, and compiles them into encoders and decoders.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._constants import Status

__all__ = [
    "CStr",
    "DestAddressList",
    "DistributionList",
    "FieldSpec",
    "Int",
    "Octets",
    "SmeAddress",
    "UnsuccessSme",
    "UnsuccessSmeList",
]


@dataclass(frozen=True, slots=True)
class Int:
    """An unsigned big-endian integer of `size` octets (1, 2 or 4; §3.1)."""

    size: int
    bad: Status = Status.ESME_RSYSERR


@dataclass(frozen=True, slots=True)
class CStr:
    """A C-Octet String (§3.1): ASCII text ended by a NUL; `max_len` counts the NUL, as the spec's tables do."""

    max_len: int
    bad: Status = Status.ESME_RSYSERR


@dataclass(frozen=True, slots=True)
class Octets:
    """An Octet String sized by the one-octet length field before it (sm_length before short_message, §4.4.1)."""

    max_len: int
    bad: Status = Status.ESME_RINVMSGLEN


@dataclass(frozen=True, slots=True)
class DestAddressList:
    """submit_multi's number_of_dests followed by that many dest_address entries (§4.5.1.1)."""

    max_items: int = 254
    bad: Status = Status.ESME_RINVNUMDESTS


@dataclass(frozen=True, slots=True)
class UnsuccessSmeList:
    """submit_multi_resp's no_unsuccess followed by that many unsuccess_sme entries (§4.5.2.1)."""

    max_items: int = 254
    bad: Status = Status.ESME_RINVNUMDESTS


FieldSpec = Int | CStr | Octets | DestAddressList | UnsuccessSmeList


@dataclass(frozen=True, slots=True)
class SmeAddress:
    """A dest_address entry with dest_flag 1: an SME address (§4.5.1.1)."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(frozen=True, slots=True)
class DistributionList:
    """A dest_address entry with dest_flag 2: the name of a distribution list (§4.5.1.1)."""

    dl_name: str = ""


@dataclass(frozen=True, slots=True)
class UnsuccessSme:
    """One destination that submit_multi could not reach, with the error for it (§4.5.2.1)."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0
