"""Device handlers: conversions through real zigpy clusters, the tables, and attach().

Each device is a virtual one on the simulator's network, interviewed by a real zigpy app
(tests/sim_devices.py). Conversions are checked on zigpy's attribute cache; attach() gets the
frames the virtual device really sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.clusters.closures import DoorLock, WindowCovering
from zigpy.zcl.clusters.general import (
    Basic,
    BinaryInput,
    DeviceTemperature,
    LevelControl,
    OnOff,
    PowerConfiguration,
)
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.hvac import Fan, Thermostat
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import (
    PM25,
    CarbonDioxideConcentration,
    IlluminanceMeasurement,
    OccupancySensing,
    PressureMeasurement,
    RelativeHumidity,
    SoilMoisture,
    TemperatureMeasurement,
)
from zigpy.zcl.clusters.security import IasZone
from zigpy.zcl.clusters.smartenergy import Metering

from device_handlers.clusters.measurement import VOCLevel
from device_handlers.handler import TableDeviceHandler
from device_handlers.model import Reading
from device_handlers.registry import REGISTRY, handler_for
from device_handlers.tables import AttributeMap, ClusterTable, CommandMap, cluster_command
from tests.sim_devices import SimZigbee, send_report
from wire.capabilities import CAPABILITIES


async def handler(sim: SimZigbee, *servers: type[Cluster]) -> TableDeviceHandler:
    """The handler of a device with Basic and these server clusters on endpoint 1."""
    paired = await sim.join({1: ([Basic, *servers], [])})
    return handler_for(paired.device)


def cluster(h: TableDeviceHandler, kind: type[Cluster], endpoint: int = 1) -> Cluster:
    return h.device.endpoints[endpoint].in_clusters[kind.cluster_id]


def values(readings: list[Reading]) -> dict[tuple[str, str], Any]:
    return {(r.instance, r.attribute): r.value for r in readings}


def cached(h: TableDeviceHandler, kind: type[Cluster], **raw: Any) -> dict[tuple[str, str], Any]:
    """Put raw values into a real cluster's cache and return the readings derived from it."""
    c = cluster(h, kind)
    for name, value in raw.items():
        c.update_attribute(kind.attributes_by_name[name].id, value)
    return values(h.cached_readings())


# --- sensors -------------------------------------------------------------------------------


async def test_temperature_hundredths_to_celsius(sim: SimZigbee) -> None:
    h = await handler(sim, TemperatureMeasurement)
    assert h.capabilities == {"temperature": "temperature"}
    c = cluster(h, TemperatureMeasurement)
    c.update_attribute(TemperatureMeasurement.AttributeDefs.measured_value.id, 2173)
    [reading] = h.cached_readings()
    assert reading == Reading(endpoint=1, cluster=TemperatureMeasurement.cluster_id,
                              capability="temperature", instance="temperature",
                              attribute="temperature", value=21.73, unit="°C")
    assert cached(h, TemperatureMeasurement, measured_value=-550) == {
        ("temperature", "temperature"): -5.5}


async def test_non_value_gives_no_reading(sim: SimZigbee) -> None:
    h = await handler(sim, TemperatureMeasurement, RelativeHumidity)
    assert cached(h, TemperatureMeasurement, measured_value=-0x8000) == {}
    assert cached(h, RelativeHumidity, measured_value=0xFFFF) == {}


