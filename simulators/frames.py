"""ZCL and ZDO frame encoding for the device side of the simulated network.

Everything goes through zigpy's own types, so a virtual device speaks exactly the bytes a real one
does: a reply flips the request's direction bit, carries the request's TSN, and disables the default
response.
"""

from __future__ import annotations

from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import Cluster, foundation


def zcl_reply(
    request: foundation.ZCLHeader, command_id: int, payload: bytes, *, general: bool = True
) -> bytes:
    """A reply to ``request``: same TSN and manufacturer code, opposite direction."""
    frame_control = foundation.FrameControl(
        frame_type=(
            foundation.FrameType.GLOBAL_COMMAND if general else foundation.FrameType.CLUSTER_COMMAND
        ),
        is_manufacturer_specific=request.manufacturer is not None,
        direction=request.frame_control.direction.flip(),
        disable_default_response=True,
        reserved=0b000,
    )
    hdr = foundation.ZCLHeader(
        frame_control=frame_control,
        manufacturer=request.manufacturer,
        tsn=request.tsn,
        command_id=command_id,
    )
    return hdr.serialize() + payload


def zcl_general(command: foundation.GeneralCommand, **fields: Any) -> bytes:
    """Serialize the body of a ZCL general (profile-wide) command."""
    return foundation.GENERAL_COMMANDS[command].schema(**fields).serialize()


def default_response(request: foundation.ZCLHeader, status: foundation.Status) -> bytes:
    return zcl_reply(
        request,
        foundation.GeneralCommand.Default_Response,
        zcl_general(
            foundation.GeneralCommand.Default_Response,
            command_id=request.command_id,
            status=status,
        ),
    )


def report_frame(tsn: int, reports: list[foundation.Attribute], manufacturer: int | None) -> bytes:
    """An unsolicited Report_Attributes frame from a server cluster to the coordinator."""
    hdr = foundation.ZCLHeader.general(
        tsn,
        foundation.GeneralCommand.Report_Attributes,
        manufacturer=manufacturer,
        direction=foundation.Direction.Server_to_Client,
    )
    hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
    body = zcl_general(foundation.GeneralCommand.Report_Attributes, attribute_reports=reports)
    return hdr.serialize() + body


def cluster_command_frame(
    tsn: int, cluster_id: int, command_id: int, fields: dict[str, Any]
) -> bytes:
    """A cluster-specific command sent by a device (server -> client), e.g. an IAS notification."""
    return _command_frame(tsn, cluster_id, command_id, fields, from_client=False)


def client_command_frame(
    tsn: int, cluster_id: int, command_id: int, fields: dict[str, Any]
) -> bytes:
    """A command sent from a device's client cluster (client -> server), e.g. a remote's "on"."""
    return _command_frame(tsn, cluster_id, command_id, fields, from_client=True)


def _command_frame(tsn: int, cluster_id: int, command_id: int, fields: dict[str, Any], *,
                   from_client: bool) -> bytes:
    cls = Cluster._registry.get(cluster_id)
    commands = (cls.server_commands if from_client else cls.client_commands) if cls else {}
    if command_id not in commands:
        kind = "server" if from_client else "client"
        raise ValueError(f"no {kind} command 0x{command_id:02x} on cluster 0x{cluster_id:04x}")
    direction = (foundation.Direction.Client_to_Server if from_client
                 else foundation.Direction.Server_to_Client)
    hdr = foundation.ZCLHeader.cluster(tsn, command_id, direction=direction)
    if from_client:  # a remote does not ask the coordinator for a default response
        hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
    return hdr.serialize() + commands[command_id].schema(**fields).serialize()


def typed_value(zcl_type: int, value: Any) -> foundation.TypeValue:
    """Wrap a plain Python value in zigpy's type for the given ZCL data type id."""
    python_type = foundation.DataType.from_type_id(zcl_type).python_type
    if not isinstance(value, python_type):
        value = python_type(value)
    return foundation.TypeValue(type=foundation.DataTypeId(zcl_type), value=value)


def zdo_frame(command: zdo_t.ZDOCmd, tsn: int, *args: Any) -> bytes:
    """Serialize a ZDO frame: TSN followed by the command's fields."""
    _, schema = zdo_t.CLUSTERS[command]
    return t.uint8_t(tsn).serialize() + t.serialize(args, schema)


def zdo_parse(cluster_id: int, data: bytes) -> tuple[int, list[Any]]:
    """Parse a ZDO request: (tsn, fields)."""
    _, schema = zdo_t.CLUSTERS[cluster_id]
    hdr, rest = zdo_t.ZDOHeader.deserialize(cluster_id, data)
    args, _ = t.deserialize(rest, schema)
    return hdr.tsn, args
