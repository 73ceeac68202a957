"""Rule: the simulator is one task group: the SMPP listener, its links, the ticker and the control API.

`Simulator.run` binds both listening sockets first (port 0 picks a free port) and logs
`simulator smpp listening on HOST:PORT` and `simulator control listening on HOST:PORT` before anything else, then
starts the services and reports the chosen addresses with `task_status.started(Addresses(...))`. `stop()` sends
unbind on every bind, waits a bounded time for the ESMEs to answer, and cancels the group.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

import anyio
import anyio.abc
import uvicorn

from ._config import SimulatorConfig, parse_hostport
from ._control import create_app
from ._link import SmscLink
from ._smsc import Smsc

__all__ = ["Addresses", "Simulator"]

log = logging.getLogger("simulator")
# The listening addresses go out at any log level: scripts and tests read them from the first lines.
address_log = logging.getLogger("simulator.address")


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where a running simulator listens."""

    smpp_host: str
    smpp_port: int
    control_host: str
    control_port: int

    @property
    def control_url(self) -> str:
        host = f"[{self.control_host}]" if ":" in self.control_host else self.control_host
        return f"http://{host}:{self.control_port}"


def _control_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Simulator:
    """A running SMSC simulator (see the module rule).

    Args:
        config: the validated configuration.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.smsc = Smsc(config)
        self.addresses: Addresses | None = None
        self._cancel: anyio.CancelScope | None = None
        self._wake = anyio.Event()
        self.smsc.scheduler.on_wake = self._wake_ticker

    def _wake_ticker(self) -> None:
        self._wake.set()

    async def run(
        self,
        *,
        listen: tuple[str, int] | None = None,
        control: tuple[str, int] | None = None,
        task_status: anyio.abc.TaskStatus[Addresses] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled or stopped.

        Args:
            listen: the SMPP address, overriding the config's `listen`.
            control: the control API address, overriding the config's `control`.
            task_status: receives the Addresses once both sockets listen.
        """
        smpp_host, smpp_port = listen or parse_hostport(self.config.listen, "listen")
        control_host, control_port = control or parse_hostport(self.config.control, "control")
        listener = await anyio.create_tcp_listener(local_host=smpp_host, local_port=smpp_port)
        try:
            sock = _control_socket(control_host, control_port)
        except OSError:
            await listener.aclose()
            raise
        addresses = Addresses(smpp_host, listener.extra(anyio.abc.SocketAttribute.local_port), control_host,
                              sock.getsockname()[1])
        self.addresses = addresses
        address_log.info("simulator smpp listening on %s:%d", smpp_host, addresses.smpp_port)
        address_log.info("simulator control listening on %s:%d", control_host, addresses.control_port)
        try:
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                tg.start_soon(self._ticker)
                await tg.start(self._run_control, sock)
                tg.start_soon(listener.serve, self._serve_link)
                log.info("simulator ready accounts=%d", len(self.smsc.accounts))
                task_status.started(addresses)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            sock.close()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Unbind every ESME, wait up to `grace_s` for them to go, then stop serving."""
        for link in list(self.smsc.links):
            link.unbind()
        with anyio.move_on_after(grace_s):
            while self.smsc.links:
                await anyio.sleep(0.02)
        if self._cancel is not None:
            self._cancel.cancel()

    async def _serve_link(self, stream: anyio.abc.SocketStream) -> None:
        try:
            remote = stream.extra(anyio.abc.SocketAttribute.remote_address)
            peer = f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else str(remote)
        except (OSError, anyio.TypedAttributeLookupError):
            peer = "?"
        link = SmscLink(self.smsc, stream, peer)
        self.smsc.links.add(link)
        try:
            await link.run()
        except Exception:
            # One ESME's connection must not end the SMSC: log it with its traceback and drop that link only.
            log.exception("link failed peer=%s", peer)
        finally:
            self.smsc.links.discard(link)

    async def _ticker(self) -> None:
        smsc = self.smsc
        scheduler = smsc.scheduler
        tick_s = self.config.receipts.tick_s
        monotonic = time.monotonic
        next_sample = monotonic()
        while True:
            now = monotonic()
            if scheduler or any(a.backlog and a.receivers for a in smsc.accounts.values()):
                smsc.tick(now, time.time())
            if now >= next_sample:
                smsc.sample(now)
                next_sample = now + 1.0
            delay = next_sample - now
            due = scheduler.next_due()
            if due is not None:
                delay = min(delay, max(due - now, tick_s))
            with anyio.move_on_after(delay):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = anyio.Event()
                await anyio.sleep(tick_s)  # let a burst of new entries gather into one tick

    async def _run_control(self, sock: socket.socket, *,
                           task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        config = uvicorn.Config(create_app(self.smsc), lifespan="off", log_level="warning", access_log=False,
                                loop="none")
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        task_status.started()
        try:
            await server.main_loop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                server.should_exit = True
                await server.shutdown(sockets=[sock])
