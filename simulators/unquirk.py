"""What a quirked device sent, recovered from what ZHA recorded after the device's quirk.

A diagnostics file records zigpy's attribute cache, and for a device with a zha-quirk that cache
holds values *after* the quirk's clusters converted them: IKEA's old firmware has its battery
percentage doubled, a Xiaomi illuminance cluster stores 10000·log10(lux) + 1 for the lux the
device sends, a Tuya sensor's humidity is multiplied by ten. A virtual device answering with the
recorded values would have them converted a second time by the same quirk on the hub.

So for each recorded value on a cluster the recorded quirk converts (its class overrides
``_update_attribute``), the simulator asks that quirk, on an offline copy of the device, which
raw value it turns into the recorded one (a bisection over the attribute's integer range: the
conversions are monotonic) and sends that. zha-quirks is used as a library here, the quirk named
by the file; nothing of the hub is involved.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import logging
import math
from collections.abc import Callable
from typing import Any

import zigpy.config as conf
import zigpy.device
import zigpy.endpoint
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import Cluster

from simulators.device import VirtualCluster, VirtualEndpoint

LOGGER = logging.getLogger(__name__)

_V2 = "zigpy.quirks.v2.CustomDeviceV2"  # a v2 quirk: the file does not say which one
_OFFLINE_IEEE = t.EUI64.convert("02:00:00:00:00:00:00:01")
_app: Any = None


def _offline_app() -> Any:
    """A zigpy application that is never started (the offline device sends nothing: its requests
    fail at once with a DeliveryError, which a quirk's background read drops quietly)."""
    global _app
    if _app is None:
        from simulators.radio import SimControllerApplication

        _app = SimControllerApplication({
            conf.CONF_DEVICE: {conf.CONF_DEVICE_PATH: "sim://offline"},
            conf.CONF_DATABASE: None,
            conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
        })
    return _app


def quirk_class(name: str | None) -> type | None:
    """The v1 quirk class ZHA's diagnostics name (``quirk_class``: ``module.Class``, or
    ``module:Class`` in the newer format), if zha-quirks has it."""
    if not name or name == _V2 or not name.startswith("zhaquirks."):
        return None
    module, colon, cls_name = name.partition(":")
    if not colon:
        module, _, cls_name = name.rpartition(".")
    if not cls_name.isidentifier():  # a v2 quirk's label, "(Candeo / C-ZB-LC20-Dim)"
        return None
    try:
        return getattr(importlib.import_module(module), cls_name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        LOGGER.debug("quirk %s is not in this zha-quirks", name)
        return None


def _offline_device(quirk: type, endpoints: dict[int, VirtualEndpoint], manufacturer: str | None,
                    model: str | None, node_desc: zdo_t.NodeDescriptor) -> zigpy.device.Device:
    app = _offline_app()
    raw = zigpy.device.Device(app, _OFFLINE_IEEE, t.NWK(0x0001))
    raw.node_desc = node_desc
    raw.manufacturer, raw.model = manufacturer, model
    for ep_id, vep in endpoints.items():
        ep = raw.add_endpoint(ep_id)
        ep.profile_id = vep.profile_id
        ep.device_type = vep.device_type  # type: ignore[assignment]  # any profile's type id
        ep.status = zigpy.endpoint.Status.ZDO_INIT
        for cluster_id in vep.in_clusters:
            ep.add_input_cluster(cluster_id)
        for cluster_id in vep.out_clusters:
            ep.add_output_cluster(cluster_id)
    device = quirk(app, raw.ieee, raw.nwk, raw)
    device.request = _offline_request  # a quirk reading on update gets an answer at once
    return device  # type: ignore[no-any-return]


async def _offline_request(*args: Any, **kwargs: Any) -> Any:
    raise zigpy.exceptions.DeliveryError("offline copy of the device: no radio")


def _clusters(device: zigpy.device.Device, ep_id: int, cluster_id: int) -> list[Cluster]:
    ep = device.endpoints.get(ep_id)
    if ep is None or ep_id == 0:
        return []
    return [c for c in (ep.in_clusters.get(cluster_id), ep.out_clusters.get(cluster_id)) if c]


def _pairs(endpoints: dict[int, VirtualEndpoint], device: zigpy.device.Device
           ) -> list[tuple[VirtualCluster, Cluster]]:
    """(recorded cluster, the quirk's cluster of the same endpoint and id)."""
    found = []
    for ep_id, vep in endpoints.items():
        for vcluster in vep.clusters():
            for cluster in _clusters(device, ep_id, vcluster.cluster_id):
                found.append((vcluster, cluster))
    return found


def _prime(cluster: Cluster, values: dict[int, Any]) -> None:
    """The quirk's cache holds the recorded values (a conversion may look at other attributes,
    e.g. IKEA's at the firmware version in Basic)."""
    for attrid, value in values.items():
        with contextlib.suppress(Exception):
            attr = cluster.attributes.get(attrid)
            if attr is not None:
                cluster._attr_cache.set_value(attr, value)
            else:
                cluster._attr_cache.set_legacy_value(attrid, value)


def _converts(cluster: Cluster) -> bool:
    return type(cluster)._update_attribute is not Cluster._update_attribute


def _integer_range(python_type: type) -> tuple[int, int] | None:
    if not issubclass(python_type, int) or issubclass(python_type, enum.Enum | bool):
        return None
    lo, hi = getattr(python_type, "min_value", None), getattr(python_type, "max_value", None)
    return (int(lo), int(hi)) if lo is not None and hi is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _close(a: float | None, b: float) -> bool:
    """f(raw) gives the recorded value: exactly, or, for a whole number (the simulator holds a
    recorded float such as 13803.11 for an integer attribute as 13803), to within rounding."""
    if a is None:
        return False
    slack = 0.5 if float(b).is_integer() else 0.0
    return abs(a - b) <= slack + 1e-6 * max(1.0, abs(b))


def _bracket(f: Callable[[int], float | None], target: float, lo: int, hi: int
             ) -> tuple[int, int, bool] | None:
    """A range [lo, top] whose ends' f values enclose the target. The top of the type's range
    may be an "invalid" value a quirk maps to 0, so tops are tried halving from ``hi``."""
    while lo < hi and f(lo) is None:  # e.g. log10(0)
        lo += 1
    f_lo = f(lo)
    top = hi
    while f_lo is not None and top > lo:
        f_top = f(top)
        if f_top is not None and f_top != f_lo and (
                min(f_lo, f_top) - 1e-9 <= target <= max(f_lo, f_top) + 1e-9):
            return lo, top, f_top > f_lo
        top = lo + (top - lo) // 2
    return None


def _invert(f: Callable[[int], float | None], target: float, lo: int, hi: int) -> int | None:
    """The integer r in [lo, hi] with f(r) == target, for a monotonic f (None if there is none)."""
    bracket = _bracket(f, target, lo, hi)
    if bracket is None:
        return None
    lo, hi, rising = bracket
    a, b = lo, hi  # smallest r whose f(r) is at or past the target
    while a < b:
        mid = (a + b) // 2
        value = f(mid)
        if value is None:
            return None
        if (value >= target) if rising else (value <= target):
            b = mid
        else:
            a = mid + 1
    found = [(abs(value - target), r) for r in (a, a - 1)
             if lo <= r <= hi and _close(value := f(r), target) and value is not None]
    return min(found)[1] if found else None


def _raw_value(cluster: Cluster, attrid: int, recorded: Any) -> int | None:
    """The raw value the quirk's cluster stores as ``recorded`` (None: no conversion found)."""
    attr = cluster.attributes.get(attrid)
    target = _number(recorded)
    if attr is None or target is None or (span := _integer_range(attr.type)) is None:
        return None

    def f(raw: int) -> float | None:
        try:
            cluster._update_attribute(attrid, attr.type(raw))
            return _number(cluster.get(attrid))
        except Exception:  # a conversion that fails for this input (log of 0, ...)
            return None

    if float(target).is_integer() and span[0] <= target <= span[1] and f(int(target)) == target:
        return None  # the quirk keeps this value as it is
    raw = _invert(f, target, *span)
    if raw is not None and math.isfinite(target):
        return raw
    return None


def device_values(diag: dict[str, Any], endpoints: dict[int, VirtualEndpoint],
                  node_desc: zdo_t.NodeDescriptor) -> int:
    """Replace, in place, recorded values that the recorded quirk converted by the raw values
    the device sent. Returns how many values changed."""
    if not diag.get("quirk_applied"):
        return 0
    quirk = quirk_class(diag.get("quirk_class"))
    if quirk is None:
        return 0
    try:
        device = _offline_device(quirk, endpoints, diag.get("manufacturer"), diag.get("model"),
                                 node_desc)
    except Exception as exc:  # the quirk does not fit this signature: keep the recorded values
        LOGGER.debug("cannot rebuild %s offline: %s", diag.get("quirk_class"), exc)
        return 0
    pairs = _pairs(endpoints, device)
    recorded_values = {id(vcluster): dict(vcluster.values) for vcluster, _ in pairs}
    for vcluster, cluster in pairs:
        _prime(cluster, recorded_values[id(vcluster)])
    changed = 0
    for vcluster, cluster in pairs:
        if not _converts(cluster):
            continue
        for attrid, recorded in recorded_values[id(vcluster)].items():
            raw = _raw_value(cluster, attrid, recorded)
            _prime(cluster, recorded_values[id(vcluster)])  # undo what the probing left
            if raw is None:
                continue
            attr = cluster.attributes[attrid]
            LOGGER.debug("0x%04x/0x%04x: recorded %r is %r from the device", vcluster.cluster_id,
                         attrid, recorded, raw)
            vcluster.values[attrid] = attr.type(raw)
            vcluster.types[attrid] = int(attr.zcl_type)
            changed += 1
    return changed
