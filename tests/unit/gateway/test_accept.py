"""Submit requests into messages: strict decoding, per-message checks, durable accept and idempotency.

Part counts are checked against 3GPP TS 23.040 §9.2.3.24.1 and TS 23.038: one part carries 160 GSM 7-bit
septets, 140 Latin-1 octets or 70 UCS-2 characters; with an 8-bit concatenation UDH (6 octets) a part carries
153 septets, 134 octets or 67 UCS-2 characters; a GSM extension-table character (such as €) takes two septets.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway._accept import (
    Acceptor,
    ApiError,
    SubmitRequest,
    _error_slot,
    _slot_error,
    request_hash,
)
from gateway._config import AccountConfig, hash_api_key, parse_config
from gateway._daemon import Gateway
from gateway._model import MessageStatus
from gateway._store import Writes
from smpp import Concatenation, encode_message, split_message

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0

CONFIG: dict[str, Any] = {
    "accounts": [
        {"id": "acme", "api_keys": [{"sha256": hash_api_key("acme-key")}], "country": "GB"},
        {"id": "beta", "api_keys": [{"sha256": hash_api_key("beta-key")}], "default_source": "BETA",
         "allowed_sources": ["BETA", "INFO"]},
    ],
    "smscs": [{"name": "a", "system_id": "a", "password": "x"}],
    "routes": [{"prefix": "44", "smscs": ["a"]}, {"prefix": "33", "smscs": ["a"], "account": "beta"}],
    "numbering": {"countries": [{"country": "GB", "country_code": "44", "trunk_prefix": "0",
                                 "national_lengths": [10]}]},
    "messages": {"max_parts": 4, "default_validity_s": 3600, "max_validity_s": 86400},
    "store": {"path": "gw.db"},
}


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path))
    gateway.core.wall = lambda: NOW
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.store.run)
        yield gateway
        tg.cancel_scope.cancel()


def account(gw: Gateway, name: str) -> AccountConfig:
    acc = gw.config.account(name)
    assert acc is not None
    return acc


def req(**kw: Any) -> SubmitRequest:
    body = {"to": "+447911123456", "from": "ACME", "text": "hello", **kw}
    return Acceptor.decode_submit(json.dumps(body).encode())


def refused(gw: Gateway, request: SubmitRequest, name: str = "acme") -> ApiError:
    with pytest.raises(ApiError) as info:
        Acceptor(gw).build(request, account(gw, name), NOW)
    return info.value


# ---- decoding (Rule 1) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    (b"", 400, "malformed_json", None),
    (b"{\"to\": ", 400, "malformed_json", None),
    (b"[1, 2]", 422, "invalid_body", None),
    (b'{"text": "x"}', 422, "missing_field", "to"),
    (b'{"to": "447911123456"}', 422, "missing_field", "text"),
    (b'{"to": 447911123456, "text": "x"}', 422, "invalid_field", "to"),
    (b'{"to": "447911123456", "text": ""}', 422, "invalid_field", "text"),
    (b'{"to": "447911123456", "text": "x", "priority": 1}', 422, "unknown_field", "priority"),
    (b'{"to": "447911123456", "text": "x", "from": 7}', 422, "invalid_field", "from"),
    (b'{"to": "447911123456", "text": "x", "encoding": "utf8"}', 422, "invalid_field", "encoding"),
    (b'{"to": "447911123456", "text": "x", "send_at": "2030-01-01T00:00:00"}', 422, "invalid_field", "send_at"),
    (b'{"to": "447911123456", "text": "x", "send_at": "tomorrow"}', 422, "invalid_field", "send_at"),
    (b'{"to": "447911123456", "text": "x", "validity_s": 0}', 422, "invalid_field", "validity_s"),
    (b'{"to": "447911123456", "text": "x", "validity_s": "60"}', 422, "invalid_field", "validity_s"),
    (b'{"to": "447911123456", "text": "x", "reference": "' + b"r" * 65 + b'"}', 422, "invalid_field", "reference"),
])
def test_decode_refuses_with_the_field_named(body: bytes, status: int, code: str, field: str | None) -> None:
    with pytest.raises(ApiError) as info:
        Acceptor.decode_submit(body)
    err = info.value
    assert (err.status, err.code, err.field) == (status, code, field)
    if field is not None:
        assert err.message.startswith(f"{field}: ")


def test_decode_batch_names_the_message_and_field() -> None:
    body = b'{"messages": [{"to": "1", "text": "a"}, {"to": "2", "text": "b", "colour": "red"}]}'
    with pytest.raises(ApiError) as info:
        Acceptor.decode_batch(body)
    assert (info.value.code, info.value.field) == ("unknown_field", "messages[1].colour")
    with pytest.raises(ApiError) as info:
        Acceptor.decode_batch(b'{"messages": [{"to": "1", "text": 5}]}')
    assert (info.value.code, info.value.field) == ("invalid_field", "messages[0].text")
    with pytest.raises(ApiError) as info:
        Acceptor.decode_batch(b'{"messages": []}')
    assert info.value.field == "messages"
    with pytest.raises(ApiError) as info:
        Acceptor.decode_batch(json.dumps({"messages": [{"to": "1", "text": "a"}] * 1001}).encode())
    assert info.value.field == "messages"


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=5)))
def test_decode_of_any_json_is_a_request_or_a_4xx(value: object) -> None:
    body = json.dumps(value).encode()
    for decode in (Acceptor.decode_submit, Acceptor.decode_batch):
        try:
            decode(body)
        except ApiError as err:
            assert err.status in (400, 422)
            assert err.message


@given(st.dictionaries(st.sampled_from(["to", "from", "text", "encoding", "reference", "category"]),
                       st.text(alphabet="abc+0123456789", min_size=1, max_size=12), min_size=3))
def test_request_hash_is_canonical(fields: dict[str, str]) -> None:
    fields = {**fields, "to": "+447911123456", "text": "x", "encoding": "ucs2"}
    shuffled = dict(reversed(list(fields.items())))
    a = Acceptor.decode_submit(json.dumps(fields).encode())
    b = Acceptor.decode_submit(json.dumps(shuffled, indent=2).encode())
    assert request_hash("submit", a) == request_hash("submit", b)
    assert request_hash("submit", a) != request_hash("batch", a)


def test_request_hash_ignores_spelling_but_not_content() -> None:
    a = req(send_at="2030-01-01T00:00:00Z", reference=None)
    b = req(send_at="2030-01-01T01:00:00+01:00")
    c = req(send_at="2030-01-01T00:00:01Z")
    assert request_hash("submit", a) == request_hash("submit", b)
    assert request_hash("submit", a) != request_hash("submit", c)


def test_error_slot_round_trip() -> None:
    err = ApiError(422, "invalid_field", "to: 3 digits, at least 7 expected, a,b", field="to", reason="too_short")
    slot = _error_slot(err)
    assert slot.startswith("!") and "," not in slot
    back = _slot_error(slot)
    assert (back.status, back.code, back.message, back.field, back.reason) == (422, "invalid_field", err.message,
                                                                              "to", "too_short")


# ---- one message (Rule 2) --------------------------------------------------------------------------------


async def test_build_normalises_the_destination_by_the_account_country(gw: Gateway) -> None:
    acc = Acceptor(gw)
    for raw in ("07911 123456", "+44 7911 123456", "0044 7911 123456", "447911123456"):
        msg = acc.build(req(to=raw), account(gw, "acme"), NOW)
        assert msg.to == "447911123456"
    err = refused(gw, req(to="07911 12345"))
    assert (err.code, err.field, err.reason) == ("invalid_field", "to", "too_short")
    assert err.message.startswith("to: ")
    err = refused(gw, req(to="07911123456"), "beta")  # beta has no country: a national number cannot be read
    assert (err.field, err.reason) == ("to", "no_rule")
    err = refused(gw, req(to="+44 79x1"))
    assert (err.field, err.reason) == ("to", "bad_character")


async def test_build_fills_the_message(gw: Gateway) -> None:
    msg = Acceptor(gw).build(req(reference="ref-1", category="otp", callback_url="https://cb.example/x"),
                             account(gw, "acme"), NOW, key="k1")
    assert (msg.account, msg.source, msg.text, msg.encoding) == ("acme", "ACME", "hello", "auto")
    assert msg.status is MessageStatus.QUEUED
    assert (msg.created_at, msg.status_at, msg.send_at) == (NOW, NOW, None)
    assert msg.expires_at == NOW + 3600  # messages.default_validity_s
    assert (msg.reference, msg.category, msg.callback_url, msg.idempotency_key) == ("ref-1", "otp",
                                                                                    "https://cb.example/x", "k1")
    assert len(msg.parts) == 1 and msg.parts[0].smsc_message_id is None
    assert [h.status for h in msg.history] == ["queued"]
    assert len(msg.id) == 26


async def test_sender_rules(gw: Gateway) -> None:
    acc = Acceptor(gw)
    body = {"to": "+447911123456", "text": "x"}
    no_from = Acceptor.decode_submit(json.dumps(body).encode())
    err = refused(gw, no_from, "acme")
    assert (err.code, err.field) == ("missing_field", "from")
    assert acc.build(no_from, account(gw, "beta"), NOW).source == "BETA"  # the account's default_source
    assert acc.build(req(**{"from": "INFO"}), account(gw, "beta"), NOW).source == "INFO"
    err = refused(gw, req(**{"from": "SPOOF"}), "beta")
    assert (err.code, err.field) == ("invalid_field", "from")


async def test_a_route_must_exist_for_the_account(gw: Gateway) -> None:
    err = refused(gw, req(to="+33612345678"), "acme")
    assert (err.status, err.code, err.field) == (422, "no_route", "to")
    msg = Acceptor(gw).build(req(to="+33612345678", **{"from": "BETA"}), account(gw, "beta"), NOW)
    assert msg.to == "33612345678"


GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"


@pytest.mark.parametrize(("text", "encoding", "parts"), [
    ("a" * 160, "auto", 1),
    ("a" * 161, "auto", 2),
    ("a" * 306, "auto", 2),
    ("a" * 307, "auto", 3),
    ("€" * 80, "auto", 1),          # 160 septets: each € is ESC + 0x65
    ("€" * 81, "gsm7", 2),
    ("ж" * 70, "auto", 1),          # Cyrillic: UCS-2
    ("ж" * 71, "auto", 2),
    ("ж" * 134, "ucs2", 2),
    ("ж" * 135, "ucs2", 3),
    ("a" * 70, "ucs2", 1),
    ("ñ" * 140, "latin1", 1),
    ("ñ" * 141, "latin1", 2),
    ("😀" * 35, "auto", 1),         # outside the BMP: a surrogate pair, two UCS-2 units each
    ("😀" * 36, "auto", 2),
    ("`" * 70, "auto", 1),          # ASCII that GSM 7-bit lacks: UCS-2, still one part at 70
    ("`" * 71, "auto", 2),
    ("\t" * 70, "auto", 1),
    ("{" * 70, "auto", 1),          # escaped in GSM 7-bit: 140 septets
])
async def test_parts_follow_23_040(gw: Gateway, text: str, encoding: str, parts: int) -> None:
    msg = Acceptor(gw).build(req(text=text, encoding=encoding), account(gw, "acme"), NOW)
    assert len(msg.parts) == parts
    assert msg.encoding == encoding


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=GSM_BASIC, min_size=1, max_size=4 * 153 + 20))
async def test_gsm_part_count_property(gw: Gateway, text: str) -> None:
    expected = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    try:
        msg = Acceptor(gw).build(req(text=text), account(gw, "acme"), NOW)
    except ApiError as err:
        assert (err.code, expected > 4) == ("too_long", True)
    else:
        assert len(msg.parts) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=70))
async def test_short_ascii_is_one_part_as_the_encoder_counts_it(gw: Gateway, text: str) -> None:
    """The part count of a short ASCII text is not encoded at accept: it must agree with the encoder's."""
    msg = Acceptor(gw).build(req(text=text), account(gw, "acme"), NOW)
    parts = split_message(encode_message(text, method=Concatenation.UDH8), Concatenation.UDH8, 1)
    assert len(msg.parts) == 1 == len(parts)  # as the connector will split it


