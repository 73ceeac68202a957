"""The gateway's configuration: one YAML file validated into frozen structures.

Rule 1: defaults live on the types below, and docs/config.md documents every key with its default (a test checks
that every key here appears there).
Rule 2: an unknown key is an error; every error names its path (`smscs[1].window: expected an integer >= 1, got "ten"`).
Rule 3: cross-references are checked at load: every route names known SMSCs, every numbering country has a rule,
account ids and SMSC names are unique; rules that routing/ refuses are reported with their path.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec

from routing import (
    FailoverRoute,
    MoReservedWords,
    MoRouter,
    MoRule,
    MoShortcode,
    MtRouter,
    MtRule,
    NumberingPlan,
    NumberingRule,
    RoutingConfigError,
    WeightedRoute,
)

from ._configload import ConfigError, Secret, convert, environ, expand_env, load_yaml, read_secret_file

__all__ = [
    "AccountConfig",
    "BindType",
    "CallbackConfig",
    "Concat",
    "Config",
    "ConfigError",
    "HttpConfig",
    "IdFormat",
    "LogConfig",
    "MessagesConfig",
    "MtRouteConfig",
    "NumberingConfig",
    "SmscConfig",
    "StoreConfig",
    "hash_api_key",
    "load_config",
]

PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Byte = Annotated[int, msgspec.Meta(ge=0, le=255)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every config section: unknown keys are errors, values are immutable."""


class BindType(StrEnum):
    """How the connector binds: one transceiver, transmitter or receiver per session, or a TX + RX pair."""

    TRX = "trx"
    TX = "tx"
    RX = "rx"
    TX_RX = "tx+rx"


class Concat(StrEnum):
    """How a long message's parts are tied together for this SMSC."""

    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


class IdFormat(StrEnum):
    """How the SMSC writes its message ids (in submit_sm_resp and in receipts)."""

    HEX = "hex"
    DECIMAL = "decimal"
    AS_IS = "as-is"
    AUTO = "auto"


class ReconnectConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    initial_s: PosFloat = 1.0
    max_s: PosFloat = 60.0
    multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2


class SmscConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2775
    system_id: Annotated[str, msgspec.Meta(max_length=15)]
    password: Secret | None = None
    password_file: str | None = None
    system_type: Annotated[str, msgspec.Meta(max_length=12)] = ""
    bind: BindType = BindType.TRX
    sessions: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    window: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 10
    throughput_per_s: PosFloat | None = None
    enquire_link_interval_s: PosFloat = 30.0
    response_timeout_s: PosFloat = 10.0
    bind_timeout_s: PosFloat = 10.0
    reconnect: ReconnectConfig = ReconnectConfig()
    source_ton: Byte | None = None
    source_npi: Byte | None = None
    dest_ton: Byte = 1
    dest_npi: Byte = 1
    concatenation: Concat = Concat.UDH8
    data_coding_default: Byte = 0
    allow_latin1: bool = False
    national_languages: list[str] = []
    receipt_id_format: IdFormat = IdFormat.AUTO
    receipt_scope: str | None = None
    service_type: Annotated[str, msgspec.Meta(max_length=5)] = ""
    registered_delivery: bool = True
    nodes: dict[str, NonNegInt] = {}
    throttle_backoff_s: PosFloat = 1.0


class ApiKeyConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    name: str = ""


class CallbackConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str | None = None
    secret: Secret | None = None
    secret_file: str | None = None
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 1
    batch_interval_ms: NonNegInt = 200
    timeout_s: PosFloat = 10.0
    retry_initial_s: PosFloat = 1.0
    retry_max_s: PosFloat = 600.0
    max_age_s: PosFloat = 86400.0 * 3


class AccountConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_.-]{1,64}$")]
    api_keys: list[ApiKeyConfig] = []
    rate_limit_per_s: PosFloat | None = None
    rate_limit_burst: PosInt | None = None
    allowed_sources: list[str] = []
    default_source: str | None = None
    country: str | None = None
    callback: CallbackConfig = CallbackConfig()
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000


class HttpConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: str = "127.0.0.1:8080"
    max_body_bytes: PosInt = 4 * 1024 * 1024
    admin_keys: list[ApiKeyConfig] = []


class StoreConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    backend: str = "sqlite"
    path: str = "var/gateway.db"
    commit_interval_ms: NonNegFloat = 0.0
    synchronous: str = "normal"
    writer: str = "process"
    max_queue: PosInt = 1_000_000
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_group: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_.-]{1,64}$")] = "default"
    redis_wait_replicas: NonNegInt = 0
    redis_wait_timeout_ms: PosInt = 1000
    redis_final_ttl_s: PosFloat | None = None
    redis_idempotency_ttl_s: PosFloat = 86400.0


class RetryConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    initial_s: PosFloat = 5.0
    max_s: PosFloat = 600.0
    multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0


class MessagesConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    default_validity_s: PosFloat = 48 * 3600.0
    max_validity_s: PosFloat = 7 * 86400.0
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=255)] = 10
    retry: RetryConfig = RetryConfig()
    resend_free_after_crash: bool = True
    receipt_wait_s: PosFloat = 72 * 3600.0


class MtRouteConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str = ""
    prefix: Annotated[str, msgspec.Meta(pattern="^[0-9]*$")] = ""
    source: str | None = None
    account: str | None = None
    smscs: list[str] = []
    weights: dict[str, PosInt] = {}


class CountryConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    country: str
    country_code: Annotated[str, msgspec.Meta(pattern="^[1-9][0-9]{0,2}$")]
    trunk_prefix: str = ""
    international_prefixes: tuple[str, ...] = ("00",)
    national_lengths: list[PosInt] = []


class NumberingConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    default_country: str | None = None
    countries: list[CountryConfig] = []
    min_digits: PosInt = 7


class LogConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    format: str = "logfmt"
    level: str = "info"


class ClusterConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Several nodes sharing a Redis store (store.backend redis): heartbeats and takeovers."""

    heartbeat_s: PosFloat = 2.0
    node_timeout_s: PosFloat = 10.0
    claim_batch: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 500
    advertise_url: str | None = None  # where the other nodes reach this node's HTTP API (the billing API, _leader)


class ShutdownConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    drain_s: PosFloat = 20.0

# ---- carrier billing and MO services (docs/billing.md) ----------------------------------------------------

Price = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]{1,3})?$")]


class PricePointConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One price an operator can charge, and the operator's code for it."""

    price: Price
    code: str


class ReceiptErrorsConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Which receipt `err` codes mean which charging failure, for one operator."""

    insufficient_funds: list[str] = []
    barred: list[str] = []
    unknown_subscriber: list[str] = []


class OperatorConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An operator's charging convention. Its SMSCs mark charged MTs this way."""

    name: str
    smscs: list[str]
    prefixes: list[Annotated[str, msgspec.Meta(pattern="^[0-9]+$")]] = []
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "EUR"
    convention: str = "service_type"
    tlv_tag: Annotated[int, msgspec.Meta(ge=0x1400, le=0x3FFF)] | None = None
    price_points: list[PricePointConfig] = []
    receipt_errors: ReceiptErrorsConfig = ReceiptErrorsConfig()
    charge_receipt_mt: bool = False
    charge_receipt_text: str = "You were charged {price} {currency} for {service}. Reply STOP to end."


class ServiceTextsConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a service says to users; `{placeholders}` are filled in (docs/billing.md lists them)."""

    confirm: str = "Reply {confirm_keyword} to join {service} at {price} {currency}/{period}. Help: {support}"
    content: str = "{service}: thank you for your subscription."
    welcome: str | None = None
    late_reply: str = "Sorry, that offer has expired. Text {keyword} to {shortcode} to join {service}."
    wrong_reply: str = "To join {service} reply {confirm_keyword}. To ignore this offer, do nothing."
    already_active: str = "You are already subscribed to {service}."
    stop: str = "You have left {service}. You will not be charged again."
    stopall: str = "You have left every service on {shortcode}. You will not be charged again."
    start: str = "You can receive messages from {service} again. Text STOP to end."
    help: str = "{service}: {price} {currency}/{period}. Help: {support}. Text STOP to end."
    reminder: str = "{service} renews on {date} at {price} {currency}. Text STOP to {shortcode} to end."
    pin: str = "Your {service} PIN is {pin}. It expires in {minutes} minutes. Do not share it."
    suspended: str = "{service} is suspended: we could not charge you. Text {keyword} to {shortcode} to rejoin."


class RenewalConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    retry_attempts: NonNegInt = 3
    retry_spacing_s: PosFloat = 86400.0
    reminder_before_s: PosFloat | None = None


class ForwardConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str
    secret: Secret | None = None
    timeout_s: PosFloat = 10.0
    retry_initial_s: PosFloat = 1.0
    retry_max_s: PosFloat = 300.0
    max_age_s: PosFloat = 86400.0


class ServiceConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An MO keyword service: a subscription, a one-off charge, a forward to an application, or an auto-reply."""

    name: str
    kind: str
    shortcode: str
    keyword: str | None = None
    aliases: list[str] = []
    pattern: str | None = None
    display_name: str | None = None
    support: str = ""
    account: str | None = None
    price: Price | None = None
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "EUR"
    period: str = "weekly"
    period_s: PosFloat | None = None  # overrides the period's length (trials, tests); `period` still names it
    double_opt_in: bool = True
    confirm_keyword: str = "YES"
    confirm_aliases: tuple[str, ...] = ("Y", "OK")
    handshake_ttl_s: PosFloat = 86400.0
    consent_text_version: str = "v1"
    fallback_prices: list[Price] = []
    renewal: RenewalConfig = RenewalConfig()
    forward: ForwardConfig | None = None
    reply_text: str | None = None
    texts: ServiceTextsConfig = ServiceTextsConfig()


class ShortcodeConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    shortcode: str
    default_service: str | None = None
    help_text: str | None = None
    account: str | None = None


class ConsentConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    exempt_categories: tuple[str, ...] = ("otp",)
    stop_words: tuple[str, ...] = ("STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
    stopall_words: tuple[str, ...] = ("STOPALL",)
    start_words: tuple[str, ...] = ("START", "UNSTOP")
    help_words: tuple[str, ...] = ("HELP", "INFO")


class PinConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    length: Annotated[int, msgspec.Meta(ge=4, le=10)] = 4
    ttl_s: PosFloat = 300.0
    max_attempts: PosInt = 3
    max_per_msisdn_per_hour: PosInt = 5
    secret: Secret | None = None
    secret_file: str | None = None


class QuietHoursConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    prefix: Annotated[str, msgspec.Meta(pattern="^[0-9]*$")] = ""
    start: Annotated[str, msgspec.Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "21:00"
    end: Annotated[str, msgspec.Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "08:00"
    utc_offset_minutes: Annotated[int, msgspec.Meta(ge=-14 * 60, le=14 * 60)] = 0


class PaymentsConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    reminder_offsets_days: tuple[NonNegInt, ...] = (7, 3, 0)
    quiet_hours: list[QuietHoursConfig] = []
    source: str | None = None
    request_text: str = "{description}: {amount} {currency} due {due}. Pay: {pay_url}"
    reminder_text: str = "Reminder: {description}, {amount} {currency} due {due}. Pay: {pay_url}"
    paid_text: str = "Thank you: {amount} {currency} received for {description}.{invoice}"


class BillingConfig(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Carrier billing: operators' charging conventions, services, shortcodes, consent, PIN and payments."""

    operators: list[OperatorConfig] = []
    services: list[ServiceConfig] = []
    shortcodes: list[ShortcodeConfig] = []
    consent: ConsentConfig = ConsentConfig()
    pin: PinConfig = PinConfig()
    payments: PaymentsConfig = PaymentsConfig()
    mo_account: str | None = None


class Config(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole gateway configuration (docs/config.md)."""

    node: str = "gw1"
    http: HttpConfig = HttpConfig()
    store: StoreConfig = StoreConfig()
    accounts: list[AccountConfig] = []
    smscs: list[SmscConfig] = []
    routes: list[MtRouteConfig] = []
    numbering: NumberingConfig = NumberingConfig()
    messages: MessagesConfig = MessagesConfig()
    logging: LogConfig = LogConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    cluster: ClusterConfig = ClusterConfig()
    billing: BillingConfig = BillingConfig()

    # Derived at load (not keys of the file).
    base_dir: str = "."

    def local_smscs(self) -> list[SmscConfig]:
        """The SMSCs this node binds, with this node's session count (`smscs[].nodes`; absent: every node)."""
        out = []
        for s in self.smscs:
            if s.nodes:
                n = s.nodes.get(self.node, 0)
                if n == 0:
                    continue
                s = msgspec.structs.replace(s, sessions=n)
            out.append(s)
        return out

    def smsc(self, name: str) -> SmscConfig:
        for s in self.smscs:
            if s.name == name:
                return s
        raise KeyError(name)

    def account(self, account_id: str) -> AccountConfig | None:
        for a in self.accounts:
            if a.id == account_id:
                return a
        return None

    def service(self, name: str) -> ServiceConfig | None:
        for svc in self.billing.services:
            if svc.name == name:
                return svc
        return None

    def operator_for_smsc(self, smsc: str) -> OperatorConfig | None:
        for op in self.billing.operators:
            if smsc in op.smscs:
                return op
        return None

    def mo_router(self) -> MoRouter:
        return build_mo_router(self)

    def numbering_plan(self) -> NumberingPlan:
        rules = tuple(
            NumberingRule(c.country, c.country_code, c.trunk_prefix, tuple(c.international_prefixes),
                          frozenset(c.national_lengths))
            for c in self.numbering.countries
        )
        return NumberingPlan(rules, min_digits=self.numbering.min_digits)

    def mt_router(self) -> MtRouter:
        return build_mt_router(self)


def hash_api_key(key: str) -> str:
    """The sha256 hex digest that config files hold instead of an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def build_mt_router(cfg: Config) -> MtRouter:
    """The MT router for `cfg.routes` (checked by load_config)."""
    rules = []
    for i, r in enumerate(cfg.routes):
        name = r.name or f"routes[{i}]"
        route: FailoverRoute | WeightedRoute
        if r.weights:
            route = WeightedRoute(name, tuple(r.weights.items()))
        else:
            route = FailoverRoute(name, tuple(r.smscs))
        rules.append(MtRule(name, r.prefix, route, source=r.source, account=r.account))
    return MtRouter(tuple(rules))


_SERVICE_KINDS = ("subscription", "one_off", "forward", "autoreply")
_PERIODS = ("daily", "weekly", "monthly")
_CONVENTIONS = ("service_type", "tlv", "shortcode")


def build_mo_router(cfg: Config) -> MoRouter:
    """The MO router for `cfg.billing` (checked by load_config): keyword rules from services, per shortcode."""
    b = cfg.billing
    rules: dict[str, list[MoRule]] = {}
    for i, svc in enumerate(b.services):
        if svc.keyword is None and svc.pattern is None:
            continue
        rules.setdefault(svc.shortcode, []).append(MoRule(
            f"billing.services[{i}]", svc.name, keyword=svc.keyword, aliases=frozenset(svc.aliases),
            pattern=svc.pattern))
    defaults = {sc.shortcode: sc.default_service for sc in b.shortcodes}
    codes = sorted(set(rules) | set(defaults) | {svc.shortcode for svc in b.services})
    shortcodes = tuple(MoShortcode(code, tuple(rules.get(code, ())), defaults.get(code)) for code in codes)
    c = b.consent
    reserved = MoReservedWords(stop=frozenset(c.stop_words), stopall=frozenset(c.stopall_words),
                               start=frozenset(c.start_words), help=frozenset(c.help_words))
    return MoRouter(shortcodes, reserved=reserved)


def _check_billing(cfg: Config) -> None:
    b = cfg.billing
    smsc_names = {s.name for s in cfg.smscs}
    account_ids = {a.id for a in cfg.accounts}
    names = [svc.name for svc in b.services]
    for i, op in enumerate(b.operators):
        where = f"billing.operators[{i}]"
        if op.convention not in _CONVENTIONS:
            raise ConfigError(f"expected {', '.join(_CONVENTIONS[:-1])} or {_CONVENTIONS[-1]}, got {op.convention!r}",
                              path=f"{where}.convention")
        if op.convention == "tlv" and op.tlv_tag is None:
            raise ConfigError("the tlv convention needs tlv_tag (a vendor tag, 0x1400 to 0x3FFF)", path=where)
        for n in op.smscs:
            if n not in smsc_names:
                raise ConfigError(f"unknown SMSC {n!r}", path=f"{where}.smscs")
        prices = [pp.price for pp in op.price_points]
        if len(set(prices)) != len(prices):
            raise ConfigError("a price appears twice", path=f"{where}.price_points")
    for i, svc in enumerate(b.services):
        where = f"billing.services[{i}]"
        if names.index(svc.name) != i:
            raise ConfigError(f"duplicate service name {svc.name!r} (first at billing.services[{names.index(svc.name)}])",
                              path=f"{where}.name")
        if svc.kind not in _SERVICE_KINDS:
            raise ConfigError(f"expected {', '.join(_SERVICE_KINDS[:-1])} or {_SERVICE_KINDS[-1]}, got {svc.kind!r}",
                              path=f"{where}.kind")
        if svc.period not in _PERIODS:
            raise ConfigError(f"expected daily, weekly or monthly, got {svc.period!r}", path=f"{where}.period")
        if svc.kind in ("subscription", "one_off") and svc.price is None:
            raise ConfigError(f"a {svc.kind} service needs a price", path=f"{where}.price")
        chargeable = {Decimal(pp.price) for op in b.operators for pp in op.price_points}
        if svc.price is not None and b.operators and Decimal(svc.price) not in chargeable:
            raise ConfigError(f"no operator has a price point for {svc.price}", path=f"{where}.price")
        for j, fallback in enumerate(svc.fallback_prices):
            if b.operators and Decimal(fallback) not in chargeable:
                raise ConfigError(f"no operator has a price point for {fallback}", path=f"{where}.fallback_prices[{j}]")
        if svc.kind == "forward" and svc.forward is None:
            raise ConfigError("a forward service needs forward.url", path=f"{where}.forward")
        if svc.kind == "autoreply" and svc.reply_text is None:
            raise ConfigError("an autoreply service needs reply_text", path=f"{where}.reply_text")
        if svc.account is not None and svc.account not in account_ids:
            raise ConfigError(f"unknown account {svc.account!r}", path=f"{where}.account")
    for i, sc in enumerate(b.shortcodes):
        if sc.default_service is not None and sc.default_service not in names:
            raise ConfigError(f"unknown service {sc.default_service!r}", path=f"billing.shortcodes[{i}].default_service")
        if sc.account is not None and sc.account not in account_ids:
            raise ConfigError(f"unknown account {sc.account!r}", path=f"billing.shortcodes[{i}].account")
    codes = {svc.shortcode for svc in b.services} | {sc.shortcode for sc in b.shortcodes}
    for i, svc in enumerate(b.services):
        if svc.name in codes:
            raise ConfigError("a service may not be named like a shortcode: consent records name both alike",
                              path=f"billing.services[{i}].name")
    p = b.payments
    if len(set(p.reminder_offsets_days)) != len(p.reminder_offsets_days) or len(p.reminder_offsets_days) > 3:
        raise ConfigError("at most three distinct offsets (days before due)",
                          path="billing.payments.reminder_offsets_days")
    sample = dict.fromkeys(("description", "amount", "currency", "due", "pay_url", "reference", "invoice_url",
                            "invoice"), "")
    for name in ("request_text", "reminder_text", "paid_text"):
        try:
            getattr(p, name).format_map(sample)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"not a valid template ({exc}); placeholders: "
                              + ", ".join("{" + k + "}" for k in sample), path=f"billing.payments.{name}") from None
    quiet = [q.prefix for q in p.quiet_hours]
    for i, prefix in enumerate(quiet):
        if quiet.index(prefix) != i:
            raise ConfigError(f"duplicate prefix {prefix!r}", path=f"billing.payments.quiet_hours[{i}].prefix")
    if b.mo_account is not None and b.mo_account not in account_ids:
        raise ConfigError(f"unknown account {b.mo_account!r}", path="billing.mo_account")
    try:
        build_mo_router(cfg)
    except RoutingConfigError as exc:
        raise ConfigError(exc.detail, path=str(exc.rule)) from None


def _check(cfg: Config) -> Config:
    names = [s.name for s in cfg.smscs]
    for i, s in enumerate(cfg.smscs):
        if names.index(s.name) != i:
            raise ConfigError(f"duplicate SMSC name {s.name!r} (first at smscs[{names.index(s.name)}])",
                              path=f"smscs[{i}].name")
        if s.password is None and s.password_file is None:
            raise ConfigError("set password (or ${ENV}) or password_file", path=f"smscs[{i}]")
        for lang in s.national_languages:
            if lang.lower() not in ("turkish", "spanish", "portuguese"):
                raise ConfigError(f"unknown national language {lang!r} (turkish, spanish, portuguese)",
                                  path=f"smscs[{i}].national_languages")
    ids = [a.id for a in cfg.accounts]
    for i, a in enumerate(cfg.accounts):
        if ids.index(a.id) != i:
            raise ConfigError(f"duplicate account id {a.id!r} (first at accounts[{ids.index(a.id)}])",
                              path=f"accounts[{i}].id")
    for i, r in enumerate(cfg.routes):
        where = f"routes[{i}]"
        if bool(r.smscs) == bool(r.weights):
            raise ConfigError("set either smscs (failover order) or weights, not both and not neither", path=where)
        for n in [*r.smscs, *r.weights]:
            if n not in names:
                raise ConfigError(f"unknown SMSC {n!r} (known: {', '.join(names) or 'none'})", path=where)
        if r.account is not None and r.account not in ids:
            raise ConfigError(f"unknown account {r.account!r}", path=f"{where}.account")
    countries = {c.country for c in cfg.numbering.countries}
    if cfg.numbering.default_country is not None and cfg.numbering.default_country not in countries:
        raise ConfigError(f"no rule for country {cfg.numbering.default_country!r} in numbering.countries",
                          path="numbering.default_country")
    for i, a in enumerate(cfg.accounts):
        if a.country is not None and a.country not in countries:
            raise ConfigError(f"no rule for country {a.country!r} in numbering.countries", path=f"accounts[{i}].country")
    if cfg.logging.format not in ("logfmt", "json"):
        raise ConfigError(f"expected logfmt or json, got {cfg.logging.format!r}", path="logging.format")
    if cfg.logging.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"expected debug, info, warning or error, got {cfg.logging.level!r}", path="logging.level")
    if cfg.store.backend not in ("sqlite", "redis"):
        raise ConfigError(f"expected sqlite or redis, got {cfg.store.backend!r}", path="store.backend")
    if cfg.store.redis_url.startswith(("redis+sentinel://", "rediss+sentinel://")):
        from ._redis import parse_sentinel_url  # only here: loading a config needs no Redis client otherwise

        try:
            parse_sentinel_url(cfg.store.redis_url)
        except ValueError as exc:
            raise ConfigError(str(exc), path="store.redis_url") from None
    if cfg.store.synchronous not in ("normal", "full"):
        raise ConfigError(f"expected normal or full, got {cfg.store.synchronous!r}", path="store.synchronous")
    if cfg.store.writer not in ("process", "inline"):
        raise ConfigError(f"expected process or inline, got {cfg.store.writer!r}", path="store.writer")
    if cfg.cluster.node_timeout_s < 3 * cfg.cluster.heartbeat_s:
        # The billing node must see a lost lease and stop before the lease can expire (_leader, Rule 2).
        raise ConfigError(f"must be at least 3 x cluster.heartbeat_s ({3 * cfg.cluster.heartbeat_s:g}), got "
                          f"{cfg.cluster.node_timeout_s:g}", path="cluster.node_timeout_s")
    if cfg.cluster.advertise_url is not None and not cfg.cluster.advertise_url.startswith(("http://", "https://")):
        raise ConfigError(f"expected an http:// or https:// URL, got {cfg.cluster.advertise_url!r}",
                          path="cluster.advertise_url")
    _check_billing(cfg)
    try:
        cfg.numbering_plan()
    except RoutingConfigError as exc:
        # routing/ names the rule by its country; the last one of that name is the one it refused.
        at = [i for i, c in enumerate(cfg.numbering.countries) if c.country == exc.rule]
        where = f"numbering.countries[{at[-1]}]" if at else "numbering"
        raise ConfigError(exc.detail, path=where) from None
    try:
        build_mt_router(cfg)
    except RoutingConfigError as exc:
        at = [i for i, r in enumerate(cfg.routes) if (r.name or f"routes[{i}]") == exc.rule]
        raise ConfigError(exc.detail, path=f"routes[{at[-1]}]" if at else "routes") from None
    return cfg


def _resolve_secrets(cfg: Config, base: Path) -> Config:
    smscs = []
    for i, s in enumerate(cfg.smscs):
        if s.password_file is not None:
            path = str((base / s.password_file) if not Path(s.password_file).is_absolute() else s.password_file)
            s = msgspec.structs.replace(s, password=read_secret_file(path, f"smscs[{i}].password_file"))
        smscs.append(s)
    accounts = []
    for i, a in enumerate(cfg.accounts):
        cb = a.callback
        if cb.secret_file is not None:
            path = str((base / cb.secret_file) if not Path(cb.secret_file).is_absolute() else cb.secret_file)
            cb = msgspec.structs.replace(cb, secret=read_secret_file(path, f"accounts[{i}].callback.secret_file"))
            a = msgspec.structs.replace(a, callback=cb)
        accounts.append(a)
    cfg = msgspec.structs.replace(cfg, smscs=smscs, accounts=accounts)
    pin = cfg.billing.pin
    if pin.secret_file is not None:
        path = str((base / pin.secret_file) if not Path(pin.secret_file).is_absolute() else pin.secret_file)
        pin = msgspec.structs.replace(pin, secret=read_secret_file(path, "billing.pin.secret_file"))
        cfg = msgspec.structs.replace(cfg, billing=msgspec.structs.replace(cfg.billing, pin=pin))
    return cfg


def parse_config(data: Any, *, base_dir: str | Path = ".", env: dict[str, str] | None = None) -> Config:
    """Validate parsed YAML data into a Config.

    Raises:
        ConfigError: `path: problem`.
    """
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a mapping of sections", path="$")
    if "base_dir" in data:
        raise ConfigError("unknown key", path="base_dir")
    data = expand_env(data, environ() if env is None else env)
    cfg = convert(data, Config)
    cfg = msgspec.structs.replace(cfg, base_dir=str(base_dir))
    return _check(_resolve_secrets(cfg, Path(base_dir)))


def load_config(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    """Load and validate a gateway config file.

    Relative paths inside it (store.path, *_file) are relative to the file's directory.

    Raises:
        ConfigError: `path: problem`; the daemon refuses to start (or keeps the old config on reload).
    """
    p = Path(path)
    return parse_config(load_yaml(p), base_dir=p.resolve().parent, env=env)