@pytest.mark.parametrize(("kind", "raw", "capability", "field", "expected"), [
    (RelativeHumidity, 4550, "humidity", "humidity", 45.5),
    (SoilMoisture, 3312, "soil_moisture", "soil_moisture", 33.12),
    (PM25, 12.34, "pm25", "pm25", 12.3),
    (CarbonDioxideConcentration, 0.00045, "co2", "co2", 450),
    (DeviceTemperature, 31, "device_temperature", "temperature", 31),
    (BinaryInput, t.Bool.true, "binary_input", "active", True),
    (OccupancySensing, OccupancySensing.Occupancy.Occupied, "occupancy", "occupied", True),
    (OccupancySensing, 0, "occupancy", "occupied", False),
])
async def test_simple_sensors(sim: SimZigbee, kind: type[Cluster], raw: Any, capability: str,
                        field: str, expected: Any) -> None:
    h = await handler(sim, kind)
    attribute = {DeviceTemperature: "current_temperature", BinaryInput: "present_value",
                 OccupancySensing: "occupancy"}.get(kind, "measured_value")
    assert cached(h, kind, **{attribute: raw}) == {(capability, field): expected}


@pytest.mark.parametrize(("raw", "lux"), [(0, 0), (1, 1), (10001, 10), (40001, 10000),
                                          (0xFFFF, None)])
async def test_illuminance_log_scale(sim: SimZigbee, raw: int, lux: int | None) -> None:
    h = await handler(sim, IlluminanceMeasurement)
    readings = cached(h, IlluminanceMeasurement, measured_value=raw)
    assert readings == ({} if lux is None else {("illuminance", "illuminance"): lux})


@pytest.mark.parametrize(("raw", "percent"), [(200, 100.0), (150, 75.0), (1, 0.5), (0, 0.0),
                                              (250, 100.0), (0xFF, None)])
async def test_battery_is_half_percent(sim: SimZigbee, raw: int, percent: float | None) -> None:
    h = await handler(sim, PowerConfiguration)
    readings = cached(h, PowerConfiguration, battery_percentage_remaining=raw)
    assert readings == ({} if percent is None else {("battery", "battery"): percent})
    assert cached(h, PowerConfiguration, battery_voltage=29)[("battery_voltage", "voltage")] == 2.9


async def test_pressure_prefers_scaled_value(sim: SimZigbee) -> None:
    h = await handler(sim, PressureMeasurement)
    assert cached(h, PressureMeasurement, measured_value=1013) == {("pressure", "pressure"): 1013}
    # scaled_value = 10^scale * Pa: 10132 with scale -1 is 101320 Pa = 1013.2 hPa
    readings = cached(h, PressureMeasurement, scaled_value=10132, scale=-1)
    assert readings == {("pressure", "pressure"): 1013.2}


# --- IAS zones --------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone_type", "capability", "field"), [
    (IasZone.ZoneType.Motion_Sensor, "occupancy", "occupied"),
    (IasZone.ZoneType.Contact_Switch, "contact", "open"),
    (IasZone.ZoneType.Water_Sensor, "water_leak", "wet"),
    (IasZone.ZoneType.Fire_Sensor, "smoke", "detected"),
    (IasZone.ZoneType.Vibration_Movement_Sensor, "vibration", "detected"),
    (IasZone.ZoneType.Carbon_Monoxide_Sensor, "alarm", "active"),
    (None, "alarm", "active"),
])
async def test_ias_zone_type_decides_capability(sim: SimZigbee, zone_type: Any, capability: str,
                                          field: str) -> None:
    h = await handler(sim, IasZone)
    if zone_type is not None:
        cluster(h, IasZone).update_attribute(IasZone.AttributeDefs.zone_type.id, zone_type)
    assert h.capabilities == {capability: capability, "tamper": "tamper"}
    status = IasZone.ZoneStatus
    assert cached(h, IasZone, zone_status=status.Alarm_1 | status.Battery) == {
        (capability, field): True, ("tamper", "tampered"): False}
    assert cached(h, IasZone, zone_status=status.Tamper) == {
        (capability, field): False, ("tamper", "tampered"): True}
    # Some sensors raise the second alarm bit instead of the first.
    assert cached(h, IasZone, zone_status=status.Alarm_2)[(capability, field)] is True


# --- thermostat, fan, covers, locks ------------------------------------------------------------


