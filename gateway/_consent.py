"""Consent: the append-only register of opt-ins and opt-outs, and the opt-out check every MT passes.

Rule 1: a consent record is never changed or removed. Each opt-in or opt-out is a new `consent` record (time,
method, MSISDN, scope, the version of the consent text the user saw, the ids of the messages that prove it),
written in the same commit as the change that caused it.
Rule 2: the state of (MSISDN, scope) is its latest record, by time then id. Memory holds only the opted-out
pairs (MSISDN -> scopes), read from the store once at start and updated as each record is made, before its
commit: an opt-out is honoured from the moment the gateway knows it.
Rule 3: an opt-in to a service also opts in to that service's shortcode when the number had opted out of the
shortcode: the user asked for the service's messages, and they come from that shortcode. It is a second record
with the same proof.
Rule 4: an MT is refused when its MSISDN opted out of the MT's source (a shortcode) or of its service, unless its
category is one of `billing.consent.exempt_categories`. An MT from the HTTP API names no service: it belongs to
the services its account runs on its source shortcode (`service_account`), so an opt-out from any of them refuses
it (opt-outs are honoured rather than guessed around). The gateway's own MTs are checked by the flow that makes
them, before it makes them (the confirmation of a STOP is the one MT sent after it).
Rule 5: who sees what (docs/consent.md): an admin key (`http.admin_keys`) sees every record; an account key sees
the records of the scopes it owns: a service whose replies it sends (`service_account`), a shortcode that is
its own (`billing.shortcodes[].account`, or one of its services is there, or it is among its `allowed_sources`).
Rule 6: on a cluster every node refuses MTs to opted-out numbers: each consent record goes to the `consent` stream
in its commit (_cluster, Rule 5), and every node follows that stream (`follow`) and applies the records other nodes
made, within milliseconds of their commit.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from routing import InvalidMsisdn, mask_msisdn

from ._accept import ApiError, add_routes
from ._config import AccountConfig, Config, ServiceConfig, hash_api_key
from ._model import iso_time
from ._store import Doc, StoreClosed, Writes

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "CONSENT_KIND",
    "ConsentList",
    "ConsentMethod",
    "ConsentRecord",
    "ConsentRegister",
    "ConsentView",
    "install",
    "service_account",
]

log = logging.getLogger(__name__)

CONSENT_KIND = "consent"
"""The store record kind of consent records (`Doc.state` is "in" or "out", `Doc.scope` the scope)."""

EXPORT_PAGE = 1000
FOLLOW_KEEP_S = 86400.0  # the consent stream keeps a day of records: a node further behind reads them all again
"""Records read from the store per step of an export."""


class ConsentMethod(StrEnum):
    """How a user gave or withdrew consent."""

    KEYWORD = "keyword"
    """By an MO: a keyword, STOP, START, or YES to a handshake."""
    WEB_PIN = "web_pin"
    """By typing a PIN received by SMS on a web page."""
    API = "api"
    """Told by an application through the HTTP API, with its own proof."""


class ConsentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One opt-in or opt-out (the body of a `consent` record; Rule 1).

    Attributes:
        id: unique; orders records made at the same time.
        at: when it was made (seconds since the epoch).
        msisdn: the subscriber.
        scope: a service name or a shortcode.
        scope_kind: "service" or "shortcode".
        shortcode: the shortcode of the scope (the scope itself for a shortcode).
        opted_in: True for an opt-in, False for an opt-out.
        method: a ConsentMethod value.
        text_version: the version of the consent text the user saw (`consent_text_version`), when known.
        message_ids: the messages that prove it: for a keyword, the MO's id and the confirmation MT's id.
    """

    id: str
    at: float
    msisdn: str
    scope: str
    scope_kind: str
    shortcode: str | None = None
    opted_in: bool
    method: str
    text_version: str | None = None
    message_ids: list[str] = []


