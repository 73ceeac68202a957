"""`make run`: the SMSC simulator and the gateway on loopback with config/*.yaml, until Ctrl-C.

Rule 1: the demo owns two child processes, each started in its own session so that the terminal's Ctrl-C
reaches the demo only; on Ctrl-C it stops the gateway first (it drains into the simulator), then the
simulator: SIGTERM, a bounded wait, then SIGKILL. Then it exits 0.
Rule 2: a child that exits on its own ends the demo: the other is stopped, the demo names the one that died
and exits 1.
Rule 3: the gateway never imports the simulator (an import contract): it is started as `python -m simulator`
and only its YAML file is read here, for the addresses to wait on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import anyio
import anyio.abc
import httpx
import yaml
from anyio.streams.text import TextReceiveStream

from ._cli_run import backend_options, parse_listen
from ._config import ConfigError, load_config

__all__ = ["DEMO_API_KEY", "DemoSettings", "banner", "curl_commands", "main", "run_demo", "settings_from_files"]

DEMO_API_KEY = "demo-key-change-me"
"""The example account's API key; config/gateway.yaml holds only its sha256."""

DEMO_DESTINATION = "+447700900042"
"""A number from Ofcom's range for drama (07700 900000 to 900999), so never a real subscriber, outside the
simulator's scripted test numbers (07700 9001xx and up), so it is delivered."""

# The simulator's defaults for these keys (simulator/_config.py), read from its YAML without importing it.
_SIM_DEFAULT_LISTEN = "127.0.0.1:2775"
_SIM_DEFAULT_CONTROL = "127.0.0.1:8775"


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo starts and where it waits.

    Attributes:
        gateway_config: the gateway's YAML file.
        simulator_config: the simulator's YAML file.
        smpp: the simulator's SMPP listener (host, port).
        control: the simulator's control API (host, port), which lists the messages it received.
        http: the gateway's HTTP API (host, port).
        source: the sender id the curl command uses.
        startup_timeout_s: how long each process may take to answer.
        stop_timeout_s: how long a process may take to exit after SIGTERM before it is killed.
        warnings: problems found in the files that do not stop the demo.
    """

    gateway_config: Path
    simulator_config: Path
    smpp: tuple[str, int]
    control: tuple[str, int]
    http: tuple[str, int]
    source: str = "DEMO"
    startup_timeout_s: float = 30.0
    stop_timeout_s: float = 30.0
    warnings: tuple[str, ...] = ()


def settings_from_files(gateway_config: Path, simulator_config: Path, *, startup_timeout_s: float = 30.0) -> DemoSettings:
    """Read both files for the addresses to wait on.

    Raises:
        ConfigError: the gateway's file is invalid, or the simulator's cannot be read as YAML.
    """
    cfg = load_config(gateway_config)
    try:
        sim = yaml.safe_load(simulator_config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the simulator's config: {exc}", path=str(simulator_config)) from None
    if not isinstance(sim, dict):
        raise ConfigError("the file must hold a mapping of sections", path=str(simulator_config))
    try:
        smpp = parse_listen(str(sim.get("listen", _SIM_DEFAULT_LISTEN)))
        control = parse_listen(str(sim.get("control", _SIM_DEFAULT_CONTROL)))
        http = parse_listen(cfg.http.listen)
    except ValueError as exc:
        raise ConfigError(str(exc), path="listen") from None
    warnings = []
    if not any((s.host, s.port) == smpp for s in cfg.smscs):
        warnings.append(f"no SMSC in {gateway_config} connects to the simulator's {smpp[0]}:{smpp[1]}: "
                        "the gateway will not bind to it")
    account = cfg.account("demo")
    source = "DEMO"
    if account is None:
        warnings.append(f"{gateway_config} has no account 'demo': the curl command below will get a 401")
    elif account.default_source:
        source = account.default_source
    elif account.allowed_sources:
        source = account.allowed_sources[0]
    return DemoSettings(gateway_config, simulator_config, smpp, control, http, source=source,
                        startup_timeout_s=startup_timeout_s, stop_timeout_s=cfg.shutdown.drain_s + 10,
                        warnings=tuple(warnings))


def _url(hostport: tuple[str, int]) -> str:
    host, port = hostport
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def curl_commands(s: DemoSettings) -> tuple[str, str]:
    """The ready-to-paste commands: send a message, then read its status (ID from the first answer)."""
    base = _url(s.http)
    body = json.dumps({"to": DEMO_DESTINATION, "from": s.source, "text": "Hello from smpp-gateway"})
    send = (f"curl -sS -X POST {base}/v1/messages \\\n"
            f"    -H 'Authorization: Bearer {DEMO_API_KEY}' -H 'Content-Type: application/json' \\\n"
            f"    -d '{body}'")
    status = f"curl -sS -H 'Authorization: Bearer {DEMO_API_KEY}' {base}/v1/messages/ID"
    return send, status


def banner(s: DemoSettings) -> str:
    """What the demo prints once both processes answer."""
    send, status = curl_commands(s)
    return "\n".join([
        "",
        f"demo: ready: gateway API {_url(s.http)}, simulator SMPP {s.smpp[0]}:{s.smpp[1]}",
        f"demo: WARNING: '{DEMO_API_KEY}' is a demo API key, published in the README. Replace the demo",
        f"demo:          account's api_keys in {s.gateway_config} (sha256 only) before the gateway faces",
        "demo:          anything but this machine.",
        "demo: send a message:",
        "",
        textwrap.indent(send, "    "),
        "",
        "demo: its status (put the \"id\" of the answer in place of ID):",
        "",
        textwrap.indent(status, "    "),
        "",
        f"demo: what reached the simulator: {_url(s.control)}/messages",
        "demo: numbers from 07700 900100 get scripted outcomes (UNDELIV, EXPIRED, ...): see config/simulator.yaml",
        "demo: Ctrl-C stops both.",
        "",
    ])


class _Failed(Exception):
    """The demo cannot go on; the message says why."""


@dataclass(slots=True)
class _Child:
    name: str
    process: anyio.abc.Process
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None

    async def stop(self, timeout_s: float, say: TextIO) -> None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL (Rule 1)."""
        if self.exited.is_set():
            return
        self.process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(timeout_s):
            await self.exited.wait()
            return
        print(f"demo: {self.name} did not stop within {timeout_s:.0f} s: killing it", file=say, flush=True)
        self.process.kill()
        await self.exited.wait()


