"""Metrics: scrape the exposition after driving fake statistics and the latency hooks."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway._callbacks import CallbackStatistics
from gateway._config import parse_config
from gateway._connector import ConnectorStatistics, SessionInfo
from gateway._core import CoreStatistics, GatewayCore
from gateway._daemon import Gateway
from gateway._metrics import FINAL_LATENCY_BUCKETS_S, LatencyHistogram, Metrics
from gateway._model import Message, MessageStatus
from gateway._store import SqliteStore, StoreStatistics
from smpp import Status


@dataclass
class FakeCore:
    stats: CoreStatistics = field(default_factory=lambda: CoreStatistics(
        open_messages=7, ready=3, accepted_total=1000, final_total=990, receipts_total=980,
        receipts_unmatched_total=2))
    observe_submitted: Any = None
    observe_final: Any = None

    def statistics(self) -> CoreStatistics:
        return self.stats


@dataclass
class FakeStore:
    stats: StoreStatistics = field(default_factory=lambda: StoreStatistics(
        commits=42, rows_written=4200, last_commit_s=0.0125, pending_writes=5, open=True))

    def statistics(self) -> StoreStatistics:
        return self.stats


class FakeConnector:
    def __init__(self, stats: ConnectorStatistics) -> None:
        self.stats = stats

    def statistics(self) -> ConnectorStatistics:
        return self.stats


class FakeSender:
    def statistics(self) -> CallbackStatistics:
        return CallbackStatistics(pending=12, in_flight=2, sent=500, failed=9, retries=8, given_up=1, requests=60)


class FakeGateway:
    def __init__(self) -> None:
        self.core = FakeCore()
        self.store = FakeStore()
        self.connectors: dict[str, Any] = {}
        self.extensions: dict[str, Any] = {"callbacks": FakeSender()}
        self.ready = True
        self.draining = False
        self.started_at = 1_700_000_000.0

    def route_up(self) -> dict[str, bool]:
        return {"uk": True, "fr": False}


def connector_stats(name: str, **kw: Any) -> ConnectorStatistics:
    fields: dict[str, Any] = dict(
        name=name,
        sessions=(SessionInfo(0, "trx", "bound", 1.0, 4), SessionInfo(1, "trx", "connecting")),
        binds_up=1, backlog=17, inflight=4, window=10, rate_per_s=50.0, throttle_slowdowns=3, throttle_waits=11,
        submits={Status.ESME_ROK: 900, Status.ESME_RTHROTTLED: 6, 0x400: 1}, receipts=880, mo=4,
        bind_failures=2, reconnects=1, awaiting_commit=5)
    fields.update(kw)
    return ConnectorStatistics(**fields)


def scrape(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by prometheus_client's own text parser."""
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_scrape_reads_every_service_statistics() -> None:
    gw = FakeGateway()
    gw.connectors["a"] = FakeConnector(connector_stats("a"))
    gw.connectors["b"] = FakeConnector(connector_stats("b", rate_per_s=None, sessions=(), binds_up=0))
    m = Metrics(gw)  # type: ignore[arg-type]
    s = scrape(m)
    assert sample(s, "smppgw_messages_open") == 7
    assert sample(s, "smppgw_messages_ready") == 3
    assert sample(s, "smppgw_messages_accepted_total") == 1000
    assert sample(s, "smppgw_receipts_unmatched_total") == 2
    assert sample(s, "smppgw_smsc_backlog", smsc="a") == 17
    assert sample(s, "smppgw_smsc_window_in_use", smsc="a") == 4
    assert sample(s, "smppgw_smsc_window_size", smsc="a") == 10
    assert sample(s, "smppgw_smsc_window_awaiting_commit", smsc="a") == 5
    assert sample(s, "smppgw_smsc_binds_up", smsc="b") == 0
    assert sample(s, "smppgw_bind_state", smsc="a", session="0", kind="trx", state="bound") == 1
    assert sample(s, "smppgw_bind_state", smsc="a", session="0", kind="trx", state="down") == 0
    assert sample(s, "smppgw_bind_state", smsc="a", session="1", kind="trx", state="connecting") == 1
    assert sample(s, "smppgw_smsc_rate_per_second", smsc="a") == 50.0
    assert ("smppgw_smsc_rate_per_second", (("smsc", "b"),)) not in s  # no limit: no sample
    assert sample(s, "smppgw_throttle_waits_total", smsc="a") == 11
    assert sample(s, "smppgw_throttle_slowdowns_total", smsc="a") == 3
    assert sample(s, "smppgw_submits_total", smsc="a", command_status="ESME_ROK") == 900
    assert sample(s, "smppgw_submits_total", smsc="a", command_status="ESME_RTHROTTLED") == 6
    assert sample(s, "smppgw_submits_total", smsc="a", command_status="vendor_0x00000400") == 1
    assert sample(s, "smppgw_receipts_total", smsc="a", status="all") == 880
    assert sample(s, "smppgw_mo_total", smsc="a") == 4
    assert sample(s, "smppgw_bind_failures_total", smsc="a") == 2
    assert sample(s, "smppgw_reconnects_total", smsc="a") == 1
    assert sample(s, "smppgw_store_commits_total") == 42
    assert sample(s, "smppgw_store_rows_written_total") == 4200
    assert sample(s, "smppgw_store_last_commit_seconds") == 0.0125
    assert sample(s, "smppgw_store_pending_writes") == 5
    assert sample(s, "smppgw_store_open") == 1
    assert sample(s, "smppgw_callbacks_pending") == 12
    assert sample(s, "smppgw_callbacks_in_flight") == 2
    assert sample(s, "smppgw_callbacks_sent_total") == 500
    assert sample(s, "smppgw_callbacks_failed_total") == 9
    assert sample(s, "smppgw_callbacks_retries_total") == 8
    assert sample(s, "smppgw_callbacks_given_up_total") == 1
    assert sample(s, "smppgw_callbacks_requests_total") == 60
    assert sample(s, "smppgw_ready") == 1
    assert sample(s, "smppgw_draining") == 0
    assert sample(s, "smppgw_route_up", route="uk") == 1
    assert sample(s, "smppgw_route_up", route="fr") == 0
    assert sample(s, "smppgw_config_last_reload_successful") == 1


