"""MO services: what the gateway does with each MO sent to one of its shortcodes (docs/mo-services.md).

Rule 1 (order): the reserved words come first (STOP, STOPALL, START, HELP and their synonyms, in any of the forms
the MO router reads: `Stop.`, `stop please`, `STOP NEWS`), so an opt-out is never taken for the answer to a
handshake; then the answer to a pending handshake (the subscriptions module); then the keyword, pattern or
default service by its kind: subscription and one_off go to the subscriptions module, forward and autoreply are
served here; an MO that nothing takes is logged and gets no reply.
Rule 2 (one commit): everything an MO causes (consent records, cancelled subscriptions, a forward job, the reply
MT) is returned as one `MoResult` and committed with the MO marked processed; a crash before that commit makes
the restart handle the MO again from scratch.
Rule 3 (STOP): `STOP <keyword>` opts out of that service; `STOP` alone (whatever follows it that is not a
keyword) opts out of the shortcode and of its default service, which stops every MT from the shortcode, so every
subscription on the shortcode is cancelled too; `STOPALL` opts out of the shortcode and of each service on it.
Each STOP MO gets exactly one confirmation, whether or not the number ever subscribed; opt-outs are recorded even
when no reply can be sent. `START` / `START <keyword>` record the opt-in back (a service's opt-in also lifts the
shortcode's opt-out: `_consent` Rule 3). HELP gets the help text. None of these MTs is held back by an opt-out:
they answer the user.
Rule 4 (forward): a forward service's MO becomes a `forward_job` record in the MO's commit and is POSTed as
JSON to the service's URL at once, signed like callbacks when `forward.secret` is set. A 2xx answer ends the
job; its `{"reply": "..."}` becomes an MT from the MO's shortcode, committed with the job marked done, so an
MO gets at most one reply even when a crash makes the POST happen again. The POST does not wait for the MO's
commit: the store commits in order, so the answer's commit comes after it, and a crash before the MO's commit
makes the restart handle the MO again (and POST it again) with no reply committed yet. Waiting for it held
every forward one commit longer and left the daemon idle between commits (bench/RESULTS.md, "The MO path stops
waiting for commits"). A timeout, a connection error, a 5xx, 408, 425 or 429 is retried with exponential
backoff and jitter from `retry_initial_s` to `retry_max_s` (each attempt persisted with its `due` time), and
the job is given up `max_age_s` after the MO arrived; any other 4xx ends it at once. A URL that fails pauses
for the backoff, so an application that is down is not hammered. A worker does not wait for that commit: it
hands the finished job to the finisher and takes the next one, and the finisher commits every job finished
meanwhile (with their replies) together. A worker that waited would hold a slot of `workers` for two commits
per MO.
Rule 5 (replies): a reply (forward or auto-reply) is not sent to a number that opted out of the service or its
shortcode; the application still gets the MO, with `opted_out: true`. Replies go on `service.account`, else the
shortcode's account, else `billing.mo_account`.
"""

from __future__ import annotations

import heapq
import logging
import random
import string
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.abc
import msgspec

from routing import MoDecision, MoKind, MoRouter, mask_msisdn

from ._callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_callback
from ._config import Config, ForwardConfig, ServiceConfig, ServiceTextsConfig
from ._consent import ConsentMethod, ConsentRegister, service_account
from ._consent import install as install_consent
from ._httpclient import HttpClient, HttpClientError, HttpTimeout, InvalidUrl, Response, Url, parse_url
from ._mo import MoRecord, MoResult
from ._model import Message, iso_time
from ._mt import internal_mt
from ._store import Doc, StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "FORWARD_JOB_KIND",
    "ForwardClient",
    "ForwardJob",
    "ForwardPayload",
    "MoExplanation",
    "Services",
    "ServicesStatistics",
    "SubscriptionsPort",
    "explain_mo",
    "install",
    "render",
    "text_values",
]

log = logging.getLogger(__name__)

FORWARD_JOB_KIND = "forward_job"
"""The store record kind of forward jobs (id: the MO's id; state pending, done or failed; `due` while pending)."""

FORWARD_WORKERS = 64
"""Forwards in flight at most (one connection each)."""

MAX_REPLY_BODY_BYTES = 65536
"""An application's answer longer than this is taken as acknowledged without a reply (and logged)."""

_PERIOD_WORDS = {"daily": "day", "weekly": "week", "monthly": "month"}

