"""Charge attempts and the ledger: a charged MT and its ledger entry are made durable together, and the MT's final
status becomes the entry's outcome.

Rule 1: a charge attempt is one ledger entry plus one charged MT (`internal_mt(..., charge=...)`), added to the
same writes as the state change that caused it, so all three commit together or not at all. Its id is
deterministic (`<owner>.<period>.<n>`, `attempt_id`): redoing the same decision after a crash gives the same id.
Rule 2: the outcome comes from the MT's final status alone (`classify`): delivered -> charged; a receipt `err`
listed in the operator's `receipt_errors` -> failed with that reason (insufficient_funds, barred,
unknown_subscriber); any other end -> failed with the error's code; `unknown` -> unknown, which nothing retries by
itself (it is left for reconciliation). The operator is the one that owns the SMSC in the MT's record.
Rule 3: each attempt is settled once: its outcome, the free receipt MT (when the operator requires one) and the
owner's next step (a fallback price, a retry, a suspension) commit together. A restart settles the attempts still
pending whose MT became final before the stop.
Rule 4: on a cluster only the billing node settles (_leader): it reads the MTs of its pending attempts every
`POLL_S` seconds, since their receipts may reach any node.
"""

from __future__ import annotations

import logging
import math
import string
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Protocol, cast

import anyio
import anyio.abc
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routing import mask_msisdn

from ._accept import ApiError, add_routes
from ._config import AccountConfig, Config, OperatorConfig, ServiceConfig
from ._consent import service_account
from ._model import Message, MessageStatus, iso_time
from ._mt import internal_mt, same_price
from ._store import Doc, LedgerEntry, LedgerOutcome, StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "LEDGER_STATES",
    "ChargeList",
    "ChargeOutcome",
    "ChargeTotals",
    "ChargeView",
    "Charging",
    "ConsentPort",
    "Settlement",
    "TotalsRow",
    "attempt_id",
    "classify",
    "install",
    "next_lower_price",
    "render",
]

log = logging.getLogger(__name__)

POLL_S = 1.0  # on a cluster: how often the billing node reads its pending attempts' MTs (Rule 4)

LEDGER_STATES = ("pending", "charged", "failed", "unknown")
"""A ledger entry's state: pending until its MT is final, then charged, failed or unknown."""

REASONS = ("insufficient_funds", "barred", "unknown_subscriber")
"""The failure reasons an operator's `receipt_errors` name; other failures carry the MT's error code."""

_JSON = "application/json"
_ENCODER = msgspec.json.Encoder()


# ---- pure rules ------------------------------------------------------------------------------------------


def attempt_id(owner_id: str, period: int, n: int) -> str:
    """The id of attempt `n` (from 0) for period `period` of `owner_id` (Rule 1)."""
    return f"{owner_id}.{period}.{n}"


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """What a charged MT's final status means for its charge (Rule 2)."""

    state: str
    reason: str = ""
    smsc: str = ""
    smsc_message_id: str = ""


def _same_code(err: str, codes: Iterable[str]) -> bool:
    """Whether receipt `err` ("069") is one of `codes` ("69", "069"): numerically when both are digits."""
    number = int(err) if err.isascii() and err.isdigit() else None
    for code in codes:
        if code.isascii() and code.isdigit() and number is not None:
            if int(code) == number:
                return True
        elif code.casefold() == err.casefold():
            return True
    return False


def smsc_of(msg: Message) -> str:
    """The SMSC a message went through: its record's, else the last one its history or parts name."""
    if msg.smsc:
        return msg.smsc
    for change in reversed(msg.history):
        if change.smsc:
            return change.smsc
    for part in msg.parts:
        if part.smsc:
            return part.smsc
    return ""


