"""MO path: MOs injected at the simulator, forwarded by the gateway to a local application that answers with a
reply text, and the reply MT back at the simulator.

Usage: .venv/bin/python bench/mo.py [--latency-count N] [--latency-rate R] [--count N] [--concurrency C]
                                    [--inject-batch B] [--runs R] [--senders S] [--profile] [--record]

Starts, on 127.0.0.1 in a temporary directory: the simulator (`python -m simulator`, one account owning shortcode
84001, receipts at once), and the gateway (this script with --serve-gateway: `Gateway` with the MO services
installed, on asyncio + uvloop with the collector tuned, as `smppgw run` runs it; an SQLite store in the
directory, synchronous normal; its SMSC's receipt_id_format decimal, the simulator's ids; a forward service `chat`
as the shortcode's default service, its URL the application). The application and the injector run in this process
(asyncio + uvloop): the application is a minimal keep-alive HTTP/1.1 server that notes when each MO arrives and
answers `{"reply": "re <tag>"}`; the injector POSTs `/mo` (paced runs) or `/mo/batch` (throughput runs,
--inject-batch MOs a request) to the simulator's control API over kept-alive connections (`gateway._httpclient`,
the client the forwards use). In batches of 100, the simulator spends about 50 us of CPU per MO and this process
about 28 (bench/RESULTS.md, 2026-11-24 23:55). One MO per request cost them several times that, on the same two
cores the gateway runs on.

Each MO's text is `chat <tag>`, from one of --senders handsets. Times are all wall-clock on this machine:
- to the application: the application's arrival time minus the simulator's MO record time (`received_at` in its
  GET /messages, stamped when it queues the deliver_sm);
- to the reply: the simulator's MT record time of `re <tag>` minus the same MO time.

Phases: a warm-up; a latency run (--latency-count MOs paced at --latency-rate per second, one POST at a time), the
figure to set beside Kannel's sms-service (median 42 ms to the application, 85 ms to the reply, PEERS.md); then
--runs throughput runs (--count MOs, --concurrency POSTs of --inject-batch MOs in flight), reporting MOs
injected/s, forwarded/s (the application's arrivals over the time from the first injection to the last arrival),
replies/s at the simulator, and the latencies under that load, with the CPU each process spent and the store rows
written per MO. The rate set against the target is the slower of forwarded/s and replies/s: a gateway that
forwarded faster than it replied would only be piling replies up. `--profile` samples the gateway with py-spy
during one more throughput run and prints the functions that cost it most. `--record` appends the results to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from e2e_systems import cpu_by_name, store_writer_pid  # noqa: E402

from gateway._httpclient import HttpClient, parse_url  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HOST = "127.0.0.1"
SHORTCODE = "84001"
KANNEL_APP_MS = 42.0
KANNEL_REPLY_MS = 85.0
TARGET_APP_MS = 5.0
TARGET_REPLY_MS = 10.0
TARGET_RATE = 5000.0

SIMULATOR_CONFIG = """\
listen: 127.0.0.1:0
control: 127.0.0.1:0
log_level: info
session:
  window: 10000
receipts:
  delay: {distribution: fixed, mean_s: 0}
store:
  max_messages: 1000000
accounts:
  - system_id: esme
    password: pw
    shortcodes: ["84001"]
    window: 10000
    message_ids: {resp: decimal}
    receipts: {backlog: 1000000}
"""

GATEWAY_CONFIG = """\
node: bench-mo
http:
  listen: "127.0.0.1:0"
store:
  backend: sqlite
  path: {store}
  commit_interval_ms: 0
  synchronous: normal
  writer: {writer}
accounts:
  - id: bench
smscs:
  - name: sim
    host: 127.0.0.1
    port: {smpp_port}
    system_id: esme
    password: pw
    bind: trx
    window: 1000
    receipt_id_format: decimal   # the simulator's ids (message_ids above), set as an operator would; as bench/e2e.py
routes:
  - name: all
    prefix: ""
    smscs: [sim]
logging:
  format: logfmt
  level: warning
