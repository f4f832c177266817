"""Device handlers: conversions through real zigpy clusters, the tables, and attach()."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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
from tests.test_device_handlers_fakes import (
    FakeRadio,
    make_device,
    packet_from_device,
    report_frame,
    zcl_frame,
)
from wire.capabilities import CAPABILITIES


@pytest.fixture
def app() -> Iterator[FakeRadio]:
    yield FakeRadio()


def handler(app: FakeRadio, *servers: type[Cluster], clients: tuple[type[Cluster], ...] = (),
            model: str = "test.model") -> TableDeviceHandler:
    device = make_device(app, {1: ([Basic, *servers], list(clients))}, model=model)
    return handler_for(device)


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


def test_temperature_hundredths_to_celsius(app: FakeRadio) -> None:
    h = handler(app, TemperatureMeasurement)
    assert h.capabilities == {"temperature": "temperature"}
    c = cluster(h, TemperatureMeasurement)
    c.update_attribute(TemperatureMeasurement.AttributeDefs.measured_value.id, 2173)
    [reading] = h.cached_readings()
    assert reading == Reading(endpoint=1, cluster=TemperatureMeasurement.cluster_id,
                              capability="temperature", instance="temperature",
                              attribute="temperature", value=21.73, unit="°C")
    assert cached(h, TemperatureMeasurement, measured_value=-550) == {
        ("temperature", "temperature"): -5.5}


def test_non_value_gives_no_reading(app: FakeRadio) -> None:
    h = handler(app, TemperatureMeasurement, RelativeHumidity)
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
def test_simple_sensors(app: FakeRadio, kind: type[Cluster], raw: Any, capability: str,
                        field: str, expected: Any) -> None:
    h = handler(app, kind)
    attribute = {DeviceTemperature: "current_temperature", BinaryInput: "present_value",
                 OccupancySensing: "occupancy"}.get(kind, "measured_value")
    assert cached(h, kind, **{attribute: raw}) == {(capability, field): expected}


@pytest.mark.parametrize(("raw", "lux"), [(0, 0), (1, 1), (10001, 10), (40001, 10000),
                                          (0xFFFF, None)])
def test_illuminance_log_scale(app: FakeRadio, raw: int, lux: int | None) -> None:
    h = handler(app, IlluminanceMeasurement)
    readings = cached(h, IlluminanceMeasurement, measured_value=raw)
    assert readings == ({} if lux is None else {("illuminance", "illuminance"): lux})


@pytest.mark.parametrize(("raw", "percent"), [(200, 100.0), (150, 75.0), (1, 0.5), (0, 0.0),
                                              (250, 100.0), (0xFF, None)])
def test_battery_is_half_percent(app: FakeRadio, raw: int, percent: float | None) -> None:
    h = handler(app, PowerConfiguration)
    readings = cached(h, PowerConfiguration, battery_percentage_remaining=raw)
    assert readings == ({} if percent is None else {("battery", "battery"): percent})
    assert cached(h, PowerConfiguration, battery_voltage=29)[("battery_voltage", "voltage")] == 2.9


def test_pressure_prefers_scaled_value(app: FakeRadio) -> None:
    h = handler(app, PressureMeasurement)
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
def test_ias_zone_type_decides_capability(app: FakeRadio, zone_type: Any, capability: str,
                                          field: str) -> None:
    h = handler(app, IasZone)
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
def test_thermostat_running_state_bits(app: FakeRadio, bits: int, state: str) -> None:
    h = handler(app, Thermostat)
    assert cached(h, Thermostat, running_state=bits)[("thermostat", "running_state")] == state


def test_thermostat_attributes(app: FakeRadio) -> None:
    h = handler(app, Thermostat)
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


def test_fan_mode_and_percentage(app: FakeRadio) -> None:
    h = handler(app, Fan)
    assert cached(h, Fan, fan_mode=Fan.FanMode.Medium) == {("fan", "mode"): "medium",
                                                          ("fan", "percentage"): 66}
    assert cached(h, Fan, fan_mode=Fan.FanMode.Auto) == {("fan", "mode"): "auto"}


def test_window_covering_position_is_percent_open(app: FakeRadio) -> None:
    h = handler(app, WindowCovering)
    readings = cached(h, WindowCovering, current_position_lift_percentage=30)
    assert readings == {("window_covering", "position"): 70}


@pytest.mark.parametrize(("state", "locked"), [(DoorLock.LockState.Locked, True),
                                               (DoorLock.LockState.Unlocked, False),
                                               (DoorLock.LockState.Not_fully_locked, False),
                                               (DoorLock.LockState.Undefined, None)])
def test_lock_state(app: FakeRadio, state: Any, locked: bool | None) -> None:
    h = handler(app, DoorLock)
    expected = {} if locked is None else {("lock", "locked"): locked}
    assert cached(h, DoorLock, lock_state=state) == expected


# --- electricity ------------------------------------------------------------------------------


def test_electrical_measurement_multiplier_divisor(app: FakeRadio) -> None:
    h = handler(app, ElectricalMeasurement)
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


def test_divisor_zero_or_missing_counts_as_one(app: FakeRadio) -> None:
    h = handler(app, ElectricalMeasurement)
    assert cached(h, ElectricalMeasurement, active_power=42)[("power", "power")] == 42
    assert cached(h, ElectricalMeasurement, ac_power_multiplier=2, ac_power_divisor=0)[
        ("power", "power")] == 84


def test_metering_summation_and_demand(app: FakeRadio) -> None:
    h = handler(app, Metering)
    readings = cached(h, Metering, current_summ_delivered=123456, multiplier=1, divisor=1000,
                      instantaneous_demand=250)
    assert readings == {("energy", "energy"): 123.456, ("power", "power"): 250.0}
    [energy] = [r for r in h.cached_readings() if r.capability == "energy"]
    assert (energy.unit, energy.cluster) == ("kWh", Metering.cluster_id)


def test_metering_of_gas_is_not_energy(app: FakeRadio) -> None:
    h = handler(app, Metering)
    gas = Metering.AttributeDefs.unit_of_measure.type.Cubic_Meter_and_Cubic_Meter_per_Hour_binary
    assert cached(h, Metering, unit_of_measure=gas, current_summ_delivered=10) == {}
    assert h.capabilities == {}


def test_electrical_measurement_power_beats_metering_demand(app: FakeRadio) -> None:
    h = handler(app, ElectricalMeasurement, Metering)
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


def test_level_and_switch(app: FakeRadio) -> None:
    h = handler(app, OnOff, LevelControl)
    assert h.capabilities == {"switch": "switch", "level": "level"}
    assert cached(h, OnOff, on_off=t.Bool.true) == {("switch", "on"): True}
    assert cached(h, LevelControl, current_level=127)[("level", "level")] == 50.0
    assert cached(h, LevelControl, current_level=254)[("level", "level")] == 100.0


def test_color_conversions(app: FakeRadio) -> None:
    h = handler(app, Color)
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


def test_color_capabilities_limit_what_a_light_has(app: FakeRadio) -> None:
    h = handler(app, OnOff, Color)
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


def test_second_endpoint_gets_its_own_instance(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic], []), 2: ([OnOff], []), 3: ([OnOff], [])})
    h = handler_for(device)
    assert h.capabilities == {"switch": "switch", "switch@3": "switch"}
    device.endpoints[3].on_off.update_attribute(OnOff.AttributeDefs.on_off.id, t.Bool.true)
    [reading] = h.cached_readings()
    assert (reading.endpoint, reading.instance, reading.value) == (3, "switch@3", True)


def test_model_specific_entry(app: FakeRadio) -> None:
    for model, expected in (("lumi.airmonitor.acn01", {"voc": "voc"}), ("other", {})):
        device = make_device(FakeRadio(), {1: ([], [])}, model=model)
        ep = device.endpoints[1]
        ep.add_input_cluster(VOCLevel.cluster_id, VOCLevel(ep))  # as the Aqara quirk does
        h = handler_for(device)
        assert h.capabilities == expected


def test_unknown_clusters_are_ignored(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic], [])})
    device.endpoints[1].add_input_cluster(0xFC00)
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


async def test_attach_delivers_readings_from_a_report_frame(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic, TemperatureMeasurement, RelativeHumidity], [])})
    h = handler_for(device)
    got: list[list[Reading]] = []
    detach = h.attach(got.append)

    frame = report_frame(10, TemperatureMeasurement, measured_value=2173)
    device.packet_received(packet_from_device(device, 1, TemperatureMeasurement.cluster_id, frame))
    assert [[(r.instance, r.value, r.unit) for r in batch] for batch in got] == [
        [("temperature", 21.73, "°C")]]

    detach()
    frame = report_frame(11, TemperatureMeasurement, measured_value=2200)
    device.packet_received(packet_from_device(device, 1, TemperatureMeasurement.cluster_id, frame))
    assert len(got) == 1
    assert h.cached_readings()[0].value == 22.0  # zigpy's cache still follows the device


async def test_attach_handles_cluster_handle_message(app: FakeRadio) -> None:
    h = handler(app, Thermostat)
    got: list[Reading] = []
    h.attach(got.extend)
    frame = report_frame(3, Thermostat, running_state=Thermostat.RunningState.Cool_State_On,
                         local_temperature=2450)
    c = cluster(h, Thermostat)
    hdr, args = c.deserialize(frame)
    c.handle_message(hdr, args)
    assert values(got) == {("thermostat", "running_state"): "cool",
                           ("thermostat", "local_temperature"): 24.5}


async def test_ias_status_change_notification(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic, IasZone], [])})
    h = handler_for(device)
    got: list[Reading] = []
    h.attach(got.extend)
    ias = device.endpoints[1].ias_zone
    ias.update_attribute(IasZone.AttributeDefs.zone_type.id, IasZone.ZoneType.Contact_Switch)
    assert values(got) == {}  # no zone_status yet: nothing to re-derive

    command = IasZone.ClientCommandDefs.status_change_notification
    args = command.schema(zone_status=IasZone.ZoneStatus.Alarm_1, extended_status=0, zone_id=1,
                          delay=0)
    frame = zcl_frame(21, command.id, args, cluster_command=True)
    device.packet_received(packet_from_device(device, 1, IasZone.cluster_id, frame))
    assert values(got) == {("contact", "open"): True, ("tamper", "tampered"): False}
    assert h.cached_readings()  # mirrored into zigpy's cache, as ZHA does


async def test_enroll_request_is_answered(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic, IasZone], [])})
    handler_for(device).attach(lambda readings: None)
    command = IasZone.ClientCommandDefs.enroll
    args = command.schema(zone_type=IasZone.ZoneType.Motion_Sensor, manufacturer_code=0x1234)
    frame = zcl_frame(22, command.id, args, cluster_command=True)
    device.packet_received(packet_from_device(device, 1, IasZone.cluster_id, frame))
    for _ in range(5):
        await asyncio.sleep(0)
    enroll_response = IasZone.ServerCommandDefs.enroll_response.id
    sent = [p.data.serialize()[2] for p in app.sent if p.cluster_id == IasZone.cluster_id]
    assert enroll_response in sent


async def test_remote_on_off_commands(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic, PowerConfiguration], [OnOff])})
    h = handler_for(device)
    assert h.capabilities == {"switch": "switch", "battery": "battery",
                              "battery_voltage": "battery_voltage"}
    got: list[Reading] = []
    h.attach(got.extend)

    def press(tsn: int, command: Any) -> None:
        frame = zcl_frame(tsn, command.id, command.schema(), cluster_command=True,
                          to_client=False)
        device.packet_received(packet_from_device(device, 1, OnOff.cluster_id, frame))

    press(30, OnOff.ServerCommandDefs.toggle)  # state unknown: nothing to flip
    press(31, OnOff.ServerCommandDefs.on)
    press(32, OnOff.ServerCommandDefs.toggle)
    press(33, OnOff.ServerCommandDefs.toggle)
    assert [r.value for r in got] == [True, False, True]
    for _ in range(5):
        await asyncio.sleep(0)


async def test_remote_switch_is_shadowed_by_a_real_switch(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic, OnOff], [OnOff])})
    h = handler_for(device)
    got: list[Reading] = []
    h.attach(got.extend)
    frame = zcl_frame(40, OnOff.ServerCommandDefs.on.id, OnOff.ServerCommandDefs.on.schema(),
                      cluster_command=True, to_client=False)
    device.packet_received(packet_from_device(device, 1, OnOff.cluster_id, frame))
    assert got == []
    for _ in range(5):
        await asyncio.sleep(0)


async def test_dependency_update_rederives_readings(app: FakeRadio) -> None:
    h = handler(app, ElectricalMeasurement)
    got: list[Reading] = []
    h.attach(got.extend)
    c = cluster(h, ElectricalMeasurement)
    c.update_attribute(ElectricalMeasurement.AttributeDefs.active_power.id, 1000)
    c.update_attribute(ElectricalMeasurement.AttributeDefs.ac_power_divisor.id, 10)
    assert [r.value for r in got] == [1000, 100.0]


async def test_zone_type_learned_later_switches_capability(app: FakeRadio) -> None:
    h = handler(app, IasZone)
    got: list[Reading] = []
    h.attach(got.extend)
    c = cluster(h, IasZone)
    c.update_attribute(IasZone.AttributeDefs.zone_status.id, IasZone.ZoneStatus.Alarm_1)
    assert values(got) == {("alarm", "active"): True, ("tamper", "tampered"): False}
    got.clear()
    c.update_attribute(IasZone.AttributeDefs.zone_type.id, IasZone.ZoneType.Water_Sensor)
    assert values(got) == {("water_leak", "wet"): True}
    assert h.capabilities == {"water_leak": "water_leak", "tamper": "tamper"}


async def test_failing_callback_does_not_break_zigpy(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic, TemperatureMeasurement, RelativeHumidity], [])})
    h = handler_for(device)

    def boom(readings: list[Reading]) -> None:
        raise RuntimeError("subscriber bug")

    h.attach(boom)
    frame = report_frame(12, RelativeHumidity, measured_value=5000)
    device.packet_received(packet_from_device(device, 1, RelativeHumidity.cluster_id, frame))
    assert values(h.cached_readings()) == {("humidity", "humidity"): 50.0}


async def test_remote_on_with_timed_off_turns_off_again(app: FakeRadio) -> None:
    device = make_device(app, {1: ([Basic], [OnOff])})
    h = handler_for(device)
    got: list[Reading] = []
    detach = h.attach(got.extend)
    command = OnOff.ServerCommandDefs.on_with_timed_off
    only_when_on = OnOff.OnOffControl.Accept_Only_When_On

    def send(tsn: int, control: int, on_time: int) -> None:
        args = command.schema(on_off_control=control, on_time=on_time, off_wait_time=0)
        frame = zcl_frame(tsn, command.id, args, cluster_command=True, to_client=False)
        device.packet_received(packet_from_device(device, 1, OnOff.cluster_id, frame))

    send(50, only_when_on, 1)  # off (unknown) and "only when on": ignored
    assert got == []
    send(51, 0, 1)  # on for 0.1 s
    assert [r.value for r in got] == [True]
    await asyncio.sleep(0.2)
    assert [r.value for r in got] == [True, False]
    send(52, 0, 600)  # on for a minute, then detached: the pending revert goes too
    detach()
    scheduled = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
    assert all(handle.cancelled() for handle in scheduled)