def test_values_are_read_at_scrape_time() -> None:
    gw = FakeGateway()
    m = Metrics(gw)  # type: ignore[arg-type]
    assert sample(scrape(m), "smppgw_messages_open") == 7
    gw.core.stats = CoreStatistics(100, 0, 2000, 1900, 0, 0)
    gw.store.stats = StoreStatistics(43, 4300, 0.5, 0, False)
    s = scrape(m)
    assert sample(s, "smppgw_messages_open") == 100
    assert sample(s, "smppgw_messages_accepted_total") == 2000
    assert sample(s, "smppgw_store_open") == 0


def test_receipts_by_status_when_the_connector_sorts_them() -> None:
    gw = FakeGateway()
    base = connector_stats("a")
    stats = dataclasses.replace(base, receipts_by_status={"DELIVERED": 870, "UNDELIVERABLE": 10})
    gw.connectors["a"] = FakeConnector(stats)
    s = scrape(Metrics(gw))  # type: ignore[arg-type]
    assert sample(s, "smppgw_receipts_total", smsc="a", status="delivered") == 870
    assert sample(s, "smppgw_receipts_total", smsc="a", status="undeliverable") == 10
    assert ("smppgw_receipts_total", (("smsc", "a"), ("status", "all"))) not in s


def test_an_unknown_bind_state_is_reported_too() -> None:
    gw = FakeGateway()
    gw.connectors["a"] = FakeConnector(connector_stats("a", sessions=(SessionInfo(0, "tx", "quarantined"),)))
    s = scrape(Metrics(gw))  # type: ignore[arg-type]
    assert sample(s, "smppgw_bind_state", smsc="a", session="0", kind="tx", state="quarantined") == 1
    assert sample(s, "smppgw_bind_state", smsc="a", session="0", kind="tx", state="bound") == 0


def message(status: MessageStatus, smsc: str | None) -> Message:
    return Message(id="x", account="acme", to="447911123456", source="ACME", text="t", created_at=0.0,
                   expires_at=1e12, status=status, smsc=smsc)


def test_latency_hooks_fill_histograms_and_final_counts() -> None:
    gw = FakeGateway()
    m = Metrics(gw)  # type: ignore[arg-type]
    assert gw.core.observe_submitted == m.observe_submitted and gw.core.observe_final == m.observe_final
    for seconds in (0.004, 0.004, 0.02, 7.0):
        gw.core.observe_submitted(message(MessageStatus.SUBMITTED, "a"), seconds)
    gw.core.observe_final(message(MessageStatus.DELIVERED, "a"), 3.0)
    gw.core.observe_final(message(MessageStatus.DELIVERED, "a"), 0.05)  # on a bound: le=0.05 counts it
    gw.core.observe_final(message(MessageStatus.FAILED, None), 0.2)
    s = scrape(m)
    assert sample(s, "smppgw_submit_latency_seconds_bucket", smsc="a", le="0.0025") == 0
    assert sample(s, "smppgw_submit_latency_seconds_bucket", smsc="a", le="0.005") == 2
    assert sample(s, "smppgw_submit_latency_seconds_bucket", smsc="a", le="0.025") == 3
    assert sample(s, "smppgw_submit_latency_seconds_bucket", smsc="a", le="5.0") == 3
    assert sample(s, "smppgw_submit_latency_seconds_bucket", smsc="a", le="+Inf") == 4
    assert sample(s, "smppgw_submit_latency_seconds_count", smsc="a") == 4
    assert abs(sample(s, "smppgw_submit_latency_seconds_sum", smsc="a") - 7.028) < 1e-9
    assert sample(s, "smppgw_final_latency_seconds_bucket", smsc="a", status="delivered", le="0.05") == 1
    assert sample(s, "smppgw_final_latency_seconds_bucket", smsc="a", status="delivered", le="5.0") == 2
    assert sample(s, "smppgw_final_latency_seconds_count", smsc="", status="failed") == 1
    assert sample(s, "smppgw_messages_final_total", status="delivered") == 2
    assert sample(s, "smppgw_messages_final_total", status="failed") == 1