billing:
  mo_account: bench
  shortcodes:
    - shortcode: "84001"
      default_service: chat
  services:
{service}"""

FORWARD_SERVICE = """\
    - name: chat
      kind: forward
      shortcode: "84001"
      keyword: CHAT
      forward:
        url: "{app_url}"
        timeout_s: 5
        retry_initial_s: 0.5
"""

AUTOREPLY_SERVICE = """\
    - name: chat
      kind: autoreply
      shortcode: "84001"
      keyword: CHAT
      reply_text: "re {rest}"
"""


# ---- processes ---------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_for(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.log.read_text(errors="replace"))
            if m:
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start within {timeout_s:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start(workdir: Path, name: str, argv: list[str]) -> Child:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
    return Child(name, proc, log)


def serve_gateway(config_path: str) -> int:
    """The gateway child: `smppgw run` with the MO services installed (whether or not Gateway does it itself)."""
    import anyio
    import anyio.abc

    from gateway import _services
    from gateway._cli_run import tune_gc
    from gateway._config import load_config
    from gateway._daemon import Gateway, serve
    from gateway._logging import setup_logging

    cfg = load_config(config_path)
    setup_logging(cfg.logging)

    async def main() -> None:
        gw = Gateway(cfg)
        services = _services.install(gw)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def daemon(*, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
                await serve(gw, stop.wait, task_status=task_status)
                tg.cancel_scope.cancel()

            await tg.start(daemon)
            await tg.start(services.run)
            gc.freeze()  # as `smppgw run` does once started
            print("gateway ready", flush=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
                async for signum in signals:
                    if signum == signal.SIGUSR1:  # the driver asks for counters around each phase
                        st = gw.store.statistics()
                        print("stats " + json.dumps({"commits": st.commits, "rows": st.rows_written,
                                                     "mo": gw.mo.statistics()}), flush=True)
                        continue
                    stop.set()
                    break

    tune_gc()  # the collector's thresholds of `smppgw run`
    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    return 0


# ---- the application ---------------------------------------------------------------------------------------


class _Mo(msgspec.Struct):
    text: str


_MO_DECODER = msgspec.json.Decoder(_Mo)


class App:
    """Notes when each `chat <tag>` MO arrives and answers `{"reply": "re <tag>"}` (HTTP/1.1 keep-alive)."""

    def __init__(self, reply: bool = True) -> None:
        self.arrived: dict[str, float] = {}
        self.port = 0
        self.reply = reply

    def protocol(self) -> asyncio.Protocol:
        app = self

        class Protocol(asyncio.Protocol):
            def __init__(self) -> None:
                self.buf = bytearray()
                self.transport: asyncio.Transport | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

            def data_received(self, data: bytes) -> None:
                buf = self.buf
                buf += data
                out = []
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = bytes(buf[:end]).lower()
                    i = head.find(b"content-length:")
                    length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) \
                        if i >= 0 else 0
                    if len(buf) < end + 4 + length:
                        break
                    body = bytes(buf[end + 4:end + 4 + length])
                    del buf[:end + 4 + length]
                    now = time.time()
                    tag = _MO_DECODER.decode(body).text.partition(" ")[2]
                    app.arrived.setdefault(tag, now)
                    if app.reply:
                        answer = b'{"reply": "re ' + tag.encode() + b'"}'
                        out.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                   + str(len(answer)).encode() + b"\r\n\r\n" + answer)
                    else:
                        out.append(b"HTTP/1.1 204 No Content\r\n\r\n")
                if out and self.transport is not None:
                    self.transport.write(b"".join(out))

        return Protocol()

    async def start(self) -> asyncio.Server:
        server = await asyncio.get_running_loop().create_server(self.protocol, HOST, 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        return server


# ---- driving -----------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    count: int
    injected_s: float = 0.0
    started: float = 0.0
    to_app_ms: list[float] = field(default_factory=list)
    to_reply_ms: list[float] = field(default_factory=list)
    forwarded: int = 0
    replies: int = 0
    forward_span_s: float = 0.0
    reply_span_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    loadavg: str = ""
    commits: int = 0
    rows: int = 0

    @property
    def inject_rate(self) -> float:
        return self.count / self.injected_s if self.injected_s else 0.0

    @property
    def forward_rate(self) -> float:
        return self.forwarded / self.forward_span_s if self.forward_span_s else 0.0

    @property
    def reply_rate(self) -> float:
        return self.replies / self.reply_span_s if self.reply_span_s else 0.0

    @property
    def sustained_rate(self) -> float:
        """MOs per second through the whole path: the slower of the forwards and the replies that were made."""
        rates = [rate for rate, n in ((self.forward_rate, self.forwarded), (self.reply_rate, self.replies)) if n]
        return min(rates) if rates else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Driver:
    def __init__(self, control_url: str, app: App, senders: int) -> None:
        self.control_url = control_url
        self.app = app
        self.senders = [f"4477009{70000 + i:05d}" for i in range(senders)]
        self.client = HttpClient(max_connections_per_origin=256, keep_body_bytes=1 << 20)
        self.mo_url = parse_url(f"{control_url}/mo")
        self.batch_url = parse_url(f"{control_url}/mo/batch")
        self.expect_app = True
        self.expect_reply = True

    async def inject(self, tag: str, sender: str) -> None:
        body = msgspec.json.encode({"from": sender, "to": SHORTCODE, "text": f"chat {tag}"})
        answer = await self.client.post(self.mo_url, body, {"Content-Type": "application/json"})
        if answer.status_code != 202:
            raise RuntimeError(f"POST /mo answered {answer.status_code}: {answer.body[:200]!r}")

    async def inject_batch(self, tags: list[str], who: dict[str, str]) -> None:
        body = msgspec.json.encode({"messages": [{"from": who[tag], "to": SHORTCODE, "text": f"chat {tag}"}
                                                 for tag in tags]})
        answer = await self.client.post(self.batch_url, body, {"Content-Type": "application/json"})
        if answer.status_code != 202 or msgspec.json.decode(answer.body)["injected"] != len(tags):
            raise RuntimeError(f"POST /mo/batch answered {answer.status_code}: {answer.body[:200]!r}")

    async def mt_count(self) -> int:
        """The submit_sm the simulator has taken from the gateway so far."""
        stats = await self.get("/stats")
        return sum(int(a["submitted"]) for a in stats["accounts"])

    async def get(self, path: str, **params: Any) -> Any:
        import urllib.parse

        query = urllib.parse.urlencode(params)
        return await asyncio.to_thread(_get_json, f"{self.control_url}{path}?{query}")

    async def run(self, phase: Phase, *, concurrency: int, rate: float | None, batch: int = 1) -> Phase:
        tags = [f"{phase.name}{i}" for i in range(phase.count)]
        who = {tag: self.senders[i % len(self.senders)] for i, tag in enumerate(tags)}
        phase.loadavg = Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
        writer = store_writer_pid(GATEWAY_PID)
        pids = {"gateway": GATEWAY_PID, **({"store writer": writer} if writer else {}), "simulator": SIMULATOR_PID,
                "driver+app": os.getpid()}
        cpu0 = cpu_by_name(pids)
        commits0, rows0 = await gateway_commits()
        mt0 = await self.mt_count()
        phase.started = time.time()
        t0 = time.perf_counter()
        if rate is not None:
            gap = 1.0 / rate
            for i, tag in enumerate(tags):
                due = t0 + i * gap
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.inject(tag, who[tag])
        else:
            chunks = iter([tags[i:i + batch] for i in range(0, len(tags), batch)])

            async def worker() -> None:
                for chunk in chunks:
                    if len(chunk) == 1:
                        await self.inject(chunk[0], who[chunk[0]])
                    else:
                        await self.inject_batch(chunk, who)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        phase.injected_s = time.perf_counter() - t0
        # Wait for every arrival at the application, then for every reply at the simulator (its count of
        # submit_sm, a cheap GET /stats), at most 60 s; the CPU is read before the listings `collect` asks for,
        # which cost the simulator far more than the run itself when they overlapped it.
        deadline = time.monotonic() + 60
        want = set(tags)
        while (self.expect_app and not want <= self.app.arrived.keys() and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        while self.expect_reply and await self.mt_count() < mt0 + phase.count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cpu1 = cpu_by_name(pids)
        phase.cpu = {k: cpu1[k] - cpu0[k] for k in pids}
        replies = await self.collect(phase, tags, who, deadline if self.expect_reply else time.monotonic())
        commits1, rows1 = await gateway_commits()
        phase.commits, phase.rows = commits1 - commits0, rows1 - rows0
        arrivals = [self.app.arrived[t] for t in tags if t in self.app.arrived]
        mo_times = replies["mo"]
        phase.forwarded = len(arrivals)
        if arrivals:
            phase.forward_span_s = max(arrivals) - min(mo_times.values())
        mt_times = replies["mt"]
        phase.replies = len(mt_times)
        if mt_times:
            phase.reply_span_s = max(mt_times.values()) - min(mo_times.values())
        for tag in tags:
            mo_at = mo_times.get(tag)
            if mo_at is None:
                continue
            if tag in self.app.arrived:
                phase.to_app_ms.append((self.app.arrived[tag] - mo_at) * 1000)
            if tag in mt_times:
                phase.to_reply_ms.append((mt_times[tag] - mo_at) * 1000)
        return phase

    async def collect(self, phase: Phase, tags: list[str], who: dict[str, str], deadline: float
                      ) -> dict[str, dict[str, float]]:
        """The simulator's MO and MT times per tag (queried per handset so no listing exceeds its limit)."""
        mo: dict[str, float] = {}
        mt: dict[str, float] = {}
        per_sender = Counter(who.values())
        while True:
            for sender, n in per_sender.items():
                if sum(1 for t in tags if who[t] == sender and t in mt) >= n:
                    continue
                for m in (await self.get("/messages", direction="mt", destination=sender, since=phase.started,
                                         limit=10000))["messages"]:
                    text = m["text"]
                    if text.startswith("re "):
                        mt.setdefault(text[3:], m["received_at"])
            if len(mt) >= len(tags) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for sender in per_sender:
            for m in (await self.get("/messages", direction="mo", source=sender, since=phase.started,
                                     limit=10000))["messages"]:
                mo.setdefault(m["text"].partition(" ")[2], m["received_at"])
        wanted = set(tags)
        return {"mo": {t: v for t, v in mo.items() if t in wanted}, "mt": {t: v for t, v in mt.items() if t in wanted}}


