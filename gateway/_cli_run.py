"""`smppgw run`, `smppgw check-config` and `smppgw route`: thin shells over the config, routing and the daemon.

Rule 1 (exit codes): 0 when the command did what was asked; 1 when it ran but the answer is no (a number
that cannot be read, a destination without a route); 2 when the config file or the command line is invalid,
in which case nothing was started and stderr holds the `path: problem` message.
Rule 2 (signals): under `run`, the first SIGTERM or SIGINT drains (stop intake, empty the windows, unbind,
commit); a second one exits at once. Everything accepted is already durable, so exiting early loses nothing
that was acknowledged: messages that were on the wire are resolved at the next start. SIGHUP reloads the
config file (gateway._reload); it is ignored once the drain began.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import msgspec

from routing import FailoverRoute, InvalidMsisdn, MtDecision, NumberingRule, WeightedRoute

from ._config import Config, ConfigError, load_config
from ._leader import LeadershipLost
from ._logging import setup_logging
from ._store import StoreVersionError

__all__ = [
    "Candidate",
    "RouteExplanation",
    "add_subcommands",
    "backend_options",
    "explain_route",
    "parse_listen",
    "summarise",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NO = 1
EXIT_INVALID = 2
EXIT_LEASE_LOST = 75  # EX_TEMPFAIL: the billing node lost its lease (_leader Rule 2); a restart is what it needs

_LISTEN = re.compile(r"\[(?P<v6>[^\]]+)\]:(?P<p6>\d{1,5})|(?P<host>[^:\[\]\s]+):(?P<port>\d{1,5})")


def parse_listen(text: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 asks the system for a free port.

    Raises:
        ValueError: not HOST:PORT, or a port above 65535.
    """
    m = _LISTEN.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected HOST:PORT (IPv6 as [::1]:PORT), got {text!r}")
    host = m.group("v6") or m.group("host")
    port = int(m.group("p6") or m.group("port"))
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    return host, port


def _listen_arg(text: str) -> str:
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summarise(cfg: Config) -> str:
    """One line saying what a config sets up (names and addresses only: never a secret)."""
    smscs = ", ".join(f"{s.name} {s.host}:{s.port}" for s in cfg.smscs)
    countries = ", ".join(c.country for c in cfg.numbering.countries) or "none"
    default = f" (default {cfg.numbering.default_country})" if cfg.numbering.default_country else ""
    return (
        f"node {cfg.node}: {_plural(len(cfg.smscs), 'SMSC')}{f' ({smscs})' if smscs else ''}, "
        f"{_plural(len(cfg.accounts), 'account')}, {_plural(len(cfg.routes), 'route')}, "
        f"numbering {countries}{default}; http {cfg.http.listen}; store {cfg.store.backend} {cfg.store.path}"
    )


# ---- check-config ------------------------------------------------------------------------------------------


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    print(f"ok: {args.file}")
    print(summarise(cfg))
    return EXIT_OK


