"""End to end over HTTP: messages in, submit_sm to the simulator, a receipt back and a callback out per message,
through the gateway and through Kannel in the same run, with the CPU each process spent.

Usage: .venv/bin/python bench/e2e.py [--count N] [--batch B] [--single] [--concurrency C] [--runs R]
                                     [--callback-batch N] [--single-callback-batch N] [--sessions S] [--window W]
                                     [--store sqlite|redis] [--nodes N[,N...]]
                                     [--skip-kannel] [--json] [--record] [--profile DIR]

Starts, on 127.0.0.1 and in a temporary directory: the simulator (`python -m simulator`, receipts after
--receipt-delay seconds, no throughput limit) with two identical accounts; `smppgw run` with a generated config
(an SQLite store in the temporary directory, the simulator as its SMSC, an account whose callbacks go to this
process's sink); and Kannel (Debian's bearerbox and smsbox: sendsms, one transceiver bind to the same simulator,
`max-pending-submits` 500, `dlr-mask` 1 with a dlr-url per message to the same sink). Then, for each
configuration, a warm-up run and --runs measured runs, interleaved so that each round measures every
configuration under about the same machine load:

- gateway batch: `POST /v1/messages/batch` with --batch messages per request, callbacks batched by the account
  (`callback.batch_max` --callback-batch): the high-volume figure;
- gateway single (--single): `POST /v1/messages`, one message per request, one callback per message
  (`--single-callback-batch N` batches them instead);
- kannel single: `GET /cgi-bin/sendsms`, one message per request, one dlr-url callback per message;
- with `--store redis`, for each N of --nodes: redis N nodes batch: a redis-server of the benchmark's own (`appendonly
  yes`, `appendfsync everysec`, a port found free, data in the temporary directory) and N gateway nodes `gw1`..`gwN`
  (`smppgw run`, `store.backend: redis`, one `redis_group`, each node one transceiver session (--sessions) to the
  simulator through `smscs[].nodes`, one route that all of them claim from), the batch requests round robin over the
  nodes' HTTP endpoints, callbacks as in the gateway batch figure, to the same sink. Every N gets its own
  redis-server and simulator account, so the configurations share nothing but the machine. The gateway batch
  figure (one node, SQLite) is measured in the same rounds beside it; --single and Kannel stay single-node.

Each run prints accepted/s (answers read), submitted/s (submit_sm at the simulator), receipts/s (receipts the
ESME acknowledged), callbacks/s (the end-to-end rate: every rate counts messages over the time from the first
request to the moment the last one got there), accept->callback latency percentiles, the load average before
the run and the CPU seconds each process spent during it (/proc/PID/stat): each gateway node, each redis-server,
the simulator, the driver with the sink. For a Redis configuration it also prints what redis-server spent its time
on during the run (INFO commandstats: calls and microseconds per command). The summary gives the best and the
median of each configuration, the ratios to Kannel and, with Redis, to the single SQLite node. The driver and the sink run in this process on asyncio
(uvloop) with httptools, the same code for both systems. `--record` appends the result to bench/RESULTS.md
with the date, the command and the load average; `--profile DIR` adds one more run per gateway configuration under
py-spy and prints the functions that cost the gateway most (for a Redis configuration: node gw1's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from e2e_drive import GatewayTarget, KannelTarget, RunResult, Target, drive
from e2e_profile import summarise_profile
from e2e_systems import (
    HOST,
    Children,
    http_get,
    redis_command,
    start_cluster,
    start_gateway,
    start_kannel,
    start_redis,
    start_simulator,
    store_writer_pid,
)
from e2e_wire import CallbackServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
TARGET_PER_S = 10_000
TARGET_RATIO = 3.0
KANNEL_MAX_PENDING = 500


@dataclass
class Configuration:
    name: str
    target: Target
    pids: dict[str, int]
    profile_pid: int | None = None
    redis_port: int | None = None
    node_ports: dict[str, int] = field(default_factory=dict)  # a cluster's nodes: name -> HTTP port


def writer_of(gateway_pid: int) -> dict[str, int]:
    """The gateway's store writer process under its own name, so its CPU shows apart from the daemon's."""
    pid = store_writer_pid(gateway_pid)
    return {} if pid is None else {"store writer": pid}


def cluster_name(nodes: int) -> str:
    return f"redis {nodes} node{'s' if nodes > 1 else ''} batch"


NODE_COUNTERS = {"smppgw_messages_accepted_total": "accepted", "smppgw_submits_total": "submit_sm answered",
                 "smppgw_receipts_total": "receipts", "smppgw_callbacks_sent_total": "callbacks",
                 "smppgw_store_commits_total": "commits"}


def node_counters(port: int) -> dict[str, float]:
    """The counters of NODE_COUNTERS from a node's /metrics, each summed over its labels (0 when unreadable)."""
    status, body = http_get(f"http://{HOST}:{port}/metrics")
    totals = dict.fromkeys(NODE_COUNTERS, 0.0)
    if status != 200:
        return totals
    for line in body.decode(errors="replace").splitlines():
        name = line.split(" ", 1)[0].split("{", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def nodes_line(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> str:
    """What each node did between two readings of `node_counters`: how the work spread over the nodes."""
    parts = []
    for node, counters in after.items():
        done = ", ".join(f"{label} {counters[name] - before[node][name]:,.0f}" for name, label in NODE_COUNTERS.items())
        parts.append(f"{node}: {done}")
    return "per node: " + "; ".join(parts)


def command_stats(port: int) -> dict[str, tuple[int, int]]:
    """redis-server's INFO commandstats: command -> (calls, microseconds) since it started."""
    out: dict[str, tuple[int, int]] = {}
    for line in redis_command(port, "INFO", "commandstats").decode().splitlines():
        name, _, values = line.partition(":")
        if not name.startswith("cmdstat_"):
            continue
        fields = dict(v.split("=", 1) for v in values.split(","))
        out[name.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
    return out


def command_line(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], messages: int,
                 top: int = 12) -> str:
    """What redis-server spent its command time on between two `command_stats` readings."""
    diff = {name: (calls - before.get(name, (0, 0))[0], usec - before.get(name, (0, 0))[1])
            for name, (calls, usec) in after.items()}
    busy = sorted(((n, c, u) for n, (c, u) in diff.items() if c), key=lambda x: -x[2])
    total_usec = sum(u for _, _, u in busy)
    total_calls = sum(c for _, c, _ in busy)
    per_msg = total_usec / messages if messages else 0.0
    parts = [f"{n} {c:,} calls {u / 1e6:.2f} s ({u / c:.0f} us/call)" for n, c, u in busy[:top]]
    return (f"redis-server commands: {total_calls:,} calls, {total_usec / 1e6:.2f} s in commands "
            f"({per_msg:.1f} us/msg); " + ", ".join(parts))


def _stop_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}/s"


def run_line(r: RunResult) -> str:
    lat = r.latency_ms
    cpu_total = sum(r.cpu_s.values())
    per_msg = cpu_total / r.accepted * 1e6 if r.accepted else 0.0
    wall = r.wall_s or r.callback_s or 1.0
    cpu = ", ".join(f"{name} {s:.2f} s ({s / wall * 100:.0f} % of a core)" for name, s in r.cpu_s.items())
    return (f"{r.callbacks_per_s:,.0f} msg/s end to end: accepted {fmt_rate(r.accepted_per_s)}, submitted "
            f"{fmt_rate(r.submitted_per_s)}, receipts {fmt_rate(r.receipts_per_s)}, callbacks "
            f"{fmt_rate(r.callbacks_per_s)} ({r.callbacks:,} of {r.count:,} in {r.callback_s:.2f} s); "
            f"accept->callback p50 {lat.get('p50', 0):.0f} ms, p90 {lat.get('p90', 0):.0f} ms, "
            f"p99 {lat.get('p99', 0):.0f} ms; CPU {cpu} (total {cpu_total:.2f} s, {per_msg:.0f} us/msg); "
            f"load {r.loadavg}" + ("" if r.ok else f"; PROBLEMS: {'; '.join(r.problems)}"))


def summarise(results: dict[str, list[RunResult]],
              nodes: list[int] | None = None) -> tuple[list[str], dict[str, dict[str, float]]]:
    lines: list[str] = []
    table: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        rates = [r.callbacks_per_s for r in runs]
        if not rates:
            continue
        best = max(runs, key=lambda r: r.callbacks_per_s)
        table[name] = {"best": best.callbacks_per_s, "median": statistics.median(rates),
                       "clean": float(all(r.ok for r in runs)), "best_accepted": best.accepted_per_s,
                       "best_p50_ms": best.latency_ms.get("p50", 0.0), "best_p99_ms": best.latency_ms.get("p99", 0.0)}
        ok = sum(r.ok for r in runs)
        lines.append(f"{name}: best {best.callbacks_per_s:,.0f} msg/s, median {statistics.median(rates):,.0f} msg/s "
                     f"end to end over {len(runs)} runs ({ok} clean); best run's accept->callback p50 "
                     f"{table[name]['best_p50_ms']:.0f} ms, p99 {table[name]['best_p99_ms']:.0f} ms")
    kannel = table.get("kannel single")
    for name, row in table.items():
        if kannel is None or name == "kannel single":
            continue
        best_ratio = row["best"] / kannel["best"] if kannel["best"] else 0.0
        median_ratio = row["median"] / kannel["median"] if kannel["median"] else 0.0
        row["ratio_best"], row["ratio_median"] = best_ratio, median_ratio
        lines.append(f"{name} / kannel single: {best_ratio:.2f}x (best to best), {median_ratio:.2f}x "
                     f"(median to median)")
    batch = table.get("gateway batch")
    one = table.get(cluster_name(1))
    for n in nodes or []:
        cluster = table.get(cluster_name(n))
        if cluster is None:
            continue
        for base_name, base in (("gateway batch (one SQLite node)", batch), (cluster_name(1), one)):
            if base is None or base is cluster:
                continue
            if not cluster["clean"] or not base["clean"]:
                lines.append(f"{cluster_name(n)} / {base_name}: not compared (a side had runs with problems, "
                             f"whose rates leave out the messages that never ended)")
                continue
            lines.append(f"{cluster_name(n)} / {base_name}: {cluster['best'] / base['best']:.2f}x (best to best), "
                         f"{cluster['median'] / base['median']:.2f}x (median to median)")
    if batch is not None:
        verdict = "meets" if batch["best"] >= TARGET_PER_S else "misses"
        text = f"target {TARGET_PER_S:,} msg/s end to end: {verdict} it (best {batch['best']:,.0f})"
        if "ratio_best" in batch:
            verdict = "meets" if batch["ratio_best"] >= TARGET_RATIO else "misses"
            text += f"; target {TARGET_RATIO:g}x Kannel: {verdict} it ({batch['ratio_best']:.2f}x)"
        lines.append(text)
    return lines, table


def redis_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "redis-server"
    version = next((w for w in out.split() if w.startswith("v=")), "v=?")
    return f"redis-server {version[2:]}"


def record(command: str, args: argparse.Namespace, lines: list[str], loadavg: str) -> None:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    kannel = ("" if args.skip_kannel else f", Kannel 1.4.5 (one transceiver bind, max-pending-submits "
              f"{KANNEL_MAX_PENDING}, dlr-mask 1, no store-file)")
    cluster = ""
    if args.store == "redis":
        cluster = (f", and for each of {', '.join(map(str, args.nodes))} node(s) a {redis_version()} of its own "
                   f"(appendonly yes, appendfsync everysec) with that many gateway nodes (`smppgw run`, store backend "
                   f"redis, {args.sessions} transceiver session(s) per node through `smscs[].nodes`, window "
                   f"{args.window}, one route claimed by every node; batch requests round robin over the nodes' HTTP "
                   f"endpoints; the simulator spreads an account's receipts round robin over its binds, so about "
                   f"(N-1)/N of them reach another node than the sender)")
    setup = (f"Setup: {os.cpu_count()}-core machine, everything on 127.0.0.1: simulator (receipt delay "
             f"{args.receipt_delay:g} s), gateway (`smppgw run`, SQLite store synchronous=normal and "
             f"writer={args.store_writer}, {args.sessions} transceiver session(s), window {args.window})"
             f"{kannel}{cluster}; driver and sink in the "
             f"benchmark process. {args.count:,} messages per run, {args.concurrency} requests in flight, "
             f"batch {args.batch}, gateway batch figure with callbacks batched by {args.callback_batch} "
             f"(every {args.callback_interval_ms} ms at most), gateway single figure with callbacks batched by "
             f"{args.single_callback_batch} (1: one callback per message, as Kannel). "
             f"Load average before the runs: {loadavg}.")
    title = ("one SQLite node and Redis nodes" + ("" if args.skip_kannel else ", and Kannel")
             if args.store == "redis" else "gateway and Kannel")
    body = [f"\n## End to end over HTTP: {title} ({date})\n", f"Command: `{command}`\n", setup + "\n",
            *[f"- {line}" for line in lines], ""]
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(body))


