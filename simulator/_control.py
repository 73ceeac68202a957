"""Rule: every control endpoint is a short, non-blocking function of the SMSC's state, run on the SMPP event loop.

The control API (HTTP on loopback, no authentication) injects MOs, shows messages, counters and metrics, and
changes faults, balances, barred numbers and handset rules at run time. Handlers are `async def` on the same
event loop as the SMPP links, so they need no locks; none of them awaits anything but its request body, and a
listing is bounded by `limit`, so a request costs the SMPP path at most a few milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._config import ConfigError, Faults, HandsetRule, check_faults, check_handsets, convert
from ._handsets import Handsets
from ._metrics import CONTENT_TYPE, MetricsExporter
from ._smsc import Smsc
from ._store import describe

__all__ = ["create_app"]

_MAX_LIMIT = 10_000


class MoRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /mo: an MO from handset `from_` to shortcode `to`."""

    from_: str = msgspec.field(name="from")
    to: str = ""
    text: str = ""
    encoding: str = "auto"


class MoBatchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /mo/batch: up to MAX_MO_BATCH MOs, injected in order."""

    messages: list[MoRequest]


MAX_MO_BATCH = 1000


class BalanceRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """PUT /billing/balances/{msisdn}."""

    balance: int


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


async def _body(request: Request, type_: type[Any], path: str = "") -> Any:
    """The JSON body validated into `type_`.

    Raises:
        ConfigError: bad JSON or a value of the wrong type (the message names the path).
    """
    raw = await request.body()
    try:
        data = msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc}") from None
    return convert(data, type_, path)


def _since(text: str | None) -> float | None:
    """A `since` parameter: seconds since the epoch, or an ISO 8601 time (naive means UTC)."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _limit(text: str | None, default: int = 100) -> int:
    if text is None:
        return default
    value = int(text)
    if not 1 <= value <= _MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {_MAX_LIMIT}")
    return value


