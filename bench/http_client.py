"""Outgoing HTTP: CPU per request of httpx and of the gateway's own client (gateway/_httpclient.py), one run.

Usage: .venv/bin/python bench/http_client.py [--count N] [--concurrency C] [--rounds R] [--record]

Starts a raw asyncio sink (bench/e2e_wire.py's CallbackServer: httptools, answers `200` with an empty body, on
uvloop) on 127.0.0.1:0 in a subprocess, then, in this process on asyncio + uvloop, POSTs --count requests of a
status callback's shape (a 186-byte JSON body, Content-Type, a timestamp and an HMAC signature header) over
keep-alive connections with --concurrency requests in flight, each with a timeout as the callback sender and the
MO forwarder set one: first with httpx.AsyncClient (a pool of --concurrency connections, its own per-request
timeout), then with gateway HttpClient (the same, its connections gateway/_stream.py's LoopStream, `timeout_s`),
then the same client under `anyio.fail_after` instead (`ours-scope`: how the senders bounded a request before
`timeout_s`), then HttpClient on AnyIO's TCP stream (through its `connect` hook: what it used before LoopStream;
`timeout_s`, which is a cancel scope there), alternating for --rounds rounds after a warm-up of each. Prints
requests/s (wall clock) and CPU microseconds per request of this process (time.process_time: the client's own
cost; the sink's is in the other process), the best round of each, and the ratios. `--record` appends the result
to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import anyio
import anyio.abc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from e2e_wire import CallbackServer

from gateway._httpclient import HttpClient, parse_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BODY = (b'{"id":"01JD3W8Q4ZB5V0M9E7K2R6T1YH","status":"delivered","reference":"order-1234","to":"447911123456",'
        b'"from":"ACME","at":"2026-11-24T18:09:12.250Z","error":null,"parts":1,"charged":false}')
HEADERS = {"content-type": "application/json", "X-Smppgw-Timestamp": "1795889352",
           "X-Smppgw-Signature": "sha256=" + "ab" * 32}
TIMEOUT_S = 5.0

Post = Callable[[], Awaitable[int]]


def run_sink() -> None:
    """The subprocess: serve until stdin closes, after printing the port."""
    import uvloop

    async def main() -> None:
        server = CallbackServer(lambda target, body: None)
        await server.start()
        print(server.port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        await server.stop()

    uvloop.run(main())


async def drive(post: Post, count: int, concurrency: int) -> tuple[float, float]:
    """Send `count` requests with `concurrency` in flight; (wall seconds, CPU seconds of this process)."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await post()
            if status != 200:
                raise RuntimeError(f"answer {status}")

    cpu0, t0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter() - t0, time.process_time() - cpu0


async def measure(port: int, count: int, concurrency: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    url_text = f"http://127.0.0.1:{port}/callbacks/status"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30.0)
    results: dict[str, list[tuple[float, float]]] = {"httpx": [], "ours": [], "ours-scope": [], "ours-anyio": []}

    async def anyio_tcp(scheme: str, host: str, port: int) -> anyio.abc.ByteStream:
        tcp = await anyio.connect_tcp(host, port)
        tcp.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return tcp

    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S, headers={"user-agent": "bench"}) as hx, \
            HttpClient(max_connections_per_origin=concurrency, user_agent="bench") as ours, \
            HttpClient(max_connections_per_origin=concurrency, user_agent="bench", connect=anyio_tcp) as ours_anyio:
        url = parse_url(url_text)

        async def post_httpx() -> int:
            return (await hx.post(url_text, content=BODY, headers=HEADERS)).status_code

        async def post_ours() -> int:
            return (await ours.post(url, BODY, HEADERS, timeout_s=TIMEOUT_S)).status_code

        async def post_ours_scope() -> int:
            with anyio.fail_after(TIMEOUT_S):
                return (await ours.post(url, BODY, HEADERS)).status_code

        async def post_ours_anyio() -> int:
            return (await ours_anyio.post(url, BODY, HEADERS, timeout_s=TIMEOUT_S)).status_code

        posts: dict[str, Post] = {"httpx": post_httpx, "ours": post_ours, "ours-scope": post_ours_scope,
                                  "ours-anyio": post_ours_anyio}
        for name, post in posts.items():
            await drive(post, max(1000, count // 5), concurrency)  # warm-up: connections open, code paths hot
            del name
        for _ in range(rounds):
            for name, post in posts.items():
                results[name].append(await drive(post, count, concurrency))
    return results


def line(name: str, count: int, wall: float, cpu: float) -> str:
    return f"{name:<10} {count / wall:>10,.0f} req/s  {cpu / count * 1e6:>7.1f} us CPU/request  ({count:,} in {wall:.2f} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000, help="requests per round and client (default: 20000)")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: 8)")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds per client (default: 3)")
    ap.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        run_sink()
        return
    load = os.getloadavg()
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        results = anyio.run(measure, port, args.count, args.concurrency, args.rounds,
                            backend="asyncio", backend_options={"use_uvloop": True})
    finally:
        if sink.stdin is not None:
            sink.stdin.close()
        sink.wait(5)
    out = [f"Load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.concurrency} requests in "
           f"flight, {args.count:,} requests per round.", ""]
    best: dict[str, float] = {}
    median: dict[str, float] = {}
    for name, runs in results.items():
        for i, (wall, cpu) in enumerate(runs, 1):
            out.append(line(f"{name}", args.count, wall, cpu) + f"  round {i}")
        per = [cpu / args.count * 1e6 for _, cpu in runs]
        best[name] = min(per)
        median[name] = statistics.median(per)
        out.append(f"{name:<10} best {best[name]:.1f} us CPU/request, median {statistics.median(per):.1f}; best "
                   f"{max(args.count / w for w, _ in runs):,.0f} req/s")
    out.append(f"httpx / ours, CPU per request (best to best): {best['httpx'] / best['ours']:.1f}x")
    for name, what in (("ours-scope", "ours under anyio.fail_after / ours with timeout_s"),
                       ("ours-anyio", "ours on AnyIO's stream / ours on LoopStream")):
        out.append(f"{what}, CPU per request: {best[name] / best['ours']:.2f}x (best to best), "
                   f"{median[name] / median['ours']:.2f}x (median to median)")
    text = "\n".join(out)
    print(text)
    if args.record:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python bench/http_client.py " + shlex.join(sys.argv[1:])
        setup = (f"Setup: {os.cpu_count()}-core machine, CPython {platform.python_version()}, httpx "
                 f"{version('httpx')} (httpcore {version('httpcore')}), anyio {version('anyio')}, httptools "
                 f"{version('httptools')}; the clients in this process on asyncio + uvloop, the sink "
                 f"(bench/e2e_wire.py CallbackServer on uvloop) in a subprocess; a {len(BODY)}-byte JSON body and "
                 f"three headers per POST, each with a {TIMEOUT_S:g} s timeout; CPU is this process's only.")
        with RESULTS.open("a") as f:
            f.write(f"\n## Outgoing HTTP client: httpx against gateway/_httpclient.py ({now})\n\n"
                    f"Command: `{cmd.strip()}`\n\n{setup}\n\n```\n{text}\n```\n")


if __name__ == "__main__":
    main()
