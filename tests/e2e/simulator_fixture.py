"""Start the SMSC simulator in-process for a test, and talk to it as an ESME.

    from tests.e2e.simulator_fixture import anyio_backend, running_simulator, esme, make_config

    async def test_something() -> None:
        async with running_simulator(make_config()) as sim, esme(sim, "esme", "pw") as client:
            resp = await client.submit(destination_addr="447700900123", short_message=b"hi", registered_delivery=1)
            receipt = await client.next_deliver()

`running_simulator` listens on 127.0.0.1 with free ports (SMPP and control API) and stops when the block ends.
`make_config()` is a small config with short delays; pass overrides as keyword arguments (top-level keys).
For load: `make_config(receipts={"delay": {"mean_s": 0}})` makes receipts immediate.
The simulator runs on asyncio (uvicorn serves its control API), so async tests that use it take the
`anyio_backend` fixture exported here (asyncio with uvloop): import it into the test module.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from simulator import Addresses, Simulator, SimulatorConfig, load_config, parse_config
from smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    DeliverSmResp,
    Pdu,
    Status,
    SubmitSm,
)
from smpp._session import Event, RequestReceived, Role, Session, SessionConfig
from smpp.adapter import SmppConnection

__all__ = [
    "EsmeClient",
    "RunningSimulator",
    "anyio_backend",
    "esme",
    "make_config",
    "running_simulator",
]

HOST = "127.0.0.1"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The simulator runs on asyncio with uvloop."""
    return ("asyncio", {"use_uvloop": True})


_BASE: dict[str, Any] = {
    "seed": 1234,
    "session": {"window": 100, "response_timeout_s": 5, "enquire_link_interval_s": 30},
    "receipts": {"delay": {"distribution": "fixed", "mean_s": 0.05}, "tick_s": 0.002, "retry_delay_s": 0.1},
    "accounts": [
        {"system_id": "esme", "password": "pw", "shortcodes": ["84001"]},
        {"system_id": "other", "password": "pw2", "shortcodes": ["85001"]},
    ],
}


def make_config(**overrides: Any) -> dict[str, Any]:
    """A small simulator config (as a dict) with short delays; top-level keys in `overrides` replace the base's."""
    cfg = copy.deepcopy(_BASE)
    cfg.update(copy.deepcopy(overrides))
    return cfg


@dataclass
class RunningSimulator:
    """A simulator serving on loopback, and where."""

    simulator: Simulator
    addresses: Addresses

    @property
    def smpp_port(self) -> int:
        return self.addresses.smpp_port

    @property
    def control_port(self) -> int:
        return self.addresses.control_port

    @property
    def control_url(self) -> str:
        return self.addresses.control_url

    def http(self) -> httpx.AsyncClient:
        """A client for the control API (use it in `async with`)."""
        return httpx.AsyncClient(base_url=self.control_url, timeout=10)


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | Mapping[str, Any] | str | Path | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Run a simulator on 127.0.0.1 with free ports for the duration of the block.

    Args:
        config: a SimulatorConfig, a dict (validated like the YAML), a YAML file path, or None for `make_config()`.
    """
    if config is None:
        cfg = parse_config(make_config())
    elif isinstance(config, SimulatorConfig):
        cfg = config
    elif isinstance(config, str | Path):
        cfg = load_config(config)
    else:
        cfg = parse_config(dict(config))
    sim = Simulator(cfg)
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(partial(sim.run, listen=(HOST, 0), control=(HOST, 0)))
        try:
            yield RunningSimulator(sim, addresses)
        finally:
            tg.cancel_scope.cancel()


@dataclass
class EsmeClient:
    """An ESME bound to the simulator: submits, and collects the deliver_sm it receives (acking them).

    Attributes:
        conn: the SMPP connection.
        delivered: every deliver_sm received, in order.
        ack_status: the command_status of our deliver_sm_resp (change it to refuse receipts).
        ack: answer deliver_sm at all (False: leave them unanswered).
    """

    conn: SmppConnection
    delivered: list[DeliverSm] = field(default_factory=list)
    ack_status: int = 0
    ack: bool = True
    events: list[Event] = field(default_factory=list)
    _arrived: anyio.Event = field(default_factory=anyio.Event)
    _read: int = 0

    async def handle(self, ev: Event) -> None:
        self.events.append(ev)
        if isinstance(ev, RequestReceived) and isinstance(ev.pdu, DeliverSm):
            self.delivered.append(ev.pdu)
            if self.ack and not self.conn.closed:
                self.conn.send(DeliverSmResp(sequence_number=ev.pdu.sequence_number, command_status=self.ack_status))
        self._arrived.set()

    async def request(self, pdu: Pdu) -> Any:
        """Send a request and return its response (typed Any: its class depends on the request and on faults)."""
        return await self.conn.request(pdu)

    async def submit(self, **fields: Any) -> Any:
        """submit_sm with these fields (source 84001 unless given); returns submit_sm_resp (or a generic_nack)."""
        fields.setdefault("source_addr", "84001")
        return await self.conn.request(SubmitSm(**fields))

    async def wait_delivered(self, count: int, timeout_s: float = 5.0) -> list[DeliverSm]:
        """Wait until `count` deliver_sm have arrived in all; returns them all."""
        with anyio.fail_after(timeout_s):
            while len(self.delivered) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        return self.delivered

    async def next_deliver(self, timeout_s: float = 5.0) -> DeliverSm:
        """The next deliver_sm not returned by an earlier call."""
        await self.wait_delivered(self._read + 1, timeout_s)
        self._read += 1
        return self.delivered[self._read - 1]

    async def wait_event(self, kind: type, timeout_s: float = 5.0) -> Event:
        """The first event of this type seen (waiting for it)."""
        with anyio.fail_after(timeout_s):
            while True:
                for ev in self.events:
                    if isinstance(ev, kind):
                        return ev
                self._arrived = anyio.Event()
                await self._arrived.wait()


_BINDS: dict[str, type[BindTransmitter] | type[BindReceiver] | type[BindTransceiver]] = {
    "transmitter": BindTransmitter, "receiver": BindReceiver, "transceiver": BindTransceiver,
}


@asynccontextmanager
async def esme(
    sim: RunningSimulator | int,
    system_id: str,
    password: str,
    *,
    bind: str = "transceiver",
    window: int = 100,
    expect_status: int = Status.ESME_ROK,
) -> AsyncIterator[EsmeClient]:
    """Connect, bind and yield a EsmeClient; unbind at the end.

    Args:
        sim: the running simulator (or its SMPP port).
        system_id: the account.
        password: its password.
        bind: transmitter, receiver or transceiver.
        window: the ESME's window.
        expect_status: the bind_resp status to expect (assert); a failed bind still yields the client.
    """
    port = sim if isinstance(sim, int) else sim.smpp_port
    stream = await anyio.connect_tcp(HOST, port)
    client: EsmeClient
    conn = SmppConnection(stream, Session(SessionConfig(Role.ESME, window=window, response_timeout_s=5)),
                          lambda ev: client.handle(ev))
    client = EsmeClient(conn)
    async with anyio.create_task_group() as tg:
        await tg.start(conn.run)
        resp = await conn.request(_BINDS[bind](system_id=system_id, password=password))
        assert resp.command_status == expect_status, Status.describe(resp.command_status)
        try:
            yield client
        finally:
            with anyio.move_on_after(2, shield=True):
                await conn.unbind()
            tg.cancel_scope.cancel()
