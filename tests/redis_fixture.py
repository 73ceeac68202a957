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

import pytest

from tests.conftest import require_command

__all__ = ["RedisServer", "redis_server", "unique_group"]

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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
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
