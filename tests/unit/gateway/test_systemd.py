"""The notify protocol (sd_notify(3)) as gateway._systemd speaks it: addresses, datagrams, watchdog, status.

The datagram format and the variables (READY, RELOADING with MONOTONIC_USEC, STOPPING, STATUS, WATCHDOG, and
$NOTIFY_SOCKET's `@` for the abstract namespace, $WATCHDOG_USEC / $WATCHDOG_PID) are sd_notify(3)'s and
sd_watchdog_enabled(3)'s. The real socket is exercised end to end in tests/e2e/test_gateway_service.py.
"""

from __future__ import annotations

import time

import pytest

from gateway._systemd import Heartbeat, Notifier, encode_fields, socket_address, status_text


def test_socket_address_path_and_abstract_namespace() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    # sd_notify(3): "@" as the first character means the abstract namespace (a leading NUL byte).
    assert socket_address("@/org/freedesktop/systemd1/notify/123") == "\0/org/freedesktop/systemd1/notify/123"
    for bad in ("relative/path", "@", "vsock:2:1234", ""):
        with pytest.raises(ValueError):
            socket_address(bad)


def test_encode_fields_one_line_per_variable_in_order() -> None:
    assert encode_fields({"READY": "1", "STATUS": "2/2 binds up"}) == b"READY=1\nSTATUS=2/2 binds up"
    # A value cannot span lines: the newline would start another assignment.
    assert encode_fields({"STATUS": "a\nb"}) == b"STATUS=a b"
    assert encode_fields({"STATUS": "caf\u00e9"}) == "STATUS=caf\u00e9".encode()
    for bad in ("ready", "READY=1", "", "1X"):
        with pytest.raises(ValueError):
            encode_fields({bad: "1"})


def test_no_notify_socket_means_every_call_is_a_no_op() -> None:
    n = Notifier.from_environ({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert n.ready("x") is False and n.watchdog() is False and n.stopping() is False
    assert n.sent == 0


def test_from_environ_reads_the_socket_and_the_watchdog() -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": "@notify", "WATCHDOG_USEC": "30000000"}, pid=42)
    assert n.enabled and n.address == "\0notify"
    assert n.watchdog_interval_s == 15.0  # half of WatchdogSec=30s
    same_pid = Notifier.from_environ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"},
                                     pid=42)
    assert same_pid.watchdog_interval_s == 1.0
    # sd_watchdog_enabled(3): WATCHDOG_PID names the one process that must ping; another one must not.
    other_pid = Notifier.from_environ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"},
                                      pid=42)
    assert other_pid.watchdog_interval_s is None
    for bad in ("0", "-5", "abc"):
        assert Notifier.from_environ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": bad}).watchdog_interval_s is None
    # A watchdog without a socket to ping is no watchdog.
    assert Notifier.from_environ({"WATCHDOG_USEC": "2000000"}).watchdog_interval_s is None
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1"}).enabled


def test_messages_of_the_lifecycle() -> None:
    sent: list[bytes] = []
    n = Notifier("/run/test", transport=sent.append)
    assert n.ready("1/1 binds up")
    assert n.reloading(monotonic_usec=123456789)
    assert n.ready()
    assert n.status("draining")
    assert n.watchdog()
    assert n.stopping("draining; 0/1 binds up")
    assert sent == [
        b"READY=1\nSTATUS=1/1 binds up",
        b"RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading the config",
        b"READY=1",
        b"STATUS=draining",
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=draining; 0/1 binds up",
    ]
    assert n.sent == 6


def test_reloading_stamps_clock_monotonic_in_microseconds() -> None:
    sent: list[bytes] = []
    Notifier("/run/test", transport=sent.append).reloading()
    fields = dict(line.split("=", 1) for line in sent[0].decode().splitlines())
    # time.monotonic() is CLOCK_MONOTONIC on Linux, the clock systemd compares MONOTONIC_USEC with.
    assert abs(int(fields["MONOTONIC_USEC"]) - time.monotonic() * 1e6) < 1e6


def test_a_failed_send_is_counted_and_never_raises() -> None:
    def refuse(data: bytes) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    n = Notifier("/run/gone", transport=refuse)
    assert n.ready() is False
    assert n.failed == 1 and n.sent == 0


def test_heartbeat_pings_at_the_interval_while_healthy() -> None:
    hb = Heartbeat(watchdog_s=0.5, status_s=5.0, now=100.0)
    first = hb.tick(100.0, store_open=True)
    assert first.watchdog and not first.status and first.problem is None
    assert hb.next_at() == 100.5
    assert hb.tick(100.5, store_open=True).watchdog
    # The store failed: no ping, and the reason is given (systemd restarts the service if it lasts).
    down = hb.tick(101.0, store_open=False)
    assert not down.watchdog and down.problem == "the store is not open"
    assert hb.tick(101.5, store_open=True).watchdog
    # The loop woke the task more than one interval late: it was not responsive, no ping this time.
    late = hb.tick(102.6, store_open=True)
    assert not late.watchdog and late.problem is not None and "late" in late.problem
    assert hb.tick(103.1, store_open=True).watchdog


def test_heartbeat_refreshes_the_status_every_status_interval() -> None:
    hb = Heartbeat(watchdog_s=None, status_s=5.0, now=0.0)
    assert hb.next_at() == 5.0
    beat = hb.tick(5.0, store_open=True)
    assert beat.status and not beat.watchdog and beat.problem is None
    assert hb.next_at() == 10.0
    assert not hb.tick(7.0, store_open=True).status


def test_status_text_names_binds_and_queue_depth() -> None:
    assert status_text(binds_up=2, binds_total=3, open_messages=40, queued=7, in_flight=5) == (
        "2/3 binds up; 40 messages open, 7 queued at SMSCs, 5 in flight")
    assert status_text(binds_up=0, binds_total=1, open_messages=0, queued=0, in_flight=0, draining=True,
                       note="last reload refused: routes[0]: unknown SMSC 'x'") == (
        "draining; 0/1 binds up; 0 messages open, 0 queued at SMSCs, 0 in flight; "
        "last reload refused: routes[0]: unknown SMSC 'x'")
