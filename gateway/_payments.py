"""Payment requests by SMS (text-to-pay): the request MT, reminders before the due date, the paid receipt.

Rule 1: a request's state change and the MT it causes commit together (`GatewayCore.accept`): the record with
the request MT at creation, the record marking a reminder sent with that reminder, the record marked paid with
the receipt. A crash before the commit leaves neither, so a restart sends the reminder once; a crash after it
leaves both, so the restart finds the reminder sent and does not send it again.
Rule 2: every change to a request, by the API or by the scheduler, holds one lock from reading the record to
committing the change, so a reminder is never sent after a committed `paid` or cancel.
Rule 3: no reminder fires inside the recipient's quiet hours (the longest `billing.payments.quiet_hours` prefix of
the MSISDN, in its UTC offset; a period may cross midnight): a planned time inside one moves to the end of that
period, and the scheduler checks again when it fires (the config may have been reloaded, or the gateway was down).
Rule 4: at most three reminders, at the first three distinct `reminder_offsets_days` before due; an offset already
past at creation is skipped; none is sent later than one day after due. After downtime only the latest reminder
that came due is sent; the earlier ones are recorded as missed.
Rule 5: opt-outs are honoured like any MT (scope: the source): creation is refused with 422 `opted_out`; a
reminder or receipt to a number that opted out later is skipped and recorded, unless the category `payment` is in
`billing.consent.exempt_categories`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any, Protocol, cast

import anyio
import anyio.abc
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routing import InvalidMsisdn, mask_msisdn

from ._accept import ApiError, ErrorResponse, add_routes, check_url, decode_error
from ._config import AccountConfig, PaymentsConfig, QuietHoursConfig
from ._model import Message, iso_time, new_message_id
from ._mt import internal_mt
from ._store import Doc, IdempotencyRecord, StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "KIND",
    "MAX_REMINDERS",
    "PaymentRecord",
    "Payments",
    "PaymentsStatistics",
    "PlannedReminder",
    "QuietHours",
    "due_instant",
    "install",
    "plan_reminders",
    "quiet_hours_for",
]

log = logging.getLogger(__name__)

KIND = "payment"
"""The store record kind of a payment request (`Doc.due` is its next reminder's time)."""
MAX_REMINDERS = 3
CATEGORY = "payment"
DAY_S = 86_400
MAX_DUE_AHEAD_DAYS = 3660
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_JSON = "application/json"


# ---- quiet hours and the reminder plan (pure; Rules 3 and 4) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A recipient's quiet period each local day, and their UTC offset.

    Attributes:
        start_s: seconds after local midnight when the quiet period starts.
        end_s: seconds after local midnight when it ends; below `start_s` it crosses midnight; equal to it,
            there is no quiet period (only the UTC offset counts).
        utc_offset_s: local time minus UTC, in seconds.
    """

    start_s: int
    end_s: int
    utc_offset_s: int = 0

    @classmethod
    def from_config(cls, q: QuietHoursConfig) -> QuietHours:
        return cls(_minutes(q.start) * 60, _minutes(q.end) * 60, q.utc_offset_minutes * 60)

    def contains(self, t: int) -> bool:
        """Whether the instant `t` (whole seconds since the epoch) lies inside the quiet period."""
        s = (t + self.utc_offset_s) % DAY_S
        if self.start_s < self.end_s:
            return self.start_s <= s < self.end_s
        if self.start_s > self.end_s:  # crosses midnight: 21:00 to 08:00
            return s >= self.start_s or s < self.end_s
        return False

    def end_after(self, t: int) -> int:
        """`t` itself when it is not quiet, else the end of the quiet period that holds it (less than a day on)."""
        if not self.contains(t):
            return t
        return t + (self.end_s - (t + self.utc_offset_s) % DAY_S) % DAY_S


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    return int(hours) * 60 + int(minutes)


def quiet_hours_for(rules: Sequence[QuietHoursConfig], msisdn: str) -> QuietHours | None:
    """The quiet hours of the longest prefix of `msisdn` among `rules`, None when no prefix matches."""
    best: QuietHoursConfig | None = None
    for rule in rules:
        if msisdn.startswith(rule.prefix) and (best is None or len(rule.prefix) > len(best.prefix)):
            best = rule
    return None if best is None else QuietHours.from_config(best)


@dataclass(frozen=True, slots=True)
class PlannedReminder:
    """One reminder of the plan: its offset, the time the offset gives, and the time after quiet hours."""

    offset_days: int
    nominal_at: int
    at: int


def plan_reminders(*, due_at: int, created_at: float, offsets_days: Sequence[int],
                   quiet: QuietHours | None) -> list[PlannedReminder]:
    """The reminders of a request due at `due_at` created at `created_at` (Rules 3 and 4), earliest first.

    The first `MAX_REMINDERS` distinct offsets count; an offset whose time is not after `created_at` is skipped;
    a time inside quiet hours moves to the end of the quiet period (so at most a day after the offset's time);
    two reminders moved to the same time become one.
    """
    offsets: list[int] = []
    for off in offsets_days:
        if off not in offsets:
            offsets.append(off)
    plan: list[PlannedReminder] = []
    for off in offsets[:MAX_REMINDERS]:
        nominal = due_at - off * DAY_S
        if nominal <= created_at:
            continue
        at = quiet.end_after(nominal) if quiet is not None else nominal
        if all(p.at != at for p in plan):
            plan.append(PlannedReminder(off, nominal, at))
    plan.sort(key=lambda p: p.at)
    return plan


def due_instant(due: str, *, now: float, utc_offset_s: int) -> tuple[int, str]:
    """When a request with `due` falls due, and how its texts show the due date.

    A date (`2025-03-14`) is the recipient's local day: the instant is that day at the local time of day of `now`,
    so reminders come at the hour the request was sent. A date-time needs a UTC offset and is shown in it.

    Returns:
        (whole seconds since the epoch, the text for `{due}`).

    Raises:
        ValueError: not a date or a date-time with an offset, in the past, or more than ten years ahead.
    """
    if _DATE.fullmatch(due):
        day = date.fromisoformat(due).toordinal() - _EPOCH_ORDINAL
        local_now = math.floor(now) + utc_offset_s
        if day < local_now // DAY_S:
            raise ValueError("the date is in the past (in the recipient's time zone)")
        at = day * DAY_S + local_now % DAY_S - utc_offset_s
        shown = due
    else:
        dt = datetime.fromisoformat(due)
        if dt.tzinfo is None:
            raise ValueError("a date-time needs a UTC offset (`Z` or `+01:00`)")
        if dt.timestamp() <= now:
            raise ValueError("the date-time is in the past")
        at = math.ceil(dt.timestamp())
        shown = dt.strftime("%Y-%m-%d %H:%M")
    if at - now > MAX_DUE_AHEAD_DAYS * DAY_S:
        raise ValueError(f"at most {MAX_DUE_AHEAD_DAYS} days ahead")
    return at, shown


# ---- the stored record -----------------------------------------------------------------------------------


class ReminderRecord(msgspec.Struct, kw_only=True):
    """A planned reminder; `state` is planned, sent, skipped_opted_out, missed, cancelled or failed."""

    offset_days: int
    at: int
    state: str = "planned"
    message_id: str | None = None
    done_at: float | None = None
    detail: str = ""


class SentRecord(msgspec.Struct, kw_only=True):
    """An MT of the request: `kind` is request, reminder or receipt."""

    id: str
    kind: str
    at: float
    parts: int = 1


class PaymentRecord(msgspec.Struct, kw_only=True):
    """The body of a `payment` record; `state` is open, paid or cancelled."""

    id: str
    account: str
    msisdn: str
    source: str
    amount: str
    currency: str
    description: str
    pay_url: str
    due: str
    due_at: int
    due_text: str
    reference: str | None = None
    created_at: float
    state: str = "open"
    state_at: float
    invoice_url: str | None = None
    text: str = ""
    reminders: list[ReminderRecord] = []
    messages: list[SentRecord] = []
    events: list[str] = []  # what happened besides MTs (a receipt skipped for an opt-out, ...)

    def next_due(self) -> int | None:
        if self.state != "open":
            return None
        return min((r.at for r in self.reminders if r.state == "planned"), default=None)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PaymentRecord)


def payment_doc(rec: PaymentRecord) -> Doc:
    return Doc(KIND, rec.id, rec.msisdn, rec.source, rec.state, rec.next_due(), rec.state_at, _ENCODER.encode(rec))


def decode_payment(doc: Doc) -> PaymentRecord:
    return _DECODER.decode(doc.body)


# ---- the HTTP wire types (/openapi.json is generated from them) --------------------------------------------

Amount = Annotated[str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$", examples=["12.50"],
                                     description="A decimal amount above zero, as a string.")]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048, description="An absolute http(s) URL.")]
DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
Due = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$",
    examples=["2030-01-15", "2030-01-15T18:00:00+01:00"],
    description="The due date (`2030-01-15`, the recipient's local day) or date-time with a UTC offset.")]


class PaymentRequestBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A payment request to send."""

    msisdn: Annotated[str, msgspec.Meta(min_length=1, max_length=32, examples=["+447911123456"],
                                        description="The payer: international, or national in the account's "
                                                    "country or numbering.default_country.")]
    amount: Amount
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["EUR"],
                                          description="ISO 4217 code.")]
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=160, examples=["Invoice 2025-117"],
                                             description="What the payment is for (shown in every text).")]
    pay_url: Url
    due: Due
    source: Annotated[str, msgspec.Meta(
        min_length=1, max_length=20,
        description="The sender; default billing.payments.source, then the account's default_source.")] | None = None
    reference: Annotated[str, msgspec.Meta(
        max_length=64, description="The client's own reference, on every MT of the request.")] | None = None


class PaidBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The payment arrived; an optional invoice link goes into the receipt MT."""

    invoice_url: Url | None = None


class PaymentMessageView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: Annotated[str, msgspec.Meta(description="request, reminder or receipt")]
    at: DateTime
    parts: int
    status: Annotated[str | None, msgspec.Meta(description="The MT's status (GET /v1/messages/{id}).")]


class PaymentReminderView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    at: DateTime
    offset_days: int
    state: Annotated[str, msgspec.Meta(
        description="planned, sent, skipped_opted_out, missed (the gateway was down), cancelled or failed")]
    message_id: str | None = None
    detail: str | None = None


class PaymentRequestView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A payment request, its MTs and its reminders."""

    id: str
    status: Annotated[str, msgspec.Meta(description="open, paid or cancelled")]
    msisdn: str
    source: str
    amount: str
    currency: str
    description: str
    pay_url: str
    due: str
    created_at: DateTime
    status_at: DateTime
    messages: list[PaymentMessageView]
    reminders: list[PaymentReminderView]
    events: list[str] = []
    reference: str | None = None
    invoice_url: str | None = None


class PaymentRequestCreated(PaymentRequestView, frozen=True, kw_only=True, omit_defaults=True):
    """The created request, with the text sent and its parts."""

    text: str = ""
    parts: int = 1
    warning: Annotated[str, msgspec.Meta(description="Present when the text takes more than one part.")] | None = None