# Texts for a shortcode without a service to take them from.
SHORTCODE_STOP_TEXT = "You will get no more messages from {shortcode}."
SHORTCODE_START_TEXT = "You can receive messages from {shortcode} again. Text STOP to end."
SHORTCODE_HELP_TEXT = "{shortcode}: text STOP to end messages, HELP for help."
FREE_HELP_TEXT = "{service}: free service. Help: {support}. Text STOP to end."


class ForwardClient(Protocol):
    """What the forwarder needs of an HTTP client (`gateway._httpclient.HttpClient`; tests hand in a fake)."""

    async def post(self, url: Url | str, body: bytes, headers: Mapping[str, str] | None = None, *,
                   timeout_s: float | None = None) -> Response: ...

    async def aclose(self) -> None: ...


class SubscriptionsPort(Protocol):
    """What this module calls in the subscriptions module (`gw.extensions["subscriptions"]`)."""

    async def on_keyword(self, mo: MoRecord, service: ServiceConfig) -> MoResult: ...

    def wants_reply(self, msisdn: str, shortcode: str) -> bool: ...

    async def on_reply(self, mo: MoRecord) -> MoResult | None: ...

    def stop(self, msisdn: str, services: list[str], now: float, writes: Writes) -> list[str]: ...


# ---- texts ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _compile(template: str) -> tuple[tuple[str, str | None], ...]:
    """`template` as (literal, field name or None) pieces; a template that does not parse is one literal."""
    try:
        return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))
    except ValueError:
        return ((template, None),)


def render(template: str, values: dict[str, str]) -> str:
    """`template` with each `{name}` replaced by `values[name]`; an unknown `{name}` stays as written.

    Only plain names are replaced (no attribute access, indexing or format specs), and the values are never
    read as templates themselves, so a user's text put in `{text}` is copied as it is.
    """
    out: list[str] = []
    for literal, name in _compile(template):
        out.append(literal)
        if name is not None:
            out.append(values.get(name, "{" + name + "}"))
    return "".join(out)


def text_values(service: ServiceConfig | None, shortcode: str) -> dict[str, str]:
    """The placeholders of a service's texts: service (its display name), price, currency, period (day, week
    or month; "once" for a service that is no subscription, as in `_charging.service_values`), support, keyword,
    confirm_keyword and shortcode."""
    values = {"shortcode": shortcode}
    if service is not None:
        period = _PERIOD_WORDS.get(service.period, service.period) if service.kind == "subscription" else "once"
        values.update(service=service.display_name or service.name, price=service.price or "",
                      currency=service.currency, period=period,
                      support=service.support, keyword=service.keyword or "",
                      confirm_keyword=service.confirm_keyword)
    return values


# ---- records -------------------------------------------------------------------------------------------------


class ForwardJob(msgspec.Struct, kw_only=True):
    """One MO to POST to a forward service's application (the body of a `forward_job` record)."""

    id: str  # the MO's id: one job per MO
    service: str
    msisdn: str
    shortcode: str
    text: str
    keyword: str | None = None
    rest: str = ""
    received_at: float
    parts: int = 1
    smsc: str = ""
    state: str = "pending"  # pending, done, failed
    attempts: int = 0
    due: float | None = None
    last_error: str = ""
    reply_id: str | None = None
    finished_at: float | None = None


class ForwardPayload(msgspec.Struct, kw_only=True):
    """What the application receives (docs/mo-services.md): the JSON body of the POST."""

    id: str
    from_: str = msgspec.field(name="from")
    to: str
    text: str
    keyword: str | None
    rest: str
    service: str
    received_at: str
    parts: int
    smsc: str
    attempt: int
    opted_out: bool


class _Reply(msgspec.Struct):
    reply: str | None = None


_JOB_ENCODER = msgspec.msgpack.Encoder()
_JOB_DECODER = msgspec.msgpack.Decoder(ForwardJob)
_JSON = msgspec.json.Encoder()
_REPLY_DECODER = msgspec.json.Decoder(_Reply)


def job_doc(job: ForwardJob, now: float) -> Doc:
    return Doc(FORWARD_JOB_KIND, job.id, job.msisdn, job.service, job.state, job.due, now, _JOB_ENCODER.encode(job))


def decode_job(doc: Doc) -> ForwardJob:
    return _JOB_DECODER.decode(doc.body)


