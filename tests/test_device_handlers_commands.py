"""Device handlers: capability commands → ZCL, execute/read-back, read_state and configure.

The device is a virtual one on the simulator's network (tests/sim_devices.py), interviewed by a
real zigpy app on the simulated radio; its misbehaviour is the simulator's fault injection.
Nothing in zigpy is mocked.
"""

from __future__ import annotations

from typing import Any

import pytest
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import Cluster, foundation
from zigpy.zcl.clusters.closures import DoorLock, WindowCovering
from zigpy.zcl.clusters.general import Basic, LevelControl, OnOff, PowerConfiguration
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.hvac import Fan, Thermostat
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import TemperatureMeasurement
from zigpy.zcl.clusters.security import IasZone

from device_handlers.handler import TableDeviceHandler
from device_handlers.model import CommandError, Reading
from device_handlers.registry import handler_for
from simulators.device import VirtualDevice
from simulators.kinds import ClusterSpec, ServerCluster
from tests.sim_devices import SimZigbee, set_values, values_of
from wire.capabilities import validate_command

Status = foundation.Status
G = foundation.GeneralCommand


async def join(sim: SimZigbee, *servers: ServerCluster) -> tuple[TableDeviceHandler, VirtualDevice]:
    """A device with Basic and these server clusters on endpoint 1: its handler, and itself."""
    paired = await sim.join({1: ([Basic, *servers], [])})
    return handler_for(paired.device), paired.virtual


async def handler(sim: SimZigbee, *servers: type[Cluster]) -> TableDeviceHandler:
    return (await join(sim, *servers))[0]


def plan(h: TableDeviceHandler, instance: str, command: str, **args: Any) -> Any:
    capability = instance.partition("@")[0]
    return h.plan(instance, command, validate_command(capability, command, args))


def values(readings: list[Reading]) -> dict[tuple[str, str], Any]:
    return {(r.instance, r.attribute): r.value for r in readings}


# --- capability arguments → ZCL (no radio traffic) ---------------------------------------


async def test_set_level_encoding(sim: SimZigbee) -> None:
    h = await handler(sim, OnOff, LevelControl)
    request = plan(h, "level", "set_level", level=50, transition=1.5)
    assert request.command == LevelControl.ServerCommandDefs.move_to_level_with_on_off
    assert request.fields == {"level": 127, "transition_time": 15}
    assert request.payload() == bytes([127, 15, 0])
    assert request.read_back == ("level", "switch")
    assert plan(h, "level", "set_level", level=100).fields["level"] == 254
    assert sim.sent == []  # nothing went on the air


async def test_switch_commands(sim: SimZigbee) -> None:
    h = await handler(sim, OnOff)
    for command in ("on", "off", "toggle"):
        request = plan(h, "switch", command)
        assert request.command == getattr(OnOff.ServerCommandDefs, command)
        assert request.payload() == b""


async def test_color_commands(sim: SimZigbee) -> None:
    h = await handler(sim, Color)
    ct = plan(h, "color_temperature", "set_color_temperature", kelvin=2700)
    assert ct.command == Color.ServerCommandDefs.move_to_color_temp
    assert ct.fields == {"color_temp_mireds": 370, "transition_time": 0}
    xy = plan(h, "color", "set_xy", x=0.5, y=0.25, transition=2)
    assert xy.fields == {"color_x": 32768, "color_y": 16384, "transition_time": 20}
    hs = plan(h, "color", "set_hue_saturation", hue=180, saturation=50)
    assert hs.command == Color.ServerCommandDefs.move_to_hue_and_saturation
    assert hs.fields == {"hue": 127, "saturation": 127, "transition_time": 0}

    h.device.endpoints[1].light_color.update_attribute(
        Color.AttributeDefs.color_capabilities.id,
        Color.ColorCapabilities.Hue_and_saturation | Color.ColorCapabilities.Enhanced_hue)
    hs = plan(h, "color", "set_hue_saturation", hue=180, saturation=50)
    assert hs.command == Color.ServerCommandDefs.enhanced_move_to_hue_and_saturation
    assert hs.fields["enhanced_hue"] == 32768


async def test_attribute_writes(sim: SimZigbee) -> None:
    h = await handler(sim, Thermostat, Fan)
    heat = plan(h, "thermostat", "set_heating_setpoint", value=21.5)
    assert (heat.command, heat.writes) == (None, {"occupied_heating_setpoint": 2150})
    attr = Thermostat.AttributeDefs.occupied_heating_setpoint
    assert heat.payload() == (t.uint16_t(attr.id).serialize()
                              + foundation.DataTypeId.int16.serialize()
                              + t.int16s(2150).serialize())
    assert plan(h, "thermostat", "set_mode", mode="heat").writes == {
        "system_mode": Thermostat.SystemMode.Heat}
    medium = plan(h, "fan", "set_percentage", percentage=50)
    assert medium.writes == {"fan_mode": Fan.FanMode.Medium}
    assert plan(h, "fan", "set_percentage", percentage=0).writes == {"fan_mode": Fan.FanMode.Off}
    assert plan(h, "fan", "set_mode", mode="auto").writes == {"fan_mode": Fan.FanMode.Auto}


