"""`smppgw check-config`, `smppgw route` and `smppgw run` (argument handling and refusals), and the demo's text."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import yaml

import simulator
from gateway._cli_run import explain_route, main, parse_listen, summarise, watch_signals
from gateway._config import load_config, parse_config
from gateway.demo import DEMO_API_KEY, banner, curl_commands, settings_from_files

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "gateway.yaml"
SIMULATOR = ROOT / "config" / "simulator.yaml"
INVALID = ROOT / "tests" / "unit" / "config" / "invalid" / "out_of_range.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- check-config ------------------------------------------------------------------------------------------


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check-config", str(EXAMPLE))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"ok: {EXAMPLE}"
    assert len(lines) == 2
    assert lines[1].startswith("node gw1: 2 SMSCs (sim 127.0.0.1:2775, sim-quirky 127.0.0.1:2775), 1 account, ")
    assert "numbering GB, FR, US (default GB); http 127.0.0.1:8080; store sqlite ../var/gateway.db" in lines[1]


def test_check_config_invalid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check-config", str(INVALID))
    assert (code, out) == (2, "")
    assert err == 'smscs[0].window: expected an integer >= 1, got 0\n'


def test_check_config_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    code, out, err = run(capsys, "check-config", str(path))
    assert (code, out, err) == (2, "", f"{path}: cannot read: No such file or directory\n")


def test_summary_counts_in_singular_and_plural() -> None:
    cfg = parse_config({"smscs": [{"name": "a", "system_id": "a", "password": "x"}],
                        "routes": [{"prefix": "", "smscs": ["a"]}]}, env={})
    assert summarise(cfg) == ("node gw1: 1 SMSC (a 127.0.0.1:2775), 0 accounts, 1 route, numbering none; "
                              "http 127.0.0.1:8080; store sqlite var/gateway.db")


# ---- route -------------------------------------------------------------------------------------------------


def field(out: str, label: str) -> str:
    m = re.search(rf"^{label}:\s+(.*)$", out, re.M)
    assert m is not None, f"no {label} in {out!r}"
    return m.group(1)


def test_route_national_number_to_the_test_range(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "route", "-c", str(EXAMPLE), "07700 900123")
    assert (code, err) == (0, "")
    assert field(out, "msisdn") == ("447700900123 (trunk prefix '0' and a national number; numbering rule GB "
                                    "from numbering.default_country)")
    assert field(out, "rule") == "uk-test-numbers (prefix '447700900')"
    assert field(out, "prefix") == "'447700900'"
    assert field(out, "route") == "uk-test-numbers: failover sim"
    assert "  1. sim (127.0.0.1:2775)" in out.splitlines()
    assert field(out, "reason").startswith("longest matching prefix '447700900'")


def test_route_weighted_lists_heaviest_first_with_shares(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route", "-c", str(EXAMPLE), "+44 7911 123456")
    assert code == 0
    assert field(out, "msisdn").startswith("447911123456 (international form with '+'")
    assert field(out, "route") == "uk-079: weighted sim=3, sim-quirky=1"
    lines = out.splitlines()
    first = lines.index("  1. sim (127.0.0.1:2775, weight 3 (75%))")
    assert lines[first + 1] == "  2. sim-quirky (127.0.0.1:2775, weight 1 (25%))"


def test_route_source_beats_anyone_at_the_same_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route", "-c", str(EXAMPLE), "07911123456", "--from", "84001")
    assert code == 0
    assert field(out, "rule") == "uk-079-shortcode-84001 (prefix '4479' source '84001')"
    assert field(out, "source") == "84001"


def test_route_failover_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route", "-c", str(EXAMPLE), "447400123456", "--account", "demo")
    assert code == 0
    assert field(out, "route") == "uk: failover sim -> sim-quirky"
    assert field(out, "account") == "demo"
    lines = out.splitlines()
    assert lines[lines.index("  1. sim (127.0.0.1:2775)") + 1] == "  2. sim-quirky (127.0.0.1:2775)"


def test_route_international_prefix_to_the_catch_all(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route", "-c", str(EXAMPLE), "0033 6 12 34 56 78")
    assert code == 0
    assert field(out, "msisdn").startswith("33612345678 (international prefix '00'")
    assert field(out, "rule") == "default (any destination)"


def test_route_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route", "-c", str(EXAMPLE), "07911 123456", "--account", "demo", "--json")
    assert code == 0
    obj = json.loads(out)
    assert obj["msisdn"] == "447911123456"
    assert (obj["country"], obj["country_from"]) == ("GB", "account 'demo'")
    assert (obj["rule"], obj["prefix"], obj["route"], obj["route_kind"]) == ("uk-079", "4479", "uk-079", "weighted")
    assert [(c["smsc"], c["weight"], c["share"]) for c in obj["candidates"]] == [
        ("sim", 3, 0.75), ("sim-quirky", 1, 0.25)]
    assert obj["reason"].startswith("longest matching prefix '4479'")


def test_route_refuses_a_bad_number(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "route", "-c", str(EXAMPLE), "07911 12345x")
    assert (code, out) == (1, "")
    assert err.startswith("'07911 12345x' is not a number the gateway accepts (bad_character): ")
    code, out, _ = run(capsys, "route", "-c", str(EXAMPLE), "12", "--json")
    assert code == 1
    assert json.loads(out)["error"]["code"] == "too_short"


def test_route_unknown_account(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "route", "-c", str(EXAMPLE), "447911123456", "--account", "acme")
    assert (code, out, err) == (2, "", "--account: unknown account 'acme' (known: demo)\n")


def test_route_invalid_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "route", "-c", str(INVALID), "447911123456")
    assert (code, out) == (2, "")
    assert err == 'smscs[0].window: expected an integer >= 1, got 0\n'


def test_route_none_applies_names_what_was_passed_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({
        "smscs": [{"name": "a", "system_id": "a", "password": "x"}],
        "accounts": [{"id": "acme"}],
        "routes": [{"name": "acme-uk", "prefix": "44", "account": "acme", "smscs": ["a"]}],
    }), encoding="utf-8")
    code, out, _ = run(capsys, "route", "-c", str(path), "+447911123456")
    assert code == 1
    assert field(out, "route") == "none"
    assert "passed over (conditions not met): rule 'acme-uk' (prefix '44' account 'acme')" in field(out, "reason")
    assert field(out, "msisdn").endswith("international form only)")


def test_routing_doc_examples_hold() -> None:
    """The routes and the table of docs/routing.md's Examples section agree with the router."""
    text = (ROOT / "docs" / "routing.md").read_text(encoding="utf-8")
    examples = text[text.index("## Examples"):text.index("## `smppgw route`")]
    block = re.search(r"```yaml\n(.*?)```", examples, re.S)
    assert block is not None
    routes = yaml.safe_load(block.group(1))["routes"]
    names = sorted({n for r in routes for n in [*r.get("smscs", []), *r.get("weights", {})]})
    cfg = parse_config({"smscs": [{"name": n, "system_id": n, "password": "x"} for n in names],
                        "accounts": [{"id": "demo"}, {"id": "acme"}], "routes": routes}, env={})
    rows = re.findall(r"^\| `(\d+)` \| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|", examples, re.M)
    assert len(rows) == 5
    for msisdn, source, account, route in rows:
        assert explain_route(cfg, msisdn, source=source, account=account).decision.route is not None
        assert explain_route(cfg, msisdn, source=source, account=account).decision.route.name == route  # type: ignore[union-attr]


