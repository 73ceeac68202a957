"""Subscriptions and the handshake double opt-in: keyword or API -> confirm MT -> YES -> opt-in, subscription and
first charge; renewals, retries, reminders, suspension and cancellation.

Rule 1: one handshake per (MSISDN, service) is pending at a time. A confirm keyword within its TTL confirms it
once: the opt-in record, the subscription and its first charged MT commit together with the YES. A second YES
finds it confirmed and charges nothing; a YES after the TTL gets `late_reply` once; another reply gets
`wrong_reply` once, and the handshake stays pending until its TTL (each explanation at most once per handshake,
so an auto-responder cannot start a loop). A keyword while one is pending re-sends the confirm text once.
Rule 2: never charged without consent: a charge attempt is only made in the commit of an opt-in (handshake YES,
PIN success, or the keyword itself for a service without double opt-in), or later for a subscription that is
active and whose MSISDN has not opted out of the service or its shortcode when the renewal fires (checked then).
Rule 3: never charged twice: attempt ids are `<subscription>.<period>.<n>` from the record's own counters, which
commit with the attempt; a subscription has at most one attempt pending, and its next step is decided only when
that attempt is settled (gateway._charging Rule 3): charged -> paid until now + period; insufficient funds -> the
next lower fallback price at once, else a retry after `retry_spacing_s`, up to `retry_attempts`, then suspended;
barred -> suspended; unknown subscriber -> cancelled; unknown -> not retried, the period counts as paid.
Rule 4: memory is the truth between commits: every decision reads and changes the in-memory records with no await
between the check and the change, and each record's snapshot enters the same writes as the MTs it causes.
"""

from __future__ import annotations

import calendar
import heapq
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import anyio
import anyio.abc
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routing import MoKind, MoRouter, fold_text, mask_msisdn

from ._accept import ApiError, add_routes
from ._charging import (
    BillingStore,
    Charging,
    Settlement,
    attempt_id,
    check_intake,
    decode_body,
    error_responses,
    json_response,
    mt_account,
    next_lower_price,
    query_limit,
    query_msisdn,
    query_param,
    query_single,
    render,
    require_open,
    service_values,
)
from ._charging import install as install_charging
from ._config import AccountConfig, Config, ServiceConfig
from ._mo import MoRecord, MoResult
from ._model import Message, iso_time, new_message_id
from ._mt import internal_mt
from ._store import Doc, StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "HANDSHAKE_KIND",
    "SUBSCRIPTION_KIND",
    "Handshake",
    "HandshakeView",
    "Subscription",
    "SubscriptionList",
    "SubscriptionRequest",
    "SubscriptionView",
    "Subscriptions",
    "install",
    "period_end",
]

log = logging.getLogger(__name__)

HANDSHAKE_KIND = "handshake"
SUBSCRIPTION_KIND = "subscription"
LIVE_STATES = frozenset({"active", "suspended", "pending"})
"""Subscription states kept in memory: active and suspended subscriptions, one-off purchases being charged."""
SUBSCRIPTION_STATES = ("active", "suspended", "cancelled", "pending", "charged", "failed", "unknown")

_JSON = "application/json"
_ENCODER = msgspec.json.Encoder()
_WORD = re.compile(r"\w+")


class Handshake(msgspec.Struct, kw_only=True):
    """A double opt-in in progress or ended (the body of a `handshake` record).

    Attributes:
        origin: "mo" (a keyword) or "api" (POST /v1/subscriptions).
        request_id: the keyword MO's id ("" from the API).
        state: pending, confirmed, expired or cancelled.
        confirm_message_id: the confirm MT's id (the consent record cites it).
        resent, wrong_replied, late_replied: what was sent once already (Rule 1).
        reply_mo_id: the YES that confirmed it.
        subscription_id: what the YES started.
    """

    id: str
    msisdn: str
    service: str
    shortcode: str
    account: str
    origin: str
    request_id: str = ""
    created_at: float
    expires_at: float
    state: str = "pending"
    state_at: float
    reason: str = ""
    confirm_message_id: str = ""
    resent: bool = False
    wrong_replied: bool = False
    late_replied: bool = False
    reply_mo_id: str = ""
    subscription_id: str = ""


class Subscription(msgspec.Struct, kw_only=True):
    """A subscription, or a one-off purchase (`one_off`), and its charging schedule (a `subscription` record).

    Attributes:
        state: subscription: active, suspended or cancelled; one-off: pending, charged, failed, unknown or
            cancelled.
        period: the period being paid for (0 is the first).
        attempt: attempts made in this period (the next attempt's number).
        rounds: failed rounds in this period (a round tries the price, then its lower fallbacks).
        price: the latest attempt's price.
        pending_attempt: the attempt whose outcome is awaited ("" when none).
        paid_until: the end of the paid period.
        renew_at: when the next attempt fires (a renewal or a retry); None while one is pending or when ended.
        reminder_at: when the reminder before the renewal fires; None when none is due.
        reminded_period: the last period whose renewal was announced.
    """

    id: str
    msisdn: str
    service: str
    shortcode: str
    account: str
    one_off: bool = False
    state: str
    state_at: float
    reason: str = ""
    created_at: float
    consent_method: str
    consent_message_ids: list[str] = []
    period: int = 0
    attempt: int = 0
    rounds: int = 0
    price: str = ""
    pending_attempt: str = ""
    pending_message_id: str = ""
    paid_until: float | None = None
    renew_at: float | None = None
    reminder_at: float | None = None
    reminded_period: int = -1
    charges: int = 0


