"""The simulator's configuration: YAML validated into frozen msgspec Structs.

Rule 1: defaults live on the types; an unknown key is an error; every error reads `path: problem`,
for example `accounts[1].throughput_per_s: expected a number, got "fast"`.
Rule 2: names from the specifications are checked here, once: command_status names (`ESME_RSYSERR`) or
numbers, stat words (`DELIVRD`, `UNDELIV`, ...), address prefixes (digits only).
Rule 3: a password is a `Secret` (its repr is '***'); `password_file` is read at load time, relative to the
config file.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml

from dlr import ReceiptStatus
from smpp import Status

__all__ = [
    "STAT_WORDS",
    "Account",
    "AccountBilling",
    "AccountReceipts",
    "Billing",
    "ConfigError",
    "Delay",
    "Enroute",
    "Failure",
    "Faults",
    "HandsetRule",
    "MessageIds",
    "NetworkErrorSpec",
    "OutcomeRule",
    "Receipts",
    "Secret",
    "SessionSettings",
    "SimulatorConfig",
    "StoreSettings",
    "check_faults",
    "check_handsets",
    "convert",
    "load_config",
    "parse_config",
    "parse_hostport",
    "parse_status",
    "validate",
]

T = TypeVar("T")

# The final stat words an outcome mix may name (SMPP 3.4 Appendix B); ENROUTE is sent as an intermediate only.
STAT_WORDS: Mapping[str, ReceiptStatus] = {s.stat: s for s in ReceiptStatus if s is not ReceiptStatus.ENROUTE}


class ConfigError(ValueError):
    """The configuration is invalid; the message is `path: problem`."""

    def __init__(self, problem: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class Secret(str):
    """A password: its repr never shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
IdForm = Literal["decimal", "hex", "HEX", "uuid"]
BindType = Literal["transmitter", "receiver", "transceiver"]
StatusRef = str | int


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Delay(_Struct, frozen=True):
    """How long until a message reaches its final state (and its receipt is sent).

    `fixed` waits `mean_s`; `uniform` draws between `min_s` and `max_s`; `exponential` draws with mean `mean_s`,
    then clamps to [`min_s`, `max_s`].
    """

    distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    mean_s: NonNegative = 1.0
    min_s: NonNegative = 0.0
    max_s: NonNegative = 60.0


class NetworkErrorSpec(_Struct, frozen=True):
    """A network_error_code TLV (§5.3.2.31): network type (3 = GSM) and a 2-octet error code."""

    network_type: Annotated[int, msgspec.Meta(ge=0, le=255)] = 3
    error_code: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)] = 0


class OutcomeRule(_Struct, frozen=True):
    """What happens to MTs whose destination starts with `prefix` (the longest matching prefix wins)."""

    prefix: str
    mix: dict[str, NonNegative] = msgspec.field(default_factory=lambda: {"DELIVRD": 1.0})
    err: Annotated[int, msgspec.Meta(ge=0, le=999)] = 0
    network_error: NetworkErrorSpec | None = None
    submit_status: StatusRef | None = None
    delay: Delay | None = None


class Enroute(_Struct, frozen=True):
    """Intermediate ENROUTE receipts (esm_class 0x20): `never`, when registered_delivery asks (bit 4), or `always`."""

    mode: Literal["never", "requested", "always"] = "requested"
    after_s: NonNegative = 0.0


class Receipts(_Struct, frozen=True):
    """Receipt timing and outcomes, shared by all accounts."""

    delay: Delay = Delay()
    outcomes: list[OutcomeRule] = msgspec.field(default_factory=list)
    enroute: Enroute = Enroute()
    tick_s: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.005
    retry_delay_s: NonNegative = 5.0


class AccountReceipts(_Struct, frozen=True):
    """How receipts to one account look, and how many may wait for a receiver bind."""

    tlvs: bool = True
    seconds: bool = False
    utc: bool = False
    text: bool = True
    backlog: Positive = 100_000


class MessageIds(_Struct, frozen=True):
    """Message id forms: in submit_sm_resp (`resp`) and in the receipt text (`receipt`, by default the same)."""

    resp: IdForm = "decimal"
    receipt: IdForm | None = None
    receipt_width: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0


class AccountBilling(_Struct, frozen=True):
    """How this account marks a charged MT, and the price of each price point (minor currency units).

    `service_type`: the tariff code is the service_type; `tlv`: the value of TLV `tlv_tag`; `shortcode`: the
    source_addr. `price_points` maps the code to its price.
    """

    convention: Literal["none", "service_type", "tlv", "shortcode"] = "none"
    tlv_tag: Annotated[int, msgspec.Meta(ge=0x1400, le=0x3FFF)] = 0x1400
    price_points: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = msgspec.field(default_factory=dict)