async def test_text_that_the_encoding_cannot_carry_or_too_long(gw: Gateway) -> None:
    err = refused(gw, req(text="Привет", encoding="latin1"))
    assert (err.code, err.field) == ("invalid_field", "text")
    assert "Latin-1" in err.message
    err = refused(gw, req(text="日本", encoding="gsm7"))
    assert (err.code, err.field) == ("invalid_field", "text")
    err = refused(gw, req(text="a" * (4 * 153 + 1)))  # max_parts is 4
    assert (err.status, err.code, err.field) == (422, "too_long", "text")
    err = refused(gw, req(text="ж" * (4 * 67 + 1)))
    assert err.code == "too_long" and "5 parts" in err.message
    err = refused(gw, req(text="x" * 100_000))  # refused before any encoding work
    assert err.code == "too_long"


async def test_times(gw: Gateway) -> None:
    acc = Acceptor(gw)
    at = datetime.fromtimestamp(NOW, UTC) + timedelta(hours=2)
    msg = acc.build(req(send_at=at.isoformat(), validity_s=600), account(gw, "acme"), NOW)
    assert msg.send_at == NOW + 7200
    assert msg.expires_at == NOW + 7200 + 600
    past = datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=1)
    assert refused(gw, req(send_at=past.isoformat())).field == "send_at"
    far = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=86401)
    assert refused(gw, req(send_at=far.isoformat())).field == "send_at"
    assert refused(gw, req(validity_s=86400.5)).field == "validity_s"
    assert acc.build(req(validity_s=86400), account(gw, "acme"), NOW).expires_at == NOW + 86400


