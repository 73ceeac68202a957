"""Property tests of the codec: round trips, robustness against any input, and fast/slow path agreement.

Rule: the strategies are derived from the PDU classes' own `fields` specs and the TLV table, so a new field or
TLV is fuzzed without touching this file. Properties:
  (a) decode(encode(pdu)) == pdu for every valid PDU of every class;
  (b) decoding any octets (random, or a valid PDU mutated) returns a Pdu or raises RemoteProtocolError, and a
      decoded PDU re-encodes (or raises EncodeError) and decodes again to itself;
  (c) the compiled fast path and the interpreting slow path agree: same PDU or same status for decoding,
      same octets or an EncodeError for the same field for encoding, valid values or not.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpp import (
    PDU_CLASSES,
    TLV_BY_TAG,
    TLVS,
    DistributionList,
    EncodeError,
    Pdu,
    RemoteProtocolError,
    SmeAddress,
    Status,
    Tlv,
    TlvKind,
    Tlvs,
    TlvValue,
    UnsuccessSme,
    decode_pdu,
    encode_pdu,
)
from smpp._codec import decode_pdu_slow, encode_pdu_slow
from smpp._fields import CStr, DestAddressList, FieldSpec, Int, Octets, UnsuccessSmeList

ALL_CLASSES = sorted(PDU_CLASSES.values(), key=lambda c: c.command_id)
COMMAND_IDS = sorted(PDU_CLASSES)

# Each property's budget; the whole file runs in a few seconds on the 2-core reference machine.
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_CLASS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies from the declarations ------------------------------------------------------------------------

LIST_ITEMS = 6  # a list field's items per example (the specs allow 254; 254 is tested in test_codec.py)


def c_text(max_chars: int) -> st.SearchStrategy[str]:
    """Text a C-Octet String of `max_chars` characters (NULL excluded) can carry: Latin-1 without NUL."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=max_chars)


def uint(size: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << (8 * size)) - 1)