_MSGPACK = msgspec.msgpack.Encoder()
_HS_DECODER = msgspec.msgpack.Decoder(Handshake)
_SUB_DECODER = msgspec.msgpack.Decoder(Subscription)


def decode_subscription(doc: Doc) -> Subscription:
    return _SUB_DECODER.decode(doc.body)


def decode_handshake(doc: Doc) -> Handshake:
    return _HS_DECODER.decode(doc.body)


_PERIOD_S = {"daily": 86400.0, "weekly": 7 * 86400.0}


def period_end(service: ServiceConfig, start: float) -> float:
    """The end of a period that starts at `start`: `period_s` when set, else a day, a week, or the same day of the
    next calendar month in UTC (the 31st becomes the month's last day)."""
    if service.period_s is not None:
        return start + service.period_s
    if service.period in _PERIOD_S:
        return start + _PERIOD_S[service.period]
    t = datetime.fromtimestamp(start, UTC)
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    day = min(t.day, calendar.monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day).timestamp()


def confirm_words(service: ServiceConfig) -> frozenset[str]:
    """The folded words that confirm a handshake of `service` (confirm_keyword and confirm_aliases)."""
    return frozenset(fold_text(w) for w in (service.confirm_keyword, *service.confirm_aliases))


def first_word(text: str) -> tuple[str, str]:
    """The folded first word of `text` (`'Yés!'` -> `'yes'`) and the folded word after it ("" when none)."""
    words = _WORD.findall(fold_text(text))
    return (words[0] if words else "", words[1] if len(words) > 1 else "")


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


