"""Virtual devices built from Home Assistant ZHA diagnostics files ("file:PATH" sources).

A diagnostics file records one real device: its node descriptor, its endpoints with their
clusters, manufacturer and model, and the attribute values ZHA had read. Both the older format
(``signature``/``cluster_details``) and the newer ones (``node_descriptor``/``endpoints``, whose
attributes carry their ZCL type or ``unsupported``) are read, into the older shape, by
``simulators.diagnostics_format``.
The virtual device presents the signature the device itself has on the air (for a quirked device,
the quirk's ``original_signature``: the quirk rewrites the device after the interview, exactly as
it did in ZHA), answers Read Attributes from the recorded values (UNSUPPORTED_ATTRIBUTE for the
others), and replays the recorded values as attribute reports (see ``ReplayBehaviour``).

Nothing here knows the hub: the file is read by the simulator only, as the device's memory.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.profiles import zha
from zigpy.zcl import Cluster, foundation
from zigpy.zcl.clusters.general import Basic, OnOff

from simulators import unquirk
from simulators.behaviours import Behaviour
from simulators.device import VirtualCluster, VirtualDevice, VirtualEndpoint
from simulators.diagnostics_format import DiagnosticsError, read
from simulators.kinds import node_descriptor
from simulators.network import SOURCE_BUILDERS

LOGGER = logging.getLogger(__name__)

SCHEME = "file"
# ZHA's stand-ins for a device that never told its manufacturer or model.
_PLACEHOLDERS = frozenset({"unk_manufacturer", "unk_model", ""})
_TYPE_IN_DEF = re.compile(r"type=<(?:class|enum|flag) '([\w.]+)'>")
DataTypeId = foundation.DataTypeId


@dataclass(frozen=True, kw_only=True)
class EndpointSignature:
    endpoint_id: int
    profile_id: int
    device_type: int
    in_clusters: tuple[int, ...]
    out_clusters: tuple[int, ...]


def load(path: str | Path) -> dict[str, Any]:
    """The diagnostics of one device, in the older shape whatever the file's format."""
    return read(path)


def _int(value: Any) -> int:
    return int(value, 0) if isinstance(value, str) else int(value)


def _endpoint_signature(ep_id: int, sig: dict[str, Any], fallback: dict[str, Any]
                        ) -> EndpointSignature:
    def pick(key: str, default: int) -> int:
        for source in (sig, fallback):
            if source.get(key) is not None:
                return _int(source[key])
        return default

    return EndpointSignature(
        endpoint_id=ep_id,
        profile_id=pick("profile_id", zha.PROFILE_ID),
        device_type=pick("device_type", 0),
        in_clusters=tuple(_int(c) for c in sig.get("input_clusters", ())),
        out_clusters=tuple(_int(c) for c in sig.get("output_clusters", ())),
    )


def air_signature(diag: dict[str, Any]) -> dict[int, EndpointSignature]:
    """The endpoints the device announces itself. ZHA's ``signature`` is the device after its
    quirk; ``original_signature`` (the quirk's match) is what the device really sends."""
    current = {_int(k): v for k, v in diag["signature"].get("endpoints", {}).items()}
    original = diag.get("original_signature") or {}
    chosen = current
    if diag.get("quirk_applied") and isinstance(original.get("endpoints"), dict):
        chosen = {_int(k): v for k, v in original["endpoints"].items()}
    return {ep: _endpoint_signature(ep, sig, current.get(ep, {})) for ep, sig in chosen.items()
            if ep != 0}


def _node_descriptor(diag: dict[str, Any]) -> zdo_t.NodeDescriptor:
    raw = diag["signature"].get("node_descriptor")
    if isinstance(raw, dict):
        try:
            return zdo_t.NodeDescriptor(**{f.name: f.type(_int(raw[f.name]))
                                           for f in zdo_t.NodeDescriptor.fields})
        except (KeyError, TypeError, ValueError):
            LOGGER.debug("unusable node descriptor %r", raw)
    mains = "mains" in str(diag.get("power_source", "")).lower()
    return node_descriptor(mains=mains, manufacturer_code=_int(diag.get("manufacturer_code") or 0))


# --- attribute values ---------------------------------------------------------------------------

def _type_from_definition(text: str) -> int | None:
    """The ZCL type of a quirk's attribute from ZHA's repr of its definition, when it names a
    zigpy type (``type=<class 'zigpy.types.basic.uint16_t'>``)."""
    match = _TYPE_IN_DEF.search(text)
    if match is None or not match.group(1).startswith("zigpy."):
        return None
    module, _, name = match.group(1).rpartition(".")
    try:
        python_type = getattr(importlib.import_module(module), name)
        return int(foundation.DataType.from_python_type(python_type).type_id)
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        return None