@pytest.mark.parametrize(("bits", "state"), [
    (0, "idle"),
    (Thermostat.RunningState.Heat_State_On, "heat"),
    (Thermostat.RunningState.Heat_2nd_Stage_On, "heat"),
    (Thermostat.RunningState.Cool_State_On | Thermostat.RunningState.Fan_State_On, "cool"),
    (Thermostat.RunningState.Fan_2nd_Stage_On, "fan"),
    (Thermostat.RunningState.Heat_State_On | Thermostat.RunningState.Fan_State_On, "heat"),
])
async def test_thermostat_running_state_bits(sim: SimZigbee, bits: int, state: str) -> None:
    h = await handler(sim, Thermostat)
    assert cached(h, Thermostat, running_state=bits)[("thermostat", "running_state")] == state


async def test_thermostat_attributes(sim: SimZigbee) -> None:
    h = await handler(sim, Thermostat)
    readings = cached(h, Thermostat, local_temperature=2173, occupied_heating_setpoint=2150,
                      occupied_cooling_setpoint=2600, system_mode=Thermostat.SystemMode.Heat)
    assert readings == {
        ("thermostat", "local_temperature"): 21.73,
        ("thermostat", "heating_setpoint"): 21.5,
        ("thermostat", "cooling_setpoint"): 26.0,
        ("thermostat", "mode"): "heat",
    }
    # A raw enum value as an int (as update_attribute may store it) maps the same way.
    assert cached(h, Thermostat, system_mode=7)[("thermostat", "mode")] == "fan_only"


async def test_fan_mode_and_percentage(sim: SimZigbee) -> None:
    h = await handler(sim, Fan)
    assert cached(h, Fan, fan_mode=Fan.FanMode.Medium) == {("fan", "mode"): "medium",
                                                          ("fan", "percentage"): 66}
    assert cached(h, Fan, fan_mode=Fan.FanMode.Auto) == {("fan", "mode"): "auto"}


async def test_window_covering_position_is_percent_open(sim: SimZigbee) -> None:
    h = await handler(sim, WindowCovering)
    readings = cached(h, WindowCovering, current_position_lift_percentage=30)
    assert readings == {("window_covering", "position"): 70}


@pytest.mark.parametrize(("state", "locked"), [(DoorLock.LockState.Locked, True),
                                               (DoorLock.LockState.Unlocked, False),
                                               (DoorLock.LockState.Not_fully_locked, False),
                                               (DoorLock.LockState.Undefined, None)])
async def test_lock_state(sim: SimZigbee, state: Any, locked: bool | None) -> None:
    h = await handler(sim, DoorLock)
    expected = {} if locked is None else {("lock", "locked"): locked}
    assert cached(h, DoorLock, lock_state=state) == expected


# --- electricity ------------------------------------------------------------------------------


async def test_electrical_measurement_multiplier_divisor(sim: SimZigbee) -> None:
    h = await handler(sim, ElectricalMeasurement)
    readings = cached(h, ElectricalMeasurement, active_power=1234, ac_power_multiplier=1,
                      ac_power_divisor=10, rms_voltage=2301, ac_voltage_multiplier=1,
                      ac_voltage_divisor=10, rms_current=512, ac_current_multiplier=1,
                      ac_current_divisor=1000, ac_frequency=500, ac_frequency_divisor=10,
                      power_factor=98, apparent_power=1300)
    assert readings == {
        ("power", "power"): 123.4, ("apparent_power", "apparent_power"): 130.0,
        ("voltage", "voltage"): 230.1, ("current", "current"): 0.512,
        ("frequency", "frequency"): 50.0, ("power_factor", "power_factor"): 98,
    }


async def test_divisor_zero_or_missing_counts_as_one(sim: SimZigbee) -> None:
    h = await handler(sim, ElectricalMeasurement)
    assert cached(h, ElectricalMeasurement, active_power=42)[("power", "power")] == 42
    assert cached(h, ElectricalMeasurement, ac_power_multiplier=2, ac_power_divisor=0)[
        ("power", "power")] == 84


