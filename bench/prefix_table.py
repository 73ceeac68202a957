"""Measure routing.PrefixTable against a nested-dict trie on N random prefixes (not a test).

Run from the repository root:
    .venv/bin/python bench/prefix_table.py [N]
Prefixes: N distinct digit strings of 2..12 digits (first digit 1-9), seed 42. Query sets of 200,000
12-digit numbers: "mixed" (half extend a stored prefix, half random), "random", "deep" (stored prefixes
padded with zeros, so the longest match is long). Look-up rates are the best of 3 runs.
"""

from __future__ import annotations

import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing import PrefixTable

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = random.Random(42)
prefixes: dict[str, int] = {}
while len(prefixes) < n:
    length = rng.randint(2, 12)
    prefixes.setdefault(str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=length - 1)), len(prefixes))
pairs = list(prefixes.items())
randoms = ["".join(rng.choices("0123456789", k=12)) for _ in range(200_000)]
mixed = list(randoms)
for i in range(0, len(mixed), 2):
    p = pairs[rng.randrange(n)][0]
    mixed[i] = p + mixed[i][len(p):]
deep = [p.ljust(12, "0") for p, _ in pairs[:200_000]]
QUERIES = {"mixed": mixed, "random": randoms, "deep": deep}


def trie_build() -> dict[object, object]:
    root: dict[object, object] = {}
    for p, v in pairs:
        node = root
        for c in p:
            node = node.setdefault(c, {})  # type: ignore[assignment]
        node[None] = (p, v)
    return root


def trie_lookup(root: dict[object, object], s: str) -> object:
    best = root.get(None)
    node = root
    for c in s:
        node = node.get(c)  # type: ignore[assignment]
        if node is None:
            break
        best = node.get(None, best)
    return best


def measure(name: str, build: Callable[[], object], lookup: Callable[[str], object] | None = None) -> None:
    gc.collect()
    t0 = time.perf_counter()
    table = build()
    build_s = time.perf_counter() - t0
    gc.collect()
    tracemalloc.start()
    again = build()
    mib = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    del again
    look: Callable[[str], object] = lookup or table.lookup  # type: ignore[attr-defined]
    if lookup is not None:
        look = lambda q: trie_lookup(table, q)  # type: ignore[arg-type]  # noqa: E731
    rates = []
    for queries in QUERIES.values():
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for q in queries:
                look(q)
            best = max(best, len(queries) / (time.perf_counter() - t0))
        rates.append(best)
    per_set = ", ".join(f"{k} {r:,.0f}/s" for k, r in zip(QUERIES, rates, strict=True))
    print(f"{name:12} n={n:,}: build {build_s:.2f} s, {mib:.0f} MiB; lookups {per_set}")


measure("PrefixTable", lambda: PrefixTable(pairs))
measure("trie", trie_build, lookup=lambda q: None)
