"""Reading /proc for the tests and the benchmarks: which process is the gateway's store writer."""

from __future__ import annotations

import os

__all__ = ["stat_fields", "store_writer_pid"]


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, ... (field 3 of proc(5) is index 0 here)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()


def store_writer_pid(gateway_pid: int) -> int | None:
    """The pid of a gateway's store writer process (store.writer: process), None when it runs none."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(stat_fields(int(entry))[1]) != gateway_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"gateway._storeproc" in f.read():
                    return int(entry)
        except (OSError, IndexError, ValueError):  # it ended meanwhile
            continue
    return None
