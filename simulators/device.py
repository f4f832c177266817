"""A virtual Zigbee device: answers ZDO and ZCL requests and sends attribute reports.

A VirtualDevice holds endpoints with server clusters and their raw attribute values. It knows the
Zigbee protocol only (through zigpy's types), never the hub or the cloud. Cluster commands are
carried out by the handlers in ``simulators.behaviours``; a device's physics (a thermostat warming
its room) lives in its behaviour's ``tick``. ``device.faults`` makes it misbehave on request (a
refused command or write, a failed bind), as real devices do.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import Cluster, foundation

from simulators import frames

LOGGER = logging.getLogger(__name__)

ZDO_ENDPOINT = 0
COORDINATOR_NWK = t.NWK(0x0000)
Status = foundation.Status


@dataclass(slots=True)
class Reporting:
    """An attribute's reporting configuration as set by Configure_Reporting."""

    min_interval: int
    max_interval: int
    reportable_change: float
    last_value: Any = None
    last_sent: float = 0.0
    pending: bool = False


class VirtualCluster:
    """A server cluster with raw attribute values, typed by zigpy's cluster definitions."""

    def __init__(
        self,
        cluster_id: int,
        values: dict[int, Any] | None = None,
        *,
        types: dict[int, int] | None = None,
        read_only: set[int] | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.cls: type[Cluster] | None = Cluster._registry.get(cluster_id)
        self.values: dict[int, Any] = dict(values or {})
        self.types: dict[int, int] = dict(types or {})  # ZCL type ids for attributes zigpy lacks
        self.read_only: set[int] = set(read_only or ())
        self.reporting: dict[int, Reporting] = {}
        self.bound = False

    def attr_def(self, attrid: int) -> foundation.ZCLAttributeDef | None:
        if self.cls is None:
            return None
        return self.cls.attributes.get(attrid)

    def attr_id(self, name: str) -> int:
        if self.cls is None:
            raise KeyError(name)
        return self.cls.attributes_by_name[name].id

    def zcl_type(self, attrid: int) -> int | None:
        if attrid in self.types:
            return self.types[attrid]
        attr = self.attr_def(attrid)
        if attr is not None:
            return int(attr.zcl_type)
        value = self.values.get(attrid)
        if value is None:
            return None
        try:
            return int(foundation.DataType.from_python_type(type(value)).type_id)
        except (KeyError, ValueError):
            return None

    def typed(self, attrid: int) -> foundation.TypeValue | None:
        zcl_type = self.zcl_type(attrid)
        value = self.values.get(attrid)
        if zcl_type is None or value is None:
            return None
        try:
            return frames.typed_value(zcl_type, value)
        except (ValueError, TypeError, OverflowError, KeyError):
            LOGGER.debug("cannot encode 0x%04x/0x%04x=%r", self.cluster_id, attrid, value)
            return None

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(self.attr_id(name), default)


@dataclass
class Faults:
    """Misbehaviour a virtual device shows on request, as real devices do; tests inject it and a
    device starts without any. (A device that does not answer at all is one the network cannot
    reach: ``SimNetwork.power_off``; a radio that fails to send is ``SimNetwork.fail_sends``.)

    An exchange is named by its cluster id and zigpy's name for the command: one of the cluster's
    own (``OnOff.ServerCommandDefs.on.name``) or a profile-wide one
    (``foundation.GeneralCommand.Write_Attributes.name``, ``Configure_Reporting``,
    ``Read_Attributes``).
    """

    # Answered with this status (for each attribute of a read, write or reporting configuration)
    # and not carried out.
    refuse: dict[tuple[int, str], foundation.Status] = field(default_factory=dict)
    # Acknowledged with SUCCESS but not carried out: a stuck relay, a write the firmware drops.
    ignore: set[tuple[int, str]] = field(default_factory=set)
    # Every ZDO Bind_req answered with this status, nothing bound.
    bind_status: zdo_t.Status | None = None

    def refused(self, cluster_id: int, command: str) -> foundation.Status | None:
        return self.refuse.get((cluster_id, command))

    def ignored(self, cluster_id: int, command: str) -> bool:
        return (cluster_id, command) in self.ignore

    def clear(self) -> None:
        self.refuse.clear()
        self.ignore.clear()
        self.bind_status = None


@dataclass
class VirtualEndpoint:
    endpoint_id: int
    profile_id: int
    device_type: int
    in_clusters: dict[int, VirtualCluster]
    # Client clusters can hold attributes too: zigpy reads the OTA client's current_file_version.
    out_clusters: dict[int, VirtualCluster] = field(default_factory=dict)
    # Clusters the device does not declare in its simple descriptor but reports from anyway (a
    # vendor's proprietary reports that a quirk turns into standard attributes).
    undeclared: dict[int, VirtualCluster] = field(default_factory=dict)
    # The Groups cluster's table (group id -> name) and the Scenes cluster's stored scenes
    # ((group id, scene id) -> attribute name -> value), kept like the device's NVRAM.
    groups: dict[int, str] = field(default_factory=dict)
    scenes: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def clusters(self) -> list[VirtualCluster]:
        return [*self.in_clusters.values(), *self.out_clusters.values(),
                *self.undeclared.values()]

    def simple_descriptor(self) -> zdo_t.SizePrefixedSimpleDescriptor:
        return zdo_t.SizePrefixedSimpleDescriptor(
            endpoint=self.endpoint_id,
            profile=self.profile_id,
            device_type=self.device_type,
            device_version=1,
            input_clusters=sorted(self.in_clusters),
            output_clusters=sorted(self.out_clusters),
        )


Sender = Callable[[t.ZigbeePacket], None]


class VirtualDevice:
    """One simulated node on the network."""

    def __init__(
        self,
        *,
        ieee: t.EUI64,
        nwk: int,
        node_desc: zdo_t.NodeDescriptor,
        endpoints: dict[int, VirtualEndpoint],
        kind: str,
        source: str | None = None,
        behaviour: Any = None,
        manufacturer_code: int | None = None,
    ) -> None:
        self.ieee = ieee
        self.nwk = t.NWK(nwk)
        self.node_desc = node_desc
        self.endpoints = endpoints
        self.kind = kind
        self.source = source  # where the definition came from (built-in kind or a file)
        self.behaviour = behaviour
        self.manufacturer_code = manufacturer_code
        self.joined = False
        self.powered = True
        self.faults = Faults()
        self.send: Sender | None = None  # set by the network when the device is on it
        self._tsn = 0
        self.animations: list[Animation] = []
        # Cluster commands carried out, by "cluster.command": tests count executions with it.
        self.command_counts: Counter[str] = Counter()
        self.on_command: Callable[[VirtualDevice, str], None] | None = None  # set by the network
        # Set when bindings or reporting change: a real device keeps those in its own NVRAM, so
        # the network persists them at once (they must survive a crash of the hub's process).
        self.config_changed = False
        # Simulated time in seconds. The network scales it (tests run devices 60x faster), so
        # reporting intervals, transitions and physics all speed up together.
        self.clock: Callable[[], float] = time.monotonic

    # ------------------------------------------------------------------ helpers
    @property
    def is_mains_powered(self) -> bool:
        return bool(self.node_desc.is_mains_powered)

    def next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) % 256
        return self._tsn

    def cluster(self, cluster_id: int, endpoint_id: int | None = None) -> VirtualCluster | None:
        for ep in self.endpoints.values():
            if endpoint_id is not None and ep.endpoint_id != endpoint_id:
                continue
            if cluster_id in ep.in_clusters:
                return ep.in_clusters[cluster_id]
        return None

    def endpoint_of(self, cluster: VirtualCluster) -> VirtualEndpoint:
        return next(ep for ep in self.endpoints.values()
                    if any(c is cluster for c in ep.clusters()))

    def _packet(self, *, src_ep: int, dst_ep: int, cluster_id: int, profile: int, tsn: int,
                data: bytes) -> t.ZigbeePacket:
        return t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=self.nwk),
            src_ep=src_ep,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=COORDINATOR_NWK),
            dst_ep=dst_ep,
            tsn=tsn,
            profile_id=profile,
            cluster_id=cluster_id,
            data=t.SerializableBytes(data),
            lqi=200,
            rssi=-55,
        )

    def _emit(self, packet: t.ZigbeePacket) -> None:
        if self.send is not None and self.powered and self.joined:
            self.send(packet)

    # ------------------------------------------------------------------ attribute state
    def set_attribute(self, endpoint_id: int, cluster_id: int, attr: int | str, value: Any,
                      *, now: float | None = None) -> None:
        """Change a value as the device's firmware would, and report it if configured to."""
        cluster = self.cluster(cluster_id, endpoint_id)
        if cluster is None:
            return
        attrid = cluster.attr_id(attr) if isinstance(attr, str) else attr
        old = cluster.values.get(attrid)
        cluster.values[attrid] = value
        if old != value:
            self._maybe_report(cluster, attrid, self.clock() if now is None else now)

    def _maybe_report(self, cluster: VirtualCluster, attrid: int, now: float) -> None:
        cfg = cluster.reporting.get(attrid)
        if cfg is None or cfg.max_interval == 0xFFFF:
            return
        value = cluster.values.get(attrid)
        if not _changed_enough(cfg.last_value, value, cfg.reportable_change):
            return
        if now - cfg.last_sent < cfg.min_interval:
            cfg.pending = True  # sent by tick() once the minimum interval has passed
            return
        self.report(cluster, [attrid], now=now)

    def report(self, cluster: VirtualCluster, attrids: list[int], *, now: float | None = None
               ) -> None:
        """Send a Report_Attributes frame for the given attributes."""
        now = self.clock() if now is None else now
        records = []
        for attrid in attrids:
            typed = cluster.typed(attrid)
            if typed is None:
                continue
            records.append(foundation.Attribute(attrid=attrid, value=typed))
            cfg = cluster.reporting.get(attrid)
            if cfg is not None:
                cfg.last_value, cfg.last_sent, cfg.pending = cluster.values.get(attrid), now, False
        if not records:
            return
        ep = self.endpoint_of(cluster)
        tsn = self.next_tsn()
        self._emit(self._packet(
            src_ep=ep.endpoint_id, dst_ep=1, cluster_id=cluster.cluster_id, profile=ep.profile_id,
            tsn=tsn, data=frames.report_frame(tsn, records, None),
        ))

    def send_cluster_command(self, endpoint_id: int, cluster_id: int, command_id: int,
                             **fields: Any) -> None:
        """Send a cluster-specific command to the coordinator (e.g. an IAS zone notification)."""
        ep = self.endpoints[endpoint_id]
        tsn = self.next_tsn()
        data = frames.cluster_command_frame(tsn, cluster_id, command_id, fields)
        self._emit(self._packet(src_ep=endpoint_id, dst_ep=1, cluster_id=cluster_id,
                                profile=ep.profile_id, tsn=tsn, data=data))

    def send_client_command(self, endpoint_id: int, cluster_id: int, command_id: int,
                            **fields: Any) -> None:
        """Send a command from one of our client clusters, as a remote or a sensor switching
        lights does (e.g. On/Off "on" to the coordinator it is bound to)."""
        ep = self.endpoints[endpoint_id]
        tsn = self.next_tsn()
        data = frames.client_command_frame(tsn, cluster_id, command_id, fields)
        self._emit(self._packet(src_ep=endpoint_id, dst_ep=1, cluster_id=cluster_id,
                                profile=ep.profile_id, tsn=tsn, data=data))

    def tick(self, now: float, dt: float) -> None:
        """Advance time: animations, the behaviour's physics, due and periodic reports."""
        for anim in list(self.animations):
            if anim.step(self, now):
                self.animations.remove(anim)
        if self.behaviour is not None:
            self.behaviour.tick(self, dt, now)
        for ep in self.endpoints.values():
            for cluster in ep.in_clusters.values():
                due = [
                    attrid for attrid, cfg in cluster.reporting.items()
                    if cfg.max_interval != 0xFFFF and (
                        (cfg.pending and now - cfg.last_sent >= cfg.min_interval)
                        or (cfg.max_interval > 0 and now - cfg.last_sent >= cfg.max_interval)
                    )
                ]
                if due:
                    self.report(cluster, due, now=now)

    # ------------------------------------------------------------------ receiving
    def handle(self, packet: t.ZigbeePacket) -> list[t.ZigbeePacket]:
        """Process a frame addressed to this device; return the frames it answers with."""
        if not self.powered:
            return []
        if packet.dst_ep == ZDO_ENDPOINT:
            return self._handle_zdo(packet)
        ep = self.endpoints.get(packet.dst_ep)
        if ep is None:
            return []
        data = packet.data.serialize()
        try:
            hdr, rest = foundation.ZCLHeader.deserialize(data)
        except ValueError:
            LOGGER.debug("%s: undecodable ZCL frame %r", self.ieee, data)
            return []
        to_client = hdr.frame_control.direction == foundation.Direction.Server_to_Client
        cluster = (ep.out_clusters if to_client else ep.in_clusters).get(packet.cluster_id)
        reply = self._handle_zcl(ep, cluster, packet.cluster_id, hdr, rest)
        if reply is None:
            return []
        return [self._packet(src_ep=ep.endpoint_id, dst_ep=packet.src_ep,
                             cluster_id=packet.cluster_id, profile=packet.profile_id,
                             tsn=hdr.tsn, data=reply)]

    def handle_group(self, packet: t.ZigbeePacket) -> None:
        """A group-addressed (multicast) frame: every endpoint in the group carries it out; nobody
        answers a multicast."""
        if not self.powered:
            return
        data = packet.data.serialize()
        try:
            hdr, rest = foundation.ZCLHeader.deserialize(data)
        except ValueError:
            return
        if hdr.frame_control.direction == foundation.Direction.Server_to_Client:
            return
        for ep in self.endpoints.values():
            if int(packet.dst.address) in ep.groups and packet.cluster_id in ep.in_clusters:  # type: ignore[arg-type]
                self._handle_zcl(ep, ep.in_clusters[packet.cluster_id], packet.cluster_id, hdr,
                                 rest)

    def _handle_zcl(self, ep: VirtualEndpoint, cluster: VirtualCluster | None, cluster_id: int,
                    hdr: foundation.ZCLHeader, rest: bytes) -> bytes | None:
        wants_default = not hdr.frame_control.disable_default_response
        if cluster is None:
            return frames.default_response(hdr, Status.UNSUPPORTED_CLUSTER)
        if hdr.frame_control.is_general:
            from simulators import general  # the profile-wide commands (read, write, reporting)

            return general.handle(self, cluster, hdr, rest)
        if hdr.frame_control.direction == foundation.Direction.Server_to_Client:
            # A command to one of our client clusters (e.g. OTA Image Notify): acknowledge it.
            return frames.default_response(hdr, Status.SUCCESS) if wants_default else None
        from simulators import behaviours

        status, reply = behaviours.run_cluster_command(self, ep, cluster, hdr, rest)
        if reply is not None:
            return reply
        if wants_default or status != Status.SUCCESS:
            return frames.default_response(hdr, status)
        return None

    def _handle_zdo(self, packet: t.ZigbeePacket) -> list[t.ZigbeePacket]:
        cmd = packet.cluster_id
        try:
            tsn, args = frames.zdo_parse(cmd, packet.data.serialize())
        except (KeyError, ValueError):
            return []
        answer = self._zdo_answer(zdo_t.ZDOCmd(cmd) if cmd in zdo_t.ZDOCmd.__members__.values()
                                  else cmd, args)
        if answer is None:
            return []
        rsp_cmd, fields = answer
        return [self._packet(src_ep=0, dst_ep=0, cluster_id=rsp_cmd, profile=0, tsn=tsn,
                             data=frames.zdo_frame(rsp_cmd, tsn, *fields))]

    def _zdo_answer(self, cmd: int, args: list[Any]) -> tuple[zdo_t.ZDOCmd, list[Any]] | None:
        z = zdo_t.ZDOCmd
        ok = zdo_t.Status.SUCCESS
        if cmd == z.Node_Desc_req:
            return z.Node_Desc_rsp, [ok, self.nwk, self.node_desc]
        if cmd == z.Active_EP_req:
            return z.Active_EP_rsp, [ok, self.nwk, sorted(self.endpoints)]
        if cmd == z.Simple_Desc_req:
            ep = self.endpoints.get(args[1])
            if ep is None:
                return z.Simple_Desc_rsp, [zdo_t.Status.NOT_ACTIVE, self.nwk, None]
            return z.Simple_Desc_rsp, [ok, self.nwk, ep.simple_descriptor()]
        if cmd == z.Bind_req and self.faults.bind_status is not None:
            return z.Bind_rsp, [self.faults.bind_status]
        if cmd in (z.Bind_req, z.Unbind_req):
            src_ep, cluster_id = args[1], args[2]
            ep = self.endpoints.get(src_ep)
            cluster = None if ep is None else (
                ep.in_clusters.get(cluster_id) or ep.out_clusters.get(cluster_id))
            if cluster is not None:
                cluster.bound = cmd == z.Bind_req
                self.config_changed = True
            rsp = z.Bind_rsp if cmd == z.Bind_req else z.Unbind_rsp
            return rsp, [ok if cluster is not None else zdo_t.Status.NO_ENTRY]
        if cmd == z.Mgmt_Leave_req:
            self.joined = False  # the network notices and drops us
            return z.Mgmt_Leave_rsp, [ok]
        if cmd == z.IEEE_addr_req:
            return z.IEEE_addr_rsp, [ok, self.ieee, self.nwk, 0, 0, []]
        if cmd == z.NWK_addr_req:
            return z.NWK_addr_rsp, [ok, self.ieee, self.nwk, 0, 0, []]
        if cmd == z.Mgmt_Lqi_req:
            return z.Mgmt_Lqi_rsp, [ok, zdo_t.Neighbors(Entries=0, StartIndex=0, NeighborTableList=[])]
        if cmd == z.Mgmt_Rtg_req:
            return z.Mgmt_Rtg_rsp, [ok, zdo_t.Routes(Entries=0, StartIndex=0, RoutingTableList=[])]
        if cmd == z.Mgmt_Permit_Joining_req:
            return None  # broadcast: routers do not answer the coordinator
        rsp = cmd | 0x8000
        if rsp in zdo_t.CLUSTERS and zdo_t.CLUSTERS[rsp][1][:1] == (zdo_t.Status,):
            return zdo_t.ZDOCmd(rsp), [zdo_t.Status.NOT_SUPPORTED] + [None] * (
                len(zdo_t.CLUSTERS[rsp][1]) - 1)
        return None


class Animation:
    """A value moving linearly to a target over a duration (a ZCL transition time)."""

    def __init__(self, endpoint_id: int, cluster_id: int, attrid: int, start: float,
                 target: float, t0: float, duration: float) -> None:
        self.endpoint_id, self.cluster_id, self.attrid = endpoint_id, cluster_id, attrid
        self.start, self.target, self.t0, self.duration = start, target, t0, duration

    def step(self, device: VirtualDevice, now: float) -> bool:
        frac = 1.0 if self.duration <= 0 else min(1.0, (now - self.t0) / self.duration)
        value = round(self.start + (self.target - self.start) * frac)
        device.set_attribute(self.endpoint_id, self.cluster_id, self.attrid, value, now=now)
        return frac >= 1.0


def _changed_enough(old: Any, new: Any, change: float) -> bool:
    if old is None:
        return True
    if isinstance(new, bool) or not isinstance(new, int | float) or not isinstance(old, int | float):
        return bool(old != new)
    return abs(new - old) >= max(change, 1e-9) if change else old != new