@dataclass(slots=True)
class _Demo:
    settings: DemoSettings
    out: TextIO
    children: list[_Child] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    failure: str | None = None
    stopping: bool = False

    def say(self, text: str) -> None:
        print(f"demo: {text}", file=self.out, flush=True)

    def fail(self, reason: str) -> None:
        if self.failure is None and not self.stopping:
            self.failure = reason
        self.done.set()

    async def start(self, tg: anyio.abc.TaskGroup, name: str, prefix: str, argv: Sequence[str]) -> _Child:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = await anyio.open_process([sys.executable, *argv], stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)
        child = _Child(name, process)
        self.children.append(child)
        tg.start_soon(self._stream, child, prefix)
        tg.start_soon(self._watch, child)
        return child

    async def _stream(self, child: _Child, prefix: str) -> None:
        assert child.process.stdout is not None
        pending = ""
        async for chunk in TextReceiveStream(child.process.stdout, errors="replace"):
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                print(f"{prefix}{line}", file=self.out, flush=True)
        if pending:
            print(f"{prefix}{pending}", file=self.out, flush=True)

    async def _watch(self, child: _Child) -> None:
        child.returncode = await child.process.wait()
        child.exited.set()
        if not self.stopping:
            self.fail(f"the {child.name} exited on its own with status {child.returncode}")

    async def wait_port(self, child: _Child, hostport: tuple[str, int]) -> None:
        host, port = hostport
        with anyio.move_on_after(self.settings.startup_timeout_s):
            while True:
                try:
                    with anyio.fail_after(1):
                        stream = await anyio.connect_tcp(host, port)
                except (OSError, TimeoutError):
                    await anyio.sleep(0.1)
                    continue
                await stream.aclose()
                return
        raise _Failed(f"the {child.name} did not open {host}:{port} within {self.settings.startup_timeout_s:.0f} s")

    async def wait_ready(self, child: _Child) -> None:
        """Until /readyz answers 200; /readyz answering otherwise past the timeout is only a warning."""
        base = _url(self.settings.http)
        answered: httpx.Response | None = None
        async with httpx.AsyncClient(timeout=2.0) as client:
            with anyio.move_on_after(self.settings.startup_timeout_s):
                while True:
                    try:
                        answered = await client.get(f"{base}/readyz")
                    except httpx.HTTPError:
                        answered = None
                    if answered is not None and answered.status_code == 200:
                        return
                    await anyio.sleep(0.2)
        if answered is None:
            raise _Failed(f"the {child.name} did not answer on {base} within {self.settings.startup_timeout_s:.0f} s")
        self.say(f"WARNING: the gateway answers but is not ready yet ({answered.status_code} {answered.text.strip()}):"
                 " messages are accepted and wait until an SMSC is bound")

    async def bring_up(self, tg: anyio.abc.TaskGroup) -> None:
        s = self.settings
        self.say(f"starting the SMSC simulator with {s.simulator_config}")
        sim = await self.start(tg, "simulator", "sim | ", ["-m", "simulator", "-c", str(s.simulator_config)])
        await self.wait_port(sim, s.smpp)
        self.say(f"starting the gateway with {s.gateway_config}")
        gw = await self.start(tg, "gateway", "gw  | ", ["-m", "gateway.cli", "run", "-c", str(s.gateway_config)])
        await self.wait_ready(gw)
        print(banner(s), file=self.out, flush=True)

    async def run(self) -> int:
        for warning in self.settings.warnings:
            self.say(f"WARNING: {warning}")
        for what, hostport in (("the simulator's SMPP port", self.settings.smpp),
                               ("the gateway's HTTP port", self.settings.http)):
            if await _answers(hostport):
                self.say(f"{hostport[0]}:{hostport[1]} ({what}) is already in use: is another demo running?")
                return 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_signals)
            startup = anyio.CancelScope()
            tg.start_soon(self._bring_up_or_fail, tg, startup)
            await self.done.wait()
            startup.cancel()
            self.stopping = True
            for child in reversed(self.children):
                self.say(f"stopping the {child.name}")
                await child.stop(self.settings.stop_timeout_s, self.out)
            tg.cancel_scope.cancel()
        if self.failure is not None:
            self.say(self.failure)
            return 1
        self.say("stopped")
        return 0

    async def _bring_up_or_fail(self, tg: anyio.abc.TaskGroup, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await self.bring_up(tg)
            except _Failed as exc:
                self.fail(str(exc))
            except OSError as exc:
                self.fail(f"cannot start a process: {exc}")

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.say(f"{signal.Signals(signum).name}: stopping")
                self.done.set()
                return


async def _answers(hostport: tuple[str, int]) -> bool:
    try:
        with anyio.fail_after(1):
            stream = await anyio.connect_tcp(*hostport)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True


async def run_demo(settings: DemoSettings, out: TextIO = sys.stdout) -> int:
    """Start both processes, print the banner, stream their logs until Ctrl-C (Rules 1 and 2); the exit status."""
    return await _Demo(settings, out).run()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.demo` (what `make run` runs)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("-c", "--config", type=Path, default=Path("config/gateway.yaml"), help="the gateway's config")
    parser.add_argument("--simulator-config", type=Path, default=Path("config/simulator.yaml"),
                        help="the simulator's config")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds each process may take to answer")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_files(args.config, args.simulator_config, startup_timeout_s=args.timeout)
    except ConfigError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return anyio.run(run_demo, settings, backend="asyncio", backend_options=backend_options())


if __name__ == "__main__":
    sys.exit(main())