def _get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


GATEWAY_PID = 0
SIMULATOR_PID = 0
GATEWAY_LOG: Path | None = None


async def gateway_commits() -> tuple[int, int]:
    """The gateway's store commits and rows written so far (it prints its counters on SIGUSR1)."""
    assert GATEWAY_LOG is not None
    before = GATEWAY_LOG.read_text(errors="replace").count("stats {")
    os.kill(GATEWAY_PID, signal.SIGUSR1)
    for _ in range(200):
        text = GATEWAY_LOG.read_text(errors="replace")
        if text.count("stats {") > before:
            stats = json.loads(text.rsplit("stats ", 1)[1].splitlines()[0])
            return int(stats["commits"]), int(stats["rows"])
        await asyncio.sleep(0.01)
    return 0, 0


def describe(p: Phase) -> str:
    cpu = ", ".join(f"{k} {v:.2f} s ({v / max(1, p.count) * 1e6:.0f} us/MO)" for k, v in p.cpu.items())
    return (f"{p.name}: {p.count:,} MOs injected at {p.inject_rate:,.0f}/s; forwarded {p.forwarded:,} at "
            f"{p.forward_rate:,.0f}/s; replies {p.replies:,} at {p.reply_rate:,.0f}/s; "
            f"to the application p50 {pct(p.to_app_ms, 0.5):.2f} ms p99 {pct(p.to_app_ms, 0.99):.2f} ms; "
            f"to the reply p50 {pct(p.to_reply_ms, 0.5):.2f} ms p99 {pct(p.to_reply_ms, 0.99):.2f} ms; "
            f"store commits {p.commits:,} ({p.commits / max(1, p.count):.2f}/MO), rows {p.rows:,} "
            f"({p.rows / max(1, p.count):.1f}/MO); "
            f"CPU: {cpu}; load average before {p.loadavg}")