class Failure(_Struct, frozen=True):
    """A billing failure: the receipt it gets (stat word, err, network error) or a submit_sm_resp error."""

    stat: str = "UNDELIV"
    err: Annotated[int, msgspec.Meta(ge=0, le=999)] = 0
    network_error: NetworkErrorSpec | None = None
    submit_status: StatusRef | None = None


class Billing(_Struct, frozen=True):
    """Per-MSISDN balances (by longest prefix, then exact numbers set at run time) and barred numbers."""

    currency: str = "EUR"
    default_balance: int = 1000
    balances: dict[str, int] = msgspec.field(default_factory=dict)
    barred_numbers: list[str] = msgspec.field(default_factory=list)
    insufficient_funds: Failure = Failure(stat="UNDELIV", err=69)
    barred: Failure = Failure(stat="REJECTD", err=11)
    max_charges: Positive = 100_000


class Faults(_Struct, frozen=True):
    """Faults a misbehaving SMSC shows; all off by default. Rates are probabilities per PDU."""

    error_rates: dict[str, Probability] = msgspec.field(default_factory=dict)
    response_delay_s: NonNegative = 0.0
    drop_response_rate: Probability = 0.0
    generic_nack_rate: Probability = 0.0
    malformed_rate: Probability = 0.0
    disconnect_after_pdus: Positive | None = None
    disconnect_rate: Probability = 0.0
    slow_read_pause_s: NonNegative = 0.0
    slow_read_bytes: Positive = 1024
    enquire_link_silence: bool = False
    receipt_before_resp_rate: Probability = 0.0


class HandsetRule(_Struct, frozen=True):
    """A scripted handset: when an MT to `to_prefix` matches, reply `reply` to its source after `after_s`.

    `contains` matches a substring (case-insensitive); `pattern` a regular expression, whose groups `reply`
    may use as `{1}`, `{2}`, ... (`{0}` is the whole match).
    """

    reply: str
    to_prefix: str = ""
    contains: str | None = None
    pattern: str | None = None
    after_s: NonNegative = 2.0
    reply_to: str | None = None


class Account(_Struct, frozen=True):
    """One ESME account."""

    system_id: Annotated[str, msgspec.Meta(min_length=1, max_length=15)]
    password: Secret | None = None
    password_file: str | None = None
    bind_types: list[BindType] = msgspec.field(default_factory=lambda: ["transmitter", "receiver", "transceiver"])
    max_binds: Positive = 8
    shortcodes: list[str] = msgspec.field(default_factory=list)
    throughput_per_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    throughput_window_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    queue_limit: Positive = 100_000
    window: Positive | None = None
    message_ids: MessageIds = MessageIds()
    receipts: AccountReceipts = AccountReceipts()
    billing: AccountBilling = AccountBilling()
    faults: Faults | None = None


class SessionSettings(_Struct, frozen=True):
    """Per-bind SMPP session settings: the window of outstanding deliver_sm, timeouts, enquire_link."""

    window: Positive = 1000
    response_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    enquire_link_interval_s: Annotated[float, msgspec.Meta(gt=0)] | None = 30.0


class StoreSettings(_Struct, frozen=True):
    """How many recent messages GET /messages can show (a ring buffer)."""

    max_messages: Positive = 100_000


class SimulatorConfig(_Struct, frozen=True):
    """The whole simulator configuration."""

    listen: str = "127.0.0.1:2775"
    control: str = "127.0.0.1:8775"
    system_id: Annotated[str, msgspec.Meta(min_length=1, max_length=15)] = "SMSCSIM"
    seed: int | None = None
    message_id_start: Annotated[int, msgspec.Meta(ge=0)] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    session: SessionSettings = SessionSettings()
    receipts: Receipts = Receipts()
    billing: Billing = Billing()
    faults: Faults = Faults()
    handsets: list[HandsetRule] = msgspec.field(default_factory=list)
    store: StoreSettings = StoreSettings()
    accounts: list[Account] = msgspec.field(default_factory=list)


# ---- loading ---------------------------------------------------------------------------------------------


