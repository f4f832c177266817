"""Home Assistant's side for the tests: a local Mosquitto that requires a login (as Home Assistant's
Mosquitto add-on does), a client that watches what the hub publishes there, and a validator of
discovery configurations that applies the rules Home Assistant's MQTT integration applies."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bench.tls import Pki
from tests.common import MqttTestClient
from tests.conftest import MOSQUITTO, _free_port, _wait_listening
from wire.capabilities import CAPABILITIES, split_instance

PREFIX = "homeassistant"


@dataclass(frozen=True)
class LocalBroker:
    host: str
    port: int
    users: dict[str, str]  # username -> password
    tls_port: int | None = None


class Mosquitto:
    """A Mosquitto process that can be stopped and started again on the same port and files."""

    def __init__(self, folder: Path, conf: str, port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self.conf = folder / "mosquitto.conf"
        # As root, mosquitto drops to user "mosquitto", which cannot read a test's private folder.
        root = os.geteuid() == 0 and "\nuser root" not in f"\n{conf}"
        self.conf.write_text(conf + ("user root\n" if root else ""))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        with (self.folder / "mosquitto.log").open("a") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        proc = self.proc
        _wait_listening(self.port, alive=lambda: proc.poll() is None)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def local_broker(folder: Path, pki: Pki | None = None) -> Iterator[LocalBroker]:
    """Home Assistant's broker: a plain Mosquitto, no anonymous clients, a password file with the
    hub's login and Home Assistant's; with ``pki``, also a TLS listener (its certificate signed by
    ``pki.ca``) on ``tls_port``."""
    users = {"spoke-hub": secrets.token_urlsafe(12), "homeassistant": secrets.token_urlsafe(12)}
    folder.mkdir(parents=True, exist_ok=True)
    passwords = folder / "passwords"
    passwords.write_text("")
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                       capture_output=True)
    port, tls_port = _free_port(), None
    conf = (f"allow_anonymous false\npassword_file {passwords}\npersistence false\n"
            f"listener {port} 127.0.0.1\n")
    if pki is not None:
        tls_port = _free_port()
        conf += (f"listener {tls_port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.cert}\n"
                 f"keyfile {pki.key}\n")
    broker = Mosquitto(folder, conf, port)
    broker.start()
    try:
        yield LocalBroker("127.0.0.1", port, users, tls_port)
    finally:
        broker.stop()


def ha_settings(broker: LocalBroker) -> dict[str, Any]:
    return {"ha_host": broker.host, "ha_port": broker.port, "ha_username": "spoke-hub",
            "ha_password": broker.users["spoke-hub"]}


class HomeAssistant:
    """Home Assistant as the hub sees it on the broker: it reads discovery and state, publishes
    its birth message and commands."""

    def __init__(self, broker: LocalBroker, base: str) -> None:
        self.base = base
        self.retained: dict[str, bytes] = {}  # the latest payload of each topic
        self.history: dict[str, list[bytes]] = {}  # every payload of each topic, in order
        self.config_messages = 0
        self._lock = threading.Lock()
        self.client = MqttTestClient(broker.host, broker.port, f"ha-{secrets.token_hex(3)}",
                                     username="homeassistant",
                                     password=broker.users["homeassistant"])
        self.client.subscribe(f"{PREFIX}/#", self._on)
        self.client.subscribe(f"{base}/#", self._on)

    def _on(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.retained[topic] = payload
            self.history.setdefault(topic, []).append(payload)
            if topic.endswith("/config") and payload:
                self.config_messages += 1

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every discovery config now in force (an empty payload removed its entity)."""
        with self._lock:
            items = list(self.retained.items())
        return {t: json.loads(p) for t, p in items if t.startswith(f"{PREFIX}/")
                and t.endswith("/config") and p}

    def json(self, topic: str) -> Any:
        with self._lock:
            payload = self.retained.get(topic)
        return None if not payload else json.loads(payload)

    def payload(self, topic: str) -> bytes | None:
        with self._lock:
            return self.retained.get(topic)

    def text(self, topic: str) -> str | None:
        with self._lock:
            payload = self.retained.get(topic)
        return None if payload is None else payload.decode()

    def seen(self, topic: str, payload: bytes) -> bool:
        with self._lock:
            return payload in self.history.get(topic, [])

    def entity(self, unique_id: str) -> dict[str, Any]:
        for config in self.configs().values():
            if config.get("unique_id") == unique_id:
                return config
        raise AssertionError(f"no entity {unique_id}")

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self.client.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------------------ validation
CONFIG_TOPIC = re.compile(rf"^{PREFIX}/(?P<component>[a-z_]+)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$")

