"""The formats of Home Assistant's ZHA device diagnostics, read into one shape.

Three generations of the file are in use:

- older: ``signature`` (node descriptor, endpoints with their cluster id lists, manufacturer,
  model) and ``cluster_details`` (per endpoint and side, attribute id → the repr of ZHA's
  attribute definition and the value); entities as ``{"info_object": ..., "state": ...}``.
- newer (written by the zha library itself, ``"version": 1``, 2): ``node_descriptor`` (logical
  type by name) and ``endpoints`` (profile, device type ``{name, id}``, input and output clusters
  as lists, each attribute with ``id``, ``name``, ``zcl_type`` and its ``value`` or
  ``"unsupported": true``); entities still with ``info_object``/``state``.
- newest (``"version": 3``): the same device part; each entity one flat object (what it is and
  its state side by side: ``native_value``, ``is_on``, ``brightness`` ...), no cluster handlers.

``read`` returns the file's own keys plus ``signature`` and ``cluster_details`` in the older
shape (the newer attribute records keep ``zcl_type``, ``attribute_name`` and ``unsupported``),
so everything downstream reads one shape. The entities are read by ``spoke.conformance``, which
tells the two entity shapes apart by ``info_object``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

OLDER, NEWER = "signature", "endpoints"  # the format, by the key that carries the device
# zigpy's LogicalType by the name the newer format writes.
_LOGICAL_TYPES = {"Coordinator": 0, "Router": 1, "EndDevice": 2}


class DiagnosticsError(ValueError):
    """The file is not a ZHA device diagnostics file the simulator can impersonate."""


def read(path: str | Path) -> dict[str, Any]:
    """The diagnostics of one device in either format, with ``signature`` and
    ``cluster_details`` in the older shape (HA's download wraps them in {"data": ...})."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiagnosticsError(f"{path}: cannot read ZHA diagnostics: {exc}") from exc
    if (isinstance(data, dict) and OLDER not in data and NEWER not in data
            and isinstance(data.get("data"), dict)):
        data = data["data"]
    if not isinstance(data, dict):
        raise DiagnosticsError(f"{path}: not a ZHA device diagnostics file (not a JSON object)")
    return normalize(data, str(path))


def detect(diag: Mapping[str, Any]) -> str | None:
    """OLDER, NEWER, or None when the file carries no device in either format."""
    if isinstance(diag.get(OLDER), dict):
        return OLDER
    if isinstance(diag.get(NEWER), dict):
        return NEWER
    return None


def normalize(diag: dict[str, Any], where: str = "diagnostics") -> dict[str, Any]:
    """``diag`` itself (older format) or a copy with ``signature``/``cluster_details`` built
    from ``node_descriptor``/``endpoints`` (newer formats)."""
    found = detect(diag)
    if found == OLDER:
        return diag
    if found is None:
        raise DiagnosticsError(
            f"{where}: not a ZHA device diagnostics file: it has neither `signature` (the older "
            "format) nor `endpoints` with `node_descriptor` (the newer formats)")
    try:
        endpoints, details = _endpoints(diag[NEWER])
    except _Malformed as exc:
        raise DiagnosticsError(f"{where}: malformed ZHA diagnostics: {exc}") from None
    signature: dict[str, Any] = {"endpoints": endpoints, "manufacturer": diag.get("manufacturer"),
                                 "model": diag.get("model")}
    node_desc = _node_descriptor(diag.get("node_descriptor"))
    if node_desc is not None:
        signature["node_descriptor"] = node_desc
    return {**diag, OLDER: signature, "cluster_details": details}


class _Malformed(Exception):
    """Where the newer format's device part is not what it should be."""


def _hex(value: Any, where: str) -> str:
    """An id as the older format writes it ("0x0104")."""
    try:
        number = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise _Malformed(f"{where} is not a number: {value!r}") from None
    if isinstance(value, bool) or number < 0:
        raise _Malformed(f"{where} is not an id: {value!r}")
    return f"0x{number:04x}"


def _node_descriptor(raw: Any) -> dict[str, Any] | None:
    """The node descriptor with the numbers zigpy's NodeDescriptor takes (None if absent; a
    descriptor that still does not fit is replaced later from the power source)."""
    if not isinstance(raw, dict):
        return None
    out = dict(raw)
    logical = out.get("logical_type")
    if isinstance(logical, str) and logical in _LOGICAL_TYPES:
        out["logical_type"] = _LOGICAL_TYPES[logical]
    return {k: int(v) if isinstance(v, bool) else v for k, v in out.items()}


def _device_type(raw: Any, where: str) -> str | None:
    if isinstance(raw, dict):
        raw = raw.get("id")
    return None if raw is None else _hex(raw, where)


def _endpoints(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(signature endpoints, cluster_details) from the newer ``endpoints``."""
    endpoints: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for ep_key, ep in raw.items():
        where = f"endpoints.{ep_key}"
        ep_id = str(int(_hex(ep_key, where), 16))
        if not isinstance(ep, dict):
            raise _Malformed(f"{where} is not an object")
        sides: dict[str, dict[str, Any]] = {}
        ids: dict[str, list[str]] = {}
        for side in ("in_clusters", "out_clusters"):
            clusters = ep.get(side, [])
            if not isinstance(clusters, list):
                raise _Malformed(f"{where}.{side} is not a list")
            sides[side], ids[side] = {}, []
            for i, cluster in enumerate(clusters):
                cwhere = f"{where}.{side}[{i}]"
                if not isinstance(cluster, dict) or "cluster_id" not in cluster:
                    raise _Malformed(f"{cwhere} has no cluster_id")
                cluster_id = _hex(cluster["cluster_id"], f"{cwhere}.cluster_id")
                ids[side].append(cluster_id)
                sides[side][cluster_id] = {
                    "endpoint_attribute": cluster.get("endpoint_attribute"),
                    "attributes": _attributes(cluster.get("attributes") or [], cwhere),
                }
        endpoints[ep_id] = {
            "profile_id": (None if ep.get("profile_id") is None
                           else _hex(ep["profile_id"], f"{where}.profile_id")),
            "device_type": _device_type(ep.get("device_type"), f"{where}.device_type"),
            "input_clusters": ids["in_clusters"],
            "output_clusters": ids["out_clusters"],
        }
        details[ep_id] = sides
    return endpoints, details


def _attributes(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, list):
        raise _Malformed(f"{where}.attributes is not a list")
    found: dict[str, Any] = {}
    for i, attr in enumerate(raw):
        awhere = f"{where}.attributes[{i}]"
        if not isinstance(attr, dict) or "id" not in attr:
            raise _Malformed(f"{awhere} has no id")
        unsupported = bool(attr.get("unsupported"))
        found[_hex(attr["id"], f"{awhere}.id")] = {
            "attribute_name": attr.get("name"),
            "zcl_type": attr.get("zcl_type"),
            "value": None if unsupported else attr.get("value"),
            "unsupported": unsupported,
        }
    return found
