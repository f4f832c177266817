"""Device handler tables added to derive what ZHA derives: siren (assumed state), manufacturer
clusters zha-quirks define, more measurement clusters, and the conversions ZHA's devices need."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.clusters.general import Basic, LevelControl
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import (
    CarbonMonoxideConcentration,
    FlowMeasurement,
    FormaldehydeConcentration,
    LeafWetness,
)
from zigpy.zcl.clusters.security import IasWd

from device_handlers.clusters.manufacturer import IkeaAirPurifier, SmartThingsAcceleration
from device_handlers.handler import TableDeviceHandler
from device_handlers.model import Reading
from device_handlers.registry import handler_for
from tests.sim_devices import SimZigbee
from wire.capabilities import validate_command


async def handler(sim: SimZigbee, *servers: type[Cluster]) -> TableDeviceHandler:
    """The handler of a simulated device with Basic and these server clusters on endpoint 1."""
    return handler_for((await sim.join({1: ([Basic, *servers], [])})).device)


async def quirked(sim: SimZigbee, cluster: type[Cluster]) -> TableDeviceHandler:
    """A device with a manufacturer cluster, which its zha-quirk gives the attributes it has."""
    device = (await sim.join({1: ([Basic, cluster.cluster_id], [])})).device
    ep = device.endpoints[1]
    ep.add_input_cluster(cluster.cluster_id, cluster(ep, is_server=True))  # as the quirk does
    return handler_for(device)


def values(readings: list[Reading]) -> dict[tuple[str, str], Any]:
    return {(r.instance, r.attribute): r.value for r in readings}


def cached(h: TableDeviceHandler, kind: type[Cluster], **raw: Any) -> dict[tuple[str, str], Any]:
    cluster = h.device.endpoints[1].in_clusters[kind.cluster_id]
    for name, value in raw.items():
        cluster.update_attribute(cluster.find_attribute(name).id, value)
    return values(h.cached_readings())


# --- siren: a state the device cannot report -----------------------------------------------------


async def test_a_siren_is_silent_until_told_otherwise(sim: SimZigbee) -> None:
    h = await handler(sim, IasWd)
    assert h.capabilities == {"siren": "siren"}
    assert values(h.cached_readings()) == {("siren", "active"): False}


async def test_a_siren_sounds_for_the_warning_duration(sim: SimZigbee) -> None:
    h = await handler(sim, IasWd)
    told: list[list[Reading]] = []
    detach = h.attach(told.append)
    args = validate_command("siren", "on", {"duration": 1})
    request = h.plan("siren", "on", args)
    assert request.command == IasWd.ServerCommandDefs.start_warning
    assert request.fields["warning_duration"] == 1
    assert values(await h.execute("siren", "on", args)) == {("siren", "active"): True}
    assert values(h.cached_readings()) == {("siren", "active"): True}
    await asyncio.sleep(1.1)  # the warning ran out: the hub is told the siren is silent
    assert [values(r) for r in told] == [{("siren", "active"): False}]
    assert values(await h.execute("siren", "off", {})) == {("siren", "active"): False}
    detach()


# --- manufacturer clusters of zha-quirks -------------------------------------------------------------


async def test_ikea_air_purifier_fan(sim: SimZigbee) -> None:
    h = await quirked(sim, IkeaAirPurifier)
    assert cached(h, IkeaAirPurifier, fan_mode=2, fan_speed=2) == {
        ("fan", "mode"): "on", ("fan", "percentage"): 20}
    assert cached(h, IkeaAirPurifier, fan_mode=1)[("fan", "mode")] == "auto"
    request = h.plan("fan", "set_percentage", validate_command("fan", "set_percentage",
                                                               {"percentage": 5}))
    assert request.writes == {"fan_mode": 2}  # speed 1 would be auto


async def test_smartthings_accelerometer(sim: SimZigbee) -> None:
    h = await quirked(sim, SmartThingsAcceleration)
    assert cached(h, SmartThingsAcceleration, acceleration=1) == {
        ("acceleration", "moving"): True}


async def test_a_cluster_with_the_id_but_not_the_quirk_gives_nothing(sim: SimZigbee) -> None:
    # another vendor's 0xFC02, as zigpy finds it in the interview: no such attribute
    device = (await sim.join({1: ([Basic, 0xFC02], [])})).device
    assert 0xFC02 in device.endpoints[1].in_clusters
    assert handler_for(device).capabilities == {}


# --- measurement clusters and conversions -------------------------------------------------------


@pytest.mark.parametrize(("kind", "raw", "capability", "expected"), [
    (CarbonMonoxideConcentration, 0.0000125, "co", 12.5),
    (FormaldehydeConcentration, 0.00000008, "formaldehyde", 0.08),
    (LeafWetness, 4200, "leaf_wetness", 42.0),
    (FlowMeasurement, 125, "flow", 12.5),
])
async def test_more_measurement_clusters(sim: SimZigbee, kind: type[Cluster], raw: Any,
                                         capability: str, expected: Any) -> None:
    h = await handler(sim, kind)
    assert cached(h, kind, measured_value=raw) == {(capability, capability): expected}


async def test_level_0xff_is_full_brightness(sim: SimZigbee) -> None:
    # Sengled and Homr lights hold 255 at full brightness (ZHA shows brightness 255).
    h = await handler(sim, LevelControl)
    assert cached(h, LevelControl, current_level=0xFF) == {("level", "level"): 100.0}


async def test_enhanced_hue_wins_over_the_8_bit_hue(sim: SimZigbee) -> None:
    h = await handler(sim, Color)
    caps = Color.ColorCapabilities
    readings = cached(h, Color, color_capabilities=caps.Enhanced_hue | caps.Hue_and_saturation,
                      current_hue=127, enhanced_current_hue=0x4000)
    assert readings[("color", "hue")] == 90.0
    assert [r.attribute for r in h.cached_readings()].count("hue") == 1


async def test_power_falls_back_to_the_dc_multiplier_and_divisor(sim: SimZigbee) -> None:
    # Without ac_power_multiplier/divisor, power_multiplier/divisor scale active power (as in ZHA).
    h = await handler(sim, ElectricalMeasurement)
    readings = cached(h, ElectricalMeasurement, power_multiplier=1, power_divisor=10,
                      active_power=t.int16s(605))
    assert readings[("power", "power")] == 60.5