def create_app(smsc: Smsc, *, clock: Callable[[], float] | None = None) -> Starlette:
    """The control API of one simulator.

    Args:
        smsc: the simulator's SMSC.
        clock: the monotonic clock used to tell en-route messages from final ones (time.monotonic by default).
    """
    monotonic = clock or time.monotonic
    metrics = MetricsExporter(smsc.statistics)

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "links": len(smsc.links)})

    async def post_mo(request: Request) -> Response:
        try:
            body: MoRequest = await _body(request, MoRequest)
        except ConfigError as exc:
            return _error(400, str(exc))
        if not body.from_ or not body.to:
            return _error(400, "from and to are required")
        try:
            result = smsc.inject_mo(body.from_, body.to, body.text, encoding=body.encoding)
        except LookupError as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        return _json(result, 202)

    async def post_mo_batch(request: Request) -> Response:
        # The whole body is checked before the first MO goes out; an MO that fails after that (no account owns
        # its shortcode, a text its encoding cannot carry) is an error entry in its place, and the rest go on.
        try:
            body: MoBatchRequest = await _body(request, MoBatchRequest)
        except ConfigError as exc:
            return _error(400, str(exc))
        if not 1 <= len(body.messages) <= MAX_MO_BATCH:
            return _error(400, f"messages: expected 1 to {MAX_MO_BATCH} MOs, got {len(body.messages)}")
        for i, mo in enumerate(body.messages):
            if not mo.from_ or not mo.to:
                return _error(400, f"messages[{i}]: from and to are required")
        results: list[Any] = []
        injected = 0
        for mo in body.messages:
            try:
                results.append(smsc.inject_mo(mo.from_, mo.to, mo.text, encoding=mo.encoding))
                injected += 1
            except LookupError as exc:
                results.append({"error": str(exc), "status": 404})
            except ValueError as exc:
                results.append({"error": str(exc), "status": 400})
        return _json({"injected": injected, "results": results}, 202)

    async def get_messages(request: Request) -> Response:
        q = request.query_params
        try:
            since = _since(q.get("since"))
            limit = _limit(q.get("limit"))
        except ValueError as exc:
            return _error(400, str(exc))
        direction = q.get("direction")
        if direction not in (None, "mt", "mo"):
            return _error(400, "direction is mt or mo")
        found = smsc.store.query(destination=q.get("destination"), source=q.get("source"),
                                 account=q.get("account"), direction=direction, since=since, limit=limit)
        now = monotonic()
        return _json({"messages": [describe(item, now) for item in found]})

    async def get_message(request: Request) -> Response:
        record = smsc.store.get(request.path_params["message_id"])
        if record is None:
            return _error(404, "no such message (or no longer held)")
        return _json(describe(record.group or record, monotonic()))

    async def stats(request: Request) -> Response:
        return _json(smsc.statistics())

    async def get_metrics(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def binds(request: Request) -> Response:
        return _json({"binds": [
            {"peer": link.peer, "account": link.account.system_id if link.account else None,
             "bind_type": link.bind_type, "state": link.session.state.value,
             "outstanding": link.session.outstanding, "pdus_received": link.pdus_received}
            for link in smsc.links
        ]})

    async def get_faults(request: Request) -> Response:
        return _json({"default": smsc.default_faults.settings,
                      "accounts": {name: (a.own_faults.settings if a.own_faults else None)
                                   for name, a in smsc.accounts.items()}})

    async def put_faults(request: Request) -> Response:
        account = request.path_params.get("account")
        if account is not None and account not in smsc.accounts:
            return _error(404, f"no account {account}")
        try:
            faults: Faults = await _body(request, Faults, "faults")
            check_faults(faults)
        except ConfigError as exc:
            return _error(400, str(exc))
        smsc.set_faults(faults, account)
        return _json(faults)

    async def delete_faults(request: Request) -> Response:
        account = request.path_params["account"]
        if account not in smsc.accounts:
            return _error(404, f"no account {account}")
        smsc.clear_faults(account)
        return _json({"account": account, "faults": None})

    async def get_balances(request: Request) -> Response:
        return _json({"currency": smsc.config.billing.currency, "default_balance": smsc.ledger.default_balance,
                      "balances": smsc.ledger.known_balances()})

    async def get_balance(request: Request) -> Response:
        msisdn = request.path_params["msisdn"]
        return _json({"msisdn": msisdn, "balance": smsc.ledger.balance(msisdn),
                      "barred": smsc.ledger.is_barred(msisdn)})

    async def put_balance(request: Request) -> Response:
        msisdn = request.path_params["msisdn"]
        if not msisdn.isdigit():
            return _error(400, "an MSISDN is digits only")
        try:
            body: BalanceRequest = await _body(request, BalanceRequest)
        except ConfigError as exc:
            return _error(400, str(exc))
        smsc.ledger.set_balance(msisdn, body.balance)
        return _json({"msisdn": msisdn, "balance": body.balance})

    async def get_charges(request: Request) -> Response:
        q = request.query_params
        try:
            limit = _limit(q.get("limit"), 1000)
        except ValueError as exc:
            return _error(400, str(exc))
        charges = smsc.ledger.charges(msisdn=q.get("msisdn"), account=q.get("account"), limit=limit)
        return _json({"charges": charges})

    async def get_barred(request: Request) -> Response:
        return _json({"barred": smsc.ledger.barred()})

    async def put_barred(request: Request) -> Response:
        msisdn = request.path_params["msisdn"]
        if not msisdn.isdigit():
            return _error(400, "an MSISDN (or prefix) is digits only")
        smsc.ledger.bar(msisdn)
        return _json({"msisdn": msisdn, "barred": True})

    async def delete_barred(request: Request) -> Response:
        msisdn = request.path_params["msisdn"]
        if not smsc.ledger.unbar(msisdn):
            return _error(404, f"{msisdn} is not barred by itself (a shorter barred prefix may cover it)")
        return _json({"msisdn": msisdn, "barred": smsc.ledger.is_barred(msisdn)})

    async def get_handsets(request: Request) -> Response:
        return _json({"handsets": list(smsc.handsets.rules)})

    async def put_handsets(request: Request) -> Response:
        try:
            rules: list[HandsetRule] = await _body(request, list[HandsetRule], "handsets")
            check_handsets(rules)
        except ConfigError as exc:
            return _error(400, str(exc))
        smsc.set_handsets(Handsets(rules))
        return _json({"handsets": rules})

    routes = [
        Route("/health", health),
        Route("/mo", post_mo, methods=["POST"]),
        Route("/mo/batch", post_mo_batch, methods=["POST"]),
        Route("/messages", get_messages),
        Route("/messages/{message_id}", get_message),
        Route("/stats", stats),
        Route("/metrics", get_metrics),
        Route("/binds", binds),
        Route("/faults", get_faults),
        Route("/faults", put_faults, methods=["PUT"]),
        Route("/faults/{account}", put_faults, methods=["PUT"]),
        Route("/faults/{account}", delete_faults, methods=["DELETE"]),
        Route("/billing/balances", get_balances),
        Route("/billing/balances/{msisdn}", get_balance),
        Route("/billing/balances/{msisdn}", put_balance, methods=["PUT"]),
        Route("/billing/charges", get_charges),
        Route("/billing/barred", get_barred),
        Route("/billing/barred/{msisdn}", put_barred, methods=["PUT"]),
        Route("/billing/barred/{msisdn}", delete_barred, methods=["DELETE"]),
        Route("/handsets", get_handsets),
        Route("/handsets", put_handsets, methods=["PUT"]),
    ]
    return Starlette(routes=routes)