@pytest.mark.parametrize("url", ["ftp://h/x", "http://", "https:///path", "mailto:a@b", "http://h:99999/",
                                 "http://h/ x", "javascript:alert(1)", "//h/x"])
async def test_callback_url_must_be_http(gw: Gateway, url: str) -> None:
    err = refused(gw, req(callback_url=url))
    assert (err.code, err.field) == ("invalid_field", "callback_url")


# ---- accepting and idempotency (Rules 3 and 4) ------------------------------------------------------------


async def test_accepted_messages_are_durable_and_queued(gw: Gateway) -> None:
    out = await Acceptor(gw).submit(account(gw, "acme"), [req(), req(to="+1"), req(text="two")], batch=True)
    assert not out.replayed
    ok = [r for r in out.results if not isinstance(r, ApiError)]
    assert len(ok) == 2 and isinstance(out.results[1], ApiError)
    for msg in ok:
        stored = gw.store.get(msg.id)
        assert stored is not None and stored.text == msg.text
        assert msg.id in gw.core.messages
    assert gw.core.ready_count == 2


async def test_accepted_messages_take_the_store_s_bulk_lane(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, bool]] = []
    write = gw.store.write

    async def spy(writes: Writes, *, bulk: bool = False) -> list[int]:
        seen.append((len(writes.messages), len(writes.idempotency), bulk))
        return await write(writes, bulk=bulk)

    monkeypatch.setattr(gw.store, "write", spy)
    acme = account(gw, "acme")
    await Acceptor(gw).submit(acme, [req(), req(text="two")], batch=True, idempotency_key="b",
                              body_hash="h")
    # New rows only (Rule 4 of _store): the SMSC sessions' writes may commit before them.
    assert seen == [(2, 1, True)]


