"""Security: IAS Zone sensors (motion, contact, water, smoke, vibration, generic alarms)."""

from __future__ import annotations

from typing import Any

from zigpy.zcl import Cluster
from zigpy.zcl.clusters.security import IasWd, IasZone
from zigpy.zcl.foundation import Status

from device_handlers.convert import attr_in, attr_not_in, flag
from device_handlers.tables import (
    AssumedState,
    AttributeMap,
    ClusterTable,
    CommandArgs,
    CommandMap,
    ReceivedCommand,
    SetupStep,
    cluster_command,
)

_attrs = IasZone.AttributeDefs
_Zone = IasZone.ZoneType
_Status = IasZone.ZoneStatus

# Zone type → the capability its alarm means. Zone types not listed here (CO, glass break,
# keypads, personal emergency, ...) fall back to the generic "alarm" capability.
ZONE_CAPABILITIES: dict[Any, tuple[str, str]] = {
    _Zone.Motion_Sensor: ("occupancy", "occupied"),
    _Zone.Contact_Switch: ("contact", "open"),
    _Zone.Water_Sensor: ("water_leak", "wet"),
    _Zone.Fire_Sensor: ("smoke", "detected"),
    _Zone.Vibration_Movement_Sensor: ("vibration", "detected"),
}

# The alarm is Alarm_1 or Alarm_2: some sensors signal on the second bit (ZHA reads both).
_ALARM = flag(_Status.Alarm_1 | _Status.Alarm_2)


async def _enroll(cluster: Cluster) -> str:
    """Make the coordinator the zone's CIE: write cie_addr, then a proactive enroll response."""
    ieee = cluster.endpoint.device.application.state.node_info.ieee
    [records] = await cluster.write_attributes({_attrs.cie_addr.name: ieee})
    failed = [r for r in records if r.status != Status.SUCCESS]
    if failed:
        raise RuntimeError(f"writing cie_addr failed: {failed[0].status!r}")
    await cluster.enroll_response(
        enroll_response_code=IasZone.EnrollResponse.Success, zone_id=0, expect_reply=False
    )
    return f"cie_addr={ieee}, enroll response sent"


def _enroll_reply(cluster: Cluster) -> Any:
    return cluster.enroll_response(
        enroll_response_code=IasZone.EnrollResponse.Success, zone_id=0, expect_reply=False
    )


IAS_ZONE = ClusterTable(
    cluster=IasZone,
    attributes=(
        *(
            AttributeMap(attribute=_attrs.zone_status, capability=capability, field=field,
                         convert=_ALARM, when=attr_in(_attrs.zone_type, frozenset({zone_type})))
            for zone_type, (capability, field) in ZONE_CAPABILITIES.items()
        ),
        AttributeMap(attribute=_attrs.zone_status, capability="alarm", field="active",
                     convert=_ALARM,
                     when=attr_not_in(_attrs.zone_type, frozenset(ZONE_CAPABILITIES))),
        AttributeMap(attribute=_attrs.zone_status, capability="tamper", field="tampered",
                     convert=flag(_Status.Tamper)),
    ),
    received=(
        # Zones send their status as a command rather than an attribute report.
        ReceivedCommand(command=IasZone.ClientCommandDefs.status_change_notification,
                        attribute=_attrs.zone_status,
                        value=lambda args, cached: args.zone_status),
        ReceivedCommand(command=IasZone.ClientCommandDefs.enroll, reply=_enroll_reply),
    ),
    setup=(SetupStep(action="ias_enroll", run=_enroll),),
)

_Warning = IasWd.Warning


def _warning(mode: Any, *, strobe: bool, seconds: int) -> dict[str, Any]:
    warning = _Warning(0)
    warning.mode = mode
    warning.strobe = _Warning.Strobe.Strobe if strobe else _Warning.Strobe.No_strobe
    warning.level = _Warning.SirenLevel.High_level_sound
    return {"warning": warning, "warning_duration": seconds, "strobe_duty_cycle": 50 if strobe else 0,
            "stobe_level": IasWd.StrobeLevel.Medium_level_strobe}


def _sound(args: CommandArgs) -> dict[str, Any]:
    return _warning(_Warning.WarningMode.Emergency, strobe=True, seconds=int(args["duration"] or 5))


# A warning device reports nothing about itself: "active" is what the hub last told it (silent
# at first, sounding for the duration of a warning), as ZHA's siren assumes.
IAS_WD = ClusterTable(
    cluster=IasWd,
    bind=False,
    assumed=(AssumedState(capability="siren", field="active", initial=False),),
    commands=(
        CommandMap(capability="siren", command="on",
                   action=cluster_command(IasWd.ServerCommandDefs.start_warning, _sound),
                   assumes=True, assumed_for=lambda args: float(args["duration"] or 5)),
        CommandMap(capability="siren", command="off",
                   action=cluster_command(
                       IasWd.ServerCommandDefs.start_warning,
                       lambda args: _warning(_Warning.WarningMode.Stop, strobe=False, seconds=0)),
                   assumes=False),
    ),
)

TABLES = (IAS_ZONE, IAS_WD)