_BODY_DECODER = msgspec.json.Decoder(PaymentRequestBody)
_PAID_DECODER = msgspec.json.Decoder(PaidBody)


class DocStore(Protocol):
    """The record queries of the store this module uses (SqliteStore has them; gateway._store.Store does not list
    them yet)."""

    def doc(self, kind: str, doc_id: str) -> Doc | None: ...
    def docs_due(self, kind: str, before: float, limit: int = 1000) -> list[Doc]: ...
    def find_idempotency(self, account: str, key: str) -> IdempotencyRecord | None: ...


class ConsentCheck(Protocol):
    """What this module asks the consent register (gateway._consent, `gw.extensions["consent"]`)."""

    def mt_scopes(self, account: str, source: str) -> tuple[str, ...]: ...
    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool: ...


class HttpApi(Protocol):
    """What the HTTP app hands `make_routes` (gateway._http)."""

    def account(self, request: Request) -> AccountConfig: ...
    async def body(self, request: Request) -> bytes: ...
    async def rate(self, account: AccountConfig, n: int) -> None: ...
    @staticmethod
    def idempotency_key(request: Request) -> str | None: ...
    @staticmethod
    def json(status: int, body: object, headers: dict[str, str] | None = None) -> Response: ...


# ---- the service -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentsStatistics:
    created: int
    reminders_sent: int
    reminders_skipped: int
    reminders_missed: int
    receipts_sent: int
    passes: int


