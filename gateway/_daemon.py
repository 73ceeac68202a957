"""The daemon: start the services in dependency order, serve, drain and stop in reverse.

Rule 1: start order is store -> core (restore) -> connectors -> callbacks -> HTTP; READY only after the
store is open and the HTTP listener is up. Stop order is the reverse: HTTP stops accepting (503), connectors
drain their windows and unbind, callbacks flush, the store commits and closes, all within shutdown.drain_s.
Rule 2: every task has an owner (a task group); nothing outlives `serve`.
Rule 3: `gw.config` is the one running config; every service reads it (or `gw.core.config`, the same object)
when it needs a setting, so a reload (`apply_config`) reaches them all in one step. The SMSC connectors are
then brought in line with it: at most one connector per SMSC name runs at a time, and an SMSC being drained
for a rebind or a removal is settled again against the latest config once its drain ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ._callbacks import CallbackSender
from ._config import Config, SmscConfig
from ._connector import Connector
from ._consent import install as install_consent
from ._core import GatewayCore
from ._leader import BillingLeader
from ._metrics import Metrics
from ._mo import MoIntake
from ._payments import install as install_payments
from ._pin import install as install_pin
from ._reload import Reloader, needs_rebind
from ._services import install as install_services
from ._store import SqliteStore, Store
from ._systemd import Notifier, gateway_status, run_heartbeat

__all__ = ["Gateway", "serve"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Listening:
    """Where the HTTP API listens (the port is the real one when 0 was asked for)."""

    host: str
    port: int


class Gateway:
    """Every service of one gateway node, wired together; `serve()` runs them."""

    def __init__(self, config: Config, *, store: Store | None = None, config_path: str | Path | None = None) -> None:
        self.config = config
        if store is None:
            store = make_store(config)
        self.store = store
        self.core = GatewayCore(config, store)
        if config.store.backend == "redis":
            from ._cluster import Cluster

            c = config.cluster
            self.core.cluster = Cluster(self, store, heartbeat_s=c.heartbeat_s,  # type: ignore[arg-type]
                                        node_timeout_s=c.node_timeout_s, claim_batch=c.claim_batch)
        self.connectors: dict[str, Connector] = {}
        self.draining = False
        self.started_at = time.time()
        self.http: Listening | None = None
        self.extensions: dict[str, Any] = {}
        self._ready = anyio.Event()
        self.metrics = Metrics(self)
        self.callbacks = CallbackSender(self)
        self.notifier = Notifier()  # serve() is handed the real one (the CLI reads it from the environment)
        self.reloader = Reloader(self, path=config_path)
        self._services: anyio.abc.TaskGroup | None = None
        self._settling: set[str] = set()
        self.mo = MoIntake(self)
        self.core.mo_hook = self.mo.on_deliver
        # The carrier-billing flows (docs/billing.md): consent first (the others consult it), then the MO
        # services, charging, subscriptions and PIN verification, and payment requests.
        self.consent = install_consent(self)
        routes = self.extensions.setdefault("http_routes", [])
        local = len(routes)  # the admin API and the consent and ledger reads answer on every node
        self.services = install_services(self)
        install_pin(self)  # also installs charging and subscriptions
        self.payments = install_payments(self)
        self.leader: BillingLeader | None = None
        if self.core.cluster is not None:
            # One node at a time runs the billing flows; the others forward its API to it (_leader).
            self.leader = BillingLeader(self, heartbeat_s=config.cluster.heartbeat_s,
                                        ttl_s=config.cluster.node_timeout_s)
            self.extensions["route_wrappers"] = {id(m): self.leader.wrap for m in routes[local:]}

    @property
    def ready(self) -> bool:
        """The store is open and every route has at least one bound SMSC (what /readyz reports)."""
        return self.store.is_open and not self.draining and all(self.route_up().values())

    def route_up(self) -> dict[str, bool]:
        up = {name for name, c in self.connectors.items() if c.can_submit}
        out = {}
        for i, r in enumerate(self.config.routes):
            names = list(r.smscs) or list(r.weights)
            out[r.name or f"routes[{i}]"] = any(n in up for n in names)
        return out

    async def wait_started(self) -> None:
        await self._ready.wait()

    # ---- the running config (Rule 3) -------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Swap in a validated config everywhere at once, then bring the connectors in line with it."""
        self.config = config
        self.core.apply_config(config)
        self.settle_connectors()
        self.core.kick()

    def make_connector(self, smsc: SmscConfig) -> Connector:
        """The connector for one SMSC, registered with the gateway and the core (not started)."""
        connector = Connector(smsc, self.core)
        self.connectors[smsc.name] = connector
        self.core.connectors[smsc.name] = connector
        return connector

    def settle_connectors(self) -> None:
        """Start, update, rebind or retire connectors so that they match `config.smscs` (reload, Rule 3)."""
        tg = self._services
        if tg is None:  # not serving: serve() starts the connectors of the config it finds
            return
        names = [s.name for s in self.config.local_smscs()] + [n for n in self.connectors if n not in self._wanted()]
        for name in names:
            if name in self._settling:
                continue  # its drain is under way; it is settled against the latest config when it ends
            retiring = self._settle(name, tg)
            if retiring is not None:
                self._settling.add(name)
                tg.start_soon(self._retire_and_settle, name, retiring)

    def _wanted(self) -> dict[str, SmscConfig]:
        return {s.name: s for s in self.config.local_smscs()}

    def _settle(self, name: str, tg: anyio.abc.TaskGroup) -> Connector | None:
        """Apply what needs no drain; return the connector that must drain first, if one must."""
        current = self.connectors.get(name)
        wanted = self._wanted().get(name)
        if current is not None and (wanted is None or needs_rebind(current.cfg, wanted)):
            return current
        if wanted is not None:
            if current is None:
                log.info("smsc=%s added: binding", name)
                tg.start_soon(self.make_connector(wanted).run)
            elif current.cfg != wanted:
                current.update(wanted)
                log.info("smsc=%s settings updated on the live binds", name)
        return None

    async def _retire_and_settle(self, name: str, connector: Connector | None) -> None:
        try:
            while connector is not None and self._services is not None:
                if self.core.connectors.get(name) is connector:
                    del self.core.connectors[name]  # no new parts from now on
                why = "rebinding with new connection settings" if name in self._wanted() else "removed"
                log.info("smsc=%s %s: draining its window, then unbinding", name, why)
                await connector.stop(self.config.shutdown.drain_s)
                if self.connectors.get(name) is connector:
                    del self.connectors[name]
                self.core.kick()
                connector = self._settle(name, self._services) if self._services is not None else None
        finally:
            self._settling.discard(name)


def make_store(config: Config) -> Store:
    """The store backend the config names (relative paths are relative to the config file)."""
    cfg = config.store
    if cfg.backend == "sqlite":
        path = Path(cfg.path)
        if not path.is_absolute():
            path = Path(config.base_dir) / path
        return SqliteStore(path, synchronous=cfg.synchronous, commit_interval_s=cfg.commit_interval_ms / 1000,
                           writer=cfg.writer)
    if cfg.backend == "redis":
        from ._cluster import ClusterStore
        from ._redis import RedisStore

        return ClusterStore(RedisStore(
            cfg.redis_url, node=config.node, group=cfg.redis_group, receipt_wait_s=config.messages.receipt_wait_s,
            idempotency_ttl_s=cfg.redis_idempotency_ttl_s, final_ttl_s=cfg.redis_final_ttl_s,
            wait_replicas=cfg.redis_wait_replicas, wait_timeout_ms=cfg.redis_wait_timeout_ms,
            commit_interval_s=cfg.commit_interval_ms / 1000))
    raise ValueError(f"store backend {cfg.backend!r} is not available in this build")


HttpRunner = Callable[..., Coroutine[Any, Any, None]]  # async def run(gw, *, task_status) -> None


async def serve(gw: Gateway, shutdown: Callable[[], Awaitable[None]], *,
                http: HttpRunner | None = None, notifier: Notifier | None = None,
                task_status: anyio.abc.TaskStatus[Gateway] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run the gateway until `shutdown()` returns, then drain and stop (Rule 1).

    Args:
        notifier: tells systemd about readiness, reloads, the watchdog and the stop (default: nobody).
    """
    if notifier is not None:
        gw.notifier = notifier
    async with anyio.create_task_group() as outer:
        await outer.start(gw.store.run)
        if gw.core.cluster is not None:
            # The queue is in Redis: this node's claims from before a stop are taken back by its cluster task.
            await outer.start(gw.core.cluster.run)
            requeued, unknown = 0, 0
        else:
            requeued, unknown = gw.core.restore()
        log.info("store open: %d messages resumed, %d marked unknown after the last stop", requeued, unknown)
        async with anyio.create_task_group() as tg:
            await tg.start(gw.core.run_post_commit)
            await tg.start(gw.metrics.run_loop_monitor)
            await tg.start(gw.callbacks.run)
            await tg.start(gw.core.run_dispatcher)

            async def start_billing() -> None:
                await tg.start(gw.extensions["charging"].run)
                await tg.start(gw.extensions["subscriptions"].run)
                await tg.start(gw.services.run)
                queued = gw.mo.restore()
                if queued:
                    log.info("%d MO messages received before the last stop are processed again", queued)
                await tg.start(gw.mo.run)
                if gw.leader is not None:
                    await tg.start(gw.mo.run_cluster)
                await tg.start(gw.payments.run)

            if gw.leader is None:
                await start_billing()
            else:
                await tg.start(gw.consent.follow)
            for smsc in gw.config.local_smscs():
                await tg.start(gw.make_connector(smsc).run)
            gw._services = tg
            if http is not None:
                gw.http = await tg.start(http, gw)
            if gw.leader is not None:
                await tg.start(gw.leader.run, start_billing)
            await tg.start(gw.reloader.run)
            gw.notifier.ready(gateway_status(gw))
            await tg.start(run_heartbeat, gw)
            gw._ready.set()
            task_status.started(gw)
            await shutdown()
            await _drain(gw)
            gw._services = None
            tg.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    gw.notifier.close()


async def _drain(gw: Gateway) -> None:
    """Stop intake (503), let the windows finish, unbind, flush callbacks: all bounded by shutdown.drain_s.

    The windows get most of the time; the store's last commit, the HTTP server's close and the exit take the
    rest, so that the process ends within drain_s and systemd's TimeoutStopSec is never the one to stop it.
    """
    drain_s = gw.config.shutdown.drain_s
    gw.draining = True
    gw.notifier.stopping(gateway_status(gw))
    log.info("shutting down: draining for up to %.1f s", drain_s)
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(drain_s * 0.9) as scope:
            async with anyio.create_task_group() as drain:
                for c in list(gw.connectors.values()):
                    drain.start_soon(c.stop, drain_s * 0.7)
            await gw.callbacks.drain()
        if scope.cancelled_caught:
            log.warning("shutting down: drain time (shutdown.drain_s=%.1f s) is up; what is left is resolved at the "
                        "next start", drain_s)
