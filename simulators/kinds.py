"""Built-in virtual device kinds, declared as data: signature, clusters, initial values, physics.

Attribute values are raw ZCL values (a temperature of 21.5 °C is 2150), keyed by zigpy's attribute
names, exactly as a real device holds them. ``declare`` makes a kind in one expression (a test's
device with exactly the clusters and values it needs); ``SimNetwork.create`` takes such a KindSpec
as it takes a built-in kind's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.profiles import zha
from zigpy.zcl import Cluster
from zigpy.zcl.clusters.general import (
    Basic,
    Groups,
    Identify,
    LevelControl,
    OnOff,
    Ota,
    PowerConfiguration,
    Scenes,
)
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.hvac import Thermostat, UserInterface
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import (
    OccupancySensing,
    RelativeHumidity,
    TemperatureMeasurement,
)
from zigpy.zcl.clusters.security import IasZone
from zigpy.zcl.clusters.smartenergy import Metering

from simulators.behaviours import BEHAVIOURS, Behaviour
from simulators.device import VirtualCluster, VirtualDevice, VirtualEndpoint

MAINS = zdo_t.NodeDescriptor.MACCapabilityFlags
_ROUTER_FLAGS = (MAINS.AllocateAddress | MAINS.RxOnWhenIdle | MAINS.MainsPowered
                 | MAINS.FullFunctionDevice)
_SLEEPY_FLAGS = MAINS.AllocateAddress


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A server cluster and its raw values. The cluster is a zigpy class, or an id for one zigpy
    does not define (a vendor's 0xFCxx); values are keyed by zigpy's attribute names, or by id
    (then a zigpy-typed value, e.g. ``t.uint8_t(3)``, so the device knows its ZCL type)."""

    cluster: type[Cluster] | int
    values: dict[str | int, Any] = field(default_factory=dict)

    @property
    def cluster_id(self) -> int:
        return self.cluster if isinstance(self.cluster, int) else int(self.cluster.cluster_id)

    def raw_values(self) -> dict[int, Any]:
        """The values by attribute id."""
        def attrid(key: str | int) -> int:
            if isinstance(key, int):
                return key
            if isinstance(self.cluster, int):
                raise ValueError(f"cluster 0x{self.cluster:04x} is unknown to zigpy: "
                                 f"name attribute {key!r} by its id")
            return int(self.cluster.attributes_by_name[key].id)

        return {attrid(key): value for key, value in self.values.items()}


@dataclass(frozen=True, kw_only=True)
class EndpointSpec:
    endpoint_id: int = 1
    device_type: int
    profile_id: int = zha.PROFILE_ID
    in_clusters: tuple[ClusterSpec, ...]
    out_clusters: tuple[type[Cluster] | int, ...] = (Ota,)


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    name: str
    description: str
    manufacturer: str
    model: str
    mains_powered: bool
    endpoints: tuple[EndpointSpec, ...]
    behaviour: str = "static"
    manufacturer_code: int = 0x1234


def _basic(kind_manufacturer: str, model: str, mains: bool) -> ClusterSpec:
    return ClusterSpec(cluster=Basic, values={
        "zcl_version": 8, "app_version": 1, "stack_version": 2, "hw_version": 1,
        "manufacturer": kind_manufacturer, "model": model, "date_code": "20261101",
        "power_source": Basic.PowerSource.Mains_single_phase if mains else Basic.PowerSource.Battery,
        "sw_build_id": "1.0.0",
    })


def _battery(percent: float, volts: float) -> ClusterSpec:
    return ClusterSpec(cluster=PowerConfiguration, values={
        "battery_percentage_remaining": round(percent * 2),  # ZCL: half-percent units
        "battery_voltage": round(volts * 10),
        "battery_quantity": 1, "battery_size": PowerConfiguration.BatterySize.Other,
    })