class Subscriptions:
    """Handshakes, subscriptions and their schedule (the module's rules); the MO handler's partner.

    Args:
        gw: the gateway.
        charging: the charging service (its attempts and settlements; this registers as owner "subscription").
        wall: the wall clock; by default the core's.
    """

    def __init__(self, gw: Gateway, charging: Charging, *, wall: Callable[[], float] | None = None) -> None:
        self.gw = gw
        self.charging = charging
        self._wall = wall
        self._hs: dict[str, Handshake] = {}
        self._hs_latest: dict[tuple[str, str], str] = {}  # (msisdn, service) -> newest handshake
        self._hs_reply: dict[tuple[str, str], list[str]] = {}  # (msisdn, shortcode) -> handshakes it may answer
        self._subs: dict[str, Subscription] = {}  # LIVE_STATES only
        self._by_msisdn: dict[str, set[str]] = {}
        self._heap: list[tuple[float, int, str, str]] = []  # (due, seq, "sub" | "hs", id)
        self._seq = 0
        self._loaded = False
        self._running = False
        self._wake = anyio.Event()
        self._router_of: Config | None = None
        self._router: MoRouter | None = None
        self.handshakes_total = 0
        self.confirmed_total = 0
        self.renewals_total = 0
        self.reminders_total = 0
        charging.owners["subscription"] = self.on_settled

    def wall(self) -> float:
        return self._wall() if self._wall is not None else self.gw.core.wall()

    @property
    def store(self) -> BillingStore:
        return cast(BillingStore, self.gw.store)

    def router(self) -> MoRouter:
        config = self.gw.config
        if self._router is None or self._router_of is not config:
            self._router = config.mo_router()
            self._router_of = config
        return self._router

    # ---- memory (Rule 4) -------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the live subscriptions and the recent handshakes from the store (once, when it is open)."""
        if self._loaded or not self.store.is_open:
            return
        self._loaded = True
        self.charging.load()
        for state in sorted(LIVE_STATES):
            for doc in self.store.docs(SUBSCRIPTION_KIND, state=state):
                self._remember_sub(decode_subscription(doc))
        window = max((s.handshake_ttl_s for s in self.gw.config.billing.services), default=86400.0)
        for doc in self.store.docs(HANDSHAKE_KIND, state="pending"):
            self._remember_hs(decode_handshake(doc))
        for doc in self.store.docs(HANDSHAKE_KIND, since=self.wall() - 2 * window):
            if doc.state != "pending":
                self._remember_hs(decode_handshake(doc))
        log.info("subscriptions: %d live, %d handshakes remembered", len(self._subs), len(self._hs))

    def _push(self, due: float, what: str, rid: str) -> None:
        self._seq += 1
        if not self._heap or due < self._heap[0][0]:
            self._wake.set()
        heapq.heappush(self._heap, (due, self._seq, what, rid))

    @staticmethod
    def due(sub: Subscription) -> float | None:
        """When `sub` next needs the scheduler (a renewal, a retry or a reminder), or None."""
        if sub.state != "active":
            return None
        times = [t for t in (sub.renew_at, sub.reminder_at) if t is not None]
        return min(times) if times else None

    def _remember_sub(self, sub: Subscription) -> None:
        if sub.state not in LIVE_STATES:
            self._forget_sub(sub.id)
            return
        self._subs[sub.id] = sub
        self._by_msisdn.setdefault(sub.msisdn, set()).add(sub.id)
        due = self.due(sub)
        if due is not None:
            self._push(due, "sub", sub.id)

    def _forget_sub(self, sid: str) -> None:
        sub = self._subs.pop(sid, None)
        if sub is not None:
            ids = self._by_msisdn.get(sub.msisdn)
            if ids is not None:
                ids.discard(sid)
                if not ids:
                    del self._by_msisdn[sub.msisdn]

    def _write_sub(self, sub: Subscription, now: float, writes: Writes) -> None:
        writes.docs.append(Doc(SUBSCRIPTION_KIND, sub.id, sub.msisdn, sub.service, sub.state, self.due(sub), now,
                               _MSGPACK.encode(sub)))
        self._remember_sub(sub)

    def live(self, msisdn: str, service: str) -> Subscription | None:
        """The msisdn's active or suspended subscription to `service` (not one-off purchases)."""
        for sid in self._by_msisdn.get(msisdn, ()):
            sub = self._subs[sid]
            if sub.service == service and not sub.one_off and sub.state in ("active", "suspended"):
                return sub
        return None

    def _ttl(self, service_name: str) -> float:
        service = self.gw.config.service(service_name)
        return service.handshake_ttl_s if service is not None else 86400.0

    def _forget_at(self, h: Handshake) -> float:
        return max(h.expires_at, h.state_at) + self._ttl(h.service)

    def _remember_hs(self, h: Handshake) -> None:
        self._hs[h.id] = h
        key = (h.msisdn, h.service)
        latest = self._hs.get(self._hs_latest.get(key, ""))
        if latest is None or latest.created_at <= h.created_at:
            self._hs_latest[key] = h.id
        ids = self._hs_reply.setdefault((h.msisdn, h.shortcode), [])
        if h.id not in ids:
            ids.append(h.id)
        self._push(h.expires_at if h.state == "pending" else self._forget_at(h), "hs", h.id)

    def _forget_hs(self, h: Handshake) -> None:
        self._hs.pop(h.id, None)
        key = (h.msisdn, h.service)
        if self._hs_latest.get(key) == h.id:
            del self._hs_latest[key]
        ids = self._hs_reply.get((h.msisdn, h.shortcode))
        if ids is not None and h.id in ids:
            ids.remove(h.id)
            if not ids:
                del self._hs_reply[(h.msisdn, h.shortcode)]

    def _write_hs(self, h: Handshake, now: float, writes: Writes) -> None:
        writes.docs.append(Doc(HANDSHAKE_KIND, h.id, h.msisdn, h.service, h.state,
                               h.expires_at if h.state == "pending" else None, now, _MSGPACK.encode(h)))
        self._remember_hs(h)

    def _end_hs(self, h: Handshake, state: str, reason: str, now: float, writes: Writes) -> None:
        h.state = state
        h.reason = reason
        h.state_at = now
        self._write_hs(h, now, writes)

    def pending_handshake(self, msisdn: str, service: str, now: float) -> Handshake | None:
        """The msisdn's handshake for `service` that a YES at `now` would confirm, or None."""
        h = self._hs.get(self._hs_latest.get((msisdn, service), ""))
        if h is not None and h.state == "pending" and now < h.expires_at:
            return h
        return None

    # ---- MTs ---------------------------------------------------------------------------------------------

    def _free_mt(self, service: ServiceConfig, account: str, msisdn: str, text: str, now: float, detail: str,
                 validity_s: float | None = None) -> Message | None:
        try:
            return internal_mt(self.gw.config, account=account, to=msisdn, source=service.shortcode, text=text,
                               now=now, validity_s=validity_s, detail=detail)
        except ValueError as exc:
            log.error("service=%s a configured text cannot be sent (%s): %s", service.name, detail, exc)
            return None

    def _charge(self, sub: Subscription, service: ServiceConfig, price: str, now: float, writes: Writes) -> Message:
        attempt = attempt_id(sub.id, sub.period, sub.attempt)
        sub.attempt += 1
        sub.price = price
        sub.renew_at = None
        msg = self.charging.attempt(attempt=attempt, owner=f"subscription:{sub.id}", msisdn=sub.msisdn,
                                    service=service, price=price, account=sub.account,
                                    text=render(service.texts.content, service_values(service, price=price)),
                                    now=now, writes=writes)
        sub.pending_attempt = attempt
        sub.pending_message_id = msg.id
        return msg

    # ---- starting (Rules 1 and 2) ---------------------------------------------------------------------

    def new_handshake(self, *, msisdn: str, service: ServiceConfig, account: str, origin: str, request_id: str,
                      now: float, writes: Writes, messages: list[Message]) -> Handshake | None:
        """Start a handshake: the record and its free confirm MT. None when the confirm text cannot be sent."""
        hid = f"hs-{request_id}" if request_id else f"hs-{new_message_id(now)}"
        ttl = service.handshake_ttl_s
        msg = self._free_mt(service, account, msisdn, render(service.texts.confirm, service_values(service)), now,
                            f"handshake {hid}", validity_s=ttl)
        if msg is None:
            return None
        h = Handshake(id=hid, msisdn=msisdn, service=service.name, shortcode=service.shortcode, account=account,
                      origin=origin, request_id=request_id, created_at=now, expires_at=now + ttl, state_at=now,
                      confirm_message_id=msg.id)
        messages.append(msg)
        self._write_hs(h, now, writes)
        self.handshakes_total += 1
        log.info("handshake=%s service=%s to=%s started (%s)", hid, service.name, mask_msisdn(msisdn), origin)
        return h

    def activate(self, *, msisdn: str, service: ServiceConfig, account: str, method: str, proof: list[str],
                 origin: str, now: float, writes: Writes, messages: list[Message]) -> Subscription:
        """Record the opt-in and start the subscription (or the one-off purchase) with its first charge, all
        into `writes` and `messages` (Rule 2). A suspended subscription to the service is cancelled ("rejoined").

        Args:
            method: the consent method ("keyword", "web_pin").
            proof: the ids of the messages that prove the consent.
            origin: the id of what gave consent (a handshake, a verification, an MO): the subscription's id and
                the consent record's id derive from it, so a redo after a crash makes the same records.
        """
        price = service.price
        if price is None:
            raise ValueError(f"service {service.name} has no price")
        one_off = service.kind == "one_off"
        sid = f"{'buy' if one_off else 'sub'}-{origin}"
        existing = self._subs.get(sid)
        if existing is not None:  # the same consent twice: it started already, nothing is charged again
            return existing
        self.charging.consent().record(msisdn=msisdn, scope=service.name, opted_in=True, method=method,
                                       text_version=service.consent_text_version, message_ids=list(proof), now=now,
                                       writes=writes, record_id=f"{origin}:{service.name}")
        if not one_off:
            old = self.live(msisdn, service.name)
            if old is not None:
                self.cancel(old, "rejoined", now, writes)
        sub = Subscription(id=sid, msisdn=msisdn, service=service.name,
                           shortcode=service.shortcode, account=account, one_off=one_off,
                           state="pending" if one_off else "active", state_at=now, created_at=now,
                           consent_method=method, consent_message_ids=list(proof), price=price)
        messages.append(self._charge(sub, service, price, now, writes))
        if not one_off and service.texts.welcome:
            welcome = self._free_mt(service, account, msisdn, render(service.texts.welcome, service_values(service)),
                                    now, f"welcome to {sub.id}")
            if welcome is not None:
                messages.append(welcome)
        self._write_sub(sub, now, writes)
        log.info("subscription=%s service=%s to=%s %s by %s", sub.id, service.name, mask_msisdn(msisdn),
                 "purchase" if one_off else "active", method)
        return sub

    # ---- the MO handler's interface ----------------------------------------------------------------------

    async def on_keyword(self, mo: MoRecord, service: ServiceConfig) -> MoResult:
        """An MO keyword for a subscription or one_off service: start the handshake, or with double_opt_in off
        activate and charge at once (the keyword is the consent). Returns the writes and MTs to commit."""
        self.load()
        now = mo.received_at
        msisdn = mo.msisdn
        result = MoResult(service=service.name)
        account = mt_account(self.gw.config, service)
        values = service_values(service)
        if service.kind == "subscription":
            live = self.live(msisdn, service.name)
            if live is not None and live.state == "active":
                msg = self._free_mt(service, live.account, msisdn, render(service.texts.already_active, values), now,
                                    f"already subscribed to {service.name}")
                result.messages.extend([msg] if msg is not None else [])
                result.detail = f"already subscribed ({live.id})"
                return result
        pending = self.pending_handshake(msisdn, service.name, now)
        if pending is not None:
            if pending.resent:
                result.detail = f"handshake {pending.id} pending; its confirm text was re-sent already"
                return result
            msg = self._free_mt(service, pending.account, msisdn, render(service.texts.confirm, values), now,
                                f"handshake {pending.id} (again)", validity_s=max(1.0, pending.expires_at - now))
            if msg is not None:
                pending.resent = True
                result.messages.append(msg)
                self._write_hs(pending, now, result.writes)
            result.detail = f"handshake {pending.id} pending; confirm text re-sent"
            return result
        if not service.double_opt_in:
            sub = self.activate(msisdn=msisdn, service=service, account=account, method="keyword", proof=[mo.id],
                                origin=mo.id, now=now, writes=result.writes, messages=result.messages)
            result.detail = f"{sub.id} started by the keyword (no double opt-in)"
            return result
        h = self.new_handshake(msisdn=msisdn, service=service, account=account, origin="mo", request_id=mo.id,
                               now=now, writes=result.writes, messages=result.messages)
        result.detail = f"handshake {h.id} started" if h is not None else "the confirm text cannot be sent"
        return result

    def wants_reply(self, msisdn: str, shortcode: str) -> bool:
        """Whether an MO from `msisdn` to `shortcode` may answer a handshake (pending, or ended lately: a late or
        second YES is answered here too)."""
        self.load()
        return (msisdn, shortcode) in self._hs_reply

    async def on_reply(self, mo: MoRecord) -> MoResult | None:
        """The answer to a handshake (Rule 1); None when the MO is not one (the MO handler routes it)."""
        self.load()
        ids = self._hs_reply.get((mo.msisdn, mo.to))
        if not ids:
            return None
        now = mo.received_at
        config = self.gw.config
        word, second = first_word(mo.text)
        candidates: list[tuple[Handshake, ServiceConfig]] = []
        for hid in ids:
            h = self._hs.get(hid)
            service = config.service(h.service) if h is not None else None
            if h is not None and service is not None:
                candidates.append((h, service))
        confirming = [(h, s) for h, s in candidates if word in confirm_words(s)]
        if not confirming:
            return self._other_reply(mo, candidates, now)
        named = [(h, s) for h, s in confirming if second and second in {fold_text(w) for w in
                                                                          (s.keyword or "", *s.aliases) if w}]
        if named:
            confirming = named
        confirming.sort(key=lambda hs: hs[0].created_at)
        pending = [(h, s) for h, s in confirming if h.state == "pending" and now < h.expires_at]
        if pending:
            return self._confirm(*pending[-1], mo, now)
        h, service = confirming[-1]  # the newest handshake the word answers
        if h.state == "confirmed":
            return MoResult(service=h.service, kind="handshake",
                            detail=f"handshake {h.id} was confirmed already: nothing charged again")
        result = MoResult(service=h.service, kind="handshake")
        if h.state == "pending":
            h.state = "expired"
            h.reason = "ttl"
            h.state_at = now
        if h.late_replied:
            result.detail = f"late reply to handshake {h.id} (explained already)"
        else:
            h.late_replied = True
            msg = self._free_mt(service, h.account, mo.msisdn, render(service.texts.late_reply,
                                                                       service_values(service)), now,
                                f"late reply to handshake {h.id}")
            result.messages.extend([msg] if msg is not None else [])
            result.detail = f"late reply to handshake {h.id}: nothing charged"
        self._write_hs(h, now, result.writes)
        return result

    def _other_reply(self, mo: MoRecord, candidates: list[tuple[Handshake, ServiceConfig]], now: float
                     ) -> MoResult | None:
        pending = sorted(((h, s) for h, s in candidates if h.state == "pending" and now < h.expires_at),
                         key=lambda hs: hs[0].created_at)
        if not pending:
            return None
        if self.router().decide(to=mo.to, text=mo.text).kind not in (MoKind.DEFAULT, MoKind.UNROUTED):
            return None  # a keyword, STOP, HELP...: the MO handler takes it
        h, service = pending[-1]
        if h.wrong_replied:
            return None
        h.wrong_replied = True
        result = MoResult(service=h.service, kind="handshake",
                          detail=f"wrong reply to handshake {h.id}: explained, still pending")
        msg = self._free_mt(service, h.account, mo.msisdn, render(service.texts.wrong_reply, service_values(service)),
                            now, f"wrong reply to handshake {h.id}")
        result.messages.extend([msg] if msg is not None else [])
        self._write_hs(h, now, result.writes)
        return result

    def _confirm(self, h: Handshake, service: ServiceConfig, mo: MoRecord, now: float) -> MoResult:
        result = MoResult(service=h.service, kind="handshake")
        if service.kind == "subscription":
            live = self.live(h.msisdn, service.name)
            if live is not None and live.state == "active":
                self._end_hs(h, "cancelled", "already_active", now, result.writes)
                msg = self._free_mt(service, h.account, h.msisdn,
                                    render(service.texts.already_active, service_values(service)), now,
                                    f"already subscribed to {service.name}")
                result.messages.extend([msg] if msg is not None else [])
                result.detail = f"handshake {h.id}: already subscribed ({live.id})"
                return result
        h.reply_mo_id = mo.id
        sub = self.activate(msisdn=h.msisdn, service=service, account=h.account, method="keyword",
                            proof=[h.confirm_message_id, mo.id], origin=h.id, now=now, writes=result.writes,
                            messages=result.messages)
        h.subscription_id = sub.id
        self._end_hs(h, "confirmed", "", now, result.writes)
        self.confirmed_total += 1
        result.detail = f"handshake {h.id} confirmed: {sub.id}"
        return result

    def stop(self, msisdn: str, services: list[str], now: float, writes: Writes) -> list[str]:
        """Cancel the msisdn's subscriptions and pending handshakes of `services` (a STOP), with any charge not yet
        sent to an SMSC (a one-off purchase ends only that way). Returns the services where something ended."""
        self.load()
        names = set(services)
        ended: set[str] = set()
        for sid in list(self._by_msisdn.get(msisdn, ())):
            sub = self._subs[sid]
            if sub.service not in names:
                continue
            if sub.one_off:  # a purchase ends only if its charge can still be stopped; else its outcome ends it
                if sub.pending_attempt and self.charging.cancel_attempt(sub.pending_attempt, now, writes):
                    sub.pending_attempt = sub.pending_message_id = ""
                    self._end(sub, "cancelled", "stop", now)
                    self._write_sub(sub, now, writes)
                    ended.add(sub.service)
                continue
            self.cancel(sub, "stop", now, writes)
            ended.add(sub.service)
        for name in names:
            h = self._hs.get(self._hs_latest.get((msisdn, name), ""))
            if h is not None and h.state == "pending":
                self._end_hs(h, "cancelled", "stop", now, writes)
                ended.add(name)
        return [s for s in services if s in ended]

    def cancel(self, sub: Subscription, reason: str, now: float, writes: Writes) -> None:
        """End `sub` (cancelled) into `writes`; its pending charge is cancelled when not on its way yet."""
        if sub.pending_attempt and self.charging.cancel_attempt(sub.pending_attempt, now, writes):
            sub.pending_attempt = ""
            sub.pending_message_id = ""
        sub.state = "cancelled"
        sub.reason = reason
        sub.state_at = now
        sub.renew_at = sub.reminder_at = None
        self._write_sub(sub, now, writes)
        log.info("subscription=%s to=%s cancelled (%s)", sub.id, mask_msisdn(sub.msisdn), reason)

    # ---- settlements (Rule 3) ----------------------------------------------------------------------------

    def on_settled(self, st: Settlement, writes: Writes, messages: list[Message]) -> None:
        """The next step after a charge attempt of a subscription or purchase was settled."""
        self.load()  # a restart may settle before anything else touched the subscriptions
        sub = self._subs.get(st.owner_id)
        if sub is None or sub.pending_attempt != st.attempt:
            return  # it ended meanwhile (STOP, API): the ledger has the outcome, nothing follows
        sub.pending_attempt = ""
        sub.pending_message_id = ""
        now = st.at
        service = self.gw.config.service(sub.service)
        outcome = st.outcome
        if service is None:
            self.cancel(sub, "service_removed", now, writes)
            return
        if outcome.state == "charged" or (outcome.state == "unknown" and not sub.one_off):
            if outcome.state == "charged":
                sub.charges += 1
            if sub.one_off:
                self._end(sub, "charged", "", now)
            else:
                self._paid(sub, service, now)
        elif outcome.state == "unknown":
            self._end(sub, "unknown", outcome.reason, now)
        elif (outcome.reason == "insufficient_funds" and (lower := next_lower_price(service, st.price)) is not None
              and not self.charging.opted_out(sub.msisdn, service)):
            messages.append(self._charge(sub, service, lower, now, writes))
        elif sub.one_off:
            self._end(sub, "failed", outcome.reason, now)
        elif outcome.reason == "unknown_subscriber":
            sub.reason = outcome.reason
            self.cancel(sub, outcome.reason, now, writes)
            return
        elif outcome.reason == "barred":
            self._suspend(sub, service, outcome.reason, now, messages)
        else:
            sub.rounds += 1
            if sub.rounds <= service.renewal.retry_attempts:
                sub.renew_at = now + service.renewal.retry_spacing_s
            else:
                self._suspend(sub, service, outcome.reason, now, messages)
        self._write_sub(sub, now, writes)

    @staticmethod
    def _end(sub: Subscription, state: str, reason: str, now: float) -> None:
        sub.state = state
        sub.reason = reason
        sub.state_at = now
        sub.renew_at = sub.reminder_at = None

    def _paid(self, sub: Subscription, service: ServiceConfig, now: float) -> None:
        sub.rounds = 0
        sub.paid_until = period_end(service, now)
        sub.renew_at = sub.paid_until
        before = service.renewal.reminder_before_s
        sub.reminder_at = None
        if before is not None and sub.paid_until - before > now:
            sub.reminder_at = sub.paid_until - before

    def _suspend(self, sub: Subscription, service: ServiceConfig, reason: str, now: float,
                 messages: list[Message]) -> None:
        self._end(sub, "suspended", reason, now)
        log.info("subscription=%s to=%s suspended (%s)", sub.id, mask_msisdn(sub.msisdn), reason)
        if not self.charging.opted_out(sub.msisdn, service):
            msg = self._free_mt(service, sub.account, sub.msisdn,
                                render(service.texts.suspended, service_values(service)), now, f"{sub.id} suspended")
            messages.extend([msg] if msg is not None else [])

    # ---- the schedule ----------------------------------------------------------------------------------

    def _fire(self, sub: Subscription, now: float, writes: Writes, messages: list[Message]) -> None:
        """A renewal, retry or reminder is due: check the state and the opt-outs now (Rule 2), then act."""
        service = self.gw.config.service(sub.service)
        if service is None:
            self.cancel(sub, "service_removed", now, writes)
            return
        if self.charging.opted_out(sub.msisdn, service):
            self.cancel(sub, "opted_out", now, writes)
            return
        if sub.reminder_at is not None and sub.reminder_at <= now:
            sub.reminder_at = None
            # A reminder is only worth sending before its renewal; one that is late with it is dropped.
            if sub.reminded_period < sub.period and sub.renew_at is not None and sub.renew_at > now:
                sub.reminded_period = sub.period
                text = render(service.texts.reminder, service_values(service, date=_date(sub.renew_at)))
                msg = self._free_mt(service, sub.account, sub.msisdn, text, now, f"reminder of {sub.id}")
                if msg is not None:
                    messages.append(msg)
                    self.reminders_total += 1
        if sub.renew_at is not None and sub.renew_at <= now and not sub.pending_attempt:
            if sub.rounds == 0:  # a new period; a retry stays in its period
                sub.period += 1
                sub.attempt = 0
            price = service.price or sub.price
            messages.append(self._charge(sub, service, price, now, writes))
            self.renewals_total += 1
        self._write_sub(sub, now, writes)

    def _age_handshake(self, h: Handshake, now: float, writes: Writes) -> None:
        if h.state == "pending":
            if now >= h.expires_at:
                self._end_hs(h, "expired", "ttl", now, writes)
        elif now >= self._forget_at(h):
            self._forget_hs(h)

    async def tick(self) -> int:
        """Fire what is due now (renewals, retries, reminders, handshake expiries), in one commit. Returns how
        many subscriptions fired."""
        self.load()
        now = self.wall()
        writes = Writes()
        messages: list[Message] = []
        fired: set[str] = set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, what, rid = heapq.heappop(heap)
            try:
                if what == "sub":
                    sub = self._subs.get(rid)
                    if sub is not None and self.due(sub) == due and rid not in fired:  # once per tick
                        fired.add(rid)
                        self._fire(sub, now, writes, messages)
                else:
                    h = self._hs.get(rid)
                    if h is not None:
                        self._age_handshake(h, now, writes)
            except Exception:
                log.exception("%s=%s scheduled work failed; it is skipped", what, rid)
        if writes or messages:
            await self.gw.core.accept(messages, writes)
        return len(fired)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire scheduled work until cancelled (one instance runs; a second call returns at once)."""
        if self._running:
            task_status.started()
            return
        self._running = True
        try:
            self.load()
            task_status.started()
            while True:
                self._wake = anyio.Event()
                try:
                    await self.tick()
                except StoreClosed:
                    raise
                except Exception:
                    log.exception("the subscription schedule failed to commit; it goes on")
                delay = self._heap[0][0] - self.wall() if self._heap else 60.0
                with anyio.move_on_after(min(max(delay, 0.001), 60.0)):
                    await self._wake.wait()
        finally:
            self._running = False

    def statistics(self) -> dict[str, int]:
        return {"live": len(self._subs), "handshakes": len(self._hs), "handshakes_started": self.handshakes_total,
                "confirmed": self.confirmed_total, "renewals": self.renewals_total, "reminders": self.reminders_total}

    # ---- HTTP ----------------------------------------------------------------------------------------------

    def service_for(self, account: AccountConfig, name: str) -> ServiceConfig:
        """The subscription or one_off service `name` the account may use.

        Raises:
            ApiError: 422 invalid_field `service`.
        """
        service = self.gw.config.service(name)
        if service is None or service.kind not in ("subscription", "one_off") or \
                service.account not in (None, account.id):
            raise ApiError(422, "invalid_field", f"service: no subscription or one_off service {name!r} for this "
                           "account", field="service")
        return service

    def find(self, sid: str) -> Subscription | None:
        sub = self._subs.get(sid)
        if sub is not None:
            return sub
        doc = self.store.doc(SUBSCRIPTION_KIND, sid)
        return decode_subscription(doc) if doc is not None else None

    def listing(self, account: AccountConfig, *, msisdn: str | None, service: str | None, state: str | None,
                limit: int) -> list[Subscription]:
        """The account's subscriptions matching the filters, newest first (memory over the store)."""
        found = {s.id: s for s in map(decode_subscription,
                                      self.store.docs(SUBSCRIPTION_KIND, msisdn=msisdn, scope=service))}
        for sid in (self._by_msisdn.get(msisdn, ()) if msisdn is not None else list(self._subs)):
            sub = self._subs[sid]
            if service is None or sub.service == service:
                found[sid] = sub
        out = [s for s in found.values() if s.account == account.id and (state is None or s.state == state)]
        out.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return out[:limit]

    def routes(self, api: Any) -> list[Route]:
        """`POST`/`GET /v1/subscriptions`, `GET`/`DELETE /v1/subscriptions/{id}`."""

        async def collection(request: Request) -> Response:
            account = api.account(request)
            if request.method == "POST":
                return await self._post(api, request, account)
            q = query_single(request)
            state = q.get("state")
            if state is not None and state not in SUBSCRIPTION_STATES:
                raise ApiError(422, "invalid_field", f"state: expected one of {', '.join(SUBSCRIPTION_STATES)}",
                               field="state")
            msisdn = query_msisdn(self.gw, account, q.get("msisdn"))
            limit = query_limit(q.get("limit"))
            require_open(self.gw)
            self.load()
            subs = self.listing(account, msisdn=msisdn, service=q.get("service") or None, state=state, limit=limit)
            return Response(_ENCODER.encode(SubscriptionList(subscriptions=[subscription_view(s) for s in subs])),
                            media_type=_JSON)

        async def one(request: Request) -> Response:
            account = api.account(request)
            require_open(self.gw)
            self.load()
            sub = self.find(request.path_params["id"])
            if sub is None or sub.account != account.id:
                raise ApiError(404, "not_found", "no such subscription for this account", field="id")
            if request.method == "DELETE" and sub.state in LIVE_STATES and sub.id in self._subs:
                check_intake(self.gw)
                writes = Writes()
                self.cancel(sub, "api", self.wall(), writes)
                try:
                    await self.gw.core.accept([], writes)
                except StoreClosed as exc:
                    raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
            return Response(_ENCODER.encode(subscription_view(sub)), media_type=_JSON)

        return [Route("/v1/subscriptions", collection, methods=["GET", "POST"]),
                Route("/v1/subscriptions/{id}", one, methods=["GET", "DELETE"])]

    async def _post(self, api: Any, request: Request, account: AccountConfig) -> Response:
        req: SubscriptionRequest = decode_body(_REQUEST_DECODER, await api.body(request))
        service = self.service_for(account, req.service)
        msisdn = query_msisdn(self.gw, account, req.msisdn)
        assert msisdn is not None
        await api.rate(account, 1)
        check_intake(self.gw)
        self.load()
        now = self.wall()
        if service.kind == "subscription":
            live = self.live(msisdn, service.name)
            if live is not None and live.state == "active":
                raise ApiError(409, "already_subscribed", f"msisdn: already subscribed to {service.name} ({live.id})",
                               field="msisdn")
        pending = self.pending_handshake(msisdn, service.name, now)
        if pending is not None:
            return Response(_ENCODER.encode(handshake_view(pending)), status_code=200, media_type=_JSON)
        if self.charging.opted_out(msisdn, service):
            raise ApiError(422, "opted_out", f"msisdn: the number opted out of {service.name}", field="msisdn")
        writes = Writes()
        messages: list[Message] = []
        h = self.new_handshake(msisdn=msisdn, service=service, account=account.id, origin="api", request_id="",
                               now=now, writes=writes, messages=messages)
        if h is None:
            raise ApiError(422, "invalid_field", f"service: the confirm text of {service.name} cannot be sent",
                           field="service")
        try:
            await self.gw.core.accept(messages, writes)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
        return Response(_ENCODER.encode(handshake_view(h)), status_code=202, media_type=_JSON)


