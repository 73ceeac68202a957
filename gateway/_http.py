"""The HTTP API (docs/http-api.md): submit, batch, status, cancel, health, readiness, metrics, OpenAPI.

Rule 1: every answer is JSON (but /metrics), and every error is `{"error": {"code", "message", "field"?}}` with
the 4xx that fits, or a 503 when the gateway cannot take work (draining, queue full, store down); whatever a
client sends, a 500 is a bug.
Rule 2: a submit is answered 202 only once its messages are durable (`gateway._accept`, Rule 3); the order of
checks is: authentication (401), body size and type (413, 415), JSON and schema (400, 422), the account's rate
(429), idempotency (409 or a replay), intake (503 draining or queue full), then each message (422).
Rule 3: /openapi.json is generated from the same msgspec Structs that decode the requests and encode the
answers, so it cannot drift from what the server does.
Rule 4: message text and API keys are never logged; MSISDNs only masked.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routing import mask_msisdn

from ._accept import (
    MAX_BATCH,
    MAX_IDEMPOTENCY_KEY,
    Acceptor,
    ApiError,
    BatchRequest,
    ErrorResponse,
    MessageView,
    SubmitRequest,
    SubmitResult,
    request_hash,
)
from ._config import AccountConfig, Config, hash_api_key
from ._daemon import Listening
from ._model import Message
from ._ratelimit import AccountRateLimiter
from ._store import StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = ["create_app", "openapi_document", "parse_listen", "run_http"]

log = logging.getLogger(__name__)

_JSON = "application/json"
_ENCODER = msgspec.json.Encoder()
_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    uptime_s: float


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """What /readyz reports: ready when the store is open, the gateway is not draining and every route has a
    bound SMSC."""

    ready: bool
    store_open: bool
    draining: bool
    routes: dict[str, bool]
    open_messages: int


class BatchResponse(msgspec.Struct, frozen=True, kw_only=True):
    results: list[SubmitResult | ErrorResponse]  # schema written by hand: msgspec needs tags for this union


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type=_JSON, headers=headers)


def _error(err: ApiError) -> Response:
    return _json(err.status, err.body(), err.headers)


class _Api:
    """The endpoints of one app, over one gateway."""

    def __init__(self, gw: Gateway, clock: Callable[[], float]) -> None:
        self.gw = gw
        self.acceptor = Acceptor(gw)
        self.limiter = AccountRateLimiter(clock)
        self._shared: Any = None
        self._keys_of: Config | None = None
        self._keys: dict[str, AccountConfig] = {}
        document = openapi_document(gw.config)
        document["paths"].update(gw.extensions.get("openapi_paths", {}))  # extensions document their routes
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            gw.extensions.get("openapi_schemas", {}))
        self.openapi = _ENCODER.encode(document)

    # ---- request checks (Rule 2) -----------------------------------------------------------------------

    @staticmethod
    def json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
        """A JSON response (msgspec encodes Structs, dicts and lists)."""
        return _json(status, body, headers)

    def account(self, request: Request) -> AccountConfig:
        """The account whose API key the request carries.

        Raises:
            ApiError: 401 unauthorized.
        """
        config = self.gw.config
        if self._keys_of is not config:  # first request, or the config was reloaded
            self._keys = {k.sha256: a for a in config.accounts for k in a.api_keys}
            self._keys_of = config
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="smppgw"'}
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, "unauthorized", "send the account's API key as `Authorization: Bearer <key>`",
                           headers=challenge)
        # Only hashes are held; a lookup by hash leaks nothing usable about a key through timing.
        account = self._keys.get(hash_api_key(key))
        if account is None:
            raise ApiError(401, "unauthorized", "unknown API key", headers=challenge)
        return account

    async def body(self, request: Request) -> bytes:
        """The request body, refused above http.max_body_bytes (413) or when it is not JSON (415)."""
        limit = self.gw.config.http.max_body_bytes
        too_large = ApiError(413, "body_too_large", f"the body is larger than {limit} bytes (http.max_body_bytes)")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "bad_request", "Content-Length is not a number")
            if int(length) > limit:
                raise too_large
        ctype = request.headers.get("content-type")
        if ctype is not None:
            media = ctype.partition(";")[0].strip().lower()
            if media != _JSON and not media.endswith("+json"):
                raise ApiError(415, "unsupported_media_type", f"expected {_JSON}, got {media or 'nothing'}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def rate(self, account: AccountConfig, n: int) -> None:
        if self.gw.core.cluster is not None:  # several nodes: one bucket per account in Redis, shared by all
            if self._shared is None:
                from ._ratelimit_redis import SharedRateLimiter

                store: Any = self.gw.store  # a ClusterStore: the Redis client and the deployment's key prefix
                self._shared = SharedRateLimiter(store.client, key_prefix=store.prefix)
            wait = await self._shared.take(account, n)
        else:
            wait = self.limiter.take(account, n)
        if wait > 0.0:
            retry = self.limiter.retry_after(wait)
            raise ApiError(429, "rate_limited",
                           f"account {account.id} is over its rate limit ({account.rate_limit_per_s:g} messages/s); "
                           f"retry in {retry} s", headers={"Retry-After": str(retry)})

    @staticmethod
    def idempotency_key(request: Request) -> str | None:
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not all("!" <= c <= "~" for c in key):
            raise ApiError(400, "invalid_header",
                           f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters",
                           field="Idempotency-Key")
        return key

    # ---- endpoints -------------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        account = self.account(request)
        body = await self.body(request)
        req = self.acceptor.decode_submit(body)
        await self.rate(account, 1)
        key = self.idempotency_key(request)
        outcome = await self.acceptor.submit(account, [req], batch=False, idempotency_key=key,
                                             body_hash=request_hash("submit", req) if key is not None else "")
        result = outcome.results[0]
        if isinstance(result, ApiError):
            raise result
        if log.isEnabledFor(logging.DEBUG):
            log.debug("id=%s account=%s to=%s accepted%s", result.id, account.id, mask_msisdn(result.to),
                      " (idempotent replay)" if outcome.replayed else "")
        headers = {"Location": f"/v1/messages/{result.id}"}
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        return _json(202, self.acceptor.result(result), headers)

    async def batch(self, request: Request) -> Response:
        account = self.account(request)
        body = await self.body(request)
        req = self.acceptor.decode_batch(body)
        n = len(req.messages)
        limit = min(account.max_batch, MAX_BATCH)
        if n > limit:
            raise ApiError(422, "batch_too_large", f"messages: {n} messages, at most {limit} for this account",
                           field="messages")
        await self.rate(account, n)
        key = self.idempotency_key(request)
        outcome = await self.acceptor.submit(account, req.messages, batch=True, idempotency_key=key,
                                             body_hash=request_hash("batch", req) if key is not None else "")
        result = self.acceptor.result
        results = [result(r) if isinstance(r, Message) else r.body() for r in outcome.results]
        if log.isEnabledFor(logging.DEBUG):
            accepted = sum(isinstance(r, Message) for r in outcome.results)
            log.debug("account=%s batch of %d: %d accepted%s", account.id, n, accepted,
                      " (idempotent replay)" if outcome.replayed else "")
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        return _json(202, BatchResponse(results=results), headers)

    def _own(self, request: Request, account: AccountConfig) -> Message:
        mid = request.path_params["id"]
        try:
            msg = self.gw.core.find(mid)
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
        if msg is None or msg.account != account.id:
            raise ApiError(404, "not_found", "no such message for this account", field="id")
        return msg

    async def message(self, request: Request) -> Response:
        """GET: the message's status and history; DELETE: cancel it (one route, so 405 lists both)."""
        msg = self._own(request, self.account(request))
        if request.method == "DELETE":
            return await self.cancel(msg)
        return _json(200, msg.to_json())

    async def cancel(self, msg: Message) -> Response:
        gw = self.gw
        if not gw.store.is_open:
            raise ApiError(503, "store_unavailable", "the store is unavailable")
        if not gw.core.cancel(msg):
            raise ApiError(409, "not_cancellable",
                           f"the message is {msg.status.value}; only a queued message not yet submitted to an SMSC "
                           "can be cancelled", field="id")
        try:
            await gw.core.write_then(Writes(messages=[msg])).wait()  # answer once the cancellation is durable
        except StoreClosed as exc:
            raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
        if not gw.store.is_open:
            raise ApiError(503, "store_unavailable", "the store failed before the cancellation was durable")
        log.info("id=%s account=%s cancelled", msg.id, msg.account)
        return _json(200, msg.to_json())

    async def healthz(self, request: Request) -> Response:
        return _json(200, Health(status="ok", uptime_s=round(time.time() - self.gw.started_at, 3)))

    async def readyz(self, request: Request) -> Response:
        gw = self.gw
        ready = gw.ready
        body = Readiness(ready=ready, store_open=gw.store.is_open, draining=gw.draining, routes=gw.route_up(),
                         open_messages=len(gw.core.messages))
        return _json(200 if ready else 503, body)

    async def metrics(self, request: Request) -> Response:
        metrics = self.gw.extensions.get("metrics")
        if metrics is None:
            raise ApiError(404, "not_found", "metrics are not enabled on this gateway")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type=_JSON)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if exc.status_code != 404 else f"no endpoint {request.url.path}"
    return _json(exc.status_code, ApiError(exc.status_code, code, message).body(), dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer and uvicorn logs the traceback; one line here names the request.
    log.error("http: %s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return _error(ApiError(500, "internal_error", "the gateway failed to handle this request"))


def create_app(gw: Gateway, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """The Starlette app of the HTTP API over `gw`.

    Args:
        gw: the gateway (its store must be running for the /v1 endpoints).
        clock: monotonic seconds for the rate limiter (tests hand in a fake clock).
    """
    api = _Api(gw, clock)
    routes = [
        Route("/v1/messages", api.submit, methods=["POST"]),
        Route("/v1/messages/batch", api.batch, methods=["POST"]),
        Route("/v1/messages/{id}", api.message, methods=["GET", "DELETE"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
    ]
    # Extensions (the billing flows, the admin API) add routes: each is `make_routes(api) -> list[Route]`, and
    # may use `api.account(request)`, `api.body(request)` and `api.json(status, obj)`, raising ApiError to refuse.
    # On a cluster, the billing flows' routes answer on the billing node only; elsewhere a wrapper forwards them.
    wrappers = gw.extensions.get("route_wrappers", {})
    for make_routes in gw.extensions.get("http_routes", []):
        wrap = wrappers.get(id(make_routes))
        routes.extend(make_routes(api) if wrap is None else [wrap(r) for r in make_routes(api)])
    app = Starlette(routes=routes, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _server_error,
    })
    app.state.api = api
    return app


class FastPaths:
    """The app with `POST /v1/messages` and `POST /v1/messages/batch` taken straight to their handlers.

    The two routes every sender calls skip Starlette's middleware stack and router, which cost about a sixth of
    the gateway's CPU per one-message request. Their answers are the app's own: the same handlers, the same JSON
    for an ApiError, and a 500 (then the exception, for uvicorn to log) for anything else. Every other request
    goes to the app.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        api: _Api = app.state.api
        self.routes = {"/v1/messages": api.submit, "/v1/messages/batch": api.batch}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:
            await (await _server_error(request, exc))(scope, receive, send)
            raise
        await response(scope, receive, send)


# ---- OpenAPI (Rule 3) ------------------------------------------------------------------------------------


def openapi_document(config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this API; schemas come from the Structs that decode and encode it."""
    _, components = msgspec.json.schema_components(
        (SubmitRequest, BatchRequest, SubmitResult, ErrorResponse, MessageView, Health, Readiness),
        ref_template="#/components/schemas/{name}",
    )
    components["BatchResponse"] = {
        "title": "BatchResponse", "type": "object", "required": ["results"],
        "properties": {"results": {
            "type": "array", "description": "One entry per message of the request, in order.",
            "items": {"anyOf": [{"$ref": "#/components/schemas/SubmitResult"},
                                {"$ref": "#/components/schemas/ErrorResponse"}]},
        }},
    }

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_body(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": ref(name)}}}
        if headers:
            out["headers"] = headers
        return out

    def errors(*statuses: int) -> dict[str, Any]:
        text = {400: "Malformed JSON, a bad header", 401: "No or an unknown API key",
                404: "No such message for this account", 409: "Conflict (see the error code)",
                413: "Body larger than http.max_body_bytes", 415: "Body is not JSON",
                422: "A field is invalid (the error names it)", 429: "Over the account's rate limit",
                503: "Unavailable (draining, queue full, store)"}
        out = {str(s): json_body("ErrorResponse", text[s]) for s in statuses}
        if 429 in statuses:
            out["429"] = json_body("ErrorResponse", text[429], {
                "Retry-After": {"required": True, "description": "Seconds to wait",
                                "schema": {"type": "integer", "minimum": 1}}})
        return out

    idempotency = {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Makes the request take effect at most once per account (docs/http-api.md).",
        "schema": {"type": "string", "pattern": f"^[!-~]{{1,{MAX_IDEMPOTENCY_KEY}}}$"},
    }
    message_id = {"name": "id", "in": "path", "required": True,
                  "schema": {"type": "string", "pattern": "^[0-9a-hjkmnp-tv-z]{26}$",
                             "description": "26 characters (Crockford base32, lower case), as submit returned"}}
    example = {"to": "+447911123456", "from": "ACME", "text": "Your code is 1234", "reference": "order-17"}
    replayed = {"Idempotent-Replayed": {"description": "Present (`true`) when this answers an earlier request "
                                                      "with the same Idempotency-Key",
                                       "schema": {"type": "string", "enum": ["true"]}}}
    submit_errors = errors(400, 401, 409, 413, 415, 422, 429, 503)
    by_id = {"GetMessage": {"operationId": "getMessage", "parameters": {"id": "$response.body#/id"}},
             "CancelMessage": {"operationId": "cancelMessage", "parameters": {"id": "$response.body#/id"}}}
    paths: dict[str, Any] = {
        "/v1/messages": {"post": {
            "operationId": "submitMessage", "summary": "Send one message",
            "parameters": [idempotency],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref("SubmitRequest"),
                                                                   "example": example}}},
            "responses": {"202": {**json_body("SubmitResult", "Accepted: durable and queued", {
                "Location": {"required": True, "schema": {"type": "string"},
                             "description": "The message's status URL"}, **replayed}), "links": by_id},
                **submit_errors},
        }},
        "/v1/messages/batch": {"post": {
            "operationId": "submitBatch", "summary": "Send up to 1000 messages in one durable write",
            "parameters": [idempotency],
            "requestBody": {"required": True, "content": {_JSON: {
                "schema": ref("BatchRequest"),
                "example": {"messages": [example, {**example, "to": "07911 123457", "reference": "order-18"}]}}}},
            "responses": {"202": json_body("BatchResponse", "Per message, in order: accepted or the error",
                                           replayed), **submit_errors},
        }},
        "/v1/messages/{id}": {
            "get": {"operationId": "getMessage", "summary": "A message's status and history",
                    "parameters": [message_id],
                    "responses": {"200": json_body("MessageView", "The message"), **errors(401, 404, 503)}},
            "delete": {"operationId": "cancelMessage",
                       "summary": "Cancel a message that has not been submitted to an SMSC yet",
                       "parameters": [message_id],
                       "responses": {"200": json_body("MessageView", "Cancelled"), **errors(401, 404, 409, 503)}},
        },
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "security": [],
                             "responses": {"200": json_body("Health", "The process is up")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness", "security": [],
                            "responses": {"200": json_body("Readiness", "Ready"),
                                          "503": json_body("Readiness", "Not ready (see which part)")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           **errors(404)}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {_JSON: {"schema": {"type": "object"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "smpp-gateway HTTP API", "version": "1",
                 "description": "Send SMS through the gateway and follow their status (docs/http-api.md). "
                                f"Messages may take up to {config.messages.max_parts} parts; validity up to "
                                f"{config.messages.max_validity_s:g} s."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "The account's API key"}}},
    }


# ---- serving ---------------------------------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:8080`) as (host, port).

    Raises:
        ValueError: not host:port with a port in 0..65535.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers (the daemon owns signals) and with a `listening` event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = anyio.Event()

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn 0.54's serve() always installs SIGINT/SIGTERM handlers through this method (no setting turns
        # that off); the daemon reads signals itself and cancels us instead.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


async def run_http(gw: Gateway, *, listen: str | None = None,
                   task_status: anyio.abc.TaskStatus[Listening] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve the HTTP API until cancelled (asyncio only: uvicorn runs on the running asyncio loop).

    Binds the socket itself, so port 0 picks a free port; `task_status.started(Listening(host, port))` reports
    the real one once uvicorn accepts connections. On cancellation it stops accepting, lets requests in progress
    finish (up to 5 s) and returns.

    Args:
        listen: `host:port` overriding `gw.config.http.listen`.
    """
    host, port = parse_listen(listen or gw.config.http.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    config = uvicorn.Config(FastPaths(create_app(gw)), lifespan="off", log_config=None, access_log=False, ws="none",
                            server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
    server = _Server(config)
    finished = anyio.Event()

    async def serve() -> None:
        # Shielded: cancellation reaches uvicorn as should_exit, so it closes connections in its own order.
        with anyio.CancelScope(shield=True):
            try:
                await server.serve(sockets=[sock])
            finally:
                sock.close()
                finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        try:
            await server.listening.wait()
            log.info("http: listening on %s:%d", host, port)
            task_status.started(Listening(host, port))
            await finished.wait()
        finally:
            server.should_exit = True
    log.info("http: stopped")
