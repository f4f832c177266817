"""Compare what Spoke derives from a virtual device with the entities ZHA derived from the real one.

Each diagnostics file lists ZHA's entities (``zha_lib_entities``) with their states. The entities
compared are those of the platforms that carry device state (sensor, binary_sensor, light, switch,
cover, lock, fan, siren) and have no ``entity_category`` (configuration and diagnostic entities are
out), Battery excepted. An entity matches when a Spoke reading on the same endpoint and one of
the entity's clusters agrees with ZHA's state:

- numbers within ZHA's ``decimals`` (one unit of the last decimal ZHA shows);
- booleans equal (a binary sensor's state, a lock's ``is_locked``, a switch's state);
- a light: ``on`` equal to the On/Off reading and, when ZHA knows a brightness (0-254), the level
  reading (0-100 %) within half a percent of it;
- a cover or fan: its position/percentage as a number (0 decimals).

Where several readings come from one cluster (voltage, current and power from Electrical
Measurement), the one whose capability ZHA's device class names is compared; tamper flags are never
taken for the zone's alarm. A ZHA state of null (ZHA had no value either) agrees with no reading.
"""

from __future__ import annotations

import json
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
        "humidity": {"humidity", "soil_moisture"},
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
        "carbon_monoxide": {"carbon_monoxide"},
        "opening": {"contact"},
        "door": {"contact"},
        "window": {"contact"},
        "garage_door": {"contact"},
        "motion": {"occupancy"},
        "occupancy": {"occupancy"},
        "presence": {"occupancy"},
        "smoke": {"smoke"},
        "gas": {"gas"},
        "vibration": {"vibration"},
        "moving": {"acceleration"},
        "safety": {"alarm"},
        "tamper": {"tamper"},
    }.items()
}
SECONDARY = frozenset({"tamper"})  # flags that never stand for a zone's main alarm


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


def zha_entities(diag: Mapping[str, Any]) -> list[Expected]:
    """The ZHA entities a diagnostics file lists that the comparison covers."""
    found = []
    for platform in PLATFORMS:
        for entity in (diag.get("zha_lib_entities") or {}).get(platform, []):
            info = entity.get("info_object", {})
            if info.get("entity_category") and info.get("class_name") not in KEPT_CATEGORIZED:
                continue
            handlers = info.get("cluster_handlers") or []
            endpoint = info.get("endpoint_id")
            if endpoint is None and handlers:
                endpoint = handlers[0].get("endpoint_id")
            found.append(Expected(
                platform=platform, class_name=str(info.get("class_name")),
                device_class=info.get("device_class"), endpoint=int(endpoint or 0),
                clusters=frozenset(int(h["cluster"]["id"]) for h in handlers if "cluster" in h),
                state=entity.get("state") or {}, decimals=info.get("decimals"),
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
    if wanted and any(r["capability"] in wanted for r in found):
        found = [r for r in found if r["capability"] in wanted]
    return found


def _shown(readings: list[Mapping[str, Any]]) -> str:
    return ", ".join(f"{r['capability']}.{r['attribute']}={r['value']}" for r in readings) or "none"


def _number(e: Expected, zha: Any, readings: list[Mapping[str, Any]], decimals: int | None
            ) -> Outcome:
    if zha is None:
        return Outcome(expected=e, matched=not readings,
                       detail="" if not readings else f"zha=null spoke={_shown(readings)}")
    tolerance = 10.0 ** -(decimals if decimals is not None else 2) + 1e-9
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
    on = e.state.get("on")
    switch = [r for r in _on_cluster(e, readings, kind=bool) if r["capability"] == "switch"]
    problems = []
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


def compare(e: Expected, readings: list[Mapping[str, Any]]) -> Outcome:
    """Does one ZHA entity agree with the readings Spoke derived?"""
    state = e.state
    if e.platform == "light":
        return _light(e, readings)
    if e.platform in ("binary_sensor", "switch", "siren"):
        return _boolean(e, state.get("state"), _on_cluster(e, readings, kind=bool))
    if e.platform == "lock":
        return _boolean(e, state.get("is_locked"), _on_cluster(e, readings, kind=bool))
    numbers = _on_cluster(e, readings, kind=(int, float))
    if e.platform == "cover":
        return _number(e, state.get("current_position"), numbers, 0)
    if e.platform == "fan":
        return _number(e, state.get("percentage"), numbers, 0)
    return _number(e, state.get("state"), numbers, e.decimals)


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
    data = json.loads(path.read_text())
    return data["data"] if "signature" not in data and isinstance(data.get("data"), dict) else data


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
    unknown = sum(o.expected.state.get("state", 0) is None for r in results for o in r.outcomes
                  if o.expected.platform not in ("light", "cover", "fan", "lock"))
    percent = 100.0 * matched / total if total else 100.0
    rows.append(f"entities ZHA had no state for (compared as unknown): {unknown}")
    rows.append(f"conformance: {matched}/{total} ({percent:.1f}%)")
    return rows
