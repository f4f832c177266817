"""Assumed states: capability fields a device cannot be asked about, held by the hub.

An IAS warning device (a siren) takes "start warning" commands but has no attribute saying that
it sounds. Its state is what the hub last told it, returning to the initial value when a timed
command runs out, as ZHA does. The tables declare these (``ClusterTable.assumed``,
``CommandMap.assumes``); this module keeps their values for one device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from zigpy.zcl import Cluster

from device_handlers.model import Reading
from device_handlers.tables import AssumedState, ClusterTable
from wire.capabilities import instance_name
from wire.contract import Value


@dataclass
class _Slot:
    state: AssumedState
    cluster: Cluster
    value: Value
    timer: asyncio.TimerHandle | None = None

    @property
    def endpoint(self) -> int:
        return int(self.cluster.endpoint.endpoint_id)


class AssumedStates:
    """The assumed fields of one device's clusters, by (endpoint, capability, field)."""

    def __init__(self, tables: Iterable[tuple[ClusterTable, Cluster]]) -> None:
        self._slots: dict[tuple[int, str, str], _Slot] = {}
        for table, cluster in tables:
            if table.client:
                continue
            for state in table.assumed:
                slot = _Slot(state, cluster, state.initial)
                self._slots[(slot.endpoint, state.capability, state.field)] = slot

    def endpoints(self) -> list[tuple[str, int]]:
        """(capability, endpoint) of every assumed field."""
        return [(capability, endpoint) for endpoint, capability, _ in self._slots]

    def readings(self, primaries: Mapping[str, int], *, endpoint: int | None = None,
                 capability: str | None = None) -> list[Reading]:
        return [
            Reading(endpoint=ep, cluster=int(slot.cluster.cluster_id), capability=cap,
                    instance=instance_name(cap, ep, primaries.get(cap, ep)), attribute=field,
                    value=slot.value)
            for (ep, cap, field), slot in sorted(self._slots.items())
            if (endpoint is None or ep == endpoint) and (capability is None or cap == capability)
        ]

    def assume(self, endpoint: int, capability: str, value: Value, *, lasts: float | None,
               on_return: Callable[[], None] | None) -> bool:
        """Set the capability's assumed fields on an endpoint; with ``lasts`` seconds, they
        return to their initial values afterwards (then ``on_return`` is called)."""
        slots = [s for (ep, cap, _), s in self._slots.items()
                 if ep == endpoint and cap == capability]
        for slot in slots:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            slot.value = value
            if lasts is not None and lasts > 0 and value != slot.state.initial:
                slot.timer = asyncio.get_running_loop().call_later(
                    lasts, self._return, slot, on_return)
        return bool(slots)

    @staticmethod
    def _return(slot: _Slot, on_return: Callable[[], None] | None) -> None:
        slot.timer = None
        slot.value = slot.state.initial
        if on_return is not None:
            on_return()

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
