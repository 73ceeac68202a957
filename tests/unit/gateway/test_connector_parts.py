"""Connector.build_parts: the submit_sm of each part, built by position, equal to SubmitSm(**fields)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway._config import hash_api_key, parse_config
from gateway._connector import Connector
from gateway._daemon import Gateway
from gateway._model import Message, Part, StatusChange, new_message_id
from smpp import NO_TLVS, EsmClass, SubmitSm, Tlvs, encode_pdu, split_message
from smpp._segment import Concatenation, encode_message

SMSC: dict[str, Any] = {"name": "a", "system_id": "a", "password": "x", "dest_ton": 2, "dest_npi": 1}


def connector(tmp_path: Path, **smsc: Any) -> Connector:
    cfg = parse_config({
        "accounts": [{"id": "acme", "api_keys": [{"sha256": hash_api_key("k")}]}],
        "smscs": [{**SMSC, **smsc}],
        "routes": [{"prefix": "44", "smscs": ["a"]}],
        "messages": {"max_parts": 8},
        "store": {"path": str(tmp_path / "gw.db")},
    }, base_dir=tmp_path)
    gw = Gateway(cfg)
    return Connector(cfg.smscs[0], gw.core)


def message(text: str, source: str = "ACME", **kw: Any) -> Message:
    now = time.time()
    return Message(id=new_message_id(now), account="acme", to="447911123456", source=source, text=text,
                   created_at=now, expires_at=now + 60, parts=[Part()], history=[StatusChange(now, "queued")], **kw)


def reference(c: Connector, msg: Message, method: Concatenation) -> list[SubmitSm]:
    """What build_parts built with SubmitSm's keyword constructor before it built by position."""
    cfg = c.cfg
    assert msg.concat_ref is not None
    parts = split_message(encode_message(msg.text, method=method, allow_latin1=cfg.allow_latin1), method,
                          msg.concat_ref)
    ton, npi = (5, 0) if not msg.source.isdigit() else ((3, 0) if len(msg.source) <= 8 else (1, 1))
    out = []
    for part in parts:
        tlvs: dict[str, object] = {}
        if part.sar is not None:
            tlvs.update(sar_msg_ref_num=part.sar[0], sar_total_segments=part.sar[1], sar_segment_seqnum=part.sar[2])
        if part.payload is not None:
            tlvs["message_payload"] = part.payload
        out.append(SubmitSm(
            service_type=cfg.service_type, source_addr_ton=ton, source_addr_npi=npi, source_addr=msg.source,
            dest_addr_ton=cfg.dest_ton, dest_addr_npi=cfg.dest_npi, destination_addr=msg.to,
            esm_class=EsmClass.UDHI if part.udhi else 0, registered_delivery=1 if msg.registered_delivery else 0,
            data_coding=part.data_coding, short_message=part.short_message if part.payload is None else b"",
            tlvs=Tlvs(tlvs) if tlvs else NO_TLVS,  # type: ignore[arg-type]
        ))
    return out


@pytest.mark.parametrize(("concatenation", "method"), [
    ("udh8", Concatenation.UDH8), ("udh16", Concatenation.UDH16), ("sar", Concatenation.SAR),
    ("payload", Concatenation.PAYLOAD),
])
@pytest.mark.parametrize(("text", "source", "receipt"), [
    ("hello", "ACME", True),
    ("x" * 400, "447700900123", False),
    ("Grüße € " * 30, "12345", True),
])
def test_build_parts_equals_the_keyword_built_pdus(tmp_path: Path, concatenation: str, method: Concatenation,
                                                    text: str, source: str, receipt: bool) -> None:
    c = connector(tmp_path, concatenation=concatenation, service_type="CMT")
    msg = message(text, source, registered_delivery=receipt)
    built = c.build_parts(msg)
    expected = reference(c, msg, method)
    assert built == expected
    assert [encode_pdu(p) for p in built] == [encode_pdu(p) for p in expected]
    assert all(type(p) is SubmitSm and p.sequence_number == 0 for p in built)
