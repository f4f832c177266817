"""The cloud's Prometheus metrics, served by ``GET /metrics`` in the text format.

Each cloud services object has a registry of its own (several clouds run in one test process).
What the ingest already counts per batch (``IngestMetrics``), the MQTT link's state and the fleet
in the database are read when Prometheus scrapes; only the histograms and the command counter are
instruments the services update. No label ever names a hub, a device or an account: labels take
values from small fixed sets (a rejection reason, a command status, a hub or device state).

Another part of the cloud adds a gauge of its own on ``CloudMetrics.registry``, e.g.
``Gauge("spoke_…", "…", registry=metrics.registry).set_function(depth)``, read at each scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.process_collector import ProcessCollector

from cloud.storage.base import FleetCounts, StoreUnavailable

if TYPE_CHECKING:
    from cloud.ingest import Ingest
    from cloud.telemetry_export import TelemetryExport

log = logging.getLogger(__name__)

# No *_created series: a counter's start time doubles the series and Prometheus does not need it.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
# Hub clocks and outbox replays: from a few milliseconds live to an hour for a hub that was away.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
COMMAND_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The outcomes of a command sent through the API, as its caller learns them.
COMMAND_OUTCOMES = ("succeeded", "failed", "expired", "timeout")
COMMAND_STATUSES = (*COMMAND_OUTCOMES, "hub_offline")

# (metric name without _total, IngestMetrics field, help)
_INGEST_COUNTERS = (
    ("spoke_ingest_messages_received", "received", "MQTT messages taken from the broker"),
    ("spoke_ingest_events_received", "events", "Events received, single or in batches"),
    ("spoke_ingest_event_batches", "event_batches", "Messages that carried a batch of events"),
    ("spoke_ingest_events_stored", "stored", "Events stored (including ones kept for a device "
     "until it was described)"),
    ("spoke_ingest_events_duplicate", "duplicates", "Events received again and not stored twice"),
    ("spoke_ingest_event_gaps", "gaps", "Sequence numbers found missing in the hubs' ledgers"),
    ("spoke_ingest_command_results", "results", "Command results stored"),
    ("spoke_ingest_pairing_events", "pairing_events", "Pairing steps stored"),
    ("spoke_ingest_batches", "batches", "Batches committed to the database"),
    ("spoke_ingest_acks_sent", "acks", "Ledger acknowledgements published to hubs"),
)


class CloudMetrics:
    """The registry of one cloud and the instruments its services update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.ingest_lag = Histogram(
            "spoke_ingest_lag_seconds", "Time from an event on its hub to its commit here",
            buckets=LAG_BUCKETS, registry=self.registry)
        self.batch_commit = Histogram(
            "spoke_ingest_batch_commit_seconds", "Time to apply and commit one ingest batch",
            buckets=COMMIT_BUCKETS, registry=self.registry)
        self.command_duration = Histogram(
            "spoke_command_duration_seconds", "Time from sending a command to its outcome",
            ["outcome"], buckets=COMMAND_BUCKETS, registry=self.registry)
        self.commands = Counter("spoke_commands", "Commands asked for through the API, by how "
                                "they ended", ["status"], registry=self.registry)
        for status in COMMAND_STATUSES:  # every series exists from the start, at 0
            self.commands.labels(status=status)
        for outcome in COMMAND_OUTCOMES:
            self.command_duration.labels(outcome=outcome)

    def watch(self, ingest: Ingest, fleet: Callable[[], FleetCounts]) -> None:
        """Read the ingest's counters, its link and the fleet at every scrape."""
        self.registry.register(_ScrapeCollector(ingest, fleet))

    def watch_export(self, export: TelemetryExport) -> None:
        """Read the InfluxDB export's counters and its queue at every scrape."""
        self.registry.register(_ExportCollector(export))

    def batch_committed(self, seconds: float, event_times: Sequence[datetime]) -> None:
        """One batch took ``seconds`` to commit and stored events stamped ``event_times``."""
        self.batch_commit.observe(seconds)
        if event_times:
            now = datetime.now(UTC)
            for ts in event_times:
                self.ingest_lag.observe(max(0.0, (now - ts).total_seconds()))

    def command_ended(self, status: str, seconds: float | None) -> None:
        """A command asked for through the API ended with ``status`` (one of COMMAND_STATUSES)
        after ``seconds`` (None when it was never sent)."""
        if status not in COMMAND_STATUSES:  # a label keeps to its fixed set whatever a hub says
            status = "failed"
        self.commands.labels(status=status).inc()
        if seconds is not None:
            self.command_duration.labels(outcome=status).observe(seconds)

    def render(self) -> bytes:
        """The text exposition; blocking (it counts the fleet in the database)."""
        return generate_latest(self.registry)