def profile_summary(path: Path, top: int = 18) -> list[str]:
    """Own-time shares of the functions in a py-spy raw (collapsed stacks) profile, and the biggest modules."""
    own: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frame = stack.split(";")[-1].strip()
        m = re.match(r"^(.*?) \(([^():]+)(?::\d+)?\)$", frame)
        name, file = (m.group(1), m.group(2)) if m else (frame, "?")
        short = "/".join(Path(file).parts[-2:])
        if "site-packages/" in file:
            module = file.split("site-packages/", 1)[1].split("/", 1)[0]
        elif "/lib/python3" in file:
            module = "stdlib " + Path(file).name
        else:
            module = short
        own[f"{name} ({short})"] += int(n)
        modules[module] += int(n)
        total += int(n)
    if not total:
        return ["no samples"]
    out = ["by module (own time):"]
    out += [f"  {100 * c / total:5.1f} %  {name}" for name, c in modules.most_common(10)]
    out.append("by function (own time):")
    out += [f"  {100 * c / total:5.1f} %  {name}" for name, c in own.most_common(top)]
    return out


async def main_async(args: argparse.Namespace, workdir: Path, say: Any) -> list[str]:
    global GATEWAY_PID, SIMULATOR_PID, GATEWAY_LOG
    app = App(reply=not args.no_reply)
    server = await app.start()
    sim_cfg = workdir / "simulator.yaml"
    sim_cfg.write_text(SIMULATOR_CONFIG)
    children: list[Child] = []
    try:
        sim = start(workdir, "simulator", [sys.executable, "-m", "simulator", "-c", str(sim_cfg)])
        children.append(sim)
        smpp_port = int(sim.wait_for(r"simulator smpp listening on \S+:(\d+)").group(1))
        control_port = int(sim.wait_for(r"simulator control listening on \S+:(\d+)").group(1))
        gw_cfg = workdir / "gateway.yaml"
        gw_cfg.write_text(GATEWAY_CONFIG.replace("{store}", str(workdir / "gw.db"))
                          .replace("{writer}", args.store_writer)
                          .replace("{smpp_port}", str(smpp_port))
                          .replace("{service}", AUTOREPLY_SERVICE if args.autoreply else FORWARD_SERVICE)
                          .replace("{app_url}", f"http://{HOST}:{app.port}/mo"))
        gw = start(workdir, "gateway", [sys.executable, str(Path(__file__).resolve()), "--serve-gateway",
                                        str(gw_cfg)])
        children.append(gw)
        gw.wait_for("gateway ready")
        GATEWAY_PID, SIMULATOR_PID, GATEWAY_LOG = gw.proc.pid, sim.proc.pid, gw.log
        control = f"http://{HOST}:{control_port}"
        deadline = time.monotonic() + 30
        while (await asyncio.to_thread(_get_json, f"{control}/health"))["links"] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not bind:\n{gw.tail()}")
            await asyncio.sleep(0.1)
        driver = Driver(control, app, args.senders)
        driver.expect_app = not args.autoreply
        driver.expect_reply = not args.no_reply
        say("warm-up ...")
        await driver.run(Phase("w", 2000), concurrency=args.concurrency, rate=None, batch=args.inject_batch)
        lines = []
        paced = []
        for i, rate in enumerate(args.latency_rate):
            phase = await driver.run(Phase(f"l{i}x", args.latency_count), concurrency=1, rate=rate)
            paced.append(phase)
            lines.append(describe(phase) + f" (paced at {rate:g}/s)")
            say(lines[-1])
        latency = paced[0]
        runs = []
        for r in range(args.runs):
            phase = await driver.run(Phase(f"t{r}", args.count), concurrency=args.concurrency, rate=None,
                                     batch=args.inject_batch)
            runs.append(phase)
            lines.append(describe(phase) + f" ({args.concurrency} POSTs in flight, {args.inject_batch} MOs each)")
            say(lines[-1])
        best = max(runs, key=lambda p: p.sustained_rate) if runs else None
        summary = [
            "",
            f"{'':34}{'ours':>12}{'Kannel':>10}{'target':>10}",
            f"(paced at {args.latency_rate[0]:g} MO/s)",
            f"{'to the application, p50 (paced)':34}{pct(latency.to_app_ms, 0.5):>9.2f} ms{KANNEL_APP_MS:>7.0f} ms"
            f"{TARGET_APP_MS:>7.0f} ms",
            f"{'to the reply, p50 (paced)':34}{pct(latency.to_reply_ms, 0.5):>9.2f} ms{KANNEL_REPLY_MS:>7.0f} ms"
            f"{TARGET_REPLY_MS:>7.0f} ms",
            f"{'to the application, p99 (paced)':34}{pct(latency.to_app_ms, 0.99):>9.2f} ms",
            f"{'to the reply, p99 (paced)':34}{pct(latency.to_reply_ms, 0.99):>9.2f} ms",
        ]
        if best is not None:
            summary.append(f"{'MOs forwarded and replied per s':34}{best.sustained_rate:>12,.0f}{'':>10}"
                           f"{TARGET_RATE:>10,.0f}")
            summary.append(f"{'  (best run: the slower of the two)':34}")
            summary.append(f"{'MOs injected per second (best)':34}{best.inject_rate:>12,.0f}")
        for line in summary:
            say(line)
        lines += summary
        if args.profile:
            prof = workdir / "gateway.prof.txt"
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(GATEWAY_PID), "-f", "raw", "-o", str(prof),
                                    "-r", "500", "--nonblocking"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.0)
            phase = await driver.run(Phase("p", args.count), concurrency=args.concurrency, rate=None,
                                     batch=args.inject_batch)
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
            say(describe(phase) + " (under py-spy)")
            kept = Path(tempfile.gettempdir()) / "bench-mo-gateway.prof.txt"
            kept.write_bytes(prof.read_bytes())
            prof_lines = ["", "gateway profile (py-spy, own time, share of the samples while running):",
                          *profile_summary(prof), f"(raw profile: {kept})"]
            for line in prof_lines:
                say(line)
            lines += prof_lines
        await driver.client.aclose()
        return lines
    finally:
        for child in reversed(children):
            child.stop()
        server.close()