# ---- the services --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServicesStatistics:
    """Counters of the MO services (the metrics collector reads them).

    Attributes:
        handled: MOs handled, by the router's kind (keyword, stop, help, ..., unrouted, or "reply" for the answer
            to a pending handshake).
        forwards_pending: forward jobs not done yet (queued, waiting for a retry, or in flight).
        forwards_in_flight: POSTs in progress.
        forwards_ok: jobs an application acknowledged.
        forward_failures: attempts that failed (each retry counts).
        forwards_given_up: jobs ended without an acknowledgement.
        replies: MTs sent in reply to MOs (forward replies, auto-replies, confirmations and help).
    """

    handled: dict[str, int]
    forwards_pending: int
    forwards_in_flight: int
    forwards_ok: int
    forward_failures: int
    forwards_given_up: int
    replies: int


class _Target:
    """One application URL: a failure pauses it for the backoff (Rule 4)."""

    __slots__ = ("failures", "level", "paused_until")

    def __init__(self) -> None:
        self.failures = 0
        self.level = 0
        self.paused_until = 0.0


_RETRY_STATUSES = frozenset({408, 425, 429})


class Services:
    """The MO handler (`handle`, set as `gw.mo.handler`) and the forwarder (`run`).

    Args:
        gw: the gateway.
        consent: the consent register (by default the one `_consent.install` hangs on the gateway).
        wall: the wall clock (seconds since the epoch).
        rng: a uniform [0, 1) source for the backoff jitter.
        client: the HTTP client for forwards (by default a `gateway._httpclient.HttpClient` of `workers`
            connections per application).
        workers: forwards in flight at most.
    """

    def __init__(self, gw: Gateway, *, consent: ConsentRegister | None = None,
                 wall: Callable[[], float] = time.time, rng: Callable[[], float] = random.random,
                 client: ForwardClient | None = None, workers: int = FORWARD_WORKERS) -> None:
        self.gw = gw
        self.consent = consent if consent is not None else install_consent(gw)
        self.wall = wall
        self.rng = rng
        self.client: ForwardClient = client if client is not None else HttpClient(
            max_connections_per_origin=workers, keep_body_bytes=MAX_REPLY_BODY_BYTES, user_agent="smppgw-forward/1")
        self._urls: dict[str, Url] = {}
        self.workers = workers
        self._router_of: Config | None = None
        self._router: MoRouter | None = None
        self._ready: deque[ForwardJob] = deque()
        self._finished: list[tuple[ForwardJob, list[Message]]] = []  # answered, for the finisher to commit (Rule 4)
        self._finisher_wake = anyio.Event()
        self._idle_workers: deque[anyio.Event] = deque()  # one event per idle worker: a job wakes one, not all
        self._timers: list[tuple[float, int, ForwardJob]] = []
        self._timer_wake = anyio.Event()
        self._seq = 0
        self._jobs: set[str] = set()  # ids of the jobs held (ready, waiting or in flight)
        self._targets: dict[str, _Target] = {}
        self._in_flight = 0
        self._handled: dict[str, int] = {}
        self._forwards_ok = 0
        self._forward_failures = 0
        self._given_up = 0
        self._replies = 0
        self._running = False

    # ---- routing ---------------------------------------------------------------------------------------

    def router(self) -> MoRouter:
        """The MO router of the running config (rebuilt after a reload)."""
        config = self.gw.core.config
        if config is not self._router_of or self._router is None:
            self._router = config.mo_router()
            self._router_of = config
        return self._router

    def subscriptions(self) -> SubscriptionsPort | None:
        return cast("SubscriptionsPort | None", self.gw.extensions.get("subscriptions"))

    # ---- the handler (Rules 1 and 2) -----------------------------------------------------------------

    async def handle(self, mo: MoRecord) -> MoResult:
        """What `mo` causes: the writes and MTs to commit with it (Rule 2)."""
        config = self.gw.core.config
        decision = self.router().decide(to=mo.to, text=mo.text)
        kind = decision.kind
        now = self.wall()
        if kind in (MoKind.STOP, MoKind.STOPALL, MoKind.START, MoKind.HELP):
            return self._count(self._reserved(mo, decision, config, now), kind.value)
        subs = self.subscriptions()
        if subs is not None and subs.wants_reply(mo.msisdn, mo.to):
            answered = await subs.on_reply(mo)
            if answered is not None:
                return self._count(answered, "reply")
        service = None if decision.service is None else config.service(decision.service)
        if service is None:
            log.info("mo=%s from=%s to=%s unrouted: %s", mo.id, mask_msisdn(mo.msisdn), mo.to, decision.reason)
            return self._count(MoResult(service=decision.service, kind=MoKind.UNROUTED.value,
                                        detail=decision.reason), MoKind.UNROUTED.value)
        if service.kind in ("subscription", "one_off"):
            if subs is None:
                log.error("mo=%s service=%s is a %s service but the subscriptions module is not installed",
                          mo.id, service.name, service.kind)
                return self._count(MoResult(service=service.name, kind=kind.value,
                                            detail="no subscriptions module: nothing done"), kind.value)
            result = await subs.on_keyword(mo, service)
            result.service = result.service or service.name
            result.kind = result.kind or kind.value
            return self._count(result, kind.value)
        if service.kind == "forward":
            return self._count(self._forward(mo, decision, service, now), kind.value)
        return self._count(self._autoreply(mo, decision, service, config, now), kind.value)

    def _count(self, result: MoResult, kind: str) -> MoResult:
        self._handled[kind] = self._handled.get(kind, 0) + 1
        return result

    def _reply(self, config: Config, service: ServiceConfig | None, *, shortcode: str, msisdn: str, text: str,
               now: float, category: str, reference: str) -> Message | None:
        """The MT answering an MO (`reference`: its id) from its shortcode, or None (logged) when it cannot be
        made."""
        account = service_account(config, service, shortcode)
        if account is None:
            log.error("mo=%s to=%s no account to reply on: set the service's account, the shortcode's account or "
                      "billing.mo_account", reference, shortcode)
            return None
        try:
            msg = internal_mt(config, account=account, to=msisdn, source=shortcode, text=text, now=now,
                              category=category, reference=reference, detail=f"reply to MO {reference}")
        except ValueError as exc:
            log.error("mo=%s to=%s the reply cannot be sent: %s", reference, shortcode, exc)
            return None
        self._replies += 1
        return msg

    def _reserved(self, mo: MoRecord, d: MoDecision, config: Config, now: float) -> MoResult:
        """STOP, STOPALL, START and HELP (Rule 3)."""
        code = mo.to
        here = [s for s in config.billing.services if s.shortcode == code]
        service = None if d.service is None else config.service(d.service)  # the named one, else the default
        named = d.target is not None and service is not None
        first = service or (here[0] if here else None)
        result = MoResult(service=d.service, kind=d.kind.value)
        writes = result.writes
        opt_out: list[str] = []
        opt_in: list[str] = []
        cancel: list[str] = []
        if d.kind is MoKind.STOP:
            if named:
                assert service is not None
                opt_out, cancel = [service.name], [service.name]
            else:
                opt_out = [code] + ([service.name] if service is not None else [])
                cancel = [s.name for s in here]
        elif d.kind is MoKind.STOPALL:
            opt_out = [code] + [s.name for s in here]
            cancel = [s.name for s in here]
        elif d.kind is MoKind.START:
            if named:
                assert service is not None
                opt_in = [service.name]
            else:
                opt_in = [code] + ([service.name] if service is not None else [])
        subs = self.subscriptions()
        cancelled = subs.stop(mo.msisdn, cancel, now, writes) if subs is not None and cancel else []

        # The one answer (Rule 3), and the service whose words it uses.
        about = service
        if d.kind is MoKind.STOP:
            if named:
                template = service.texts.stop if service is not None else SHORTCODE_STOP_TEXT
            elif len(cancelled) == 1 and config.service(cancelled[0]) is not None:
                about = config.service(cancelled[0])
                assert about is not None
                template = about.texts.stop
            elif service is not None and set(cancelled) <= {service.name}:
                template = service.texts.stop
            else:
                about = first
                template = first.texts.stopall if first is not None else SHORTCODE_STOP_TEXT
        elif d.kind is MoKind.STOPALL:
            about = first
            template = first.texts.stopall if first is not None else SHORTCODE_STOP_TEXT
        elif d.kind is MoKind.START:
            template = service.texts.start if service is not None else SHORTCODE_START_TEXT
        else:
            template, about = self._help_text(config, code, service, named, here)
        values = text_values(about, code)
        category = "help" if d.kind is MoKind.HELP else "consent"
        reply = self._reply(config, about, shortcode=code, msisdn=mo.msisdn, text=render(template, values), now=now,
                            category=category, reference=mo.id)
        if reply is not None:
            result.messages.append(reply)
        proof = [mo.id] + ([reply.id] if reply is not None else [])
        for scope, opted_in in [(s, False) for s in opt_out] + [(s, True) for s in opt_in]:
            svc = config.service(scope)
            self.consent.record(msisdn=mo.msisdn, scope=scope, opted_in=opted_in, method=ConsentMethod.KEYWORD,
                                text_version=svc.consent_text_version if svc is not None else None,
                                message_ids=proof, now=now, writes=writes, record_id=f"{mo.id}/{scope}")
        what = {MoKind.STOP: "opted out of", MoKind.STOPALL: "opted out of", MoKind.START: "opted in to"}
        scopes = opt_out or opt_in
        result.detail = (f"{what[d.kind]} {', '.join(scopes)}" if d.kind in what else "help sent") + (
            f"; cancelled {', '.join(cancelled)}" if cancelled else "") + ("" if reply is not None else "; no reply")
        log.info("mo=%s from=%s to=%s %s: %s", mo.id, mask_msisdn(mo.msisdn), code, d.kind.value, result.detail)
        return result

    @staticmethod
    def _help_text(config: Config, code: str, service: ServiceConfig | None, named: bool,
                   here: list[ServiceConfig]) -> tuple[str, ServiceConfig | None]:
        """The HELP template and the service whose values fill it."""
        if not named:
            sc = next((s for s in config.billing.shortcodes if s.shortcode == code), None)
            if sc is not None and sc.help_text is not None:
                return sc.help_text, service
            if service is None and len(here) == 1:
                service = here[0]
        if service is None:
            return SHORTCODE_HELP_TEXT, None
        if service.price is None and service.texts.help == _DEFAULT_TEXTS_HELP:
            return FREE_HELP_TEXT, service
        return service.texts.help, service

    def _autoreply(self, mo: MoRecord, d: MoDecision, service: ServiceConfig, config: Config,
                   now: float) -> MoResult:
        result = MoResult(service=service.name, kind=d.kind.value)
        if self.consent.opted_out(mo.msisdn, (service.name, mo.to)):  # Rule 5
            result.detail = "auto-reply not sent: the number opted out"
            return result
        values = text_values(service, mo.to)
        values.update({"text": mo.text, "from": mo.msisdn, "keyword": d.keyword or "", "rest": d.rest})
        reply = self._reply(config, service, shortcode=mo.to, msisdn=mo.msisdn,
                            text=render(service.reply_text or "", values), now=now, category="mo_reply",
                            reference=mo.id)
        if reply is not None:
            result.messages.append(reply)
            result.detail = "auto-reply"
        else:
            result.detail = "auto-reply could not be made"
        return result

    def _forward(self, mo: MoRecord, d: MoDecision, service: ServiceConfig, now: float) -> MoResult:
        job = ForwardJob(id=mo.id, service=service.name, msisdn=mo.msisdn, shortcode=mo.to, text=mo.text,
                         keyword=d.keyword, rest=d.rest, received_at=mo.received_at, parts=mo.parts, smsc=mo.smsc,
                         due=now)
        result = MoResult(service=service.name, kind=d.kind.value, detail="forward queued")
        result.writes.docs.append(job_doc(job, now))
        self._put_ready(job)  # the POST goes out before this commit, whose answer commits after it (Rule 4)
        return result

    # ---- the forwarder (Rule 4) ----------------------------------------------------------------------

    def _put_ready(self, job: ForwardJob) -> None:
        self._jobs.add(job.id)
        self._ready.append(job)
        self._wake_worker()

    def _wake_worker(self) -> None:
        if self._idle_workers:
            self._idle_workers.popleft().set()

    def _put_later(self, job: ForwardJob, due: float) -> None:
        self._jobs.add(job.id)
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, job))
        self._timer_wake.set()

    def restore(self) -> int:
        """Take up the forward jobs still pending in the store (after a restart). Returns how many."""
        store = cast(Any, self.gw.store)
        count = 0
        for doc in store.docs(FORWARD_JOB_KIND, state="pending"):
            if doc.id in self._jobs:
                continue
            job = decode_job(doc)
            self._put_later(job, job.due if job.due is not None else 0.0)
            count += 1
        if count:
            log.info("forward: %d jobs pending from the last run are taken up again", count)
        return count

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the consent state, take up pending forward jobs, then forward until cancelled.

        A second call while one runs returns at once (the daemon and a test may both start it).
        """
        if self._running:
            task_status.started()
            return
        self._running = True
        self.consent.load()
        self.restore()
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.workers):
                    tg.start_soon(self._worker)
                tg.start_soon(self._finisher)
                task_status.started()
                while True:
                    self._timer_wake = anyio.Event()
                    now = self.wall()
                    timers = self._timers
                    while timers and timers[0][0] <= now:
                        _, _, job = heapq.heappop(timers)
                        self._ready.append(job)
                        self._wake_worker()
                    if timers:
                        with anyio.move_on_after(max(0.0, timers[0][0] - now)):
                            await self._timer_wake.wait()
                    else:
                        await self._timer_wake.wait()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self.client.aclose()

    async def _worker(self) -> None:
        ready = self._ready
        while True:
            while not ready:
                wake = anyio.Event()
                self._idle_workers.append(wake)
                await wake.wait()
            job = ready.popleft()
            if not self.gw.store.is_open:
                self._jobs.discard(job.id)
                continue
            try:
                await self._attempt(job)
            except StoreClosed:
                self._jobs.discard(job.id)
                log.error("forward job=%s: the store is closed; the job stays pending for the next run", job.id)
            except Exception:
                log.exception("forward job=%s failed unexpectedly; retried later", job.id)
                self._put_later(job, self.wall() + 60.0)

    def _backoff_s(self, forward: ForwardConfig, n: int) -> float:
        base = forward.retry_initial_s * 2.0 ** min(max(0, n - 1), 60)
        return min(forward.retry_max_s, base * (0.8 + 0.4 * self.rng()))

    async def _attempt(self, job: ForwardJob) -> None:
        config = self.gw.core.config
        service = config.service(job.service)
        now = self.wall()
        if service is None or service.forward is None:
            self._end(job, now, "failed", f"service {job.service} is no longer a forward service", error=True)
            return
        forward = service.forward
        target = self._targets.get(forward.url)
        if target is None:
            target = self._targets[forward.url] = _Target()
        if target.paused_until > now:  # Rule 4: wait with the target
            self._put_later(job, target.paused_until)
            return
        opted_out = self.consent.opted_out(job.msisdn, (service.name, job.shortcode))
        body = _JSON.encode(ForwardPayload(
            id=job.id, from_=job.msisdn, to=job.shortcode, text=job.text, keyword=job.keyword, rest=job.rest,
            service=service.name, received_at=iso_time(job.received_at), parts=job.parts, smsc=job.smsc,
            attempt=job.attempts + 1, opted_out=opted_out))
        timestamp = str(int(now))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
        if forward.secret:
            headers[SIGNATURE_HEADER] = sign_callback(forward.secret, timestamp, body)
        error: str | None = None
        permanent = False
        answer: Response | None = None
        self._in_flight += 1
        try:
            url = self._urls.get(forward.url)
            if url is None:
                url = self._urls[forward.url] = parse_url(forward.url)
            answer = await self.client.post(url, body, headers, timeout_s=forward.timeout_s)
            if not 200 <= answer.status_code < 300:
                status = answer.status_code
                error = f"HTTP {status}"
                permanent = 400 <= status < 500 and status not in _RETRY_STATUSES
        except HttpTimeout:
            error = f"no answer within {forward.timeout_s:g} s"
        except HttpClientError as exc:
            error = str(exc) or type(exc).__name__
        except InvalidUrl as exc:
            error = f"forward.url: {exc}"
            permanent = True
        finally:
            self._in_flight -= 1
        now = self.wall()
        if error is None:
            if target.failures:
                log.info("forward service=%s answers again after %d failed attempts", service.name, target.failures)
            target.failures = target.level = 0
            target.paused_until = 0.0
            self._forwards_ok += 1
            assert answer is not None
            await self._done(job, service, config, answer, opted_out, now)
            return
        self._forward_failures += 1
        target.failures += 1
        if target.failures == 1:
            log.warning("forward service=%s failing (%s); retrying with backoff", service.name, error)
        if now >= target.paused_until:
            target.level += 1
            target.paused_until = now + self._backoff_s(forward, target.level)
        job.attempts += 1
        job.last_error = error
        age = now - job.received_at
        if permanent or age >= forward.max_age_s:
            why = "refused by the application" if permanent else f"given up {age:.0f} s after the MO"
            self._end(job, now, "failed", f"{why}: {error}", error=True)
            return
        job.due = now + self._backoff_s(forward, job.attempts)
        cast(Any, self.gw.store).write_nowait(Writes(docs=[job_doc(job, now)]))
        self._put_later(job, job.due)

    def _end(self, job: ForwardJob, now: float, state: str, detail: str, *, error: bool) -> None:
        job.state = state
        job.due = None
        job.finished_at = now
        job.last_error = detail
        self._jobs.discard(job.id)
        self._given_up += 1
        if error:
            log.error("forward job=%s service=%s from=%s %s", job.id, job.service, mask_msisdn(job.msisdn), detail)
        cast(Any, self.gw.store).write_nowait(Writes(docs=[job_doc(job, now)]))

    async def _done(self, job: ForwardJob, service: ServiceConfig, config: Config, answer: Response,
                    opted_out: bool, now: float) -> None:
        """The application acknowledged: the job ends, with its reply MT in the same commit (Rule 4)."""
        text: str | None = None
        if answer.body_size_bytes > len(answer.body):
            log.warning("forward job=%s service=%s the answer is longer than %d bytes; no reply is sent", job.id,
                        service.name, MAX_REPLY_BODY_BYTES)
        elif answer.body.strip():
            try:
                text = _REPLY_DECODER.decode(answer.body).reply
            except msgspec.DecodeError:
                log.warning("forward job=%s service=%s the answer is not {\"reply\": ...} JSON; no reply is sent",
                            job.id, service.name)
        messages: list[Message] = []
        if text:
            if opted_out or self.consent.opted_out(job.msisdn, (service.name, job.shortcode)):  # Rule 5
                job.last_error = "reply not sent: the number opted out"
            else:
                reply = self._reply(config, service, shortcode=job.shortcode, msisdn=job.msisdn, text=text, now=now,
                                    category="mo_reply", reference=job.id)
                if reply is not None:
                    messages.append(reply)
                    job.reply_id = reply.id
                else:
                    job.last_error = "the reply could not be made (see the log)"
        job.state = "done"
        job.due = None
        job.finished_at = now
        self._finished.append((job, messages))
        self._finisher_wake.set()

    async def _finisher(self) -> None:
        """Commit the finished jobs, each with its reply, all that finished since the last commit at once (Rule 4).

        Until that commit a job stays pending in the store: a crash before it forwards the MO again on restart,
        and that forward makes the reply (at most one reply per MO, as the job and its reply commit together). On
        one node the finisher does not wait for the commit: the writes join the store's current batch, and the
        replies are queued once it is durable."""
        while True:
            while not self._finished:
                self._finisher_wake = anyio.Event()
                await self._finisher_wake.wait()
            await self.commit_finished(wait=False)

    def _not_committed(self, batch: list[tuple[ForwardJob, list[Message]]], exc: Exception) -> None:
        if isinstance(exc, StoreClosed):
            log.error("forward: the store is closed; %d answered jobs stay pending for the next run", len(batch))
            for job, _ in batch:
                self._jobs.discard(job.id)
            return
        log.error("forward: %d answered jobs could not be committed; forwarded again later", len(batch),
                  exc_info=exc)
        later = self.wall() + 60.0
        for job, _ in batch:
            job.state = "pending"
            job.finished_at = None
            job.reply_id = None
            self._put_later(job, later)

    async def commit_finished(self, *, wait: bool = True) -> anyio.Event | None:
        """Commit the jobs answered so far with their replies (`GatewayCore.accept_in_order`): with `wait` (or on a
        cluster) return once the commit is done; else queue it on one node and return the event set once it is
        durable. None when nothing was queued."""
        batch, self._finished = self._finished, []
        if not batch:
            return None
        messages = [m for _, replies in batch for m in replies]
        writes = Writes(docs=[job_doc(job, job.finished_at or self.wall()) for job, _ in batch])
        try:
            done = await self.gw.core.accept_in_order(messages, writes, wait=wait)
        except Exception as exc:
            self._not_committed(batch, exc)
            return None
        for job, _ in batch:
            self._jobs.discard(job.id)
        return done

    def statistics(self) -> ServicesStatistics:
        return ServicesStatistics(dict(self._handled), len(self._jobs), self._in_flight, self._forwards_ok,
                                  self._forward_failures, self._given_up, self._replies)


_DEFAULT_TEXTS_HELP = ServiceTextsConfig().help


# ---- `smppgw route --mo` -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoExplanation:
    """What `smppgw route --mo` prints: the MO router's decision and what the services would do with it."""

    decision: MoDecision
    text: str
    service_kind: str | None
    action: str

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {"shortcode": d.shortcode, "text": self.text, "kind": d.kind.value, "service": d.service,
                "service_kind": self.service_kind, "keyword": d.keyword, "target": d.target, "rule": d.rule,
                "rest": d.rest, "action": self.action, "reason": d.reason}

    def lines(self) -> list[str]:
        d = self.decision
        service = "(none)" if d.service is None else d.service + (f" ({self.service_kind})" if self.service_kind
                                                                  else " (not a configured service)")
        out = [f"shortcode:  {d.shortcode}", f"text:       {self.text!r}", f"kind:       {d.kind.value}",
               f"service:    {service}"]
        if d.keyword is not None:
            out.append(f"keyword:    {d.keyword}")
        if d.target is not None:
            out.append(f"target:     {d.target}")
        if d.rule is not None:
            out.append(f"rule:       {d.rule}")
        out += [f"rest:       {d.rest!r}", f"action:     {self.action}", f"reason:     {d.reason}"]
        return out