class _ScrapeCollector:
    """Metrics computed when Prometheus scrapes, from state the services keep anyway."""

    def __init__(self, ingest: Ingest, fleet: Callable[[], FleetCounts]) -> None:
        self._ingest = ingest
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest_counters()
        link = self._ingest.link
        yield CounterMetricFamily("spoke_mqtt_reconnects", "Connections to the broker after the "
                                  "first (each one resumes or renews the session)",
                                  value=max(0, link.connections - 1))
        yield GaugeMetricFamily("spoke_mqtt_connected", "1 while connected and subscribed",
                                value=int(link.connected))
        progress = self._ingest.progress()
        yield GaugeMetricFamily("spoke_ingest_waiting_messages", "Messages received and not yet "
                                "finished by the ingest worker", value=progress.waiting)
        yield GaugeMetricFamily("spoke_ingest_stalled", "1 while messages wait and the ingest "
                                "makes no progress (see /readyz)",
                                value=int(progress.stall is not None))
        yield from self._fleet_gauges()

    def _ingest_counters(self) -> Iterator[Metric]:
        counts = self._ingest.metrics.snapshot()
        for name, field, doc in _INGEST_COUNTERS:
            yield CounterMetricFamily(name, doc, value=counts[field])
        rejected = CounterMetricFamily("spoke_ingest_messages_rejected", "Messages refused, by "
                                       "reason (they are acknowledged and logged)",
                                       labels=["reason"])
        for reason, n in _with_zeros(counts["rejected"], self._ingest.metrics.REJECT_REASONS):
            rejected.add_metric([reason], n)
        yield rejected

    def _fleet_gauges(self) -> Iterator[Metric]:
        started = time.monotonic()
        try:
            fleet = self._fleet()
        except StoreUnavailable as exc:  # the other metrics still matter most then
            log.warning("metrics: could not count hubs and devices: %s", exc)
            return
        hubs = GaugeMetricFamily("spoke_hubs", "Hubs by their last status", labels=["state"])
        for state, n in fleet.hubs.items():
            hubs.add_metric([state], n)
        devices = GaugeMetricFamily("spoke_devices", "Devices by availability (hub_offline: "
                                    "their hub is offline)", labels=["availability"])
        for state, n in fleet.devices.items():
            devices.add_metric([state], n)
        yield hubs
        yield devices
        yield GaugeMetricFamily("spoke_fleet_count_seconds", "Time the database took to count "
                                "the hubs and devices for this scrape",
                                value=time.monotonic() - started)


class _ExportCollector:
    """The InfluxDB export: points sent, failed attempts, and what waits in its queue."""

    def __init__(self, export: TelemetryExport) -> None:
        self._export = export

    def collect(self) -> Iterator[Metric]:
        counts = self._export.snapshot()
        yield CounterMetricFamily("spoke_telemetry_export_points", "Telemetry points written to "
                                  "InfluxDB", value=counts["exported"])
        yield CounterMetricFamily("spoke_telemetry_export_errors", "Failed attempts to write a "
                                  "batch to InfluxDB (its points stay queued)",
                                  value=counts["failures"])
        try:
            depth, oldest = self._export.backlog()
        except StoreUnavailable as exc:
            log.warning("metrics: could not read the telemetry export queue: %s", exc)
            return
        yield GaugeMetricFamily("spoke_telemetry_export_queue_points", "Telemetry points waiting "
                                "for InfluxDB", value=depth)
        yield GaugeMetricFamily("spoke_telemetry_export_oldest_seconds", "Age of the oldest point "
                                "waiting for InfluxDB (0 when none)", value=oldest)


def _with_zeros(counts: dict[str, int], known: Iterable[str]) -> list[tuple[str, int]]:
    """Every known key (at 0 when it never happened) and any other counted one, sorted."""
    merged = dict.fromkeys(known, 0) | counts
    return sorted(merged.items())
