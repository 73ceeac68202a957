"""The processes of the end-to-end benchmark: the simulator, the gateway (one SQLite node, or several nodes sharing
a redis-server of the benchmark's own) and Kannel, each with a generated config.

Rule 1: every process is started through `Children`, which stops them all (SIGTERM, then SIGKILL after a grace
period) when its `with` block ends, however it ends; each child also gets SIGKILL from the kernel if this
process dies first (PR_SET_PDEATHSIG), so nothing outlives the benchmark. Gateway nodes are started after their
redis-server, so they are stopped (and drain) before it.
Rule 2: everything listens on 127.0.0.1 on ports the system picked (port 0) or, where a program cannot be told
port 0 (Kannel, redis-server), on ports found free just before; every wait for a process to come up is bounded.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.kannel_config import kannel_config
from tests.procfs import stat_fields, store_writer_pid

__all__ = [
    "API_KEY",
    "Child",
    "Children",
    "GatewayProcess",
    "KannelProcess",
    "RedisProcess",
    "SimulatorProcess",
    "cpu_by_name",
    "cpu_seconds",
    "redis_command",
    "start_cluster",
    "start_gateway",
    "start_kannel",
    "start_redis",
    "start_simulator",
    "store_writer_pid",
]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "bench-key"
KANNEL_USER, KANNEL_PASSWORD = "bench", "bench1"
KANNEL_ADMIN_PASSWORD = "benchadmin"
_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, from /proc/PID/stat (fields 14 and 15, clock ticks)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_by_name(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each named process plus its live descendants that no other name covers: a process counts
    for its nearest named ancestor (the gateway's store writer process counts for the gateway, not for the
    driver that started the gateway)."""
    named = {pid: name for name, pid in pids.items()}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = stat_fields(int(entry))
            except (OSError, IndexError):
                continue  # it ended meanwhile
    out = dict.fromkeys(pids, 0.0)
    for pid, fields in stats.items():
        p, hops = pid, 0
        while p not in named and p in stats and hops < 64:
            p, hops = int(stats[p][1]), hops + 1
        if p in named:
            out[named[p]] += (int(fields[11]) + int(fields[12])) / _TICKS
    return out


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
two gateways sharing one would receive each other's receipts. The nodes of one Redis cluster share an account
(`start_simulator`'s `extra_accounts`): the simulator spreads an account's receipts round robin over its binds, so
about (N-1)/N of the receipts of a message reach another node than the one that submitted it, which is the
cross-node path (match_or_park in Redis) a real deployment with several binds takes too."""

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


def start_simulator(children: Children, receipt_delay_s: float,
                    extra_accounts: tuple[str, ...] = ()) -> SimulatorProcess:
    """The simulator with identical accounts for each system (SIMULATOR_ACCOUNTS, and `extra_accounts` with the
    password `gw1`): decimal ids, receipts after the delay, no throughput limit, deliver_sm windows deep enough that
    receipts never wait for the ESME."""
    config = children.workdir / "simulator.yaml"
    accounts = "".join(SIMULATOR_ACCOUNT.format(system_id=name, password=password)
                       for name, password in {**SIMULATOR_ACCOUNTS, **dict.fromkeys(extra_accounts, "gw1")}.items())
    config.write_text(SIMULATOR_CONFIG.format(delay=receipt_delay_s, accounts=accounts), encoding="utf-8")
    child = children.start("simulator", [sys.executable, "-m", "simulator", "-c", str(config)])
    smpp = child.wait_for_line(_SIM_SMPP, 20)
    control = child.wait_for_line(_SIM_CONTROL, 20)
    return SimulatorProcess(child, int(smpp.group(2)), int(control.group(2)))


# ---- the gateway -------------------------------------------------------------------------------------------

GATEWAY_CONFIG = """\
node: {node}
http:
  listen: "127.0.0.1:0"
store:
{store}
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
{nodes}routes:
  - name: all
    prefix: ""
    smscs: [sim]
logging:
  format: logfmt
  level: info
"""

SQLITE_STORE = """\
  backend: sqlite
  path: {path}
  commit_interval_ms: 0
  synchronous: normal
  writer: {writer}"""

REDIS_STORE = """\
  backend: redis
  redis_url: "{url}"
  redis_group: {group}"""

_GW_LISTENING = re.compile(r"http api listening on http://([^:\s]+):(\d+)")


@dataclass
class GatewayProcess:
    child: Child
    port: int
    config: Path


def _smppgw() -> list[str]:
    smppgw = Path(sys.executable).with_name("smppgw")
    return [str(smppgw)] if smppgw.exists() else [sys.executable, "-m", "gateway.cli"]


def _gateway_config(*, node: str, store: str, sim: SimulatorProcess, system_id: str, callback_url: str,
                    callback_batch: int, callback_interval_ms: int, sessions: int, window: int,
                    nodes: dict[str, int] | None = None) -> str:
    nodes_line = ("    nodes: {" + ", ".join(f"{n}: {k}" for n, k in nodes.items()) + "}\n") if nodes else ""
    return GATEWAY_CONFIG.format(
        node=node, store=store, key_sha256=hashlib.sha256(API_KEY.encode()).hexdigest(), callback_url=callback_url,
        callback_batch=callback_batch, callback_interval_ms=callback_interval_ms, smpp_port=sim.smpp_port,
        sessions=sessions, window=window, system_id=system_id, nodes=nodes_line)


def _wait_ready(child: Child, what: str) -> int:
    """The HTTP port `child` logged, once its /readyz answers 200 (store open, the route's bind up)."""
    port = int(child.wait_for_line(_GW_LISTENING, 30).group(2))
    wait_until(lambda: http_get(f"http://{HOST}:{port}/readyz")[0] == 200, f"{what} /readyz", child)
    return port


def start_gateway(children: Children, name: str, sim: SimulatorProcess, *, system_id: str, callback_url: str,
                  callback_batch: int,
                  callback_interval_ms: int, sessions: int, window: int, store_writer: str = "process") -> GatewayProcess:
    """`smppgw run` with a config of its own and an SQLite store in the work directory (store.writer
    `store_writer`), bound to the simulator; returns once /readyz answers 200 (store open, the route's bind up)."""
    store_dir = children.workdir / f"gateway-{name}"
    store_dir.mkdir()
    config = store_dir / "gateway.yaml"
    config.write_text(_gateway_config(
        node=f"bench-{name}", store=SQLITE_STORE.format(path=store_dir / "gateway.db", writer=store_writer), sim=sim, system_id=system_id,
        callback_url=callback_url, callback_batch=callback_batch, callback_interval_ms=callback_interval_ms,
        sessions=sessions, window=window), encoding="utf-8")
    child = children.start(f"gateway-{name}", [*_smppgw(), "run", "-c", str(config)])
    return GatewayProcess(child, _wait_ready(child, f"gateway {name}"), config)


def start_cluster(children: Children, name: str, sim: SimulatorProcess, redis: RedisProcess, *, nodes: int,
                  system_id: str, callback_url: str, callback_batch: int, callback_interval_ms: int, sessions: int,
                  window: int) -> list[GatewayProcess]:
    """`nodes` gateway nodes `gw1`..`gwN` sharing `redis` (one `redis_group`, named after `name`), each with a config
    of its own that differs only in `node`: one SMSC entry whose `nodes` mapping gives every node `sessions`
    transceiver sessions of the simulator account `system_id`, one route to it, so every node claims from the same
    route stream. Starts them all, then returns once each one's /readyz answers 200."""
    store = REDIS_STORE.format(url=redis.url, group=f"bench-{name}")
    node_names = [f"gw{i + 1}" for i in range(nodes)]
    started: list[tuple[Child, Path]] = []
    for node in node_names:
        node_dir = children.workdir / f"{name}-{node}"
        node_dir.mkdir()
        config = node_dir / "gateway.yaml"
        config.write_text(_gateway_config(
            node=node, store=store, sim=sim, system_id=system_id, callback_url=callback_url,
            callback_batch=callback_batch, callback_interval_ms=callback_interval_ms, sessions=sessions, window=window,
            nodes=dict.fromkeys(node_names, sessions)), encoding="utf-8")
        started.append((children.start(f"{name}-{node}", [*_smppgw(), "run", "-c", str(config)], cwd=node_dir),
                        config))
    return [GatewayProcess(child, _wait_ready(child, child.name), config) for child, config in started]


# ---- Redis -------------------------------------------------------------------------------------------------


@dataclass
class RedisProcess:
    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def redis_command(port: int, *args: str, timeout_s: float = 5.0) -> bytes:
    """One command in RESP over a fresh connection; the raw reply (a simple or bulk string's payload)."""
    request = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args)
    with socket.create_connection((HOST, port), timeout=timeout_s) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            data += chunk
        head, _, rest = data.partition(b"\r\n")
        if head[:1] == b"-":
            raise RuntimeError(f"redis-server: {head[1:].decode(errors='replace')}")
        if head[:1] != b"$":
            return head[1:]
        size = int(head[1:])
        while len(rest) < size + 2:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            rest += chunk
        return rest[:size]


def start_redis(children: Children, name: str) -> RedisProcess:
    """Debian's redis-server on 127.0.0.1 and a port found free, data in the work directory: `appendonly yes` with
    `appendfsync everysec` (an acknowledged write survives a crash of redis-server; a crash of the OS may lose the
    last second), no RDB snapshots; returns once it answers PING."""
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(executable).exists():
        raise RuntimeError("redis-server is not installed (Debian package `redis-server`)")
    directory = children.workdir / name
    directory.mkdir()
    port = free_port()
    child = children.start(name, [executable, "--port", str(port), "--bind", HOST, "--dir", str(directory),
                                  "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                                  "--daemonize", "no", "--protected-mode", "yes"], cwd=directory)

    def pong() -> bool:
        try:
            return redis_command(port, "PING", timeout_s=1.0) == b"PONG"
        except (OSError, RuntimeError):
            return False

    wait_until(pong, f"{name} PING", child, timeout_s=15)
    return RedisProcess(child, port)


# ---- Kannel ------------------------------------------------------------------------------------------------


@dataclass
class KannelProcess:
    bearerbox: Child
    smsbox: Child
    sendsms_port: int
    admin_port: int
    config: Path


def bench_kannel_config(*, smpp_port: int, admin_port: int, box_port: int, sendsms_port: int, logs: Path,
                        max_pending: int) -> str:
    """bearerbox + smsbox with one transceiver bind to the simulator (tests/kannel_config.py). Log level 2
    (warnings): at level 0 Kannel logs every message, which costs it about half its rate. No `store-file`: Kannel
    keeps its queue in memory only (the gateway commits every message to SQLite before answering)."""
    return kannel_config(smpp_port=smpp_port, admin_port=admin_port, box_port=box_port, sendsms_port=sendsms_port,
                         logs=logs, admin_password=KANNEL_ADMIN_PASSWORD, sendsms_user=(KANNEL_USER, KANNEL_PASSWORD),
                         log_level=2, max_pending=max_pending, sendsms_max_messages=1)


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
    config.write_text(bench_kannel_config(smpp_port=sim.smpp_port, admin_port=admin_port, box_port=box_port,
                                          sendsms_port=sendsms_port, logs=logs, max_pending=max_pending),
                      encoding="utf-8")
    bearerbox = children.start("bearerbox", [bearerbox_bin, "-v", "2", str(config)], cwd=logs)
    status_url = f"http://{HOST}:{admin_port}/status.txt?password={KANNEL_ADMIN_PASSWORD}"
    wait_until(lambda: http_get(status_url)[0] == 200, "bearerbox's admin interface", bearerbox)
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