def _kind(name: str, description: str, manufacturer: str, model: str, mains: bool,
          device_type: int, clusters: tuple[ClusterSpec, ...], behaviour: str = "static"
          ) -> KindSpec:
    basic = _basic(manufacturer, model, mains)
    identify = ClusterSpec(cluster=Identify, values={"identify_time": 0})
    return KindSpec(
        name=name, description=description, manufacturer=manufacturer, model=model,
        mains_powered=mains, behaviour=behaviour,
        endpoints=(EndpointSpec(device_type=device_type,
                                in_clusters=(basic, identify, *clusters)),),
    )


def _thermostat(sequence: Any) -> dict[str, Any]:
    """A thermostat's attributes, heating (and cooling) as ``sequence`` says."""
    return {
        "local_temperature": 1850, "occupied_heating_setpoint": 2000,
        "occupied_cooling_setpoint": 2600, "system_mode": Thermostat.SystemMode.Heat,
        "running_state": Thermostat.RunningState.Idle, "ctrl_sequence_of_oper": sequence,
        "min_heat_setpoint_limit": 500, "max_heat_setpoint_limit": 3000,
        "abs_min_heat_setpoint_limit": 500, "abs_max_heat_setpoint_limit": 3000,
        "min_cool_setpoint_limit": 1600, "max_cool_setpoint_limit": 3200,
        "abs_min_cool_setpoint_limit": 1600, "abs_max_cool_setpoint_limit": 3200,
        "pi_heating_demand": 0,
    }


KINDS: dict[str, KindSpec] = {
    k.name: k
    for k in (
        _kind("thermostat", "heating thermostat; the room warms toward the setpoint",
              "Spoke Sim", "SIM-TRV-1", True, zha.DeviceType.THERMOSTAT, (
                  ClusterSpec(cluster=Thermostat, values=_thermostat(
                      Thermostat.ControlSequenceOfOperation.Heating_Only)),
                  ClusterSpec(cluster=UserInterface, values={"keypad_lockout": 0}),
              ), behaviour="thermostat"),
        _kind("heat_pump", "heating and cooling thermostat (a heat pump or air conditioner)",
              "Spoke Sim", "SIM-HP-1", True, zha.DeviceType.THERMOSTAT, (
                  ClusterSpec(cluster=Thermostat, values=_thermostat(
                      Thermostat.ControlSequenceOfOperation.Cooling_and_Heating)),
                  ClusterSpec(cluster=UserInterface, values={"keypad_lockout": 0}),
              ), behaviour="thermostat"),
        _kind("bulb", "dimmable colour-temperature bulb", "Spoke Sim", "SIM-BULB-CT", True,
              zha.DeviceType.COLOR_TEMPERATURE_LIGHT, (
                  ClusterSpec(cluster=Groups, values={"name_support": 0}),
                  ClusterSpec(cluster=Scenes, values={"count": 0}),
                  ClusterSpec(cluster=OnOff, values={"on_off": True}),
                  ClusterSpec(cluster=LevelControl, values={"current_level": 200,
                                                            "on_level": 254}),
                  ClusterSpec(cluster=Color, values={
                      "color_temperature": 370, "color_mode": Color.ColorMode.Color_temperature,
                      "color_capabilities": Color.ColorCapabilities.Color_temperature,
                      "color_temp_physical_min": 153, "color_temp_physical_max": 500,
                  }),
              )),
        _kind("climate", "temperature and humidity sensor on a coin cell", "Spoke Sim",
              "SIM-TH-1", False, zha.DeviceType.TEMPERATURE_SENSOR, (
                  _battery(87, 2.9),
                  ClusterSpec(cluster=TemperatureMeasurement, values={
                      "measured_value": 2150, "min_measured_value": -4000,
                      "max_measured_value": 12500}),
                  ClusterSpec(cluster=RelativeHumidity, values={
                      "measured_value": 4800, "min_measured_value": 0,
                      "max_measured_value": 10000}),
              ), behaviour="climate"),
        _kind("motion", "PIR motion sensor (Occupancy Sensing)", "Spoke Sim", "SIM-PIR-1", False,
              zha.DeviceType.OCCUPANCY_SENSOR, (
                  _battery(100, 3.0),
                  ClusterSpec(cluster=OccupancySensing, values={
                      "occupancy": 0,
                      "occupancy_sensor_type_bitmap": 0b001}),  # PIR
              ), behaviour="motion"),
        _kind("motion_ias", "PIR motion sensor (IAS Zone)", "Spoke Sim", "SIM-PIR-IAS", False,
              zha.DeviceType.IAS_ZONE, (
                  _battery(64, 2.8),
                  ClusterSpec(cluster=IasZone, values={
                      "zone_state": IasZone.ZoneState.Not_enrolled,
                      "zone_type": IasZone.ZoneType.Motion_Sensor, "zone_status": 0,
                      "cie_addr": t.EUI64.convert("00:00:00:00:00:00:00:00"), "zone_id": 0xFF}),
              ), behaviour="motion"),
        _kind("contact", "door/window contact sensor (IAS Zone)", "Spoke Sim", "SIM-DOOR-1", False,
              zha.DeviceType.IAS_ZONE, (
                  _battery(95, 3.0),
                  ClusterSpec(cluster=IasZone, values={
                      "zone_state": IasZone.ZoneState.Not_enrolled,
                      "zone_type": IasZone.ZoneType.Contact_Switch, "zone_status": 0,
                      "cie_addr": t.EUI64.convert("00:00:00:00:00:00:00:00"), "zone_id": 0xFF}),
              )),
        _kind("plug", "smart plug with power and energy metering", "Spoke Sim", "SIM-PLUG-1",
              True, zha.DeviceType.SMART_PLUG, (
                  ClusterSpec(cluster=OnOff, values={"on_off": True}),
                  ClusterSpec(cluster=ElectricalMeasurement, values={
                      "measurement_type": 0x0008, "active_power": 600,
                      "ac_power_multiplier": 1, "ac_power_divisor": 10,
                      "rms_voltage": 230, "ac_voltage_multiplier": 1, "ac_voltage_divisor": 1,
                      "rms_current": 260, "ac_current_multiplier": 1, "ac_current_divisor": 1000,
                  }),
                  ClusterSpec(cluster=Metering, values={
                      "current_summ_delivered": 123456, "unit_of_measure": 0, "multiplier": 1,
                      "divisor": 1000, "summation_formatting": 0b0_0100_011,
                      "metering_device_type": 0, "instantaneous_demand": 60,
                  }),
              ), behaviour="plug"),
    )
}

