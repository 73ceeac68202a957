"""Encode and decode PDUs, compiled from the declarations in _pdu.py.

Rule 1: the declarations are the only description of the wire format. At import, each PDU class gets a
generated fast encoder and decoder (straight-line code, no per-field interpretation) and shares one
interpreting slow path that says precisely what is wrong. The fast path runs first; when it fails on any
input, the slow path runs on the same input and raises the error (or returns what the fast path would have),
so both paths have one meaning and a test checks that they agree.
Rule 2: decoding raises nothing but RemoteProtocolError, which carries the status to answer with.
Rule 3: encoding raises nothing but EncodeError, which names the field.
"""

from __future__ import annotations

import struct
from typing import Any

from ._constants import RESPONSE_BIT, Status
from ._errors import EncodeError, RemoteProtocolError
from ._fields import (
    CStr,
    DestAddressList,
    DistributionList,
    Int,
    Octets,
    SmeAddress,
    UnsuccessSme,
    UnsuccessSmeList,
)
from ._pdu import PDU_CLASSES, FieldInfo, Pdu
from ._tlv import NO_TLVS, TLV_BY_TAG, Tlv, TlvKind, Tlvs, TlvValue, name_of

__all__ = [
    "DEFAULT_MAX_COMMAND_LENGTH",
    "HEADER_LENGTH",
    "decode_pdu",
    "decode_tlvs",
    "encode_pdu",
    "encode_tlvs",
]

HEADER_LENGTH = 16
DEFAULT_MAX_COMMAND_LENGTH = 64 * 1024

_HEADER = struct.Struct(">IIII")
_HEADER_UNPACK = _HEADER.unpack_from
_TLV_HEAD = struct.Struct(">HH")
_tuple_new = tuple.__new__
_INT_FORMAT = {1: "B", 2: "H", 4: "I"}


# ---- TLVs --------------------------------------------------------------------------------------------


def _tlv_error(msg: str, status: Status) -> RemoteProtocolError:
    return RemoteProtocolError(msg, status=status, field="tlvs")


def _decode_tlv_value(spec: Tlv, raw: bytes) -> TlvValue:
    kind = spec.kind
    if kind is TlvKind.U8 or kind is TlvKind.U16 or kind is TlvKind.U32:
        if len(raw) != kind.value and len(raw) not in spec.also_sizes:
            raise _tlv_error(
                f"TLV {spec.name} (0x{spec.tag:04x}) must be {kind.value} octets, got {len(raw)}",
                Status.ESME_RINVPARLEN,
            )
        return int.from_bytes(raw, "big")
    if kind is TlvKind.CSTR:
        if len(raw) > spec.max_len:
            raise _tlv_error(
                f"TLV {spec.name} (0x{spec.tag:04x}) is {len(raw)} octets, at most {spec.max_len} allowed",
                Status.ESME_RINVPARLEN,
            )
        # Lenient: several SMSCs send receipted_message_id without its NUL.
        nul = raw.find(0)
        return (raw if nul < 0 else raw[:nul]).decode("latin-1")
    # Octet strings are kept whatever their length: a receipt's network_error_code of the wrong size
    # must not cost the receipt.
    return raw


_CSTR_MAX = {t.tag: t.max_len for t in TLV_BY_TAG.values() if t.kind is TlvKind.CSTR}
# tag -> 1, 2 or 4 for integers, 0 for C-Octet strings; absent for octet strings and unknown tags.
_TLV_SIZE: dict[int, int] = {
    t.tag: (t.kind.value if isinstance(t.kind.value, int) else 0) for t in TLV_BY_TAG.values()
    if t.kind is not TlvKind.OCTETS
}


