"""Home Assistant's view of a hub's devices: MQTT discovery entities built from device descriptions.

One entity per capability instance (per endpoint), the way Zigbee2MQTT presents devices: sensors
and binary sensors read the device's one JSON state topic through a ``value_template``; a switch,
climate, cover, lock, fan and siren each have a command topic; a bulb's ``switch`` + ``level`` (+
``color_temperature``, ``color``) on one endpoint are one JSON-schema light with its own state
topic, and a thermostat's mode has its own topic (Home Assistant takes no unknown mode). Every
template renders with plain Jinja (Jinja's own ``round`` and ``int``, which Home Assistant's
match for numbers; none of its own filters) to a state its platform takes, or to ``None``
(unknown) where the platform has one. Every entity carries a stable ``unique_id`` (the IEEE
address and the entity), the device block (identifiers, manufacturer, model, name, ``via_device``
the hub), the origin, and the availability of both the hub's bridge and the device
(``availability_mode: all``).

``Entity.commands`` turns what Home Assistant sends on an entity's command topics into capability
commands of the vocabulary; anything else is a ``CommandRefused`` with a readable reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from wire.capabilities import CAPABILITIES, KELVIN_DEFAULT, SETPOINT_DEFAULT, split_instance
from wire.contract import DeviceInfo, Limits, State, Value, ieee_to_topic
from wire.homeassistant import OFFLINE, ONLINE, HaTopics, safe_id

LIGHT_PARTS = ("switch", "level", "color_temperature", "color")
BRIGHTNESS_SCALE = 254  # what Zigbee lights use; the vocabulary's level is a percentage

# sensor capability -> (device_class, state_class, entity_category); units come from the vocabulary
SENSORS: dict[str, tuple[str | None, str | None, str | None]] = {
    "temperature": ("temperature", "measurement", None),
    "humidity": ("humidity", "measurement", None),
    "illuminance": ("illuminance", "measurement", None),
    "pressure": ("pressure", "measurement", None),
    "soil_moisture": ("moisture", "measurement", None),
    "pm25": ("pm25", "measurement", None),
    "voc": ("volatile_organic_compounds_parts", "measurement", None),
    "co2": ("carbon_dioxide", "measurement", None),
    "co": ("carbon_monoxide", "measurement", None),
    "formaldehyde": (None, "measurement", None),
    "leaf_wetness": ("moisture", "measurement", None),
    "flow": ("volume_flow_rate", "measurement", None),
    "battery": ("battery", "measurement", "diagnostic"),
    "battery_voltage": ("voltage", "measurement", "diagnostic"),
    "power": ("power", "measurement", None),
    "apparent_power": ("apparent_power", "measurement", None),
    "energy": ("energy", "total_increasing", None),
    "voltage": ("voltage", "measurement", None),
    "current": ("current", "measurement", None),
    "frequency": ("frequency", "measurement", None),
    "power_factor": ("power_factor", "measurement", None),
    "device_temperature": ("temperature", "measurement", "diagnostic"),
}
# Home Assistant spells micrograms with the Greek mu.
UNITS = {"µg/m³": "μg/m³"}

# binary capability -> (device_class, entity_category)
BINARY_SENSORS: dict[str, tuple[str | None, str | None]] = {
    "occupancy": ("occupancy", None),
    "contact": ("door", None),  # the vocabulary's open=true is the door class's "on"
    "water_leak": ("moisture", None),
    "smoke": ("smoke", None),
    "vibration": ("vibration", None),
    "acceleration": ("moving", None),
    "tamper": ("tamper", "diagnostic"),
    "alarm": ("safety", None),
    "binary_input": (None, None),
}

# Home Assistant's HVAC modes for the vocabulary's thermostat modes (auto and sleep: see climate;
# the others are the same word).
HVAC_MODE = {"emergency_heating": "heat", "precooling": "cool"}
HVAC_ACTION = {"idle": "idle", "heat": "heating", "cool": "cooling", "fan": "fan"}
FAN_PRESETS = ("low", "medium", "high", "auto", "smart")


class CommandRefused(ValueError):
    """A payload on a command topic that does not fit the entity."""


@dataclass(frozen=True, slots=True)
class Step:
    """One capability command an entity's payload asks for."""

    instance: str
    command: str
    args: dict[str, Value] = field(default_factory=dict)


