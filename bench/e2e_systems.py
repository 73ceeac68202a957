"""The processes of the end-to-end benchmark: the simulator, the gateway and Kannel, each with a generated config.

Rule 1: every process is started through `Children`, which stops them all (SIGTERM, then SIGKILL after a grace
period) when its `with` block ends, however it ends; each child also gets SIGKILL from the kernel if this
process dies first (PR_SET_PDEATHSIG), so nothing outlives the benchmark.
Rule 2: everything listens on 127.0.0.1 on ports the system picked (port 0) or, where a program cannot be told
port 0 (Kannel), on ports found free just before; every wait for a process to come up is bounded.
Rule 3: each process writes its output to a log file in the run's temporary directory (a pipe nobody reads
would stall it); the tail of the logs is printed when something does not start.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "API_KEY",
    "Child",
    "Children",
    "GatewayProcess",
    "KannelProcess",
    "SimulatorProcess",
    "cpu_seconds",
    "start_gateway",
    "start_kannel",
    "start_simulator",
]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "bench-key"
KANNEL_USER, KANNEL_PASSWORD = "bench", "bench1"
_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, from /proc/PID/stat (fields 14 and 15, clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Child:
    """One started process and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.alive() else 0.0

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        """The first match of `pattern` in the log, waiting up to `timeout_s`; RuntimeError if none comes."""
        deadline = time.monotonic() + timeout_s
        while True:
            m = pattern.search(self.log.read_text(errors="replace"))
            if m:
                return m
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before starting:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start within {timeout_s:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM; a second SIGTERM after `grace_s` (the gateway then exits without draining); SIGKILL after
        another `grace_s`."""
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()


class Children:
    """Starts processes and stops all of them, newest first, when the `with` block ends (Rule 1)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], *, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Child:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=cwd or ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            try:
                child.stop()
            except (OSError, subprocess.SubprocessError):
                child.proc.kill()
        self.children.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()


def free_port() -> int:
    """A port nothing listens on right now (for programs that cannot be given port 0)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """A plain GET for set-up and checks (not for the measured load); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_until(check: Callable[[], bool], what: str, child: Child, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}) while waiting for {what}:\n"
                               f"{child.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}:\n{child.tail()}")
        time.sleep(0.1)


# ---- the simulator -----------------------------------------------------------------------------------------

SIMULATOR_CONFIG = """\
listen: 127.0.0.1:0
control: 127.0.0.1:0
log_level: warning
session:
  window: 10000
receipts:
  delay: {{distribution: fixed, mean_s: {delay}}}
store:
  max_messages: 100000
accounts:
{accounts}"""

SIMULATOR_ACCOUNT = """\
  - system_id: {system_id}
    password: {password}
    max_binds: 64
    window: 10000
    message_ids: {{resp: decimal}}
    receipts: {{backlog: 1000000}}
"""

SIMULATOR_ACCOUNTS = {"gwbatch": "gw1", "gwsingle": "gw1", "kannel": "kannel1"}
"""One account per system under test: the simulator sends a receipt on any bind of the message's account, so
two gateways sharing one would receive each other's receipts."""

_SIM_SMPP = re.compile(r"simulator smpp listening on (\S+):(\d+)")
_SIM_CONTROL = re.compile(r"simulator control listening on (\S+):(\d+)")


@dataclass
class SimulatorProcess:
    child: Child
    smpp_port: int
    control_port: int

    @property
    def stats_url(self) -> str:
        return f"http://{HOST}:{self.control_port}/stats"


def start_simulator(children: Children, receipt_delay_s: float) -> SimulatorProcess:
    """The simulator with identical accounts for each system (SIMULATOR_ACCOUNTS): decimal ids, receipts after the delay,
    no throughput limit, deliver_sm windows deep enough that receipts never wait for the ESME."""
    config = children.workdir / "simulator.yaml"
    accounts = "".join(SIMULATOR_ACCOUNT.format(system_id=name, password=password)
                       for name, password in SIMULATOR_ACCOUNTS.items())
    config.write_text(SIMULATOR_CONFIG.format(delay=receipt_delay_s, accounts=accounts), encoding="utf-8")
    child = children.start("simulator", [sys.executable, "-m", "simulator", "-c", str(config)])
    smpp = child.wait_for_line(_SIM_SMPP, 20)
    control = child.wait_for_line(_SIM_CONTROL, 20)
    return SimulatorProcess(child, int(smpp.group(2)), int(control.group(2)))


# ---- the gateway -------------------------------------------------------------------------------------------

GATEWAY_CONFIG = """\
node: bench-{name}
http:
  listen: "127.0.0.1:0"
store:
  backend: sqlite
  path: {store}
  commit_interval_ms: 0
  synchronous: normal
accounts:
  - id: bench
    api_keys:
      - sha256: {key_sha256}
        name: bench
    callback:
      url: "{callback_url}"
      batch_max: {callback_batch}
      batch_interval_ms: {callback_interval_ms}
smscs:
  - name: sim
    host: 127.0.0.1
    port: {smpp_port}
    system_id: {system_id}
    password: gw1
    bind: trx
    sessions: {sessions}
    window: {window}
    receipt_id_format: decimal
routes:
  - name: all
    prefix: ""
    smscs: [sim]
logging:
  format: logfmt
  level: info
"""

_GW_LISTENING = re.compile(r"http api listening on http://([^:\s]+):(\d+)")


@dataclass
class GatewayProcess:
    child: Child
    port: int
    config: Path