def classify(msg: Message, operator: OperatorConfig | None) -> ChargeOutcome:
    """The outcome of the charge a final MT carried (Rule 2).

    Args:
        msg: a final charged MT.
        operator: the operator owning the SMSC in the MT's record (`config.operator_for_smsc(msg.smsc)`).
    """
    smsc = smsc_of(msg)
    smsc_id = next((p.smsc_message_id for p in msg.parts if p.smsc_message_id), "") or ""
    status = msg.status
    if status is MessageStatus.DELIVERED:
        return ChargeOutcome("charged", "", smsc, smsc_id)
    if status is MessageStatus.UNKNOWN:
        return ChargeOutcome("unknown", "outcome_unknown", smsc, smsc_id)
    error = msg.error or {}
    err = error.get("err")
    if isinstance(err, str) and err and operator is not None:
        errors = operator.receipt_errors
        for reason, codes in (("insufficient_funds", errors.insufficient_funds), ("barred", errors.barred),
                              ("unknown_subscriber", errors.unknown_subscriber)):
            if _same_code(err, codes):
                return ChargeOutcome("failed", reason, smsc, smsc_id)
    code = error.get("code")
    if status is MessageStatus.CANCELLED:
        reason = "cancelled"
    elif code == "receipt" or not isinstance(code, str) or not code:
        reason = status.value  # undeliverable, rejected, expired, failed
    else:
        reason = code  # smsc_refused, no_route, no_price_point, validity_expired
    return ChargeOutcome("failed", reason, smsc, smsc_id)


def next_lower_price(service: ServiceConfig, price: str) -> str | None:
    """The highest of the service's `fallback_prices` below `price`, or None (Decimal comparison)."""
    current = Decimal(price)
    lower = [p for p in service.fallback_prices if Decimal(p) < current]
    return max(lower, key=Decimal) if lower else None


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, values: Mapping[str, str]) -> str:
    """`template` with its `{name}` placeholders filled from `values`; unknown names stay as written, and a
    template that is not a valid format string is returned unchanged (config texts must never crash a flow)."""
    try:
        return string.Formatter().vformat(template, (), _Blank(values))
    except (ValueError, IndexError, AttributeError, KeyError):
        return template


_PERIOD_WORDS = {"daily": "day", "weekly": "week", "monthly": "month"}


def service_values(service: ServiceConfig, **extra: str) -> dict[str, str]:
    """The placeholders every service text may use (docs/billing.md lists them)."""
    values = {
        "service": service.display_name or service.name,
        "price": service.price or "",
        "currency": service.currency,
        "period": _PERIOD_WORDS.get(service.period, service.period) if service.kind == "subscription" else "once",
        "confirm_keyword": service.confirm_keyword,
        "support": service.support,
        "keyword": service.keyword or "",
        "shortcode": service.shortcode,
    }
    values.update(extra)
    return values


def mt_account(config: Config, service: ServiceConfig) -> str:
    """The account the gateway's MTs for `service` go on (`gateway._consent.service_account`), else "billing"
    (an account no API key has: its MTs have no callbacks)."""
    return service_account(config, service, service.shortcode) or "billing"


# ---- the seams with the consent register and the store -------------------------------------------------


class ConsentPort(Protocol):
    """What the billing flows need of the consent register (gateway._consent, `extensions["consent"]`)."""

    def record(self, *, msisdn: str, scope: str, opted_in: bool, method: str, text_version: str | None,
               message_ids: list[str], now: float, writes: Writes, record_id: str | None = None) -> Any: ...

    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool: ...


class BillingStore(Protocol):
    """The store methods the billing flows read (SqliteStore has them)."""

    def doc(self, kind: str, doc_id: str) -> Doc | None: ...

    def docs(self, kind: str, *, msisdn: str | None = None, scope: str | None = None, state: str | None = None,
             since: float | None = None, limit: int | None = None) -> list[Doc]: ...

    def ledger(self, *, msisdn: str | None = None, service: str | None = None, operator: str | None = None,
               state: str | None = None, since: float | None = None, until: float | None = None,
               limit: int = 1000) -> list[dict[str, object]]: ...

    def get(self, message_id: str) -> Message | None: ...

    async def write(self, writes: Writes) -> list[int]: ...

    @property
    def is_open(self) -> bool: ...


