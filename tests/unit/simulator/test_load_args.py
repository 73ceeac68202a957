"""`smppgw load` argument parsing and checks, and the HTTP callback sink fed by hand (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlr import IdFormat, IdPolicy
from simulator._load import EXIT_USAGE, UsageError, main, parse_args
from simulator._load_http import CallbackSink, HttpTarget
from simulator._load_smpp import SmppTarget
from simulator._load_stats import Tally


def test_smpp_defaults() -> None:
    inv = parse_args(["--smpp", "127.0.0.1:2775"], environ={"SMPPGW_LOAD_PASSWORD": "load1"})
    t = inv.target
    assert isinstance(t, SmppTarget)
    assert (t.host, t.port, t.system_id, t.password, t.bind_type, t.binds, t.window) == \
        ("127.0.0.1", 2775, "load", "load1", "transceiver", 1, 100)
    assert t.id_policy == IdPolicy()
    plan = inv.plan
    assert plan.count == 1000 and plan.rate_per_s is None and plan.receipts and plan.receipt_timeout_s == 30.0
    assert [k.name for k in plan.mix.kinds] == ["gsm", "ucs2", "long"] and plan.mix.weights == (8.0, 1.0, 1.0)
    assert plan.destination == "447400000000" and plan.recipients == 1000
    assert inv.progress and not inv.json


def test_smpp_options(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    inv = parse_args(["--smpp", "[::1]:2776", "--system-id", "acme", "--password-file", str(secret),
                      "--bind-type", "transmitter", "--binds", "4", "--window", "500", "--ids", "decimal/hex",
                      "-n", "50", "--rate", "250.5", "--duration", "3", "--mix", "gsm=1,long_ucs2=3",
                      "--to", "4479", "--recipients", "1", "--no-receipts", "--json", "--quiet"], environ={})
    t = inv.target
    assert isinstance(t, SmppTarget)
    assert (t.host, t.port, t.password, t.binds, t.window) == ("::1", 2776, "s3cret", 4, 500)
    assert t.id_policy == IdPolicy(IdFormat.DECIMAL, IdFormat.HEX)
    assert (inv.plan.count, inv.plan.rate_per_s, inv.plan.duration_s, inv.plan.receipts) == (50, 250.5, 3.0, False)
    assert inv.json and not inv.progress
    assert parse_args(["--smpp", "h:1", "--text", "hello"], environ={}).plan.mix.kinds[0].text == "hello"


def test_http_options() -> None:
    inv = parse_args(["--http", "http://127.0.0.1:8080/", "--batch", "100", "--concurrency", "8"],
                     environ={"SMPPGW_LOAD_API_KEY": "demo-key"})
    t = inv.target
    assert isinstance(t, HttpTarget)
    assert (t.base_url, t.api_key, t.batch, t.concurrency, t.callback_port) == \
        ("http://127.0.0.1:8080", "demo-key", 100, 8, 0)
    assert t.url == "http://127.0.0.1:8080/v1/messages/batch"
    single = parse_args(["--http", "http://gw:80", "--api-key", "k", "--callback-listen", "localhost:9000"],
                        environ={}).target
    assert isinstance(single, HttpTarget)
    assert single.url == "http://gw:80/v1/messages" and (single.callback_host, single.callback_port) == \
        ("127.0.0.1", 9000)


@pytest.mark.parametrize(("argv", "message"), [
    (["--smpp", "h:1", "-n", "0"], "--count must be at least 1"),
    (["--smpp", "h:1", "--rate", "0"], "--rate must be above 0"),
    (["--smpp", "h:1", "--duration", "-1"], "--duration must be above 0"),
    (["--smpp", "h:1", "--to", "+44"], "--to must be digits"),
    (["--smpp", "h:1", "--recipients", "0"], "--recipients must be at least 1"),
    (["--smpp", "h:1", "--mix", "gsm=0"], "--mix: the mix needs"),
    (["--smpp", "h:1", "--mix", "emoji=1"], "--mix: unknown text kind"),
    (["--smpp", "h:1", "--text", "\ud800"], "--text:"),
    (["--smpp", "h"], "--smpp: expected HOST:PORT"),
    (["--smpp", "h:99999"], "--smpp: expected HOST:PORT"),
    (["--smpp", "h:1", "--binds", "0"], "--binds must be at least 1"),
    (["--smpp", "h:1", "--window", "0"], "--window must be at least 1"),
    (["--smpp", "h:1", "--ids", "octal"], "--ids: unknown message id format"),
    (["--smpp", "h:1", "--password-file", "/nonexistent/pw"], "--password-file: cannot read"),
    (["--http", "ftp://x"], "expected an http:// or https:// URL"),
    (["--http", "http://x"], "--http needs --api-key"),
    (["--http", "http://x", "--api-key", "k", "--batch", "1001"], "--batch must be 0 to 1000"),
    (["--http", "http://x", "--api-key", "k", "--concurrency", "0"], "--concurrency must be at least 1"),
    (["--http", "http://x", "--api-key", "k", "--callback-listen", "0.0.0.0:0"], "must be on loopback"),
])
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("+", r"\+")):
        parse_args(argv, environ={})


def test_main_exits_2_on_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smpp", "h:1", "-n", "0"]) == EXIT_USAGE
    assert "--count must be at least 1" in capsys.readouterr().err
    assert main(["--smpp", "h:1", "--http", "http://x"]) == EXIT_USAGE  # argparse: one target only
    assert main([]) == EXIT_USAGE
    assert main(["--help"]) == 0
    assert "--receipt-timeout" in capsys.readouterr().out


def test_callback_sink_matches_final_callbacks_to_ids() -> None:
    tally = Tally()
    sink = CallbackSink(tally)
    sink.expect("a", 10.0)
    sink.expect("b", 10.0)
    assert sink.accept(b'{"id": "a", "status": "submitted"}', 10.1)
    assert sink.accept(b'{"id": "a", "status": "delivered", "reference": "load-0"}', 10.5)
    assert sink.accept(b'[{"id": "b", "status": "undeliverable"}, {"id": "zz", "status": "delivered"}]', 11.0)
    assert tally.receipts == {"delivered": 1, "undeliverable": 1} and tally.intermediate == 1
    assert list(tally.receipt_s) == [0.5, 1.0] and tally.last_receipt == 11.0
    assert sink.early == {"zz": (11.0, "delivered")}  # an id no 202 gave yet
    sink.expect("zz", 10.8)
    assert tally.receipts == {"delivered": 2, "undeliverable": 1} and sink.early == {}
    assert list(tally.receipt_s)[-1] == pytest.approx(0.2)
    assert tally.receipts_expected == 3


def test_callback_sink_refuses_what_is_not_a_callback() -> None:
    sink = CallbackSink(Tally())
    assert not sink.accept(b"not json", 1.0)
    assert sink.accept(b'[{"status": "delivered"}, 5]', 1.0)  # readable JSON, but no ids: counted as bad
    assert sink.bad_bodies == 3