def _node_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,N,...: {text!r}") from None
    if not counts or any(not 1 <= n <= 16 for n in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"node counts must be distinct, from 1 to 16: {text!r}")
    return counts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--count", type=int, default=50_000, help="messages per run (default: %(default)s)")
    p.add_argument("--batch", type=int, default=500, help="messages per batch request (default: %(default)s)")
    p.add_argument("--single", action="store_true", help="also measure the gateway with one message per request")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (default: %(default)s)")
    p.add_argument("--runs", type=int, default=3, help="measured runs per configuration (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10_000, help="messages in each warm-up run (default: %(default)s)")
    p.add_argument("--skip-kannel", action="store_true", help="do not start or measure Kannel")
    p.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                   help="redis: also measure gateway nodes sharing a redis-server, beside the single SQLite node "
                        "(default: %(default)s)")
    p.add_argument("--store-writer", choices=("process", "inline"), default="process",
                   help="the SQLite gateways' store.writer: the store's SQL in a process of its own, or in the "
                        "daemon's event loop (default: %(default)s)")
    p.add_argument("--nodes", type=_node_counts, default=[2], metavar="N[,N...]",
                   help="with --store redis, the number of gateway nodes; several counts (1,2) measure a cluster "
                        "of each size in the same rounds (default: 2)")
    p.add_argument("--callback-batch", type=int, default=500,
                   help="the gateway account's callback.batch_max for the batch figure (default: %(default)s)")
    p.add_argument("--callback-interval-ms", type=int, default=100,
                   help="its callback.batch_interval_ms (default: %(default)s)")
    p.add_argument("--single-callback-batch", type=int, default=1,
                   help="callback.batch_max for the single figure (default: %(default)s, one callback per message "
                        "as Kannel makes)")
    p.add_argument("--sessions", type=int, default=1, help="the gateway's sessions to the simulator, per node "
                                                           "(default: %(default)s, as Kannel's one bind)")
    p.add_argument("--window", type=int, default=KANNEL_MAX_PENDING,
                   help="the gateway's window per session (default: %(default)s, as Kannel's max-pending-submits)")
    p.add_argument("--receipt-delay", type=float, default=0.0, help="the simulator's receipt delay in s "
                                                                    "(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object instead")
    p.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="one more run per gateway configuration under py-spy; raw profiles written to DIR")
    return p


