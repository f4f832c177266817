"""Compare what Spoke derives from a virtual device with the entities ZHA derived from the real one.

Each diagnostics file lists ZHA's entities (``zha_lib_entities``) with their states: in the older
formats as ``info_object`` (what the entity is, with its cluster handlers) and ``state``, in the
newest as one flat object (``native_value``, ``is_on``, ... beside the platform, device class and
``unique_id``, which names the endpoint and cluster: ``IEEE-ENDPOINT-CLUSTER[-suffix]``). The entities
compared are those of the platforms that carry device state (sensor, binary_sensor, light, switch,
cover, lock, fan, siren) and have no ``entity_category`` (configuration and diagnostic entities are
out), Battery excepted. An entity matches when a Spoke reading on the same endpoint and one of
the entity's clusters agrees with ZHA's state:

- numbers within ZHA's ``decimals``, to the precision ZHA's state shows: half a unit of its last
  decimal (ZHA shows a battery of raw 169 half-percent as 84, rounded half to even, although its
  ``decimals`` is 1; Spoke's 84.5 agrees with it);
- booleans equal (a binary sensor's state, a lock's ``is_locked``, a switch's state);
- a light: ``on`` equal to the On/Off reading and, when ZHA knows a brightness (0-254), the level
  reading (0-100 %) within half a percent of it;
- a cover or fan: its position/percentage within 1 % (ZHA truncates a level of 0-255 to a whole
  percent, Spoke rounds a level of 0-254 to a tenth).

Where several readings come from one cluster (voltage, current and power from Electrical
Measurement), those whose capability ZHA's device class names are compared; tamper flags are never
taken for the zone's alarm.

What ZHA shows without having a value from the device is compared as unknown, and unknown agrees
only with no reading: a null state, and a binary sensor that is off while the attribute it shows
has no recorded value (ZHA shows off until it hears otherwise). The on/off of a light ZHA marks
unavailable is not compared either: Home Assistant shows such a light as unavailable, and ZHA's
``on`` is then not the device's (every unavailable light of the corpus is off in ZHA, also the
seven whose On/Off attribute is recorded as on). Such a light must still have its On/Off reading,
and its brightness, which ZHA took from the attribute cache, is compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLATFORMS = ("sensor", "binary_sensor", "light", "switch", "cover", "lock", "fan", "siren")
KEPT_CATEGORIZED = frozenset({"Battery"})  # diagnostic entities that are compared anyway
LEVEL_TOLERANCE = 0.5  # percent: brightness 0-254 vs level 0-100 % rounded to 0.1

# ZHA device class → Spoke capabilities that carry the same quantity.
DEVICE_CLASS_CAPABILITIES: dict[str, frozenset[str]] = {
    k: frozenset(v) for k, v in {
        "battery": {"battery"},
        "temperature": {"temperature", "device_temperature"},
        "humidity": {"humidity", "soil_moisture", "leaf_wetness"},
        "moisture": {"water_leak", "soil_moisture"},
        "illuminance": {"illuminance"},
        "pressure": {"pressure"},
        "power": {"power"},
        "energy": {"energy"},
        "voltage": {"voltage", "battery_voltage"},
        "current": {"current"},
        "frequency": {"frequency"},
        "power_factor": {"power_factor"},
        "apparent_power": {"apparent_power"},
        "pm25": {"pm25"},
        "volatile_organic_compounds_parts": {"voc"},
        "volatile_organic_compounds": {"voc"},
        "carbon_dioxide": {"co2"},
        "carbon_monoxide": {"co", "alarm"},
        "volume_flow_rate": {"flow"},
        "opening": {"contact"},
        "door": {"contact"},
        "window": {"contact"},
        "garage_door": {"contact"},
        "motion": {"occupancy"},
        "occupancy": {"occupancy"},
        "presence": {"occupancy"},
        "smoke": {"smoke"},
        "gas": {"alarm"},  # ZHA's class for an IAS carbon monoxide zone; Spoke's generic alarm
        "sound": {"alarm"},
        "vibration": {"vibration"},
        "moving": {"acceleration"},
        "safety": {"alarm"},
        "tamper": {"tamper"},
    }.items()
}
SECONDARY = frozenset({"tamper"})  # flags that never stand for a zone's main alarm
# What a cluster means whatever ZHA's device class says: a sensor's On/Off commands are its
# "opening" or "motion" in ZHA, and the state of the On/Off (client) cluster in Spoke.
CLUSTER_CAPABILITIES: dict[int, frozenset[str]] = {0x0006: frozenset({"switch"})}
POSITION_TOLERANCE = 1.0  # percent: ZHA truncates level * 100 / 255, Spoke rounds level / 254
# Sensors whose state is a word: which Spoke field carries it, and ZHA's words in Spoke's.
TEXT_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    # ZHA's HVAC action: "off" follows the system mode, the others the running state.
    "ThermostatHVACAction": {"off": ("thermostat", "mode"), "": ("thermostat", "running_state")},
    "SinopeHVACAction": {"off": ("thermostat", "mode"), "": ("thermostat", "running_state")},
}
TEXT_SYNONYMS = {"heating": "heat", "preheating": "heat", "cooling": "cool", "drying": "dry"}
# A flat entity's state under the older name ``state`` (the platforms not listed keep their own
# names: a light's on/brightness, a cover's current_position, a lock's is_locked ...).
FLAT_STATE = ("native_value", "is_on")
# The clusters of a flat entity whose unique_id names none (a light's is ``IEEE-ENDPOINT``):
# those of the platform's that its endpoint has.
PLATFORM_CLUSTERS: dict[str, tuple[int, ...]] = {
    "light": (0x0006, 0x0008, 0x0300), "switch": (0x0006,), "cover": (0x0102,),
    "lock": (0x0101,), "fan": (0x0202,), "siren": (0x0502,),
}


@dataclass(frozen=True, kw_only=True)
class Expected:
    """One ZHA entity as Spoke should see it."""

    platform: str
    class_name: str
    device_class: str | None
    endpoint: int
    clusters: frozenset[int]
    state: Mapping[str, Any]
    decimals: int | None
    recorded: bool = True  # the attribute the entity shows has a value in cluster_details

    @property
    def label(self) -> str:
        kind = self.device_class or self.class_name
        clusters = ",".join(f"0x{c:04x}" for c in sorted(self.clusters))
        return f"{self.platform}/{kind}@{self.endpoint}:{clusters}"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    expected: Expected
    matched: bool
    detail: str = ""


_ATTR_NAME = re.compile(r"name='(\w+)'")


def _recorded(diag: Mapping[str, Any], info: Mapping[str, Any],
              flat: tuple[int, frozenset[int]] | None = None) -> bool:
    """Whether the attribute an entity shows has a value in the file's cluster_details (True
    when the file cannot say). ``flat``: a flat entity's endpoint and clusters (it names no
    cluster handler; its cluster is on either side)."""
    name = info.get("attribute_name") or info.get("attribute")
    handlers = info.get("cluster_handlers") or []
    sides: tuple[str, ...]
    if flat is not None and len(flat[1]) == 1:
        endpoint, cluster_id, sides = flat[0], next(iter(flat[1])), ("in_clusters", "out_clusters")
    elif handlers:
        handler = handlers[0]
        endpoint, cluster_id = handler.get("endpoint_id"), int(handler["cluster"]["id"])
        client = handler.get("cluster", {}).get("type") == "client"
        sides = ("out_clusters",) if client else ("in_clusters",)
    else:
        return True
    if not name:
        return True
    details = (diag.get("cluster_details") or {}).get(str(endpoint), {})
    clusters = [(details.get(side) or {}).get(f"0x{cluster_id:04x}") for side in sides]
    cluster = next((c for c in clusters if c is not None), None)
    if cluster is None:
        return True
    for record in (cluster.get("attributes") or {}).values():
        found = record.get("attribute_name")
        if found is None:
            match = _ATTR_NAME.search(str(record.get("attribute", "")))
            found = match.group(1) if match else None
        if found == name:
            return record.get("value") is not None
    return False


def _flat_parts(diag: Mapping[str, Any], platform: str, entity: Mapping[str, Any]
                ) -> tuple[int, frozenset[int], dict[str, Any]]:
    """(endpoint, clusters, state) of a flat entity."""
    state = dict(entity)
    for key in FLAT_STATE:
        if key in entity:
            state.setdefault("state", entity[key])
            break
    endpoint = entity.get("endpoint_id")
    clusters: set[int] = set()
    unique_id = str(entity.get("unique_id") or "")
    ieee = str(entity.get("device_ieee") or diag.get("ieee") or "")
    parts = unique_id[len(ieee):].lstrip("-").split("-") if unique_id.startswith(ieee) else []
    if parts and parts[0].isdigit():
        endpoint = int(parts[0]) if endpoint is None else endpoint
        if len(parts) > 1 and parts[1].isdigit():
            clusters.add(int(parts[1]))
    if not clusters and endpoint is not None:
        signature = ((diag.get("signature") or {}).get("endpoints") or {}).get(str(endpoint)) or {}
        present = {int(c, 16) if isinstance(c, str) else int(c)
                   for c in signature.get("input_clusters", ())}
        clusters = {c for c in PLATFORM_CLUSTERS.get(platform, ()) if c in present}
    return int(endpoint or 0), frozenset(clusters), state


def zha_entities(diag: Mapping[str, Any]) -> list[Expected]:
    """The ZHA entities a diagnostics file lists that the comparison covers (either shape)."""
    found = []
    for platform in PLATFORMS:
        for entity in (diag.get("zha_lib_entities") or {}).get(platform, []):
            if not isinstance(entity, Mapping):
                continue
            flat = not isinstance(entity.get("info_object"), Mapping)
            info = entity if flat else entity["info_object"]
            if info.get("entity_category") and info.get("class_name") not in KEPT_CATEGORIZED:
                continue
            if flat:
                endpoint, clusters, state = _flat_parts(diag, platform, entity)
                recorded = _recorded(diag, info, (endpoint, clusters))
            else:
                handlers = info.get("cluster_handlers") or []
                endpoint_id = info.get("endpoint_id")
                if endpoint_id is None and handlers:
                    endpoint_id = handlers[0].get("endpoint_id")
                endpoint = int(endpoint_id or 0)
                clusters = frozenset(int(h["cluster"]["id"]) for h in handlers if "cluster" in h)
                state = entity.get("state") or {}
                recorded = _recorded(diag, info)
            decimals = info.get("decimals", info.get("suggested_display_precision"))
            found.append(Expected(
                platform=platform, class_name=str(info.get("class_name")),
                device_class=info.get("device_class"), endpoint=endpoint, clusters=clusters,
                state=state, decimals=decimals, recorded=recorded,
            ))
    return found


def _on_cluster(e: Expected, readings: Iterable[Mapping[str, Any]], *, kind: type | tuple[type, ...]
                ) -> list[Mapping[str, Any]]:
    """Readings of the entity's endpoint and clusters whose value is of ``kind``; narrowed to the
    capabilities ZHA's device class names when some are there, tamper flags left out."""
    found = [r for r in readings
             if r["endpoint"] == e.endpoint and r["cluster"] in e.clusters
             and isinstance(r["value"], kind) and r["capability"] not in SECONDARY]
    if kind is bool:
        found = [r for r in found if isinstance(r["value"], bool)]
    else:
        found = [r for r in found if not isinstance(r["value"], bool)]
    wanted = DEVICE_CLASS_CAPABILITIES.get(e.device_class or "")
    if not wanted:
        return found
    for cluster in e.clusters:
        wanted |= CLUSTER_CAPABILITIES.get(cluster, frozenset())
    return [r for r in found if r["capability"] in wanted]


