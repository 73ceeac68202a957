"""Structured logs: JSON lines or logfmt, with context keys, masked MSISDNs and redacted secrets.

Rule 1: every line has `ts`, `level`, `logger` and `msg`. The context prefix of a message
(`smsc=a session=1 id=01hx...`) is also emitted as separate keys, as are the `extra={...}` keys of the call,
so one grep or one query follows a message.
Rule 2: at INFO and above, a run of 10 to 15 digits that stands alone (optionally after `+`) is an MSISDN and
is masked with `routing.mask_msisdn`. Text that is already masked has `*` next to the digits and is left alone.
So are the values of id keys (`id=`, `smsc_message_id=`, `seq=` ...) and decimals such as `1732453912.25`.
The value of a `text=` key is hidden at INFO and above: message text is never logged there.
Rule 3: at every level, the value after `password`, `secret`, `api_key` or `token` (written as `key=v`,
`key: v` or `"key": "v"`) and the credential after `Bearer`, or after `Authorization: Basic`, becomes `***`.
Rule 4: `set_level()` changes the level at run time, and `setup_logging()` can be called again, on a reload,
to switch format.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

import msgspec

from routing import mask_msisdn

from ._config import LogConfig

__all__ = ["CONTEXT_KEYS", "JsonFormatter", "LogfmtFormatter", "RedactingFilter", "scrub", "set_level",
           "setup_logging"]

CONTEXT_KEYS = ("smsc", "session", "seq", "id", "part", "account", "route", "target")
"""Keys lifted from `key=value` tokens of a message into fields of their own (the first of each wins)."""

_CONTEXT = re.compile(r"(?<![\w.-])(" + "|".join(CONTEXT_KEYS) + r")=([^\s,;]+)")

# Keys whose values are ours or the SMSC's identifiers, never MSISDNs (a decimal smsc_message_id is often 10+
# digits long).
_ID_KEYS = ("id", "message_id", "smsc_message_id", "smsc_id", "receipted_message_id", "seq", "sequence_number",
            "reference", "ref", "session", "part", "pid", "port")

_SCRUB = re.compile(
    r"(?P<keep>(?<![\w-])(?:" + "|".join(_ID_KEYS) + r")=[^\s,;]*)"
    r"|(?P<secret_key>(?i:\b(?:password|passwd|secret|api_key|apikey|token|access_token))[\"']?\s*[=:]\s*)"
    r"(?P<secret>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s\"',;&}]+)"
    r"|(?P<auth_key>(?i:\bbearer\s+|authorization[\"']?\s*[=:]\s*[\"']?basic\s+))(?P<auth>[A-Za-z0-9._~+/=-]+)"
    r"|(?P<text_key>(?<![\w-])text=)(?P<text>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\S+)"
    r"|(?<![\w.*+])(?P<plus>\+?)(?P<msisdn>\d{10,15})(?![\w*]|\.\d)"
)


def _replace(m: re.Match[str], mask: bool) -> str:
    kind = m.lastgroup
    if kind == "secret":
        quote = m.group("secret")[0]
        return m.group("secret_key") + (quote + "***" + quote if quote in "\"'" else "***")
    if kind == "auth":
        return m.group("auth_key") + "***"
    if mask and kind == "text":
        return m.group("text_key") + "***"
    if mask and kind == "msisdn":
        return m.group("plus") + mask_msisdn(m.group("msisdn"))
    return m.group(0)


def _replace_masking(m: re.Match[str]) -> str:
    return _replace(m, True)


def _replace_redacting(m: re.Match[str]) -> str:
    return _replace(m, False)


def scrub(text: str, *, mask_msisdns: bool = True) -> str:
    """`text` with secrets redacted (Rule 3) and, when `mask_msisdns`, MSISDNs and message text hidden (Rule 2)."""
    return _SCRUB.sub(_replace_masking if mask_msisdns else _replace_redacting, text)


# LogRecord's own attributes, and uvicorn's `color_message` (the message again, with terminal colours).
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName",
                                                                             "color_message"}


class RedactingFilter(logging.Filter):
    """Applies Rules 2 and 3 to each record's message, exception text and string `extra` values.

    The record is changed in place (its message becomes the scrubbed text, with no arguments left), so every
    handler after this one sees the scrubbed record too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        mask = record.levelno >= logging.INFO
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a bad format call: logging reports it when it formats
            return True
        record.msg = scrub(message, mask_msisdns=mask)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, mask_msisdns=mask)
        for key, value in vars(record).items():
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, scrub(value, mask_msisdns=mask))
        return True


_EXC_FORMATTER = logging.Formatter()

_second_cache: list[tuple[int, str]] = [(-1, "")]


def _timestamp(created: float) -> str:
    second = int(created)
    cached = _second_cache[0]
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second_cache[0] = cached
    return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


class _StructuredFormatter(logging.Formatter):
    """The fields of a record (Rule 1), in order: ts, level, logger, msg, context keys, extras, exc."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        message = record.getMessage()
        out: dict[str, Any] = {"ts": _timestamp(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "msg": message}
        if "=" in message:
            for key, value in _CONTEXT.findall(message):
                if key not in out:
                    out[key] = value.rstrip(":.")
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in out:
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out


_JSON = msgspec.json.Encoder(enc_hook=str)


class JsonFormatter(_StructuredFormatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return _JSON.encode(self.fields(record)).decode("utf-8")


_BARE = re.compile(r"^[^\s=\"\\]+$")
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _logfmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.match(text):
        return text
    return '"' + text.translate(_ESCAPES) + '"'


class LogfmtFormatter(_StructuredFormatter):
    """`key=value` pairs, one record per line; a value with spaces, `=` or quotes is quoted and escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in self.fields(record).items())


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}
_installed: list[logging.Handler] = []

QUIET_LOGGERS = ("httpx", "httpcore", "hpack")
"""Libraries that log every request at INFO or DEBUG: held at WARNING (the callback sender makes thousands of
requests per second)."""


def set_level(name: str) -> None:
    """Set the level of every gateway logger at run time: debug, info, warning, error or critical.

    Raises:
        ValueError: an unknown level name.
    """
    level = _LEVELS.get(name.lower())
    if level is None:
        raise ValueError(f"unknown log level {name!r} (debug, info, warning, error, critical)")
    logging.getLogger().setLevel(level)


def setup_logging(cfg: LogConfig, *, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to `stream` (stderr by default, which journald collects) in `cfg.format`.

    Calling it again replaces the handler it installed before (a reload that changes the format).

    Returns:
        The handler installed on the root logger.

    Raises:
        ValueError: an unknown format or level (the config loader refuses both first).
    """
    if cfg.format not in ("json", "logfmt"):
        raise ValueError(f"unknown log format {cfg.format!r} (json, logfmt)")
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else LogfmtFormatter())
    handler.addFilter(RedactingFilter())
    set_level(cfg.level)
    while _installed:
        root.removeHandler(_installed.pop())
    root.addHandler(handler)
    _installed.append(handler)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler
