"""Crash safety: kill -9 the gateway (a real process) during a load, restart it, and account for every 202.

Every id that got a 202 reaches a final status after the restart; a message reached the simulator twice only if
it was on the wire at the kill, so at most the windows' worth (sessions x window), and only free messages.
"""

from __future__ import annotations

import collections
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from tests.e2e.gateway_fixture import API_KEY, anyio_backend, gateway_config, gateway_process, listening_url
from tests.e2e.simulator_fixture import RunningSimulator, make_config, running_simulator

pytestmark = pytest.mark.anyio
_ = anyio_backend

FINAL = {"delivered", "undeliverable", "expired", "rejected", "failed", "unknown", "cancelled"}
WINDOW = 20
SESSIONS = 2


async def wait_ready(api: httpx.AsyncClient) -> None:
    with anyio.fail_after(20):
        while (await api.get("/readyz")).status_code != 200:
            await anyio.sleep(0.05)


def write_config(tmp_path: Path, sim: RunningSimulator) -> Path:
    cfg: dict[str, Any] = gateway_config(tmp_path, sim)
    cfg["smscs"][0].update(window=WINDOW, sessions=SESSIONS)
    cfg["accounts"][0]["callback"] = {}
    cfg["logging"] = {"level": "info"}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def test_kill_9_during_load_loses_nothing_and_resends_at_most_the_windows(tmp_path: Path) -> None:
    sim_cfg = make_config(receipts={"delay": {"distribution": "fixed", "mean_s": 0.02}, "tick_s": 0.002},
                          session={"window": 1000, "response_timeout_s": 5, "enquire_link_interval_s": 30})
    async with running_simulator(sim_cfg) as sim:
        cfg_path = write_config(tmp_path, sim)
        log_path = tmp_path / "gateway.log"
        accepted: list[str] = []
        with gateway_process(cfg_path, log_path) as first:
            url = await listening_url(log_path, first)
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                                         timeout=10) as api:
                await wait_ready(api)
                batch = 0
                with anyio.move_on_after(20):
                    while len(accepted) < 3000:
                        r = await api.post("/v1/messages/batch", json={"messages": [
                            {"to": f"4479{batch:04d}{i:04d}", "from": "ACME", "text": f"crash {batch}-{i}"}
                            for i in range(100)]})
                        assert r.status_code == 202, r.text
                        accepted.extend(x["id"] for x in r.json()["results"])
                        batch += 1
                        if batch == 15:
                            first.send_signal(signal.SIGKILL)  # mid-load: windows full, commits in flight
                            break
            first.wait(10)
        assert len(accepted) >= 1000
        async with sim.http() as http:
            before = len((await http.get("/messages", params={"limit": 10000})).json()["messages"])
        with gateway_process(cfg_path, log_path) as second:
            url = await listening_url(log_path, second, 1)
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                                         timeout=10) as api:
                await wait_ready(api)
                pending = set(accepted)
                statuses: dict[str, str] = {}
                with anyio.fail_after(60):
                    while pending:
                        for mid in list(pending)[:200]:
                            r = await api.get(f"/v1/messages/{mid}")
                            assert r.status_code == 200, f"{mid} got a 202 but is unknown after the restart"
                            status = r.json()["status"]
                            if status in FINAL:
                                statuses[mid] = status
                                pending.discard(mid)
                        await anyio.sleep(0.05)
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        assert set(statuses.values()) == {"delivered"}
        async with sim.http() as http:
            received = (await http.get("/messages", params={"limit": 10000})).json()["messages"]
        counts = collections.Counter(m["text"] for m in received)
        twice = {t: n for t, n in counts.items() if n > 1}
        print(f"accepted={len(accepted)} resent={sum(n - 1 for n in twice.values())}")
        assert sum(n - 1 for n in twice.values()) <= WINDOW * SESSIONS, twice
        assert all(n == 2 for n in twice.values())
        assert len(counts) == len(accepted)  # every accepted text reached the SMSC
        assert before <= len(received)

