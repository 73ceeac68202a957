"""The PIN web flow: a number typed on a landing page gets a PIN by SMS; the PIN typed back is the consent.

Rule 1: a PIN comes from `secrets` and is never stored or logged: the record keeps HMAC-SHA256(key, id ":" PIN),
and a check compares digests in constant time. The key is `billing.pin.secret` (or `secret_file`); without one a
random key lives in memory only, so PINs pending at a restart can no longer be checked.
Rule 2: a verification accepts at most `max_attempts` wrong PINs, then refuses every check (429
too_many_attempts); after `ttl_s` it refuses every check (410 expired); once verified it refuses another (409).
Every wrong attempt is durable before its answer, so a restart does not give attempts back.
Rule 3: at most `max_per_msisdn_per_hour` verifications are started per number in any hour (429 rate_limited).
Rule 4: the right PIN records the opt-in (method web_pin, the PIN MT as proof) and starts the subscription (active at
once) or the one-off purchase with its first charge, in the commit that marks the verification verified.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routing import mask_msisdn

from ._accept import ApiError, add_routes
from ._charging import (
    BillingStore,
    check_intake,
    decode_body,
    error_responses,
    json_response,
    query_msisdn,
    render,
    require_open,
    service_values,
)
from ._config import AccountConfig, Config, PinConfig
from ._model import Message, iso_time, new_message_id
from ._mt import internal_mt
from ._store import Doc, StoreClosed, Writes
from ._subscriptions import Subscriptions
from ._subscriptions import install as install_subscriptions

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = ["VERIFICATION_KIND", "PinCheck", "Verification", "VerificationRequest", "VerificationView", "Verifications",
           "install"]

log = logging.getLogger(__name__)

VERIFICATION_KIND = "verification"
PIN_CATEGORY = "otp"
"""The PIN MT's category: exempt from opt-outs when `billing.consent.exempt_categories` lists it (the default)."""
_HOUR_S = 3600.0
_JSON = "application/json"
_ENCODER = msgspec.json.Encoder()


class Verification(msgspec.Struct, kw_only=True):
    """One PIN verification (the body of a `verification` record).

    Attributes:
        pin_hmac: hex HMAC-SHA256 of "<id>:<pin>" (Rule 1).
        attempts: wrong PINs so far.
        state: pending, verified, failed (too many attempts) or expired.
        message_id: the PIN MT (the consent record's proof).
        subscription_id: what the right PIN started.
    """

    id: str
    msisdn: str
    service: str
    account: str
    created_at: float
    expires_at: float
    pin_hmac: str
    attempts: int = 0
    state: str = "pending"
    state_at: float
    message_id: str = ""
    subscription_id: str = ""


_MSGPACK = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Verification)


def pin_mac(key: bytes, verification_id: str, pin: str) -> str:
    """The stored form of a PIN (Rule 1)."""
    return hmac.new(key, f"{verification_id}:{pin}".encode(), hashlib.sha256).hexdigest()


def new_pin(length: int) -> str:
    """`length` decimal digits from the operating system's cryptographic source."""
    return f"{secrets.randbelow(10 ** length):0{length}d}"


