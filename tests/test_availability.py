"""Availability: silent devices become unavailable (battery: past the timeout; mains: when a ping
fails) with the reason and the time it changed, and available again at their next message."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import zigpy.types as t
from zigpy.zcl.clusters.general import OnOff
from zigpy.zcl.clusters.security import IasZone

from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack

SHORT = {"availability_mains_timeout": 1.0, "availability_battery_timeout": 2.0,
         "availability_interval": 0.3, "sim_devices": ["bulb", "contact"]}


async def _state(stack: Stack, model: str) -> dict:
    return await stack.device_by_model(model)


async def test_silent_devices_become_unavailable_and_come_back(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub=SHORT) as stack:
        await stack.wait_for_devices(2)
        assert stack.hub is not None and stack.hub.zigbee is not None
        network = stack.sim

        # The contact sensor sleeps and says nothing: past its (battery) timeout it is unavailable.
        async def contact_silent() -> bool:
            d = await _state(stack, "SIM-DOOR-1")
            return d["available"] is False and d["availability_reason"] == "silent past its timeout"

        await eventually(contact_silent, within=10, what="silent battery device unavailable")
        changed = datetime.fromisoformat((await _state(stack, "SIM-DOOR-1"))
                                         ["availability_changed_at"])
        assert changed.tzinfo is not None

        # The mains bulb is just as quiet, but it answers the hub's pings: it stays available.
        bulb = await _state(stack, "SIM-BULB-CT")
        assert bulb["available"] is True
        pings_before = stack.hub.availability.changes

        # Unplugged, the bulb misses its ping.
        network.power_off(t.EUI64.convert(bulb["ieee"]))

        async def bulb_lost() -> bool:
            d = await _state(stack, "SIM-BULB-CT")
            return d["available"] is False and d["availability_reason"] == "ping failed"

        await eventually(bulb_lost, within=20, what="unplugged bulb unavailable: ping failed")
        assert stack.hub.availability.changes > pings_before

        # Plugged back in, its next message (a report of its state) makes it available again.
        virtual_bulb = network.devices[t.EUI64.convert(bulb["ieee"])]
        virtual_bulb.powered = True
        virtual_bulb.set_attribute(1, OnOff.cluster_id, "on_off", False)

        async def bulb_back() -> bool:
            d = await _state(stack, "SIM-BULB-CT")
            return d["available"] is True and d["availability_reason"] is None

        await eventually(bulb_back, within=10, what="bulb available at its next message")

        # The door opens: the sensor's notification makes it available again, open = true.
        contact = await _state(stack, "SIM-DOOR-1")
        virtual_contact = network.devices[t.EUI64.convert(contact["ieee"])]
        virtual_contact.set_attribute(1, IasZone.cluster_id, "zone_status", 1)
        virtual_contact.send_cluster_command(1, IasZone.cluster_id, 0x00, zone_status=1,
                                             extended_status=0, zone_id=0, delay=0)

        async def contact_back() -> bool:
            d = await _state(stack, "SIM-DOOR-1")
            return d["available"] is True and d["capabilities"]["contact"]["open"] is True

        await eventually(contact_back, within=10, what="contact available and open")