def record(command: str, lines: list[str], store_writer: str) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(line for line in lines if line)
    text = (f"\n## MO path: forward to an application and the reply back ({when})\n\nCommand: `{command}`\n\n"
            f"Setup: simulator, gateway (MO services, SQLite synchronous normal, store.writer {store_writer}, "
            f"receipt_id_format decimal) and "
            f"this driver with the application in three processes on this {os.cpu_count()}-core machine.\n\n"
            f"```\n{body}\n```\n")
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency-count", type=int, default=2000)
    p.add_argument("--latency-rate", type=lambda text: [float(x) for x in text.split(",")], default=[200.0, 1000.0],
                   help="paced runs at these rates, comma-separated; the first is set beside Kannel")
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=8, help="injection POSTs in flight in the throughput runs")
    p.add_argument("--inject-batch", type=int, default=100,
                   help="MOs per injection POST in the throughput runs: above 1 through the simulator's POST "
                        "/mo/batch, so the harness spends its CPU on the MOs rather than on one HTTP request each "
                        "(default: %(default)s)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--senders", type=int, default=100)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--no-reply", action="store_true",
                   help="the application answers 204 (no reply MT): isolates the forward from the reply")
    p.add_argument("--autoreply", action="store_true",
                   help="an auto-reply service instead of the forward (no application): isolates the reply")
    p.add_argument("--store-writer", choices=("process", "inline"), default="process",
                   help="the gateway's store.writer (default: %(default)s)")
    p.add_argument("--record", action="store_true")
    p.add_argument("--serve-gateway", metavar="CONFIG", help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = parser().parse_args()
    if args.serve_gateway:
        return serve_gateway(args.serve_gateway)
    import uvloop

    with tempfile.TemporaryDirectory(prefix="bench-mo-") as tmp:
        lines = uvloop.run(main_async(args, Path(tmp), lambda s: print(s, flush=True)))
    if args.record:
        record("python bench/mo.py " + " ".join(sys.argv[1:]), lines, args.store_writer)
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
