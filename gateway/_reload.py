"""Config reload (SIGHUP, `POST /admin/reload`): a new config is taken whole, or refused whole.

Rule 1: the new file is parsed and validated first; a file that fails is refused as a whole, logged as
`path: problem`, `smppgw_config_last_reload_successful` drops to 0, and the running config stays untouched.
Rule 2: a valid config is swapped in atomically (one step on the event loop): routes, numbering, accounts (API keys,
rate limits, callbacks), message settings and logging change in place, and so do an SMSC's window, throughput and
submit settings, without touching its binds. An SMSC whose connection settings (`CONNECTION_FIELDS`) changed is
drained and bound again; an added one starts binding; a removed one takes no new parts, lets its window finish,
unbinds and hands its backlog back to the core, which routes it again by the new routes.
Rule 3: what is read only at start (`http.listen`, the `store` section) keeps its running value; a change to it is
logged as waiting for the next restart.
Rule 4: reloads run one at a time; none starts once the gateway drains. Every reload is framed by RELOADING=1 and
READY=1 to systemd, whether it was taken or refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._accept import ApiError, add_routes
from ._config import Config, ConfigError, SmscConfig, hash_api_key, load_config
from ._logging import setup_logging
from ._systemd import gateway_status

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "CONNECTION_FIELDS",
    "RESTART_ONLY",
    "ReloadOutcome",
    "ReloadPlan",
    "Reloader",
    "needs_rebind",
    "plan_reload",
]

log = logging.getLogger(__name__)

CONNECTION_FIELDS = ("host", "port", "system_id", "password", "system_type", "bind", "sessions")
"""An SMSC whose value for any of these changed is unbound and bound again (Rule 2)."""

RESTART_ONLY = ("http.listen", "store")
"""Config paths read only when the gateway starts (Rule 3)."""

ADMIN_RELOAD_PATH = "/admin/reload"


def needs_rebind(old: SmscConfig, new: SmscConfig) -> bool:
    """True when `new` changes how the SMSC is connected or bound (`CONNECTION_FIELDS`)."""
    return any(getattr(old, f) != getattr(new, f) for f in CONNECTION_FIELDS)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload changes.

    Attributes:
        sections: top-level config sections whose value changed (`routes`, `accounts`, ...).
        added: SMSCs that start binding.
        removed: SMSCs that drain and unbind.
        rebound: SMSCs whose connection settings changed: drained, unbound and bound again.
        updated: SMSCs whose other settings changed (window, throughput, ...): applied to the live binds.
        restart_required: restart-only paths whose new value waits for the next restart (Rule 3).
    """

    sections: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rebound: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the log: what changed."""
        parts = [f"sections changed: {', '.join(self.sections) or 'none'}"]
        for label, names in (("SMSCs added", self.added), ("removed", self.removed), ("rebound", self.rebound),
                             ("updated in place", self.updated)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        if self.restart_required:
            parts.append(f"waiting for a restart: {', '.join(self.restart_required)}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"sections": list(self.sections),
                "smscs": {"added": list(self.added), "removed": list(self.removed), "rebound": list(self.rebound),
                          "updated": list(self.updated)},
                "restart_required": list(self.restart_required)}


_SECTIONS = tuple(f for f in msgspec.structs.fields(Config) if f.name != "base_dir")


def plan_reload(old: Config, new: Config) -> tuple[Config, ReloadPlan]:
    """The config to run after a reload from `old` to `new`, and what changes (Rules 2 and 3).

    The returned config is `new` with the restart-only values of `old`.
    """
    restart: list[str] = []
    effective = new
    if new.http.listen != old.http.listen:
        restart.append("http.listen")
        effective = msgspec.structs.replace(effective, http=msgspec.structs.replace(new.http, listen=old.http.listen))
    if new.store != old.store:
        restart.append("store")
        effective = msgspec.structs.replace(effective, store=old.store)
    sections = tuple(f.name for f in _SECTIONS if getattr(effective, f.name) != getattr(old, f.name))
    before = {s.name: s for s in old.smscs}
    after = {s.name: s for s in effective.smscs}
    plan = ReloadPlan(
        sections=sections,
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        rebound=tuple(n for n in after if n in before and needs_rebind(before[n], after[n])),
        updated=tuple(n for n in after if n in before and after[n] != before[n] and not needs_rebind(before[n], after[n])),
        restart_required=tuple(restart),
    )
    return effective, plan


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """The result of one reload.

    Attributes:
        ok: the new config runs.
        code: why not: `config_invalid`, `no_config_file` or `draining` (empty when ok).
        error: the `path: problem` message (empty when ok).
        field: the config path the error names, when it names one.
        plan: what changed (None when refused).
    """

    ok: bool
    code: str = ""
    error: str = ""
    field: str = ""
    plan: ReloadPlan | None = None


class Reloader:
    """Reloads the gateway's config from its file (Rules 1 to 4).

    Creating it sets `gw.extensions["reloader"]` and adds `http_routes` (`POST /admin/reload`) to
    `gw.extensions["http_routes"]`, whose route makers the HTTP app calls.

    Args:
        gw: the gateway.
        path: the config file (None: only `reload(config)` works).
        load: reads and validates a file (`load_config`; tests hand in another).

    Attributes:
        override: applied to every config loaded from the file (the command line's `--http`).
        last_error: the `path: problem` of the last reload if it was refused, else None.
    """

    def __init__(self, gw: Gateway, *, path: str | Path | None = None,
                 load: Callable[[Path], Config] = load_config) -> None:
        self.gw = gw
        self.path = None if path is None else Path(path)
        self.load = load
        self.override: Callable[[Config], Config] | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.refusals = 0
        self._lock = anyio.Lock()
        self._requested = anyio.Event()
        gw.extensions["reloader"] = self
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        add_routes(gw.extensions, self.http_routes, ({ADMIN_RELOAD_PATH: {"post": {
            "operationId": "adminReload", "summary": "Reload the configuration file (as SIGHUP does)",
            "description": "Needs an admin key (http.admin_keys). An invalid file is refused as a whole and the "
                           "running configuration stays (docs/deploy.md).",
            "responses": {
                "200": {"description": "Reloaded; what changed.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["reloaded", "config", "changes"],
                    "properties": {"reloaded": {"type": "boolean"}, "config": {"type": ["string", "null"]},
                                   "changes": {"type": "object"}}}}}},
                "401": {"description": "No admin key.", **error},
                "409": {"description": "The gateway was started without a config file.", **error},
                "422": {"description": "The new file is invalid; the error names the path.", **error},
                "503": {"description": "The gateway is draining.", **error},
            },
        }}}, {}))

    # ---- triggers --------------------------------------------------------------------------------------

    def request(self) -> None:
        """Ask for a reload from the file (SIGHUP); requests that arrive while one runs make one more."""
        self._requested.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve `request()` until cancelled."""
        task_status.started()
        while True:
            await self._requested.wait()
            self._requested = anyio.Event()
            try:
                await self.reload()
            except Exception:
                # An operator's request that fails in an unforeseen way leaves the running config, as an invalid
                # file does; the gateway keeps serving.
                log.exception("config reload failed; the running config is kept")
                self._refused("internal error (see the log)")

    # ---- the reload ------------------------------------------------------------------------------------

    async def reload(self, config: Config | None = None) -> ReloadOutcome:
        """Reload from the file, or take `config` (already validated) instead; returns what happened."""
        async with self._lock:
            gw = self.gw
            if gw.draining:
                log.warning("config reload ignored: the gateway is draining")
                return ReloadOutcome(False, "draining", "the gateway is draining")
            gw.notifier.reloading()
            try:
                return await self._reload(config)
            finally:
                gw.notifier.ready(gateway_status(gw))

    async def _reload(self, config: Config | None) -> ReloadOutcome:
        gw = self.gw
        if config is None:
            if self.path is None:
                message = "the gateway was started without a config file"
                self._refused(message)
                return ReloadOutcome(False, "no_config_file", message)
            log.info("config reload from %s", self.path)
            try:
                config = await anyio.to_thread.run_sync(self.load, self.path)
            except ConfigError as exc:
                log.error("config reload refused, the running config is kept: %s", exc)
                self._refused(str(exc))
                return ReloadOutcome(False, "config_invalid", str(exc), exc.path)
            if self.override is not None:
                config = self.override(config)
        old = gw.config
        effective, plan = plan_reload(old, config)
        gw.apply_config(effective)
        if effective.logging != old.logging:
            setup_logging(effective.logging)
        self.reloads += 1
        self.last_error = None
        gw.metrics.set_config_reload(True)
        log.info("config reloaded: %s", plan.describe())
        for path in plan.restart_required:
            log.warning("config reload: %s changed; the running value is kept until the next restart", path)
        return ReloadOutcome(True, plan=plan)

    def _refused(self, message: str) -> None:
        self.refusals += 1
        self.last_error = message
        self.gw.metrics.set_config_reload(False)

    # ---- POST /admin/reload ----------------------------------------------------------------------------

    def http_routes(self, api: object) -> list[Route]:
        """The routes this adds to the HTTP app (`gw.extensions["http_routes"]`)."""
        return [Route(ADMIN_RELOAD_PATH, self.admin_reload, methods=["POST"])]

    def authorise(self, request: Request) -> None:
        """Accept a request carrying one of `http.admin_keys` as `Authorization: Bearer <key>`.

        Raises:
            ApiError: 401 unauthorized.
        """
        challenge = {"WWW-Authenticate": 'Bearer realm="smppgw-admin"'}
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, "unauthorized", "send an admin key (http.admin_keys) as `Authorization: Bearer <key>`",
                           headers=challenge)
        # Only hashes are held; looking one up leaks nothing usable about a key through timing.
        if hash_api_key(key) not in {k.sha256 for k in self.gw.config.http.admin_keys}:
            raise ApiError(401, "unauthorized", "not an admin key (http.admin_keys)", headers=challenge)

    async def admin_reload(self, request: Request) -> Response:
        """`POST /admin/reload`: 200 with what changed; 422 naming the path of an invalid file; 503 draining."""
        self.authorise(request)
        outcome = await self.reload()
        if not outcome.ok:
            status = {"draining": 503, "no_config_file": 409}.get(outcome.code, 422)
            raise ApiError(status, outcome.code, outcome.error, field=outcome.field or None)
        assert outcome.plan is not None
        body = {"reloaded": True, "config": None if self.path is None else str(self.path),
                "changes": outcome.plan.to_json()}
        return Response(msgspec.json.encode(body), media_type="application/json")
