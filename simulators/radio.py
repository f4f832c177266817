"""A zigpy radio library whose "stick" is a simulated network.

``SimControllerApplication`` is a real ``zigpy.application.ControllerApplication``: zigpy runs its
own joins, interviews, requests, database and backups on it exactly as with bellows or zigpy-znp.
Only the bottom edge differs: frames go to a SimNetwork instead of a serial port. It is advertised
through zigpy's ``zigpy.radio`` entry point group as radio type ``sim``.
"""

from __future__ import annotations

import logging
from typing import Any

import zigpy.application
import zigpy.backups
import zigpy.config as conf
import zigpy.endpoint
import zigpy.exceptions
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.profiles import zha

from simulators.kinds import node_descriptor
from simulators.network import RadioFailure, SimNetwork, get_network

LOGGER = logging.getLogger(__name__)
SIM_SCHEME = "sim://"


def network_name(path: str) -> str:
    if not path.startswith(SIM_SCHEME):
        raise zigpy.exceptions.ControllerException(
            f"a simulated radio path looks like sim://NAME, not {path!r}")
    return path[len(SIM_SCHEME):]


class SimControllerApplication(zigpy.application.ControllerApplication):
    """zigpy controller for the simulated radio."""

    DISPLAY_NAME = "Spoke simulated radio"
    DESCRIPTION = "Virtual Zigbee devices behind a simulated coordinator (no hardware)"
    _watchdog_period = 2  # a silent simulated failure is noticed within 2 s

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._network: SimNetwork | None = None

    @property
    def network(self) -> SimNetwork:
        if self._network is None:
            raise zigpy.exceptions.ControllerException("simulated radio is not connected")
        return self._network

    @classmethod
    async def probe(cls, device_config: dict[str, Any]) -> bool | dict[str, Any]:
        path = device_config.get(conf.CONF_DEVICE_PATH, "")
        return device_config if str(path).startswith(SIM_SCHEME) else False

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        network = get_network(network_name(self.config[conf.CONF_DEVICE][conf.CONF_DEVICE_PATH]))
        try:
            network.attach(self)
        except RadioFailure as exc:
            raise ConnectionError(f"simulated radio does not answer: {exc}") from exc
        self._network = network

    async def disconnect(self) -> None:
        if self._network is not None:
            network, self._network = self._network, None
            if network.app is self:
                await network.detach()

    async def _watchdog_feed(self) -> None:
        if self._network is None or self._network.failed:
            raise zigpy.exceptions.ControllerException("simulated radio stopped answering")

    # ------------------------------------------------------------------ network settings
    async def load_network_info(self, *, load_devices: bool = False) -> None:
        backup = self.network.get_backup()
        if backup is None:
            raise zigpy.exceptions.NetworkNotFormed("simulated network is not formed")
        self.state.network_info = backup.network_info
        self.state.node_info = backup.node_info

    async def write_network_info(self, *, network_info: zigpy.state.NetworkInfo,
                                 node_info: zigpy.state.NodeInfo) -> None:
        # zigpy's form_network passes plain ints where a stick would hold typed values
        ieee = node_info.ieee
        if ieee == t.EUI64.UNKNOWN:
            ieee = self.network.new_ieee()
        node_info = node_info.replace(ieee=ieee, nwk=t.NWK(node_info.nwk))
        network_info = network_info.replace(
            pan_id=t.PanId(network_info.pan_id),
            nwk_manager_id=t.NWK(network_info.nwk_manager_id),
            nwk_update_id=int(network_info.nwk_update_id),
        )

        self.network.set_backup(zigpy.backups.NetworkBackup(network_info=network_info,
                                                            node_info=node_info))

    async def reset_network_info(self) -> None:
        self.network.set_backup(None)

    async def start_network(self) -> None:
        await self.load_network_info()
        coordinator = self.add_device(ieee=self.state.node_info.ieee,
                                      nwk=self.state.node_info.nwk)
        coordinator.node_desc = node_descriptor(mains=True, manufacturer_code=0x0000)
        coordinator.node_desc.logical_type = zdo_t.LogicalType.Coordinator
        ep = coordinator.add_endpoint(1)
        ep.status = zigpy.endpoint.Status.ZDO_INIT
        ep.profile_id = zha.PROFILE_ID
        ep.device_type = zha.DeviceType.CONFIGURATION_TOOL
        coordinator.model = "Simulated coordinator"
        coordinator.manufacturer = "Spoke"

    async def energy_scan(self, channels: t.Channels, duration_exp: int, count: int
                          ) -> dict[int, float]:
        # An empty simulated band: every channel is quiet.
        return dict.fromkeys(channels, 0.0)

    # ------------------------------------------------------------------ traffic
    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        async with self._limit_concurrency(priority=packet.priority):
            await self.network.deliver(packet)

    async def permit_ncp(self, time_s: int = 60) -> None:
        self.network.permit(time_s)

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60
                                   ) -> None:
        self.network.permit(time_s)

    async def force_remove(self, dev: Any) -> None:
        self.network.remove(dev.ieee)

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        return None
