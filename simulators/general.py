"""Profile-wide ZCL commands on a virtual device: read/write attributes and attribute reporting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zigpy.zcl import foundation

from simulators import frames
from simulators.device import Reporting, VirtualCluster

if TYPE_CHECKING:
    from simulators.device import VirtualDevice

G = foundation.GeneralCommand
Status = foundation.Status


def handle(device: VirtualDevice, cluster: VirtualCluster, hdr: foundation.ZCLHeader,
           rest: bytes) -> bytes | None:
    """Answer a general command; return the reply frame (or None when none is due)."""
    command = hdr.command_id
    if command not in foundation.GENERAL_COMMANDS:
        return frames.default_response(hdr, Status.UNSUP_GENERAL_COMMAND)
    try:
        request, _ = foundation.GENERAL_COMMANDS[command].schema.deserialize(rest)
    except (ValueError, KeyError):
        return frames.default_response(hdr, Status.MALFORMED_COMMAND)
    refused = device.faults.refused(cluster.cluster_id, G(command).name)
    if refused is not None:
        return _refuse(hdr, request, refused)
    ignored = device.faults.ignored(cluster.cluster_id, G(command).name)

    if command == G.Read_Attributes:
        return _read(cluster, hdr, request.attribute_ids)
    if command in (G.Write_Attributes, G.Write_Attributes_Undivided, G.Write_Attributes_No_Response):
        reply = _write(device, cluster, hdr, [] if ignored else request.attributes,
                       undivided=command == G.Write_Attributes_Undivided)
        return None if command == G.Write_Attributes_No_Response else reply
    if command == G.Configure_Reporting:
        if not ignored:
            device.config_changed = True
        return _configure_reporting(cluster, hdr, [] if ignored else request.config_records)
    if command == G.Read_Reporting_Configuration:
        return _read_reporting(cluster, hdr, request.attribute_records)
    if command == G.Discover_Attributes:
        return _discover(cluster, hdr, request.start_attribute_id, request.max_attribute_ids)
    if command == G.Default_Response:
        return None
    return frames.default_response(hdr, Status.UNSUP_GENERAL_COMMAND)


def _refuse(hdr: foundation.ZCLHeader, request: Any, status: Status) -> bytes | None:
    """The answer of a device told to refuse this command (``device.faults.refuse``): the status
    for every attribute of a read, write or reporting configuration, else a Default_Response."""
    command = hdr.command_id
    if command == G.Read_Attributes:
        records = [foundation.ReadAttributeRecord(attrid=attrid, status=status)
                   for attrid in request.attribute_ids]
        body = frames.zcl_general(G.Read_Attributes_rsp, status_records=records)
        return frames.zcl_reply(hdr, G.Read_Attributes_rsp, body)
    if command in (G.Write_Attributes, G.Write_Attributes_Undivided):
        writes = [foundation.WriteAttributesStatusRecord(status=status, attrid=attr.attrid)
                  for attr in request.attributes]
        body = frames.zcl_general(G.Write_Attributes_rsp,
                                  status_records=foundation.WriteAttributesResponse(writes))
        return frames.zcl_reply(hdr, G.Write_Attributes_rsp, body)
    if command == G.Write_Attributes_No_Response:
        return None
    if command == G.Configure_Reporting:
        configs = [foundation.ConfigureReportingResponseRecord(
            status=status, direction=cfg.direction, attrid=cfg.attrid)
            for cfg in request.config_records]
        body = frames.zcl_general(G.Configure_Reporting_rsp,
                                  status_records=foundation.ConfigureReportingResponse(configs))
        return frames.zcl_reply(hdr, G.Configure_Reporting_rsp, body)
    return frames.default_response(hdr, status)


def _read(cluster: VirtualCluster, hdr: foundation.ZCLHeader, attrids: list[int]) -> bytes:
    records = []
    for attrid in attrids:
        typed = cluster.typed(attrid) if attrid in cluster.values else None
        if typed is None:
            records.append(foundation.ReadAttributeRecord(
                attrid=attrid, status=Status.UNSUPPORTED_ATTRIBUTE))
        else:
            records.append(foundation.ReadAttributeRecord(
                attrid=attrid, status=Status.SUCCESS, value=typed))
    body = frames.zcl_general(G.Read_Attributes_rsp, status_records=records)
    return frames.zcl_reply(hdr, G.Read_Attributes_rsp, body)


def _write(device: VirtualDevice, cluster: VirtualCluster, hdr: foundation.ZCLHeader,
           attributes: list[foundation.Attribute], *, undivided: bool) -> bytes:
    failures: list[foundation.WriteAttributesStatusRecord] = []
    accepted = []
    for attr in attributes:
        status = _writable(cluster, attr.attrid)
        if status is Status.SUCCESS:
            accepted.append(attr)
        else:
            failures.append(foundation.WriteAttributesStatusRecord(status=status,
                                                                   attrid=attr.attrid))
    if not (undivided and failures):
        now = device.clock()
        ep = device.endpoint_of(cluster)
        for attr in accepted:
            value = attr.value.value
            if device.behaviour is not None:
                value = device.behaviour.on_write(device, cluster, attr.attrid, value)
            device.set_attribute(ep.endpoint_id, cluster.cluster_id, attr.attrid, value, now=now)
    records = failures or [foundation.WriteAttributesStatusRecord(status=Status.SUCCESS)]
    body = frames.zcl_general(G.Write_Attributes_rsp,
                              status_records=foundation.WriteAttributesResponse(records))
    return frames.zcl_reply(hdr, G.Write_Attributes_rsp, body)


def _writable(cluster: VirtualCluster, attrid: int) -> Status:
    attr = cluster.attr_def(attrid)
    if attrid not in cluster.values and attr is None:
        return Status.UNSUPPORTED_ATTRIBUTE
    if attrid in cluster.read_only:
        return Status.READ_ONLY
    if attr is not None and not (attr.access & foundation.ZCLAttributeAccess.Write):
        return Status.READ_ONLY
    return Status.SUCCESS


def _configure_reporting(cluster: VirtualCluster, hdr: foundation.ZCLHeader,
                         configs: list[foundation.AttributeReportingConfig]) -> bytes:
    failures = []
    for cfg in configs:
        if cfg.direction != foundation.ReportingDirection.SendReports:
            continue
        if cfg.attrid not in cluster.values:
            failures.append(foundation.ConfigureReportingResponseRecord(
                status=Status.UNSUPPORTED_ATTRIBUTE, direction=cfg.direction, attrid=cfg.attrid))
            continue
        change = getattr(cfg, "reportable_change", 0) or 0
        previous = cluster.reporting.get(cfg.attrid)
        cluster.reporting[cfg.attrid] = Reporting(
            min_interval=int(cfg.min_interval), max_interval=int(cfg.max_interval),
            reportable_change=float(change),
            last_value=previous.last_value if previous else None,
            last_sent=previous.last_sent if previous else 0.0,
        )
    records = failures or [foundation.ConfigureReportingResponseRecord(status=Status.SUCCESS)]
    body = frames.zcl_general(G.Configure_Reporting_rsp,
                              status_records=foundation.ConfigureReportingResponse(records))
    return frames.zcl_reply(hdr, G.Configure_Reporting_rsp, body)


def _read_reporting(cluster: VirtualCluster, hdr: foundation.ZCLHeader,
                    records: list[foundation.ReadReportingConfigRecord]) -> bytes:
    out = []
    for record in records:
        cfg = cluster.reporting.get(record.attrid)
        rc = foundation.AttributeReportingConfig()
        rc.direction = foundation.ReportingDirection.SendReports
        rc.attrid = record.attrid
        if cfg is None:
            out.append(foundation.AttributeReportingConfigWithStatus(
                status=Status.UNREPORTABLE_ATTRIBUTE, config=rc))
            continue
        rc.datatype = cluster.zcl_type(record.attrid)
        rc.min_interval, rc.max_interval = cfg.min_interval, cfg.max_interval
        rc.reportable_change = int(cfg.reportable_change)
        out.append(foundation.AttributeReportingConfigWithStatus(status=Status.SUCCESS, config=rc))
    body = frames.zcl_general(G.Read_Reporting_Configuration_rsp, attribute_configs=out)
    return frames.zcl_reply(hdr, G.Read_Reporting_Configuration_rsp, body)


def _discover(cluster: VirtualCluster, hdr: foundation.ZCLHeader, start: int, count: int
              ) -> bytes:
    ids = sorted(a for a in cluster.values if a >= start)
    infos = [
        foundation.DiscoverAttributesResponseRecord(attrid=a, datatype=cluster.zcl_type(a))
        for a in ids[:count] if cluster.zcl_type(a) is not None
    ]
    body = frames.zcl_general(G.Discover_Attributes_rsp, discovery_complete=len(ids) <= count,
                              attribute_info=infos)
    return frames.zcl_reply(hdr, G.Discover_Attributes_rsp, body)