def decode_tlvs(data: bytes, pos: int, end: int) -> Tlvs:
    """The TLVs in `data[pos:end]`.

    Raises:
        RemoteProtocolError: ESME_RINVOPTPARSTREAM when the stream ends inside a TLV header,
            ESME_RINVPARLEN when a TLV's length runs past the PDU or does not fit its type.
    """
    if pos == end:
        return NO_TLVS
    pairs: list[tuple[int, TlvValue]] = []
    append = pairs.append
    sizes = _TLV_SIZE
    unpack = _TLV_HEAD.unpack_from
    while pos < end:
        if end - pos < 4:
            raise _tlv_error(f"{end - pos} octets after the last TLV, a TLV header needs 4",
                             Status.ESME_RINVOPTPARSTREAM)
        tag, length = unpack(data, pos)
        pos += 4
        nxt = pos + length
        if nxt > end:
            raise _tlv_error(f"TLV {name_of(tag)} says {length} octets, only {end - pos} remain",
                             Status.ESME_RINVPARLEN)
        size = sizes.get(tag)
        if size is None:
            append((tag, data[pos:nxt]))
        elif size and size == length:
            append((tag, int.from_bytes(data[pos:nxt], "big")))
        elif size == 0 and length <= _CSTR_MAX[tag] and data.find(0, pos, nxt) == nxt - 1:
            append((tag, data[pos:nxt - 1].decode("latin-1")))
        else:
            append((tag, _decode_tlv_value(TLV_BY_TAG[tag], data[pos:nxt])))
        pos = nxt
    return Tlvs.from_pairs(tuple(pairs))


def _encode_tlv_value(tag: int, value: object) -> bytes:
    spec = TLV_BY_TAG.get(tag)
    name = name_of(tag)
    if spec is None or spec.kind is TlvKind.OCTETS:
        if isinstance(value, str):
            value = value.encode("latin-1")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise EncodeError(f"expected bytes, got {type(value).__name__}", field=f"tlvs.{name}")
        raw = bytes(value)
        if spec is not None and not spec.min_len <= len(raw) <= spec.max_len:
            raise EncodeError(f"{len(raw)} octets, must be {spec.min_len} to {spec.max_len}", field=f"tlvs.{name}")
    elif spec.kind is TlvKind.CSTR:
        if not isinstance(value, str):
            raise EncodeError(f"expected text, got {type(value).__name__}", field=f"tlvs.{name}")
        raw = _cstr_bytes(value, spec.max_len, f"tlvs.{name}") + b"\0"
    else:
        size = spec.kind.value
        assert isinstance(size, int)
        if not isinstance(value, int):
            raise EncodeError(f"expected an integer, got {type(value).__name__}", field=f"tlvs.{name}")
        if not 0 <= value < 1 << (8 * size):
            raise EncodeError(f"{value} does not fit {size} octet(s)", field=f"tlvs.{name}")
        raw = value.to_bytes(size, "big")
    if len(raw) > 0xFFFF:
        raise EncodeError(f"{len(raw)} octets, a TLV holds at most 65535", field=f"tlvs.{name}")
    return _TLV_HEAD.pack(tag, len(raw)) + raw


def encode_tlvs(tlvs: Tlvs) -> bytes:
    """The wire form of `tlvs`, in their order.

    Raises:
        EncodeError: a value does not fit its tag; the error names it.
    """
    out: list[bytes] = []
    append = out.append
    pack = _TLV_HEAD.pack
    sizes = _TLV_SIZE
    for tag, value in tlvs.items_in_order():
        size = sizes.get(tag)
        if isinstance(value, bytes):
            bounds = _BOUNDED.get(tag)
            if size is None and (bounds[0] <= len(value) <= bounds[1] if bounds else len(value) <= 0xFFFF):
                append(pack(tag, len(value)))
                append(value)
                continue
        elif isinstance(value, int):
            if size and 0 <= value < _LIMIT[size]:
                append(pack(tag, size))
                append(value.to_bytes(size, "big"))
                continue
        elif (size == 0 and isinstance(value, str) and len(value) < _CSTR_MAX[tag] and "\0" not in value
              and value.isascii()):
            append(pack(tag, len(value) + 1))
            append(value.encode("ascii"))
            append(b"\0")
            continue
        append(_encode_tlv_value(tag, value))  # every other case, and every error
    return b"".join(out)


_LIMIT = {1: 1 << 8, 2: 1 << 16, 4: 1 << 32}
_BOUNDED = {t.tag: (t.min_len, t.max_len) for t in TLV_BY_TAG.values()
            if t.kind is TlvKind.OCTETS and (t.min_len > 0 or t.max_len < 0xFFFF)}