def _shown(readings: list[Mapping[str, Any]]) -> str:
    return ", ".join(f"{r['capability']}.{r['attribute']}={r['value']}" for r in readings) or "none"


def _shown_decimals(value: Any) -> int:
    """How many decimals a JSON number shows (84 → 0, 20.2 → 1, 22.568 → 3)."""
    if isinstance(value, int):
        return 0
    text = repr(float(value))
    return len(text.split(".")[1]) if "." in text and "e" not in text else 6


def _number(e: Expected, zha: Any, readings: list[Mapping[str, Any]], decimals: int | None,
            tolerance: float | None = None) -> Outcome:
    if zha is None:
        return Outcome(expected=e, matched=not readings,
                       detail="" if not readings else f"zha=null spoke={_shown(readings)}")
    if tolerance is None:
        shown = min(2 if decimals is None else decimals, _shown_decimals(zha))
        tolerance = 0.5 * 10.0 ** -shown
    tolerance += 1e-9
    ok = any(abs(float(r["value"]) - float(zha)) <= tolerance for r in readings)
    return Outcome(expected=e, matched=ok, detail="" if ok else f"zha={zha} spoke={_shown(readings)}")


def _boolean(e: Expected, zha: Any, readings: list[Mapping[str, Any]]) -> Outcome:
    if zha is None:
        return Outcome(expected=e, matched=not readings,
                       detail="" if not readings else f"zha=null spoke={_shown(readings)}")
    ok = any(r["value"] == bool(zha) for r in readings)
    return Outcome(expected=e, matched=ok,
                   detail="" if ok else f"zha={bool(zha)} spoke={_shown(readings)}")