def field_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Valid values of a mandatory field, from its wire spec."""
    if isinstance(spec, Int):
        return uint(spec.size)
    if isinstance(spec, CStr):
        return c_text(spec.max_len - 1)
    if isinstance(spec, Octets):
        return st.binary(max_size=spec.max_len)
    if isinstance(spec, DestAddressList):
        entry = st.one_of(st.builds(SmeAddress, uint(1), uint(1), c_text(20)), st.builds(DistributionList, c_text(20)))
        return st.lists(entry, min_size=1, max_size=min(LIST_ITEMS, spec.max_items)).map(tuple)
    assert isinstance(spec, UnsuccessSmeList)
    item = st.builds(UnsuccessSme, uint(1), uint(1), c_text(20), uint(4))
    return st.lists(item, max_size=min(LIST_ITEMS, spec.max_items)).map(tuple)


def tlv_values(tlv: Tlv) -> st.SearchStrategy[TlvValue]:
    """Valid values of a TLV of the table."""
    if tlv.kind is TlvKind.CSTR:
        return c_text(tlv.max_len - 1)
    if isinstance(tlv.kind.value, int):
        return uint(tlv.kind.value)
    return st.binary(min_size=tlv.min_len, max_size=min(tlv.max_len, 300))


UNKNOWN_TAGS = st.one_of(st.integers(0x1400, 0x3FFF), st.integers(0, 0xFFFF)).filter(lambda t: t not in TLV_BY_TAG)
TLV_PAIR = st.one_of(
    st.sampled_from(TLVS).flatmap(lambda t: st.tuples(st.just(t.tag), tlv_values(t))),
    st.tuples(UNKNOWN_TAGS, st.binary(max_size=40)),
)
TLVS_STRATEGY = st.lists(TLV_PAIR, max_size=6).map(lambda pairs: Tlvs.from_pairs(tuple(pairs)))


def pdus(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    """Valid PDUs of `cls`: every field drawn from its spec, any header, any TLVs."""
    kwargs: dict[str, st.SearchStrategy[Any]] = {f.name: field_values(f.spec) for f in cls.fields}
    return st.builds(cls, command_status=uint(4), sequence_number=uint(4), tlvs=TLVS_STRATEGY, **kwargs)


ANY_PDU = st.sampled_from(ALL_CLASSES).flatmap(pdus)


# ---- mutations --------------------------------------------------------------------------------------------


def _with_length(data: bytes) -> bytes:
    """`data` with command_length set to its size (so the mutation reaches the body decoder)."""
    return len(data).to_bytes(4, "big") + data[4:] if len(data) >= 4 else data


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid PDU's octets, damaged one of the ways a wire or a buggy peer damages them."""
    data = bytearray(encode_pdu(draw(ANY_PDU)))
    how = draw(st.sampled_from(["flip", "byte", "truncate", "truncate_fixed", "length", "insert", "delete",
                                "body_only"]))
    if how == "flip":
        # Mostly in the body: a flip in command_length is a framing error whatever else it hits.
        low = 16 if len(data) > 16 and draw(st.integers(0, 3)) else 0
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(low, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "byte":
        i = draw(st.integers(16, max(16, len(data) - 1))) if len(data) > 16 else 15
        data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if how == "truncate_fixed":
        return _with_length(bytes(data[:draw(st.integers(16, len(data)))]))
    if how == "length":
        data[0:4] = draw(uint(4)).to_bytes(4, "big")
        return bytes(data)
    if how == "insert":
        i = draw(st.integers(16, len(data)))
        return _with_length(bytes(data[:i]) + draw(st.binary(min_size=1, max_size=8)) + bytes(data[i:]))
    if how == "delete":
        i = draw(st.integers(16, len(data)))
        return _with_length(bytes(data[:i]) + bytes(data[i + draw(st.integers(1, 8)):]))
    # A valid header of any command with another command's body, or random octets.
    body = draw(st.one_of(st.binary(max_size=80), st.just(bytes(data[16:]))))
    return struct.pack(">IIII", 16 + len(body), draw(st.sampled_from(COMMAND_IDS)), 0, 1) + body


@st.composite
def headed(draw: st.DrawFn) -> bytes:
    """A consistent header of a known command over random body octets."""
    body = draw(st.binary(max_size=120))
    return struct.pack(">IIII", 16 + len(body), draw(st.sampled_from(COMMAND_IDS)), draw(uint(4)), draw(uint(4))) \
        + body


ANY_INPUT = st.one_of(st.binary(max_size=64), headed(), mutated())


def _header_is_valid(data: bytes) -> bool:
    return (len(data) >= 16 and int.from_bytes(data[:4], "big") == len(data)
            and int.from_bytes(data[4:8], "big") in PDU_CLASSES)


def _decode(fn: Any, data: bytes) -> Pdu | RemoteProtocolError:
    try:
        result = fn(data)
    except RemoteProtocolError as exc:
        return exc
    assert isinstance(result, Pdu)
    return result


def _encode(fn: Any, pdu: Pdu) -> bytes | EncodeError:
    try:
        result = fn(pdu)
    except EncodeError as exc:
        return exc
    assert isinstance(result, bytes)
    return result


# ---- (a) round trips ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.name)
@PER_CLASS
@given(data=st.data())
def test_every_valid_pdu_round_trips(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(pdus(cls))
    wire = encode_pdu(pdu)
    assert wire == encode_pdu_slow(pdu)
    assert int.from_bytes(wire[:4], "big") == len(wire)
    assert int.from_bytes(wire[4:8], "big") == cls.command_id
    back = decode_pdu(wire)
    assert back == pdu
    assert decode_pdu_slow(wire) == pdu


@FAST
@given(st.lists(ANY_PDU, min_size=1, max_size=5))
def test_pdus_in_one_buffer_decode_by_offset(batch: list[Pdu]) -> None:
    stream = b"".join(encode_pdu(p) for p in batch)
    offset = 0
    for pdu in batch:
        end = offset + int.from_bytes(stream[offset:offset + 4], "big")
        assert decode_pdu(stream, offset, end) == pdu
        offset = end


# ---- (b) robustness -----------------------------------------------------------------------------------------


def _check_robust(data: bytes) -> None:
    result = _decode(decode_pdu, data)
    if isinstance(result, RemoteProtocolError):
        assert isinstance(result.status, Status)
        assert result.status != Status.ESME_ROK
        if len(data) < 16:
            assert result.framing and result.sequence_number is None
        else:
            assert result.sequence_number == int.from_bytes(data[12:16], "big")
            assert result.framing == (int.from_bytes(data[:4], "big") != len(data))
        return
    assert _header_is_valid(data)
    again = _encode(encode_pdu, result)
    if isinstance(again, bytes):
        # Whatever was decoded leniently re-encodes canonically and decodes to the same value.
        assert decode_pdu(again) == result
        assert encode_pdu(decode_pdu(again)) == again


@FAST
@given(st.binary(max_size=200))
def test_any_octets_decode_to_a_pdu_or_a_remote_protocol_error(data: bytes) -> None:
    _check_robust(data)


@FAST
@given(headed())
def test_a_known_header_over_random_octets_decodes_or_raises_remote_protocol_error(data: bytes) -> None:
    _check_robust(data)


@FAST
@given(mutated())
def test_a_mutated_pdu_decodes_or_raises_remote_protocol_error(data: bytes) -> None:
    _check_robust(data)


# ---- (c) fast and slow paths agree ---------------------------------------------------------------------------


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_INPUT)
def test_fast_and_slow_decoders_agree(data: bytes) -> None:
    fast = _decode(decode_pdu, data)
    if not _header_is_valid(data):
        # decode_pdu_slow interprets bodies only; header errors are decode_pdu's own (see test_codec.py).
        assert isinstance(fast, RemoteProtocolError)
        return
    slow = _decode(decode_pdu_slow, data)
    if isinstance(fast, RemoteProtocolError):
        assert isinstance(slow, RemoteProtocolError), f"fast raised {fast!r}, slow returned {slow!r}"
        assert (slow.status, slow.field, slow.sequence_number, slow.command_id) == \
               (fast.status, fast.field, fast.sequence_number, fast.command_id)
    else:
        assert slow == fast


# Values that do not fit a field: out of range, wrong type, too long, non-Latin-1, NUL inside, wrong items.
BAD_SCALARS = st.one_of(
    st.integers(-(1 << 40), 1 << 40),
    st.booleans(),
    st.text(max_size=80),
    st.binary(max_size=300),
    st.none(),
    st.floats(allow_nan=False),
    st.tuples(st.integers(0, 3)),
)
BAD_ITEMS = st.one_of(
    st.builds(SmeAddress, st.integers(-2, 300), st.integers(-2, 300), st.text(max_size=25)),
    st.builds(DistributionList, st.text(max_size=25)),
    st.builds(UnsuccessSme, st.integers(-2, 300), st.integers(0, 3), st.text(max_size=25),
              st.integers(-1, 1 << 33)),
    BAD_SCALARS,
)
BAD_LISTS = st.one_of(st.lists(BAD_ITEMS, max_size=4).map(tuple), st.lists(BAD_ITEMS, max_size=3))
BAD_TLV_VALUES = st.one_of(st.integers(-(1 << 33), 1 << 33), st.booleans(), st.text(max_size=300),
                           st.binary(max_size=300), st.none(), st.floats(allow_nan=False))
BAD_TLVS = st.one_of(
    st.lists(st.tuples(st.sampled_from([t.tag for t in TLVS] + [0x1400]), BAD_TLV_VALUES), min_size=1,
             max_size=3).map(lambda pairs: Tlvs.from_pairs(tuple(pairs))),
    st.dictionaries(st.text(max_size=5), st.integers()),
    st.sampled_from([None, (), 0, 1, "tlvs", Tlvs()]),
)


@st.composite
def damaged_pdus(draw: st.DrawFn) -> Pdu:
    """A valid PDU with one or two of its header, body or TLV values replaced by values that do not fit."""
    pdu = draw(ANY_PDU)
    cls = type(pdu)
    changes: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(cls.field_names))
        spec = next((f.spec for f in cls.fields if f.name == name), None)
        if name == "tlvs":
            changes[name] = draw(BAD_TLVS)
        elif isinstance(spec, DestAddressList | UnsuccessSmeList):
            changes[name] = draw(BAD_LISTS)
        else:
            changes[name] = draw(BAD_SCALARS)
    return pdu.replace(**changes)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ANY_PDU, damaged_pdus()))
def test_fast_and_slow_encoders_agree(pdu: Pdu) -> None:
    fast = _encode(encode_pdu, pdu)
    slow = _encode(encode_pdu_slow, pdu)
    if isinstance(fast, EncodeError):
        assert isinstance(slow, EncodeError), f"fast refused {fast}, slow encoded"
        assert slow.field == fast.field
        assert fast.field.startswith((type(pdu).name + ".", "tlvs."))
    else:
        assert slow == fast, f"slow: {slow!r}"
        assert decode_pdu(fast) == decode_pdu_slow(fast)