def _type_from_value(value: Any) -> int | None:
    """A plausible ZCL type for a value of an attribute nobody defines."""
    if isinstance(value, bool):
        return int(DataTypeId.bool_)
    if isinstance(value, int):
        if value < 0:
            return int(DataTypeId.int16 if value >= -0x8000 else DataTypeId.int32)
        for bound, type_id in ((0xFF, DataTypeId.uint8), (0xFFFF, DataTypeId.uint16),
                               (0xFFFFFFFF, DataTypeId.uint32)):
            if value <= bound:
                return int(type_id)
        return int(DataTypeId.uint64)
    if isinstance(value, float):
        return int(DataTypeId.single)
    if isinstance(value, str):
        return int(DataTypeId.string)
    return None


def _type_from_name(name: Any) -> int | None:
    """The ZCL type the newer format names (``"uint16"``, ``"bool"``, ``"map8"``)."""
    if not isinstance(name, str):
        return None
    members = DataTypeId.__members__
    found = members.get(name) or members.get(f"{name}_")
    return None if found is None else int(found)


def _coerce(type_id: int, value: Any) -> Any:
    """The recorded (JSON) value as the Python value of its ZCL type; None if it cannot be."""
    python_type = foundation.DataType.from_type_id(DataTypeId(type_id)).python_type
    if isinstance(value, float) and issubclass(python_type, int):
        if math.isnan(value) or math.isinf(value):
            return None
        value = round(value)
    try:
        if python_type is t.EUI64 and isinstance(value, str):
            return t.EUI64.convert(value)
        if issubclass(python_type, bytes) and isinstance(value, str):
            return python_type(value.encode())
        typed = python_type(value)
        typed.serialize()  # out of range for the type → not representable
        return typed
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError):
        return None


def recorded_cluster(cluster_id: int, details: dict[str, Any] | None) -> VirtualCluster:
    """A VirtualCluster holding the values ZHA recorded for one cluster (nulls left out)."""
    cls: type[Cluster] | None = Cluster._registry.get(cluster_id)
    values: dict[int, Any] = {}
    types: dict[int, int] = {}
    for key, record in ((details or {}).get("attributes") or {}).items():
        if not isinstance(record, dict) or record.get("value") is None:
            continue
        attrid = _int(key)
        value = record["value"]
        known = cls.attributes.get(attrid) if cls is not None else None
        type_id = (int(known.zcl_type) if known is not None
                   else _type_from_name(record.get("zcl_type"))
                   or _type_from_definition(str(record.get("attribute", "")))
                   or _type_from_value(value))
        if type_id is None:
            continue
        typed = _coerce(type_id, value)
        if typed is None:  # e.g. a quirk's 400 in a uint8: the device cannot send it
            LOGGER.debug("0x%04x/0x%04x: cannot represent %r", cluster_id, attrid, value)
            continue
        values[attrid] = typed
        if known is None or int(known.zcl_type) != type_id:
            types[attrid] = type_id
    return VirtualCluster(cluster_id, values, types=types)


# --- the device ----------------------------------------------------------------------------------

def _details(diag: dict[str, Any], ep_id: int) -> dict[str, Any]:
    details = diag.get("cluster_details") or {}
    return details.get(str(ep_id)) or details.get(ep_id) or {}


