"""Accepting MT messages from the HTTP API: requests in, durable messages out.

Rule 1: a request is decoded strictly into the msgspec Structs below (exact types, unknown keys refused), and
whatever a JSON schema can say about a request is said by those Structs, so the decoder and /openapi.json
cannot disagree. A request that breaks the schema is refused whole (a batch too), naming the path
(`messages[3].to`).
Rule 2: what no schema can say (the number, the route, the sender, whether the text is encodable and how many
parts it takes, times against the clock) is checked per message; in a batch each message gets its own
result, in order, and the valid ones are accepted.
Rule 3: accepted means durable: every message of a request, and its idempotency record, are made durable in
one commit before the answer (`GatewayCore.accept`).
Rule 4: an Idempotency-Key makes a request take effect at most once per account. The same key with the same
body (by its canonical form) gives back the first request's results and creates nothing; the same key with
another body is a 409. Concurrent requests with one key are serialised: the second waits for the first and
replays its result. A single submit refused with an error is not remembered (nothing was created); a batch is
remembered with each message's result, errors included.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.lowlevel
import msgspec

from routing import InvalidMsisdn
from smpp import Alphabet, Concatenation, TextEncodeError, count_parts, encode_message

from ._config import AccountConfig
from ._model import Message, MessageStatus, Part, StatusChange, iso_time, new_message_id
from ._store import IdempotencyRecord, StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "Acceptor",
    "ApiError",
    "BatchRequest",
    "ErrorDetail",
    "ErrorResponse",
    "HistoryEntry",
    "MessageView",
    "Outcome",
    "PartView",
    "SubmitRequest",
    "SubmitResult",
    "request_hash",
]

Encoding = Literal["auto", "gsm7", "ucs2", "latin1"]
DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]

MAX_BATCH = 1000
"""The most messages one batch request may carry (an account's `max_batch` may lower it)."""
MAX_IDEMPOTENCY_KEY = 255


# ---- the wire types (docs/http-api.md; /openapi.json is generated from them) -------------------------


class SubmitRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One message to send."""

    to: Annotated[str, msgspec.Meta(
        min_length=1, max_length=32, examples=["+447911123456"],
        description="The destination: international (`+447911123456`, `447911123456`, `00447911123456`) or "
                    "national in the account's country or numbering.default_country (`07911 123456`).")]
    from_: Annotated[str, msgspec.Meta(
        min_length=1, max_length=20,
        description="The sender (alphanumeric sender id, short code or number); optional when the account "
                    "has a default_source.")] | None = msgspec.field(default=None, name="from")
    text: Annotated[str, msgspec.Meta(min_length=1, examples=["Your code is 1234"],
                                      description="The message text.")]
    encoding: Annotated[Encoding, msgspec.Meta(
        description="`auto` picks the alphabet that needs the fewest parts.")] = "auto"
    send_at: Annotated[datetime, msgspec.Meta(
        tz=True, description="Send no earlier than this (RFC 3339 with a UTC offset); in the future, and at "
                             "most messages.max_validity_s ahead.")] | None = None
    validity_s: Annotated[float, msgspec.Meta(
        gt=0, description="Seconds after send_at (or now) after which the message is dropped as expired; at "
                          "most messages.max_validity_s. Default messages.default_validity_s.")] | None = None
    reference: Annotated[str, msgspec.Meta(
        max_length=64, description="The client's own reference, echoed in status callbacks.")] | None = None
    callback_url: Annotated[str, msgspec.Meta(
        min_length=1, max_length=2048,
        description="http(s) URL for this message's status callbacks (else the account's).")] | None = None
    category: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Up to 1000 messages (or the account's max_batch) accepted in one durable write."""

    messages: Annotated[list[SubmitRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class SubmitResult(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted message."""

    id: str
    status: MessageStatus
    parts: Annotated[int, msgspec.Meta(ge=1, description="Parts the text takes (with an 8-bit UDH).")]
    to: Annotated[str, msgspec.Meta(description="The destination as an msisdn (E.164 digits, no '+').")]
    from_: str = msgspec.field(name="from")
    reference: str | None
    created_at: DateTime
    send_at: DateTime | None
    expires_at: DateTime


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What was refused: a stable `code`, a sentence, and the field it concerns when there is one."""

    code: str
    message: str
    field: str | None = None
    reason: Annotated[str, msgspec.Meta(
        description="A finer machine-readable reason (for `to`: empty, bad_character, no_rule, ...).")] | None = None


class ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail


class PartView(msgspec.Struct, frozen=True, kw_only=True):
    smsc_message_id: str | None
    receipt: str | None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: DateTime
    status: str
    detail: str | None
    smsc: str | None


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """A message as GET /v1/messages/{id} shows it (`Message.to_json`)."""

    id: str
    status: MessageStatus
    to: str
    from_: str = msgspec.field(name="from")
    account: str
    reference: str | None
    created_at: DateTime
    send_at: DateTime | None
    expires_at: DateTime
    status_at: DateTime
    attempts: int
    smsc: str | None
    parts: list[PartView]
    error: dict[str, Any] | None
    charged: bool
    history: list[HistoryEntry]


# ---- errors ----------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A request (or one message of a batch) refused: the HTTP status and the JSON error body's fields."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.reason = reason
        self.headers = headers

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(code=self.code, message=self.message, field=self.field,
                                               reason=self.reason))


def decode_error(exc: msgspec.DecodeError, body: bytes) -> ApiError:
    """The 400 or 422 for a body msgspec refused, naming the path it gives (`$.messages[3].to`)."""
    if not isinstance(exc, msgspec.ValidationError):
        if not body.strip():
            return ApiError(400, "malformed_json", "the body is empty; expected a JSON object")
        return ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}")
    text = str(exc)
    path = ""
    at = text.rfind(" - at `$")
    if at >= 0:
        path = text[at + 8:-1].lstrip(".")
        text = text[:at]
    for prefix, code in (("Object contains unknown field `", "unknown_field"),
                         ("Object missing required field `", "missing_field")):
        if text.startswith(prefix):
            name = text[len(prefix):-1]
            field = f"{path}.{name}" if path else name
            what = "unknown field (not part of the API)" if code == "unknown_field" else "required"
            return ApiError(422, code, f"{field}: {what}", field=field)
    if not path:
        return ApiError(422, "invalid_body", f"the body must be a JSON object: {text}")
    return ApiError(422, "invalid_field", f"{path}: {text[0].lower()}{text[1:]}", field=path)


# ---- idempotency -----------------------------------------------------------------------------------------


def request_hash(route: str, request: SubmitRequest | BatchRequest) -> str:
    """sha256 of the endpoint and the request's canonical form (the decoded Struct re-encoded: key order,
    whitespace, omitted defaults and datetime spelling do not change it)."""
    if isinstance(request, BatchRequest):
        canonical = BatchRequest(messages=[_utc(m) for m in request.messages])
        return hashlib.sha256(route.encode() + b"\n" + msgspec.json.encode(canonical)).hexdigest()
    return hashlib.sha256(route.encode() + b"\n" + msgspec.json.encode(_utc(request))).hexdigest()


def _utc(request: SubmitRequest) -> SubmitRequest:
    if request.send_at is None or request.send_at.utcoffset() == timedelta(0):
        return request
    return msgspec.structs.replace(request, send_at=request.send_at.astimezone(UTC))


def _error_slot(err: ApiError) -> str:
    # An idempotency record keeps one entry per message of the request: the message id, or for a message that
    # was refused, "!" and its error (percent-encoded JSON, so it holds no comma, the store's separator).
    return "!" + quote(json.dumps([err.status, err.code, err.message, err.field, err.reason]), safe="")


def _slot_error(slot: str) -> ApiError:
    status, code, message, field, reason = json.loads(unquote(slot[1:]))
    return ApiError(int(status), str(code), str(message), field=field, reason=reason)


class _KeyLocks:
    """One lock per (account, idempotency key) while any request holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[anyio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (anyio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


# ---- the acceptor ----------------------------------------------------------------------------------------

_ALPHABETS: dict[str, Alphabet | None] = {"auto": None, "gsm7": Alphabet.GSM7, "ucs2": Alphabet.UCS2,
                                          "latin1": Alphabet.LATIN_1}
_UDH8 = Concatenation.UDH8
# The most characters a part can carry is 160 (GSM 7-bit, one part, no UDH); 153 with a concatenation UDH. A
# text longer than this cannot fit `max_parts` parts in any alphabet, so it is refused before encoding.
_SINGLE_PART_CHARS = 160
_MAX_CHARS_PER_PART = 153
# What one part carries without a UDH, in `EncodedText.data` octets: 160 unpacked septets, else 140 octets.
_SINGLE_PART_OCTETS = {Alphabet.GSM7: 160, Alphabet.IA5: 140, Alphabet.LATIN_1: 140, Alphabet.UCS2: 140}
# UCS-2 carries 70 characters of the BMP in one part, every other alphabet more: an ASCII text this long or
# shorter is one part whatever `auto` chooses.
_ANY_ALPHABET_CHARS = 70
_QUEUED = MessageStatus.QUEUED.value
_BUILD_TURN = 100  # messages of a batch request built per turn of the event loop (about 1 ms)
_SUBMIT_DECODER = msgspec.json.Decoder(SubmitRequest)
_BATCH_DECODER = msgspec.json.Decoder(BatchRequest)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a submit request came to: per message, the message or its error; `replayed` for an idempotent
    repeat of an earlier request."""

    results: list[Message | ApiError]
    replayed: bool = False


class Acceptor:
    """Validates submit requests into messages and accepts them durably (Rules 1 to 4).

    It reads `gw.config`, `gw.core.numbering` and `gw.core.router` on every request, so a reload takes effect
    at once; the wall clock is the core's (`gw.core.wall`).
    """

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._locks = _KeyLocks()
        self._sources: dict[str, tuple[list[str], frozenset[str]]] = {}

    # ---- decoding --------------------------------------------------------------------------------------

    @staticmethod
    def decode_submit(body: bytes) -> SubmitRequest:
        """Raises: ApiError: 400 malformed_json, 422 invalid_field / unknown_field / missing_field / invalid_body."""
        try:
            return _SUBMIT_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise decode_error(exc, body) from None

    @staticmethod
    def decode_batch(body: bytes) -> BatchRequest:
        """As decode_submit, for a batch."""
        try:
            return _BATCH_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise decode_error(exc, body) from None

    # ---- validating one message ------------------------------------------------------------------------

    def _allowed_sources(self, account: AccountConfig) -> frozenset[str]:
        cached = self._sources.get(account.id)
        if cached is None or cached[0] is not account.allowed_sources:  # first use, or a reload
            cached = (account.allowed_sources, frozenset(account.allowed_sources))
            self._sources[account.id] = cached
        return cached[1]

    def build(self, req: SubmitRequest, account: AccountConfig, now: float, key: str | None = None) -> Message:
        """The message for `req` from `account` at wall-clock time `now` (Rule 2).

        Raises:
            ApiError: 422 invalid_field (with the field), missing_field, no_route or too_long.
        """
        return _Builder(self.gw, account, self._allowed_sources(account), now, key).build(req)

    # ---- accepting -------------------------------------------------------------------------------------

    async def submit(self, account: AccountConfig, items: Sequence[SubmitRequest], *, batch: bool,
                     idempotency_key: str | None = None, body_hash: str = "") -> Outcome:
        """Validate and durably accept `items` for `account` (Rules 2 to 4).

        Args:
            batch: a batch request (remembered with its errors under an idempotency key; see Rule 4).
            idempotency_key: the client's Idempotency-Key, if any.
            body_hash: `request_hash` of the request (needed with a key).

        Raises:
            ApiError: 409 idempotency_conflict; 503 draining, queue_full or store_unavailable.
        """
        if idempotency_key is None:
            return Outcome(await self._accept(account, items, batch, None, ""))
        async with self._locks.hold((account.id, idempotency_key)):
            try:
                record = self.gw.store.find_idempotency(account.id, idempotency_key)
            except StoreClosed as exc:
                raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
            if record is not None:
                if record.body_hash != body_hash:
                    raise ApiError(409, "idempotency_conflict",
                                   "this Idempotency-Key was used with another request body", field="Idempotency-Key")
                return Outcome(self._replay(record), replayed=True)
            return Outcome(await self._accept(account, items, batch, idempotency_key, body_hash))

    def _check_intake(self, n: int) -> None:
        gw = self.gw
        if gw.draining:
            raise ApiError(503, "draining", "the gateway is shutting down; retry on another node or later",
                           headers={"Retry-After": "5"})
        max_queue = gw.config.store.max_queue
        if len(gw.core.messages) + n > max_queue:
            raise ApiError(503, "queue_full", f"the queue is full ({max_queue} messages); retry later",
                           headers={"Retry-After": "1"})

    async def _accept(self, account: AccountConfig, items: Sequence[SubmitRequest], batch: bool,
                      key: str | None, body_hash: str) -> list[Message | ApiError]:
        self._check_intake(len(items))
        now = self.gw.core.wall()
        build = _Builder(self.gw, account, self._allowed_sources(account), now, key).build
        results: list[Message | ApiError] = []
        messages: list[Message] = []
        for i, req in enumerate(items):
            if i and not i % _BUILD_TURN:  # a long batch lets the SMPP sessions and commits run in between
                await anyio.lowlevel.checkpoint()
            try:
                msg = build(req)
            except ApiError as err:
                results.append(err)
                continue
            results.append(msg)
            messages.append(msg)
        writes = Writes()
        if key is not None and (messages or batch):
            slots = tuple(r.id if isinstance(r, Message) else _error_slot(r) for r in results)
            writes.idempotency.append(IdempotencyRecord(account.id, key, body_hash, slots, now))
        try:
            if messages:
                await self.gw.core.accept(messages, writes, bulk=True)  # new rows only: the store's bulk lane
            elif writes.idempotency:
                await self.gw.store.write(writes)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store cannot make messages durable: {exc}") from None
        return results

    def _replay(self, record: IdempotencyRecord) -> list[Message | ApiError]:
        out: list[Message | ApiError] = []
        for slot in record.message_ids:
            if slot.startswith("!"):
                out.append(_slot_error(slot))
                continue
            msg = self.gw.core.find(slot)
            out.append(msg if msg is not None else
                       ApiError(404, "not_found", f"message {slot} of the original request is gone"))
        return out

    @staticmethod
    def result(msg: Message) -> SubmitResult:
        """The answer for an accepted message."""
        return SubmitResult(id=msg.id, status=msg.status, parts=len(msg.parts) or 1, to=msg.to, from_=msg.source,
                            reference=msg.reference, created_at=_iso_cached(msg.created_at),
                            send_at=_iso_cached(msg.send_at) if msg.send_at is not None else None,
                            expires_at=_iso_cached(msg.expires_at))

    @property
    def idempotency_keys_held(self) -> int:
        """(account, key) pairs with a request in progress or waiting."""
        return len(self._locks)


# The messages of one request share their timestamps: format each once.
_iso_cached = functools.lru_cache(maxsize=1024)(iso_time)


AcceptCheck = Callable[[str, str, str, "str | None"], None]


class _Builder:
    """Validates the messages of one request: what the account and the config say is looked up once."""

    __slots__ = ("account_id", "allowed", "checks", "country", "decide", "decided", "default_source", "default_validity",
                 "key", "max_chars", "max_parts", "max_validity", "normalise", "now", "resend")

    def __init__(self, gw: Gateway, account: AccountConfig, allowed: frozenset[str], now: float,
                 key: str | None) -> None:
        config = gw.config
        messages = config.messages
        self.normalise = gw.core.numbering.normalise
        self.decide = gw.core.router.decide
        self.decided = gw.core.decided
        self.country = account.country or config.numbering.default_country
        self.account_id = account.id
        self.default_source = account.default_source
        self.allowed = allowed
        self.max_parts = messages.max_parts
        self.max_chars = max(_SINGLE_PART_CHARS, _MAX_CHARS_PER_PART * messages.max_parts)
        self.max_validity = messages.max_validity_s
        self.default_validity = min(messages.default_validity_s, messages.max_validity_s)
        self.now = now
        self.key = key
        self.resend = messages.resend_free_after_crash
        # Extensions refuse a message by raising ApiError: check(account_id, msisdn, source, category).
        self.checks: list[AcceptCheck] = gw.extensions.get("accept_checks", [])

    def build(self, req: SubmitRequest) -> Message:
        try:
            to = self.normalise(req.to, country=self.country)
        except InvalidMsisdn as exc:
            raise ApiError(422, "invalid_field", f"to: {exc}", field="to", reason=exc.reason.value) from None
        source = req.from_ or self.default_source
        if not source:
            raise ApiError(422, "missing_field", "from: required (the account has no default_source)",
                           field="from")
        if self.allowed and source not in self.allowed:
            raise ApiError(422, "invalid_field", f"from: {source!r} is not an allowed sender for this account",
                           field="from")
        decision = self.decide(to, source=source, account=self.account_id)
        if decision.route is None:
            raise ApiError(422, "no_route", f"no route for {to} from {source!r}", field="to")
        parts = self.parts(req.text, req.encoding)
        now = self.now
        send_at: float | None = None
        if req.send_at is not None:
            send_at = req.send_at.timestamp()
            if send_at <= now:
                raise ApiError(422, "invalid_field", "send_at: must be in the future", field="send_at")
            if send_at - now > self.max_validity:
                raise ApiError(422, "invalid_field",
                               f"send_at: at most {self.max_validity:g} s (messages.max_validity_s) ahead",
                               field="send_at")
        validity = req.validity_s
        if validity is None:
            validity = self.default_validity
        elif validity > self.max_validity:
            raise ApiError(422, "invalid_field", f"validity_s: at most {self.max_validity:g}", field="validity_s")
        callback_url = req.callback_url
        if callback_url is not None:
            check_url(callback_url)
        for check in self.checks:  # extensions (the opt-out register): each raises ApiError to refuse
            check(self.account_id, to, source, req.category)
        msg = Message(
            id=new_message_id(now), account=self.account_id, to=to, source=source, text=req.text,
            encoding=req.encoding, reference=req.reference, callback_url=callback_url, created_at=now,
            send_at=send_at, expires_at=(send_at or now) + validity, status_at=now,
            parts=[Part() for _ in range(parts)], history=[StatusChange(now, _QUEUED, "accepted")],
            category=req.category, idempotency_key=self.key, resend_after_crash=self.resend,
        )
        if send_at is None:  # dispatched at once: the first dispatch reuses this decision
            self.decided(msg, decision)
        return msg

    def parts(self, text: str, encoding: str) -> int:
        """The parts `text` takes with an 8-bit concatenation UDH (what the answer reports)."""
        if len(text) > self.max_chars:
            raise ApiError(422, "too_long", f"text: {len(text)} characters cannot fit in {self.max_parts} parts",
                           field="text")
        if encoding == "auto" and len(text) <= _ANY_ALPHABET_CHARS and text.isascii():
            return 1  # whichever alphabet carries it, even UCS-2, one part holds it: no need to encode it here
        try:
            encoded = encode_message(text, method=_UDH8, alphabet=_ALPHABETS[encoding])
            if len(encoded.data) <= _SINGLE_PART_OCTETS[encoded.alphabet]:
                return 1  # fits one part without a UDH (23.040 §9.2.3.24 is only needed to concatenate)
            parts = count_parts(encoded, _UDH8)
        except TextEncodeError as exc:
            raise ApiError(422, "invalid_field", f"text: {exc}", field="text") from None
        except ValueError as exc:  # more parts than a message can have
            raise ApiError(422, "too_long", f"text: {exc}", field="text") from None
        if parts > self.max_parts:
            raise ApiError(422, "too_long", f"text: needs {parts} parts, at most {self.max_parts} allowed",
                           field="text")
        return parts


def add_routes(extensions: dict[str, Any], make_routes: Callable[[Any], list[Any]],
               openapi: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Hang an extension's HTTP routes and their OpenAPI paths and schemas on the gateway's `extensions`, where
    the HTTP app (`_http.create_app`) and its /openapi.json find them.

    Args:
        make_routes: called with the app's API object; returns Starlette routes.
        openapi: (paths, schemas) describing them.
    """
    extensions.setdefault("http_routes", []).append(make_routes)
    paths, schemas = openapi
    extensions.setdefault("openapi_paths", {}).update(paths)
    extensions.setdefault("openapi_schemas", {}).update(schemas)


def check_url(url: str, name: str = "callback_url") -> None:
    """Refuse anything but an absolute http(s) URL, naming the field.

    Raises:
        ApiError: 422 invalid_field.
    """
    bad = ApiError(422, "invalid_field", f"{name}: expected an absolute http:// or https:// URL", field=name)
    if not url.isprintable() or " " in url:
        raise bad
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