def parse_hostport(text: str, path: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 asks for a free port.

    Raises:
        ConfigError: not HOST:PORT, or the port is out of range.
    """
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if m is None:
        raise ConfigError(f"expected HOST:PORT, got {json.dumps(text)}", path=path)
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ConfigError(f"port {port} is above 65535", path=path)
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_status(value: StatusRef, path: str) -> int:
    """A command_status from its name (`ESME_RSYSERR`) or number (vendor codes 0x400-0x4FF included).

    Raises:
        ConfigError: an unknown name, or a number outside 32 bits.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ConfigError(f"command_status {value} is not a 32-bit value", path=path)
        return value
    try:
        return int(Status[str(value).strip().upper()])
    except KeyError:
        raise ConfigError(f"unknown command_status {json.dumps(value)} (use a name such as ESME_RSYSERR or a "
                          f"number)", path=path) from None


def _check_stat(word: str, path: str) -> None:
    if word not in STAT_WORDS:
        raise ConfigError(f"unknown stat word {json.dumps(word)}: expected one of {', '.join(STAT_WORDS)}",
                          path=path)


def _check_prefix(prefix: str, path: str, *, allow_empty: bool = True) -> None:
    if not prefix.isdigit() and not (allow_empty and prefix == ""):
        raise ConfigError(f"expected digits, got {json.dumps(prefix)}", path=path)


def _check_delay(d: Delay, path: str) -> None:
    if d.min_s > d.max_s:
        raise ConfigError(f"min_s {d.min_s} is above max_s {d.max_s}", path=path)


def check_faults(f: Faults, path: str = "faults") -> None:
    """Check fault settings beyond their types: known status names, error rates adding up to at most 1.

    Raises:
        ConfigError: the first problem found.
    """
    for name in f.error_rates:
        parse_status(name, f"{path}.error_rates.{name}")
    if sum(f.error_rates.values()) > 1:
        raise ConfigError("the error rates add up to more than 1", path=f"{path}.error_rates")


def _check_failure(f: Failure, path: str) -> None:
    _check_stat(f.stat, f"{path}.stat")
    if f.submit_status is not None:
        parse_status(f.submit_status, f"{path}.submit_status")


def check_handsets(rules: list[HandsetRule], path: str = "handsets") -> None:
    """Check handset rules: one of contains and pattern, a pattern that compiles, a reply that quotes only the
    groups the pattern has.

    Raises:
        ConfigError: the first problem found.
    """
    for i, h in enumerate(rules):
        p = f"{path}[{i}]"
        _check_prefix(h.to_prefix, f"{p}.to_prefix")
        if (h.contains is None) == (h.pattern is None):
            raise ConfigError("set exactly one of contains and pattern", path=p)
        groups = 0
        if h.pattern is not None:
            try:
                groups = re.compile(h.pattern).groups
            except re.error as exc:
                raise ConfigError(f"invalid regular expression: {exc}", path=f"{p}.pattern") from None
        try:
            h.reply.format(*([""] * (groups + 1)))
        except (IndexError, KeyError, ValueError):
            quotes = "{0} is the match" + (f", {{1}} to {{{groups}}} the pattern's groups" if groups else "")
            raise ConfigError(f"{json.dumps(h.reply)} quotes more than the match has: {quotes}, "
                              f"and {{{{ a literal brace", path=f"{p}.reply") from None


def validate(cfg: SimulatorConfig) -> None:
    """The checks msgspec's types cannot express.

    Raises:
        ConfigError: the first problem found.
    """
    parse_hostport(cfg.listen, "listen")
    host, _ = parse_hostport(cfg.control, "control")
    if not _is_loopback(host):
        raise ConfigError(f"the control API has no authentication: it must listen on loopback, not {host}",
                          path="control")
    _check_delay(cfg.receipts.delay, "receipts.delay")
    seen_prefixes: set[str] = set()
    for i, rule in enumerate(cfg.receipts.outcomes):
        p = f"receipts.outcomes[{i}]"
        _check_prefix(rule.prefix, f"{p}.prefix")
        if rule.prefix in seen_prefixes:
            raise ConfigError(f"prefix {json.dumps(rule.prefix)} appears twice", path=f"{p}.prefix")
        seen_prefixes.add(rule.prefix)
        if not rule.mix or sum(rule.mix.values()) <= 0:
            raise ConfigError("the mix needs at least one outcome with a weight above 0", path=f"{p}.mix")
        for word in rule.mix:
            _check_stat(word, f"{p}.mix.{word}")
        if rule.submit_status is not None:
            parse_status(rule.submit_status, f"{p}.submit_status")
        if rule.delay is not None:
            _check_delay(rule.delay, f"{p}.delay")
    b = cfg.billing
    for prefix in b.balances:
        _check_prefix(prefix, f"billing.balances.{prefix}")
    for i, prefix in enumerate(b.barred_numbers):
        _check_prefix(prefix, f"billing.barred_numbers[{i}]", allow_empty=False)
    _check_failure(b.insufficient_funds, "billing.insufficient_funds")
    _check_failure(b.barred, "billing.barred")
    check_faults(cfg.faults, "faults")
    check_handsets(cfg.handsets)
    ids: set[str] = set()
    owners: dict[str, str] = {}
    for i, a in enumerate(cfg.accounts):
        p = f"accounts[{i}]"
        if a.system_id in ids:
            raise ConfigError(f"system_id {json.dumps(a.system_id)} appears twice", path=f"{p}.system_id")
        ids.add(a.system_id)
        if (a.password is None) == (a.password_file is None):
            raise ConfigError("set exactly one of password and password_file", path=p)
        if a.password is not None and len(a.password) > 8:
            raise ConfigError("SMPP 3.4 passwords are at most 8 characters (§4.1.1)", path=f"{p}.password")
        if not a.bind_types:
            raise ConfigError("allow at least one bind type", path=f"{p}.bind_types")
        for j, code in enumerate(a.shortcodes):
            _check_prefix(code, f"{p}.shortcodes[{j}]", allow_empty=False)
            if code in owners:
                raise ConfigError(f"shortcode {code} already belongs to {owners[code]}", path=f"{p}.shortcodes[{j}]")
            owners[code] = a.system_id
        if a.billing.convention != "none" and not a.billing.price_points:
            raise ConfigError(f"convention {a.billing.convention} needs price_points", path=f"{p}.billing")
        if a.faults is not None:
            check_faults(a.faults, f"{p}.faults")


_TYPE_WORDS = {
    "int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "array": "a list",
    "object": "a mapping", "null": "nothing",
}
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_EXPECTED = re.compile(r"^Expected `(?P<type>[^`]+)`(?P<rest>.*?)(?:, got `[^`]+`)?$")


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    node = data
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = m.group(1), m.group(2)
        try:
            node = node[int(index)] if index is not None else node[key]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, ensure_ascii=False, default=str)