def test_config_reload_gauge() -> None:
    gw = FakeGateway()
    m = Metrics(gw)  # type: ignore[arg-type]
    m.set_config_reload(False)
    s = scrape(m)
    assert sample(s, "smppgw_config_last_reload_successful") == 0
    m.set_config_reload(True, at=1_800_000_000.0)
    s = scrape(m)
    assert sample(s, "smppgw_config_last_reload_successful") == 1
    assert sample(s, "smppgw_config_last_reload_success_timestamp_seconds") == 1_800_000_000.0


def test_histogram_buckets_follow_prometheus_le() -> None:
    h = LatencyHistogram(FINAL_LATENCY_BUCKETS_S)
    for v in (0.0, 0.05, 0.050001, 86400.0, 86401.0):
        h.observe(v)
    cum = dict(h.cumulative())
    assert cum["0.05"] == 2 and cum["0.1"] == 3 and cum["86400.0"] == 4 and cum["+Inf"] == 5
    assert list(cum) == [*(repr(float(b)) for b in FINAL_LATENCY_BUCKETS_S), "+Inf"]


def test_every_series_is_listed_in_docs_metrics_md() -> None:
    gw = FakeGateway()
    gw.connectors["a"] = FakeConnector(connector_stats("a"))
    m = Metrics(gw)  # type: ignore[arg-type]
    gw.core.observe_submitted(message(MessageStatus.SUBMITTED, "a"), 0.1)
    gw.core.observe_final(message(MessageStatus.DELIVERED, "a"), 1.0)
    docs = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    names = {f.name for f in text_string_to_metric_families(m.render().decode())}
    missing = [n for n in sorted(names) if f"`{n}" not in docs]
    assert names and not missing, missing


def test_each_gateway_has_its_own_registry(tmp_path: Path) -> None:
    # Two real gateways in one process: no "Duplicated timeseries" from a shared registry.
    gws = []
    for i in range(2):
        cfg = parse_config({"store": {"path": str(tmp_path / f"{i}.db")}}, base_dir=tmp_path)
        gw = Gateway(cfg, store=SqliteStore(tmp_path / f"{i}.db"))
        gws.append((gw, Metrics(gw)))
    for gw, m in gws:
        assert isinstance(gw.core, GatewayCore) and gw.extensions["metrics"] is m
        s = scrape(m)
        assert sample(s, "smppgw_messages_open") == 0
        assert sample(s, "smppgw_store_open") == 0  # never opened
    assert gws[0][1].registry is not gws[1][1].registry


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
async def test_the_loop_monitor_sees_a_blocked_loop(anyio_backend: object) -> None:
    """A loop blocked for 0.3 s wakes the monitor at least 0.28 s late (0.3 s less one interval): a lower bound,
    whatever the machine's speed."""
    m = Metrics(FakeGateway())  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(m.run_loop_monitor, interval_s=0.02))
        await anyio.sleep(0.1)
        time.sleep(0.3)  # the whole loop stops: no task runs meanwhile
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    cum = dict(m.loop_lag.cumulative())
    assert cum["+Inf"] >= 3  # it kept measuring before and after
    assert cum["+Inf"] - cum["0.25"] >= 1  # the wake after the block came more than 0.25 s late
    assert m.loop_lag.sum >= 0.28
    (lag,) = [f for f in text_string_to_metric_families(m.render().decode())
              if f.name == "smppgw_event_loop_lag_seconds"]
    assert {s.name: s.value for s in lag.samples}["smppgw_event_loop_lag_seconds_count"] == cum["+Inf"]


def test_process_series_for_the_daemon_and_its_store_writer() -> None:
    gw = FakeGateway()
    m = Metrics(gw)  # type: ignore[arg-type]
    names = {f.name for f in text_string_to_metric_families(m.render().decode())}
    assert "smppgw_process_cpu_seconds" in names and "smppgw_process_open_fds" in names
    assert not any(n.startswith("smppgw_store_writer_process") for n in names)  # a store with no writer process
    gw.store.writer_pid = os.getpid()  # type: ignore[attr-defined]
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    cpu = families["smppgw_store_writer_process_cpu_seconds"].samples[0].value
    assert cpu > 0
    gw.store.writer_pid = None  # type: ignore[attr-defined]  (the writer ended)
    assert "smppgw_store_writer_process_cpu_seconds" not in {
        f.name for f in text_string_to_metric_families(m.render().decode())}