# Keys every MQTT entity takes (homeassistant/components/mqtt/schemas.py, MQTT_ENTITY_COMMON_SCHEMA
# with the availability schema), and each platform's own (the platforms' PLATFORM_SCHEMA_MODERN).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic",
          "device", "enabled_by_default", "entity_category", "entity_picture", "icon",
          "json_attributes_template", "json_attributes_topic", "name", "object_id", "origin",
          "payload_available", "payload_not_available", "unique_id", "qos", "encoding",
          "default_entity_id"}
PLATFORM_KEYS: dict[str, set[str]] = {
    "sensor": {"state_topic", "value_template", "device_class", "unit_of_measurement",
               "state_class", "expire_after", "force_update", "last_reset_value_template",
               "suggested_display_precision", "options"},
    "binary_sensor": {"state_topic", "value_template", "device_class", "payload_on",
                      "payload_off", "expire_after", "force_update", "off_delay"},
    "switch": {"state_topic", "command_topic", "value_template", "command_template",
               "payload_on", "payload_off", "state_on", "state_off", "optimistic", "retain",
               "device_class"},
    "light": {"schema", "state_topic", "command_topic", "brightness", "brightness_scale",
              "supported_color_modes", "min_mireds", "max_mireds", "color_temp_kelvin",
              "min_kelvin", "max_kelvin", "effect", "effect_list", "flash",
              "flash_time_long", "flash_time_short", "optimistic", "retain", "transition",
              "white_scale"},
    "climate": {"temperature_unit", "precision", "temp_step", "min_temp", "max_temp", "modes",
                "current_temperature_topic", "current_temperature_template",
                "temperature_state_topic", "temperature_state_template",
                "temperature_command_topic", "temperature_command_template",
                "temperature_low_command_topic", "temperature_low_state_topic",
                "temperature_low_state_template", "temperature_low_command_template",
                "temperature_high_command_topic", "temperature_high_state_topic",
                "temperature_high_state_template", "temperature_high_command_template",
                "mode_state_topic", "mode_state_template", "mode_command_topic",
                "mode_command_template", "action_topic", "action_template", "optimistic",
                "retain", "initial", "preset_modes", "fan_modes", "swing_modes"},
    "cover": {"command_topic", "state_topic", "value_template", "position_topic",
              "position_template", "set_position_topic", "set_position_template",
              "position_open", "position_closed", "payload_open", "payload_close",
              "payload_stop", "device_class", "optimistic", "retain"},
    "lock": {"command_topic", "state_topic", "value_template", "payload_lock",
             "payload_unlock", "state_locked", "state_unlocked", "optimistic", "retain"},
    "fan": {"command_topic", "state_topic", "state_value_template", "payload_on",
            "payload_off", "percentage_command_topic", "percentage_state_topic",
            "percentage_value_template", "preset_mode_command_topic", "preset_mode_state_topic",
            "preset_mode_value_template", "preset_modes", "speed_range_min", "speed_range_max",
            "optimistic", "retain"},
    "siren": {"command_topic", "state_topic", "value_template", "payload_on", "payload_off",
              "state_on", "state_off", "available_tones", "support_duration",
              "support_volume_set", "optimistic", "retain"},
    "scene": {"command_topic", "payload_on", "retain"},
}
# What HA refuses a config without (the platform schemas' vol.Required, and what an entity Spoke
# makes must have to be of any use).
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"},
            "switch": {"command_topic"}, "light": {"command_topic"},
            "climate": {"mode_command_topic", "temperature_command_topic"},
            "cover": {"command_topic"}, "lock": {"command_topic"}, "fan": {"command_topic"},
            "siren": {"command_topic"}, "scene": {"command_topic"}}
