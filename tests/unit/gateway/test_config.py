"""The gateway's config: the example files load, every invalid case fails with its exact message, secrets stay
hidden, ${VAR} works, and docs/config.md documents every key with its real default."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
import yaml

import simulator
from gateway._cli_run import main as cli_main
from gateway._config import Config, ConfigError, hash_api_key, load_config, parse_config
from gateway._configload import Secret

ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = ROOT / "config"
INVALID_DIR = (ROOT / "tests" / "unit" / "config" / "invalid").resolve()
DOCS = ROOT / "docs" / "config.md"

MINIMAL = """\
smscs:
  - {name: a, system_id: a, password: x}
routes:
  - {prefix: "44", smscs: [a]}
"""


def _write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- the example files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_file_in_config_loads(path: Path) -> None:
    if path.name.startswith("simulator"):
        assert simulator.load_config(path).accounts
    else:
        cfg = load_config(path, env={})
        assert cfg.smscs and cfg.routes and cfg.accounts


def test_example_files_work_together() -> None:
    """Every SMSC of config/gateway.yaml binds to an account of config/simulator.yaml, at its address."""
    gw = load_config(CONFIG_DIR / "gateway.yaml", env={})
    sim = simulator.load_config(CONFIG_DIR / "simulator.yaml")
    host, port = sim.listen.rsplit(":", 1)
    accounts = {a.system_id: a for a in sim.accounts}
    for s in gw.smscs:
        assert (s.host, s.port) == (host, int(port)), s.name
        assert s.system_id in accounts, s.name
        assert s.password == accounts[s.system_id].password, s.name
        assert s.bind.value.replace("trx", "transceiver") in accounts[s.system_id].bind_types


def test_example_config_demo_account_and_defaults() -> None:
    cfg = load_config(CONFIG_DIR / "gateway.yaml", env={})
    demo = cfg.account("demo")
    assert demo is not None
    assert [k.sha256 for k in demo.api_keys] == [hash_api_key("demo-key-change-me")]
    assert cfg.http.listen == "127.0.0.1:8080"
    assert not Path(cfg.store.path).is_absolute()
    assert (Path(cfg.base_dir) / cfg.store.path).resolve() == ROOT / "var" / "gateway.db"
    plan = cfg.numbering_plan()
    assert cfg.numbering.default_country == "GB"
    assert plan.normalise("07911 123456", country="GB") == "447911123456"
    assert plan.normalise("0044 7911 123456", country="GB") == "447911123456"


def test_example_routes_cover_the_simulator_test_numbers() -> None:
    """Each scripted prefix of the simulator reaches an SMSC bound to the simulator's gateway account."""
    cfg = load_config(CONFIG_DIR / "gateway.yaml", env={})
    sim = simulator.load_config(CONFIG_DIR / "simulator.yaml")
    router = cfg.mt_router()
    main_account = {s.name for s in cfg.smscs if s.system_id == "smppgw"}
    for rule in sim.receipts.outcomes:
        msisdn = (rule.prefix + "000000000000")[:12]
        decision = router.decide(msisdn, source="DEMO", account="demo")
        assert decision.route is not None, rule.prefix
        if rule.prefix.startswith("447700900"):
            # The scripted outcomes belong to the main account's receipts: only that SMSC.
            assert set(decision.route.smscs) <= main_account, rule.prefix


# ---- invalid cases -----------------------------------------------------------------------------------------


def _invalid_cases() -> Iterator[Path]:
    return iter(sorted(INVALID_DIR.glob("*.yaml")))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = re.fullmatch(r"# expect: (.+)", first)
    assert m is not None, f"{path.name}: the first line must be '# expect: <message>'"
    return m.group(1).replace("{dir}", str(INVALID_DIR))


def test_there_are_invalid_cases() -> None:
    assert len(list(_invalid_cases())) >= 13


@pytest.mark.parametrize("path", list(_invalid_cases()), ids=lambda p: p.stem)
def test_invalid_case_fails_with_its_message(path: Path) -> None:
    expected = _expected(path)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == expected
    assert str(info.value) == f"{info.value.path}: {info.value.problem}"


