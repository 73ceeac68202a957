"""Prometheus metrics: every `smppgw_*` series, read from the services' `statistics()` at scrape time.

Rule 1: nothing is counted twice. Counters and gauges that a service already keeps (core, store, connectors,
callback sender) are read from its `statistics()` when Prometheus scrapes; only what no service keeps is kept
here: the latency histograms and final statuses by status (fed per message by the core's hooks, in O(log
buckets) with no lock, since everything runs on the event loop) and the result of the last config reload.
Rule 2: labels are bounded: SMSC, session index, bind state, command_status, status, route. Never a message id,
an account or an MSISDN.
Rule 3: each gateway has its own `CollectorRegistry` (never the process-wide one), so tests can build many.
docs/metrics.md lists every series.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from smpp import Status

from ._callbacks import CallbackStatistics
from ._model import STATUS_VALUE, Message

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = ["BIND_STATES", "FINAL_LATENCY_BUCKETS_S", "LOOP_LAG_BUCKETS_S", "SUBMIT_LATENCY_BUCKETS_S",
           "LatencyHistogram", "Metrics"]

BIND_STATES = ("down", "connecting", "binding", "bound")
"""The states `smppgw_bind_state` reports for every session (1 for the current one, 0 for the others)."""

SUBMIT_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                            60.0, 300.0)
"""Accept to the last part's submit_sm_resp: milliseconds when the queue is short, minutes when an SMSC is down."""

FINAL_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0,
                           86400.0)
"""Accept to a final status: receipts take seconds to hours (a handset that is off)."""

LOOP_LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""How late the event loop ran a timer: a millisecond or two when idle, tens of ms when the daemon's core is full."""

LOOP_LAG_INTERVAL_S = 0.25
"""How often `Metrics.run_loop_monitor` measures the lag."""


class LatencyHistogram:
    """Bucket counts and a sum; `observe` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: the first bound >= seconds, i.e. the bucket `le` that counts it (Prometheus: value <= le).
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as the exposition format wants them, ending with +Inf."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((_le(bound), float(total)))
        out.append(("+Inf", float(total + self.counts[-1])))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class Metrics:
    """The gateway's metrics (docs/metrics.md).

    Creating it sets `gw.extensions["metrics"]` to itself and the core's `observe_submitted` / `observe_final`
    hooks. `render()` is the body of `GET /metrics` and `content_type` its Content-Type.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.registry = CollectorRegistry(auto_describe=False)
        self.submit_latency: dict[str, LatencyHistogram] = {}
        self.final_latency: dict[tuple[str, str], LatencyHistogram] = {}
        self.finals: dict[str, int] = {}
        self.reload_successful = True  # the config the daemon started with was valid, or it would not run
        self.reload_at = time.time()
        self.loop_lag = LatencyHistogram(LOOP_LAG_BUCKETS_S)
        self.registry.register(_GatewayCollector(self))
        # The daemon's CPU, memory and file descriptors, and its store writer's while it runs (Linux /proc).
        ProcessCollector(namespace="smppgw", registry=self.registry)
        ProcessCollector(namespace="smppgw_store_writer", pid=self._writer_pid, registry=self.registry)
        gw.core.observe_submitted = self.observe_submitted
        gw.core.observe_final = self.observe_final
        gw.extensions["metrics"] = self

    # ---- hooks (per message; keep them cheap) ----------------------------------------------------------

    def observe_submitted(self, msg: Message, seconds: float) -> None:
        """Every part of `msg` got its submit_sm_resp, `seconds` after it was accepted (or its send_at)."""
        smsc = msg.smsc or ""
        h = self.submit_latency.get(smsc)
        if h is None:
            h = self.submit_latency[smsc] = LatencyHistogram(SUBMIT_LATENCY_BUCKETS_S)
        h.observe(seconds)

    def observe_final(self, msg: Message, seconds: float) -> None:
        """`msg` reached a final status `seconds` after it was accepted (or its send_at)."""
        status = STATUS_VALUE[msg.status]
        finals = self.finals
        finals[status] = finals.get(status, 0) + 1
        key = (msg.smsc or "", status)
        h = self.final_latency.get(key)
        if h is None:
            h = self.final_latency[key] = LatencyHistogram(FINAL_LATENCY_BUCKETS_S)
        h.observe(seconds)

    def _writer_pid(self) -> int | str:
        pid = getattr(self.gw.store, "writer_pid", None)
        return pid if pid is not None else "none"  # no /proc/none: the collector yields nothing

    async def run_loop_monitor(self, *, interval_s: float = LOOP_LAG_INTERVAL_S,
                               clock: Callable[[], float] = anyio.current_time,
                               task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Every `interval_s`, observe how much later than asked the loop woke this task
        (`smppgw_event_loop_lag_seconds`): the time a ready task waits for its turn. Runs until cancelled."""
        task_status.started()
        while True:
            due = clock() + interval_s
            await anyio.sleep(interval_s)
            self.loop_lag.observe(max(0.0, clock() - due))

    def set_config_reload(self, successful: bool, *, at: float | None = None) -> None:
        """Record the outcome of a config reload (`smppgw_config_last_reload_successful`)."""
        self.reload_successful = successful
        if successful:
            self.reload_at = time.time() if at is None else at

    # ---- exposition ------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of every series (the body of GET /metrics)."""
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: tuple[str, ...] = (), *,
             value: float | None = None) -> CounterMetricFamily:
    """A counter family: with `labels` for `add_metric`, or unlabelled with its one `value`."""
    if value is not None:
        return CounterMetricFamily(name, doc, value=value)
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: tuple[str, ...] = (), *,
           value: float | None = None) -> GaugeMetricFamily:
    """A gauge family: with `labels` for `add_metric`, or unlabelled with its one `value`."""
    if value is not None:
        return GaugeMetricFamily(name, doc, value=value)
    return GaugeMetricFamily(name, doc, labels=list(labels))


