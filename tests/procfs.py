"""Reading /proc for the tests and the benchmarks: which process is the gateway's store writer."""

from __future__ import annotations

import os

__all__ = ["store_writer_pid"]


def store_writer_pid(gateway_pid: int) -> int | None:
    """The pid of a gateway's store writer process (store.writer: process), None when it runs none."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != gateway_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"gateway._storeproc" in f.read():
                    return int(entry)
        except (OSError, IndexError, ValueError):  # it ended meanwhile
            continue
    return None
