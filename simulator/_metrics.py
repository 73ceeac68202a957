"""Rule: metrics are read from `statistics()` at scrape time; the SMPP path never touches a metric object.

GET /metrics renders a registry of its own (one per simulator, so several can run in one process) whose single
collector turns an `SmscStatistics` snapshot into Prometheus families named `smppsim_*`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ._smsc import SmscStatistics

__all__ = ["CONTENT_TYPE", "MetricsExporter"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _SmscCollector(Collector):
    def __init__(self, snapshot: Callable[[], SmscStatistics]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._snapshot()
        counters = {
            "submitted": ("smppsim_submitted", "Message-bearing requests received (submit_sm, submit_multi, data_sm)"),
            "accepted": ("smppsim_accepted", "Messages accepted (one per submit_multi destination)"),
            "throttled": ("smppsim_throttled", "Requests refused with ESME_RTHROTTLED by the throughput window"),
            "queue_full": ("smppsim_queue_full", "Requests refused with ESME_RMSGQFUL by the account queue"),
            "receipts_sent": ("smppsim_receipts_sent", "Receipts (final and intermediate) sent as deliver_sm"),
            "mo_sent": ("smppsim_mo_sent", "MO parts sent as deliver_sm"),
            "deliver_acked": ("smppsim_deliver_acked", "deliver_sm answered with ESME_ROK"),
            "deliver_refused": ("smppsim_deliver_refused", "deliver_sm answered with an error or generic_nack"),
            "receipts_dropped": ("smppsim_deliver_dropped", "deliver_sm dropped: backlog full or not encodable"),
            "charged": ("smppsim_charged", "Charged MTs paid"),
            "dropped_responses": ("smppsim_dropped_responses", "Responses withheld by the drop-response fault"),
        }
        families = {k: CounterMetricFamily(name, doc, labels=["account"]) for k, (name, doc) in counters.items()}
        responses = CounterMetricFamily("smppsim_responses", "Responses to ESME requests by command_status",
                                        labels=["account", "status"])
        pending = GaugeMetricFamily("smppsim_pending", "Accepted messages not yet final", labels=["account"])
        backlog = GaugeMetricFamily("smppsim_backlog", "deliver_sm waiting for a receiver", labels=["account"])
        binds = GaugeMetricFamily("smppsim_binds", "Open binds by type", labels=["account", "type"])
        for a in s.accounts:
            for key, family in families.items():
                family.add_metric([a.system_id], getattr(a, key))
            for status, count in a.responses.items():
                responses.add_metric([a.system_id, status], count)
            pending.add_metric([a.system_id], a.pending)
            backlog.add_metric([a.system_id], a.backlog)
            for kind in ("transmitter", "receiver", "transceiver"):
                binds.add_metric([a.system_id, kind], a.binds.get(kind, 0))
        yield from families.values()
        yield responses
        yield pending
        yield backlog
        yield binds
        yield GaugeMetricFamily("smppsim_links", "Open SMPP connections", value=s.links)
        yield GaugeMetricFamily("smppsim_scheduled", "Scheduled actions (receipts, replies, delayed responses)",
                                value=s.scheduled)
        yield GaugeMetricFamily("smppsim_messages_stored", "Messages held for GET /messages", value=s.store.messages)
        yield CounterMetricFamily("smppsim_rejected_pdus", "PDUs refused by the session (bad body or state)",
                                  value=s.rejected_pdus)
        billing = CounterMetricFamily("smppsim_charges", "Charge attempts by result", labels=["result"])
        billing.add_metric(["charged"], s.billing.charged)
        billing.add_metric(["insufficient_funds"], s.billing.insufficient_funds)
        billing.add_metric(["barred"], s.billing.barred)
        yield billing
        yield CounterMetricFamily("smppsim_charged_amount", "Amount charged, in minor currency units",
                                  value=s.billing.charged_amount)
        yield GaugeMetricFamily("smppsim_uptime_seconds", "Seconds since start", value=s.uptime_s)


class MetricsExporter:
    """One simulator's Prometheus registry."""

    def __init__(self, snapshot: Callable[[], SmscStatistics]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SmscCollector(snapshot))

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