def _light(e: Expected, readings: list[Mapping[str, Any]]) -> Outcome:
    on = e.state.get("on") if e.state.get("available", True) is not False else None
    switch = [r for r in _on_cluster(e, readings, kind=bool) if r["capability"] == "switch"]
    problems = []
    if on is None and not switch:  # not comparable, but Spoke must have derived the light
        problems.append("on: no On/Off reading")
    if on is not None and not any(r["value"] == bool(on) for r in switch):
        problems.append(f"on: zha={on} spoke={_shown(switch)}")
    brightness = e.state.get("brightness")
    if brightness is not None and 8 in e.clusters:
        level = [r for r in _on_cluster(e, readings, kind=(int, float))
                 if r["capability"] == "level"]
        percent = min(float(brightness), 254.0) * 100 / 254
        if not any(abs(float(r["value"]) - percent) <= LEVEL_TOLERANCE for r in level):
            problems.append(f"brightness: zha={brightness} ({percent:.1f} %) spoke={_shown(level)}")
    return Outcome(expected=e, matched=not problems, detail="; ".join(problems))


def _text(e: Expected, zha: str, readings: list[Mapping[str, Any]]) -> Outcome:
    fields = TEXT_FIELDS.get(e.class_name, {})
    where = fields.get(zha, fields.get(""))
    found = [r for r in readings
             if r["endpoint"] == e.endpoint and r["cluster"] in e.clusters
             and isinstance(r["value"], str)
             and (where is None or (r["capability"], r["attribute"]) == where)]
    ok = any(r["value"] in (zha, TEXT_SYNONYMS.get(zha)) for r in found)
    return Outcome(expected=e, matched=ok, detail="" if ok else f"zha={zha} spoke={_shown(found)}")