async def test_metering_summation_and_demand(sim: SimZigbee) -> None:
    h = await handler(sim, Metering)
    readings = cached(h, Metering, current_summ_delivered=123456, multiplier=1, divisor=1000,
                      instantaneous_demand=250)
    assert readings == {("energy", "energy"): 123.456, ("power", "power"): 250.0}
    [energy] = [r for r in h.cached_readings() if r.capability == "energy"]
    assert (energy.unit, energy.cluster) == ("kWh", Metering.cluster_id)


async def test_metering_of_gas_is_not_energy(sim: SimZigbee) -> None:
    h = await handler(sim, Metering)
    gas = Metering.AttributeDefs.unit_of_measure.type.Cubic_Meter_and_Cubic_Meter_per_Hour_binary
    assert cached(h, Metering, unit_of_measure=gas, current_summ_delivered=10) == {}
    assert h.capabilities == {}


async def test_electrical_measurement_power_beats_metering_demand(sim: SimZigbee) -> None:
    h = await handler(sim, ElectricalMeasurement, Metering)
    cluster(h, Metering).update_attribute(Metering.AttributeDefs.instantaneous_demand.id, 1)
    cluster(h, ElectricalMeasurement).update_attribute(
        ElectricalMeasurement.AttributeDefs.active_power.id, 60)
    power = [r for r in h.cached_readings() if r.capability == "power"]
    assert [(r.cluster, r.value) for r in power] == [(ElectricalMeasurement.cluster_id, 60)]
    # Once the device says it has no active_power, the meter's demand takes over.
    cluster(h, ElectricalMeasurement).add_unsupported_attribute(
        ElectricalMeasurement.AttributeDefs.active_power)
    power = [r for r in h.cached_readings() if r.capability == "power"]
    assert [(r.cluster, r.value) for r in power] == [(Metering.cluster_id, 1000.0)]


# --- lights -----------------------------------------------------------------------------------


async def test_level_and_switch(sim: SimZigbee) -> None:
    h = await handler(sim, OnOff, LevelControl)
    assert h.capabilities == {"switch": "switch", "level": "level"}
    assert cached(h, OnOff, on_off=t.Bool.true) == {("switch", "on"): True}
    assert cached(h, LevelControl, current_level=127)[("level", "level")] == 50.0
    assert cached(h, LevelControl, current_level=254)[("level", "level")] == 100.0


async def test_color_conversions(sim: SimZigbee) -> None:
    h = await handler(sim, Color)
    readings = cached(h, Color, color_temperature=370, current_x=21800, current_y=0xFFFF - 1,
                      current_hue=127, current_saturation=254,
                      color_mode=Color.ColorMode.Color_temperature)
    assert readings == {
        ("color_temperature", "kelvin"): 2703,
        ("color", "x"): 0.3326, ("color", "y"): 1.0,
        ("color", "hue"): 180.0, ("color", "saturation"): 100.0,
        ("color", "mode"): "color_temperature",
    }
    assert cached(h, Color, color_temperature=153)[("color_temperature", "kelvin")] == 6536


async def test_color_capabilities_limit_what_a_light_has(sim: SimZigbee) -> None:
    h = await handler(sim, OnOff, Color)
    assert set(h.capabilities) == {"switch", "color", "color_temperature"}  # not known yet
    caps = Color.ColorCapabilities
    cluster(h, Color).update_attribute(Color.AttributeDefs.color_capabilities.id,
                                       caps.Color_temperature)
    assert set(h.capabilities) == {"switch", "color_temperature"}
    cluster(h, Color).update_attribute(Color.AttributeDefs.color_capabilities.id,
                                       caps.Hue_and_saturation | caps.Enhanced_hue)
    readings = cached(h, Color, enhanced_current_hue=32768, current_hue=127)
    assert readings[("color", "hue")] == 180.0
    assert set(h.capabilities) == {"switch", "color"}