SENSOR_CLASSES: dict[str, set[str | None]] = {  # device class -> units HA accepts for it
    "temperature": {"°C", "°F", "K"}, "humidity": {"%"}, "illuminance": {"lx"},
    "pressure": {"hPa", "Pa", "kPa", "bar", "mbar", "mmHg", "inHg", "psi", "cbar"},
    "moisture": {"%"}, "pm25": {"μg/m³"}, "volatile_organic_compounds_parts": {"ppm", "ppb"},
    "carbon_dioxide": {"ppm"}, "carbon_monoxide": {"ppm", "mg/m³", "μg/m³"},
    "volume_flow_rate": {"m³/h", "ft³/min", "L/min", "gal/min", "mL/s"},
    "battery": {"%"}, "voltage": {"V", "mV", "µV", "kV", "MV"}, "power": {"W", "kW", "mW", "MW"},
    "apparent_power": {"VA", "kVA"}, "energy": {"Wh", "kWh", "MWh", "MJ", "GJ"},
    "current": {"A", "mA"}, "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "power_factor": {"%", None},
}
BINARY_CLASSES = {"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
                  "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
                  "occupancy", "opening", "plug", "power", "presence", "problem", "running",
                  "safety", "smoke", "sound", "tamper", "update", "vibration", "window"}
HVAC_MODES = {"auto", "off", "cool", "heat", "dry", "fan_only", "heat_cool"}
COLOR_MODES = {"onoff", "brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww", "white"}
ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def _topic_ok(topic: object) -> bool:
    return (isinstance(topic, str) and 0 < len(topic.encode()) <= 65535 and "+" not in topic
            and "#" not in topic and "\x00" not in topic)


def validate(topic: str, config: dict[str, Any]) -> list[str]:
    """Every way ``config`` on ``topic`` breaks Home Assistant's MQTT discovery rules."""
    problems: list[str] = []

    def bad(message: str) -> None:
        problems.append(f"{topic}: {message}")

    match = CONFIG_TOPIC.fullmatch(topic)
    if match is None:
        return [f"{topic}: not <prefix>/<component>/[<node_id>/]<object_id>/config"]
    component = match["component"]
    if component not in PLATFORM_KEYS:
        return [f"{topic}: unknown component {component}"]
    extra = set(config) - COMMON - PLATFORM_KEYS[component]
    if extra:
        bad(f"keys {component} does not take: {sorted(extra)}")
    missing = REQUIRED[component] - set(config)
    if missing:
        bad(f"missing {sorted(missing)}")
    for key, value in config.items():
        if key.endswith("_topic") and not _topic_ok(value):
            bad(f"{key} is no valid topic: {value!r}")
    if "availability" in config and "availability_topic" in config:
        bad("availability and availability_topic together")
    if "availability" in config:
        availability = config["availability"]
        if not isinstance(availability, list) or not availability or not all(
                isinstance(a, dict) and _topic_ok(a.get("topic"))
                and set(a) <= {"topic", "payload_available", "payload_not_available",
                               "value_template"} for a in availability):
            bad(f"availability is not a list of topics: {availability!r}")
    if config.get("availability_mode", "latest") not in ("all", "any", "latest"):
        bad(f"availability_mode {config['availability_mode']!r}")
    unique_id = config.get("unique_id")
    if not isinstance(unique_id, str) or not unique_id:
        bad("no unique_id")
    device = config.get("device")
    if not isinstance(device, dict):
        bad("no device block")
    else:
        ids = device.get("identifiers")
        if not (isinstance(ids, list) and ids and all(isinstance(i, str) and i for i in ids)):
            bad(f"device identifiers {ids!r}")
        unknown = set(device) - {"identifiers", "connections", "name", "manufacturer", "model",
                                 "model_id", "sw_version", "hw_version", "serial_number",
                                 "via_device", "suggested_area", "configuration_url"}
        if unknown:
            bad(f"device keys HA does not take: {sorted(unknown)}")
        if not isinstance(device.get("name"), str) or not device["name"]:
            bad("device without a name")
    origin = config.get("origin")
    if not isinstance(origin, dict) or not origin.get("name") or set(origin) - {
            "name", "sw_version", "support_url"}:
        bad(f"origin {origin!r}")
    if "name" in config and config["name"] is not None and not isinstance(config["name"], str):
        bad("name is neither a string nor null")
    if config.get("entity_category") not in (None, "config", "diagnostic"):
        bad(f"entity_category {config['entity_category']!r}")
    _validate_platform(component, config, bad)
    return problems