def compare(e: Expected, readings: list[Mapping[str, Any]]) -> Outcome:
    """Does one ZHA entity agree with the readings Spoke derived? (Never raises: a state this
    comparison does not understand is a miss that says so.)"""
    try:
        return _compare(e, readings)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return Outcome(expected=e, matched=False, detail=f"not comparable: {exc}")


def _compare(e: Expected, readings: list[Mapping[str, Any]]) -> Outcome:
    state = e.state
    if e.platform == "light":
        return _light(e, readings)
    if e.platform in ("binary_sensor", "switch", "siren"):
        value = state.get("state")
        if e.platform == "binary_sensor" and value is False and not e.recorded:
            value = None  # ZHA's "off" before it has heard from the device
        return _boolean(e, value, _on_cluster(e, readings, kind=bool))
    if e.platform == "lock":
        return _boolean(e, state.get("is_locked"), _on_cluster(e, readings, kind=bool))
    numbers = _on_cluster(e, readings, kind=(int, float))
    if e.platform == "cover":
        return _number(e, state.get("current_position"), numbers, 0, POSITION_TOLERANCE)
    if e.platform == "fan":
        return _number(e, state.get("percentage"), numbers, 0, POSITION_TOLERANCE)
    value = state.get("state")
    if isinstance(value, str):
        return _text(e, value, readings)
    if isinstance(value, bool):
        return _boolean(e, value, _on_cluster(e, readings, kind=bool))
    return _number(e, value, numbers, e.decimals)


