"""The comparison of Spoke's readings with ZHA's entity states (spoke.conformance), on hand-made
entities: what agrees, what does not, and what ZHA shows without having it from the device."""

from __future__ import annotations

from typing import Any

from spoke.conformance import check, table


def entity(platform: str, class_name: str, state: dict[str, Any], *, cluster: int,
           endpoint: int = 1, device_class: str | None = None, decimals: int | None = 1,
           attribute: str | None = None, side: str = "server") -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform, "class_name": class_name, "device_class": device_class,
        "entity_category": None, "endpoint_id": endpoint, "decimals": decimals,
        "cluster_handlers": [{"endpoint_id": endpoint,
                              "cluster": {"id": cluster, "type": side}}],
    }
    if attribute is not None:
        info["attribute_name" if platform == "binary_sensor" else "attribute"] = attribute
    return {"info_object": info, "state": {"class_name": class_name, "available": True, **state}}


def reading(capability: str, attribute: str, value: Any, *, cluster: int, endpoint: int = 1
            ) -> dict[str, Any]:
    return {"endpoint": endpoint, "cluster": cluster, "capability": capability,
            "attribute": attribute, "value": value, "unit": None}


def outcomes(entities: dict[str, list[dict[str, Any]]], readings: list[dict[str, Any]],
             details: dict[str, Any] | None = None) -> list[bool]:
    diag = {"zha_lib_entities": entities, "cluster_details": details or {}}
    return [o.matched for o in check(diag, {"readings": readings}, "dev").outcomes]


def test_numbers_agree_to_the_precision_zha_shows() -> None:
    battery = entity("sensor", "Battery", {"state": 84}, cluster=1, device_class="battery")
    temperature = entity("sensor", "Temperature", {"state": 20.2}, cluster=0x0402,
                         device_class="temperature")
    ents = {"sensor": [battery, temperature]}
    assert outcomes(ents, [reading("battery", "battery", 84.5, cluster=1),
                           reading("temperature", "temperature", 20.17, cluster=0x0402)]) == [
        True, True]
    assert outcomes(ents, [reading("battery", "battery", 85.5, cluster=1),
                           reading("temperature", "temperature", 20.26, cluster=0x0402)]) == [
        False, False]


def test_the_device_class_picks_the_reading_of_a_shared_cluster() -> None:
    voltage = entity("sensor", "ElectricalMeasurementRMSVoltage", {"state": 0}, cluster=0x0B04,
                     device_class="voltage")
    readings = [reading("power", "power", 0.0, cluster=0x0B04),
                reading("voltage", "voltage", 230.0, cluster=0x0B04)]
    assert outcomes({"sensor": [voltage]}, readings) == [False]


def test_tamper_never_stands_for_the_zone() -> None:
    zone = entity("binary_sensor", "IASZone", {"state": False}, cluster=0x0500,
                  device_class=None, attribute="zone_status")
    assert outcomes({"binary_sensor": [zone]},
                    [reading("tamper", "tampered", False, cluster=0x0500)]) == [False]
    assert outcomes({"binary_sensor": [zone]},
                    [reading("alarm", "active", False, cluster=0x0500)]) == [True]


def test_what_zha_never_heard_agrees_only_with_nothing() -> None:
    unknown = entity("sensor", "ElectricalMeasurementRMSCurrent", {"state": None},
                     cluster=0x0B04, device_class="current")
    assert outcomes({"sensor": [unknown]}, []) == [True]
    assert outcomes({"sensor": [unknown]}, [reading("current", "current", 0.1, cluster=0x0B04)]
                    ) == [False]
    # A binary sensor shows off until it hears from the device: not recorded → unknown.
    opening = entity("binary_sensor", "Opening", {"state": False}, cluster=6, side="client",
                     device_class="opening", attribute="on_off")
    details = {"1": {"out_clusters": {"0x0006": {"attributes": {
        "0x0000": {"attribute_name": "on_off", "value": None}}}}}}
    assert outcomes({"binary_sensor": [opening]}, [], details) == [True]
    details["1"]["out_clusters"]["0x0006"]["attributes"]["0x0000"]["value"] = 0
    assert outcomes({"binary_sensor": [opening]}, [], details) == [False]
    assert outcomes({"binary_sensor": [opening]},
                    [reading("switch", "on", False, cluster=6)], details) == [True]


def test_lights_compare_on_off_and_brightness() -> None:
    light = entity("light", "Light", {"on": True, "brightness": 127}, cluster=6)
    light["info_object"]["cluster_handlers"].append({"endpoint_id": 1,
                                                     "cluster": {"id": 8, "type": "server"}})
    good = [reading("switch", "on", True, cluster=6), reading("level", "level", 50.0, cluster=8)]
    assert outcomes({"light": [light]}, good) == [True]
    dim = [reading("switch", "on", True, cluster=6), reading("level", "level", 51.0, cluster=8)]
    assert outcomes({"light": [light]}, dim) == [False]
    # An unavailable light: ZHA's on/off is not the device's; brightness still counts.
    light["state"].update(available=False, on=False)
    assert outcomes({"light": [light]}, good) == [True]
    assert outcomes({"light": [light]}, good[1:]) == [False]  # but Spoke must have its On/Off


def test_words_are_compared_through_zhas_vocabulary() -> None:
    action = entity("sensor", "ThermostatHVACAction", {"state": "heating"}, cluster=0x0201)
    assert outcomes({"sensor": [action]},
                    [reading("thermostat", "running_state", "heat", cluster=0x0201)]) == [True]
    assert outcomes({"sensor": [action]},
                    [reading("thermostat", "mode", "heat", cluster=0x0201),
                     reading("thermostat", "running_state", "idle", cluster=0x0201)]) == [False]


def test_entities_with_a_category_are_out_except_battery() -> None:
    config = entity("switch", "ChildLock", {"state": True}, cluster=0x0201)
    config["info_object"]["entity_category"] = "config"
    battery = entity("sensor", "Battery", {"state": 50}, cluster=1, device_class="battery")
    battery["info_object"]["entity_category"] = "diagnostic"
    assert outcomes({"switch": [config], "sensor": [battery]},
                    [reading("battery", "battery", 50.0, cluster=1)]) == [True]


def test_the_last_line_gives_the_figure() -> None:
    diag = {"zha_lib_entities": {"switch": [entity("switch", "Switch", {"state": 1}, cluster=6)]}}
    result = check(diag, {"readings": [reading("switch", "on", True, cluster=6)]}, "plug.json")
    assert table([result])[-1] == "conformance: 1/1 (100.0%)"