def _validate_platform(component: str, config: dict[str, Any], bad: Any) -> None:
    if component == "sensor":
        device_class = config.get("device_class")
        if device_class is not None:
            units = SENSOR_CLASSES.get(device_class)
            if units is None:
                bad(f"sensor device_class {device_class!r}")
            elif config.get("unit_of_measurement") not in units:
                bad(f"unit {config.get('unit_of_measurement')!r} for {device_class}")
        if config.get("state_class") not in (None, "measurement", "total", "total_increasing"):
            bad(f"state_class {config['state_class']!r}")
        if config.get("state_class") == "total_increasing" and device_class not in (
                "energy", "gas", "water", "volume", None):
            bad("total_increasing on a non-accumulating class")
    elif component == "binary_sensor":
        if config.get("device_class") not in BINARY_CLASSES | {None}:
            bad(f"binary_sensor device_class {config['device_class']!r}")
    elif component == "light":
        if config.get("schema") != "json":
            bad("light without schema json")
        modes = config.get("supported_color_modes")
        if not isinstance(modes, list) or not modes or not set(modes) <= COLOR_MODES \
                or len(set(modes)) != len(modes):
            bad(f"supported_color_modes {modes!r}")
        elif ({"onoff", "brightness"} & set(modes)) and len(modes) > 1:
            bad("onoff or brightness with other color modes")
        scale = config.get("brightness_scale", 255)
        if not isinstance(scale, int) or scale < 1:
            bad(f"brightness_scale {scale!r}")
        if "min_mireds" in config and not 0 < config["min_mireds"] < config["max_mireds"]:
            bad("min_mireds not below max_mireds")
    elif component == "climate":
        if not set(config.get("modes", [])) <= HVAC_MODES:
            bad(f"modes {config.get('modes')!r}")
        if not config.get("min_temp", 7) < config.get("max_temp", 35):
            bad("min_temp not below max_temp")
        if config.get("temperature_unit", "C") not in ("C", "F"):
            bad(f"temperature_unit {config['temperature_unit']!r}")
    elif component == "scene":
        # Home Assistant publishes payload_on (a string, "ON" by default) on activation.
        if not isinstance(config.get("payload_on", "ON"), str):
            bad(f"scene payload_on {config['payload_on']!r} is not a string")
        if not isinstance(config.get("retain", False), bool):
            bad(f"scene retain {config['retain']!r}")


# ------------------------------------------------------------------------------------ rendering
# Home Assistant renders an MQTT template in a sandboxed Jinja environment with ``value`` (the
# payload as text) and ``value_json`` (the payload parsed, when it is JSON), strips the result, and
# takes it as a string. Its own filters and globals (is_defined, as_datetime, …) are absent here:
# a template that needs one fails to compile, so the hub's templates need none (Jinja's own round
# and int, which Home Assistant replaces with ones that agree on numbers, are here). A key the state does
# not hold is an error (Home Assistant's undefined raises on use, as ``.get`` on it would).
JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
PAYLOAD_NONE = "None"  # what makes Home Assistant's state unknown
# Each template and the topic whose messages it renders (the others read ``state_topic``).
TEMPLATE_TOPIC = {
    "position_template": "position_topic",
    "current_temperature_template": "current_temperature_topic",
    "temperature_state_template": "temperature_state_topic",
    "temperature_low_state_template": "temperature_low_state_topic",
    "temperature_high_state_template": "temperature_high_state_topic",
    "mode_state_template": "mode_state_topic",
    "action_template": "action_topic",
    "percentage_value_template": "percentage_state_topic",
    "preset_mode_value_template": "preset_mode_state_topic",
}
HVAC_ACTIONS = {"off", "heating", "cooling", "drying", "idle", "fan", "preheating", "defrosting"}