# ---- the interpreting slow path ----------------------------------------------------------------------


def _cstr_bytes(value: object, max_len: int, field: str) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"expected text, got {type(value).__name__}", field=field)
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"character {value[exc.start]!r} at {exc.start} is not one octet", field=field) from None
    if b"\0" in raw:
        raise EncodeError("contains a NUL character", field=field)
    if len(raw) > max_len - 1:
        raise EncodeError(f"{len(raw)} characters, at most {max_len - 1} allowed", field=field)
    return raw


def _int_bytes(value: object, size: int, field: str) -> bytes:
    if not isinstance(value, int):  # bool included, as struct.pack takes it: True is 1
        raise EncodeError(f"expected an integer, got {type(value).__name__}", field=field)
    if not 0 <= value < 1 << (8 * size):
        raise EncodeError(f"{value} does not fit {size} octet(s)", field=field)
    return value.to_bytes(size, "big")


def _encode_field(f: FieldInfo, value: object, where: str) -> bytes:
    spec = f.spec
    field = f"{where}.{f.name}"
    if isinstance(spec, Int):
        return _int_bytes(value, spec.size, field)
    if isinstance(spec, CStr):
        return _cstr_bytes(value, spec.max_len, field) + b"\0"
    if isinstance(spec, Octets):
        if not isinstance(value, bytes | bytearray | memoryview):
            raise EncodeError(f"expected bytes, got {type(value).__name__}", field=field)
        if len(value) > spec.max_len:
            raise EncodeError(f"{len(value)} octets, at most {spec.max_len} allowed (use message_payload "
                              "or segment the text)", field=field)
        return bytes((len(value),)) + bytes(value)
    if isinstance(spec, DestAddressList):
        return _encode_dest_list(value, spec, field)
    assert isinstance(spec, UnsuccessSmeList)
    return _encode_unsuccess_list(value, spec, field)


def _encode_dest_list(value: object, spec: DestAddressList, field: str) -> bytes:
    if not isinstance(value, tuple | list):
        raise EncodeError(f"expected a tuple of SmeAddress/DistributionList, got {type(value).__name__}",
                          field=field)
    if not 1 <= len(value) <= spec.max_items:
        raise EncodeError(f"{len(value)} destinations, must be 1 to {spec.max_items} (§4.5.1)", field=field)
    out = [bytes((len(value),))]
    for i, d in enumerate(value):
        item = f"{field}[{i}]"
        if isinstance(d, SmeAddress):
            out.append(b"\x01" + _int_bytes(d.dest_addr_ton, 1, item + ".dest_addr_ton")
                       + _int_bytes(d.dest_addr_npi, 1, item + ".dest_addr_npi")
                       + _cstr_bytes(d.destination_addr, 21, item + ".destination_addr") + b"\0")
        elif isinstance(d, DistributionList):
            out.append(b"\x02" + _cstr_bytes(d.dl_name, 21, item + ".dl_name") + b"\0")
        else:
            raise EncodeError(f"expected SmeAddress or DistributionList, got {type(d).__name__}", field=item)
    return b"".join(out)


def _encode_unsuccess_list(value: object, spec: UnsuccessSmeList, field: str) -> bytes:
    if not isinstance(value, tuple | list):
        raise EncodeError(f"expected a tuple of UnsuccessSme, got {type(value).__name__}", field=field)
    if len(value) > spec.max_items:
        raise EncodeError(f"{len(value)} entries, at most {spec.max_items}", field=field)
    out = [bytes((len(value),))]
    for i, u in enumerate(value):
        item = f"{field}[{i}]"
        if not isinstance(u, UnsuccessSme):
            raise EncodeError(f"expected UnsuccessSme, got {type(u).__name__}", field=item)
        out.append(_int_bytes(u.dest_addr_ton, 1, item + ".dest_addr_ton")
                   + _int_bytes(u.dest_addr_npi, 1, item + ".dest_addr_npi")
                   + _cstr_bytes(u.destination_addr, 21, item + ".destination_addr") + b"\0"
                   + _int_bytes(u.error_status_code, 4, item + ".error_status_code"))
    return b"".join(out)


