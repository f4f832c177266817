"""Virtual devices for the device handler tests, on the simulator ``spoke demo`` runs.

``SimZigbee`` is a SimNetwork behind a real zigpy app on the simulated radio (no database and no
quirks: the tests see zigpy's own clusters). ``join`` powers on a virtual device declared with
``simulators.kinds.declare`` and waits until zigpy has interviewed it, as it would a real device.
A test then talks to the device through zigpy and looks from the device's side at what arrived:
its attribute values, the commands it carried out, the frames sniffed on the air. Faults are the
simulator's own: ``virtual.faults``, ``network.power_off``, ``network.fail_sends``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import zigpy.config as conf
import zigpy.device
import zigpy.types as t
from zigpy.zcl import Cluster

from hub.adoption import Interviews
from simulators import kinds
from simulators.device import VirtualDevice
from simulators.network import SimNetwork
from simulators.radio import SimControllerApplication

MODEL = "test.model"
MANUFACTURER = "Spoke Tests"
_networks = itertools.count(1)


@dataclass(frozen=True)
class Paired:
    """One device as both sides see it."""

    device: zigpy.device.Device  # zigpy's, after its interview
    virtual: VirtualDevice  # the device itself, on the simulated network


class SimZigbee:
    """A simulated network, zigpy on its radio, and the devices that joined it."""

    def __init__(self, network: SimNetwork, app: SimControllerApplication) -> None:
        self.network = network
        self.app = app
        self._interviews = Interviews()
        app.add_listener(self._interviews)
        # The frames the coordinator put on the air since the last device joined.
        self.sent: list[t.ZigbeePacket] = network.sniff()

    @classmethod
    async def start(cls, **network_options: Any) -> SimZigbee:
        # No latency and no physics: a frame arrives in the next loop turns.
        network = SimNetwork(f"tests-{next(_networks)}", latency=0.0, tick=3600.0,
                             **network_options)
        config = {
            conf.CONF_DEVICE: {conf.CONF_DEVICE_PATH: network.path},
            conf.CONF_DATABASE: None,
            conf.CONF_NWK: {conf.CONF_NWK_CHANNEL: 15},
            conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
            conf.CONF_TOPO_SCAN_ENABLED: False,
        }
        try:
            app = await SimControllerApplication.new(config=config, auto_form=True)
            await app.permit(254)
        except BaseException:
            await network.detach()
            network.close()
            raise
        return cls(network, app)

    async def join(
        self,
        endpoints: Mapping[int, tuple[Iterable[kinds.ServerCluster], Iterable[kinds.ClientCluster]]],
        *,
        model: str = MODEL,
        manufacturer: str = MANUFACTURER,
        ieee: str | None = None,
    ) -> Paired:
        """Power on a device with exactly these endpoints ({id: ([servers], [clients])}, see
        ``kinds.declare``) and wait until zigpy has interviewed it."""
        spec = kinds.declare(endpoints, name="test", manufacturer=manufacturer, model=model)
        return await self.join_from(spec, ieee=ieee)

    async def join_from(self, source: str | kinds.KindSpec, *, ieee: str | None = None) -> Paired:
        """Power on a device made from a simulator source ("kind:thermostat", "file:PATH" of a
        ZHA diagnostics file, a declared kind) and wait until zigpy has interviewed it."""
        virtual = self.network.create(source, ieee=None if ieee is None else t.EUI64.convert(ieee))
        interviewed = self._interviews.expect(virtual.ieee)
        self.network.power_on(virtual)
        async with asyncio.timeout(5):
            await interviewed
        await self.settle()
        self.sent = self.network.sniff()
        return Paired(device=self.app.get_device(ieee=virtual.ieee), virtual=virtual)

    async def settle(self) -> None:
        """Until every frame has arrived and zigpy has sent what it set off."""
        await self.network.settle()

    async def close(self) -> None:
        """Stop zigpy and the network; fail if anything is left running."""
        await self.settle()
        self.app.remove_listener(self._interviews)
        await self.app.shutdown()
        await self.network.detach()
        self.network.close()
        loop = asyncio.get_running_loop()
        for _ in range(3):  # let cancelled tasks finish
            await asyncio.sleep(0)
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        timers = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        assert not tasks and not timers, f"left running: {tasks} {timers}"


@asynccontextmanager
async def running_sim() -> AsyncIterator[SimZigbee]:
    zigbee = await SimZigbee.start()
    try:
        yield zigbee
    finally:
        await zigbee.close()


def set_values(virtual: VirtualDevice, cluster: type[Cluster], endpoint: int = 1,
               **values: Any) -> None:
    """Change raw values on the device, as its firmware would (reported only if configured)."""
    for name, value in values.items():
        virtual.set_attribute(endpoint, cluster.cluster_id, name, value)


def send_report(virtual: VirtualDevice, cluster: type[Cluster], endpoint: int = 1,
                **values: Any) -> None:
    """The device takes these raw values and reports them in one Report_Attributes frame."""
    set_values(virtual, cluster, endpoint, **values)
    own = virtual.cluster(cluster.cluster_id, endpoint)
    assert own is not None, f"no {cluster.__name__} on endpoint {endpoint}"
    virtual.report(own, [own.attr_id(name) for name in values])


def values_of(virtual: VirtualDevice, cluster: type[Cluster], endpoint: int = 1) -> dict[str, Any]:
    """The device's own raw values of a cluster, by zigpy's attribute names."""
    own = virtual.cluster(cluster.cluster_id, endpoint)
    assert own is not None, f"no {cluster.__name__} on endpoint {endpoint}"
    return {cluster.attributes[attrid].name: value for attrid, value in own.values.items()
            if attrid in cluster.attributes}