class Verifications:
    """PIN verifications (the module's rules).

    Args:
        gw: the gateway.
        subscriptions: starts what a right PIN consents to.
        wall: the wall clock; by default the core's.
    """

    def __init__(self, gw: Gateway, subscriptions: Subscriptions, *, wall: Callable[[], float] | None = None) -> None:
        self.gw = gw
        self.subscriptions = subscriptions
        self._wall = wall
        self._known: dict[str, Verification] = {}  # touched lately (see find)
        self._recent: dict[str, deque[float]] = {}  # msisdn -> start times within the last hour
        self._key_of: PinConfig | None = None
        self._key = b""
        self.started_total = 0
        self.verified_total = 0
        self.wrong_total = 0

    def wall(self) -> float:
        return self._wall() if self._wall is not None else self.gw.core.wall()

    @property
    def store(self) -> BillingStore:
        return cast(BillingStore, self.gw.store)

    def key(self) -> bytes:
        """The HMAC key (Rule 1), read again after a reload changed `billing.pin`."""
        config = self.gw.config
        pin = config.billing.pin
        if pin is self._key_of:
            return self._key
        key: bytes | None = None
        if pin.secret:
            key = str(pin.secret).encode()
        elif pin.secret_file:
            path = Path(pin.secret_file)
            if not path.is_absolute():
                path = Path(config.base_dir) / path
            try:
                key = path.read_text().splitlines()[0].strip().encode() or None
            except (OSError, IndexError) as exc:
                log.error("billing.pin.secret_file: cannot read %s (%s); using a random key", path, exc)
        if key is None:
            if self._key_of is None or not self._key:
                log.warning("billing.pin has no secret: PINs are hashed with a random key that a restart forgets")
                self._key = secrets.token_bytes(32)
        else:
            self._key = key
        self._key_of = pin
        return self._key

    def _write(self, v: Verification, now: float, writes: Writes) -> None:
        writes.docs.append(Doc(VERIFICATION_KIND, v.id, v.msisdn, v.service, v.state, None, now, _MSGPACK.encode(v)))
        self._known[v.id] = v

    def find(self, vid: str) -> Verification | None:
        v = self._known.get(vid)
        if v is not None:
            return v
        doc = self.store.doc(VERIFICATION_KIND, vid)
        if doc is None:
            return None
        # One object per verification while it matters, so concurrent checks see each other's changes before
        # they are durable (the store answers with the last commit only).
        return self._known.setdefault(vid, _DECODER.decode(doc.body))

    def _recent_starts(self, msisdn: str, now: float) -> deque[float]:
        starts = self._recent.get(msisdn)
        if starts is None:
            docs = self.store.docs(VERIFICATION_KIND, msisdn=msisdn, since=now - _HOUR_S)
            starts = deque(sorted(t for t in (_DECODER.decode(d.body).created_at for d in docs) if t > now - _HOUR_S))
            self._recent[msisdn] = starts
        while starts and starts[0] <= now - _HOUR_S:
            starts.popleft()
        return starts

    def _sweep(self, now: float) -> None:
        """Forget what no longer matters: verifications an hour past their expiry, and idle rate windows."""
        for vid in [vid for vid, v in self._known.items() if now >= v.expires_at + _HOUR_S]:
            del self._known[vid]
        for msisdn in [m for m, starts in self._recent.items() if not starts or starts[-1] <= now - _HOUR_S]:
            del self._recent[msisdn]

    # ---- the flow ---------------------------------------------------------------------------------------

    async def start(self, account: AccountConfig, msisdn: str, service_name: str) -> Verification:
        """Send a PIN for `service_name` to `msisdn` (normalised) and return the verification.

        Raises:
            ApiError: 409 already_subscribed; 422 invalid_field (service), opted_out; 429 rate_limited; 503.
        """
        service = self.subscriptions.service_for(account, service_name)
        check_intake(self.gw)
        self.subscriptions.load()
        config = self.gw.config
        cfg = config.billing.pin
        now = self.wall()
        if service.kind == "subscription":
            live = self.subscriptions.live(msisdn, service.name)
            if live is not None and live.state == "active":
                raise ApiError(409, "already_subscribed", f"msisdn: already subscribed to {service.name}",
                               field="msisdn")
        if PIN_CATEGORY not in config.billing.consent.exempt_categories and \
                self.subscriptions.charging.opted_out(msisdn, service):
            raise ApiError(422, "opted_out", f"msisdn: the number opted out of {service.name}", field="msisdn")
        starts = self._recent_starts(msisdn, now)
        if len(starts) >= cfg.max_per_msisdn_per_hour:
            wait = max(1, math.ceil(starts[0] + _HOUR_S - now))
            raise ApiError(429, "rate_limited", f"msisdn: at most {cfg.max_per_msisdn_per_hour} PINs per number and "
                           f"hour; retry in {wait} s", field="msisdn", headers={"Retry-After": str(wait)})
        self._sweep(now)
        vid = f"ver-{new_message_id(now)}"
        pin = new_pin(cfg.length)
        text = render(service.texts.pin, service_values(service, pin=pin, minutes=str(max(1, math.ceil(cfg.ttl_s /
                                                                                                     60)))))
        try:
            msg = internal_mt(config, account=account.id, to=msisdn, source=service.shortcode, text=text, now=now,
                              category=PIN_CATEGORY, validity_s=cfg.ttl_s, detail=f"PIN of {vid}")
        except ValueError as exc:
            raise ApiError(422, "invalid_field", f"service: the PIN text of {service.name} cannot be sent: {exc}",
                           field="service") from None
        v = Verification(id=vid, msisdn=msisdn, service=service.name, account=account.id, created_at=now,
                         expires_at=now + cfg.ttl_s, pin_hmac=pin_mac(self.key(), vid, pin), state_at=now,
                         message_id=msg.id)
        starts.append(now)
        writes = Writes()
        self._write(v, now, writes)
        try:
            await self.gw.core.accept([msg], writes)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
        self.started_total += 1
        log.info("verification=%s service=%s to=%s PIN sent", vid, service.name, mask_msisdn(msisdn))
        return v

    async def check(self, account: AccountConfig, vid: str, pin: str) -> Verification:
        """Check a PIN (Rules 2 and 4); returns the verification, verified.

        Raises:
            ApiError: 404 not_found; 409 already_verified, already_subscribed; 410 expired; 422 wrong_pin;
                429 too_many_attempts; 503.
        """
        require_open(self.gw)
        self.subscriptions.load()
        v = self.find(vid)
        if v is None or v.account != account.id:
            raise ApiError(404, "not_found", "no such verification for this account", field="id")
        now = self.wall()
        if v.state == "verified":
            raise ApiError(409, "already_verified", "this verification succeeded already", field="id")
        if v.state == "failed":
            raise ApiError(429, "too_many_attempts", "pin: too many wrong PINs; start a new verification", field="pin")
        if v.state == "expired" or now >= v.expires_at:
            if v.state == "pending":
                v.state = "expired"
                v.state_at = now
                await self._commit(v, now, Writes(), [])
            raise ApiError(410, "expired", "id: the PIN expired; start a new verification", field="id")
        cfg = self.gw.config.billing.pin
        if not hmac.compare_digest(v.pin_hmac, pin_mac(self.key(), v.id, pin)):
            v.attempts += 1
            self.wrong_total += 1
            left = cfg.max_attempts - v.attempts
            if left <= 0:
                v.state = "failed"
                v.state_at = now
            await self._commit(v, now, Writes(), [])
            log.info("verification=%s wrong PIN (%d left)", v.id, max(0, left))
            raise ApiError(422, "wrong_pin", f"pin: wrong PIN; {max(0, left)} attempt(s) left", field="pin")
        check_intake(self.gw)
        service = self.subscriptions.service_for(account, v.service)
        if service.kind == "subscription":
            live = self.subscriptions.live(v.msisdn, service.name)
            if live is not None and live.state == "active":
                raise ApiError(409, "already_subscribed", f"msisdn: already subscribed to {service.name}",
                               field="msisdn")
        writes = Writes()
        messages: list[Message] = []
        v.state = "verified"
        v.state_at = now
        sub = self.subscriptions.activate(msisdn=v.msisdn, service=service, account=v.account, method="web_pin",
                                          proof=[v.message_id], origin=v.id, now=now, writes=writes,
                                          messages=messages)
        v.subscription_id = sub.id
        await self._commit(v, now, writes, messages)
        self.verified_total += 1
        log.info("verification=%s verified: %s", v.id, sub.id)
        return v

    async def _commit(self, v: Verification, now: float, writes: Writes, messages: list[Message]) -> None:
        self._write(v, now, writes)
        try:
            await self.gw.core.accept(messages, writes)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None

    def statistics(self) -> dict[str, int]:
        return {"started": self.started_total, "verified": self.verified_total, "wrong": self.wrong_total,
                "pending": sum(v.state == "pending" for v in self._known.values())}

    # ---- HTTP ----------------------------------------------------------------------------------------------

    def routes(self, api: Any) -> list[Route]:
        """`POST /v1/verifications`, `GET /v1/verifications/{id}`, `POST /v1/verifications/{id}/check`."""

        async def create(request: Request) -> Response:
            account = api.account(request)
            req: VerificationRequest = decode_body(_REQUEST_DECODER, await api.body(request))
            self.subscriptions.service_for(account, req.service)
            msisdn = query_msisdn(self.gw, account, req.msisdn)
            assert msisdn is not None
            await api.rate(account, 1)
            v = await self.start(account, msisdn, req.service)
            return Response(_ENCODER.encode(verification_view(v, self.gw.config)), status_code=202,
                            media_type=_JSON)

        async def one(request: Request) -> Response:
            account = api.account(request)
            require_open(self.gw)
            v = self.find(request.path_params["id"])
            if v is None or v.account != account.id:
                raise ApiError(404, "not_found", "no such verification for this account", field="id")
            return Response(_ENCODER.encode(verification_view(v, self.gw.config, self.wall())), media_type=_JSON)

        async def check(request: Request) -> Response:
            account = api.account(request)
            req: PinCheck = decode_body(_CHECK_DECODER, await api.body(request))
            v = await self.check(account, request.path_params["id"], req.pin)
            return Response(_ENCODER.encode(verification_view(v, self.gw.config)), media_type=_JSON)

        return [Route("/v1/verifications", create, methods=["POST"]),
                Route("/v1/verifications/{id}", one, methods=["GET"]),
                Route("/v1/verifications/{id}/check", check, methods=["POST"])]


