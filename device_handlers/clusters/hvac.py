"""HVAC: thermostat and fan control."""

from __future__ import annotations

import math
from typing import Any

from zigpy.zcl.clusters.hvac import Fan, Thermostat

from device_handlers.convert import Cached, divide, first_flag, named
from device_handlers.tables import (
    AttributeMap,
    ClusterTable,
    CommandArgs,
    CommandMap,
    LimitMap,
    ReportConfig,
    write_attribute,
)
from wire.contract import Value

_attrs = Thermostat.AttributeDefs
_Mode = Thermostat.SystemMode
_State = Thermostat.RunningState

SYSTEM_MODES: dict[Any, str] = {
    _Mode.Off: "off",
    _Mode.Auto: "auto",
    _Mode.Cool: "cool",
    _Mode.Heat: "heat",
    _Mode.Emergency_Heating: "emergency_heating",
    _Mode.Pre_cooling: "precooling",
    _Mode.Fan_only: "fan_only",
    _Mode.Dry: "dry",
    _Mode.Sleep: "sleep",
}
_Sequence = Thermostat.ControlSequenceOfOperation
CONTROL_SEQUENCES: dict[Any, str] = {
    _Sequence.Cooling_Only: "cooling_only",
    _Sequence.Cooling_With_Reheat: "cooling_with_reheat",
    _Sequence.Heating_Only: "heating_only",
    _Sequence.Heating_With_Reheat: "heating_with_reheat",
    _Sequence.Cooling_and_Heating: "cooling_and_heating",
    _Sequence.Cooling_and_Heating_with_Reheat: "cooling_and_heating_with_reheat",
}
_MODE_BY_NAME = {name: mode for mode, name in SYSTEM_MODES.items()}

# running_state bits → what the equipment is doing now; heating wins over cooling over fan.
RUNNING_STATE = first_flag(
    (
        (_State.Heat_State_On | _State.Heat_2nd_Stage_On, "heat"),
        (_State.Cool_State_On | _State.Cool_2nd_Stage_On, "cool"),
        (_State.Fan_State_On | _State.Fan_2nd_Stage_On | _State.Fan_3rd_Stage_On, "fan"),
    ),
    default="idle",
)

_SETPOINT_REPORT = ReportConfig(min=30, max=900, change=25)  # ZHA: 0.25 °C
_STATE_REPORT = ReportConfig(min=30, max=900, change=1)


# A setpoint's user limits, else its absolute ones (as ZHA falls back), in hundredths of a degree.
_HEATING_LIMITS = LimitMap(capability="thermostat", field="heating_setpoint", convert=divide(100),
                           ends=((_attrs.min_heat_setpoint_limit, _attrs.abs_min_heat_setpoint_limit),
                                 (_attrs.max_heat_setpoint_limit, _attrs.abs_max_heat_setpoint_limit)))
_COOLING_LIMITS = LimitMap(capability="thermostat", field="cooling_setpoint", convert=divide(100),
                           ends=((_attrs.min_cool_setpoint_limit, _attrs.abs_min_cool_setpoint_limit),
                                 (_attrs.max_cool_setpoint_limit, _attrs.abs_max_cool_setpoint_limit)))


def _centi(args: CommandArgs) -> int:
    return round(float(args["value"] or 0) * 100)


THERMOSTAT = ClusterTable(
    cluster=Thermostat,
    attributes=(
        AttributeMap(attribute=_attrs.local_temperature, capability="thermostat",
                     field="local_temperature", convert=divide(100), report=_SETPOINT_REPORT),
        AttributeMap(attribute=_attrs.occupied_heating_setpoint, capability="thermostat",
                     field="heating_setpoint", convert=divide(100), report=_SETPOINT_REPORT),
        AttributeMap(attribute=_attrs.occupied_cooling_setpoint, capability="thermostat",
                     field="cooling_setpoint", convert=divide(100), report=_SETPOINT_REPORT),
        AttributeMap(attribute=_attrs.system_mode, capability="thermostat", field="mode",
                     convert=named(SYSTEM_MODES), report=_STATE_REPORT),
        AttributeMap(attribute=_attrs.running_state, capability="thermostat",
                     field="running_state", convert=RUNNING_STATE, report=_STATE_REPORT),
        # Whether it heats, cools or both: set at installation, read, never reported.
        AttributeMap(attribute=_attrs.ctrl_sequence_of_oper, capability="thermostat",
                     field="control_sequence", convert=named(CONTROL_SEQUENCES)),
    ),
    commands=(
        CommandMap(capability="thermostat", command="set_heating_setpoint",
                   action=write_attribute(_attrs.occupied_heating_setpoint, _centi)),
        CommandMap(capability="thermostat", command="set_cooling_setpoint",
                   action=write_attribute(_attrs.occupied_cooling_setpoint, _centi)),
        CommandMap(capability="thermostat", command="set_mode",
                   action=write_attribute(_attrs.system_mode,
                                          lambda a: _MODE_BY_NAME[str(a["mode"])])),
    ),
    limits=(_HEATING_LIMITS, _COOLING_LIMITS),
)

_FanMode = Fan.FanMode
FAN_MODES: dict[Any, str] = {
    _FanMode.Off: "off",
    _FanMode.Low: "low",
    _FanMode.Medium: "medium",
    _FanMode.High: "high",
    _FanMode.On: "on",
    _FanMode.Auto: "auto",
    _FanMode.Smart: "smart",
}
_FAN_MODE_BY_NAME = {name: mode for mode, name in FAN_MODES.items()}
# Speeds as percentages the way ZHA ranges them (3 speeds: 33/66/100); auto/smart have none.
_FAN_PERCENT = {_FanMode.Off: 0, _FanMode.Low: 33, _FanMode.Medium: 66, _FanMode.High: 100,
                _FanMode.On: 100}
_FAN_SPEEDS = (_FanMode.Off, _FanMode.Low, _FanMode.Medium, _FanMode.High)


def _fan_percentage(raw: Any, cached: Cached) -> Value | None:
    return _FAN_PERCENT.get(raw)


def _mode_for_percentage(args: CommandArgs) -> Any:
    """0 → off, 1-33 → low, 34-66 → medium, 67-100 → high (ZHA's ceil over 3 speeds)."""
    return _FAN_SPEEDS[min(3, math.ceil(float(args["percentage"] or 0) * 3 / 100))]


FAN = ClusterTable(
    cluster=Fan,
    attributes=(
        AttributeMap(attribute=Fan.AttributeDefs.fan_mode, capability="fan", field="mode",
                     convert=named(FAN_MODES), report=ReportConfig(min=5, max=900, change=1)),
        AttributeMap(attribute=Fan.AttributeDefs.fan_mode, capability="fan",
                     field="percentage", convert=_fan_percentage),
    ),
    commands=(
        CommandMap(capability="fan", command="set_mode",
                   action=write_attribute(Fan.AttributeDefs.fan_mode,
                                          lambda a: _FAN_MODE_BY_NAME[str(a["mode"])])),
        CommandMap(capability="fan", command="set_percentage",
                   action=write_attribute(Fan.AttributeDefs.fan_mode, _mode_for_percentage)),
    ),
)

TABLES = (THERMOSTAT, FAN)