class _GatewayCollector(Collector):
    """Reads every service's statistics when the registry is collected (Rule 1)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        gw = m.gw
        yield from self._gateway(gw)
        yield from self._core(gw, m.finals)
        yield from self._connectors(gw)
        yield from self._store(gw)
        yield from self._callbacks(gw)
        yield from self._cluster(gw)
        yield from self._latency(m)
        ok = _gauge("smppgw_config_last_reload_successful", "1 if the last config reload succeeded (or none was "
                    "tried since the start), 0 if the new file was refused and the old config keeps running.",
                    value=1.0 if m.reload_successful else 0.0)
        yield ok
        at = _gauge("smppgw_config_last_reload_success_timestamp_seconds",
                    "When the running config was loaded (Unix time).", value=m.reload_at)
        yield at

    @staticmethod
    def _gateway(gw: Gateway) -> Iterator[Metric]:
        ready = _gauge("smppgw_ready", "1 when the gateway is ready (what /readyz answers).",
                       value=1.0 if gw.ready else 0.0)
        yield ready
        draining = _gauge("smppgw_draining", "1 while the gateway drains for shutdown.",
                          value=1.0 if gw.draining else 0.0)
        yield draining
        start = _gauge("smppgw_start_time_seconds", "When the gateway started (Unix time).",
                       value=gw.started_at)
        yield start
        route = _gauge("smppgw_route_up", "1 when at least one SMSC of the route can submit.", ("route",))
        for name, up in gw.route_up().items():
            route.add_metric([name], 1.0 if up else 0.0)
        yield route

    @staticmethod
    def _core(gw: Gateway, finals: Mapping[str, int]) -> Iterator[Metric]:
        s = gw.core.statistics()
        open_ = _gauge("smppgw_messages_open", "Messages accepted and not final (the working set).",
                       value=s.open_messages)
        yield open_
        ready = _gauge("smppgw_messages_ready", "Messages in the ready heap: waiting for their time, a route or a "
                       "connector with room.", value=s.ready)
        yield ready
        accepted = _counter("smppgw_messages_accepted_total", "Messages accepted (made durable and answered 202).",
                            value=s.accepted_total)
        yield accepted
        final = _counter("smppgw_messages_final_total", "Messages that reached a final status, by status.",
                         ("status",))
        for status, n in sorted(finals.items()):
            final.add_metric([status], n)
        yield final
        unmatched = _counter("smppgw_receipts_unmatched_total",
                             "Receipts matched to a message id that the store does not know.",
                             value=s.receipts_unmatched_total)
        yield unmatched

    @staticmethod
    def _connectors(gw: Gateway) -> Iterator[Metric]:
        backlog = _gauge("smppgw_smsc_backlog", "Parts queued at the connector, not yet on a session.", ("smsc",))
        inflight = _gauge("smppgw_smsc_window_in_use", "submit_sm sent and not yet answered (all sessions).",
                          ("smsc",))
        window = _gauge("smppgw_smsc_window_size", "Outstanding submit_sm allowed per session (config).", ("smsc",))
        awaiting = _gauge("smppgw_smsc_window_awaiting_commit", "Window slots whose submit_sm was answered, held "
                          "until the store has made the outcome durable (all sessions).", ("smsc",))
        binds_up = _gauge("smppgw_smsc_binds_up", "Sessions bound.", ("smsc",))
        state = _gauge("smppgw_bind_state", "1 for the session's current state, 0 for the others.",
                       ("smsc", "session", "kind", "state"))
        rate = _gauge("smppgw_smsc_rate_per_second", "Current submit rate ceiling (lowered after ESME_RTHROTTLED "
                      "or ESME_RMSGQFUL); absent when the SMSC has no throughput limit.", ("smsc",))
        waits = _counter("smppgw_throttle_waits_total", "Times a submit waited for the SMSC's rate.", ("smsc",))
        slowdowns = _counter("smppgw_throttle_slowdowns_total",
                             "Times the SMSC's rate was lowered after a throttling status.", ("smsc",))
        submits = _counter("smppgw_submits_total", "submit_sm answered, by command_status.",
                           ("smsc", "command_status"))
        receipts = _counter("smppgw_receipts_total", "Delivery receipts received, by receipt status.",
                            ("smsc", "status"))
        mo = _counter("smppgw_mo_total", "Mobile-originated messages received.", ("smsc",))
        bind_failures = _counter("smppgw_bind_failures_total", "Connect or bind attempts that failed.", ("smsc",))
        reconnects = _counter("smppgw_reconnects_total", "Sessions re-established after a drop.", ("smsc",))
        for name in sorted(gw.connectors):
            s = gw.connectors[name].statistics()
            backlog.add_metric([name], s.backlog)
            inflight.add_metric([name], s.inflight)
            window.add_metric([name], s.window)
            awaiting.add_metric([name], s.awaiting_commit)
            binds_up.add_metric([name], s.binds_up)
            for info in s.sessions:
                states = BIND_STATES if info.state in BIND_STATES else (*BIND_STATES, info.state)
                for st in states:
                    state.add_metric([name, str(info.index), info.kind, st], 1.0 if st == info.state else 0.0)
            if s.rate_per_s is not None:
                rate.add_metric([name], s.rate_per_s)
            waits.add_metric([name], s.throttle_waits)
            slowdowns.add_metric([name], s.throttle_slowdowns)
            for code, n in sorted(s.submits.items()):
                submits.add_metric([name, Status.describe(code)], n)
            by_status: Mapping[str, int] | None = getattr(s, "receipts_by_status", None)
            if by_status:
                for st, n in sorted(by_status.items()):
                    receipts.add_metric([name, st.lower()], n)
            else:  # a connector that does not sort its receipts: their total, as status "all"
                receipts.add_metric([name, "all"], s.receipts)
            mo.add_metric([name], s.mo)
            bind_failures.add_metric([name], s.bind_failures)
            reconnects.add_metric([name], s.reconnects)
        yield from (backlog, inflight, window, awaiting, binds_up, state, rate, waits, slowdowns, submits, receipts, mo,
                    bind_failures, reconnects)

    @staticmethod
    def _store(gw: Gateway) -> Iterator[Metric]:
        s = gw.store.statistics()
        commits = _counter("smppgw_store_commits_total", "Group commits of the store.", value=s.commits)
        rows = _counter("smppgw_store_rows_written_total", "Rows written by those commits.",
                        value=s.rows_written)
        last = _gauge("smppgw_store_last_commit_seconds", "How long the last commit took.",
                      value=s.last_commit_s)
        pending = _gauge("smppgw_store_pending_writes", "Rows waiting for the next commit.",
                         value=s.pending_writes)
        is_open = _gauge("smppgw_store_open", "1 while the store is open and its last commit succeeded.",
                         value=1.0 if s.open else 0.0)
        yield from (commits, rows, last, pending, is_open)

    @staticmethod
    def _callbacks(gw: Gateway) -> Iterator[Metric]:
        sender = gw.extensions.get("callbacks")
        if sender is None:
            return
        s = sender.statistics()
        if not isinstance(s, CallbackStatistics):
            return
        pending = _gauge("smppgw_callbacks_pending", "Final statuses whose callback is not acknowledged yet.",
                         value=s.pending)
        in_flight = _gauge("smppgw_callbacks_in_flight", "Callback requests waiting for an answer.",
                           value=s.in_flight)
        sent = _counter("smppgw_callbacks_sent_total", "Statuses acknowledged (2xx) by their callback URL.",
                        value=s.sent)
        failed = _counter("smppgw_callbacks_failed_total",
                          "Statuses in a callback attempt that failed (non-2xx, timeout, connection error).",
                          value=s.failed)
        retries = _counter("smppgw_callbacks_retries_total", "Statuses scheduled for another attempt.",
                           value=s.retries)
        given_up = _counter("smppgw_callbacks_given_up_total",
                            "Statuses abandoned after callback.max_age_s (or with an unusable URL).",
                            value=s.given_up)
        requests = _counter("smppgw_callbacks_requests_total", "Callback HTTP requests made (a batch is one).",
                            value=s.requests)
        yield from (pending, in_flight, sent, failed, retries, given_up, requests)

    @staticmethod
    def _cluster(gw: Gateway) -> Iterator[Metric]:
        cluster = getattr(gw.core, "cluster", None)
        leader = getattr(gw, "leader", None)
        if cluster is None or leader is None:
            return
        s = cluster.statistics()
        billing = _gauge("smppgw_cluster_billing_node", "1 while this node holds the billing lease and runs the "
                         "carrier-billing flows.", value=1.0 if leader.is_leader else 0.0)
        claimed = _counter("smppgw_cluster_claimed_total", "Messages this node took from its routes' queues.",
                           value=s["claimed"])
        reclaimed = _counter("smppgw_cluster_reclaimed_total",
                             "Messages this node took over from a stopped node (or from itself before a restart).",
                             value=s["reclaimed"])
        conflicts = _counter("smppgw_cluster_conflicts_total",
                             "Record writes another node had written meanwhile, merged and written again.",
                             value=s["conflicts"])
        parked = _counter("smppgw_cluster_parked_receipts_applied_total",
                          "Receipts that came before their message's SMSC id was stored, applied when it was.",
                          value=s["parked_applied"])
        forwarded = _counter("smppgw_cluster_billing_forwarded_total",
                             "Billing API requests this node forwarded to the billing node.",
                             value=leader.forwarded_total)
        followed = _counter("smppgw_cluster_consent_followed_total",
                            "Consent records made on another node and applied here.",
                            value=gw.consent.followed_total)
        mo_backlog = _gauge("smppgw_cluster_mo_backlog", "MO parts in the cluster's mo stream: received by a node and "
                            "not yet finished by the billing node (read at each heartbeat).",
                            value=s["mo_backlog"])
        yield from (billing, claimed, reclaimed, conflicts, parked, forwarded, followed, mo_backlog)

    @staticmethod
    def _latency(m: Metrics) -> Iterator[Metric]:
        submit = HistogramMetricFamily(
            "smppgw_submit_latency_seconds",
            "From accept (or send_at) to the submit_sm_resp of the message's last part.", labels=["smsc"])
        for smsc, h in sorted(m.submit_latency.items()):
            submit.add_metric([smsc], h.cumulative(), h.sum)
        yield submit
        final = HistogramMetricFamily(
            "smppgw_final_latency_seconds",
            "From accept (or send_at) to a final status (a receipt, or an error, expiry or cancel).",
            labels=["smsc", "status"])
        for (smsc, status), h in sorted(m.final_latency.items()):
            final.add_metric([smsc, status], h.cumulative(), h.sum)
        yield final
        lag = HistogramMetricFamily(
            "smppgw_event_loop_lag_seconds",
            "How much later than asked the event loop ran a timer, measured every 0.25 s: the wait of a ready task.")
        lag.add_metric([], m.loop_lag.cumulative(), m.loop_lag.sum)
        yield lag