# ---- run ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("localhost:65535", ("localhost", 65535)),
    ("[::1]:8080", ("::1", 8080)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "127.0.0.1", "127.0.0.1:65536", "::1:8080", "host:port", ""])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_run_refuses_a_bad_http_override(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "-c", str(EXAMPLE), "--http", "8080"])
    assert info.value.code == 2
    assert "--http: expected HOST:PORT" in capsys.readouterr().err


def test_run_refuses_an_invalid_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", "-c", str(INVALID))
    assert (code, out) == (2, "")
    assert err == 'smscs[0].window: expected an integer >= 1, got 0\n'


def test_run_refuses_a_store_written_by_a_newer_version(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '9')")
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["store"]["path"] = str(db)
    cfg["http"]["listen"] = "127.0.0.1:0"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run(capsys, "run", "-c", str(path))
    assert code == 2  # the unit's RestartPreventExitStatus: a restart cannot help
    assert "refusing to start" in out + err and "schema_version 9 was written by a newer smppgw" in out + err


async def _signals(*signums: int) -> AsyncIterator[int]:
    for s in signums:
        yield s


def test_first_signal_drains_second_exits_at_once() -> None:
    exits: list[int] = []

    async def scenario() -> anyio.Event:
        stop = anyio.Event()
        await watch_signals(_signals(signal.SIGTERM), stop, exit_now=exits.append)
        assert stop.is_set() and exits == []
        await watch_signals(_signals(signal.SIGINT), stop, exit_now=exits.append)
        return stop

    anyio.run(scenario, backend="asyncio")
    assert exits == [128 + signal.SIGINT]


# ---- the demo's text ---------------------------------------------------------------------------------------


def test_demo_settings_from_the_example_files() -> None:
    s = settings_from_files(EXAMPLE, SIMULATOR)
    assert (s.smpp, s.http, s.control) == (("127.0.0.1", 2775), ("127.0.0.1", 8080), ("127.0.0.1", 8775))
    assert s.warnings == ()
    assert s.source == "DEMO"
    assert s.stop_timeout_s > load_config(EXAMPLE).shutdown.drain_s


def test_demo_warns_when_the_configs_disagree(tmp_path: Path) -> None:
    sim = tmp_path / "sim.yaml"
    sim.write_text('listen: "127.0.0.1:2999"\n', encoding="utf-8")
    s = settings_from_files(EXAMPLE, sim)
    assert s.smpp == ("127.0.0.1", 2999)
    assert any("connects to the simulator's 127.0.0.1:2999" in w for w in s.warnings)


def test_demo_curl_commands_paste_into_a_shell() -> None:
    s = settings_from_files(EXAMPLE, SIMULATOR)
    send, status = curl_commands(s)
    argv = shlex.split(send)
    assert argv[:5] == ["curl", "-sS", "-X", "POST", "http://127.0.0.1:8080/v1/messages"]
    assert f"Authorization: Bearer {DEMO_API_KEY}" in argv
    body = json.loads(argv[argv.index("-d") + 1])
    assert body["from"] == "DEMO" and body["text"]
    routed = explain_route(load_config(EXAMPLE), body["to"], source=body["from"], account="demo")
    assert routed.decision.route is not None
    assert shlex.split(status)[-1] == "http://127.0.0.1:8080/v1/messages/ID"
    # The simulator delivers it: no scripted outcome, handset or billing rule matches.
    sim = simulator.load_config(SIMULATOR)
    msisdn = body["to"].lstrip("+")
    assert [r.prefix for r in sim.receipts.outcomes if r.prefix and msisdn.startswith(r.prefix)] == []
    assert not any(h.to_prefix and msisdn.startswith(h.to_prefix) for h in sim.handsets)


def test_demo_banner_warns_about_the_demo_key() -> None:
    text = banner(settings_from_files(EXAMPLE, SIMULATOR))
    assert f"WARNING: '{DEMO_API_KEY}' is a demo API key" in text
    assert "http://127.0.0.1:8775/messages" in text
    assert "Ctrl-C stops both." in text