# ---- route -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """One SMSC of the chosen route, in the order the dispatcher considers it.

    Attributes:
        smsc: the SMSC's name.
        host: where it is reached.
        port: its TCP port.
        weight: its weight on a weighted route (None on a failover route).
        share: its expected share of the route's traffic when every SMSC is up, from 0 to 1 (None on a
            failover route).
    """

    smsc: str
    host: str
    port: int
    weight: int | None = None
    share: float | None = None


@dataclass(frozen=True, slots=True)
class RouteExplanation:
    """What `smppgw route` prints: how the number was read, the rule that won, and the SMSCs it names.

    Attributes:
        raw: the number as given.
        msisdn: the number as E.164 digits.
        country: the country whose numbering rule the number was read by (None: international only).
        country_from: where that country came from (`account 'demo'`, `numbering.default_country`, `none`).
        form: which written form the number was recognised as.
        decision: the MT router's decision.
        candidates: the route's SMSCs in the order they are considered (empty when there is no route).
    """

    raw: str
    msisdn: str
    country: str | None
    country_from: str
    form: str
    decision: MtDecision
    candidates: tuple[Candidate, ...]

    def to_json(self) -> dict[str, Any]:
        """The explanation as a JSON-ready object (`smppgw route --json`)."""
        d = self.decision
        route = d.route
        return {
            "input": self.raw,
            "msisdn": self.msisdn,
            "country": self.country,
            "country_from": self.country_from,
            "form": self.form,
            "source": d.source,
            "account": d.account,
            "rule": None if d.rule is None else d.rule.name,
            "prefix": d.prefix,
            "route": None if route is None else route.name,
            "route_kind": None if route is None else ("weighted" if isinstance(route, WeightedRoute) else "failover"),
            "candidates": [
                {"smsc": c.smsc, "host": c.host, "port": c.port, "weight": c.weight, "share": c.share}
                for c in self.candidates
            ],
            "passed_over": [r.name for r in d.passed_over],
            "reason": d.reason,
        }

    def lines(self) -> list[str]:
        """The explanation for a person, one `label: value` per line."""
        d = self.decision
        by = "international form only" if self.country is None else (
            f"numbering rule {self.country} from {self.country_from}")
        out = [
            f"input:      {self.raw}",
            f"msisdn:     {self.msisdn} ({self.form}; {by})",
            f"source:     {d.source if d.source is not None else '(any)'}",
            f"account:    {d.account if d.account is not None else '(any)'}",
        ]
        if d.rule is None or d.route is None:
            out.append("route:      none")
            out.append(f"reason:     {d.reason}")
            return out
        out.append(f"rule:       {d.rule.name} ({d.rule.describe()})")
        out.append(f"prefix:     {d.rule.prefix!r}")
        out.append(f"route:      {d.route.name}: {d.route.describe()}")
        how = ("the first one bound takes the message; the others are its failover"
               if isinstance(d.route, FailoverRoute) else "each message picks one of those bound, by weight")
        out.append(f"candidates: {how}")
        for i, c in enumerate(self.candidates, start=1):
            extra = "" if c.weight is None else f", weight {c.weight} ({(c.share or 0) * 100:.0f}%)"
            out.append(f"  {i}. {c.smsc} ({c.host}:{c.port}{extra})")
        out.append(f"reason:     {d.reason}")
        return out


def _written_form(raw: str, msisdn: str, rule: NumberingRule | None) -> str:
    """Which of routing._msisdn's forms `raw` was read as (its result is known: only the form is found)."""
    text = "".join(ch for ch in raw if ch == "+" or "0" <= ch <= "9")
    if text.startswith("+"):
        return "international form with '+'"
    if rule is not None:
        for idp in rule.international_prefixes:
            if text.startswith(idp) and msisdn == text[len(idp):]:
                return f"international prefix {idp!r}"
        trunk = rule.trunk_prefix
        if trunk and text.startswith(trunk) and msisdn == rule.country_code + text[len(trunk):]:
            return f"trunk prefix {trunk!r} and a national number"
        if msisdn == rule.country_code + text:
            return "a national number without trunk prefix"
    return "already international digits"


def _candidates(cfg: Config, decision: MtDecision) -> tuple[Candidate, ...]:
    route = decision.route
    if route is None:
        return ()

    def where(name: str) -> tuple[str, int]:
        s = cfg.smsc(name)
        return s.host, s.port

    if isinstance(route, WeightedRoute):
        total = sum(w for _, w in route.weights)
        ordered = sorted(route.weights, key=lambda pair: -pair[1])
        return tuple(Candidate(n, *where(n), weight=w, share=w / total) for n, w in ordered)
    return tuple(Candidate(n, *where(n)) for n in route.smscs)


def explain_route(cfg: Config, raw: str, *, source: str | None = None, account: str | None = None) -> RouteExplanation:
    """Normalise `raw` with the config's numbering rules and say which route takes it, and why.

    The country a national number is read by is the account's `country` when an account is given and has
    one, else `numbering.default_country`, else none (then only international forms are accepted).

    Raises:
        InvalidMsisdn: the number cannot be read.
        KeyError: `account` names no account of the config.
    """
    country: str | None = None
    country_from = "none"
    if account is not None:
        acc = cfg.account(account)
        if acc is None:
            raise KeyError(account)
        if acc.country is not None:
            country, country_from = acc.country, f"account {account!r}"
    if country is None and cfg.numbering.default_country is not None:
        country, country_from = cfg.numbering.default_country, "numbering.default_country"
    plan = cfg.numbering_plan()
    msisdn = plan.normalise(raw, country=country)
    rule = None if country is None else plan.rule_for(country)
    decision = cfg.mt_router().decide(msisdn, source=source, account=account)
    return RouteExplanation(raw, msisdn, country, country_from, _written_form(raw, msisdn, rule), decision,
                            _candidates(cfg, decision))