def _encode_slow(pdu: Pdu) -> bytes:
    cls = type(pdu)
    where = cls.name
    command_status, sequence_number = pdu[0], pdu[1]
    _int_bytes(command_status, 4, f"{where}.command_status")
    _int_bytes(sequence_number, 4, f"{where}.sequence_number")
    body = b"".join([_encode_field(f, pdu[f.index], where) for f in cls.fields])
    tlvs = pdu[-1]
    if not isinstance(tlvs, Tlvs):
        raise EncodeError(f"expected Tlvs, got {type(tlvs).__name__}", field=f"{where}.tlvs")
    body += encode_tlvs(tlvs)
    return _HEADER.pack(HEADER_LENGTH + len(body), cls.command_id, command_status, sequence_number) + body


class _Reader:
    """Reads fields from data[pos:end] with precise errors; the slow path's cursor."""

    __slots__ = ("cls", "data", "end", "pos", "seq")

    def __init__(self, cls: type[Pdu], data: bytes, pos: int, end: int, seq: int) -> None:
        self.cls, self.data, self.pos, self.end, self.seq = cls, data, pos, end, seq

    def error(self, msg: str, status: Status, field: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"{self.cls.name}.{field}: {msg}", status=status, sequence_number=self.seq,
                                   command_id=self.cls.command_id, field=field)

    def int_(self, size: int, field: str) -> int:
        if self.pos + size > self.end:
            raise self.error("the PDU ends inside this field", Status.ESME_RINVCMDLEN, field)
        v = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return v

    def cstr(self, max_len: int, bad: Status, field: str) -> str:
        limit = min(self.end, self.pos + max_len)
        nul = self.data.find(0, self.pos, limit)
        if nul < 0:
            if limit == self.end and self.end - self.pos < max_len:
                raise self.error("the PDU ends before this C-Octet string's NUL", Status.ESME_RINVCMDLEN, field)
            raise self.error(f"longer than {max_len - 1} characters", bad, field)
        v = self.data[self.pos:nul].decode("latin-1")
        self.pos = nul + 1
        return v

    def read(self, f: FieldInfo) -> Any:
        spec = f.spec
        if isinstance(spec, Int):
            return self.int_(spec.size, f.name)
        if isinstance(spec, CStr):
            return self.cstr(spec.max_len, spec.bad, f.name)
        if isinstance(spec, Octets):
            n = self.int_(1, f.name)
            if n > spec.max_len:
                raise self.error(f"sm_length {n} is above {spec.max_len}", spec.bad, f.name)
            if self.pos + n > self.end:
                raise self.error(f"sm_length {n} runs past the end of the PDU", spec.bad, f.name)
            v = self.data[self.pos:self.pos + n]
            self.pos += n
            return v
        if isinstance(spec, DestAddressList):
            return self.dest_list(spec, f.name)
        assert isinstance(spec, UnsuccessSmeList)
        return self.unsuccess_list(f.name)

    def dest_list(self, spec: DestAddressList, field: str) -> tuple[SmeAddress | DistributionList, ...]:
        count = self.int_(1, "number_of_dests")
        if count == 0 or count > spec.max_items:
            raise self.error(f"number_of_dests {count} is not 1 to {spec.max_items}", spec.bad, "number_of_dests")
        items: list[SmeAddress | DistributionList] = []
        for i in range(count):
            item = f"{field}[{i}]"
            flag = self.int_(1, item + ".dest_flag")
            if flag == 1:
                ton = self.int_(1, item + ".dest_addr_ton")
                npi = self.int_(1, item + ".dest_addr_npi")
                addr = self.cstr(21, Status.ESME_RINVDSTADR, item + ".destination_addr")
                items.append(SmeAddress(ton, npi, addr))
            elif flag == 2:
                items.append(DistributionList(self.cstr(21, Status.ESME_RINVDLNAME, item + ".dl_name")))
            else:
                raise self.error(f"dest_flag {flag} is neither 1 (SME) nor 2 (list)", Status.ESME_RINVDESTFLAG,
                                 item + ".dest_flag")
        return tuple(items)

    def unsuccess_list(self, field: str) -> tuple[UnsuccessSme, ...]:
        count = self.int_(1, "no_unsuccess")
        items = []
        for i in range(count):
            item = f"{field}[{i}]"
            ton = self.int_(1, item + ".dest_addr_ton")
            npi = self.int_(1, item + ".dest_addr_npi")
            addr = self.cstr(21, Status.ESME_RINVDSTADR, item + ".destination_addr")
            err = self.int_(4, item + ".error_status_code")
            items.append(UnsuccessSme(ton, npi, addr, err))
        return tuple(items)


