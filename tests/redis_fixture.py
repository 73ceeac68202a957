"""A redis-server of the test's own on 127.0.0.1, a free port and a temporary directory.

Use it from a test module:

    from tests.redis_fixture import RedisServer, redis_server

    __all__ = ["redis_server"]

    def test_something(redis_server: RedisServer) -> None:
        url = redis_server.url

`redis_server` is one server for the whole session (tests keep apart by giving their store a group of their own:
`unique_group()`); `RedisServer.start(directory)` starts a private one (for a test that kills it). Every server
runs with `appendonly yes` and `appendfsync always`, so a write that Redis acknowledged survives `kill()`
(SIGKILL) and `restart()`. Without redis-server installed the tests skip, except under SMPPGW_REQUIRE_INTEROP=1
(CI), where they fail (tests.conftest.require_command).

For Sentinel: `start_replica(directory, primary)` starts a server replicating `primary`, and
`RedisSentinel.start(directory, primary)` a Sentinel (`redis-server FILE --sentinel`) that monitors it.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_command

__all__ = ["RedisSentinel", "RedisServer", "redis_server", "start_replica", "unique_group"]

_groups = itertools.count(1)


def unique_group(name: str = "t") -> str:
    """A deployment group no other test in this process uses (keys never collide on a shared server)."""
    return f"{name}{os.getpid()}x{next(_groups)}"


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies (Linux prctl PR_SET_PDEATHSIG), so no server outlives
    a killed pytest."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; nothing when it is not running."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class RedisServer:
    """One redis-server process; `kill()` and `restart()` keep its port and its data directory."""

    def __init__(self, executable: str, directory: Path, *, appendfsync: str = "always") -> None:
        self.executable = executable
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path, *, appendfsync: str = "always") -> RedisServer:
        """Start a private server in `directory` (skips the test when redis-server is missing)."""
        server = cls(require_command("redis-server", "redis-server"), directory, appendfsync=appendfsync)
        server.launch()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        """Start the process and wait until it answers PING (after loading its AOF)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log"), "--protected-mode", "yes"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent if os.name == "posix" else None)
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 15 s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: what Redis acknowledged must be in its AOF already."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        _terminate(self.process)
        self.process = None

    def restart(self) -> None:
        """Kill the process (SIGKILL) and start it again on the same port and directory."""
        self.kill()
        self.launch()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by group (`unique_group()`)."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


def start_replica(directory: Path, primary: RedisServer, *, timeout_s: float = 10.0) -> RedisServer:
    """Start a server in `directory` that replicates `primary`; returns once its link to the primary is up."""
    import redis  # here: the module's other helpers need no Redis client

    replica = RedisServer.start(directory)
    try:
        # Full syncs at once (Redis waits 5 s by default for more replicas to share one), on both: after a
        # failover the replica is the primary that syncs the old one.
        with redis.Redis(host="127.0.0.1", port=primary.port) as other:
            other.config_set("repl-diskless-sync-delay", 0)
        client = redis.Redis(host="127.0.0.1", port=replica.port)
        client.config_set("repl-diskless-sync-delay", 0)
        client.execute_command("REPLICAOF", "127.0.0.1", primary.port)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + timeout_s
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica on port {replica.port} did not sync with {primary.port} in time")
            time.sleep(0.02)
        client.close()
    except BaseException:
        replica.stop()
        raise
    return replica


class RedisSentinel:
    """One Sentinel (`redis-server FILE --sentinel`) on 127.0.0.1 that monitors one primary under `service`.

    `down_after_ms` and `failover_timeout_ms` are short so that a test sees a failover within seconds of
    killing the primary; with `quorum` 1 this Sentinel alone decides it.
    """

    def __init__(self, executable: str, directory: Path, primary_port: int, *, service: str = "gw",
                 quorum: int = 1, down_after_ms: int = 500, failover_timeout_ms: int = 2000) -> None:
        self.executable = executable
        self.directory = directory
        self.primary_port = primary_port
        self.service = service
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path, primary: RedisServer, **kw: Any) -> RedisSentinel:
        """Start a Sentinel in `directory` monitoring `primary` (skips the test when redis-server is missing);
        returns once it knows every replica the primary has."""
        sentinel = cls(require_command("redis-server", "redis-server"), directory, primary.port, **kw)
        sentinel.launch()
        return sentinel

    def url(self, db: int = 0) -> str:
        """The store's URL: redis+sentinel://127.0.0.1:{port}/{service}/{db}."""
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/{db}"

    def launch(self) -> None:
        """Write the config (Sentinel rewrites it as it learns) and start; wait until it knows the primary's
        replicas and has their state, so that a failover has a replica to promote."""
        import redis

        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        n = self.service
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
                        f"logfile {self.directory / 'sentinel.log'}\n"
                        f"sentinel monitor {n} 127.0.0.1 {self.primary_port} {self.quorum}\n"
                        f"sentinel down-after-milliseconds {n} {self.down_after_ms}\n"
                        f"sentinel failover-timeout {n} {self.failover_timeout_ms}\n"
                        f"sentinel parallel-syncs {n} 1\n")
        self.process = subprocess.Popen([self.executable, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent if os.name == "posix" else None)
        primary = redis.Redis(host="127.0.0.1", port=self.primary_port)
        replicas = int(primary.info("replication").get("connected_slaves", 0))
        primary.close()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        deadline = time.monotonic() + 15.0
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.directory / "sentinel.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the Sentinel exited with {self.process.returncode}: {log}")
                try:
                    # Known, linked and recently heard from (INFO): only such a replica is promoted.
                    ready = [r for r in client.sentinel_slaves(n) if not r["is_disconnected"] and not r["is_sdown"]
                             and r["master-link-status"] == "ok" and int(r["info-refresh"]) < 5000]
                    if len(ready) >= replicas:
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.ResponseError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the Sentinel did not see {replicas} replicas of {n} within 15 s")
                time.sleep(0.05)
        finally:
            client.close()

    def primary_address(self) -> tuple[str, int] | None:
        """The primary this Sentinel names now (SENTINEL GET-MASTER-ADDR-BY-NAME), None when it does not answer."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            got = client.sentinel_get_master_addr_by_name(self.service)
        except redis.exceptions.ConnectionError:
            return None
        finally:
            client.close()
        if not isinstance(got, tuple):  # redis-py types the reply as a tuple or a bool
            return None
        host = got[0].decode() if isinstance(got[0], bytes) else str(got[0])
        return host, int(got[1])

    def log_tail(self, chars: int = 2000) -> str:
        path = self.directory / "sentinel.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        _terminate(self.process)
        self.process = None
