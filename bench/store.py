"""Writes per second through group commit: W concurrent writers, each awaiting write(Writes(messages=[m])) in a loop.

    .venv/bin/python bench/store.py [--writers 200] [--seconds 5] [--fsync always|everysec]

SQLite (WAL, synchronous normal) and Redis (AOF, the fsync policy given) in one run; Redis runs on this host.
"""
import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import anyio

from gateway._model import Message, new_message_id
from gateway._redis import RedisStore
from gateway._store import SqliteStore, Writes
from tests.redis_fixture import RedisServer


def message():
    return Message(id=new_message_id(), account="acme", to="447911123456", source="ACME", text="hello world " * 3,
                   created_at=time.time(), expires_at=time.time() + 86400)

async def drive(store, writers, seconds, per_write):
    done = 0
    stop = time.perf_counter() + seconds
    async def writer():
        nonlocal done
        while time.perf_counter() < stop:
            await store.write(Writes(messages=[message() for _ in range(per_write)]))
            done += per_write
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        t0 = time.perf_counter()
        c0 = time.process_time()
        async with anyio.create_task_group() as w:
            for _ in range(writers):
                w.start_soon(writer)
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        s = store.statistics()
        tg.cancel_scope.cancel()
    return done / dt, s.commits / dt, cpu / dt

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--per-write", type=int, default=1)
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp())
    opts = {"backend": "asyncio", "backend_options": {"use_uvloop": True}}
    rate, commits, cpu = anyio.run(drive, SqliteStore(tmp / "gw.db"), a.writers, a.seconds, a.per_write, **opts)
    print(f"sqlite (synchronous=normal): {rate:,.0f} writes/s, {commits:,.0f} commits/s, gateway CPU {cpu:.2f} cores")
    for fsync in ("everysec", "always"):
        srv = RedisServer("/usr/bin/redis-server", tmp / fsync, appendfsync=fsync)
        srv.launch()
        try:
            rate, commits, cpu = anyio.run(drive, RedisStore(srv.url, node="bench", group="bench"), a.writers,
                                           a.seconds, a.per_write, **opts)
            import redis
            info = redis.Redis.from_url(srv.url).info("cpu")
            print(f"redis appendfsync {fsync}: {rate:,.0f} writes/s, {commits:,.0f} commits/s, gateway CPU {cpu:.2f} "
                  f"cores, redis-server CPU {info['used_cpu_sys'] + info['used_cpu_user']:.1f} s")
        finally:
            srv.stop()

main()