def _decode_slow(cls: type[Pdu], data: bytes, pos: int, end: int, command_status: int, seq: int) -> Pdu:
    start = pos
    is_resp = bool(cls.command_id & RESPONSE_BIT)
    reader = _Reader(cls, data, pos, end, seq)
    values: list[Any] = [command_status, seq]
    try:
        for f in cls.fields:
            if reader.pos == reader.end and is_resp:
                # Lenient (§4.1.2 and real SMSCs): a resp, above all an error resp, may stop early.
                values.append(f.default)
                continue
            values.append(reader.read(f))
        tlvs = decode_tlvs(data, reader.pos, end)
    except RemoteProtocolError as exc:
        if not is_resp:
            raise _with_header(exc, cls, seq) from None
        # Lenient: a resp whose body holds only TLVs (an error bind_resp with sc_interface_version).
        try:
            tlvs = decode_tlvs(data, start, end)
        except RemoteProtocolError:
            raise _with_header(exc, cls, seq) from None
        values = [command_status, seq, *(f.default for f in cls.fields)]
    values.append(tlvs)
    return _tuple_new(cls, values)


def _with_header(exc: RemoteProtocolError, cls: type[Pdu], seq: int) -> RemoteProtocolError:
    exc.sequence_number = seq
    exc.command_id = cls.command_id
    if exc.field == "tlvs":
        exc.args = (f"{cls.name}.{exc.args[0]}",) if not str(exc).startswith(cls.name) else exc.args
    return exc


# ---- the compiled fast path --------------------------------------------------------------------------


def _compile_decoder(cls: type[Pdu]) -> Any:
    """Straight-line decoder for one PDU class; falls back to _decode_slow on any failure."""
    lines = ["def decode(b, pos, end, cs, seq):", "    start = pos", "    try:"]
    is_resp = bool(cls.command_id & RESPONSE_BIT)
    if is_resp and cls.fields:
        lines.append("        if pos == end: return _tuple_new(_cls, (cs, seq, *_defaults, _NO_TLVS))")
    names: list[str] = []
    env: dict[str, Any] = {
        "_cls": cls, "_tuple_new": _tuple_new, "_NO_TLVS": NO_TLVS, "_slow": _decode_slow,
        "_decode_tlvs": decode_tlvs, "_defaults": tuple(f.default for f in cls.fields),
    }
    fields = list(cls.fields)
    i = 0
    while i < len(fields):
        f = fields[i]
        spec = f.spec
        var = f"v{f.index}"
        if isinstance(spec, Int):
            group = [f]
            while i + len(group) < len(fields) and isinstance(fields[i + len(group)].spec, Int):
                group.append(fields[i + len(group)])
            fmt = ">" + "".join(_INT_FORMAT[g.spec.size] for g in group)  # type: ignore[union-attr]
            targets = [f"v{g.index}" for g in group]
            octets = fields[i + len(group)] if i + len(group) < len(fields) and isinstance(
                fields[i + len(group)].spec, Octets) else None
            if octets is not None:  # sm_length read with the integers before it
                fmt += "B"
                targets.append("n")
            size = struct.calcsize(fmt)
            if len(targets) == 1 and size == 1:
                lines.append(f"        {var} = b[pos]; pos += 1")
            else:
                unpack = f"_u{f.index}"
                env[unpack] = struct.Struct(fmt).unpack_from
                lines.append(f"        {', '.join(targets)}, = {unpack}(b, pos); pos += {size}")
            names.extend(f"v{g.index}" for g in group)
            i += len(group)
            if octets is not None:
                ov = f"v{octets.index}"
                lines.append(f"        {ov} = b[pos:pos + n]; pos += n")
                lines.append(f"        if n > {octets.spec.max_len}: raise ValueError")  # type: ignore[union-attr]
                names.append(ov)
                i += 1
            continue
        if isinstance(spec, CStr):
            # Empty strings are common (service_type, schedule_delivery_time, validity_period): no slice then.
            lines.append(f"        i = b.index(0, pos, pos + {spec.max_len}); {var} = b[pos:i].decode('latin-1') "
                         "if i != pos else ''; pos = i + 1")
        elif isinstance(spec, Octets):
            lines.append(f"        n = b[pos]; pos += 1; {var} = b[pos:pos + n]; pos += n")
            lines.append(f"        if n > {spec.max_len}: raise ValueError")
        else:
            reader = f"_r{f.index}"
            env[reader] = _list_reader(cls, f)
            lines.append(f"        {var}, pos = {reader}(b, pos, end, seq)")
        names.append(var)
        i += 1
    lines.append("        if pos > end: raise ValueError")
    lines.append("        tl = _NO_TLVS if pos == end else _decode_tlvs(b, pos, end)")
    lines.append(f"        return _tuple_new(_cls, (cs, seq, {''.join(n + ', ' for n in names)}tl))")
    lines.append("    except Exception:")
    lines.append("        return _slow(_cls, b, start, end, cs, seq)")
    exec("\n".join(lines), env)
    fn = env["decode"]
    fn.__qualname__ = fn.__name__ = f"decode_{cls.name}"
    return fn