def explain_mo(config: Config, *, to: str, text: str) -> MoExplanation:
    """How an MO `text` sent to `to` would be handled (Rules 1 and 3), for a number with no pending handshake."""
    d = config.mo_router().decide(to=to, text=text)
    service = None if d.service is None else config.service(d.service)
    here = [s.name for s in config.billing.services if s.shortcode == to]
    paid = [s.name for s in config.billing.services if s.shortcode == to and s.kind in ("subscription", "one_off")]
    named = d.target is not None and service is not None
    account = service_account(config, service, to)
    answer = "one confirmation" if account is not None else "no confirmation (no account to reply on)"
    if d.kind is MoKind.STOP:
        if named:
            assert service is not None
            action = f"opt out of {service.name}; cancel its subscriptions; {answer}"
        else:
            scopes = [to] + ([service.name] if service is not None else [])
            action = (f"opt out of {' and '.join(scopes)}; cancel every subscription on {to}"
                      f"{' (' + ', '.join(paid) + ')' if paid else ''}; {answer}")
    elif d.kind is MoKind.STOPALL:
        action = (f"opt out of {', '.join([to, *here])}; cancel every subscription on {to}"
                  f"{' (' + ', '.join(paid) + ')' if paid else ''}; {answer}")
    elif d.kind is MoKind.START:
        scopes = [service.name] if named and service is not None else [to] + (
            [service.name] if service is not None else [])
        action = f"opt in to {' and '.join(scopes)}; {answer}"
    elif d.kind is MoKind.HELP:
        template, about = Services._help_text(config, to, service, named,
                                              [s for s in config.billing.services if s.shortcode == to])
        action = f"reply {render(template, text_values(about, to))!r}"
    elif service is None:
        action = "nothing: logged, no reply" if d.service is None else (
            f"nothing: {d.service} is not a configured service")
    elif service.kind in ("subscription", "one_off"):
        what = "a subscription" if service.kind == "subscription" else "a one-off charge"
        if service.double_opt_in:
            action = (f"{what} at {service.price} {service.currency}: a free confirm MT, then "
                      f"{service.confirm_keyword} within {service.handshake_ttl_s:g} s charges")
        else:
            action = f"{what} at {service.price} {service.currency}, charged at once (double_opt_in is off)"
    elif service.kind == "forward":
        assert service.forward is not None
        action = f"POST to {service.forward.url}; a reply in the answer goes back from {to}"
    else:
        values = text_values(service, to)
        values.update({"text": text, "from": "{from}", "keyword": d.keyword or "", "rest": d.rest})
        action = f"reply {render(service.reply_text or '', values)!r}"
    return MoExplanation(d, text, None if service is None else service.kind, action)


def install(gw: Gateway) -> Services:
    """Create the MO services (and the consent register), set them as the MO handler and hang them on the
    gateway as `extensions["services"]`; the daemon runs `services.run` (the forwarder). Returns them."""
    existing = gw.extensions.get("services")
    if isinstance(existing, Services):
        return existing
    services = Services(gw)
    gw.extensions["services"] = services
    gw.mo.handler = services.handle
    return services