KINDS["loadgen"] = KindSpec(
    name="loadgen", description="load generator: a power meter whose reading steps every tick",
    manufacturer="Spoke Sim", model="SIM-LOADGEN", mains_powered=True, behaviour="ramp",
    endpoints=(EndpointSpec(device_type=zha.DeviceType.METER_INTERFACE, in_clusters=(
        _basic("Spoke Sim", "SIM-LOADGEN", True),
        ClusterSpec(cluster=ElectricalMeasurement, values={
            "measurement_type": 0x0008, "active_power": 0, "ac_power_multiplier": 1,
            "ac_power_divisor": 1}),
    )),),
)

# The set `spoke demo` and `spoke hub run --radio sim` start with.
DEFAULT_KINDS = ("thermostat", "bulb", "climate", "motion", "plug")


def node_descriptor(*, mains: bool, manufacturer_code: int) -> zdo_t.NodeDescriptor:
    return zdo_t.NodeDescriptor(
        logical_type=zdo_t.LogicalType.Router if mains else zdo_t.LogicalType.EndDevice,
        complex_descriptor_available=0, user_descriptor_available=0, reserved=0, aps_flags=0,
        frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
        mac_capability_flags=_ROUTER_FLAGS if mains else _SLEEPY_FLAGS,
        manufacturer_code=manufacturer_code, maximum_buffer_size=82,
        maximum_incoming_transfer_size=82, server_mask=0, maximum_outgoing_transfer_size=82,
        descriptor_capability_field=zdo_t.NodeDescriptor.DescriptorCapability.NONE,
    )