def render(template: str, payload: bytes) -> str:
    """What Home Assistant makes of ``payload`` through ``template``."""
    variables: dict[str, Any] = {"value": payload.decode()}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json.loads(payload)
    return str(JINJA.from_string(template).render(**variables)).strip()


def template_topic(key: str, config: dict[str, Any]) -> str:
    return str(config[TEMPLATE_TOPIC.get(key, "state_topic")])


def _is_number(text: str, *, integer: bool = False) -> bool:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return False
    return math.isfinite(value)


def _accepted(component: str, key: str, config: dict[str, Any], out: str) -> bool:
    """Whether Home Assistant's ``component`` takes ``out``, rendered by ``key``, as a state (or
    as unknown) without an error or a warning."""
    on, off = config.get("payload_on", "ON"), config.get("payload_off", "OFF")
    if component == "sensor":
        numeric = bool({"state_class", "unit_of_measurement"} & set(config)) or (
            config.get("device_class") in SENSOR_CLASSES)
        return out == PAYLOAD_NONE or (_is_number(out) if numeric else len(out) <= 255)
    if component == "binary_sensor":
        return out in (on, off, PAYLOAD_NONE)
    if component in ("switch", "siren"):
        return out in (config.get("state_on", on), config.get("state_off", off), PAYLOAD_NONE)
    if component == "lock":
        return out in (config.get("state_locked", "LOCKED"),
                       config.get("state_unlocked", "UNLOCKED"), PAYLOAD_NONE)
    if component == "cover" and key == "position_template":
        # Home Assistant reads it with float(): "None" is no position.
        low, high = config.get("position_closed", 0), config.get("position_open", 100)
        return out == "" or (_is_number(out) and min(low, high) <= float(out) <= max(low, high))
    if component == "climate":
        if key == "mode_state_template":  # no unknown: anything outside the modes is an error
            return out in config.get("modes", HVAC_MODES)
        if key == "action_template":
            return out in HVAC_ACTIONS | {PAYLOAD_NONE, ""}
        return out == PAYLOAD_NONE or _is_number(out)
    if component == "fan":
        if key == "state_value_template":
            return out in (on, off, PAYLOAD_NONE)
        if key == "percentage_value_template":  # read with int()
            low, high = config.get("speed_range_min", 1), config.get("speed_range_max", 100)
            return out == PAYLOAD_NONE or (_is_number(out, integer=True)
                                           and (int(out) == 0 or low <= int(out) <= high))
        if key == "preset_mode_value_template":
            return out in (*config.get("preset_modes", []), PAYLOAD_NONE)
    return False


def render_problems(topic: str, config: dict[str, Any],
                    payload_of: Callable[[str], bytes | None]) -> list[str]:
    """Every template of ``config`` rendered as Home Assistant renders it, on the payload
    ``payload_of`` gives for the topic it reads: each must render without an error to a state
    its platform takes. A JSON-schema light's own state is checked as Home Assistant reads it."""
    component = topic.split("/")[1]
    problems: list[str] = []
    for key, template in config.items():
        if not key.endswith("_template") or not isinstance(template, str):
            continue
        payload = payload_of(template_topic(key, config))
        if payload is None:  # nothing sent there (yet): nothing rendered
            continue
        try:
            out = render(template, payload)
        except TemplateError as exc:
            problems.append(f"{topic}: {key} fails on {payload[:200]!r}: {exc}")
            continue
        if not _accepted(component, key, config, out):
            problems.append(f"{topic}: {key} renders {out!r}, which {component} does not take "
                            f"(from {payload[:200]!r})")
    if component == "light" and config.get("schema") == "json":
        payload = payload_of(config["state_topic"])
        problems += [f"{topic}: {p}" for p in _light_problems(config, payload)]
    elif component == "binary_sensor" and "value_template" not in config:
        payload = payload_of(config["state_topic"])
        if payload is None or not _accepted(component, "", config, payload.decode()):
            problems.append(f"{topic}: state {payload!r} is neither payload_on nor payload_off")
    return problems


