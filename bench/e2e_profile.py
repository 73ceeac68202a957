"""Reads a py-spy `--format raw` profile (collapsed stacks: `frame;frame;...;frame COUNT` per line) into the
functions that cost most, by own time (the sampled frame was on top), by module, and by inclusive time (anywhere
on the stack).

Rule: shares are of all samples in the file, which py-spy takes only while a thread is running (not idle), so
they split the CPU the process spent, not the wall time.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

__all__ = ["summarise_profile"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _module(frame: str) -> str:
    """The module a frame runs in: `gateway/_store.py`, or the package for third-party code (`httpx`)."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return "(native or unknown)"
    path = m.group("file")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in path:
        return "stdlib " + Path(path).name
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else path


def _name(frame: str) -> str:
    """`function (path/to/module.py:123)` as `function (module.py)`: one entry per function, not per line."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    path = m.group("file")
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{m.group('func')} ({short})"


def summarise_profile(path: Path, top: int = 15) -> list[str]:
    """The `top` functions by own time and by inclusive time, as lines of text; an explanation if unreadable."""
    own: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [f"no profile: {exc}"]
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        modules[_module(stack.split(";")[-1])] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return ["no samples (is py-spy allowed to attach here?)"]
    lines = [f"{total} samples; own time:"]
    lines += [f"  {n / total * 100:5.1f} %  {name}" for name, n in own.most_common(top)]
    lines.append("own time by module (third-party code by package):")
    lines += [f"  {n / total * 100:5.1f} %  {name}" for name, n in modules.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {n / total * 100:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    return lines