# ---- HTTP views ----------------------------------------------------------------------------------------------

DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class SubscriptionRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Start a handshake: the number gets the service's confirm text and is subscribed when it answers YES."""

    msisdn: Annotated[str, msgspec.Meta(min_length=1, max_length=32, examples=["447700900123"],
                                        description="The number, as the account writes destinations")]
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["news"],
                                         description="A subscription or one_off service (billing.services)")]


class HandshakeView(msgspec.Struct, frozen=True, kw_only=True):
    """A handshake double opt-in."""

    id: str
    msisdn: str
    service: str
    state: Annotated[str, msgspec.Meta(description="pending, confirmed, expired or cancelled")]
    created_at: DateTime
    expires_at: DateTime
    confirm_message_id: Annotated[str, msgspec.Meta(description="The confirm MT (GET /v1/messages/{id})")] | None
    subscription_id: str | None


class SubscriptionView(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription, or a one-off purchase."""

    id: str
    msisdn: str
    service: str
    kind: Annotated[str, msgspec.Meta(description="subscription or one_off")]
    state: Annotated[str, msgspec.Meta(description="active, suspended, cancelled; one_off: pending, charged, "
                                                   "failed, unknown, cancelled")]
    reason: str | None
    created_at: DateTime
    state_at: DateTime
    consent_method: str
    period: int
    price: str
    paid_until: DateTime | None
    next_charge_at: DateTime | None
    pending_charge: Annotated[str, msgspec.Meta(description="The attempt awaiting its outcome")] | None
    charges: Annotated[int, msgspec.Meta(description="Successful charges so far")]


class SubscriptionList(msgspec.Struct, frozen=True, kw_only=True):
    subscriptions: list[SubscriptionView]


_REQUEST_DECODER = msgspec.json.Decoder(SubscriptionRequest)


def handshake_view(h: Handshake) -> HandshakeView:
    return HandshakeView(id=h.id, msisdn=h.msisdn, service=h.service, state=h.state,
                         created_at=iso_time(h.created_at), expires_at=iso_time(h.expires_at),
                         confirm_message_id=h.confirm_message_id or None, subscription_id=h.subscription_id or None)


def subscription_view(s: Subscription) -> SubscriptionView:
    return SubscriptionView(id=s.id, msisdn=s.msisdn, service=s.service, kind="one_off" if s.one_off else
                            "subscription", state=s.state, reason=s.reason or None, created_at=iso_time(s.created_at),
                            state_at=iso_time(s.state_at), consent_method=s.consent_method, period=s.period,
                            price=s.price, paid_until=iso_time(s.paid_until) if s.paid_until is not None else None,
                            next_charge_at=iso_time(s.renew_at) if s.renew_at is not None else None,
                            pending_charge=s.pending_attempt or None, charges=s.charges)


def openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and schemas of the subscription routes."""
    _, schemas = msgspec.json.schema_components((SubscriptionRequest, HandshakeView, SubscriptionList),
                                                ref_template="#/components/schemas/{name}")
    sid = {"name": "id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
    paths = {
        "/v1/subscriptions": {
            "post": {
                "operationId": "startSubscription",
                "summary": "Start a handshake: a free confirm MT; the YES reply subscribes and charges",
                "requestBody": {"required": True, "content": {_JSON: {
                    "schema": {"$ref": "#/components/schemas/SubscriptionRequest"},
                    "example": {"msisdn": "447700900123", "service": "news"}}}},
                "responses": {
                    "202": json_response("HandshakeView", "The handshake started; the confirm MT is queued"),
                    "200": json_response("HandshakeView", "A handshake is pending already (nothing re-sent)"),
                    **error_responses(400, 401, 409, 413, 415, 422, 429, 503)},
            },
            "get": {
                "operationId": "listSubscriptions", "summary": "The account's subscriptions, newest first",
                "parameters": [
                    query_param("msisdn", "Only this number"), query_param("service", "Only this service"),
                    query_param("state", "Only this state", {"type": "string", "enum": list(SUBSCRIPTION_STATES)}),
                    query_param("limit", "At most this many (default 100)",
                                {"type": "integer", "minimum": 1, "maximum": 1000})],
                "responses": {"200": json_response("SubscriptionList", "The subscriptions"),
                              **error_responses(401, 422, 503)},
            },
        },
        "/v1/subscriptions/{id}": {
            "get": {"operationId": "getSubscription", "summary": "One subscription", "parameters": [sid],
                    "responses": {"200": json_response("SubscriptionView", "The subscription"),
                                  **error_responses(401, 404, 503)}},
            "delete": {"operationId": "cancelSubscription",
                       "summary": "Cancel: no further charge (a charge not yet sent is cancelled too)",
                       "parameters": [sid],
                       "responses": {"200": json_response("SubscriptionView", "Cancelled (or ended already)"),
                                     **error_responses(401, 404, 503)}},
        },
    }
    return paths, schemas


def install(gw: Gateway) -> Subscriptions:
    """Create the subscriptions service once (and the charging service it needs) and hang it on the gateway:
    `extensions["subscriptions"]`, its routes and their OpenAPI description. Returns it; `run` is its task."""
    existing = gw.extensions.get("subscriptions")
    if isinstance(existing, Subscriptions):
        return existing
    subs = Subscriptions(gw, install_charging(gw))
    ext = gw.extensions
    ext["subscriptions"] = subs
    add_routes(ext, subs.routes, openapi())
    return subs