def _translate(exc: msgspec.ValidationError, data: Any) -> ConfigError:
    m = _AT.match(str(exc))
    assert m is not None
    msg, raw_path = m.group("msg"), m.group("path") or ""
    path = raw_path.removeprefix(".")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    if unknown:
        return ConfigError("unknown key", path=f"{path}.{unknown.group(1)}" if path else unknown.group(1))
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if missing:
        return ConfigError("required key is missing",
                           path=f"{path}.{missing.group(1)}" if path else missing.group(1))
    enum = re.match(r"Invalid enum value (.*)", msg)
    if enum:
        return ConfigError(f"invalid value {enum.group(1)}", path=path or "$")
    found, value = _lookup(data, raw_path)
    got = f", got {_show(value)}" if found else ""
    expected = _EXPECTED.match(msg)
    if expected:
        words = " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in expected.group("type").split("|"))
        return ConfigError(f"expected {words}{expected.group('rest')}{got}", path=path or "$")
    return ConfigError(f"{msg[:1].lower()}{msg[1:]}{got}", path=path or "$")


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    raise NotImplementedError


def convert(data: Any, type_: type[T], path: str = "") -> T:
    """Validate plain data (a JSON body of the control API, say) into `type_`.

    Raises:
        ConfigError: the first problem, its path under `path`.
    """
    try:
        return msgspec.convert(data, type_, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        err = _translate(exc, data)
        if path:
            raise ConfigError(err.problem, path=path if err.path == "$" else f"{path}.{err.path}") from None
        raise err from None


def parse_config(data: Any, *, base: Path | None = None) -> SimulatorConfig:
    """Validate plain data (parsed YAML or a dict built by a test) into a SimulatorConfig.

    Args:
        data: the mapping.
        base: the directory `password_file` paths are relative to (the config file's).

    Raises:
        ConfigError: the first problem, as `path: problem`.
    """
    if data is None:
        data = {}
    try:
        cfg = msgspec.convert(data, SimulatorConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _translate(exc, data) from None
    validate(cfg)
    accounts = []
    for i, a in enumerate(cfg.accounts):
        if a.password_file is not None:
            file = Path(a.password_file)
            if base is not None and not file.is_absolute():
                file = base / file
            try:
                secret = Secret(file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ConfigError(f"file {str(file)!r} cannot be read: {exc.strerror}",
                                  path=f"accounts[{i}].password_file") from None
            a = msgspec.structs.replace(a, password=secret)
        accounts.append(a)
    return msgspec.structs.replace(cfg, accounts=accounts)


def load_config(path: str | Path) -> SimulatorConfig:
    """Read and validate a YAML config file.

    Raises:
        ConfigError: unreadable file, bad YAML (with line and column) or an invalid value.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML{where}: {problem}", path=str(p)) from None
    return parse_config(data, base=p.parent)
