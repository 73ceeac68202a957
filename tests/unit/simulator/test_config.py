"""simulator/_config.py: the example config loads; every invalid case names its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator._config import (
    STAT_WORDS,
    ConfigError,
    Delay,
    Faults,
    Secret,
    SimulatorConfig,
    convert,
    load_config,
    parse_config,
    parse_hostport,
    parse_status,
)
from smpp import Status

ROOT = Path(__file__).resolve().parents[3]


def test_the_example_config_loads() -> None:
    cfg = load_config(ROOT / "config" / "simulator.yaml")
    assert cfg.listen == "127.0.0.1:2775" and cfg.control == "127.0.0.1:8775"
    names = [a.system_id for a in cfg.accounts]
    assert "smppgw" in names and "load" in names
    assert repr(cfg.accounts[0].password) == "'***'"
    prefixes = {r.prefix: r for r in cfg.receipts.outcomes}
    assert prefixes["4477009001"].mix == {"UNDELIV": 1}
    assert prefixes["4477009008"].submit_status == "ESME_RINVDSTADR"


def test_defaults_live_on_the_types() -> None:
    cfg = parse_config({})
    assert cfg == SimulatorConfig()
    assert cfg.receipts.delay == Delay() and cfg.faults == Faults() and cfg.accounts == []


def base(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"accounts": [{"system_id": "esme", "password": "pw"}]}
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize(("data", "message"), [
    ({"listne": "x"}, "listne: unknown key"),
    ({"accounts": [{"system_id": "a", "password": "p", "bogus": 1}]}, "accounts[0].bogus: unknown key"),
    ({"accounts": [{"password": "p"}]}, "accounts[0].system_id: required key is missing"),
    (base(session={"window": 0}), "session.window: expected an integer >= 1, got 0"),
    (base(session={"window": "ten"}), 'session.window: expected an integer, got "ten"'),
    (base(listen="nowhere"), 'listen: expected HOST:PORT, got "nowhere"'),
    (base(listen="127.0.0.1:70000"), "listen: port 70000 is above 65535"),
    (base(control="0.0.0.0:8775"), "control: the control API has no authentication: it must listen on "
                                   "loopback, not 0.0.0.0"),
    (base(receipts={"outcomes": [{"prefix": "44x"}]}), 'receipts.outcomes[0].prefix: expected digits, got "44x"'),
    (base(receipts={"outcomes": [{"prefix": "44", "mix": {"DELIVERED": 1}}]}),
     'receipts.outcomes[0].mix.DELIVERED: unknown stat word "DELIVERED": expected one of '
     + ", ".join(STAT_WORDS)),
    (base(receipts={"outcomes": [{"prefix": "44", "mix": {"DELIVRD": 0}}]}),
     "receipts.outcomes[0].mix: the mix needs at least one outcome with a weight above 0"),
    (base(receipts={"outcomes": [{"prefix": "44"}, {"prefix": "44"}]}),
     'receipts.outcomes[1].prefix: prefix "44" appears twice'),
    (base(receipts={"outcomes": [{"prefix": "44", "submit_status": "ESME_NOPE"}]}),
     'receipts.outcomes[0].submit_status: unknown command_status "ESME_NOPE" (use a name such as ESME_RSYSERR '
     'or a number)'),
    (base(receipts={"delay": {"distribution": "uniform", "min_s": 3, "max_s": 1}}),
     "receipts.delay: min_s 3.0 is above max_s 1.0"),
    (base(receipts={"delay": {"distribution": "normal"}}),
     "receipts.delay.distribution: invalid value 'normal'"),
    (base(faults={"error_rates": {"ESME_RSYSERR": 0.7, "ESME_RTHROTTLED": 0.7}}),
     "faults.error_rates: the error rates add up to more than 1"),
    (base(faults={"drop_response_rate": 1.5}), "faults.drop_response_rate: expected a number <= 1.0, got 1.5"),
    ({"accounts": [{"system_id": "a", "password": "p"}, {"system_id": "a", "password": "q"}]},
     'accounts[1].system_id: system_id "a" appears twice'),
    ({"accounts": [{"system_id": "a"}]}, "accounts[0]: set exactly one of password and password_file"),
    ({"accounts": [{"system_id": "a", "password": "123456789"}]},
     "accounts[0].password: SMPP 3.4 passwords are at most 8 characters (§4.1.1)"),
    ({"accounts": [{"system_id": "a", "password": "p", "shortcodes": ["84001"]},
                   {"system_id": "b", "password": "p", "shortcodes": ["84001"]}]},
     "accounts[1].shortcodes[0]: shortcode 84001 already belongs to a"),
    ({"accounts": [{"system_id": "a", "password": "p", "shortcodes": [84001]}]},
     "accounts[0].shortcodes[0]: expected a string, got 84001"),
    ({"accounts": [{"system_id": "a", "password": "p", "billing": {"convention": "service_type"}}]},
     "accounts[0].billing: convention service_type needs price_points"),
    ({"accounts": [{"system_id": "a", "password": "p", "billing": {"convention": "tlv", "tlv_tag": 5}}]},
     "accounts[0].billing.tlv_tag: expected an integer >= 5120, got 5"),
    (base(handsets=[{"reply": "YES"}]), "handsets[0]: set exactly one of contains and pattern"),
    (base(handsets=[{"reply": "YES", "pattern": "("}]),
     "handsets[0].pattern: invalid regular expression: missing ), unterminated subpattern at position 0"),
    (base(handsets=[{"reply": "{2}", "pattern": "PIN ([0-9]+)"}]),
     'handsets[0].reply: "{2}" quotes more than the match has: {0} is the match, {1} to {1} the pattern\'s '
     'groups, and {{ a literal brace'),
    (base(billing={"barred_numbers": [""]}), 'billing.barred_numbers[0]: expected digits, got ""'),
    (base(billing={"insufficient_funds": {"stat": "NOPE"}}),
     'billing.insufficient_funds.stat: unknown stat word "NOPE": expected one of ' + ", ".join(STAT_WORDS)),
])
def test_invalid_configs_name_their_path(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == message


def test_yaml_errors_give_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line 2, column 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_password_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    cfg_file = tmp_path / "sim.yaml"
    cfg_file.write_text("accounts:\n  - system_id: a\n    password_file: secret\n")
    cfg = load_config(cfg_file)
    assert cfg.accounts[0].password == "s3cret" and isinstance(cfg.accounts[0].password, Secret)
    cfg_file.write_text("accounts:\n  - system_id: a\n    password_file: nothere\n")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.password_file: file .*nothere.* cannot be read"):
        load_config(cfg_file)


def test_hostport_and_status_parsing() -> None:
    assert parse_hostport("127.0.0.1:0", "x") == ("127.0.0.1", 0)
    assert parse_hostport("[::1]:2775", "x") == ("::1", 2775)
    assert parse_status("esme_rsyserr", "x") == Status.ESME_RSYSERR
    assert parse_status(0x400, "x") == 0x400
    with pytest.raises(ConfigError, match="x: command_status -1 is not a 32-bit value"):
        parse_status(-1, "x")


def test_convert_prefixes_paths() -> None:
    with pytest.raises(ConfigError) as info:
        convert({"response_delay_s": -1}, Faults, "faults")
    assert str(info.value) == "faults.response_delay_s: expected a number >= 0.0, got -1"


def test_a_reply_without_groups_may_quote_only_the_match() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base(handsets=[{"reply": "{1}", "contains": "x"}]))
    assert str(info.value) == ('handsets[0].reply: "{1}" quotes more than the match has: {0} is the match, '
                               'and {{ a literal brace')