# ---- HTTP views ----------------------------------------------------------------------------------------------

DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class VerificationRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Send a PIN to a number for a service."""

    msisdn: Annotated[str, msgspec.Meta(min_length=1, max_length=32, examples=["447700900123"],
                                        description="The number typed on the landing page")]
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["news"],
                                         description="A subscription or one_off service (billing.services)")]


class PinCheck(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The PIN the user typed."""

    pin: Annotated[str, msgspec.Meta(pattern="^[0-9]{4,10}$", examples=["4821"])]


class VerificationView(msgspec.Struct, frozen=True, kw_only=True):
    """A PIN verification (the PIN itself is never shown)."""

    id: str
    msisdn: str
    service: str
    state: Annotated[str, msgspec.Meta(description="pending, verified, failed (too many attempts) or expired")]
    created_at: DateTime
    expires_at: DateTime
    attempts_left: int
    message_id: Annotated[str, msgspec.Meta(description="The PIN MT (GET /v1/messages/{id})")]
    subscription_id: Annotated[str, msgspec.Meta(description="What the right PIN started")] | None


_REQUEST_DECODER = msgspec.json.Decoder(VerificationRequest)
_CHECK_DECODER = msgspec.json.Decoder(PinCheck)


def verification_view(v: Verification, config: Config, now: float | None = None) -> VerificationView:
    state = "expired" if v.state == "pending" and now is not None and now >= v.expires_at else v.state
    left = 0 if state != "pending" else max(0, config.billing.pin.max_attempts - v.attempts)
    return VerificationView(id=v.id, msisdn=v.msisdn, service=v.service, state=state,
                            created_at=iso_time(v.created_at), expires_at=iso_time(v.expires_at), attempts_left=left,
                            message_id=v.message_id, subscription_id=v.subscription_id or None)


def openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and schemas of the verification routes."""
    _, schemas = msgspec.json.schema_components((VerificationRequest, PinCheck, VerificationView),
                                                ref_template="#/components/schemas/{name}")
    vid = {"name": "id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
    paths = {
        "/v1/verifications": {"post": {
            "operationId": "startVerification", "summary": "Send a PIN by SMS (the web flow's first step)",
            "requestBody": {"required": True, "content": {_JSON: {
                "schema": {"$ref": "#/components/schemas/VerificationRequest"},
                "example": {"msisdn": "447700900123", "service": "news"}}}},
            "responses": {"202": json_response("VerificationView", "The PIN MT is queued"),
                          **error_responses(400, 401, 409, 413, 415, 422, 429, 503)},
        }},
        "/v1/verifications/{id}": {"get": {
            "operationId": "getVerification", "summary": "A verification's state", "parameters": [vid],
            "responses": {"200": json_response("VerificationView", "The verification"),
                          **error_responses(401, 404, 503)},
        }},
        "/v1/verifications/{id}/check": {"post": {
            "operationId": "checkPin",
            "summary": "Check the PIN; the right one records consent and starts the subscription or purchase",
            "parameters": [vid],
            "requestBody": {"required": True, "content": {_JSON: {
                "schema": {"$ref": "#/components/schemas/PinCheck"}, "example": {"pin": "4821"}}}},
            "responses": {"200": json_response("VerificationView", "Verified: the subscription started"),
                          **error_responses(400, 401, 404, 409, 410, 413, 415, 422, 429, 503)},
        }},
    }
    return paths, schemas


def install(gw: Gateway) -> Verifications:
    """Create the PIN service once (and the subscriptions and charging services it needs) and hang it on the
    gateway: `extensions["verifications"]`, its routes and their OpenAPI description. Returns it."""
    existing = gw.extensions.get("verifications")
    if isinstance(existing, Verifications):
        return existing
    pins = Verifications(gw, install_subscriptions(gw))
    ext = gw.extensions
    ext["verifications"] = pins
    add_routes(ext, pins.routes, openapi())
    return pins
