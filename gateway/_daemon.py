"""The daemon: start the services in dependency order, serve, drain and stop in reverse.

Rule 1: start order is store -> core (restore) -> connectors -> callbacks -> HTTP; READY only after the
store is open and the HTTP listener is up. Stop order is the reverse: HTTP stops accepting (503), connectors
drain their windows and unbind, callbacks flush, the store commits and closes.
Rule 2: every task has an owner (a task group); nothing outlives `serve`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ._callbacks import CallbackSender
from ._config import Config
from ._connector import Connector
from ._core import GatewayCore
from ._metrics import Metrics
from ._store import SqliteStore, Store

__all__ = ["Gateway", "serve"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Listening:
    """Where the HTTP API listens (the port is the real one when 0 was asked for)."""

    host: str
    port: int


class Gateway:
    """Every service of one gateway node, wired together; `serve()` runs them."""

    def __init__(self, config: Config, *, store: Store | None = None) -> None:
        self.config = config
        if store is None:
            store = make_store(config)
        self.store = store
        self.core = GatewayCore(config, store)
        self.connectors: dict[str, Connector] = {}
        self.draining = False
        self.started_at = time.time()
        self.http: Listening | None = None
        self.extensions: dict[str, Any] = {}
        self._ready = anyio.Event()
        self.metrics = Metrics(self)
        self.callbacks = CallbackSender(self)

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


def make_store(config: Config) -> Store:
    """The store backend the config names (relative paths are relative to the config file)."""
    from pathlib import Path

    cfg = config.store
    if cfg.backend == "sqlite":
        path = Path(cfg.path)
        if not path.is_absolute():
            path = Path(config.base_dir) / path
        return SqliteStore(path, synchronous=cfg.synchronous, commit_interval_s=cfg.commit_interval_ms / 1000)
    raise ValueError(f"store backend {cfg.backend!r} is not available in this build")


HttpRunner = Callable[..., Coroutine[Any, Any, None]]  # async def run(gw, *, task_status) -> None


async def serve(gw: Gateway, shutdown: Callable[[], Awaitable[None]], *,
                http: HttpRunner | None = None,
                task_status: anyio.abc.TaskStatus[Gateway] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run the gateway until `shutdown()` returns, then drain and stop (Rule 1)."""
    async with anyio.create_task_group() as outer:
        await outer.start(gw.store.run)
        requeued, unknown = gw.core.restore()
        log.info("store open: %d messages resumed, %d marked unknown after the last stop", requeued, unknown)
        async with anyio.create_task_group() as tg:
            await tg.start(gw.core.run_post_commit)
            await tg.start(gw.callbacks.run)
            await tg.start(gw.core.run_dispatcher)
            for smsc in gw.config.smscs:
                connector = Connector(smsc, gw.core)
                gw.connectors[smsc.name] = connector
                gw.core.connectors[smsc.name] = connector
                await tg.start(connector.run)
            if http is not None:
                gw.http = await tg.start(http, gw)
            gw._ready.set()
            task_status.started(gw)
            await shutdown()
            log.info("shutting down: draining for up to %.1f s", gw.config.shutdown.drain_s)
            gw.draining = True
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(gw.config.shutdown.drain_s):
                    async with anyio.create_task_group() as drain:
                        for c in gw.connectors.values():
                            drain.start_soon(c.stop, gw.config.shutdown.drain_s)
                    await gw.callbacks.drain()
            tg.cancel_scope.cancel()
        outer.cancel_scope.cancel()