async def main_async(args: argparse.Namespace, say: Callable[[str], None], workdir: Path,
                     children: Children) -> tuple[dict[str, list[RunResult]], dict[str, list[str]],
                                                  dict[str, list[str]]]:
    sink = CallbackServer(lambda target, body: None)
    await sink.start()
    sink_url = f"http://127.0.0.1:{sink.port}/callbacks"

    def bind_sink(handler: Callable[[bytes, bytes], None]) -> None:
        sink.on_request = handler

    cluster_sizes: list[int] = args.nodes if args.store == "redis" else []
    sim = start_simulator(children, args.receipt_delay, tuple(f"gwredis{n}" for n in cluster_sizes))
    say(f"simulator pid {sim.child.pid}, smpp port {sim.smpp_port}; sink port {sink.port}; work dir {workdir}")
    me = os.getpid()
    configs: list[Configuration] = []
    gw = start_gateway(children, "batch", sim, system_id="gwbatch", callback_url=sink_url, callback_batch=args.callback_batch,
                       callback_interval_ms=args.callback_interval_ms, sessions=args.sessions, window=args.window,
                       store_writer=args.store_writer)
    say(f"gateway (batch) pid {gw.child.pid}, http port {gw.port}")
    configs.append(Configuration("gateway batch", GatewayTarget([gw.port], args.batch, "gateway batch", "gwbatch"),
                                 {"gateway": gw.child.pid, **writer_of(gw.child.pid), "simulator": sim.child.pid,
                                  "driver+sink": me},
                                 gw.child.pid))
    if args.single:
        gw1 = start_gateway(children, "single", sim, system_id="gwsingle", callback_url=sink_url,
                            callback_batch=args.single_callback_batch,
                            callback_interval_ms=args.callback_interval_ms, sessions=args.sessions,
                            window=args.window, store_writer=args.store_writer)
        say(f"gateway (single) pid {gw1.child.pid}, http port {gw1.port}")
        configs.append(Configuration("gateway single", GatewayTarget([gw1.port], 0, "gateway single", "gwsingle"),
                                     {"gateway": gw1.child.pid, **writer_of(gw1.child.pid), "simulator": sim.child.pid,
                                      "driver+sink": me},
                                     gw1.child.pid))
    for n in cluster_sizes:
        redis = start_redis(children, f"redis-{n}n")
        gws = start_cluster(children, f"cluster{n}", sim, redis, nodes=n, system_id=f"gwredis{n}",
                            callback_url=sink_url, callback_batch=args.callback_batch,
                            callback_interval_ms=args.callback_interval_ms, sessions=args.sessions, window=args.window)
        say(f"{cluster_name(n)}: redis-server pid {redis.child.pid} port {redis.port}; "
            + ", ".join(f"gw{i + 1} pid {g.child.pid} http port {g.port}" for i, g in enumerate(gws)))
        pids = {f"gw{i + 1}": g.child.pid for i, g in enumerate(gws)}
        configs.append(Configuration(
            cluster_name(n), GatewayTarget([g.port for g in gws], args.batch, cluster_name(n), f"gwredis{n}"),
            pids | {"redis-server": redis.child.pid, "simulator": sim.child.pid, "driver+sink": me},
            gws[0].child.pid, redis.port, {f"gw{i + 1}": g.port for i, g in enumerate(gws)}))
    if not args.skip_kannel:
        k = start_kannel(children, sim, max_pending=KANNEL_MAX_PENDING)
        say(f"kannel bearerbox pid {k.bearerbox.pid}, smsbox pid {k.smsbox.pid}, sendsms port {k.sendsms_port}")
        configs.append(Configuration("kannel single", KannelTarget([k.sendsms_port]),
                                     {"bearerbox": k.bearerbox.pid, "smsbox": k.smsbox.pid,
                                      "simulator": sim.child.pid, "driver+sink": me}))
    next_key = 1
    notes: dict[str, list[str]] = {}

    async def one(cfg: Configuration, count: int) -> tuple[RunResult, str]:
        nonlocal next_key
        first = next_key
        next_key += count
        before = command_stats(cfg.redis_port) if cfg.redis_port is not None else {}
        nodes_before = {node: node_counters(port) for node, port in cfg.node_ports.items()}
        r = await drive(cfg.target, first_key=first, count=count, concurrency=args.concurrency, sink=sink,
                        stats_port=sim.control_port, pids=cfg.pids, bind_sink=bind_sink)
        if cfg.redis_port is None:
            return r, ""
        nodes_after = {node: node_counters(port) for node, port in cfg.node_ports.items()}
        return r, (command_line(before, command_stats(cfg.redis_port), r.accepted) + "; "
                   + nodes_line(nodes_before, nodes_after))

    results: dict[str, list[RunResult]] = {c.name: [] for c in configs}
    for cfg in configs:
        r, commands = await one(cfg, min(args.warmup, args.count))
        say(f"{cfg.name} warm-up: {run_line(r)}")
    for i in range(args.runs):
        for cfg in configs:
            r, commands = await one(cfg, args.count)
            results[cfg.name].append(r)
            say(f"{cfg.name} run {i + 1}: {run_line(r)}")
            if commands:
                say(f"{cfg.name} run {i + 1}: {commands}")
                notes.setdefault(cfg.name, []).append(commands)
    profiles: dict[str, list[str]] = {}
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        for cfg in configs:
            if cfg.profile_pid is None:
                continue
            out = args.profile / f"{cfg.name.replace(' ', '-')}.txt"
            spy_log = out.with_suffix(".log").open("wb")
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                    str(cfg.profile_pid), "--rate", "250", "--format", "raw", "--output", str(out)],
                                   stdout=spy_log, stderr=subprocess.STDOUT)
            try:
                await asyncio.sleep(1.0)
                r, commands = await one(cfg, args.count)
            finally:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
                spy_log.close()
            say(f"{cfg.name} under py-spy (not counted): {run_line(r)}")
            if commands:
                say(f"{cfg.name} under py-spy: {commands}")
            profiles[cfg.name] = summarise_profile(out)
            say(f"{cfg.name}: the gateway's costliest functions (py-spy, {out}):")
            for line in profiles[cfg.name]:
                say("  " + line)
    await sink.stop()
    return results, profiles, notes


