"""Which cluster tables apply to a device, and ``handler_for(device)``.

Like ZHA's cluster-handler registry, tables are keyed by cluster id: one table per server
(input) cluster id and one per client (output) cluster id. A device's handler is the set of
tables matching the clusters on its endpoints; a new device type is a new table entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import zigpy.device
from zigpy.zcl import Cluster

from device_handlers.clusters import (
    closures,
    general,
    homeautomation,
    hvac,
    lighting,
    manufacturer,
    measurement,
    security,
    smartenergy,
)
from device_handlers.handler import TableDeviceHandler
from device_handlers.tables import ClusterTable

if TYPE_CHECKING:
    from device_handlers.model import DeviceHandler

    _implements_the_protocol: type[DeviceHandler] = TableDeviceHandler


class ClusterRegistry:
    """Cluster tables by cluster id, for server (input) and client (output) clusters."""

    def __init__(self) -> None:
        self._server: dict[int, ClusterTable] = {}
        self._client: dict[int, ClusterTable] = {}

    def register(self, table: ClusterTable) -> ClusterTable:
        tables = self._client if table.client else self._server
        if table.cluster_id in tables:
            side = "client" if table.client else "server"
            raise ValueError(f"a {side} table for cluster 0x{table.cluster_id:04x} exists already")
        tables[table.cluster_id] = table
        return table

    def server_table(self, cluster_id: int) -> ClusterTable | None:
        return self._server.get(cluster_id)

    def client_table(self, cluster_id: int) -> ClusterTable | None:
        return self._client.get(cluster_id)

    def __iter__(self) -> Iterator[ClusterTable]:
        yield from self._server.values()
        yield from self._client.values()

    def tables_for(self, device: zigpy.device.Device) -> list[tuple[ClusterTable, Cluster]]:
        """(table, the device's cluster) for every cluster of the device Spoke has a table for,
        in endpoint then cluster id order."""
        found: list[tuple[ClusterTable, Cluster]] = []
        for endpoint in sorted(device.non_zdo_endpoints, key=lambda ep: ep.endpoint_id):
            for cluster_id, cluster in sorted(endpoint.in_clusters.items()):
                if (table := self.server_table(cluster_id)) is not None:
                    found.append((table, cluster))
            for cluster_id, cluster in sorted(endpoint.out_clusters.items()):
                if (table := self.client_table(cluster_id)) is not None:
                    found.append((table, cluster))
        return found


REGISTRY = ClusterRegistry()
for _module in (general, lighting, measurement, hvac, security, smartenergy, homeautomation,
                closures, manufacturer):
    for _table in _module.TABLES:
        REGISTRY.register(_table)


def handler_for(
    device: zigpy.device.Device, registry: ClusterRegistry = REGISTRY
) -> TableDeviceHandler:
    """The DeviceHandler (device_handlers.model) for a zigpy device, quirked or not."""
    return TableDeviceHandler(device, registry.tables_for(device))
