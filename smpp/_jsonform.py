"""A JSON-ready form of PDUs, for `smppgw pdu decode/encode`, logs at DEBUG and the simulator's inspection API.

Rule: `pdu_from_json(pdu_to_json(p)) == p` for every PDU; bytes appear as {"hex": ...} (with a "text" beside
it where the data_coding says how to read it), command_status by its spec name when it has one, TLVs by name.
"""

from __future__ import annotations

from typing import Any

from ._constants import CommandId, EsmClass, Status
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
from ._pdu import PDU_CLASSES, Pdu
from ._text import decode_text
from ._tlv import Tlvs, TlvValue, name_of, tag_of

__all__ = ["JsonFormError", "pdu_from_json", "pdu_to_json"]

_BY_NAME = {cls.name: cls for cls in PDU_CLASSES.values()}


class JsonFormError(ValueError):
    """The JSON does not describe a PDU; the message names the key."""


def _bytes_json(data: bytes) -> dict[str, Any]:
    return {"hex": data.hex()}


def _text_of(pdu: Pdu) -> dict[str, Any] | None:
    """The decoded text of a short_message or message_payload, UDH removed, or None when not text."""
    d = pdu.as_dict()
    data = d.get("short_message") or pdu.tlvs.get_bytes("message_payload")
    if not data or "data_coding" not in d:
        return None
    esm_class = d.get("esm_class", 0)
    udh = b""
    if esm_class & EsmClass.UDHI and data and data[0] + 1 <= len(data):
        udh, data = data[:data[0] + 1], data[data[0] + 1:]
    try:
        text = decode_text(d["data_coding"], data)
    except ValueError:
        return None
    out: dict[str, Any] = {"text": text}
    if udh:
        out["udh"] = udh.hex()
    return out


def pdu_to_json(pdu: Pdu) -> dict[str, Any]:
    """The PDU as a dict of JSON types: command, header, fields in wire order, TLVs by name, decoded text."""
    out: dict[str, Any] = {
        "command": pdu.name,
        "command_status": Status.describe(pdu.command_status),
        "sequence_number": pdu.sequence_number,
    }
    for f in type(pdu).fields:
        value = pdu[f.index]
        if isinstance(value, bytes):
            out[f.name] = _bytes_json(value)
        elif isinstance(f.spec, DestAddressList):
            out[f.name] = [
                {"dest_addr_ton": d.dest_addr_ton, "dest_addr_npi": d.dest_addr_npi,
                 "destination_addr": d.destination_addr} if isinstance(d, SmeAddress) else {"dl_name": d.dl_name}
                for d in value
            ]
        elif isinstance(f.spec, UnsuccessSmeList):
            out[f.name] = [
                {"dest_addr_ton": u.dest_addr_ton, "dest_addr_npi": u.dest_addr_npi,
                 "destination_addr": u.destination_addr, "error_status_code": Status.describe(u.error_status_code)}
                for u in value
            ]
        else:
            out[f.name] = int(value) if isinstance(value, int) else value
    if pdu.tlvs:
        pairs = pdu.tlvs.items_in_order()
        tags = [t for t, _ in pairs]
        items = [(name_of(t), _bytes_json(v) if isinstance(v, bytes) else v) for t, v in pairs]
        out["tlvs"] = dict(items) if len(set(tags)) == len(tags) else [list(kv) for kv in items]
    text = _text_of(pdu)
    if text is not None:
        out["decoded"] = text
    return out


def _status(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value in Status.__members__:
            return int(Status[value])
        try:
            return int(value, 0)
        except ValueError:
            pass
        if value.startswith("vendor_"):
            return int(value[len("vendor_"):], 16)
    raise JsonFormError(f"command_status: expected a status name or an integer, got {value!r}")


def _bytes_value(value: Any, key: str) -> bytes:
    if isinstance(value, dict) and "hex" in value:
        try:
            return bytes.fromhex(value["hex"])
        except (TypeError, ValueError):
            raise JsonFormError(f"{key}.hex: not hexadecimal") from None
    if isinstance(value, str):
        return value.encode("latin-1")
    raise JsonFormError(f"{key}: expected {{\"hex\": ...}} or a string, got {value!r}")


def _tlv_value(name: str, value: Any) -> TlvValue:
    if isinstance(value, dict):
        return _bytes_value(value, f"tlvs.{name}")
    if isinstance(value, int | str):
        return value
    raise JsonFormError(f"tlvs.{name}: expected a number, a string or {{\"hex\": ...}}, got {value!r}")


def pdu_from_json(obj: Any) -> Pdu:
    """Build a PDU from the form `pdu_to_json` prints ("decoded" is ignored; the bytes decide).

    Raises:
        JsonFormError: a key is missing, unknown or of the wrong type.
    """
    if not isinstance(obj, dict):
        raise JsonFormError("expected a JSON object")
    command = obj.get("command")
    cls = _BY_NAME.get(command) if isinstance(command, str) else None
    if cls is None:
        if isinstance(command, int) and command in PDU_CLASSES:
            cls = PDU_CLASSES[command]
        else:
            names = ", ".join(c.name for c in CommandId)
            raise JsonFormError(f"command: expected one of {names}, got {command!r}")
    known = {"command", "command_status", "sequence_number", "tlvs", "decoded", "command_id", "command_length",
             *(f.name for f in cls.fields)}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise JsonFormError(f"{unknown[0]}: not a field of {cls.name}")
    values: dict[str, Any] = {
        "command_status": _status(obj.get("command_status", 0)),
        "sequence_number": obj.get("sequence_number", 0),
    }
    if not isinstance(values["sequence_number"], int):
        raise JsonFormError(f"sequence_number: expected an integer, got {values['sequence_number']!r}")
    for f in cls.fields:
        if f.name not in obj:
            continue
        value = obj[f.name]
        if isinstance(f.spec, Octets):
            values[f.name] = _bytes_value(value, f.name)
        elif isinstance(f.spec, Int):
            if not isinstance(value, int):
                raise JsonFormError(f"{f.name}: expected an integer, got {value!r}")
            values[f.name] = value
        elif isinstance(f.spec, CStr):
            if not isinstance(value, str):
                raise JsonFormError(f"{f.name}: expected a string, got {value!r}")
            values[f.name] = value
        elif isinstance(f.spec, DestAddressList):
            values[f.name] = tuple(_dest(d, f"{f.name}[{i}]") for i, d in enumerate(_list(value, f.name)))
        else:
            values[f.name] = tuple(
                UnsuccessSme(u.get("dest_addr_ton", 0), u.get("dest_addr_npi", 0), u.get("destination_addr", ""),
                             _status(u.get("error_status_code", 0)))
                for u in _list(value, f.name)
            )
    tlvs = obj.get("tlvs")
    if tlvs is not None:
        pairs = tlvs.items() if isinstance(tlvs, dict) else tlvs
        try:
            values["tlvs"] = Tlvs.from_pairs(tuple((tag_of(str(k)), _tlv_value(str(k), v)) for k, v in pairs))
        except KeyError as exc:
            raise JsonFormError(f"tlvs: {exc.args[0]}") from None
    return cls(**values)


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise JsonFormError(f"{key}: expected a list, got {value!r}")
    return value


def _dest(d: Any, key: str) -> SmeAddress | DistributionList:
    if isinstance(d, dict) and "dl_name" in d:
        return DistributionList(d["dl_name"])
    if isinstance(d, dict):
        return SmeAddress(d.get("dest_addr_ton", 0), d.get("dest_addr_npi", 0), d.get("destination_addr", ""))
    raise JsonFormError(f"{key}: expected an object, got {d!r}")