def _cmd_route_mo(cfg: Config, args: argparse.Namespace) -> int:
    """`route --mo --to SHORTCODE --text TEXT`: the MO router's decision and what the services would do."""
    from ._services import explain_mo

    if args.to is None or args.text is None:
        print("--mo needs --to SHORTCODE and --text TEXT", file=sys.stderr)
        return EXIT_INVALID
    explanation = explain_mo(cfg, to=args.to, text=args.text)
    if args.json:
        print(json.dumps(explanation.to_json(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(explanation.lines()))
    return EXIT_NO if explanation.decision.kind.value == "unrouted" else EXIT_OK


def _cmd_route(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    if args.mo:
        return _cmd_route_mo(cfg, args)
    if args.msisdn is None:
        print("MSISDN is required (or --mo --to SHORTCODE --text TEXT for an MO)", file=sys.stderr)
        return EXIT_INVALID
    try:
        explanation = explain_route(cfg, args.msisdn, source=args.source, account=args.account)
    except KeyError:
        known = ", ".join(a.id for a in cfg.accounts) or "none"
        print(f"--account: unknown account {args.account!r} (known: {known})", file=sys.stderr)
        return EXIT_INVALID
    except InvalidMsisdn as exc:
        if args.json:
            print(json.dumps({"input": args.msisdn, "error": {"code": exc.reason.value, "message": str(exc)}}))
        else:
            print(f"{args.msisdn!r} is not a number the gateway accepts ({exc.reason.value}): {exc}",
                  file=sys.stderr)
        return EXIT_NO
    if args.json:
        print(json.dumps(explanation.to_json(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(explanation.lines()))
    return EXIT_OK if explanation.decision.rule is not None else EXIT_NO


# ---- run ---------------------------------------------------------------------------------------------------


def _setup_logging(cfg: Config) -> None:
    """Structured logs as the config says (docs/logging.md)."""
    setup_logging(cfg.logging)


def _http_runner() -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("gateway._http")
    except ModuleNotFoundError:
        return None
    runner: Callable[..., Any] = module.run_http
    return runner


def _exit_now(code: int) -> None:  # pragma: no cover - ends the process
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)


async def watch_signals(signals: AsyncIterable[int], stop: anyio.Event, *,
                        exit_now: Callable[[int], None] = _exit_now,
                        reload: Callable[[], None] | None = None) -> None:
    """Rule 2: the first SIGTERM/SIGINT sets `stop` (drain), a second calls `exit_now(128 + signum)`;
    SIGHUP calls `reload()` until `stop` is set."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            if reload is None or stop.is_set():
                log.info("SIGHUP received: ignored (%s)", "draining" if stop.is_set() else "nothing to reload")
            else:
                log.info("SIGHUP received: reloading the config")
                reload()
            continue
        if not stop.is_set():
            log.info("%s received: draining (send it again to exit at once)", name)
            stop.set()
        else:
            log.warning("%s received again: exiting without draining", name)
            exit_now(128 + signum)


async def _watch_process_signals(stop: anyio.Event, reload: Callable[[], None] | None) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        await watch_signals(signals, stop, reload=reload)


def _with_listen(listen: str) -> Callable[[Config], Config]:
    def override(cfg: Config) -> Config:
        return msgspec.structs.replace(cfg, http=msgspec.structs.replace(cfg.http, listen=listen))
    return override


async def serve_until_signalled(cfg: Config, *, config_path: str | None = None, listen: str | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT (Rule 2), reloading `config_path` on SIGHUP.

    systemd is told about readiness, reloads, the watchdog and the stop when $NOTIFY_SOCKET is set.

    Args:
        config_path: the file `cfg` came from (None: SIGHUP reloads nothing).
        listen: the command line's `--http`, applied to `cfg` already and kept across reloads.
    """
    from ._daemon import Gateway, serve
    from ._systemd import Notifier

    gw = Gateway(cfg, config_path=config_path)
    if listen is not None:
        gw.reloader.override = _with_listen(listen)
    notifier = Notifier.from_environ()
    http = _http_runner()
    if http is None:
        log.warning("the HTTP API (gateway._http) is missing from this build: serving SMPP only")
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_process_signals, stop, gw.reloader.request if config_path is not None else None)

        async def run_daemon(*, task_status: anyio.abc.TaskStatus[Gateway] = anyio.TASK_STATUS_IGNORED) -> None:
            await serve(gw, stop.wait, http=http, notifier=notifier, task_status=task_status)
            tg.cancel_scope.cancel()

        await tg.start(run_daemon)
        gc.freeze()  # what start made lives as long as the process (tune_gc)
        if gw.http is not None:
            log.info("http api listening on http://%s:%d", gw.http.host, gw.http.port)
        log.info("started: %s", summarise(cfg))


GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect cycles less often than CPython's default (700, 10, 10), and never look at what exists at start.

    The daemon keeps tens of thousands of messages alive, each a few objects, so the default thresholds make the
    collector walk that heap again and again: with them the end-to-end benchmark (bench/e2e.py, batches) spent
    145 to 170 us of gateway CPU per message, with these 116 to 135 us. Cycles are still collected: the first
    generation every 50,000 allocations, a full collection every 100 million (tens of seconds under load).
    Once the gateway has started, `serve_until_signalled` calls `gc.freeze()`: the modules, the config, the
    routing tables (a million prefixes are millions of objects) and everything else made at start leave the
    collector's sight for good.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def backend_options() -> dict[str, Any]:
    """AnyIO's asyncio options: uvloop when it is installed (DESIGN: the fastest loop measured here)."""
    try:
        importlib.import_module("uvloop")
    except ModuleNotFoundError:
        return {}
    return {"use_uvloop": True}


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions in `group` and in the groups nested in it (task groups nest them)."""
    return [leaf for e in group.exceptions for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    if args.http is not None:
        cfg = _with_listen(args.http)(cfg)
    _setup_logging(cfg)
    lost = refused = False
    tune_gc()
    try:
        try:
            anyio.run(functools.partial(serve_until_signalled, cfg, config_path=args.config, listen=args.http),
                      backend="asyncio",
                      backend_options=backend_options())
        except* LeadershipLost:  # _leader Rule 2: stop at once; systemd starts the node again as a follower
            lost = True
        except* StoreVersionError as group:  # restarting cannot help (RestartPreventExitStatus=2)
            for problem in _leaves(group):
                log.critical("refusing to start: %s", problem)
            refused = True
    except KeyboardInterrupt:  # a Ctrl-C before the signal receiver was installed
        return 128 + signal.SIGINT
    if refused:
        return EXIT_INVALID
    if lost:
        log.critical("stopped: this node lost the billing lease; start it again (systemd does, Restart=on-failure)")
        return EXIT_LEASE_LOST
    log.info("stopped")
    return EXIT_OK


# ---- registration ------------------------------------------------------------------------------------------


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `run`, `check-config` and `route` on the `smppgw` parser; each sets `func(args) -> int`."""
    run = sub.add_parser("run", help="run the gateway daemon until SIGTERM or SIGINT",
                         description="Run the gateway. SIGHUP reloads the config file. The first SIGTERM or "
                                     "SIGINT drains and stops; a second exits at once. Under systemd "
                                     "(Type=notify) it reports readiness, reloads, status and watchdog pings.")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="the gateway's YAML config")
    run.add_argument("--http", type=_listen_arg, metavar="HOST:PORT",
                     help="listen here instead of http.listen (port 0 picks a free port; the port is logged)")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a config file without starting anything",
                           description="Validate FILE. Prints 'ok: FILE' and a summary (exit 0), or the "
                                       "'path: problem' message on stderr (exit 2).")
    check.add_argument("file", metavar="FILE", help="the gateway's YAML config")
    check.set_defaults(func=_cmd_check_config)

    route = sub.add_parser("route", help="show how a destination number (or an MO) is routed, and why",
                           description="Normalise MSISDN with the config's numbering rules and show the MT "
                                       "route, its SMSCs in order and the reason. Exit 1 when the number is "
                                       "refused or no route applies. With --mo, show how an MO TEXT sent to "
                                       "SHORTCODE is routed and what the services would do (exit 1: unrouted).")
    route.add_argument("-c", "--config", required=True, metavar="FILE", help="the gateway's YAML config")
    route.add_argument("msisdn", metavar="MSISDN", nargs="?", help="the destination as a sender would write it")
    route.add_argument("--mo", action="store_true", help="route an MO instead (with --to and --text)")
    route.add_argument("--to", metavar="SHORTCODE", help="with --mo: the shortcode the MO is sent to")
    route.add_argument("--text", metavar="TEXT", help="with --mo: the MO's text")
    route.add_argument("--from", dest="source", metavar="SRC", help="the source address (sender id or shortcode)")
    route.add_argument("--account", metavar="ID", help="the submitting account (its country reads national numbers)")
    route.add_argument("--json", action="store_true", help="print one JSON object")
    route.set_defaults(func=_cmd_route)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one of this module's subcommands (what `smppgw` does once the lead's parser includes them)."""
    parser = argparse.ArgumentParser(prog="smppgw")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