# --- endpoints, models, tables -----------------------------------------------------------------


async def test_second_endpoint_gets_its_own_instance(sim: SimZigbee) -> None:
    device = (await sim.join({1: ([Basic], []), 2: ([OnOff], []), 3: ([OnOff], [])})).device
    h = handler_for(device)
    assert h.capabilities == {"switch": "switch", "switch@3": "switch"}
    device.endpoints[3].on_off.update_attribute(OnOff.AttributeDefs.on_off.id, t.Bool.true)
    [reading] = h.cached_readings()
    assert (reading.endpoint, reading.instance, reading.value) == (3, "switch@3", True)


async def test_model_specific_entry(sim: SimZigbee) -> None:
    for model, expected in (("lumi.airmonitor.acn01", {"voc": "voc"}), ("other", {})):
        device = (await sim.join({1: ([Basic], [])}, model=model)).device
        ep = device.endpoints[1]
        ep.add_input_cluster(VOCLevel.cluster_id, VOCLevel(ep))  # as the Aqara quirk does
        h = handler_for(device)
        assert h.capabilities == expected


async def test_unknown_clusters_are_ignored(sim: SimZigbee) -> None:
    device = (await sim.join({1: ([Basic, 0xFC00], [])})).device
    assert 0xFC00 in device.endpoints[1].in_clusters
    assert handler_for(device).capabilities == {}


def test_every_table_speaks_the_vocabulary() -> None:
    tables = list(REGISTRY)
    assert {t.cluster_id for t in tables} >= {
        OnOff.cluster_id, LevelControl.cluster_id, Color.cluster_id, Thermostat.cluster_id,
        IasZone.cluster_id, Metering.cluster_id, ElectricalMeasurement.cluster_id,
        WindowCovering.cluster_id, DoorLock.cluster_id, Fan.cluster_id,
    }
    for table in tables:
        for entry in table.attributes:
            spec = CAPABILITIES[entry.capability].attribute(entry.field)
            assert spec is not None and entry.unit == spec.unit
        for cmd in table.commands:
            assert cmd.command in CAPABILITIES[cmd.capability].by_name


def test_tables_reject_entries_outside_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        AttributeMap(attribute=OnOff.AttributeDefs.on_off, capability="switch", field="power")
    with pytest.raises(ValueError, match="vocabulary"):
        CommandMap(capability="switch", command="blink",
                   action=cluster_command(OnOff.ServerCommandDefs.on))
    with pytest.raises(ValueError, match="not an attribute of OnOff"):
        ClusterTable(cluster=OnOff, attributes=(AttributeMap(
            attribute=LevelControl.AttributeDefs.current_level, capability="level",
            field="level"),))


# --- attach(): real frames through zigpy ----------------------------------------------------------


async def test_attach_delivers_readings_from_a_report_frame(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, TemperatureMeasurement, RelativeHumidity], [])})
    h = handler_for(paired.device)
    got: list[list[Reading]] = []
    detach = h.attach(got.append)

    send_report(paired.virtual, TemperatureMeasurement, measured_value=2173)
    await sim.settle()
    assert [[(r.instance, r.value, r.unit) for r in batch] for batch in got] == [
        [("temperature", 21.73, "°C")]]

    detach()
    send_report(paired.virtual, TemperatureMeasurement, measured_value=2200)
    await sim.settle()
    assert len(got) == 1
    assert h.cached_readings()[0].value == 22.0  # zigpy's cache still follows the device


async def test_attach_handles_cluster_handle_message(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, Thermostat], [])})
    h = handler_for(paired.device)
    got: list[Reading] = []
    h.attach(got.extend)
    # One frame with two attributes: zigpy hands it to the cluster's handle_message.
    send_report(paired.virtual, Thermostat, running_state=Thermostat.RunningState.Cool_State_On,
                local_temperature=2450)
    await sim.settle()
    assert values(got) == {("thermostat", "running_state"): "cool",
                           ("thermostat", "local_temperature"): 24.5}