async def test_cover_and_lock_commands(sim: SimZigbee) -> None:
    h = await handler(sim, WindowCovering, DoorLock)
    request = plan(h, "window_covering", "set_position", position=70)
    assert request.fields == {"percentage_lift_value": 30}  # ZCL lift % is how far it is closed
    assert plan(h, "window_covering", "open").command == WindowCovering.ServerCommandDefs.up_open
    assert plan(h, "lock", "unlock").command == DoorLock.ServerCommandDefs.unlock_door


async def test_unsupported_instance_or_command(sim: SimZigbee) -> None:
    h = await handler(sim, OnOff, TemperatureMeasurement)
    with pytest.raises(CommandError) as err:
        h.plan("switch@2", "on", {})
    assert err.value.code == "unsupported"
    with pytest.raises(CommandError) as err:
        h.plan("level", "set_level", {"level": 10, "transition": 0})
    assert err.value.code == "unsupported"
    with pytest.raises(CommandError) as err:
        h.plan("temperature", "on", {})
    assert err.value.code == "unsupported"
    assert h.plan("switch@1", "on", {}).endpoint == 1  # the primary endpoint, spelled out


# --- execute: send, check, read back ------------------------------------------------------


async def test_execute_returns_the_state_read_back(sim: SimZigbee) -> None:
    h, device = await join(sim, OnOff)
    set_values(device, OnOff, on_off=t.Bool.false)
    readings = await h.execute("switch", "on", {})
    assert values(readings) == {("switch", "on"): True}
    kinds = [p.data.serialize()[2] for p in sim.sent]
    assert kinds == [OnOff.ServerCommandDefs.on.id, G.Read_Attributes]


async def test_execute_never_echoes_the_request(sim: SimZigbee) -> None:
    h, device = await join(sim, OnOff)
    set_values(device, OnOff, on_off=t.Bool.false)
    device.faults.ignore.add((OnOff.cluster_id, OnOff.ServerCommandDefs.on.name))  # acks, stays off
    assert values(await h.execute("switch", "on", {})) == {("switch", "on"): False}


async def test_execute_level_reads_back_level_and_switch(sim: SimZigbee) -> None:
    h, device = await join(sim, OnOff, LevelControl)
    set_values(device, OnOff, on_off=t.Bool.false)
    set_values(device, LevelControl, current_level=0)
    readings = await h.execute("level", "set_level", {"level": 40.0, "transition": 0.0})
    # move_to_level_with_on_off to a level above 0 also switches the device on: both read back.
    assert values(readings) == {("level", "level"): 40.2, ("switch", "on"): True}


async def test_execute_attribute_write(sim: SimZigbee) -> None:
    h, device = await join(sim, Thermostat)
    set_values(device, Thermostat, occupied_heating_setpoint=2000, local_temperature=2100)
    readings = await h.execute("thermostat", "set_heating_setpoint", {"value": 22.5})
    assert values(readings) == {("thermostat", "heating_setpoint"): 22.5,
                                ("thermostat", "local_temperature"): 21.0}
    assert values_of(device, Thermostat)["occupied_heating_setpoint"] == 2250


async def test_execute_nack_from_default_response(sim: SimZigbee) -> None:
    h, device = await join(sim, OnOff)
    device.faults.refuse[(OnOff.cluster_id, OnOff.ServerCommandDefs.on.name)] = Status.FAILURE
    with pytest.raises(CommandError) as err:
        await h.execute("switch", "on", {})
    assert err.value.code == "nack"
    assert "FAILURE" in err.value.message


async def test_execute_nack_from_write_status(sim: SimZigbee) -> None:
    h, device = await join(sim, Thermostat)
    device.faults.refuse[(Thermostat.cluster_id, G.Write_Attributes.name)] = Status.INVALID_VALUE
    with pytest.raises(CommandError) as err:
        await h.execute("thermostat", "set_mode", {"mode": "dry"})
    assert err.value.code == "nack"
    assert "system_mode=INVALID_VALUE" in err.value.message


@pytest.mark.parametrize(("failure", "code"), [
    (zigpy.exceptions.DeliveryError("no ack from the device"), "no_route"),
    (TimeoutError(), "timeout"),
])
async def test_execute_transport_failures(sim: SimZigbee, failure: Exception, code: str) -> None:
    h = await handler(sim, OnOff)
    sim.network.fail_sends(failure)
    with pytest.raises(CommandError) as err:
        await h.execute("switch", "off", {})
    assert err.value.code == code


async def test_execute_read_back_failure_is_reported(sim: SimZigbee) -> None:
    h = await handler(sim, OnOff)
    sim.network.fail_sends(zigpy.exceptions.DeliveryError("gone"), after=1)  # the command passes
    with pytest.raises(CommandError) as err:
        await h.execute("switch", "on", {})
    assert err.value.code == "no_route"
    assert "acknowledged" in err.value.message


# --- read_state ---------------------------------------------------------------------------