def consent_of(gw: Gateway) -> ConsentPort:
    """The consent register (gateway._consent installs it as `extensions["consent"]`).

    Raises:
        RuntimeError: it is not installed: no charge may be made without its opt-in records.
    """
    register = gw.extensions.get("consent")
    if register is None:
        raise RuntimeError("the consent register (gateway._consent) is not installed: charges need its records")
    return cast(ConsentPort, register)


# ---- settling ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settlement:
    """One charge attempt's outcome, handed to its owner (Rule 3).

    Attributes:
        attempt: the attempt id.
        owner_kind: who made it ("subscription").
        owner_id: the owner's record id.
        service: the service name.
        msisdn: who was charged.
        price: the attempt's price.
        outcome: charged, failed (with a reason) or unknown.
        at: when it was settled.
    """

    attempt: str
    owner_kind: str
    owner_id: str
    service: str
    msisdn: str
    price: str
    outcome: ChargeOutcome
    at: float


OwnerHandler = Callable[[Settlement, Writes, list[Message]], None]
"""Adds the owner's next step to the settlement's writes and MTs; synchronous (no await between its check and
its change)."""


@dataclass(frozen=True, slots=True)
class ChargingStatistics:
    attempts: int
    settled: dict[str, int]
    open: int
    queued: int