def _light_problems(config: dict[str, Any], payload: bytes | None) -> list[str]:
    """A JSON-schema light's state as Home Assistant parses it."""
    if payload is None:
        return ["no state"]
    try:
        state = json.loads(payload)
    except ValueError:
        return [f"state is not JSON: {payload[:200]!r}"]
    if not isinstance(state, dict):
        return [f"state is not an object: {state!r}"]
    problems = []
    if state.get("state") not in ("ON", "OFF", None):
        problems.append(f"state {state.get('state')!r}")
    modes = config["supported_color_modes"]
    if "brightness" in state:
        scale = config.get("brightness_scale", 255)
        if not config.get("brightness") or not (
                isinstance(state["brightness"], int) and 0 <= state["brightness"] <= scale):
            problems.append(f"brightness {state['brightness']!r} (scale {scale})")
    mode = state.get("color_mode")
    if mode is not None and mode not in modes:
        problems.append(f"color_mode {mode!r} not in {modes}")
    if "color_temp" in state:
        mireds = state["color_temp"]
        if "color_temp" not in modes or not isinstance(mireds, int | float) or not (
                config.get("min_mireds", 153) <= mireds <= config.get("max_mireds", 500)):
            problems.append(f"color_temp {mireds!r} outside {config.get('min_mireds', 153)}-"
                            f"{config.get('max_mireds', 500)}")
    if "color" in state:
        color = state["color"]
        keys = {"xy": {"x", "y"}, "hs": {"h", "s"}}
        if not isinstance(color, dict) or not any(
                m in modes and set(color) == k and all(isinstance(v, int | float)
                                                       for v in color.values())
                for m, k in keys.items()):
            problems.append(f"color {color!r}")
    if (mode in ("xy", "hs") and "color" not in state) or (
            mode == "color_temp" and "color_temp" not in state):
        problems.append(f"color_mode {mode} without its values")
    return problems


TEMPLATE_REF = re.compile(r"value_json\[(['\"])(?P<instance>[^'\"]+)\1\]\.get\((['\"])(?P<attr>[^'\"]+)\3\)")


def template_refs(config: dict[str, Any]) -> set[tuple[str, str]]:
    """(instance, attribute) each template of ``config`` reads from the device's state."""
    refs: set[tuple[str, str]] = set()
    for key, value in config.items():
        if key.endswith("_template") and isinstance(value, str):
            refs.update((m["instance"], m["attr"]) for m in TEMPLATE_REF.finditer(value))
    return refs


def state_variants(state: dict[str, dict[str, Any]]) -> Iterator[dict[str, dict[str, Any]]]:
    """The states a device's JSON state topic may carry besides ``state``: nothing known yet, each
    value of each of its enumerated and boolean attributes (a thermostat's every mode, …), and a
    fraction for each number."""
    yield {instance: {} for instance in state}
    for instance, attrs in state.items():
        spec = CAPABILITIES.get(split_instance(instance)[0])
        for attribute in spec.attributes if spec is not None else ():
            if attribute.type == "enum" and attribute.values:
                for value in attribute.values:
                    yield {**state, instance: {**attrs, attribute.name: value}}
            elif attribute.type == "bool":
                for flag in (True, False):
                    yield {**state, instance: {**attrs, attribute.name: flag}}
            elif attribute.type == "number":  # a fraction, where the state may hold a whole
                yield {**state, instance: {**attrs, attribute.name: 42.5}}


def is_id(value: str) -> bool:
    return bool(ID.fullmatch(value))