@pytest.mark.parametrize("path", list(_invalid_cases()), ids=lambda p: p.stem)
def test_check_config_prints_the_message_and_exits_2(path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMPPGW_TEST_UNSET", raising=False)
    monkeypatch.delenv("SMPPGW_TEST_WINDOW", raising=False)
    assert cli_main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == _expected(path) + "\n"


# ---- ${VAR} ------------------------------------------------------------------------------------------------


ENV_CONFIG = """\
smscs:
  - name: a
    system_id: "${SMPPGW_TEST_SYSTEM_ID:-gw}"
    password: "${SMPPGW_TEST_PASSWORD}"
    port: "${SMPPGW_TEST_PORT:-2776}"
    registered_delivery: "${SMPPGW_TEST_RECEIPTS:-false}"
    throughput_per_s: "${SMPPGW_TEST_TPS:-12.5}"
routes:
  - {prefix: "44", smscs: [a]}
"""


def test_env_default_is_used_when_unset(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ENV_CONFIG), env={"SMPPGW_TEST_PASSWORD": "pw"})
    s = cfg.smscs[0]
    assert (s.system_id, s.password, s.port, s.registered_delivery, s.throughput_per_s) == (
        "gw", "pw", 2776, False, 12.5)


def test_env_value_wins_over_default(tmp_path: Path) -> None:
    env = {"SMPPGW_TEST_PASSWORD": "pw", "SMPPGW_TEST_SYSTEM_ID": "other", "SMPPGW_TEST_PORT": "2777",
           "SMPPGW_TEST_RECEIPTS": "true", "SMPPGW_TEST_TPS": "50"}
    s = load_config(_write(tmp_path, ENV_CONFIG), env=env).smscs[0]
    assert (s.system_id, s.port, s.registered_delivery, s.throughput_per_s) == ("other", 2777, True, 50.0)


def test_env_empty_default(tmp_path: Path) -> None:
    text = MINIMAL.replace("system_id: a", 'system_id: a, system_type: "${SMPPGW_TEST_ST:-}"')
    assert load_config(_write(tmp_path, text), env={}).smscs[0].system_type == ""


def test_env_value_cannot_change_the_structure(tmp_path: Path) -> None:
    """Rule 1 of _configload: substitution happens inside strings, after parsing."""
    text = MINIMAL.replace("password: x", 'password: "${SMPPGW_TEST_PASSWORD}"')
    hostile = "x\nwindow: 9999\n]"
    cfg = load_config(_write(tmp_path, text), env={"SMPPGW_TEST_PASSWORD": hostile})
    assert cfg.smscs[0].password == hostile
    assert cfg.smscs[0].window == 10


def test_example_password_comes_from_the_environment() -> None:
    path = CONFIG_DIR / "gateway.yaml"
    assert load_config(path, env={}).smsc("sim").password == "gwpass1"
    assert load_config(path, env={"SMPPGW_SIM_PASSWORD": "from-env"}).smsc("sim").password == "from-env"


# ---- secrets -----------------------------------------------------------------------------------------------


def test_secret_repr_is_hidden() -> None:
    s = Secret("hunter22")
    assert repr(s) == "'***'"
    assert s == "hunter22"
    assert repr([s]) == "['***']"


def test_password_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "sim.pw").write_text("  from-file\n", encoding="utf-8")
    (tmp_path / "cb.key").write_text("hmac-key\n", encoding="utf-8")
    text = MINIMAL.replace("password: x", "password: ignored, password_file: secrets/sim.pw") + (
        "accounts:\n  - id: acme\n    callback: {url: 'http://127.0.0.1:1/cb', secret_file: cb.key}\n")
    cfg = load_config(_write(tmp_path, text), env={})
    assert cfg.smscs[0].password == "from-file"
    assert isinstance(cfg.smscs[0].password, Secret)
    assert cfg.accounts[0].callback.secret == "hmac-key"
    assert isinstance(cfg.accounts[0].callback.secret, Secret)


def test_secrets_never_appear_in_str_or_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    password, hmac_key = "Pw-7f3a9c", "Hm-51d0e2"
    text = MINIMAL.replace("password: x", 'password: "${SMPPGW_TEST_PASSWORD}"') + (
        "accounts:\n  - id: acme\n    callback: {url: 'http://127.0.0.1:1/cb', secret: '${SMPPGW_TEST_HMAC}'}\n")
    path = _write(tmp_path, text)
    env = {"SMPPGW_TEST_PASSWORD": password, "SMPPGW_TEST_HMAC": hmac_key}
    cfg = load_config(path, env=env)
    assert cfg.smscs[0].password == password
    for shown in (str(cfg), repr(cfg), str(cfg.smscs), repr(cfg.accounts[0])):
        assert password not in shown and hmac_key not in shown
        assert "'***'" in shown
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"ok: {path}\n")
    assert password not in out + err and hmac_key not in out + err


# ---- parse_config directly ---------------------------------------------------------------------------------


def test_defaults_live_on_the_types() -> None:
    cfg = parse_config(yaml.safe_load(MINIMAL), env={})
    assert cfg.smscs[0].window == 10 and cfg.smscs[0].port == 2775
    assert cfg.shutdown.drain_s == 20.0 and cfg.http.listen == "127.0.0.1:8080"


def test_config_is_frozen() -> None:
    cfg = parse_config(yaml.safe_load(MINIMAL), env={})
    with pytest.raises(AttributeError):
        cfg.node = "other"  # type: ignore[misc]


def test_empty_file_is_a_config_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "# nothing yet\n"), env={})
    assert cfg.smscs == [] and cfg.node == "gw1"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


# ---- docs/config.md ----------------------------------------------------------------------------------------


def _unwrap(t: mi.Type) -> mi.Type:
    while True:
        if isinstance(t, mi.UnionType):
            inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
            if len(inner) != 1:
                return t
            t = inner[0]
        elif isinstance(t, mi.ListType | mi.VarTupleType):
            t = t.item_type
        else:
            return t


def _sections(t: mi.StructType, path: str) -> Iterator[tuple[str, mi.StructType]]:
    """Every Struct of the config, depth first in field order, with its path in the docs' spelling."""
    yield path, t
    for f in t.fields:
        if f.name == "base_dir":  # derived at load, not a key of the file
            continue
        inner = _unwrap(f.type)
        if isinstance(inner, mi.StructType):
            many = isinstance(f.type, mi.ListType)
            sub = f"{path}.{f.encode_name}" if path else f.encode_name
            yield from _sections(inner, sub + ("[]" if many else ""))


def _doc_sections() -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## (?:`([^`]+)`|(Top level))$", line)
        if heading:
            current = sections.setdefault(heading.group(1) or "", {})
            continue
        if line.startswith("## "):
            current = None
            continue
        row = re.match(r"^\| `([a-z0-9_]+)` \| [^|]+ \| ([^|]+) \|", line)
        if row and current is not None:
            current[row.group(1)] = row.group(2).strip()
    return sections


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):  # str enums compare by value
        return str(value.value) if hasattr(value, "value") else value
    return value


def test_docs_list_every_section_in_file_order() -> None:
    root = mi.type_info(Config)
    assert isinstance(root, mi.StructType)
    walked = [path for path, _ in _sections(root, "")]
    documented = list(_doc_sections())
    assert documented == walked


def test_docs_document_every_key_with_its_default() -> None:
    docs = _doc_sections()
    root = mi.type_info(Config)
    assert isinstance(root, mi.StructType)
    for path, struct in _sections(root, ""):
        rows = docs[path]
        keys = [f.encode_name for f in struct.fields if f.name != "base_dir"]
        assert list(rows) == keys, path
        for f in struct.fields:
            if f.name == "base_dir":
                continue
            cell = rows[f.encode_name]
            where = f"{path}.{f.encode_name}" if path else f.encode_name
            if f.required:
                assert cell == "required", where
                continue
            default = f.default_factory() if f.default is msgspec.NODEFAULT else f.default
            if isinstance(default, msgspec.Struct):
                assert cell == "see below", where
                continue
            m = re.match(r"^`([^`]*)`", cell)
            assert m is not None, f"{where}: default cell {cell!r} has no `value`"
            assert yaml.safe_load(m.group(1)) == _plain(default), where
