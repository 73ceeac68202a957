"""The load generator over SMPP against the simulator, through real loopback sockets (small counts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator._load import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, parse_args, run
from simulator._load_smpp import BindFailed
from simulator._load_stats import Report
from tests.e2e.simulator_fixture import RunningSimulator, anyio_backend, make_config, running_simulator

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
LOAD_ACCOUNT = {"system_id": "load", "password": "load1", "max_binds": 8, "message_ids": {"resp": "hex"}}


def load_config(**overrides: Any) -> dict[str, Any]:
    accounts = overrides.pop("accounts", [LOAD_ACCOUNT])
    cfg = make_config(**overrides)
    cfg["accounts"] = accounts
    return cfg


async def load(sim: RunningSimulator, *args: str) -> Report:
    inv = parse_args(["--smpp", f"127.0.0.1:{sim.smpp_port}", "--password", "load1", "--receipt-timeout", "5",
                      "--response-timeout", "5", *args], environ={})
    return await run(inv)


async def test_closed_loop_mix_gets_an_answer_and_a_receipt_for_every_part() -> None:
    async with running_simulator(load_config()) as sim, sim.http() as http:
        r = await load(sim, "-n", "60", "--binds", "2", "--window", "7", "--mix", "gsm=2,ucs2=1,long=1,long_ucs2=1")
        assert r.ok, r.problems
        # 60 messages: 24 gsm, 12 ucs2, 12 long (3 parts), 12 long_ucs2 (3 parts).
        assert r.messages_started == 60 and r.requests_planned == r.sent == r.ok_requests == 24 + 12 + 36 + 36
        assert r.receipts_expected == r.receipts_received == r.sent and r.receipts_by_status == {"DELIVRD": r.sent}
        assert r.errors == {} and r.unanswered == {} and r.unmatched == 0
        assert r.response is not None and r.receipt is not None and r.response.count == r.sent
        assert r.receipt.p50_s >= 0.04  # the config's 50 ms receipt delay
        assert r.request_per_s > 0 and r.cpu_s > 0
        messages = (await http.get("/messages", params={"account": "load"})).json()["messages"]
        assert len(messages) == 60  # the simulator reassembled every long message
        by_encoding = {m["encoding"] for m in messages}
        assert by_encoding == {"gsm7", "ucs2"}
        assert sorted(m["part_count"] for m in messages).count(3) == 24


async def test_transmitter_binds_get_their_receipts_on_receiver_binds() -> None:
    async with running_simulator(load_config()) as sim:
        r = await load(sim, "-n", "40", "--bind-type", "transmitter", "--binds", "2", "--mix", "gsm")
        assert r.ok, r.problems
        assert r.receipts_received == 40


async def test_open_loop_holds_the_rate() -> None:
    async with running_simulator(load_config()) as sim:
        r = await load(sim, "-n", "40", "--rate", "100", "--mix", "gsm", "--no-receipts")
        assert r.ok, r.problems
        assert r.receipts_expected == 0 and r.receipt is None
        # 40 messages due 10 ms apart: the last is due 390 ms after the first.
        assert 0.35 < 40 / r.request_per_s < 1.0


async def test_duration_stops_starting_messages() -> None:
    async with running_simulator(load_config()) as sim:
        r = await load(sim, "-n", "100000", "--rate", "50", "--duration", "0.3", "--mix", "gsm")
        assert r.ok, r.problems
        assert 10 <= r.messages_started <= 20 and r.messages_planned == r.messages_started


async def test_errors_and_outcomes_are_counted_by_name() -> None:
    outcomes = [{"prefix": "", "mix": {"DELIVRD": 1}},
                {"prefix": "44740000000", "mix": {"UNDELIV": 1}, "err": 1},
                {"prefix": "44740000001", "mix": {"DELIVRD": 1}, "submit_status": "ESME_RINVDSTADR"}]
    cfg = load_config(receipts={"delay": {"distribution": "fixed", "mean_s": 0.01}, "outcomes": outcomes})
    async with running_simulator(cfg) as sim:
        r = await load(sim, "-n", "20", "--mix", "gsm", "--to", "447400000000", "--recipients", "20")
        # 447400000000..09 are undeliverable, 447400000010..19 refused at submit.
        assert r.ok, r.problems  # an error status is an answer
        assert r.ok_requests == 10 and r.errors == {"ESME_RINVDSTADR": 10}
        assert r.receipts_expected == 10 and r.receipts_by_status == {"UNDELIV": 10}


async def test_faults_show_as_errors_rejections_and_unanswered() -> None:
    faults = {"malformed_rate": 0.5, "error_rates": {"ESME_RTHROTTLED": 0.3}}
    async with running_simulator(load_config(faults=faults)) as sim:
        r = await load(sim, "-n", "40", "--mix", "gsm")
        assert r.ok, r.problems
        assert set(r.errors) == {"ESME_RTHROTTLED"} and r.ok_requests + r.errors["ESME_RTHROTTLED"] == 40
        assert r.rejected > 0 and r.receipts_received == r.ok_requests
    async with running_simulator(load_config(faults={"drop_response_rate": 0.5})) as sim:
        r = await load(sim, "-n", "20", "--mix", "gsm", "--response-timeout", "0.5", "--receipt-timeout", "0.5")
        assert not r.ok and r.unanswered["response timeout"] > 0
        assert r.ok_requests + r.unanswered["response timeout"] == 20


async def test_receipts_before_their_resp_are_matched() -> None:
    async with running_simulator(load_config(faults={"receipt_before_resp_rate": 1.0})) as sim:
        r = await load(sim, "-n", "30", "--mix", "gsm")
        assert r.ok, r.problems
        assert r.receipts_received == 30 and r.unmatched == 0


async def test_receipt_ids_in_another_base_need_the_id_policy() -> None:
    quirky = {"system_id": "load", "password": "load1", "message_ids": {"resp": "decimal", "receipt": "hex"},
              "receipts": {"tlvs": False}}
    async with running_simulator(load_config(accounts=[quirky])) as sim:
        r = await load(sim, "-n", "30", "--mix", "gsm", "--ids", "decimal/hex")
        assert r.ok, r.problems
        assert r.receipts_received == 30
        # Read as-is, hex receipt ids do not meet decimal resp ids (30 is 0x1e): the run fails.
        r = await load(sim, "-n", "30", "--mix", "gsm", "--ids", "as-is", "--receipt-timeout", "0.5")
        assert not r.ok and r.receipts_missing > 0 and r.unmatched > 0


async def test_a_refused_bind_raises() -> None:
    async with running_simulator(load_config()) as sim:
        inv = parse_args(["--smpp", f"127.0.0.1:{sim.smpp_port}", "--password", "wrong"], environ={})
        with pytest.raises(BindFailed, match="ESME_RINVPASWD"):
            await run(inv)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMPPGW_LOAD_PASSWORD": "load1"}
    return subprocess.run([sys.executable, "-m", "simulator", "load", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


async def test_the_command_prints_json_and_exits_by_outcome() -> None:
    async with running_simulator(load_config()) as sim:
        target = f"127.0.0.1:{sim.smpp_port}"
        done = await _to_thread(_cli, "--smpp", target, "-n", "20", "--json")
        assert done.returncode == EXIT_OK, done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] and report["receipts_received"] == report["sent"] >= 20
        assert set(report["response"]) == {"count", "p50_s", "p90_s", "p99_s", "max_s", "mean_s"}
        done = await _to_thread(_cli, "--smpp", target, "-n", "5")
        assert done.returncode == EXIT_OK and "p99" in done.stdout and "\r" not in done.stdout  # not a tty
        done = await _to_thread(_cli, "--smpp", target, "--password", "nope")
        assert done.returncode == EXIT_UNREACHABLE and "ESME_RINVPASWD" in done.stderr
    done = await _to_thread(_cli, "--smpp", target, "-n", "1")
    assert done.returncode == EXIT_UNREACHABLE and "cannot connect" in done.stderr


async def test_missing_receipts_fail_the_command() -> None:
    slow = make_config()["receipts"] | {"delay": {"distribution": "fixed", "mean_s": 30}}
    async with running_simulator(load_config(receipts=slow)) as sim:
        done = await _to_thread(_cli, "--smpp", f"127.0.0.1:{sim.smpp_port}", "-n", "3", "--receipt-timeout",
                                "0.3", "--json")
        assert done.returncode == EXIT_FAILED
        assert json.loads(done.stdout)["problems"] == ["3 expected receipts never came"]


async def _to_thread(fn: Any, *args: str) -> subprocess.CompletedProcess[str]:
    import anyio.to_thread

    result: subprocess.CompletedProcess[str] = await anyio.to_thread.run_sync(fn, *args)
    return result
