"""Test support for the device handler tests: a zigpy app with a tiny in-process radio.

``FakeRadio`` is a real zigpy ``ControllerApplication``; only ``send_packet`` is ours. It answers
like a minimal device would: Read/Write_Attributes from a value table, cluster commands with a
Default_Response (after applying a declared effect), Configure_Reporting and ZDO Bind with
SUCCESS. Statuses and transport failures can be injected. No zigpy object is mocked.
(Helpers live in a ``test_*`` module because this suite owns only those files; nothing here is
collected as a test.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zigpy.application
import zigpy.endpoint
import zigpy.state as app_state
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.config import CONF_DATABASE, CONF_DEVICE, CONF_DEVICE_PATH, CONF_OTA, CONF_OTA_ENABLED
from zigpy.profiles import zha
from zigpy.zcl import Cluster, foundation

COORDINATOR_IEEE = t.EUI64.convert("aa:11:22:bb:33:44:be:ef")
DEVICE_IEEE = t.EUI64.convert("00:0d:6f:00:0a:bc:de:f0")
DEVICE_NWK = t.NWK(0x1234)

Effect = Callable[[Any], dict[int, Any]]  # request → {attribute id: new raw value}


class FakeRadio(zigpy.application.ControllerApplication):
    """zigpy application whose radio is a table-driven device responder."""

    def __init__(self) -> None:
        super().__init__(
            {
                CONF_DATABASE: None,
                CONF_DEVICE: {CONF_DEVICE_PATH: "/dev/null"},
                CONF_OTA: {CONF_OTA_ENABLED: False},
            }
        )
        self.state.node_info = app_state.NodeInfo(
            nwk=t.NWK(0x0000), ieee=COORDINATOR_IEEE, logical_type=zdo_t.LogicalType.Coordinator
        )
        self.values: dict[tuple[int, int, int], Any] = {}  # (endpoint, cluster, attr) → raw
        self.effects: dict[tuple[int, str], Effect] = {}  # (cluster, command name) → effect
        self.statuses: dict[tuple[int, str], foundation.Status] = {}  # "write"/"report"/cmd name
        self.bind_status = zdo_t.Status.SUCCESS
        self.failure: BaseException | None = None
        self.sent: list[t.ZigbeePacket] = []

    # -- the device side ---------------------------------------------------------------------

    def set(self, endpoint: int, cluster: type[Cluster], **values: Any) -> None:
        """Give the simulated device attribute values, by attribute name."""
        for name, value in values.items():
            attr = cluster.attributes_by_name[name]
            self.values[(endpoint, cluster.cluster_id, attr.id)] = value

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        self.sent.append(packet)
        if self.failure is not None:
            raise self.failure
        device = self.get_device(nwk=packet.dst.address)
        reply = self._zdo(packet) if packet.dst_ep == 0 else self._zcl(device, packet)
        if reply is not None:
            device.packet_received(reply)

    def _zdo(self, packet: t.ZigbeePacket) -> t.ZigbeePacket | None:
        if packet.cluster_id != zdo_t.ZDOCmd.Bind_req:
            return None
        tsn = packet.data.serialize()[0]
        data = bytes([tsn]) + self.bind_status.serialize()
        return self._packet(packet, zdo_t.ZDOCmd.Bind_rsp, data)

    def _zcl(self, device: Any, packet: t.ZigbeePacket) -> t.ZigbeePacket | None:
        data = packet.data.serialize()
        hdr, _ = foundation.ZCLHeader.deserialize(data)
        if hdr.direction == foundation.Direction.Server_to_Client:
            return None  # our own default responses to the device's frames
        ep, cid = packet.dst_ep, packet.cluster_id
        cluster = device.endpoints[ep].in_clusters[cid]
        hdr, request = cluster.deserialize(data)
        general = foundation.GENERAL_COMMANDS
        if hdr.frame_control.frame_type == foundation.FrameType.CLUSTER_COMMAND:
            name = cluster.server_commands[hdr.command_id].name
            status = self.statuses.get((cid, name), foundation.Status.SUCCESS)
            effect = self.effects.get((cid, name))
            if status == foundation.Status.SUCCESS and effect is not None:
                for attrid, value in effect(request).items():
                    self.values[(ep, cid, attrid)] = value
            command = foundation.GeneralCommand.Default_Response
            payload = foundation.DefaultResponse(command_id=hdr.command_id, status=status)
        elif hdr.command_id == foundation.GeneralCommand.Read_Attributes:
            records = []
            for attrid in request.attribute_ids:
                attr = cluster.find_attribute(attrid)
                if (ep, cid, attrid) in self.values:
                    value = foundation.TypeValue(
                        type=attr.zcl_type, value=attr.type(self.values[(ep, cid, attrid)])
                    )
                    records.append(foundation.ReadAttributeRecord(attrid, value=value))
                else:
                    records.append(foundation.ReadAttributeRecord(
                        attrid, status=foundation.Status.UNSUPPORTED_ATTRIBUTE))
            command = foundation.GeneralCommand.Read_Attributes_rsp
            payload = general[command].schema(status_records=records)
        elif hdr.command_id == foundation.GeneralCommand.Write_Attributes:
            status = self.statuses.get((cid, "write"), foundation.Status.SUCCESS)
            if status == foundation.Status.SUCCESS:
                for record in request.attributes:
                    self.values[(ep, cid, record.attrid)] = record.value.value
                results = [foundation.WriteAttributesStatusRecord(status=status)]
            else:
                results = [foundation.WriteAttributesStatusRecord(status=status, attrid=r.attrid)
                           for r in request.attributes]
            command = foundation.GeneralCommand.Write_Attributes_rsp
            payload = general[command].schema(
                status_records=foundation.WriteAttributesResponse(results))
        elif hdr.command_id == foundation.GeneralCommand.Configure_Reporting:
            status = self.statuses.get((cid, "report"), foundation.Status.SUCCESS)
            if status == foundation.Status.SUCCESS:
                records = [foundation.ConfigureReportingResponseRecord(status=status)]
            else:
                records = [
                    foundation.ConfigureReportingResponseRecord(
                        status=status, direction=foundation.ReportingDirection.SendReports,
                        attrid=cfg.attrid)
                    for cfg in request.config_records
                ]
            command = foundation.GeneralCommand.Configure_Reporting_rsp
            payload = general[command].schema(
                status_records=foundation.ConfigureReportingResponse(records))
        else:
            return None
        return self._packet(packet, cid, zcl_frame(hdr.tsn, command, payload))

    def _packet(self, request: t.ZigbeePacket, cluster_id: int, data: bytes) -> t.ZigbeePacket:
        return t.ZigbeePacket(
            src=request.dst, src_ep=request.dst_ep,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x0000)),
            dst_ep=request.src_ep, tsn=request.tsn, profile_id=request.profile_id,
            cluster_id=cluster_id, data=t.SerializableBytes(data), lqi=255, rssi=-40,
        )

    # -- abstract methods of ControllerApplication: nothing to do without hardware ------------

    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def start_network(self) -> None: ...
    async def force_remove(self, dev: Any) -> None: ...
    async def add_endpoint(self, descriptor: Any) -> None: ...
    async def permit_ncp(self, time_s: int = 60) -> None: ...
    async def permit_with_link_key(self, node: Any, link_key: Any, time_s: int = 60) -> None: ...
    async def reset_network_info(self) -> None: ...
    async def write_network_info(self, *, network_info: Any, node_info: Any) -> None: ...
    async def load_network_info(self, *, load_devices: bool = False) -> None: ...


def zcl_frame(
    tsn: int, command_id: int, payload: Any, *, cluster_command: bool = False,
    to_client: bool = True,
) -> bytes:
    """A ZCL frame as a device sends it (server → client by default)."""
    hdr = foundation.ZCLHeader(
        frame_control=foundation.FrameControl(
            frame_type=(foundation.FrameType.CLUSTER_COMMAND if cluster_command
                        else foundation.FrameType.GLOBAL_COMMAND),
            is_manufacturer_specific=False,
            direction=(foundation.Direction.Server_to_Client if to_client
                       else foundation.Direction.Client_to_Server),
            disable_default_response=True,
            reserved=0,
        ),
        tsn=tsn,
        command_id=command_id,
    )
    return bytes(hdr.serialize() + payload.serialize())


def make_device(
    app: FakeRadio,
    endpoints: dict[int, tuple[list[type[Cluster]], list[type[Cluster]]]],
    *,
    model: str = "test.model",
    manufacturer: str = "Spoke Tests",
) -> Any:
    """A zigpy device in memory: {endpoint id: ([server clusters], [client clusters])}."""
    device = app.add_device(ieee=DEVICE_IEEE, nwk=DEVICE_NWK)
    device.node_desc = zdo_t.NodeDescriptor(
        logical_type=zdo_t.LogicalType.Router, complex_descriptor_available=0,
        user_descriptor_available=0, reserved=0, aps_flags=0,
        frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
        mac_capability_flags=zdo_t.NodeDescriptor.MACCapabilityFlags.AllocateAddress,
        manufacturer_code=0x1234, maximum_buffer_size=82, maximum_incoming_transfer_size=82,
        server_mask=0, maximum_outgoing_transfer_size=82,
        descriptor_capability_field=zdo_t.NodeDescriptor.DescriptorCapability.NONE,
    )
    device.model = model
    device.manufacturer = manufacturer
    for ep_id, (servers, clients) in endpoints.items():
        ep = device.add_endpoint(ep_id)
        ep.status = zigpy.endpoint.Status.ZDO_INIT
        ep.profile_id = zha.PROFILE_ID
        ep.device_type = zha.DeviceType.ON_OFF_LIGHT
        for cluster in servers:
            ep.add_input_cluster(cluster.cluster_id)
        for cluster in clients:
            ep.add_output_cluster(cluster.cluster_id)
    return device


def packet_from_device(
    device: Any, endpoint: int, cluster_id: int, data: bytes
) -> t.ZigbeePacket:
    """A packet as the radio hands it to zigpy when the device sends ``data``."""
    return t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=device.nwk),
        src_ep=endpoint,
        dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x0000)),
        dst_ep=1, tsn=data[1], profile_id=zha.PROFILE_ID, cluster_id=cluster_id,
        data=t.SerializableBytes(data), lqi=200, rssi=-50,
    )


def report_frame(tsn: int, cluster: type[Cluster], **values: Any) -> bytes:
    """A real ZCL Report_Attributes frame for attributes given by name."""
    reports = []
    for name, value in values.items():
        attr = cluster.attributes_by_name[name]
        reports.append(foundation.Attribute(
            attrid=attr.id, value=foundation.TypeValue(type=attr.zcl_type, value=attr.type(value))))
    schema = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Report_Attributes].schema
    return zcl_frame(tsn, foundation.GeneralCommand.Report_Attributes,
                     schema(attribute_reports=reports), to_client=True)