async def test_ias_status_change_notification(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, IasZone], [])})
    h = handler_for(paired.device)
    got: list[Reading] = []
    h.attach(got.extend)
    send_report(paired.virtual, IasZone, zone_type=IasZone.ZoneType.Contact_Switch)
    await sim.settle()
    assert values(got) == {}  # no zone_status yet: nothing to re-derive

    command = IasZone.ClientCommandDefs.status_change_notification
    paired.virtual.send_cluster_command(1, IasZone.cluster_id, command.id,
                                        zone_status=IasZone.ZoneStatus.Alarm_1, extended_status=0,
                                        zone_id=1, delay=0)
    await sim.settle()
    assert values(got) == {("contact", "open"): True, ("tamper", "tampered"): False}
    assert h.cached_readings()  # mirrored into zigpy's cache, as ZHA does


async def test_enroll_request_is_answered(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, IasZone], [])})
    handler_for(paired.device).attach(lambda readings: None)
    command = IasZone.ClientCommandDefs.enroll
    paired.virtual.send_cluster_command(1, IasZone.cluster_id, command.id,
                                        zone_type=IasZone.ZoneType.Motion_Sensor,
                                        manufacturer_code=0x1234)
    await sim.settle()
    assert paired.virtual.command_counts["ias_zone.enroll_response"] == 1  # the device got it


async def test_remote_on_off_commands(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, PowerConfiguration], [OnOff])})
    h = handler_for(paired.device)
    assert h.capabilities == {"switch": "switch", "battery": "battery",
                              "battery_voltage": "battery_voltage"}
    got: list[Reading] = []
    h.attach(got.extend)

    async def press(command: Any) -> None:
        paired.virtual.send_client_command(1, OnOff.cluster_id, command.id)
        await sim.settle()

    await press(OnOff.ServerCommandDefs.toggle)  # state unknown: nothing to flip
    await press(OnOff.ServerCommandDefs.on)
    await press(OnOff.ServerCommandDefs.toggle)
    await press(OnOff.ServerCommandDefs.toggle)
    assert [r.value for r in got] == [True, False, True]


async def test_remote_switch_is_shadowed_by_a_real_switch(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, OnOff], [OnOff])})
    h = handler_for(paired.device)
    got: list[Reading] = []
    h.attach(got.extend)
    paired.virtual.send_client_command(1, OnOff.cluster_id, OnOff.ServerCommandDefs.on.id)
    await sim.settle()
    assert got == []


async def test_dependency_update_rederives_readings(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, ElectricalMeasurement], [])})
    h = handler_for(paired.device)
    got: list[Reading] = []
    h.attach(got.extend)
    send_report(paired.virtual, ElectricalMeasurement, active_power=1000)
    await sim.settle()
    send_report(paired.virtual, ElectricalMeasurement, ac_power_divisor=10)
    await sim.settle()
    assert [r.value for r in got] == [1000, 100.0]


async def test_zone_type_learned_later_switches_capability(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, IasZone], [])})
    h = handler_for(paired.device)
    got: list[Reading] = []
    h.attach(got.extend)
    send_report(paired.virtual, IasZone, zone_status=IasZone.ZoneStatus.Alarm_1)
    await sim.settle()
    assert values(got) == {("alarm", "active"): True, ("tamper", "tampered"): False}
    got.clear()
    send_report(paired.virtual, IasZone, zone_type=IasZone.ZoneType.Water_Sensor)
    await sim.settle()
    assert values(got) == {("water_leak", "wet"): True}
    assert h.capabilities == {"water_leak": "water_leak", "tamper": "tamper"}


