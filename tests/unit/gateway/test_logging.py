"""Structured logs: both formats, context keys, MSISDN masking, secret redaction, run-time levels."""

from __future__ import annotations

import io
import json
import logging
import re
import shlex
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway._config import LogConfig
from gateway._logging import scrub, set_level, setup_logging

log = logging.getLogger("gateway.test_logging")

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, list[logging.Handler]]]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    installed: list[logging.Handler] = []
    yield stream, installed
    for h in installed:
        root.removeHandler(h)
    root.setLevel(level)


def setup(capture: tuple[io.StringIO, list[logging.Handler]], fmt: str, level: str = "info") -> io.StringIO:
    stream, installed = capture
    installed.append(setup_logging(LogConfig(format=fmt, level=level), stream=stream))
    return stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def logfmt(line: str) -> dict[str, str]:
    """Parse a logfmt line with the shell-quoting rules of shlex (an independent reader of `k="v w"`)."""
    return dict(tok.split("=", 1) for tok in shlex.split(line))


def test_json_lines_carry_the_fields_and_the_context_keys(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "json")
    log.info("smsc=%s session=%d id=%s submitted in %.1f ms", "opA", 2, "01hx4t", 3.25, extra={"route": "uk"})
    [line] = lines(stream)
    rec = json.loads(line)
    assert list(rec)[:4] == ["ts", "level", "logger", "msg"]
    assert TS.match(rec["ts"])
    assert rec["level"] == "info" and rec["logger"] == "gateway.test_logging"
    assert rec["msg"] == "smsc=opA session=2 id=01hx4t submitted in 3.2 ms"
    assert (rec["smsc"], rec["session"], rec["id"], rec["route"]) == ("opA", "2", "01hx4t", "uk")


def test_logfmt_quotes_what_needs_quoting(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "logfmt")
    log.warning('smsc=a bind failed: "refused"', extra={"empty": "", "flag": True, "n": 3})
    [line] = lines(stream)
    assert line.startswith("ts=") and " level=warning logger=gateway.test_logging msg=\"smsc=a bind failed: " in line
    rec = logfmt(line)
    assert rec["msg"] == 'smsc=a bind failed: "refused"'
    assert (rec["smsc"], rec["empty"], rec["flag"], rec["n"]) == ("a", "", "true", "3")
    assert TS.match(rec["ts"])


def test_logfmt_keeps_one_record_on_one_line(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "logfmt")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("id=%s task crashed", "01hx")
    [line] = lines(stream)
    rec = logfmt(line)
    assert rec["id"] == "01hx"
    assert "Traceback" in rec["exc"] and "RuntimeError: boom\\nsecond line" in rec["exc"]


def test_msisdns_are_masked_at_info_and_kept_at_debug(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "json", level="debug")
    log.info("id=%s to=%s from +%s", "01hx", "447911123456", "33612345678")
    log.debug("id=%s to=%s", "01hx", "447911123456")
    info, debug = (json.loads(x) for x in lines(stream))
    assert info["msg"] == "id=01hx to=44*******456 from +33******678"
    assert "447911123456" not in lines(stream)[0]
    assert debug["msg"] == "id=01hx to=447911123456"


def test_ids_decimals_and_masked_numbers_are_left_alone() -> None:
    text = ("id=1234567890123 smsc_message_id=98765432101 seq=4294967295 at 1732453912.250 "
            "already 44*******456 and an ICCID 8944110012345678901")
    assert scrub(text) == text


def test_secrets_are_redacted_at_every_level(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "json", level="debug")
    log.debug("bind password=%s, header Authorization: Bearer %s", "hunter2", "demo-key-change-me")
    log.info("config {'secret': 'whsec_123', \"api_key\": \"k y\"} Authorization: Basic dXNlcjpwYXNz")
    out = stream.getvalue()
    for leaked in ("hunter2", "demo-key-change-me", "whsec_123", "k y", "dXNlcjpwYXNz"):
        assert leaked not in out
    first, second = (json.loads(x)["msg"] for x in lines(stream))
    assert first == "bind password=***, header Authorization: Bearer ***"
    assert second == "config {'secret': '***', \"api_key\": \"***\"} Authorization: Basic ***"


def test_message_text_is_hidden_at_info(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "json", level="debug")
    log.info('id=01hx text="your code is 1234"')
    log.debug('id=01hx text="your code is 1234"')
    info, debug = (json.loads(x)["msg"] for x in lines(stream))
    assert info == "id=01hx text=***"
    assert debug == 'id=01hx text="your code is 1234"'


def test_extra_values_and_tracebacks_are_scrubbed(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "json")
    try:
        raise ValueError("bad number 447911123456 with token=abcdef")
    except ValueError:
        log.error("id=%s failed", "01hx", exc_info=True, extra={"to": "447911123456"})
    rec = json.loads(lines(stream)[0])
    assert rec["to"] == "44*******456"
    assert "447911123456" not in rec["exc"] and "abcdef" not in rec["exc"]
    assert "bad number 44*******456 with token=***" in rec["exc"]


def test_set_level_changes_what_is_logged_at_run_time(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    stream = setup(capture, "logfmt", level="warning")
    log.info("hidden")
    set_level("DEBUG")
    log.debug("shown")
    set_level("error")
    log.warning("hidden too")
    assert [logfmt(x)["msg"] for x in lines(stream)] == ["shown"]
    with pytest.raises(ValueError, match="verbose"):
        set_level("verbose")


def test_setup_again_replaces_its_handler(capture: tuple[io.StringIO, list[logging.Handler]]) -> None:
    first = setup(capture, "logfmt")
    second = io.StringIO()
    capture[1].append(setup_logging(LogConfig(format="json"), stream=second))
    log.info("once")
    assert first.getvalue() == "" and json.loads(second.getvalue())["msg"] == "once"
    assert logging.getLogger("httpx").level == logging.WARNING  # one INFO line per callback request otherwise


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        setup_logging(LogConfig(format="xml"))


_STANDALONE = re.compile(r"(?<![\w.*+])\+?\d{10,15}(?![\w*]|\.\d)")


@given(st.lists(st.one_of(st.from_regex(r"\+?[0-9]{10,15}", fullmatch=True),
                          st.text(alphabet="abc 0123456789+.,:*-_\"'", max_size=12)), max_size=8))
def test_scrubbing_leaves_no_msisdn_and_is_idempotent(parts: list[str]) -> None:
    text = " ".join(parts)
    once = scrub(text)
    assert scrub(once) == once
    assert _STANDALONE.search(once) is None
    assert scrub(text, mask_msisdns=False) == text  # nothing secret in this alphabet: DEBUG keeps it whole