class Charging:
    """Charge attempts, their settlement and the ledger API (the module's rules).

    Args:
        gw: the gateway: its config, store, core (accept, final hooks) and extensions (the consent register).
        wall: the wall clock; by default the core's.
    """

    def __init__(self, gw: Gateway, *, wall: Callable[[], float] | None = None) -> None:
        self.gw = gw
        self._wall = wall
        self.owners: dict[str, OwnerHandler] = {}
        self._open: dict[str, str] = {}  # attempt id -> message id, while pending
        self._loaded = False
        self._queue: deque[Message] = deque()
        self._wake = anyio.Event()
        self._running = False
        self.attempts_total = 0
        self.settled_total: dict[str, int] = {s: 0 for s in LEDGER_STATES[1:]}

    def wall(self) -> float:
        return self._wall() if self._wall is not None else self.gw.core.wall()

    @property
    def store(self) -> BillingStore:
        return cast(BillingStore, self.gw.store)

    def consent(self) -> ConsentPort:
        return consent_of(self.gw)

    def opted_out(self, msisdn: str, service: ServiceConfig) -> bool:
        """Whether `msisdn` opted out of `service` or its shortcode (checked before every MT of the flows)."""
        return self.consent().opted_out(msisdn, (service.name, service.shortcode))

    def load(self) -> None:
        """Read the pending attempts from the ledger (once, when the store is open)."""
        if self._loaded or not self.store.is_open:
            return
        for row in self.store.ledger(state="pending", limit=1 << 62):
            self._open[str(row["id"])] = str(row["message_id"])
        self._loaded = True

    # ---- making attempts (Rule 1) ----------------------------------------------------------------------

    def operator_for(self, msisdn: str, source: str, account: str, price: str) -> tuple[OperatorConfig | None, str]:
        """The operator (and SMSC) a charged MT to `msisdn` will most likely go through: the operator whose
        `prefixes` cover the number (longest), else the first SMSC of the MT route whose operator has the price."""
        config = self.gw.config
        best: OperatorConfig | None = None
        best_len = -1
        for op in config.billing.operators:
            for prefix in op.prefixes:
                if msisdn.startswith(prefix) and len(prefix) > best_len:
                    best, best_len = op, len(prefix)
        route = self.gw.core.router.decide(msisdn, source=source, account=account).route
        smscs = tuple(route.smscs) if route is not None else ()
        if best is not None:
            return best, next((s for s in smscs if s in best.smscs), best.smscs[0] if best.smscs else "")
        for name in smscs:
            owner = config.operator_for_smsc(name)
            if owner is not None and any(same_price(pp.price, price) for pp in owner.price_points):
                return owner, name
        return None, ""

    def attempt(self, *, attempt: str, owner: str, msisdn: str, service: ServiceConfig, price: str, account: str,
                text: str, now: float, writes: Writes) -> Message:
        """A charge attempt: its ledger entry goes into `writes`; the charged MT is returned for the caller to
        accept with them (Rule 1).

        Args:
            attempt: the deterministic attempt id (`attempt_id`).
            owner: "<kind>:<id>" of the record whose state caused it (its handler gets the settlement).
        """
        config = self.gw.config
        charge = {"price": price, "currency": service.currency, "service": service.name, "attempt": attempt,
                  "owner": owner}
        try:
            msg = internal_mt(config, account=account, to=msisdn, source=service.shortcode, text=text, now=now,
                              charge=charge, detail=f"charge attempt {attempt}")
        except ValueError as exc:  # the configured text cannot be sent: charge with the service's name instead
            log.error("service=%s the content text cannot be sent (%s); the charged MT carries the name only",
                      service.name, exc)
            msg = internal_mt(config, account=account, to=msisdn, source=service.shortcode,
                              text=service.display_name or service.name, now=now, charge=charge,
                              detail=f"charge attempt {attempt}")
        operator, smsc = self.operator_for(msisdn, service.shortcode, account, price)
        code = ""
        if operator is not None:
            code = next((pp.code for pp in operator.price_points if same_price(pp.price, price)), "")
        writes.ledger.append(LedgerEntry(id=attempt, at=now, msisdn=msisdn, service=service.name,
                                         operator=operator.name if operator is not None else "", amount=price,
                                         currency=service.currency, price_point=code, smsc=smsc,
                                         message_id=msg.id))
        self._open[attempt] = msg.id
        self.attempts_total += 1
        log.info("id=%s charge attempt=%s service=%s to=%s price=%s %s", msg.id, attempt, service.name,
                 mask_msisdn(msisdn), price, service.currency)
        return msg

    def cancel_attempt(self, attempt: str, now: float, writes: Writes) -> bool:
        """Cancel a pending attempt whose MT has not gone to an SMSC yet: the cancelled MT and the outcome
        (failed, cancelled) go into `writes`. False when it is too late (its outcome will come from the SMSC)."""
        mid = self._open.get(attempt)
        if mid is None:
            return False
        msg = self.gw.core.messages.get(mid)
        if msg is None or not self.gw.core.cancel(msg):
            return False
        del self._open[attempt]
        writes.messages.append(msg)
        writes.ledger_outcomes.append(LedgerOutcome(attempt, now, "failed", "cancelled", ""))
        self.settled_total["failed"] += 1
        return True

    def is_open(self, attempt: str) -> bool:
        return attempt in self._open

    # ---- settling (Rules 2 and 3) -----------------------------------------------------------------------

    def on_final(self, msg: Message) -> None:
        """The core's final hook: a charged MT became final (durably); it is settled by `run` (on a cluster, the
        billing node's: elsewhere nothing settles, and the billing node finds the MT by `poll_open`)."""
        settles = self._running or self.gw.config.store.backend != "redis"
        if settles and msg.charged and isinstance(msg.meta.get("charge"), dict):
            self._queue.append(msg)
            self._wake.set()

    def reconcile(self) -> int:
        """Queue the pending attempts whose MT is final already (a stop between the two commits). Returns how
        many."""
        self.load()
        found = 0
        for mid in list(self._open.values()):
            msg = self.gw.core.find(mid)
            if msg is not None and msg.is_final:
                self._queue.append(msg)
                found += 1
        if found:
            self._wake.set()
        return found

    def settlement(self, msg: Message, now: float, writes: Writes, messages: list[Message]) -> Settlement | None:
        """Settle one final charged MT into `writes` and `messages`; None when it was settled already."""
        charge = msg.meta.get("charge") or {}
        attempt = str(charge.get("attempt", ""))
        if attempt not in self._open:
            return None
        del self._open[attempt]
        config = self.gw.config
        smsc = smsc_of(msg)
        operator = config.operator_for_smsc(smsc) if smsc else None
        outcome = classify(msg, operator)
        writes.ledger_outcomes.append(LedgerOutcome(attempt, now, outcome.state, outcome.reason,
                                                    outcome.smsc_message_id))
        self.settled_total[outcome.state] += 1
        service = config.service(str(charge.get("service", "")))
        msisdn = msg.to
        price = str(charge.get("price", ""))
        if outcome.state == "unknown":
            log.error("id=%s charge attempt=%s outcome unknown (%s): left for reconciliation, never resent",
                      msg.id, attempt, (msg.error or {}).get("message", ""))
        else:
            log.info("id=%s charge attempt=%s %s%s", msg.id, attempt, outcome.state,
                     f" ({outcome.reason})" if outcome.reason else "")
        if (outcome.state == "charged" and operator is not None and operator.charge_receipt_mt
                and service is not None and not self.opted_out(msisdn, service)):
            text = render(operator.charge_receipt_text,
                          service_values(service, price=price, currency=str(charge.get("currency", ""))))
            try:
                messages.append(internal_mt(config, account=msg.account, to=msisdn, source=service.shortcode,
                                            text=text, now=now, detail=f"receipt of charge {attempt}"))
            except ValueError as exc:
                log.error("operator=%s charge_receipt_text cannot be sent: %s", operator.name, exc)
        kind, _, owner_id = str(charge.get("owner", "")).partition(":")
        settled = Settlement(attempt, kind, owner_id, str(charge.get("service", "")), msisdn, price, outcome, now)
        handler = self.owners.get(kind)
        if handler is not None:
            handler(settled, writes, messages)
        return settled

    async def poll_open(self) -> int:
        """Queue the pending attempts whose MT is final in the store: on a cluster the MT may have become final
        on another node, whose final hook settles nothing (Rule 4). Returns how many were queued."""
        mids = list(self._open.values())
        found = 0
        for i in range(0, len(mids), 500):
            for msg in await cast(Any, self.gw.store).aget_many(mids[i:i + 500]):  # a ClusterStore
                if msg is not None and msg.is_final and msg.charged:
                    self._queue.append(msg)
                    found += 1
        return found

    async def settle_queued(self) -> int:
        """Settle every queued final MT, each in one commit (Rule 3). Returns how many were settled."""
        self.load()
        done = 0
        while self._queue:
            msg = self._queue.popleft()
            writes = Writes()
            messages: list[Message] = []
            if self.settlement(msg, self.wall(), writes, messages) is None:
                continue
            await self.gw.core.accept(messages, writes)
            done += 1
        return done

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Settle charged MTs as they become final, until cancelled (one instance runs; a second call returns)."""
        if self._running:
            task_status.started()
            return
        self._running = True
        try:
            self.reconcile()
            task_status.started()
            clustered = self.gw.config.store.backend == "redis"
            while True:
                while not self._queue:
                    self._wake = anyio.Event()
                    if not clustered:
                        await self._wake.wait()
                        continue
                    with anyio.move_on_after(POLL_S):
                        await self._wake.wait()
                    try:
                        await self.poll_open()
                    except StoreClosed:
                        raise
                    except Exception as exc:
                        log.warning("charging: reading the open attempts' MTs failed: %s", exc)
                try:
                    await self.settle_queued()
                except StoreClosed:
                    raise
                except Exception:
                    log.exception("settling charges failed; the attempts stay pending and are settled on restart")
        finally:
            self._running = False

    def statistics(self) -> ChargingStatistics:
        return ChargingStatistics(self.attempts_total, dict(self.settled_total), len(self._open), len(self._queue))

    # ---- the ledger API -------------------------------------------------------------------------------

    def visible_services(self, account: AccountConfig) -> set[str]:
        """The services whose charges `account` sees: those it runs (`account`) and those of no account."""
        return {s.name for s in self.gw.config.billing.services if s.account in (None, account.id)}

    def charges(self, account: AccountConfig, *, msisdn: str | None = None, service: str | None = None,
                operator: str | None = None, state: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 100) -> list[ChargeView]:
        """Ledger entries the account may see, newest first."""
        visible = self.visible_services(account)
        if service is not None and service not in visible:
            return []
        rows = self.store.ledger(msisdn=msisdn, service=service, operator=operator, state=state, since=since,
                                 until=until, limit=limit if service is not None else 1 << 62)
        out = [charge_view(r) for r in rows if r["service"] in visible]
        return out[:limit]

    def totals(self, account: AccountConfig, *, since: float | None = None, until: float | None = None
               ) -> list[TotalsRow]:
        """Per service and UTC day: attempts, outcomes, and the amount charged by currency."""
        visible = self.visible_services(account)
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.store.ledger(since=since, until=until, limit=1 << 62):
            service = str(row["service"])
            if service not in visible:
                continue
            day = datetime.fromtimestamp(float(cast(float, row["at"])), UTC).strftime("%Y-%m-%d")
            g = groups.setdefault((service, day), {"attempts": 0, "pending": 0, "charged": 0, "failed": 0,
                                                   "unknown": 0, "amount": {}})
            g["attempts"] += 1
            g[str(row["state"])] += 1
            if row["state"] == "charged":
                amounts: dict[str, Decimal] = g["amount"]
                currency = str(row["currency"])
                amounts[currency] = amounts.get(currency, Decimal(0)) + Decimal(str(row["amount"]))
        return [TotalsRow(service=s, day=d, attempts=g["attempts"], charged=g["charged"], failed=g["failed"],
                          unknown=g["unknown"], pending=g["pending"],
                          amount={c: str(v) for c, v in sorted(g["amount"].items())})
                for (s, d), g in sorted(groups.items())]

    def routes(self, api: Any) -> list[Route]:
        """`GET /v1/charges` and `GET /v1/charges/totals`."""

        async def charges(request: Request) -> Response:
            account = api.account(request)
            q = query_single(request)
            state = q.get("state")
            if state is not None and state not in LEDGER_STATES:
                raise ApiError(422, "invalid_field", f"state: expected one of {', '.join(LEDGER_STATES)}",
                               field="state")
            require_open(self.gw)
            rows = self.charges(account, msisdn=query_msisdn(self.gw, account, q.get("msisdn")),
                                service=q.get("service") or None, operator=q.get("operator") or None, state=state,
                                since=parse_time(q.get("since"), "since"), until=parse_time(q.get("until"), "until"),
                                limit=query_limit(q.get("limit")))
            return Response(_ENCODER.encode(ChargeList(charges=rows)), media_type=_JSON)

        async def totals(request: Request) -> Response:
            account = api.account(request)
            q = query_single(request)
            since = parse_time(q.get("since"), "since")
            until = parse_time(q.get("until"), "until")
            require_open(self.gw)
            body = ChargeTotals(since=iso_time(since) if since is not None else None,
                                until=iso_time(until) if until is not None else None,
                                totals=self.totals(account, since=since, until=until))
            return Response(_ENCODER.encode(body), media_type=_JSON)

        return [Route("/v1/charges", charges, methods=["GET"]),
                Route("/v1/charges/totals", totals, methods=["GET"])]


# ---- HTTP: views and the helpers the billing routes share ----------------------------------------------------

DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class ChargeView(msgspec.Struct, frozen=True, kw_only=True):
    """One charge attempt of the ledger, with its latest outcome."""

    id: Annotated[str, msgspec.Meta(description="The attempt id: <subscription>.<period>.<attempt>")]
    at: DateTime
    msisdn: str
    service: str
    operator: str
    amount: Annotated[str, msgspec.Meta(description="The price, as configured (a decimal string)")]
    currency: str
    price_point: Annotated[str, msgspec.Meta(description="The operator's code for the price")]
    message_id: Annotated[str, msgspec.Meta(description="The charged MT's id (GET /v1/messages/{id})")]
    state: Annotated[str, msgspec.Meta(description="pending, charged, failed or unknown")]
    reason: str | None
    smsc_message_id: str | None
    final_at: DateTime | None


class ChargeList(msgspec.Struct, frozen=True, kw_only=True):
    charges: list[ChargeView]


class TotalsRow(msgspec.Struct, frozen=True, kw_only=True):
    """One service on one UTC day."""

    service: str
    day: Annotated[str, msgspec.Meta(description="YYYY-MM-DD (UTC) of the attempts")]
    attempts: int
    charged: int
    failed: int
    unknown: int
    pending: int
    amount: Annotated[dict[str, str], msgspec.Meta(description="Charged amount per currency (decimal strings)")]


class ChargeTotals(msgspec.Struct, frozen=True, kw_only=True):
    since: DateTime | None
    until: DateTime | None
    totals: list[TotalsRow]


def charge_view(row: Mapping[str, object]) -> ChargeView:
    final_at = row.get("final_at")
    return ChargeView(id=str(row["id"]), at=iso_time(float(cast(float, row["at"]))), msisdn=str(row["msisdn"]),
                      service=str(row["service"]), operator=str(row["operator"]), amount=str(row["amount"]),
                      currency=str(row["currency"]), price_point=str(row["price_point"]),
                      message_id=str(row["message_id"]), state=str(row["state"]),
                      reason=str(row["reason"]) if row.get("reason") else None,
                      smsc_message_id=str(row["smsc_message_id"]) if row.get("smsc_message_id") else None,
                      final_at=iso_time(float(cast(float, final_at))) if final_at is not None else None)


def require_open(gw: Gateway) -> None:
    """Raises: ApiError: 503 store_unavailable."""
    if not gw.store.is_open:
        raise ApiError(503, "store_unavailable", "the store is unavailable")


def parse_time(value: str | None, field: str) -> float | None:
    """A query time: seconds since the epoch, or ISO 8601 (naive is UTC); None when absent.

    Raises:
        ApiError: 422 invalid_field naming `field`.
    """
    if value is None or value == "":
        return None
    bad = ApiError(422, "invalid_field", f"{field}: expected seconds since the epoch or ISO 8601", field=field)
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise bad
        return number
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def query_single(request: Request) -> dict[str, str]:
    """The query parameters, each given at most once.

    Raises:
        ApiError: 422 invalid_field naming a parameter given twice.
    """
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            raise ApiError(422, "invalid_field", f"{key}: given more than once", field=key)
        out[key] = value
    return out


def query_limit(value: str | None, default: int = 100, maximum: int = 1000) -> int:
    """Raises: ApiError: 422 invalid_field `limit`."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
        raise ApiError(422, "invalid_field", f"limit: expected an integer from 1 to {maximum}", field="limit")
    return int(value)