async def test_failing_callback_does_not_break_zigpy(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, TemperatureMeasurement, RelativeHumidity], [])})
    h = handler_for(paired.device)

    def boom(readings: list[Reading]) -> None:
        raise RuntimeError("subscriber bug")

    h.attach(boom)
    send_report(paired.virtual, RelativeHumidity, measured_value=5000)
    await sim.settle()
    assert values(h.cached_readings()) == {("humidity", "humidity"): 50.0}


async def test_remote_on_with_timed_off_turns_off_again(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic], [OnOff])})
    h = handler_for(paired.device)
    got: list[Reading] = []
    detach = h.attach(got.extend)
    command = OnOff.ServerCommandDefs.on_with_timed_off
    only_when_on = OnOff.OnOffControl.Accept_Only_When_On

    async def send(control: int, on_time: int) -> None:
        paired.virtual.send_client_command(1, OnOff.cluster_id, command.id, on_off_control=control,
                                           on_time=on_time, off_wait_time=0)
        await sim.settle()

    await send(only_when_on, 1)  # off (unknown) and "only when on": ignored
    assert got == []
    await send(0, 1)  # on for 0.1 s
    assert [r.value for r in got] == [True]
    await asyncio.sleep(0.2)
    assert [r.value for r in got] == [True, False]
    await send(0, 1)  # on for 0.1 s again, then detached: the pending revert goes too
    detach()
    await asyncio.sleep(0.2)
    remote = paired.device.endpoints[1].out_clusters[OnOff.cluster_id]
    assert remote.get(OnOff.AttributeDefs.on_off.name) == t.Bool.true  # never turned off
    assert [r.value for r in got] == [True, False, True]
    # (the sim fixture also fails the test if a timer is left running)


# --- the report path ----------------------------------------------------------------------------


def _readings_by_scan(h: TableDeviceHandler, c: Cluster, attribute_id: int, name: str | None,
                      value: Any) -> list[Reading]:
    """What a report gives, derived the long way: every active binding of the device looked at."""
    active = h._active()
    primaries = h._primaries(active)
    found = []
    for b in active:
        if b.cluster is not c:
            continue
        if b.concerns(attribute_id, name):
            raw = value
        elif b.depends_on(attribute_id, name):
            raw = c.get(b.attribute.name)
        else:
            continue
        if (reading := h._reading(b, raw, primaries[b.entry.capability])) is not None:
            found.append(reading)
    return found


async def test_a_report_gives_what_a_scan_of_every_binding_gives(sim: SimZigbee) -> None:
    device = (await sim.join({
        1: ([Basic, ElectricalMeasurement, Metering, IasZone], []),
        2: ([OnOff, TemperatureMeasurement, Color, LevelControl], []),
        3: ([OnOff, ElectricalMeasurement], []),
    })).device
    h = handler_for(device)
    em = device.endpoints[1].in_clusters[ElectricalMeasurement.cluster_id]
    em.update_attribute(ElectricalMeasurement.AttributeDefs.ac_power_divisor.id, 10)

    def compare() -> int:
        checked = 0
        for b in h._bindings:
            for attr in (b.attribute, *b.depends):
                for name in (attr.name, None):
                    value = b.cluster.get(attr.name, 42) or 42
                    assert (h.readings_for_update(b.cluster, attr.id, name, value)
                            == _readings_by_scan(h, b.cluster, attr.id, name, value))
                    checked += 1
        return checked

    assert compare() > 20
    # Rivals: the meter's demand stands in for power once active_power is unsupported.
    em.add_unsupported_attribute(ElectricalMeasurement.AttributeDefs.active_power)
    compare()
    # Primaries: with endpoint 2's switch unsupported, endpoint 3's switch is the first one.
    device.endpoints[2].on_off.add_unsupported_attribute(OnOff.AttributeDefs.on_off)
    compare()
    # A condition on the cache: the zone type decides what the IAS zone is.
    device.endpoints[1].ias_zone.update_attribute(IasZone.AttributeDefs.zone_type.id,
                                                  IasZone.ZoneType.Contact_Switch)
    compare()