def _list_reader(cls: type[Pdu], f: FieldInfo) -> Any:
    def read(b: bytes, pos: int, end: int, seq: int) -> tuple[Any, int]:
        reader = _Reader(cls, b, pos, end, seq)
        return reader.read(f), reader.pos
    return read


def _compile_encoder(cls: type[Pdu]) -> Any:
    """Straight-line encoder for one PDU class; falls back to _encode_slow (which names the bad field)."""
    env: dict[str, Any] = {
        "_HDR": _HEADER.pack, "_slow": _encode_slow, "_encode_tlvs": encode_tlvs, "_NUL": b"\0", "_NO_TLVS": NO_TLVS,
        "_CID": cls.command_id,
    }
    unpack_targets = ", ".join(["cs", "seq", *(f"v{f.index}" for f in cls.fields), "tl"])
    checks: list[str] = []
    parts: list[str] = []
    fields = list(cls.fields)
    i = 0
    while i < len(fields):
        f = fields[i]
        spec = f.spec
        var = f"v{f.index}"
        if isinstance(spec, Int) or isinstance(spec, Octets):
            # A run of integers, and sm_length when an octet string follows them.
            group: list[FieldInfo] = []
            while i < len(fields) and isinstance(fields[i].spec, Int):
                group.append(fields[i])
                i += 1
            args = [f"v{g.index}" for g in group]
            fmt = ">" + "".join(_INT_FORMAT[g.spec.size] for g in group)  # type: ignore[union-attr]
            octets = fields[i] if i < len(fields) and isinstance(fields[i].spec, Octets) else None
            if octets is not None:
                ov = f"v{octets.index}"
                fmt += "B"
                args.append(f"len({ov})")
                checks.append(f"len({ov}) > {octets.spec.max_len}")  # type: ignore[union-attr]
            pack = f"_p{f.index}"
            env[pack] = struct.Struct(fmt).pack
            parts.append(f"{pack}({', '.join(args)})")
            if octets is not None:
                parts.append(f"v{octets.index}")
                i += 1
            continue
        if isinstance(spec, CStr):
            checks.append(f"len({var}) > {spec.max_len - 1}")
            checks.append(f"'\\0' in {var}")
            parts.append(f"{var}.encode('latin-1')")
            parts.append("_NUL")
        else:
            writer = f"_w{f.index}"
            env[writer] = _list_writer(cls, f)
            parts.append(f"{writer}({var})")
        i += 1
    lines = [
        "def encode(p):",
        "    try:",
        f"        {unpack_targets}, = p" if unpack_targets else "",
    ]
    if checks:
        lines.append(f"        if {' or '.join(checks)}: raise ValueError")
    if parts:
        lines.append(f"        body = b''.join(({', '.join(parts)},))")
    else:
        lines.append("        body = b''")
    lines.append("        if tl is not _NO_TLVS: body += _encode_tlvs(tl)")
    lines.append("        return _HDR(16 + len(body), _CID, cs, seq) + body")
    lines.append("    except Exception:")
    lines.append("        return _slow(p)")
    exec("\n".join(line for line in lines if line), env)
    fn = env["encode"]
    fn.__qualname__ = fn.__name__ = f"encode_{cls.name}"
    return fn