def query_msisdn(gw: Gateway, account: AccountConfig, value: str | None, field: str = "msisdn") -> str | None:
    """A number from a query or a body, normalised as the account writes destinations.

    Raises:
        ApiError: 422 invalid_field naming `field`.
    """
    if value is None or value == "":
        return None
    from routing import InvalidMsisdn

    try:
        return str(gw.core.numbering.normalise(value, country=account.country or gw.config.numbering.default_country))
    except InvalidMsisdn as exc:
        raise ApiError(422, "invalid_field", f"{field}: {exc}", field=field, reason=exc.reason.value) from None


def decode_body(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """A request body decoded strictly; errors are 400 malformed_json or 422 naming the field.

    Raises:
        ApiError: as above.
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = ""
        at = text.rfind(" - at `$")
        if at >= 0:
            path = text[at + 8:-1].lstrip(".")
            text = text[:at]
        for prefix, code, what in (("Object contains unknown field `", "unknown_field", "unknown field"),
                                   ("Object missing required field `", "missing_field", "required")):
            if text.startswith(prefix):
                name = text[len(prefix):-1]
                field = f"{path}.{name}" if path else name
                raise ApiError(422, code, f"{field}: {what}", field=field) from None
        if not path:
            raise ApiError(422, "invalid_body", f"the body must be a JSON object: {text}") from None
        raise ApiError(422, "invalid_field", f"{path}: {text[0].lower()}{text[1:]}", field=path) from None
    except msgspec.DecodeError as exc:
        if not body.strip():
            raise ApiError(400, "malformed_json", "the body is empty; expected a JSON object") from None
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def check_intake(gw: Gateway) -> None:
    """Raises: ApiError: 503 draining or store_unavailable, before a request that makes MTs."""
    if gw.draining:
        raise ApiError(503, "draining", "the gateway is shutting down; retry later", headers={"Retry-After": "5"})
    require_open(gw)


_ERROR_TEXT = {400: "Malformed JSON", 401: "No or an unknown API key", 404: "No such record for this account",
               409: "Conflict (see the error code)", 410: "Gone (expired)", 413: "Body larger than http.max_body_bytes",
               415: "Body is not JSON", 422: "A field is invalid (the error names it)",
               429: "Too many requests or attempts (see the error code)",
               503: "Unavailable (draining, store)"}


def error_responses(*statuses: int) -> dict[str, Any]:
    """OpenAPI responses for these error statuses (the `ErrorResponse` schema of gateway._http)."""
    return {str(s): {"description": _ERROR_TEXT[s], "content": {_JSON: {
        "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}} for s in statuses}


def json_response(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def query_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


TIME_PARAM = "seconds since the epoch or ISO 8601 (naive is UTC)"


def openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and schemas of the ledger routes."""
    _, schemas = msgspec.json.schema_components((ChargeList, ChargeTotals),
                                                ref_template="#/components/schemas/{name}")
    paths = {
        "/v1/charges": {"get": {
            "operationId": "listCharges", "summary": "Charge attempts of the ledger, newest first",
            "parameters": [
                query_param("msisdn", "Only this number (as the account writes destinations)"),
                query_param("service", "Only this service"),
                query_param("operator", "Only this operator"),
                query_param("state", "Only this state", {"type": "string", "enum": list(LEDGER_STATES)}),
                query_param("since", f"Attempts made at or after: {TIME_PARAM}"),
                query_param("until", f"Attempts made before: {TIME_PARAM}"),
                query_param("limit", "At most this many (default 100)",
                            {"type": "integer", "minimum": 1, "maximum": 1000}),
            ],
            "responses": {"200": json_response("ChargeList", "The attempts"), **error_responses(401, 422, 503)},
        }},
        "/v1/charges/totals": {"get": {
            "operationId": "chargeTotals", "summary": "Totals per service and UTC day",
            "parameters": [query_param("since", f"Attempts made at or after: {TIME_PARAM}"),
                           query_param("until", f"Attempts made before: {TIME_PARAM}")],
            "responses": {"200": json_response("ChargeTotals", "The totals"), **error_responses(401, 422, 503)},
        }},
    }
    return paths, schemas


def install(gw: Gateway) -> Charging:
    """Create the charging service once and hang it on the gateway: `extensions["charging"]`, the final hook, the
    ledger routes and their OpenAPI description. Returns it; `run` is its task."""
    existing = gw.extensions.get("charging")
    if isinstance(existing, Charging):
        return existing
    charging = Charging(gw)
    ext = gw.extensions
    ext["charging"] = charging
    gw.core.final_hooks.append(charging.on_final)
    add_routes(ext, charging.routes, openapi())
    return charging