ServerCluster = type[Cluster] | int | ClusterSpec
ClientCluster = type[Cluster] | int


def declare(
    endpoints: Mapping[int, tuple[Iterable[ServerCluster], Iterable[ClientCluster]]],
    *,
    name: str = "declared",
    manufacturer: str = "Spoke Sim",
    model: str = "SIM-DECLARED",
    mains: bool = True,
    device_type: int = zha.DeviceType.ON_OFF_LIGHT,
    behaviour: str = "static",
) -> KindSpec:
    """A kind with exactly the given endpoints: {endpoint id: ([server clusters], [client
    clusters])}. A server cluster is a zigpy class or id (no values: every read of it answers
    UNSUPPORTED_ATTRIBUTE) or a ClusterSpec with raw values; a client cluster is a class or id.
    A Basic cluster answers the manufacturer and model. zigpy and the device handlers do not look
    at the device type."""
    def server(c: ServerCluster) -> ClusterSpec:
        return c if isinstance(c, ClusterSpec) else ClusterSpec(cluster=c)

    return KindSpec(
        name=name, description=f"declared: {manufacturer} {model}", manufacturer=manufacturer,
        model=model, mains_powered=mains, behaviour=behaviour,
        endpoints=tuple(
            EndpointSpec(endpoint_id=ep_id, device_type=device_type,
                         in_clusters=tuple(server(c) for c in servers),
                         out_clusters=tuple(clients))
            for ep_id, (servers, clients) in endpoints.items()
        ),
    )


def _client_values(cluster: ClientCluster) -> dict[int, Any]:
    if cluster is Ota:
        return {Ota.AttributeDefs.current_file_version.id: 0x01000000}
    return {}


def _server_values(spec: KindSpec, cs: ClusterSpec) -> dict[int, Any]:
    """A cluster's raw values; a Basic cluster also tells the kind's identity (zigpy's interview
    and the quirks ask it for manufacturer and model)."""
    values = cs.raw_values()
    if cs.cluster_id == Basic.cluster_id:
        identity = {Basic.AttributeDefs.manufacturer: spec.manufacturer,
                    Basic.AttributeDefs.model: spec.model,
                    Basic.AttributeDefs.power_source: Basic.PowerSource.Mains_single_phase
                    if spec.mains_powered else Basic.PowerSource.Battery}
        for attr, value in identity.items():
            values.setdefault(attr.id, value)
    return values


def _client_id(cluster: ClientCluster) -> int:
    return cluster if isinstance(cluster, int) else int(cluster.cluster_id)


def build(kind: str | KindSpec, *, ieee: t.EUI64, nwk: int) -> VirtualDevice:
    """Build a virtual device of a built-in kind (by name) or of a declared one."""
    spec = KINDS[kind] if isinstance(kind, str) else kind
    endpoints = {}
    for ep in spec.endpoints:
        clusters = {cs.cluster_id: VirtualCluster(cs.cluster_id, _server_values(spec, cs))
                    for cs in ep.in_clusters}
        endpoints[ep.endpoint_id] = VirtualEndpoint(
            endpoint_id=ep.endpoint_id, profile_id=ep.profile_id, device_type=ep.device_type,
            in_clusters=clusters,
            out_clusters={_client_id(c): VirtualCluster(_client_id(c), _client_values(c))
                          for c in ep.out_clusters})
    behaviour: Behaviour = BEHAVIOURS[spec.behaviour]()
    return VirtualDevice(
        ieee=ieee, nwk=nwk, kind=spec.name, source=f"kind:{spec.name}", behaviour=behaviour,
        node_desc=node_descriptor(mains=spec.mains_powered,
                                  manufacturer_code=spec.manufacturer_code),
        endpoints=endpoints, manufacturer_code=spec.manufacturer_code,
    )
