"""systemd's notify protocol (sd_notify(3)), spoken directly: readiness, status, watchdog, reload and stop.

Rule 1: without $NOTIFY_SOCKET every call is a no-op. A send that fails is logged and never raises: the service
manager going away must not take the gateway down with it.
Rule 2: READY=1 is sent once the store is open and the HTTP listener is up; RELOADING=1 (with MONOTONIC_USEC)
opens a reload and READY=1 closes it, whether the new config was taken or refused; STOPPING=1 opens the drain.
Rule 3: WATCHDOG=1 is sent from a task on the main event loop every half $WATCHDOG_USEC, and only while the
gateway is healthy: the store is open and the loop woke the task on time. A blocked loop or a failed store stops
the pings, and systemd restarts the service when WatchdogSec= passes without one.

The protocol: one datagram of newline-separated `VARIABLE=value` lines to the AF_UNIX datagram socket named by
$NOTIFY_SOCKET (a path, or `@name` for the abstract namespace). $WATCHDOG_USEC is the watchdog timeout in
microseconds; when $WATCHDOG_PID is set, only that process may ping.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = [
    "Beat",
    "Heartbeat",
    "Notifier",
    "encode_fields",
    "gateway_status",
    "run_heartbeat",
    "socket_address",
    "status_text",
]

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0
"""How often STATUS= is refreshed (binds up, queue depth)."""

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


def socket_address(value: str) -> str:
    """The AF_UNIX address of a $NOTIFY_SOCKET value: a path as is, `@name` as the abstract name `\\0name`.

    Raises:
        ValueError: neither an absolute path nor `@name` (systemd 254's `vsock:` addresses are not spoken here).
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET {value!r}: expected an absolute path or @abstract-name")


def encode_fields(fields: Mapping[str, str]) -> bytes:
    """One notify datagram: `KEY=value` lines in the order given; a newline inside a value becomes a space.

    Raises:
        ValueError: a key that is not an upper-case variable name.
    """
    lines = []
    for key, value in fields.items():
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a notify variable name: {key!r}")
        lines.append(f"{key}={' '.join(str(value).splitlines())}")
    return "\n".join(lines).encode("utf-8")


def _monotonic_usec() -> int:
    # MONOTONIC_USEC is read against CLOCK_MONOTONIC by the service manager (sd_notify(3), RELOADING=1).
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class _UnixDatagram:
    """Sends datagrams to one AF_UNIX address from a socket opened on first use."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    def __call__(self, data: bytes) -> None:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A full receive queue would otherwise block the event loop; the manager reads promptly.
            self._sock.settimeout(1.0)
        self._sock.sendto(data, self.address)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Notifier:
    """Sends notify messages to the service manager (Rule 1: a no-op when there is none).

    Args:
        address: the AF_UNIX address to send to (see `socket_address`), or None for no service manager.
        watchdog_usec: the watchdog timeout (WatchdogSec=) in microseconds, or None when there is no watchdog.
        transport: sends one datagram (tests hand in a list's `append`); default: an AF_UNIX datagram socket.
    """

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None,
                 transport: Callable[[bytes], None] | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket = _UnixDatagram(address) if transport is None and address is not None else None
        self._transport = transport if transport is not None else self._socket
        self.sent = 0
        self.failed = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> Notifier:
        """The notifier that $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID describe (disabled without them)."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address: str | None = None
        if raw:
            try:
                address = socket_address(raw)
            except ValueError as exc:
                log.warning("systemd: %s; not notifying", exc)
        watchdog: int | None = None
        usec = env.get("WATCHDOG_USEC", "")
        if usec:
            owner = env.get("WATCHDOG_PID", "")
            mine = os.getpid() if pid is None else pid
            if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(mine)):
                watchdog = int(usec)
            elif not usec.isdigit() or int(usec) <= 0:
                log.warning("systemd: WATCHDOG_USEC=%r is not a positive integer; no watchdog pings", usec)
        return cls(address, watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        return self._transport is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between watchdog pings: half the timeout (sd_watchdog_enabled(3)), None without a watchdog."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one notify message; True when it was sent (False: no manager, or the send failed)."""
        transport = self._transport
        if transport is None or not fields:
            return False
        try:
            transport(encode_fields(fields))
        except OSError as exc:
            self.failed += 1
            log.warning("systemd: notify to %r failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: started, or a reload finished (Rule 2)."""
        return self.send({"READY": "1", **({"STATUS": status} if status else {})})

    def reloading(self, monotonic_usec: int | None = None) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC time it began (systemd 253's Type=notify-reload wants it)."""
        usec = _monotonic_usec() if monotonic_usec is None else monotonic_usec
        return self.send({"RELOADING": "1", "MONOTONIC_USEC": str(usec), "STATUS": "reloading the config"})

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: the drain began."""
        return self.send({"STOPPING": "1", **({"STATUS": status} if status else {})})

    def status(self, text: str) -> bool:
        return self.send({"STATUS": text})

    def watchdog(self) -> bool:
        return self.send({"WATCHDOG": "1"})

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()


# ---- status and watchdog ----------------------------------------------------------------------------------


def status_text(*, binds_up: int, binds_total: int, open_messages: int, queued: int, in_flight: int,
                draining: bool = False, note: str | None = None) -> str:
    """The STATUS= line `systemctl status` shows: binds up, queue depth, and a note (a refused reload)."""
    text = (f"{'draining; ' if draining else ''}{binds_up}/{binds_total} binds up; {open_messages} messages open, "
            f"{queued} queued at SMSCs, {in_flight} in flight")
    return f"{text}; {note}" if note else text


def gateway_status(gw: Gateway) -> str:
    """`status_text` for a running gateway."""
    binds_up = binds_total = queued = in_flight = 0
    for connector in gw.connectors.values():
        s = connector.statistics()
        binds_up += s.binds_up
        binds_total += len(s.sessions)
        queued += s.backlog
        in_flight += s.inflight
    error = gw.reloader.last_error
    note = f"last reload refused: {error}" if error else None
    return status_text(binds_up=binds_up, binds_total=binds_total, open_messages=len(gw.core.messages),
                       queued=queued, in_flight=in_flight, draining=gw.draining, note=note)


@dataclass(frozen=True, slots=True)
class Beat:
    """What one heartbeat tick sends.

    Attributes:
        watchdog: send WATCHDOG=1.
        status: refresh STATUS=.
        problem: why the watchdog is not pinged this time (None when healthy or when there is no watchdog).
    """

    watchdog: bool
    status: bool
    problem: str | None = None


class Heartbeat:
    """When to ping the watchdog and refresh the status; time is handed in (monotonic seconds).

    Args:
        watchdog_s: seconds between watchdog pings (None: no watchdog).
        status_s: seconds between STATUS= refreshes.
        now: the current time.
    """

    def __init__(self, *, watchdog_s: float | None, status_s: float = STATUS_INTERVAL_S, now: float) -> None:
        self.watchdog_s = watchdog_s
        self.status_s = status_s
        self._next_watchdog = now if watchdog_s is not None else float("inf")
        self._next_status = now + status_s

    def next_at(self) -> float:
        """When `tick` has something to do next."""
        return min(self._next_watchdog, self._next_status)

    def tick(self, now: float, *, store_open: bool) -> Beat:
        """What to send at `now` (Rule 3: a ping needs an open store and a tick no later than one interval late)."""
        ping = False
        problem: str | None = None
        if self.watchdog_s is not None and now >= self._next_watchdog:
            late = now - self._next_watchdog
            if not store_open:
                problem = "the store is not open"
            elif late > self.watchdog_s:
                problem = f"the event loop answered {late:.1f} s late"
            else:
                ping = True
            self._next_watchdog = now + self.watchdog_s
        refresh = now >= self._next_status
        if refresh:
            self._next_status = now + self.status_s
        return Beat(ping, refresh, problem)


async def run_heartbeat(gw: Gateway, *, status_s: float = STATUS_INTERVAL_S,
                        clock: Callable[[], float] = anyio.current_time,
                        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Ping the watchdog and refresh the status from the main loop until cancelled (Rule 3)."""
    notifier: Notifier = gw.notifier
    if not notifier.enabled:
        task_status.started()
        return
    beat = Heartbeat(watchdog_s=notifier.watchdog_interval_s, status_s=status_s, now=clock())
    if beat.watchdog_s is not None:
        log.info("systemd: watchdog pings every %.1f s", beat.watchdog_s)
    task_status.started()
    reported: str | None = None
    while True:
        await anyio.sleep(max(0.0, beat.next_at() - clock()))
        b = beat.tick(clock(), store_open=gw.store.is_open)
        fields: dict[str, str] = {}
        if b.watchdog:
            fields["WATCHDOG"] = "1"
        if b.status:
            fields["STATUS"] = gateway_status(gw)
        if (b.watchdog or b.problem is not None) and b.problem != reported:
            if b.problem is not None:
                log.error("systemd: watchdog not pinged: %s (systemd restarts the service if it lasts)", b.problem)
            else:
                log.info("systemd: healthy again, watchdog pings resume")
            reported = b.problem
        notifier.send(fields)
