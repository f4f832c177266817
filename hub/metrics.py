"""What the hub's /metrics tells Prometheus, read off the running hub at each scrape.

Every value is one the hub already keeps (its ledger, outbox, counters, devices); nothing is
counted twice. Labels take a few fixed values each (an outcome, an availability, a pairing step):
never a device's ieee or a command's id. Counters kept in memory start again at 0 when the hub
restarts, which Prometheus' rate() takes as a counter reset; ``events_emitted`` is the ledger's
last sequence number, so it goes on across restarts (and restarts at 0 with a new ledger).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hub.app import Hub

PREFIX = "spoke_hub_"
COMMAND_OUTCOMES = ("succeeded", "failed", "expired", "rejected", "duplicate")


def hub_registry(hub: Hub) -> CollectorRegistry:
    """A registry of this hub's own (not the process-wide default one, which a second hub in the
    same process, as in the tests, would share)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    return registry


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        yield from self._ledger()
        yield from self._commands()
        yield from self._links()
        yield from self._devices()

    def _ledger(self) -> Iterator[Metric]:
        store, publisher = self.hub.store, self.hub.publisher
        yield _counter("events_emitted", "Events this hub's ledger emitted (its last sequence "
                       "number).", store.last_seq)
        yield _gauge("outbox_depth", "Events and command results waiting for the cloud's "
                     "acknowledgement.", store.pending)
        oldest = store.oldest_event_created()
        yield _gauge("oldest_unacked_event_age_seconds", "Age of the oldest event the cloud has "
                     "not acknowledged (0 when none waits).",
                     0.0 if oldest is None else max(0.0, time.time() - oldest))
        yield _counter("outbox_dropped", "Outbox rows dropped by its size or age bound before "
                       "the cloud had them.", store.dropped)
        yield _counter("ledger_resends", "Times the hub sent unacknowledged rows again.",
                       publisher.resends)

    def _commands(self) -> Iterator[Metric]:
        counts = self.hub.executor.counts
        commands = CounterMetricFamily(PREFIX + "commands", "Commands from the cloud, by "
                                       "outcome.", labels=["outcome"])
        for outcome in COMMAND_OUTCOMES:
            commands.add_metric([outcome], counts.get(outcome, 0))
        yield commands
        yield _counter("refused_messages", "Inbound messages refused (not this hub's, or "
                       "retained commands).", self.hub.dispatch.refused)

    def _links(self) -> Iterator[Metric]:
        link, watchdog = self.hub.link, self.hub.watchdog
        yield _gauge("mqtt_connected", "1 while the hub is connected to the broker.",
                     float(link.connected.is_set()))
        yield _counter("mqtt_reconnects", "Broker connections lost (and retried).",
                       link.reconnects)
        bridge = self.hub.home_assistant
        if bridge is not None:  # only for a hub given Home Assistant's broker
            yield _gauge("home_assistant_connected", "1 while the hub is connected to Home "
                         "Assistant's broker.", float(bridge.connected.is_set()))
            local = CounterMetricFamily(PREFIX + "local_commands", "Commands from Home "
                                        "Assistant, by outcome.", labels=["outcome"])
            counts = self.hub.executor.counts
            local.add_metric(["succeeded"], counts["local_succeeded"])
            local.add_metric(["failed"], counts["local_failed"])
            local.add_metric(["refused"], bridge.refused)
            yield local
        yield _gauge("radio_up", "1 while the Zigbee radio answers.", float(watchdog.up))
        yield _counter("radio_outages", "Times the Zigbee radio was lost.", watchdog.outages)
        yield _counter("radio_downtime_seconds", "Time the Zigbee radio was down.",
                       watchdog.downtime_now)

    def _devices(self) -> Iterator[Metric]:
        devices = list(self.hub.tracker.devices.values())
        by_availability = GaugeMetricFamily(PREFIX + "devices", "Paired devices, by "
                                            "availability.", labels=["availability"])
        available = sum(1 for d in devices if d.available)
        by_availability.add_metric(["available"], available)
        by_availability.add_metric(["unavailable"], len(devices) - available)
        yield by_availability
        pairing = CounterMetricFamily(PREFIX + "pairing_joins", "Devices through pairing, by "
                                      "step (joined, adopted, failed, refused).", labels=["step"])
        for step, count in self.hub.pairing.counts.items():
            pairing.add_metric([step], count)
        yield pairing