def _unknown(e: Expected) -> bool:
    if e.platform == "light":
        return e.state.get("available", True) is False
    if e.platform == "binary_sensor" and e.state.get("state") is False and not e.recorded:
        return True
    key = {"cover": "current_position", "fan": "percentage", "lock": "is_locked"}.get(
        e.platform, "state")
    return e.state.get(key) is None


@dataclass
class DeviceResult:
    name: str
    outcomes: list[Outcome]
    error: str | None = None

    @property
    def matched(self) -> int:
        return sum(o.matched for o in self.outcomes)


def check(diag: Mapping[str, Any], inspect_line: Mapping[str, Any], name: str) -> DeviceResult:
    """Compare one file's ZHA entities with one inspect line (the JSON that inspect prints)."""
    readings = list(inspect_line.get("readings") or [])
    outcomes = [compare(e, readings) for e in zha_entities(diag)]
    return DeviceResult(name=name, outcomes=outcomes, error=inspect_line.get("error"))


def load_diagnostics(path: Path) -> dict[str, Any]:
    """The file in either format, its device part in the older shape (DiagnosticsError, a
    ValueError naming what is missing, when it is no ZHA device diagnostics)."""
    from simulators.diagnostics_format import read

    return read(path)


def check_file(path: Path, inspect_line: Mapping[str, Any]) -> DeviceResult:
    """``check`` for one file; a file that cannot be read is a device with that error."""
    from simulators.diagnostics_format import DiagnosticsError

    try:
        return check(load_diagnostics(path), inspect_line, path.name)
    except DiagnosticsError as exc:  # the message names the file and what it lacks
        error = str(exc)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # entities in neither shape
        error = f"{path}: unreadable zha_lib_entities: {type(exc).__name__}: {exc}"
    return DeviceResult(name=path.name, outcomes=[], error=inspect_line.get("error") or error)


def table(results: list[DeviceResult]) -> list[str]:
    """A row per device (matched/total and what missed), then ``conformance: N/M (P%)``."""
    rows = []
    width = max((len(r.name) for r in results), default=10)
    for r in results:
        misses = [f"{o.expected.label} ({o.detail})" for o in r.outcomes if not o.matched]
        note = "; ".join(([f"ERROR {r.error}"] if r.error else []) + misses)
        rows.append(f"{r.name:<{width}}  {r.matched:>2}/{len(r.outcomes):<2}  {note}".rstrip())
    matched = sum(r.matched for r in results)
    total = sum(len(r.outcomes) for r in results)
    unknown = sum(_unknown(o.expected) for r in results for o in r.outcomes)
    percent = 100.0 * matched / total if total else 100.0
    rows.append(f"ZHA states not observed from the device (compared as unknown): {unknown}")
    rows.append(f"conformance: {matched}/{total} ({percent:.1f}%)")
    return rows
