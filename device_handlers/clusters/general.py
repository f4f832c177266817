"""General clusters: power configuration, device temperature, on/off, level, binary input."""

from __future__ import annotations

from typing import Any

import zigpy.types as t
from zigpy.zcl.clusters.general import (
    BinaryInput,
    DeviceTemperature,
    LevelControl,
    OnOff,
    PowerConfiguration,
)

from device_handlers.convert import (
    Cached,
    as_bool,
    divide,
    half_percent,
    identity,
    percent_to,
    ranged,
    tenths,
)
from device_handlers.tables import (
    AttributeMap,
    ClusterTable,
    CommandArgs,
    CommandMap,
    ReceivedCommand,
    ReportConfig,
    cluster_command,
)

_on_off = OnOff.AttributeDefs.on_off
_level = LevelControl.AttributeDefs.current_level


def _move_to_level(args: CommandArgs) -> dict[str, Any]:
    return {
        "level": percent_to(254, float(args["level"] or 0)),
        "transition_time": tenths(float(args.get("transition") or 0)),
    }


def _timed_on(args: Any, cached: Cached) -> Any:
    """on_with_timed_off may say "only if already on" (as ZHA reads it)."""
    only_when_on = args.on_off_control & OnOff.OnOffControl.Accept_Only_When_On
    return None if only_when_on and not cached.get(_on_off) else t.Bool.true


def _toggled(args: Any, cached: Cached) -> Any:
    """A remote's toggle flips what we last saw it send (unknown → no update)."""
    current = cached.get(_on_off)
    return None if current is None else t.Bool(not current)


POWER_CONFIGURATION = ClusterTable(
    cluster=PowerConfiguration,
    attributes=(
        AttributeMap(
            attribute=PowerConfiguration.AttributeDefs.battery_percentage_remaining,
            capability="battery", field="battery", convert=half_percent,
            report=ReportConfig(min=3600, max=10800, change=1),
        ),
        AttributeMap(
            attribute=PowerConfiguration.AttributeDefs.battery_voltage,
            capability="battery_voltage", field="voltage", convert=divide(10, ndigits=1),
            report=ReportConfig(min=3600, max=10800, change=1),
        ),
    ),
)

DEVICE_TEMPERATURE = ClusterTable(
    cluster=DeviceTemperature,
    attributes=(
        # ZCL: current_temperature is in whole °C (ZHA divides by 100; the spec does not).
        AttributeMap(
            attribute=DeviceTemperature.AttributeDefs.current_temperature,
            capability="device_temperature", field="temperature", convert=identity,
            report=ReportConfig(min=30, max=900, change=1),
        ),
    ),
)

ON_OFF = ClusterTable(
    cluster=OnOff,
    attributes=(
        AttributeMap(attribute=_on_off, capability="switch", field="on", convert=as_bool,
                     report=ReportConfig(min=0, max=900, change=1)),
    ),
    commands=(
        CommandMap(capability="switch", command="on",
                   action=cluster_command(OnOff.ServerCommandDefs.on)),
        CommandMap(capability="switch", command="off",
                   action=cluster_command(OnOff.ServerCommandDefs.off)),
        CommandMap(capability="switch", command="toggle",
                   action=cluster_command(OnOff.ServerCommandDefs.toggle)),
    ),
)

# A remote (On/Off as an output cluster) sends on/off/toggle to the coordinator once bound. Its
# "switch" is the last command it sent, mirrored into the client cluster's cache as ZHA does.
# It only applies when the endpoint has no On/Off server (priority below the server entry).
ON_OFF_REMOTE = ClusterTable(
    cluster=OnOff,
    client=True,
    attributes=(
        AttributeMap(attribute=_on_off, capability="switch", field="on", convert=as_bool,
                     priority=-1),
    ),
    received=(
        ReceivedCommand(command=OnOff.ServerCommandDefs.on, attribute=_on_off,
                        value=lambda args, cached: t.Bool.true),
        ReceivedCommand(command=OnOff.ServerCommandDefs.on_with_recall_global_scene,
                        attribute=_on_off, value=lambda args, cached: t.Bool.true),
        # e.g. a motion sensor switching lights on for on_time tenths of a second
        ReceivedCommand(command=OnOff.ServerCommandDefs.on_with_timed_off, attribute=_on_off,
                        value=_timed_on, revert_after=lambda args: args.on_time / 10,
                        revert_value=t.Bool.false),
        ReceivedCommand(command=OnOff.ServerCommandDefs.off, attribute=_on_off,
                        value=lambda args, cached: t.Bool.false),
        ReceivedCommand(command=OnOff.ServerCommandDefs.off_with_effect, attribute=_on_off,
                        value=lambda args, cached: t.Bool.false),
        ReceivedCommand(command=OnOff.ServerCommandDefs.toggle, attribute=_on_off,
                        value=_toggled),
    ),
)

LEVEL_CONTROL = ClusterTable(
    cluster=LevelControl,
    attributes=(
        # Some lights (Sengled, Homr) hold 0xFF, the uint8 "invalid" value, at full brightness;
        # ZHA and Zigbee2MQTT show it as brightness 255, so it is 100 % here (clamped).
        AttributeMap(attribute=_level, capability="level", field="level",
                     convert=ranged(254, 100), report=ReportConfig(min=1, max=900, change=1),
                     non_value_is_value=True),
    ),
    commands=(
        CommandMap(
            capability="level", command="set_level",
            action=cluster_command(LevelControl.ServerCommandDefs.move_to_level_with_on_off,
                                   _move_to_level),
            read_back=("level", "switch"),
        ),
    ),
)

BINARY_INPUT = ClusterTable(
    cluster=BinaryInput,
    attributes=(
        AttributeMap(attribute=BinaryInput.AttributeDefs.present_value,
                     capability="binary_input", field="active", convert=as_bool,
                     report=ReportConfig(min=0, max=900, change=1)),
    ),
)

TABLES = (POWER_CONFIGURATION, DEVICE_TEMPERATURE, ON_OFF, ON_OFF_REMOTE, LEVEL_CONTROL,
          BINARY_INPUT)