async def test_idempotent_replay_and_conflict(gw: Gateway) -> None:
    acceptor = Acceptor(gw)
    acme = account(gw, "acme")
    first = req(text="once")
    h = request_hash("submit", first)
    a = await acceptor.submit(acme, [first], batch=False, idempotency_key="k", body_hash=h)
    b = await acceptor.submit(acme, [req(text="once")], batch=False, idempotency_key="k", body_hash=h)
    assert b.replayed and not a.replayed
    assert [m.id for m in b.results] == [m.id for m in a.results]  # type: ignore[union-attr]
    assert len(gw.core.messages) == 1
    other = req(text="twice")
    with pytest.raises(ApiError) as info:
        await acceptor.submit(acme, [other], batch=False, idempotency_key="k", body_hash=request_hash("submit", other))
    assert (info.value.status, info.value.code) == (409, "idempotency_conflict")
    # Keys belong to an account: another account's "k" is a new request.
    beta = await acceptor.submit(account(gw, "beta"), [req(**{"from": "BETA"})], batch=False,
                                 idempotency_key="k", body_hash=h)
    assert not beta.replayed and len(gw.core.messages) == 2
    assert acceptor.idempotency_keys_held == 0


async def test_batch_replay_keeps_each_result(gw: Gateway) -> None:
    acceptor = Acceptor(gw)
    acme = account(gw, "acme")
    items = [req(), req(to="+33612345678"), req(text="ж" * 300)]
    a = await acceptor.submit(acme, items, batch=True, idempotency_key="b1", body_hash="h")
    b = await acceptor.submit(acme, items, batch=True, idempotency_key="b1", body_hash="h")
    assert b.replayed
    for x, y in zip(a.results, b.results, strict=True):
        if isinstance(x, ApiError):
            assert isinstance(y, ApiError)
            assert (x.status, x.code, x.message, x.field) == (y.status, y.code, y.message, y.field)
        else:
            assert not isinstance(y, ApiError) and y.id == x.id
    assert len(gw.core.messages) == 1