async def test_read_state_reads_everything_and_skips_unsupported(sim: SimZigbee) -> None:
    h, _ = await join(
        sim,
        ClusterSpec(cluster=ElectricalMeasurement, values={
            "active_power": 1500, "ac_power_multiplier": 1, "ac_power_divisor": 10,
            "rms_voltage": 230}),
        ClusterSpec(cluster=TemperatureMeasurement, values={"measured_value": 1950}),
        ClusterSpec(cluster=PowerConfiguration, values={"battery_percentage_remaining": 180}),
    )
    readings = values(await h.read_state())
    assert readings == {("power", "power"): 150.0, ("voltage", "voltage"): 230,
                        ("temperature", "temperature"): 19.5, ("battery", "battery"): 90.0}
    # Unsupported attributes are now known as such: no capability, not read again.
    assert "current" not in h.capabilities and "battery_voltage" not in h.capabilities
    sim.sent.clear()
    await h.read_state()
    em = h.device.endpoints[1].electrical_measurement
    assert em.is_attribute_unsupported(ElectricalMeasurement.AttributeDefs.rms_current)
    assert len(sim.sent) == 3  # one request per cluster, multipliers came from the cache


async def test_read_state_raises_only_when_nothing_answers(sim: SimZigbee) -> None:
    h = await handler(sim, TemperatureMeasurement)
    sim.network.fail_sends(TimeoutError())
    with pytest.raises(CommandError) as err:
        await h.read_state()
    assert err.value.code == "timeout"


# --- configure ----------------------------------------------------------------------------


async def test_configure_binds_and_configures_reporting(sim: SimZigbee) -> None:
    h, device = await join(
        sim,
        ClusterSpec(cluster=OnOff, values={"on_off": 0}),
        ClusterSpec(cluster=LevelControl, values={"current_level": 0}),
        ClusterSpec(cluster=ElectricalMeasurement, values={
            "active_power": 0, "apparent_power": 0, "rms_voltage": 230, "rms_current": 0,
            "ac_frequency": 50, "power_factor": 100}),
    )
    steps = await h.configure()
    assert [(s.cluster, s.action, s.ok) for s in steps] == [
        (OnOff.cluster_id, "bind", True),
        (OnOff.cluster_id, "configure_reporting", True),
        (LevelControl.cluster_id, "bind", True),
        (LevelControl.cluster_id, "configure_reporting", True),
        (ElectricalMeasurement.cluster_id, "bind", True),
        (ElectricalMeasurement.cluster_id, "configure_reporting", True),
        (ElectricalMeasurement.cluster_id, "read_attributes", True),
    ]
    # The device itself now reports with the intervals the table asks for.
    em = device.cluster(ElectricalMeasurement.cluster_id)
    assert em is not None and all(c.bound for c in device.endpoints[1].in_clusters.values()
                                  if c.cluster_id != Basic.cluster_id)
    active_power = em.reporting[ElectricalMeasurement.AttributeDefs.active_power.id]
    assert (active_power.min_interval, active_power.max_interval) == (5, 900)


async def test_configure_reports_failures_without_raising(sim: SimZigbee) -> None:
    h, device = await join(sim, ClusterSpec(cluster=OnOff, values={"on_off": 0}),
                           ClusterSpec(cluster=TemperatureMeasurement, values={"measured_value": 0}))
    device.faults.bind_status = zdo_t.Status.NOT_SUPPORTED
    device.faults.refuse[(TemperatureMeasurement.cluster_id, G.Configure_Reporting.name)] = (
        Status.UNREPORTABLE_ATTRIBUTE)
    steps = await h.configure()
    by_key = {(s.cluster, s.action): s for s in steps}
    assert not by_key[(OnOff.cluster_id, "bind")].ok
    assert by_key[(OnOff.cluster_id, "configure_reporting")].ok
    failed = by_key[(TemperatureMeasurement.cluster_id, "configure_reporting")]
    assert not failed.ok and "UNREPORTABLE_ATTRIBUTE" in failed.detail


async def test_configure_ias_zone_enrolls_and_reads_zone_type(sim: SimZigbee) -> None:
    h, device = await join(sim, IasZone)
    set_values(device, IasZone, zone_type=IasZone.ZoneType.Motion_Sensor, zone_status=0)
    steps = await h.configure()
    assert [(s.action, s.ok) for s in steps] == [
        ("bind", True), ("ias_enroll", True), ("read_attributes", True)]
    await sim.settle()  # the proactive enroll response
    assert values_of(device, IasZone)["cie_addr"] == sim.app.state.node_info.ieee
    assert values_of(device, IasZone)["zone_state"] == IasZone.ZoneState.Enrolled
    assert h.capabilities == {"occupancy": "occupancy", "tamper": "tamper"}


async def test_configure_survives_transport_failure(sim: SimZigbee) -> None:
    h, device = await join(sim, OnOff)
    sim.network.power_off(device.ieee)  # out of reach: no MAC ack
    steps = await h.configure()
    assert [(s.action, s.ok) for s in steps] == [("bind", False), ("configure_reporting", False)]