def _list_writer(cls: type[Pdu], f: FieldInfo) -> Any:
    def write(value: object) -> bytes:
        return _encode_field(f, value, cls.name)
    return write


_DECODERS: dict[int, Any] = {}
_ENCODERS: dict[type[Pdu], Any] = {}
for _cls in PDU_CLASSES.values():
    _DECODERS[_cls.command_id] = _compile_decoder(_cls)
    _ENCODERS[_cls] = _compile_encoder(_cls)
del _cls


def encode_pdu(pdu: Pdu) -> bytes:
    """The wire form of `pdu`, header included.

    Raises:
        EncodeError: a value does not fit its field (a 22-character system_id, a 300-octet short_message);
            the error names the field, for example `bind_transmitter.system_id`.
    """
    return _ENCODERS[type(pdu)](pdu)  # type: ignore[no-any-return]


def decode_pdu(data: bytes, offset: int = 0, end: int | None = None) -> Pdu:
    """The PDU in `data[offset:end]` (one whole PDU, header included).

    Args:
        data: the bytes; a PDU may sit inside a larger buffer, `offset` and `end` delimit it.
        offset: where the PDU starts.
        end: where it ends (default: the end of `data`). command_length must equal `end - offset`.

    Raises:
        RemoteProtocolError: the PDU is bad; `status` says what to answer. `framing` is set when the
            header itself is unusable (command_length below 16 or not the PDU's size).
    """
    if type(data) is not bytes:
        data = bytes(data)
    if end is None:
        end = len(data)
    if end - offset >= HEADER_LENGTH:  # the common case inline; _check_header says what is wrong otherwise
        command_length, command_id, command_status, seq = _HEADER_UNPACK(data, offset)
        if command_length == end - offset:
            decoder = _DECODERS.get(command_id)
            if decoder is not None:
                return decoder(data, offset + HEADER_LENGTH, end, command_status, seq)  # type: ignore[no-any-return]
    command_id, command_status, seq = _check_header(data, offset, end)
    return _DECODERS[command_id](data, offset + HEADER_LENGTH, end, command_status, seq)  # type: ignore[no-any-return]


def _check_header(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(command_id, command_status, sequence_number) of a PDU whose header is sound and command known."""
    if end - offset < HEADER_LENGTH:
        raise RemoteProtocolError(f"{end - offset} octets cannot hold a PDU header", status=Status.ESME_RINVCMDLEN,
                                  framing=True)
    command_length, command_id, command_status, seq = _HEADER.unpack_from(data, offset)
    if command_length != end - offset:
        raise RemoteProtocolError(f"command_length {command_length} but the PDU is {end - offset} octets",
                                  status=Status.ESME_RINVCMDLEN, sequence_number=seq, command_id=command_id,
                                  framing=True)
    if command_id not in _DECODERS:
        raise RemoteProtocolError(f"unknown command_id 0x{command_id:08x}", status=Status.ESME_RINVCMDID,
                                  sequence_number=seq, command_id=command_id)
    return command_id, command_status, seq


def decode_pdu_slow(data: bytes, offset: int = 0, end: int | None = None) -> Pdu:
    """decode_pdu through the interpreting path only (same header checks); the tests check both paths agree."""
    if type(data) is not bytes:
        data = bytes(data)
    if end is None:
        end = len(data)
    command_id, command_status, seq = _check_header(data, offset, end)
    cls = PDU_CLASSES[command_id]
    return _decode_slow(cls, data, offset + HEADER_LENGTH, end, command_status, seq)


def encode_pdu_slow(pdu: Pdu) -> bytes:
    """encode_pdu through the interpreting path only; the tests check both paths agree."""
    return _encode_slow(pdu)