def _origin() -> dict[str, str]:
    try:
        version = metadata.version("spoke")
        urls = metadata.metadata("spoke").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        version, urls = "0.1.0", []
    origin = {"name": "Spoke", "sw_version": version}
    for entry in urls:  # "Homepage, https://…"
        _, _, url = entry.partition(", ")
        if url.startswith("https://"):
            origin["support_url"] = url
            break
    return origin


ORIGIN = _origin()


def _get(instance: str, attribute: str) -> str:
    """A Jinja expression for one attribute of the device's state (None when not known yet)."""
    return f"value_json[{instance!r}].get({attribute!r})"


def _on_off_template(instance: str, attribute: str, on: str = "ON", off: str = "OFF") -> str:
    # "None" makes Home Assistant's state unknown; a bool becomes the entity's on/off payload.
    return (f"{{% set v = {_get(instance, attribute)} %}}"
            f"{{{{ 'None' if v is none else ({on!r} if v else {off!r}) }}}}")


def command_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        raise CommandRefused("the payload is not JSON") from None


def command_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommandRefused(f"{what} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LightCommand:
    """A JSON-schema light command, checked: what a device light and a group light both do."""

    on: bool
    level: float | None  # % from brightness, when given
    kelvin: int | None  # from color_temp, within the light's range, when given
    timed: dict[str, Value]  # the transition, for every step


def light_command(body: dict[str, Any], fields: set[str], what: str,
                  kelvin_range: tuple[float, float] | None, no_kelvin: str) -> LightCommand:
    """``body`` as a light command taking ``fields``; ``kelvin_range`` None: no colour
    temperature (refused with ``no_kelvin``)."""
    unknown = set(body) - fields
    if unknown:
        raise CommandRefused(f"{what} takes no {', '.join(sorted(unknown))}")
    word = str(body.get("state", "ON")).upper()
    if word not in ("ON", "OFF"):
        raise CommandRefused(f"state must be ON or OFF, not {body.get('state')!r}")
    transition = command_number(body.get("transition", 0), "transition")
    timed: dict[str, Value] = {"transition": transition} if transition else {}
    if word == "OFF":
        return LightCommand(False, None, None, timed)
    level = None
    if "brightness" in body:
        brightness = command_number(body["brightness"], "brightness")
        if not 0 <= brightness <= BRIGHTNESS_SCALE:
            raise CommandRefused(f"brightness must be 0-{BRIGHTNESS_SCALE}")
        level = round(brightness * 100 / BRIGHTNESS_SCALE, 2)
    kelvin = None
    if "color_temp" in body:
        if kelvin_range is None:
            raise CommandRefused(no_kelvin)
        mireds = command_number(body["color_temp"], "color_temp")
        if mireds <= 0:
            raise CommandRefused("color_temp must be a positive number of mireds")
        # Rounding mireds to kelvin must not step outside the light's own range.
        kelvin = min(max(round(1e6 / mireds), round(kelvin_range[0])), round(kelvin_range[1]))
    return LightCommand(True, level, kelvin, timed)


def _text(payload: bytes) -> str:
    try:
        return payload.decode().strip()
    except UnicodeDecodeError:
        raise CommandRefused("the payload is not UTF-8 text") from None


def _payload_number(payload: bytes, what: str) -> float:
    text = _text(payload)
    try:
        value = float(text)
    except ValueError:
        raise CommandRefused(f"{what} must be a number, not {text[:40]!r}") from None
    return command_number(value, what)


# (command field, payload, the device's current state) -> capability commands
Translate = Callable[[str | None, bytes, State], list[Step]]


@dataclass
class Entity:
    """One Home Assistant entity of a device (or of the hub)."""

    component: str
    object_id: str
    config: dict[str, Any]  # without the device block, origin and availability
    translate: Translate | None = None  # (field, payload) -> capability commands
    # An own JSON state topic (lights, a thermostat's mode); None: nothing to send yet.
    state: Callable[[State], dict[str, Any] | None] | None = None

    def commands(self, field: str | None, payload: bytes, state: State | None = None
                 ) -> list[Step]:
        if self.translate is None:
            raise CommandRefused(f"{self.component} {self.object_id} takes no commands")
        return self.translate(field, payload, state or {})


# ---------------------------------------------------------------------------------------- builders
class _Builder:
    def __init__(self, info: DeviceInfo, topics: HaTopics) -> None:
        self.info = info
        self.topics = topics
        self.ieee = info.ieee
        self.state_topic = topics.device_state(info.ieee)

    def limits(self, instance: str, attribute: str, default: Limits) -> Limits:
        return self.info.constraints.get(instance, {}).get(attribute) or default

    def command_topic(self, object_id: str, field: str | None = None) -> str:
        return self.topics.command(self.ieee, object_id, field)

    @staticmethod
    def name(capability: str, endpoint: int | None, *, main: bool = False) -> str | None:
        """Entity names follow the device's (has_entity_name): a device's main entity is nameless
        on its first endpoint, so it takes the device's name."""
        if main and endpoint is None:
            return None
        words = capability.replace("_", " ").capitalize()
        return words if endpoint is None else f"{words} {endpoint}"

    # ------------------------------------------------------------------ read-only
    def sensor(self, instance: str, capability: str, endpoint: int | None, oid: str) -> Entity:
        spec = CAPABILITIES[capability]
        attribute = spec.attributes[0]
        device_class, state_class, category = SENSORS.get(capability, (None, "measurement", None))
        config: dict[str, Any] = {
            "name": self.name(capability, endpoint), "state_topic": self.state_topic,
            "value_template": f"{{{{ {_get(instance, attribute.name)} }}}}",
        }
        if device_class:
            config["device_class"] = device_class
        if attribute.unit:
            config["unit_of_measurement"] = UNITS.get(attribute.unit, attribute.unit)
        if state_class and attribute.type in ("number", "integer"):
            config["state_class"] = state_class
        if category:
            config["entity_category"] = category
        return Entity("sensor", oid, config)

    def binary_sensor(self, instance: str, capability: str, endpoint: int | None,
                      oid: str) -> Entity:
        attribute = CAPABILITIES[capability].attributes[0].name
        device_class, category = BINARY_SENSORS.get(capability, (None, None))
        config: dict[str, Any] = {
            "name": self.name(capability, endpoint), "state_topic": self.state_topic,
            "value_template": _on_off_template(instance, attribute),
        }
        if device_class:
            config["device_class"] = device_class
        if category:
            config["entity_category"] = category
        return Entity("binary_sensor", oid, config)

    # ------------------------------------------------------------------ controls
    def switch(self, instance: str, endpoint: int | None, oid: str) -> Entity:
        config = {"name": self.name("switch", endpoint, main=True),
                  "state_topic": self.state_topic, "command_topic": self.command_topic(oid),
                  "value_template": _on_off_template(instance, "on")}

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            word = _text(payload).upper()
            if field is not None or word not in ("ON", "OFF"):
                raise CommandRefused(f"a switch takes ON or OFF, not {_text(payload)[:40]!r}")
            return [Step(instance, word.lower())]

        return Entity("switch", oid, config, translate)

    def light(self, parts: dict[str, str], endpoint: int | None, oid: str) -> Entity:
        """``parts``: light part (switch, level, …) -> its instance on this endpoint."""
        ct, color = parts.get("color_temperature"), parts.get("color")
        # The colour model the light reports (x/y or hue/saturation) is the one it takes; a
        # "color" capability with neither (only its mode) is a colour-temperature light's.
        reported = self.info.capabilities.get(color, {}) if color else {}
        space = "xy" if "x" in reported else "hs" if "hue" in reported else None
        modes = ([space] if space else []) + (["color_temp"] if ct else [])
        if not modes:
            modes = ["brightness"] if "level" in parts else ["onoff"]
        config: dict[str, Any] = {
            "name": self.name("light", endpoint, main=True), "schema": "json",
            "state_topic": self.topics.entity_state(self.ieee, oid),
            "command_topic": self.command_topic(oid), "supported_color_modes": modes,
        }
        if "level" in parts:
            config.update(brightness=True, brightness_scale=BRIGHTNESS_SCALE)
        kelvin = self.limits(ct, "kelvin", KELVIN_DEFAULT) if ct else None
        if kelvin is not None:
            # Rounded as the state's mireds are, so a bulb at either end of its range reads
            # inside it (commands are held to the range in kelvin).
            config.update(min_mireds=round(1e6 / kelvin.max), max_mireds=round(1e6 / kelvin.min))

        def state(values: State) -> dict[str, Any]:
            out: dict[str, Any] = {}
            on = values.get(parts["switch"], {}).get("on")
            out["state"] = None if on is None else ("ON" if on else "OFF")
            if "level" in parts:
                level = values.get(parts["level"], {}).get("level")
                if isinstance(level, int | float):
                    out["brightness"] = round(float(level) * BRIGHTNESS_SCALE / 100)
            k = values.get(ct, {}).get("kelvin") if ct else None
            if isinstance(k, int | float) and k > 0:
                out["color_temp"] = round(1e6 / float(k))
            c = values.get(color, {}) if color else {}
            numbers = {k: c[k] for k in ("x", "y", "hue", "saturation")
                       if isinstance(c.get(k), int | float)}
            if space == "xy" and {"x", "y"} <= set(numbers):
                out["color"] = {"x": numbers["x"], "y": numbers["y"]}
            elif space == "hs" and {"hue", "saturation"} <= set(numbers):
                out["color"] = {"h": numbers["hue"], "s": numbers["saturation"]}
            # The mode the light is in, with the values that mode reads (Home Assistant warns of
            # a colour mode without them): none until they are known.
            if "color_temp" in out and (c.get("mode") == "color_temperature" or "color" not in out):
                out["color_mode"] = "color_temp"
            elif "color" in out:
                out["color_mode"] = space
            elif (modes[0] == "brightness" and "brightness" in out) or modes[0] == "onoff":
                out["color_mode"] = modes[0]
            return out

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            body = command_json(payload)
            if field is not None or not isinstance(body, dict):
                raise CommandRefused("a light takes a JSON object such as "
                                     '{"state": "ON", "brightness": 128}')
            light = light_command(
                body, {"state", "brightness", "color_temp", "color", "transition"}, "a light",
                (kelvin.min, kelvin.max) if ct is not None and kelvin is not None else None,
                "this light has no color temperature")
            if not light.on:
                return [Step(parts["switch"], "off")]
            steps: list[Step] = []
            if light.level is not None:
                if "level" not in parts:
                    raise CommandRefused("this light has no brightness")
                steps.append(Step(parts["level"], "set_level", {"level": light.level,
                                                                **light.timed}))
            elif not ({"color_temp", "color"} & set(body)) or values.get(
                    parts["switch"], {}).get("on") is not True:
                # A colour alone does not switch a light on; a bare ON is always sent (the
                # state the hub knows may be stale).
                steps.append(Step(parts["switch"], "on"))
            if light.kelvin is not None and ct is not None:
                steps.append(Step(ct, "set_color_temperature", {"kelvin": light.kelvin,
                                                                **light.timed}))
            if "color" in body:
                steps.append(self._color_step(color, body["color"], light.timed))
            return steps

        return Entity("light", oid, config, translate, state)

    @staticmethod
    def _color_step(color: str | None, value: object, timed: dict[str, Value]) -> Step:
        if color is None:
            raise CommandRefused("this light has no color")
        if not isinstance(value, dict):
            raise CommandRefused('color must be {"x": …, "y": …} or {"h": …, "s": …}')
        if "x" in value and "y" in value:
            return Step(color, "set_xy", {"x": command_number(value["x"], "color.x"),
                                          "y": command_number(value["y"], "color.y"), **timed})
        if "h" in value and "s" in value:
            return Step(color, "set_hue_saturation", {"hue": command_number(value["h"], "color.h"),
                                                      "saturation": command_number(value["s"], "color.s"),
                                                      **timed})
        raise CommandRefused('color must be {"x": …, "y": …} or {"h": …, "s": …}')

    def climate(self, instance: str, endpoint: int | None, oid: str) -> Entity:
        """One setpoint, or (a thermostat with both) a heating and a cooling one: Zigbee's auto
        mode is then Home Assistant's heat_cool, a range from the heating setpoint (low) to the
        cooling one (high)."""
        attrs = self.info.capabilities.get(instance, {})
        cooling = "cooling_setpoint" in attrs
        heating = "heating_setpoint" in attrs or not cooling
        # Nearly every thermostat has both setpoint attributes; its control sequence (where it
        # reports one) says whether the equipment heats, cools or both.
        sequence = attrs.get("control_sequence")
        if sequence in ("heating_only", "heating_with_reheat"):
            heating, cooling = True, False
        elif sequence in ("cooling_only", "cooling_with_reheat"):
            heating, cooling = False, True
        both = heating and cooling
        auto = "heat_cool" if both else "auto"  # what the vocabulary's auto (and sleep) shows as
        modes = ["off", *(["heat"] if heating else []), *(["cool"] if cooling else []), auto]
        shown_as = {**HVAC_MODE, "auto": auto, "sleep": auto}
        setpoint = "heating_setpoint" if heating else "cooling_setpoint"
        ranges = [self.limits(instance, s, SETPOINT_DEFAULT) for s in
                  (("heating_setpoint", "cooling_setpoint") if both else (setpoint,))]
        t = f"value_json[{instance!r}]"
        config: dict[str, Any] = {
            "name": self.name("thermostat", endpoint, main=True),
            "temperature_unit": "C", "precision": 0.1, "temp_step": 0.5,
            "min_temp": min(r.min for r in ranges), "max_temp": max(r.max for r in ranges),
            "modes": modes,
            "current_temperature_topic": self.state_topic,
            "current_temperature_template": f"{{{{ {_get(instance, 'local_temperature')} }}}}",
            "temperature_state_topic": self.state_topic,
            # In heat_cool no single target ("None"): Home Assistant shows the range instead.
            "temperature_state_template": (
                f"{{% set m = {t}.get('mode') %}}"
                f"{{{{ 'None' if m in ['auto', 'sleep'] else {t}.get('cooling_setpoint') "
                f"if m in ['cool', 'precooling'] else {t}.get({setpoint!r}) }}}}" if both
                else f"{{{{ {_get(instance, setpoint)} }}}}"),
            "temperature_command_topic": self.command_topic(oid, "temperature"),
            # Home Assistant takes no unknown mode (anything outside ``modes`` is an error): the
            # mode has its own topic, sent only while it is one of them.
            "mode_state_topic": self.topics.entity_state(self.ieee, oid),
            "mode_state_template": "{{ value_json['mode'] }}",
            "mode_command_topic": self.command_topic(oid, "mode"),
            "action_topic": self.state_topic,
            "action_template": (f"{{% set a = {_get(instance, 'running_state')} %}}"
                                f"{{{{ {HVAC_ACTION!r}.get(a, 'None') }}}}"),
        }
        if both:
            config.update({
                "temperature_low_command_topic": self.command_topic(oid, "temperature_low"),
                "temperature_low_state_topic": self.state_topic,
                "temperature_low_state_template": f"{{{{ {_get(instance, 'heating_setpoint')} }}}}",
                "temperature_high_command_topic": self.command_topic(oid, "temperature_high"),
                "temperature_high_state_topic": self.state_topic,
                "temperature_high_state_template":
                    f"{{{{ {_get(instance, 'cooling_setpoint')} }}}}",
            })
        range_commands = {"temperature_low": "set_heating_setpoint",
                          "temperature_high": "set_cooling_setpoint"} if both else {}

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            if field == "temperature":
                value = _payload_number(payload, "the setpoint")
                mode = values.get(instance, {}).get("mode")
                command = ("set_cooling_setpoint"
                           if cooling and (not heating or mode in ("cool", "precooling"))
                           else "set_heating_setpoint")
                return [Step(instance, command, {"value": value})]
            if field in range_commands:
                value = _payload_number(payload, f"the {field.replace('_', ' ')}")
                return [Step(instance, range_commands[field], {"value": value})]
            if field == "mode":
                mode = _text(payload)
                if mode not in modes:
                    raise CommandRefused(f"mode must be one of {', '.join(modes)}, not "
                                         f"{mode[:40]!r}")
                return [Step(instance, "set_mode", {"mode": "auto" if mode == auto else mode})]
            raise CommandRefused("a thermostat takes set/temperature"
                                 + (", set/temperature_low, set/temperature_high" if both else "")
                                 + " or set/mode")

        def state(values: State) -> dict[str, Any] | None:
            mode = values.get(instance, {}).get("mode")
            shown = shown_as.get(mode, mode) if isinstance(mode, str) else None
            return {"mode": shown} if shown in modes else None

        return Entity("climate", oid, config, translate, state)

    def cover(self, instance: str, endpoint: int | None, oid: str) -> Entity:
        config = {"name": self.name("window_covering", endpoint, main=True),
                  "command_topic": self.command_topic(oid),
                  "position_topic": self.state_topic,
                  # Home Assistant reads a number (float()); an empty result is no news.
                  "position_template": (f"{{% set p = {_get(instance, 'position')} %}}"
                                        f"{{{{ '' if p is none else p }}}}"),
                  "set_position_topic": self.command_topic(oid, "position")}
        words = {"OPEN": "open", "CLOSE": "close", "STOP": "stop"}

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            if field == "position":
                position = _payload_number(payload, "the position")
                return [Step(instance, "set_position", {"position": position})]
            word = _text(payload).upper()
            if field is not None or word not in words:
                raise CommandRefused("a cover takes OPEN, CLOSE or STOP, or set/position")
            return [Step(instance, words[word])]

        return Entity("cover", oid, config, translate)

    def lock(self, instance: str, endpoint: int | None, oid: str) -> Entity:
        config = {"name": self.name("lock", endpoint, main=True), "state_topic": self.state_topic,
                  "command_topic": self.command_topic(oid),
                  "value_template": _on_off_template(instance, "locked", "LOCKED", "UNLOCKED")}

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            word = _text(payload).upper()
            if field is not None or word not in ("LOCK", "UNLOCK"):
                raise CommandRefused("a lock takes LOCK or UNLOCK")
            return [Step(instance, word.lower())]

        return Entity("lock", oid, config, translate)

    def fan(self, instance: str, endpoint: int | None, oid: str) -> Entity:
        mode = _get(instance, "mode")
        config = {
            "name": self.name("fan", endpoint, main=True), "command_topic": self.command_topic(oid),
            "state_topic": self.state_topic,
            "state_value_template": (f"{{% set m = {mode} %}}"
                                     f"{{{{ 'None' if m is none else ('OFF' if m == 'off' "
                                     f"else 'ON') }}}}"),
            "percentage_command_topic": self.command_topic(oid, "percentage"),
            "percentage_state_topic": self.state_topic,
            # Home Assistant reads a whole number (int()) or "None".
            "percentage_value_template": (f"{{% set p = {_get(instance, 'percentage')} %}}"
                                          f"{{{{ 'None' if p is none else p | round | int }}}}"),
            "preset_mode_command_topic": self.command_topic(oid, "preset_mode"),
            "preset_mode_state_topic": self.state_topic,
            "preset_mode_value_template": (f"{{% set m = {mode} %}}"
                                           f"{{{{ m if m in {list(FAN_PRESETS)!r} else 'None' }}}}"),
            "preset_modes": list(FAN_PRESETS),
        }

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            if field == "percentage":
                return [Step(instance, "set_percentage",
                             {"percentage": _payload_number(payload, "the percentage")})]
            if field == "preset_mode":
                preset = _text(payload)
                if preset not in FAN_PRESETS:
                    raise CommandRefused(f"preset_mode must be one of {', '.join(FAN_PRESETS)}")
                return [Step(instance, "set_mode", {"mode": preset})]
            word = _text(payload).upper()
            if field is not None or word not in ("ON", "OFF"):
                raise CommandRefused("a fan takes ON or OFF, or set/percentage, set/preset_mode")
            return [Step(instance, "set_mode", {"mode": word.lower()})]

        return Entity("fan", oid, config, translate)

    def siren(self, instance: str, endpoint: int | None, oid: str) -> Entity:
        config = {"name": self.name("siren", endpoint, main=True), "state_topic": self.state_topic,
                  "command_topic": self.command_topic(oid),
                  "value_template": _on_off_template(instance, "active")}

        def translate(field: str | None, payload: bytes, values: State) -> list[Step]:
            word = _text(payload).upper()
            if field is not None or word not in ("ON", "OFF"):
                raise CommandRefused("a siren takes ON or OFF")
            return [Step(instance, word.lower())]

        return Entity("siren", oid, config, translate)


def _object_id(name: str, endpoint: int | None) -> str:
    return safe_id(name if endpoint is None else f"{name}_{endpoint}")


def device_entities(info: DeviceInfo, topics: HaTopics) -> dict[str, Entity]:
    """The entities of one device, by object id, from its description."""
    build = _Builder(info, topics)
    by_endpoint: dict[int | None, dict[str, str]] = {}
    for instance in info.capabilities:
        capability, endpoint = split_instance(instance)
        by_endpoint.setdefault(endpoint, {})[capability] = instance
    entities: list[Entity] = []
    for endpoint, caps in by_endpoint.items():
        taken: set[str] = set()
        if "switch" in caps and "level" in caps:
            parts = {p: caps[p] for p in LIGHT_PARTS if p in caps}
            entities.append(build.light(parts, endpoint, _object_id("light", endpoint)))
            taken.update(parts)
        for capability, instance in caps.items():
            if capability in taken:
                continue
            oid = _object_id(capability, endpoint)
            if capability in SENSORS:
                entities.append(build.sensor(instance, capability, endpoint, oid))
            elif capability in BINARY_SENSORS:
                entities.append(build.binary_sensor(instance, capability, endpoint, oid))
            elif capability == "switch":
                entities.append(build.switch(instance, endpoint, oid))
            elif capability == "thermostat":
                entities.append(build.climate(instance, endpoint, _object_id("climate", endpoint)))
            elif capability == "window_covering":
                entities.append(build.cover(instance, endpoint, _object_id("cover", endpoint)))
            elif capability == "lock":
                entities.append(build.lock(instance, endpoint, oid))
            elif capability == "fan":
                entities.append(build.fan(instance, endpoint, oid))
            elif capability == "siren":
                entities.append(build.siren(instance, endpoint, oid))
            # A level or colour without an on/off output has no entity; its values are still
            # in the device's JSON state topic.
    return {e.object_id: e for e in entities}


# ---------------------------------------------------------------------------------- full configs
def node_id(ieee: str) -> str:
    return f"spoke_{ieee_to_topic(ieee)}"


def hub_node_id(hub_id: str) -> str:
    return safe_id(f"spoke_hub_{hub_id}")


def hub_device(hub_id: str, sw_version: str) -> dict[str, Any]:
    return {"identifiers": [hub_node_id(hub_id)], "name": f"Spoke hub {hub_id}",
            "manufacturer": "Spoke", "model": "Spoke hub", "sw_version": sw_version}


def device_name(info: DeviceInfo) -> str:
    return info.name or " ".join(p for p in (info.manufacturer, info.model) if p) or info.ieee


def device_configs(info: DeviceInfo, entities: Mapping[str, Entity], topics: HaTopics,
                   hub_id: str) -> dict[str, dict[str, Any]]:
    """Each entity's discovery topic and complete config payload."""
    device: dict[str, Any] = {"identifiers": [node_id(info.ieee)], "name": device_name(info),
                              "via_device": hub_node_id(hub_id)}
    if info.manufacturer:
        device["manufacturer"] = info.manufacturer
    if info.model:
        device["model"] = info.model
    availability = [{"topic": topics.bridge_state}, {"topic": topics.device_availability(info.ieee)}]
    out: dict[str, dict[str, Any]] = {}
    for oid, entity in entities.items():
        config = {**entity.config, "unique_id": f"{node_id(info.ieee)}_{oid}",
                  "device": device, "origin": ORIGIN, "availability": availability,
                  "availability_mode": "all"}
        out[topics.config(entity.component, node_id(info.ieee), oid)] = config
    return out


def hub_configs(hub_id: str, topics: HaTopics, sw_version: str) -> dict[str, dict[str, Any]]:
    """The hub itself: a connectivity sensor on the bridge state (online while connected)."""
    node = hub_node_id(hub_id)
    config = {"name": "Connection state", "device_class": "connectivity",
              "entity_category": "diagnostic", "state_topic": topics.bridge_state,
              "payload_on": ONLINE, "payload_off": OFFLINE, "unique_id": f"{node}_connection_state",
              "device": hub_device(hub_id, sw_version),
              "origin": ORIGIN}
    return {topics.config("binary_sensor", node, "connection_state"): config}
