"""Device handlers: capability commands → ZCL, execute/read-back, read_state and configure.

The device answers through FakeRadio (tests/test_device_handlers_fakes.py): a real zigpy app whose
send_packet decodes the frame and replies like a minimal device. Nothing in zigpy is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from tests.test_device_handlers_fakes import FakeRadio, make_device
from wire.capabilities import validate_command

Status = foundation.Status


@pytest.fixture
def app() -> Iterator[FakeRadio]:
    yield FakeRadio()


def handler(app: FakeRadio, *servers: type[Cluster]) -> TableDeviceHandler:
    return handler_for(make_device(app, {1: ([Basic, *servers], [])}))


def plan(h: TableDeviceHandler, instance: str, command: str, **args: Any) -> Any:
    capability = instance.partition("@")[0]
    return h.plan(instance, command, validate_command(capability, command, args))


def values(readings: list[Reading]) -> dict[tuple[str, str], Any]:
    return {(r.instance, r.attribute): r.value for r in readings}


# --- capability arguments → ZCL (no radio traffic) ---------------------------------------


def test_set_level_encoding(app: FakeRadio) -> None:
    h = handler(app, OnOff, LevelControl)
    request = plan(h, "level", "set_level", level=50, transition=1.5)
    assert request.command == LevelControl.ServerCommandDefs.move_to_level_with_on_off
    assert request.fields == {"level": 127, "transition_time": 15}
    assert request.payload() == bytes([127, 15, 0])
    assert request.read_back == ("level", "switch")
    assert plan(h, "level", "set_level", level=100).fields["level"] == 254
    assert app.sent == []


def test_switch_commands(app: FakeRadio) -> None:
    h = handler(app, OnOff)
    for command in ("on", "off", "toggle"):
        request = plan(h, "switch", command)
        assert request.command == getattr(OnOff.ServerCommandDefs, command)
        assert request.payload() == b""


def test_color_commands(app: FakeRadio) -> None:
    h = handler(app, Color)
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


def test_attribute_writes(app: FakeRadio) -> None:
    h = handler(app, Thermostat, Fan)
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


def test_cover_and_lock_commands(app: FakeRadio) -> None:
    h = handler(app, WindowCovering, DoorLock)
    request = plan(h, "window_covering", "set_position", position=70)
    assert request.fields == {"percentage_lift_value": 30}  # ZCL lift % is how far it is closed
    assert plan(h, "window_covering", "open").command == WindowCovering.ServerCommandDefs.up_open
    assert plan(h, "lock", "unlock").command == DoorLock.ServerCommandDefs.unlock_door


def test_unsupported_instance_or_command(app: FakeRadio) -> None:
    h = handler(app, OnOff, TemperatureMeasurement)
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


def _switch_effects(app: FakeRadio) -> None:
    on_off = OnOff.AttributeDefs.on_off.id
    app.effects[(OnOff.cluster_id, "on")] = lambda req: {on_off: t.Bool.true}
    app.effects[(OnOff.cluster_id, "off")] = lambda req: {on_off: t.Bool.false}


async def test_execute_returns_the_state_read_back(app: FakeRadio) -> None:
    h = handler(app, OnOff)
    app.set(1, OnOff, on_off=t.Bool.false)
    _switch_effects(app)
    readings = await h.execute("switch", "on", {})
    assert values(readings) == {("switch", "on"): True}
    kinds = [p.data.serialize()[2] for p in app.sent]
    assert kinds == [OnOff.ServerCommandDefs.on.id, foundation.GeneralCommand.Read_Attributes]


async def test_execute_never_echoes_the_request(app: FakeRadio) -> None:
    h = handler(app, OnOff)
    app.set(1, OnOff, on_off=t.Bool.false)  # acks "on" but stays off (no effect declared)
    assert values(await h.execute("switch", "on", {})) == {("switch", "on"): False}


async def test_execute_level_reads_back_level_and_switch(app: FakeRadio) -> None:
    h = handler(app, OnOff, LevelControl)
    app.set(1, OnOff, on_off=t.Bool.false)
    app.set(1, LevelControl, current_level=0)
    level = LevelControl.AttributeDefs.current_level.id
    app.effects[(LevelControl.cluster_id, "move_to_level_with_on_off")] = lambda req: {
        level: req.level}
    readings = await h.execute("level", "set_level", {"level": 40.0, "transition": 0.0})
    assert values(readings) == {("level", "level"): 40.2, ("switch", "on"): False}


async def test_execute_attribute_write(app: FakeRadio) -> None:
    h = handler(app, Thermostat)
    app.set(1, Thermostat, occupied_heating_setpoint=2000, local_temperature=2100)
    readings = await h.execute("thermostat", "set_heating_setpoint", {"value": 22.5})
    assert values(readings) == {("thermostat", "heating_setpoint"): 22.5,
                                ("thermostat", "local_temperature"): 21.0}


async def test_execute_nack_from_default_response(app: FakeRadio) -> None:
    h = handler(app, OnOff)
    app.statuses[(OnOff.cluster_id, "on")] = Status.FAILURE
    with pytest.raises(CommandError) as err:
        await h.execute("switch", "on", {})
    assert err.value.code == "nack"
    assert "FAILURE" in err.value.message


async def test_execute_nack_from_write_status(app: FakeRadio) -> None:
    h = handler(app, Thermostat)
    app.statuses[(Thermostat.cluster_id, "write")] = Status.INVALID_VALUE
    with pytest.raises(CommandError) as err:
        await h.execute("thermostat", "set_mode", {"mode": "dry"})
    assert err.value.code == "nack"
    assert "system_mode=INVALID_VALUE" in err.value.message


@pytest.mark.parametrize(("failure", "code"), [
    (zigpy.exceptions.DeliveryError("no ack from the device"), "no_route"),
    (TimeoutError(), "timeout"),
])
async def test_execute_transport_failures(app: FakeRadio, failure: Exception, code: str) -> None:
    h = handler(app, OnOff)
    app.failure = failure
    with pytest.raises(CommandError) as err:
        await h.execute("switch", "off", {})
    assert err.value.code == code


async def test_execute_read_back_failure_is_reported(app: FakeRadio) -> None:
    h = handler(app, OnOff)

    sent_command = False
    original = app.send_packet

    async def fail_after_command(packet: t.ZigbeePacket) -> None:
        nonlocal sent_command
        if sent_command:
            raise zigpy.exceptions.DeliveryError("gone")
        sent_command = True
        await original(packet)

    app.send_packet = fail_after_command  # type: ignore[method-assign]
    with pytest.raises(CommandError) as err:
        await h.execute("switch", "on", {})
    assert err.value.code == "no_route"
    assert "acknowledged" in err.value.message


# --- read_state ---------------------------------------------------------------------------


async def test_read_state_reads_everything_and_skips_unsupported(app: FakeRadio) -> None:
    h = handler(app, ElectricalMeasurement, TemperatureMeasurement, PowerConfiguration)
    app.set(1, ElectricalMeasurement, active_power=1500, ac_power_multiplier=1,
            ac_power_divisor=10, rms_voltage=230)
    app.set(1, TemperatureMeasurement, measured_value=1950)
    app.set(1, PowerConfiguration, battery_percentage_remaining=180)
    readings = values(await h.read_state())
    assert readings == {("power", "power"): 150.0, ("voltage", "voltage"): 230,
                        ("temperature", "temperature"): 19.5, ("battery", "battery"): 90.0}
    # Unsupported attributes are now known as such: no capability, not read again.
    assert "current" not in h.capabilities and "battery_voltage" not in h.capabilities
    app.sent.clear()
    await h.read_state()
    em = h.device.endpoints[1].electrical_measurement
    assert em.is_attribute_unsupported(ElectricalMeasurement.AttributeDefs.rms_current)
    assert len(app.sent) == 3  # one request per cluster, multipliers came from the cache


async def test_read_state_raises_only_when_nothing_answers(app: FakeRadio) -> None:
    h = handler(app, TemperatureMeasurement)
    app.failure = TimeoutError()
    with pytest.raises(CommandError) as err:
        await h.read_state()
    assert err.value.code == "timeout"


# --- configure ----------------------------------------------------------------------------


async def test_configure_binds_and_configures_reporting(app: FakeRadio) -> None:
    h = handler(app, OnOff, LevelControl, ElectricalMeasurement)
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
    reporting = [p for p in app.sent
                 if p.dst_ep == 1 and p.data.serialize()[2]
                 == foundation.GeneralCommand.Configure_Reporting]
    em = h.device.endpoints[1].electrical_measurement
    _, request = em.deserialize(reporting[-1].data.serialize())
    records = {r.attrid: (r.min_interval, r.max_interval) for r in request.config_records}
    assert records[ElectricalMeasurement.AttributeDefs.active_power.id] == (5, 900)


async def test_configure_reports_failures_without_raising(app: FakeRadio) -> None:
    h = handler(app, OnOff, TemperatureMeasurement)
    app.bind_status = zdo_t.Status.NOT_SUPPORTED
    app.statuses[(TemperatureMeasurement.cluster_id, "report")] = Status.UNREPORTABLE_ATTRIBUTE
    steps = await h.configure()
    by_key = {(s.cluster, s.action): s for s in steps}
    assert not by_key[(OnOff.cluster_id, "bind")].ok
    assert by_key[(OnOff.cluster_id, "configure_reporting")].ok
    failed = by_key[(TemperatureMeasurement.cluster_id, "configure_reporting")]
    assert not failed.ok and "UNREPORTABLE_ATTRIBUTE" in failed.detail


async def test_configure_ias_zone_enrolls_and_reads_zone_type(app: FakeRadio) -> None:
    h = handler(app, IasZone)
    app.set(1, IasZone, zone_type=IasZone.ZoneType.Motion_Sensor, zone_status=0)
    steps = await h.configure()
    assert [(s.action, s.ok) for s in steps] == [
        ("bind", True), ("ias_enroll", True), ("read_attributes", True)]
    written = app.values[(1, IasZone.cluster_id, IasZone.AttributeDefs.cie_addr.id)]
    assert written == app.state.node_info.ieee
    assert h.capabilities == {"occupancy": "occupancy", "tamper": "tamper"}


async def test_configure_survives_transport_failure(app: FakeRadio) -> None:
    h = handler(app, OnOff)
    app.failure = zigpy.exceptions.DeliveryError("unreachable")
    steps = await h.configure()
    assert [(s.action, s.ok) for s in steps] == [("bind", False), ("configure_reporting", False)]