async def test_a_refused_single_submit_is_not_remembered(gw: Gateway) -> None:
    acceptor = Acceptor(gw)
    acme = account(gw, "acme")
    out = await acceptor.submit(acme, [req(to="+1")], batch=False, idempotency_key="k", body_hash="h")
    assert isinstance(out.results[0], ApiError)
    assert gw.store.find_idempotency("acme", "k") is None


async def test_concurrent_duplicates_make_one_message(gw: Gateway) -> None:
    acceptor = Acceptor(gw)
    acme = account(gw, "acme")
    outcomes = []

    async def one() -> None:
        outcomes.append(await acceptor.submit(acme, [req()], batch=False, idempotency_key="same", body_hash="h"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    ids = {o.results[0].id for o in outcomes}  # type: ignore[union-attr]
    assert len(ids) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    assert len(gw.core.messages) == 1
    assert acceptor.idempotency_keys_held == 0


async def test_intake_refusals(gw: Gateway) -> None:
    acceptor = Acceptor(gw)
    acme = account(gw, "acme")
    gw.draining = True
    with pytest.raises(ApiError) as info:
        await acceptor.submit(acme, [req()], batch=False)
    assert (info.value.status, info.value.code) == (503, "draining")
    gw.draining = False
    gw.config = msgspec.structs.replace(gw.config, store=msgspec.structs.replace(gw.config.store, max_queue=2))
    await acceptor.submit(acme, [req()], batch=False)
    with pytest.raises(ApiError) as info:
        await acceptor.submit(acme, [req(), req()], batch=True)
    assert (info.value.status, info.value.code) == (503, "queue_full")
    assert info.value.headers == {"Retry-After": "1"}
    assert len(gw.core.messages) == 1