def _by_id(clusters: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {_int(k): v for k, v in (clusters or {}).items()}


def _endpoint(diag: dict[str, Any], sig: EndpointSignature) -> VirtualEndpoint:
    details = _details(diag, sig.endpoint_id)
    recorded_in = _by_id(details.get("in_clusters", {}))
    recorded_out = _by_id(details.get("out_clusters", {}))

    def values(cluster_id: int, mine: dict[int, Any], other: dict[int, Any], other_side: tuple[int, ...]
               ) -> VirtualCluster:
        # A quirk may move a cluster to the other side (Xiaomi's On/Off server becomes a client):
        # its values were recorded there.
        details = mine.get(cluster_id)
        if details is None and cluster_id not in other_side:
            details = other.get(cluster_id)
        return recorded_cluster(cluster_id, details)

    return VirtualEndpoint(
        endpoint_id=sig.endpoint_id, profile_id=sig.profile_id, device_type=sig.device_type,
        in_clusters={c: values(c, recorded_in, recorded_out, sig.out_clusters)
                     for c in sig.in_clusters},
        out_clusters={c: values(c, recorded_out, recorded_in, sig.in_clusters)
                      for c in sig.out_clusters},
        # What the quirk made of the device's proprietary reports, on clusters it does not
        # declare: the device "reports" those values in the standard form.
        undeclared={c: recorded_cluster(c, d) for c, d in recorded_in.items()
                    if c not in sig.in_clusters},
    )


def _name(diag: dict[str, Any], key: str) -> str | None:
    value = diag.get(key)
    return value if isinstance(value, str) and value not in _PLACEHOLDERS else None


def _ensure_identity(diag: dict[str, Any], endpoints: dict[int, VirtualEndpoint]) -> None:
    """Basic must answer manufacturer and model (zigpy's interview and the quirks need them)."""
    basics = [ep.in_clusters[Basic.cluster_id] for ep in endpoints.values()
              if Basic.cluster_id in ep.in_clusters]
    if not basics:
        return
    for attr, key in ((Basic.AttributeDefs.manufacturer, "manufacturer"),
                      (Basic.AttributeDefs.model, "model")):
        name = _name(diag, key)
        if name is not None and all(b.values.get(attr.id) is None for b in basics):
            basics[0].values[attr.id] = attr.type(name)


def build(ref: str, *, ieee: t.EUI64, nwk: int) -> VirtualDevice:
    """A virtual device impersonating the device recorded in the diagnostics file ``ref``."""
    diag = load(ref)
    try:
        signatures = air_signature(diag)
        endpoints = {ep: _endpoint(diag, sig) for ep, sig in sorted(signatures.items())}
        _ensure_identity(diag, endpoints)
        node_desc = _node_descriptor(diag)
    except DiagnosticsError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a hand-edited file
        raise DiagnosticsError(f"{ref}: malformed ZHA diagnostics: {type(exc).__name__}: {exc}"
                               ) from exc
    if not signatures:
        raise DiagnosticsError(f"{ref}: the device has no endpoints")
    unquirk.device_values(diag, endpoints, node_desc)  # ZHA recorded them after the quirk
    return VirtualDevice(
        ieee=ieee, nwk=nwk, node_desc=node_desc, endpoints=endpoints, kind=Path(ref).stem,
        source=f"{SCHEME}:{ref}", behaviour=ReplayBehaviour(),
        manufacturer_code=int(node_desc.manufacturer_code),
    )


def recorded_identity(ref: str | Path) -> tuple[t.EUI64 | None, int | None]:
    """The IEEE address and NWK the recorded device had (None when the file lacks them)."""
    diag = load(ref)
    try:
        ieee = t.EUI64.convert(diag["ieee"])
    except (KeyError, TypeError, ValueError):
        ieee = None
    nwk = diag.get("nwk")
    return ieee, (_int(nwk) if isinstance(nwk, int | str) else None)


# --- behaviour -------------------------------------------------------------------------------------

class ReplayBehaviour(Behaviour):
    """A recorded device tells its state the way sleepy devices do: it reports its recorded values
    once the coordinator has configured it (a bind or a reporting configuration), then again every
    ``heartbeat`` seconds (Xiaomi devices report about hourly). A client On/Off cluster with a
    recorded state sends the matching command, as a sensor that switches lights does."""

    name = "replay"
    heartbeat = 3000.0

    def __init__(self) -> None:
        super().__init__()
        self.last_replay: float | None = None

    def tick(self, device: VirtualDevice, dt: float, now: float) -> None:
        if self.last_replay is None:
            configured = any(c.bound or c.reporting for ep in device.endpoints.values()
                             for c in ep.clusters())
            if configured:
                self.replay(device, now)
        elif now - self.last_replay >= self.heartbeat:
            self.replay(device, now)

    def wake(self, device: VirtualDevice) -> None:
        self.replay(device)

    def replay(self, device: VirtualDevice, now: float | None = None) -> None:
        """Report every recorded attribute value (Basic excepted) to the coordinator."""
        self.last_replay = device.clock() if now is None else now
        for ep in device.endpoints.values():
            for cluster in (*ep.in_clusters.values(), *ep.undeclared.values()):
                if cluster.cluster_id == Basic.cluster_id or not cluster.values:
                    continue
                device.report(cluster, sorted(cluster.values), now=now)
            onoff = ep.out_clusters.get(OnOff.cluster_id)
            if onoff is not None and onoff.values.get(OnOff.AttributeDefs.on_off.id) is not None:
                on = bool(onoff.values[OnOff.AttributeDefs.on_off.id])
                command = OnOff.ServerCommandDefs.on if on else OnOff.ServerCommandDefs.off
                device.send_client_command(ep.endpoint_id, OnOff.cluster_id, command.id)


SOURCE_BUILDERS[SCHEME] = build