class ConsentView(msgspec.Struct, frozen=True, kw_only=True):
    """A consent record as the HTTP API shows it (docs/consent.md)."""

    id: str
    at: str
    msisdn: str
    action: str  # "opt_in" or "opt_out"
    scope: str
    scope_kind: str
    shortcode: str | None
    method: str
    text_version: str | None
    message_ids: list[str]


class ConsentList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/consents/{msisdn}`: the records of one number that the caller may see, oldest first."""

    msisdn: str
    opted_out: list[str]  # scopes the number is opted out of now
    records: list[ConsentView]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ConsentRecord)
_JSON = msgspec.json.Encoder()
_METHODS = frozenset(m.value for m in ConsentMethod)
_CSV_COLUMNS = ("id", "at", "msisdn", "action", "scope", "scope_kind", "shortcode", "method", "text_version",
                "message_ids")


def view(record: ConsentRecord) -> ConsentView:
    return ConsentView(id=record.id, at=iso_time(record.at), msisdn=record.msisdn,
                       action="opt_in" if record.opted_in else "opt_out", scope=record.scope,
                       scope_kind=record.scope_kind, shortcode=record.shortcode, method=record.method,
                       text_version=record.text_version, message_ids=list(record.message_ids))


def decode_consent(doc: Doc) -> ConsentRecord:
    return _DECODER.decode(doc.body)


def service_account(config: Config, service: ServiceConfig | None, shortcode: str) -> str | None:
    """The account the gateway's MTs for `service` (or for `shortcode` without a service) are sent on:
    `service.account`, else the shortcode's `account`, else `billing.mo_account`; None when none is set."""
    if service is not None and service.account is not None:
        return service.account
    for sc in config.billing.shortcodes:
        if sc.shortcode == shortcode and sc.account is not None:
            return sc.account
    return config.billing.mo_account


@dataclass(frozen=True, slots=True)
class ScopeTable:
    """What the config says about scopes, built once per config (a reload builds a new one).

    Attributes:
        shortcode_of: service name -> its shortcode.
        shortcodes: every shortcode the config names.
        mt_scopes: (account, source) -> the scopes an API MT from that account and source belongs to (Rule 4).
        owners: scope -> the accounts that may see its records (Rule 5).
    """

    shortcode_of: dict[str, str]
    shortcodes: frozenset[str]
    mt_scopes: dict[tuple[str, str], tuple[str, ...]]
    owners: dict[str, frozenset[str]]

    @classmethod
    def build(cls, config: Config) -> ScopeTable:
        b = config.billing
        shortcode_of = {svc.name: svc.shortcode for svc in b.services}
        shortcodes = {svc.shortcode for svc in b.services} | {sc.shortcode for sc in b.shortcodes}
        owners: dict[str, set[str]] = {code: set() for code in shortcodes}
        services_of: dict[tuple[str, str], list[str]] = {}
        for svc in b.services:
            account = service_account(config, svc, svc.shortcode)
            owners[svc.name] = set() if account is None else {account}
            if account is not None:
                owners[svc.shortcode].add(account)
                services_of.setdefault((account, svc.shortcode), []).append(svc.name)
        for sc in b.shortcodes:
            account = sc.account or b.mo_account
            if account is not None:
                owners[sc.shortcode].add(account)
        for acc in config.accounts:
            for source in acc.allowed_sources:
                if source in owners and source not in shortcode_of:
                    owners[source].add(acc.id)
        mt_scopes = {key: (key[1], *names) for key, names in services_of.items()}
        return cls(shortcode_of, frozenset(shortcodes), mt_scopes,
                   {scope: frozenset(accounts) for scope, accounts in owners.items()})

    def kind_of(self, scope: str) -> str:
        return "service" if scope in self.shortcode_of else "shortcode"

    def visible(self, scope: str, account: str | None) -> bool:
        """Whether `account` may see records of `scope` (None: an admin, who sees all)."""
        return account is None or account in self.owners.get(scope, frozenset())


class _DocStore(Protocol):
    def doc(self, kind: str, doc_id: str) -> Doc | None: ...

    def docs(self, kind: str, *, msisdn: str | None = None, scope: str | None = None, state: str | None = None,
             since: float | None = None, limit: int | None = None) -> list[Doc]: ...


class ConsentRegister:
    """The consent records of every number and the opt-out check (the module's rules).

    Args:
        gw: the gateway (its store, its config through `gw.core.config`).
        wall: the wall clock, for records made by the HTTP API.
    """

    def __init__(self, gw: Gateway, *, wall: Callable[[], float] = time.time) -> None:
        self.gw = gw
        self.wall = wall
        self._out: dict[str, set[str]] = {}
        self._loaded = False
        self._seq = 0
        self._table_of: Config | None = None
        self._table: ScopeTable | None = None
        self.recorded_total = 0
        self.refused_total = 0
        self.followed_total = 0

    # ---- state (Rule 2) --------------------------------------------------------------------------------

    @property
    def store(self) -> _DocStore:
        return cast(_DocStore, self.gw.store)

    def load(self) -> int:
        """Read every consent record's state from the store (once; later calls do nothing). Returns the
        number of opted-out (MSISDN, scope) pairs."""
        if self._loaded:
            return self.opted_out_pairs
        self._out = {}
        for doc in self.store.docs(CONSENT_KIND):  # oldest first: the last record of a pair wins
            self._set(doc.msisdn, doc.scope, doc.state != "out")
        self._loaded = True
        pairs = self.opted_out_pairs
        log.info("consent: %d opt-outs in force for %d numbers", pairs, len(self._out))
        return pairs

    def _set(self, msisdn: str, scope: str, opted_in: bool) -> None:
        out = self._out
        if opted_in:
            scopes = out.get(msisdn)
            if scopes is not None:
                scopes.discard(scope)
                if not scopes:
                    del out[msisdn]
        else:
            out.setdefault(msisdn, set()).add(scope)

    async def follow(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """On a cluster: apply the consent records other nodes make, as they commit (Rule 6).

        Starts from the stream's newest entry, reads every record, then follows the stream from that entry:
        replaying records already read leaves the same state, since the last record of a pair wins.
        """
        from ._cluster import CONSENT_STREAM

        inner = self.gw.store.inner  # type: ignore[attr-defined]
        node = self.gw.config.node
        after: str | None = None
        trimmed_at = 0.0
        started = False
        while True:
            try:
                if after is None:
                    after = await inner.last_entry_id(CONSENT_STREAM)
                    self._loaded = False
                    self.load()
                    if not started:
                        started = True
                        task_status.started()
                entries = await inner.follow(CONSENT_STREAM, after, 500, 1000)
                # This node applied its own records as it made them; the others' are read in one round trip.
                theirs = [(writer, record_id) for writer, _, record_id in (v.partition(" ") for _, v in entries)
                          if writer != node]
                docs = await inner.adoc_many(CONSENT_KIND, [record_id for _, record_id in theirs])
                for (writer, _), doc in zip(theirs, docs, strict=True):
                    if doc is not None:
                        self._set(doc.msisdn, doc.scope, doc.state != "out")
                        self.followed_total += 1
                        log.info("consent: %s %s %s (recorded by %s)", mask_msisdn(doc.msisdn),
                                 "opted out of" if doc.state == "out" else "opted in to", doc.scope, writer)
                if entries:
                    after = entries[-1][0]
                if time.time() - trimmed_at > 3600:
                    trimmed_at = time.time()
                    await inner.trim_older(CONSENT_STREAM, FOLLOW_KEEP_S)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                log.warning("consent: following the other nodes' records failed (%s); reading them all again", exc)
                after = None
                await anyio.sleep(1.0)

    @property
    def opted_out_pairs(self) -> int:
        return sum(len(s) for s in self._out.values())

    def table(self) -> ScopeTable:
        """The scope table of the running config (rebuilt after a reload)."""
        config = self.gw.core.config
        if config is not self._table_of or self._table is None:
            self._table = ScopeTable.build(config)
            self._table_of = config
        return self._table

    def opted_out(self, msisdn: str, scopes: Iterable[str]) -> bool:
        """Whether `msisdn` is opted out of any of `scopes` (service names and shortcodes) now."""
        if not self._loaded:
            self.load()
        out = self._out.get(msisdn)
        if not out:
            return False
        return any(scope in out for scope in scopes)

    def scopes_out(self, msisdn: str) -> set[str]:
        """The scopes `msisdn` is opted out of now (a copy)."""
        if not self._loaded:
            self.load()
        return set(self._out.get(msisdn, ()))

    def record(self, *, msisdn: str, scope: str, opted_in: bool, method: str, text_version: str | None,
               message_ids: list[str], now: float, writes: Writes, record_id: str | None = None
               ) -> ConsentRecord:
        """Add an opt-in or opt-out to `writes` and apply it to the in-memory state now (Rules 1 to 3).

        Args:
            msisdn: the subscriber (international digits).
            scope: a service name or a shortcode.
            opted_in: True to opt in, False to opt out.
            method: "keyword", "web_pin" or "api".
            text_version: the consent text's version the user saw, when there was one.
            message_ids: the ids of the messages that prove it (the MO, the confirmation MT).
            now: the record's time.
            writes: what the caller commits with the change that caused it.
            record_id: the record's id, for a caller that must make the same record again when its work is
                redone after a crash (an MO's id and the scope); by default a new one.

        Returns:
            The record (Rule 3 may have added a second one for the shortcode to `writes`).

        Raises:
            ValueError: `method` is not one of ConsentMethod.
        """
        if method not in _METHODS:
            raise ValueError(f"unknown consent method {method!r}: expected keyword, web_pin or api")
        if not self._loaded:
            self.load()
        table = self.table()
        shortcode = table.shortcode_of.get(scope, scope)
        record = self._append(msisdn, scope, table.kind_of(scope), shortcode, opted_in, method, text_version,
                              message_ids, now, writes, record_id)
        if opted_in and shortcode != scope and shortcode in self._out.get(msisdn, ()):  # Rule 3
            self._append(msisdn, shortcode, "shortcode", shortcode, True, method, text_version, message_ids, now,
                         writes, None if record_id is None else f"{record_id}+{shortcode}")
        return record

    def _append(self, msisdn: str, scope: str, kind: str, shortcode: str, opted_in: bool, method: str,
                text_version: str | None, message_ids: list[str], now: float, writes: Writes,
                record_id: str | None) -> ConsentRecord:
        if record_id is None:
            self._seq += 1
            record_id = f"c{int(now * 1_000_000):014x}{self._seq:08x}{self.gw.core.config.node}"
        record = ConsentRecord(id=record_id, at=now, msisdn=msisdn, scope=scope, scope_kind=kind,
                               shortcode=shortcode, opted_in=opted_in, method=method, text_version=text_version,
                               message_ids=list(message_ids))
        writes.docs.append(Doc(CONSENT_KIND, record_id, msisdn, scope, "in" if opted_in else "out", None, now,
                               _ENCODER.encode(record)))
        self._set(msisdn, scope, opted_in)
        self.recorded_total += 1
        log.info("consent: %s %s %s by %s", mask_msisdn(msisdn), "opted in to" if opted_in else "opted out of",
                 scope, method)
        return record

    # ---- the MT check (Rule 4) -------------------------------------------------------------------------

    def mt_scopes(self, account: str, source: str) -> tuple[str, ...]:
        """The scopes an MT from `account` with source `source` belongs to (Rule 4)."""
        return self.table().mt_scopes.get((account, source)) or (source,)

    def check_mt(self, account: str, msisdn: str, source: str, category: str | None) -> None:
        """The accept check of the HTTP API (`extensions["accept_checks"]`).

        Raises:
            ApiError: 422 `opted_out` (field `to`); 503 when the opt-outs cannot be read from the store.
        """
        if not self._loaded:
            try:
                self.load()
            except StoreClosed as exc:
                raise ApiError(503, "store_unavailable", f"the store is unavailable: {exc}") from None
        out = self._out.get(msisdn)
        if not out:
            return
        if category is not None and category in self.gw.core.config.billing.consent.exempt_categories:
            return
        for scope in self.mt_scopes(account, source):
            if scope in out:
                self.refused_total += 1
                raise ApiError(422, "opted_out", f"to: the recipient opted out of messages from {scope}",
                               field="to")

    # ---- reading ---------------------------------------------------------------------------------------

    def records(self, msisdn: str) -> list[ConsentRecord]:
        """Every record of `msisdn`, oldest first."""
        return [decode_consent(d) for d in self.store.docs(CONSENT_KIND, msisdn=msisdn)]

    def iter_all(self, *, since: float | None = None, page: int = EXPORT_PAGE) -> Iterable[list[ConsentRecord]]:
        """Every record (made at or after `since`), oldest first, in pages of about `page`."""
        at = since if since is not None else float("-inf")
        seen_at: set[str] = set()  # ids already given whose time is `at` (the next page starts at `at` again)
        limit = page
        while True:
            docs = self.store.docs(CONSENT_KIND, since=None if at == float("-inf") else at, limit=limit)
            fresh = [d for d in docs if not (d.at == at and d.id in seen_at)]
            if not fresh:
                if len(docs) < limit:
                    return
                limit *= 2  # a page full of records made at one instant: read a bigger one
                continue
            yield [decode_consent(d) for d in fresh]
            if len(docs) < limit:
                return
            last = fresh[-1].at
            if last != at:
                seen_at = set()
                at = last
            seen_at.update(d.id for d in fresh if d.at == at)
            limit = page

    def statistics(self) -> dict[str, int]:
        return {"recorded": self.recorded_total, "refused_mt": self.refused_total,
                "opted_out_pairs": self.opted_out_pairs if self._loaded else 0}


# ---- HTTP ----------------------------------------------------------------------------------------------------


class _Routes:
    """`GET /v1/consents/export` and `GET /v1/consents/{msisdn}` (Rule 5 says who sees what)."""

    def __init__(self, register: ConsentRegister, api: Any) -> None:
        self.register = register
        self.api = api

    def caller(self, request: Request) -> AccountConfig | None:
        """The caller's account, or None for an admin key.

        Raises:
            ApiError: 401 when the key is neither.
        """
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        config = self.register.gw.core.config
        if scheme.lower() == "bearer" and key and config.http.admin_keys:
            if hash_api_key(key) in {k.sha256 for k in config.http.admin_keys}:
                return None
        account: AccountConfig = self.api.account(request)
        return account

    async def one(self, request: Request) -> Response:
        account = self.caller(request)
        config = self.register.gw.core.config
        raw = request.path_params["msisdn"]
        country = (account.country if account is not None else None) or config.numbering.default_country
        try:
            msisdn = self.register.gw.core.numbering.normalise(raw, country=country)
        except InvalidMsisdn as exc:
            raise ApiError(422, "invalid_field", f"msisdn: {exc}", field="msisdn", reason=exc.reason.value) from None
        store_ok = self.register.gw.store.is_open
        if not store_ok:
            raise ApiError(503, "store_unavailable", "the store is unavailable")
        table = self.register.table()
        who = None if account is None else account.id
        records = [view(r) for r in self.register.records(msisdn) if table.visible(r.scope, who)]
        out = sorted(s for s in self.register.scopes_out(msisdn) if table.visible(s, who))
        return Response(_JSON.encode(ConsentList(msisdn=msisdn, opted_out=out, records=records)),
                        media_type="application/json")

    async def export(self, request: Request) -> Response:
        account = self.caller(request)
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in ("csv", "jsonl"):
            raise ApiError(422, "invalid_field", "format: expected csv or jsonl", field="format")
        since = _since(request.query_params.get("since"))
        if not self.register.gw.store.is_open:
            raise ApiError(503, "store_unavailable", "the store is unavailable")
        who = None if account is None else account.id
        register = self.register

        async def lines() -> AsyncIterator[bytes]:
            if fmt == "csv":
                yield (",".join(_CSV_COLUMNS) + "\r\n").encode()
            for page in register.iter_all(since=since):
                table = register.table()
                views = [view(r) for r in page if table.visible(r.scope, who)]
                if views:
                    yield _csv(views) if fmt == "csv" else b"".join(_JSON.encode(v) + b"\n" for v in views)
                await anyio.lowlevel.checkpoint()  # a long export lets the loop serve others between pages

        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        disposition = f'attachment; filename="consents.{fmt}"'
        return StreamingResponse(lines(), media_type=media, headers={"Content-Disposition": disposition})


def _since(value: str | None) -> float | None:
    """`since` as seconds since the epoch: a number, or ISO 8601 (naive is UTC).

    Raises:
        ApiError: 422 when it is neither.
    """
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number != number or number in (float("inf"), float("-inf")):
            raise ApiError(422, "invalid_field", "since: expected seconds since the epoch or ISO 8601",
                           field="since")
        return number
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_field", "since: expected seconds since the epoch or ISO 8601",
                       field="since") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _csv(views: list[ConsentView]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for v in views:
        writer.writerow((v.id, v.at, v.msisdn, v.action, v.scope, v.scope_kind, v.shortcode or "", v.method,
                         v.text_version or "", " ".join(v.message_ids)))
    return buf.getvalue().encode()


def openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and schemas of the consent routes."""
    _, schemas = msgspec.json.schema_components((ConsentList, ConsentView),
                                                ref_template="#/components/schemas/{name}")

    def errors(*statuses: int) -> dict[str, Any]:
        text = {401: "No or an unknown API key", 422: "A parameter is invalid (the error names it)",
                503: "The store is unavailable"}
        return {str(s): {"description": text[s], "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}} for s in statuses}

    since = {"name": "since", "in": "query", "required": False,
             "description": "Only records made at or after this time: seconds since the epoch or ISO 8601 "
                            "(naive is UTC)", "schema": {"type": "string"}}
    paths = {
        "/v1/consents/export": {"get": {
            "operationId": "exportConsents",
            "summary": "Every consent record the caller may see, oldest first, streamed as CSV or JSON lines",
            "parameters": [{"name": "format", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["csv", "jsonl"], "default": "jsonl"}}, since],
            "responses": {"200": {"description": "The records (CSV with a header row, or one ConsentView per line)",
                                  "content": {"text/csv": {"schema": {"type": "string"}},
                                              "application/x-ndjson": {"schema": {"type": "string"}}}},
                          **errors(401, 422, 503)},
        }},
        "/v1/consents/{msisdn}": {"get": {
            "operationId": "getConsents",
            "summary": "The consent records of one number, and the scopes it is opted out of now",
            "parameters": [{"name": "msisdn", "in": "path", "required": True,
                            "description": "The number, as the account would write a destination",
                            "schema": {"type": "string", "pattern": "^\\+?[0-9][0-9 ().-]{0,39}$"}}],
            "responses": {"200": {"description": "The records the caller may see",
                                  "content": {"application/json": {
                                      "schema": {"$ref": "#/components/schemas/ConsentList"}}}},
                          **errors(401, 422, 503)},
        }},
    }
    return paths, schemas


def install(gw: Gateway) -> ConsentRegister:
    """Create the register (once) and hang it on the gateway: `extensions["consent"]`, the accept check, the
    HTTP routes and their OpenAPI description. Returns the register."""
    existing = gw.extensions.get("consent")
    if isinstance(existing, ConsentRegister):
        return existing
    register = ConsentRegister(gw)
    ext = gw.extensions
    ext["consent"] = register
    ext.setdefault("accept_checks", []).append(register.check_mt)

    def make_routes(api: Any) -> list[Route]:
        routes = _Routes(register, api)
        return [Route("/v1/consents/export", routes.export, methods=["GET"]),
                Route("/v1/consents/{msisdn}", routes.one, methods=["GET"])]

    add_routes(ext, make_routes, openapi())
    return register
