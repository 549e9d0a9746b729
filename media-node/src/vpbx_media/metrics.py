"""Prometheus metrics of the SIP edge and the media node (`VPBX_METRICS_PORT`; 0 = none).

Counters move once per call, at its end (never per packet or per SIP message), so the
call path pays a few dictionary lookups per call. What is expensive to keep current
(the CDR spool's backlog) is measured when Prometheus scrapes, in the exporter's thread.
The exporter is prometheus_client's own HTTP server thread: scrapes never wait on the
event loop, so a node too busy to answer SIP is still seen (and its CPU counted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vpbx_common.cdr import CallRecord

from .rtp.relay import RelayStats

logger = logging.getLogger(__name__)


class _Backlog(Protocol):
    def pending_count(self) -> int: ...


def process_registry() -> CollectorRegistry:
    """A registry with the process's CPU, memory and file descriptors (process_* series)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class _SpoolBacklog(Collector):
    """Unshipped CDRs, counted at scrape time from the spool's segment files."""

    def __init__(self, spool: _Backlog, labels: dict[str, str]) -> None:
        self._spool = spool
        self._labels = labels
        self._last = 0

    def collect(self) -> Iterable[Metric]:
        try:
            self._last = self._spool.pending_count()
        except OSError as exc:
            # The shipper removed a segment while it was being read: the previous count
            # stands for this scrape, the next one reads the new state.
            logger.debug("CDR spool backlog not read this scrape: %s", exc)
        family = GaugeMetricFamily(
            "vpbx_cdr_spool_backlog",
            "CDRs written to the node's spool and not yet in the CDR store",
            labels=list(self._labels),
        )
        family.add_metric(list(self._labels.values()), self._last)
        yield family


class NodeMetrics:
    """One media node's calls, media quality and CDR shipping."""

    def __init__(self, tenant: str, city: str) -> None:
        self.registry = process_registry()
        self._labels = {"tenant": tenant, "city": city}
        names = list(self._labels)
        self.calls = Counter(
            "vpbx_node_calls",
            "Calls ended on the node, by direction and end reason",
            [*names, "direction", "end_reason"],
            registry=self.registry,
        )
        self.answered = Counter(
            "vpbx_node_calls_answered",
            "Calls ended on the node that somebody answered, by direction",
            [*names, "direction"],
            registry=self.registry,
        )
        self.active = Gauge(
            "vpbx_node_active_calls",
            "Calls in progress on the node",
            names,
            registry=self.registry,
        )
        # Loss as RTP sequence numbers show it: packets the peers sent (expected) and
        # those that never arrived; summed over both legs at each call's end.
        self.rtp_expected = Counter(
            "vpbx_node_rtp_expected_packets",
            "RTP packets the call's peers sent to the node (by sequence numbers)",
            names,
            registry=self.registry,
        )
        self.rtp_lost = Counter(
            "vpbx_node_rtp_lost_packets",
            "RTP packets the call's peers sent that never reached the node",
            names,
            registry=self.registry,
        )
        self.cdr_shipped = Counter(
            "vpbx_cdr_shipped",
            "CDRs the node's shipper inserted into the CDR store",
            names,
            registry=self.registry,
        )
        self.cdr_store_up = Gauge(
            "vpbx_cdr_store_up",
            "1 while the node's shipper reaches the CDR store, 0 during an outage",
            names,
            registry=self.registry,
        )
        self.cdr_store_up.labels(tenant, city).set(1)
        self.active.labels(tenant, city).set(0)

    def watch_active(self, count: Callable[[], int]) -> None:
        self.active.labels(*self._labels.values()).set_function(count)

    def watch_spool(self, spool: _Backlog) -> None:
        self.registry.register(_SpoolBacklog(spool, self._labels))

    def call_ended(self, record: CallRecord, media: RelayStats | None) -> None:
        tenant, city = self._labels.values()
        direction = record.direction.value
        self.calls.labels(tenant, city, direction, record.end_reason.value).inc()
        if record.answer_ms is not None:
            self.answered.labels(tenant, city, direction).inc()
        if media is not None:
            expected = media.a.expected + media.b.expected
            if expected:
                self.rtp_expected.labels(tenant, city).inc(expected)
                self.rtp_lost.labels(tenant, city).inc(max(media.a.lost, 0) + max(media.b.lost, 0))

    def cdrs_shipped(self, count: int) -> None:
        self.cdr_shipped.labels(*self._labels.values()).inc(count)

    def cdr_store_reachable(self, up: bool) -> None:
        self.cdr_store_up.labels(*self._labels.values()).set(1 if up else 0)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> WSGIServer | None:
    """Serve `registry` at http://host:port/metrics in a daemon thread; port 0: not at all."""
    if not port:
        return None
    server, _thread = start_http_server(port, addr=host, registry=registry)
    logger.info("metrics on http://%s:%d/metrics", host, port)
    return server