def main() -> int:
    args = _parser().parse_args()
    command = "python bench/e2e.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on)
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    say(f"load average before the runs: {loadavg}")
    with tempfile.TemporaryDirectory(prefix="smppgw-e2e-") as tmp, Children(Path(tmp)) as children:
        try:
            results, profiles, notes = uvloop.run(main_async(args, say, Path(tmp), children))
        except BaseException:
            for child in children.children:
                print(f"----- {child.name} (pid {child.pid}, last lines of its log) -----\n{child.tail()}",
                      file=sys.stderr)
            raise
    lines, table = summarise(results, args.nodes if args.store == "redis" else None)
    for line in lines:
        say(line)
    if args.json:
        print(json.dumps({"command": command, "loadavg_before": loadavg, "settings": vars(args) | {
            "profile": str(args.profile) if args.profile else None},
            "runs": {name: [r.to_json() for r in runs] for name, runs in results.items()},
            "summary": table, "profiles": profiles, "redis_commands": notes}, indent=2))
    if args.record:
        runs = [f"{name} run {i + 1}: {run_line(r)}" + (f"; {notes[name][i]}" if name in notes else "")
                for name, rs in results.items() for i, r in enumerate(rs)]
        record(command, args, runs + lines, loadavg)
        say(f"recorded in {RESULTS.relative_to(ROOT)}")
    return 0 if all(r.ok for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