class Payments:
    """Payment requests: the HTTP endpoints and the reminder scheduler (Rules 1 to 5).

    Args:
        gw: the gateway (its config, store, core, and the consent register `extensions["consent"]` when present).
        wall: wall-clock seconds (tests move it); the request's records and MTs use it.
        max_sleep_s: the longest the scheduler sleeps without looking at the store (a clock that jumps).
        batch: reminders sent in one commit at most.
    """

    def __init__(self, gw: Gateway, *, wall: Callable[[], float] = time.time, max_sleep_s: float = 60.0,
                 batch: int = 500) -> None:
        self.gw = gw
        self.wall = wall
        self.max_sleep_s = max_sleep_s
        self.batch = batch
        self.running = False
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._quiet_of: list[QuietHoursConfig] | None = None
        self._quiet_cache: dict[str, QuietHours | None] = {}
        self.created_total = 0
        self.reminders_sent_total = 0
        self.reminders_skipped_total = 0
        self.reminders_missed_total = 0
        self.receipts_sent_total = 0
        self.passes = 0

    # ---- helpers -----------------------------------------------------------------------------------------

    @property
    def store(self) -> DocStore:
        return cast(DocStore, self.gw.store)

    @property
    def config(self) -> PaymentsConfig:
        return self.gw.config.billing.payments

    def quiet(self, msisdn: str) -> QuietHours | None:
        """The recipient's quiet hours under the running config (cached per config)."""
        rules = self.config.quiet_hours
        if self._quiet_of is not rules:
            self._quiet_of = rules
            self._quiet_cache = {}
        if msisdn not in self._quiet_cache:
            if len(self._quiet_cache) > 100_000:
                self._quiet_cache.clear()
            self._quiet_cache[msisdn] = quiet_hours_for(rules, msisdn)
        return self._quiet_cache[msisdn]

    def opted_out(self, account: str, msisdn: str, source: str) -> bool:
        """Rule 5: the number opted out of a scope of an MT from `account` and `source` (the source shortcode, and
        the services the account runs there: the register's `mt_scopes`), and payment MTs are not exempt."""
        if CATEGORY in self.gw.config.billing.consent.exempt_categories:
            return False
        register: ConsentCheck | None = self.gw.extensions.get("consent")
        return register is not None and register.opted_out(msisdn, register.mt_scopes(account, source))

    def wake(self) -> None:
        """Make the scheduler look at the store now (a new request; a test moved the clock)."""
        self._wake.set()

    def _text(self, template: str, rec: PaymentRecord, invoice_url: str | None = None) -> str:
        fields = {"description": rec.description, "amount": rec.amount, "currency": rec.currency,
                  "due": rec.due_text, "pay_url": rec.pay_url, "reference": rec.reference or "",
                  "invoice_url": invoice_url or "", "invoice": f" Invoice: {invoice_url}" if invoice_url else ""}
        try:
            return template.format_map(fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"the template is invalid ({type(exc).__name__}: {exc})") from None

    def _mt(self, rec: PaymentRecord, text: str, kind: str, now: float) -> Message:
        msg = internal_mt(self.gw.config, account=rec.account, to=rec.msisdn, source=rec.source, text=text,
                          now=now, category=CATEGORY, reference=rec.reference, detail=f"payment request {kind}")
        msg.meta = {"payment_request": rec.id, "payment_mt": kind}
        rec.messages.append(SentRecord(id=msg.id, kind=kind, at=now, parts=len(msg.parts)))
        return msg

    def _load(self, account: AccountConfig, pid: str) -> PaymentRecord:
        try:
            doc = self.store.doc(KIND, pid)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
        if doc is None:
            raise ApiError(404, "not_found", "no such payment request for this account", field="id")
        rec = decode_payment(doc)
        if rec.account != account.id:  # another account's request does not exist for this one
            raise ApiError(404, "not_found", "no such payment request for this account", field="id")
        return rec

    async def _commit(self, messages: list[Message], writes: Writes) -> None:
        try:
            await self.gw.core.accept(messages, writes)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store cannot make the change durable: {exc}") from None

    # ---- creating ----------------------------------------------------------------------------------------

    def _build(self, account: AccountConfig, req: PaymentRequestBody, now: float) -> tuple[PaymentRecord, Message]:
        gw = self.gw
        config = gw.config
        try:
            msisdn = str(gw.core.numbering.normalise(req.msisdn, country=account.country
                                                     or config.numbering.default_country))
        except InvalidMsisdn as exc:
            raise ApiError(422, "invalid_field", f"msisdn: {exc}", field="msisdn", reason=exc.reason.value) from None
        source = req.source or self.config.source or account.default_source
        if not source:
            raise ApiError(422, "missing_field", "source: required (neither billing.payments.source nor the "
                                                 "account's default_source is set)", field="source")
        if account.allowed_sources and source not in account.allowed_sources:
            raise ApiError(422, "invalid_field", f"source: {source!r} is not an allowed sender for this account",
                           field="source")
        try:
            if Decimal(req.amount) <= 0:
                raise ApiError(422, "invalid_field", "amount: must be above zero", field="amount")
        except InvalidOperation:
            raise ApiError(422, "invalid_field", "amount: not a decimal number", field="amount") from None
        check_url(req.pay_url, "pay_url")
        quiet = self.quiet(msisdn)
        try:
            due_at, due_text = due_instant(req.due, now=now, utc_offset_s=quiet.utc_offset_s if quiet else 0)
        except ValueError as exc:
            raise ApiError(422, "invalid_field", f"due: {exc}", field="due") from None
        if gw.core.router.decide(msisdn, source=source, account=account.id).route is None:
            raise ApiError(422, "no_route", f"no route for {msisdn} from {source!r}", field="msisdn")
        if self.opted_out(account.id, msisdn, source):
            raise ApiError(422, "opted_out", f"the number opted out of messages from {source}", field="msisdn")
        plan = plan_reminders(due_at=due_at, created_at=now, offsets_days=self.config.reminder_offsets_days,
                              quiet=quiet)
        rec = PaymentRecord(
            id=new_message_id(now), account=account.id, msisdn=msisdn, source=source, amount=req.amount,
            currency=req.currency, description=req.description, pay_url=req.pay_url, due=req.due, due_at=due_at,
            due_text=due_text, reference=req.reference, created_at=now, state_at=now,
            reminders=[ReminderRecord(offset_days=p.offset_days, at=p.at) for p in plan])
        try:
            rec.text = self._text(self.config.request_text, rec)
        except ValueError as exc:
            raise ApiError(500, "internal_error", f"billing.payments.request_text: {exc}") from None
        try:
            msg = self._mt(rec, rec.text, "request", now)
        except ValueError as exc:  # the text cannot be encoded, or needs more parts than allowed
            raise ApiError(422, "too_long", f"the text of the request: {exc}; shorten description or pay_url",
                           field="description") from None
        return rec, msg

    async def create(self, account: AccountConfig, req: PaymentRequestBody, *, idempotency_key: str | None = None
                     ) -> tuple[PaymentRecord, bool]:
        """Send a payment request for `account` (Rule 1). Returns the record and whether it is an idempotent replay.

        Raises:
            ApiError: 422 for a field, 409 idempotency_conflict, 503 draining, queue_full or store_unavailable.
        """
        gw = self.gw
        if gw.draining:
            raise ApiError(503, "draining", "the gateway is shutting down; retry on another node or later",
                           headers={"Retry-After": "5"})
        if len(gw.core.messages) + 1 > gw.config.store.max_queue:
            raise ApiError(503, "queue_full", "the queue is full; retry later", headers={"Retry-After": "1"})
        if idempotency_key is None:
            return await self._create(account, req, None), False
        body_hash = hashlib.sha256(b"payment-request\n" + msgspec.json.encode(req)).hexdigest()
        async with self._lock:
            try:
                seen = self.store.find_idempotency(account.id, idempotency_key)
            except StoreClosed as exc:
                raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
            if seen is not None:
                if seen.body_hash != body_hash:
                    raise ApiError(409, "idempotency_conflict",
                                   "this Idempotency-Key was used with another request body", field="Idempotency-Key")
                return self._load(account, seen.message_ids[0]), True
            return await self._create(account, req, (idempotency_key, body_hash)), False

    async def _create(self, account: AccountConfig, req: PaymentRequestBody,
                      idempotency: tuple[str, str] | None) -> PaymentRecord:
        now = self.wall()
        rec, msg = self._build(account, req, now)
        writes = Writes(docs=[payment_doc(rec)])
        if idempotency is not None:  # remembered in the same commit as the request (Rule 1)
            key, body_hash = idempotency
            writes.idempotency.append(IdempotencyRecord(account.id, key, body_hash, (rec.id,), now))
        await self._commit([msg], writes)
        self.created_total += 1
        log.info("payment=%s account=%s to=%s created: %d reminder(s) planned", rec.id, account.id,
                 mask_msisdn(rec.msisdn), len(rec.reminders))
        self.wake()
        return rec

    # ---- paid and cancelled (Rule 2) ---------------------------------------------------------------------

    async def paid(self, account: AccountConfig, pid: str, invoice_url: str | None) -> PaymentRecord:
        """Mark a request paid: no more reminders, and a receipt MT (Rules 1, 2, 5). Paid again changes nothing.

        Raises:
            ApiError: 404 not_found, 409 not_open (cancelled), 422 for invoice_url, 503 store_unavailable.
        """
        if invoice_url is not None:
            check_url(invoice_url, "invoice_url")
        async with self._lock:
            rec = self._load(account, pid)
            if rec.state == "paid":
                return rec
            if rec.state != "open":
                raise ApiError(409, "not_open", f"the payment request is {rec.state}", field="id")
            now = self.wall()
            rec.state, rec.state_at, rec.invoice_url = "paid", now, invoice_url
            _close_reminders(rec, now, "paid")
            messages: list[Message] = []
            if self.opted_out(rec.account, rec.msisdn, rec.source):
                rec.events.append(f"{iso_time(now)} receipt not sent: the number opted out of {rec.source}")
            else:
                try:
                    text = self._text(self.config.paid_text, rec, invoice_url)
                    messages.append(self._mt(rec, text, "receipt", now))
                except ValueError as exc:
                    rec.events.append(f"{iso_time(now)} receipt not sent: {exc}")
                    log.error("payment=%s receipt not sent: %s", rec.id, exc)
            await self._commit(messages, Writes(docs=[payment_doc(rec)]))
            self.receipts_sent_total += len(messages)
        log.info("payment=%s account=%s paid", rec.id, account.id)
        return rec

    async def cancel(self, account: AccountConfig, pid: str) -> PaymentRecord:
        """Cancel a request: no more reminders. Cancelled again changes nothing.

        Raises:
            ApiError: 404 not_found, 409 not_open (paid), 503 store_unavailable.
        """
        async with self._lock:
            rec = self._load(account, pid)
            if rec.state == "cancelled":
                return rec
            if rec.state != "open":
                raise ApiError(409, "not_open", f"the payment request is {rec.state}", field="id")
            now = self.wall()
            rec.state, rec.state_at = "cancelled", now
            _close_reminders(rec, now, "cancelled")
            await self._commit([], Writes(docs=[payment_doc(rec)]))
        log.info("payment=%s account=%s cancelled", rec.id, account.id)
        return rec

    # ---- the scheduler (Rules 1 to 5) --------------------------------------------------------------------

    async def fire_due(self) -> int | None:
        """Send the reminders that are due now, in one commit. Returns when the next one is due (None: none)."""
        async with self._lock:
            now = self.wall()
            docs = self.store.docs_due(KIND, now, self.batch)
            messages: list[Message] = []
            writes = Writes()
            for doc in docs:
                rec = decode_payment(doc)
                msg = self._fire(rec, now)
                if msg is not None:
                    messages.append(msg)
                writes.docs.append(payment_doc(rec))
            if docs:
                await self.gw.core.accept(messages, writes)
                self.reminders_sent_total += len(messages)
            self.passes += 1
            if len(docs) == self.batch:
                return math.floor(now)  # more are due: go again at once
            nxt = self.store.docs_due(KIND, math.inf, 1)
            return None if not nxt or nxt[0].due is None else math.ceil(nxt[0].due)

    def _fire(self, rec: PaymentRecord, now: float) -> Message | None:
        """Decide the reminder of `rec` that is due at `now`; updates `rec`, returns the MT to send if any."""
        if rec.state != "open":
            return None
        due = [r for r in rec.reminders if r.state == "planned" and r.at <= now]
        if not due:
            return None
        late = now > rec.due_at + DAY_S
        for r in due if late else due[:-1]:
            r.state, r.done_at = "missed", now
            r.detail = "not sent in time (the gateway was not running)"
            self.reminders_missed_total += 1
        if late:
            return None
        target = due[-1]
        quiet = self.quiet(rec.msisdn)
        if quiet is not None and quiet.contains(math.floor(now)):
            target.at = quiet.end_after(math.floor(now))  # Rule 3, checked again when firing
            return None
        target.done_at = now
        if self.opted_out(rec.account, rec.msisdn, rec.source):
            target.state, target.detail = "skipped_opted_out", f"the number opted out of {rec.source}"
            self.reminders_skipped_total += 1
            log.info("payment=%s to=%s reminder skipped: opted out", rec.id, mask_msisdn(rec.msisdn))
            return None
        try:
            msg = self._mt(rec, self._text(self.config.reminder_text, rec), "reminder", now)
        except ValueError as exc:
            target.state, target.detail = "failed", str(exc)
            log.error("payment=%s reminder not sent: %s", rec.id, exc)
            return None
        target.state, target.message_id = "sent", msg.id
        return msg

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire reminders as they come due, until cancelled."""
        self.running = True
        task_status.started()
        try:
            while True:
                nxt: int | None = None
                try:
                    nxt = await self.fire_due()
                except StoreClosed as exc:
                    log.error("payment reminders stopped: the store is closed (%s); retrying", exc)
                except Exception:
                    # One bad record must not end the gateway; the records stay due and are tried again.
                    log.exception("payment reminders failed; retrying in %.0f s", self.max_sleep_s)
                    nxt = None
                delay = self.max_sleep_s if nxt is None else min(max(nxt - self.wall(), 0.0), self.max_sleep_s)
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self.running = False

    def statistics(self) -> PaymentsStatistics:
        return PaymentsStatistics(self.created_total, self.reminders_sent_total, self.reminders_skipped_total,
                                  self.reminders_missed_total, self.receipts_sent_total, self.passes)

    # ---- views and routes ----------------------------------------------------------------------------------

    def view(self, rec: PaymentRecord) -> PaymentRequestView:
        return PaymentRequestView(**_view_fields(self, rec))

    def created_view(self, rec: PaymentRecord) -> PaymentRequestCreated:
        parts = rec.messages[0].parts if rec.messages else 1
        warning = None
        if parts > 1:
            warning = (f"the text takes {parts} parts ({len(rec.text)} characters); a shorter description or "
                       "pay_url fits one")
        return PaymentRequestCreated(**_view_fields(self, rec), text=rec.text, parts=parts, warning=warning)

    def make_routes(self, api: HttpApi) -> list[Route]:
        """The HTTP routes (gw.extensions["http_routes"])."""

        async def create(request: Request) -> Response:
            account = api.account(request)
            body = await api.body(request)
            try:
                req = _BODY_DECODER.decode(body)
            except msgspec.DecodeError as exc:
                raise decode_error(exc, body) from None
            await api.rate(account, 1)
            rec, replayed = await self.create(account, req, idempotency_key=api.idempotency_key(request))
            headers = {"Location": f"/v1/payment-requests/{rec.id}"}
            if replayed:
                headers["Idempotent-Replayed"] = "true"
            return api.json(201, self.created_view(rec), headers)

        async def one(request: Request) -> Response:
            account = api.account(request)
            pid = request.path_params["id"]
            if request.method == "DELETE":
                return api.json(200, self.view(await self.cancel(account, pid)))
            return api.json(200, self.view(self._load(account, pid)))

        async def paid(request: Request) -> Response:
            account = api.account(request)
            body = await api.body(request)
            try:
                req = _PAID_DECODER.decode(body) if body.strip() else PaidBody()
            except msgspec.DecodeError as exc:
                raise decode_error(exc, body) from None
            return api.json(200, self.view(await self.paid(account, request.path_params["id"], req.invoice_url)))

        return [
            Route("/v1/payment-requests", create, methods=["POST"]),
            Route("/v1/payment-requests/{id}", one, methods=["GET", "DELETE"]),
            Route("/v1/payment-requests/{id}/paid", paid, methods=["POST"]),
        ]


def _close_reminders(rec: PaymentRecord, now: float, why: str) -> None:
    for r in rec.reminders:
        if r.state == "planned":
            r.state, r.done_at, r.detail = "cancelled", now, f"the request was {why}"


def _view_fields(payments: Payments, rec: PaymentRecord) -> dict[str, Any]:
    find = payments.gw.core.find
    messages = []
    for m in rec.messages:
        try:
            msg = find(m.id)
        except StoreClosed:
            msg = None
        messages.append(PaymentMessageView(id=m.id, kind=m.kind, at=iso_time(m.at), parts=m.parts,
                                           status=None if msg is None else msg.status.value))
    reminders = [PaymentReminderView(at=iso_time(r.at), offset_days=r.offset_days, state=r.state,
                                     message_id=r.message_id, detail=r.detail or None) for r in rec.reminders]
    return {"id": rec.id, "status": rec.state, "msisdn": rec.msisdn, "source": rec.source, "amount": rec.amount,
            "currency": rec.currency, "description": rec.description, "pay_url": rec.pay_url, "due": rec.due,
            "created_at": iso_time(rec.created_at), "status_at": iso_time(rec.state_at), "messages": messages,
            "reminders": reminders, "events": list(rec.events), "reference": rec.reference,
            "invoice_url": rec.invoice_url}


# ---- OpenAPI ---------------------------------------------------------------------------------------------


def openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The paths and the component schemas of the payment-request routes."""
    _, schemas = msgspec.json.schema_components(
        (PaymentRequestBody, PaidBody, PaymentRequestView, PaymentRequestCreated, ErrorResponse),
        ref_template="#/components/schemas/{name}")
    schemas.pop("ErrorResponse", None)  # the core document has it (and ErrorDetail)
    schemas.pop("ErrorDetail", None)

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def body(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": ref(name)}}}
        if headers:
            out["headers"] = headers
        return out

    text = {400: "Malformed JSON, a bad header", 401: "No or an unknown API key",
            404: "No such payment request for this account", 409: "Conflict (see the error code)",
            413: "Body larger than http.max_body_bytes", 415: "Body is not JSON",
            422: "A field is invalid (the error names it), or the number opted out (`opted_out`)",
            429: "Over the account's rate limit", 503: "Unavailable (draining, queue full, store)"}

    def errors(*statuses: int) -> dict[str, Any]:
        out = {str(s): body("ErrorResponse", text[s]) for s in statuses}
        if 429 in statuses:
            out["429"] = body("ErrorResponse", text[429], {
                "Retry-After": {"required": True, "description": "Seconds to wait",
                                "schema": {"type": "integer", "minimum": 1}}})
        return out

    pid = {"name": "id", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[0-9a-hjkmnp-tv-z]{26}$",
                      "description": "26 characters (Crockford base32, lower case), as POST /v1/payment-requests "
                                     "returned"}}
    idempotency = {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Makes the request take effect at most once per account (docs/payments.md).",
        "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
    }
    example = {"msisdn": "+447911123456", "amount": "12.50", "currency": "EUR", "description": "Invoice 117",
               "pay_url": "https://pay.example.com/i/117", "due": "2030-01-15"}
    links = {"GetPaymentRequest": {"operationId": "getPaymentRequest", "parameters": {"id": "$response.body#/id"}},
             "PaymentRequestPaid": {"operationId": "paymentRequestPaid",
                                    "parameters": {"id": "$response.body#/id"}},
             "CancelPaymentRequest": {"operationId": "cancelPaymentRequest",
                                      "parameters": {"id": "$response.body#/id"}}}
    replayed = {"Idempotent-Replayed": {"description": "Present (`true`) when this answers an earlier request "
                                                      "with the same Idempotency-Key",
                                       "schema": {"type": "string", "enum": ["true"]}}}
    paths = {
        "/v1/payment-requests": {"post": {
            "operationId": "createPaymentRequest",
            "summary": "Send a payment request by SMS, with reminders before the due date",
            "parameters": [idempotency],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref("PaymentRequestBody"),
                                                                   "example": example}}},
            "responses": {"201": {**body("PaymentRequestCreated", "Created: durable, the request MT queued", {
                "Location": {"required": True, "schema": {"type": "string"},
                             "description": "The payment request's URL"}, **replayed}), "links": links},
                **errors(400, 401, 409, 413, 415, 422, 429, 503)},
        }},
        "/v1/payment-requests/{id}": {
            "get": {"operationId": "getPaymentRequest", "summary": "A payment request, its MTs and reminders",
                    "parameters": [pid],
                    "responses": {"200": body("PaymentRequestView", "The payment request"),
                                  **errors(401, 404, 503)}},
            "delete": {"operationId": "cancelPaymentRequest", "summary": "Cancel a payment request (no more reminders)",
                       "parameters": [pid],
                       "responses": {"200": body("PaymentRequestView", "Cancelled"), **errors(401, 404, 409, 503)}},
        },
        "/v1/payment-requests/{id}/paid": {"post": {
            "operationId": "paymentRequestPaid",
            "summary": "The payment arrived: stop the reminders and send a receipt",
            "parameters": [pid],
            "requestBody": {"required": False, "content": {_JSON: {"schema": ref("PaidBody"),
                                                                    "example": {"invoice_url": "https://pay.example.com/inv/117.pdf"}}}},
            "responses": {"200": body("PaymentRequestView", "Paid (a receipt MT queued unless the number opted out)"),
                          **errors(400, 401, 404, 409, 413, 415, 422, 503)},
        }},
    }
    return paths, schemas


def install(gw: Gateway, *, wall: Callable[[], float] = time.time) -> Payments:
    """Create the payment-request service of `gw`: `gw.extensions["payments"]`, its routes and OpenAPI paths.

    The caller runs `Payments.run` in the gateway's task group (the reminder scheduler).
    """
    payments = Payments(gw, wall=wall)
    gw.extensions["payments"] = payments
    add_routes(gw.extensions, payments.make_routes, openapi())
    return payments

