"""MO intake: the gateway records each MO (reassembled when long) durably, then processes it in order."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from gateway._mo import decode_mo
from tests.e2e.gateway_fixture import anyio_backend, gateway_config, running_gateway
from tests.e2e.simulator_fixture import make_config, running_simulator

pytestmark = pytest.mark.anyio
_ = anyio_backend


async def test_short_and_long_mo_are_recorded_and_processed(tmp_path: Path) -> None:
    long_text = "Привет " * 30 + "end"
    async with running_simulator(make_config()) as sim, running_gateway(gateway_config(tmp_path, sim)) as gw:
        async with sim.http() as http:
            for text in ("hello there", long_text):
                r = await http.post("/mo", json={"from": "447911123456", "to": "84001", "text": text})
                assert r.status_code == 202, r.text
        with anyio.fail_after(10):
            while len(gw.gw.store.docs("mo", state="processed")) < 2:
                await anyio.sleep(0.05)
        records = [decode_mo(d) for d in gw.gw.store.docs("mo")]
        assert [r.text for r in records] == ["hello there", long_text]
        assert records[1].parts > 1 and records[0].parts == 1
        assert {r.msisdn for r in records} == {"447911123456"}
        assert {r.to for r in records} == {"84001"}
        assert gw.gw.store.docs("mo_part", state="pending") == []