def start_gateway(children: Children, name: str, sim: SimulatorProcess, *, system_id: str, callback_url: str,
                  callback_batch: int,
                  callback_interval_ms: int, sessions: int, window: int) -> GatewayProcess:
    """`smppgw run` with a config of its own and an SQLite store in the work directory, bound to the simulator;
    returns once /readyz answers 200 (store open, the route's bind up)."""
    store_dir = children.workdir / f"gateway-{name}"
    store_dir.mkdir()
    config = store_dir / "gateway.yaml"
    config.write_text(GATEWAY_CONFIG.format(
        name=name, store=store_dir / "gateway.db", key_sha256=hashlib.sha256(API_KEY.encode()).hexdigest(),
        callback_url=callback_url, callback_batch=callback_batch, callback_interval_ms=callback_interval_ms,
        smpp_port=sim.smpp_port, sessions=sessions, window=window, system_id=system_id), encoding="utf-8")
    smppgw = Path(sys.executable).with_name("smppgw")
    argv = [str(smppgw)] if smppgw.exists() else [sys.executable, "-m", "gateway.cli"]
    child = children.start(f"gateway-{name}", [*argv, "run", "-c", str(config)])
    m = child.wait_for_line(_GW_LISTENING, 30)
    port = int(m.group(2))
    wait_until(lambda: http_get(f"http://{HOST}:{port}/readyz")[0] == 200, f"gateway {name} /readyz", child)
    return GatewayProcess(child, port, config)


# ---- Kannel ------------------------------------------------------------------------------------------------


@dataclass
class KannelProcess:
    bearerbox: Child
    smsbox: Child
    sendsms_port: int
    admin_port: int
    config: Path


def kannel_config(*, smpp_port: int, admin_port: int, box_port: int, sendsms_port: int, logs: Path,
                  max_pending: int) -> str:
    """bearerbox + smsbox with one transceiver bind to the simulator. A blank line ends a group, so groups are
    separated by exactly one and none appears inside one (PEERS.md). Log files at level 2 (warnings): at level
    0 they log every message, which costs Kannel about half its rate. No `store-file`: Kannel keeps its queue in
    memory only (the gateway commits every message to SQLite before answering)."""
    groups = [
        f"""group = core
admin-port = {admin_port}
admin-interface = {HOST}
admin-password = benchadmin
status-password = benchadmin
admin-allow-ip = "{HOST}"
smsbox-port = {box_port}
smsbox-interface = {HOST}
box-allow-ip = "{HOST}"
dlr-storage = internal
log-file = "{logs / 'bearerbox-file.log'}"
log-level = 2""",
        f"""group = smsc
smsc = smpp
smsc-id = sim
host = {HOST}
port = {smpp_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = kannel1
system-type = ""
max-pending-submits = {max_pending}
enquire-link-interval = 30
reconnect-delay = 1
log-file = "{logs / 'smsc-file.log'}"
log-level = 2""",
        f"""group = smsbox
bearerbox-host = {HOST}
bearerbox-port = {box_port}
sendsms-port = {sendsms_port}
sendsms-interface = {HOST}
log-file = "{logs / 'smsbox-file.log'}"
log-level = 2""",
        f"""group = sendsms-user
username = {KANNEL_USER}
password = {KANNEL_PASSWORD}
max-messages = 1""",
    ]
    return "\n\n".join(groups) + "\n"


def start_kannel(children: Children, sim: SimulatorProcess, *, max_pending: int) -> KannelProcess:
    """bearerbox, then smsbox (Debian's binaries, run directly with `-v 2`); returns once sendsms answers and the
    simulator shows Kannel's transceiver bind."""
    bearerbox_bin, smsbox_bin = shutil.which("bearerbox"), shutil.which("smsbox")
    if bearerbox_bin is None or smsbox_bin is None:
        for d in ("/usr/sbin", "/usr/local/sbin"):
            if Path(d, "bearerbox").exists():
                bearerbox_bin, smsbox_bin = f"{d}/bearerbox", f"{d}/smsbox"
    if bearerbox_bin is None or smsbox_bin is None:
        raise RuntimeError("Kannel is not installed (Debian package `kannel`); use --skip-kannel")
    logs = children.workdir / "kannel"
    logs.mkdir()
    admin_port, box_port, sendsms_port = free_port(), free_port(), free_port()
    config = logs / "kannel.conf"
    config.write_text(kannel_config(smpp_port=sim.smpp_port, admin_port=admin_port, box_port=box_port,
                                    sendsms_port=sendsms_port, logs=logs, max_pending=max_pending), encoding="utf-8")
    bearerbox = children.start("bearerbox", [bearerbox_bin, "-v", "2", str(config)], cwd=logs)
    wait_until(lambda: http_get(f"http://{HOST}:{admin_port}/status.txt?password=benchadmin")[0] == 200,
               "bearerbox's admin interface", bearerbox)
    smsbox = children.start("smsbox", [smsbox_bin, "-v", "2", str(config)], cwd=logs)
    wait_until(lambda: http_get(f"http://{HOST}:{sendsms_port}/cgi-bin/sendsms")[0] != 0,
               "smsbox's sendsms interface", smsbox)

    def bound() -> bool:
        status, body = http_get(f"http://{HOST}:{sim.control_port}/binds")
        if status != 200:
            return False
        binds = json.loads(body)["binds"]
        return any(b["account"] == "kannel" and b["state"] == "bound_trx" for b in binds)

    wait_until(bound, "Kannel's transceiver bind at the simulator", bearerbox)
    return KannelProcess(bearerbox, smsbox, sendsms_port, admin_port, config)
