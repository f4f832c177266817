"""Closures: window coverings and door locks."""

from __future__ import annotations

from typing import Any

from zigpy.zcl.clusters.closures import DoorLock, WindowCovering

from device_handlers.convert import Cached, named
from device_handlers.tables import (
    AttributeMap,
    ClusterTable,
    CommandArgs,
    CommandMap,
    ReportConfig,
    cluster_command,
)
from wire.contract import Value

_lift = WindowCovering.AttributeDefs.current_position_lift_percentage


def _percent_open(raw: Any, cached: Cached) -> Value | None:
    """ZCL lift percentage is how far the covering is *closed* (0 = fully open); the vocabulary's
    position is percent open, as in Home Assistant: position = 100 - lift %."""
    return max(0, min(100, 100 - int(raw)))


def _go_to_open_percent(args: CommandArgs) -> dict[str, Any]:
    return {"percentage_lift_value": max(0, min(100, 100 - round(float(args["position"] or 0))))}


WINDOW_COVERING = ClusterTable(
    cluster=WindowCovering,
    attributes=(
        AttributeMap(attribute=_lift, capability="window_covering", field="position",
                     convert=_percent_open, report=ReportConfig(min=0, max=900, change=1)),
    ),
    commands=(
        CommandMap(capability="window_covering", command="open",
                   action=cluster_command(WindowCovering.ServerCommandDefs.up_open)),
        CommandMap(capability="window_covering", command="close",
                   action=cluster_command(WindowCovering.ServerCommandDefs.down_close)),
        CommandMap(capability="window_covering", command="stop",
                   action=cluster_command(WindowCovering.ServerCommandDefs.stop)),
        CommandMap(capability="window_covering", command="set_position",
                   action=cluster_command(WindowCovering.ServerCommandDefs.go_to_lift_percentage,
                                          _go_to_open_percent)),
    ),
)

_Lock = DoorLock.LockState

DOOR_LOCK = ClusterTable(
    cluster=DoorLock,
    attributes=(
        # "Not fully locked" (jammed bolt) counts as unlocked; "undefined" gives no reading.
        AttributeMap(attribute=DoorLock.AttributeDefs.lock_state, capability="lock",
                     field="locked",
                     convert=named({_Lock.Locked: True, _Lock.Unlocked: False,
                                    _Lock.Not_fully_locked: False}),
                     report=ReportConfig(min=0, max=900, change=1)),
    ),
    commands=(
        CommandMap(capability="lock", command="lock",
                   action=cluster_command(DoorLock.ServerCommandDefs.lock_door)),
        CommandMap(capability="lock", command="unlock",
                   action=cluster_command(DoorLock.ServerCommandDefs.unlock_door)),
    ),
)

TABLES = (WINDOW_COVERING, DOOR_LOCK)
