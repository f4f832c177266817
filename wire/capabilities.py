"""The capability vocabulary: what a device can report and what it can be told to do.

Part of the wire contract: the hub's device handlers map Zigbee onto these names, the cloud validates
REST commands against them, and apps read them. Adding a capability or an optional argument is
compatible; renaming or changing a unit is a wire-version change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from wire.contract import Constraints, Limits

AttrType = Literal["bool", "number", "integer", "string", "enum"]


@dataclass(frozen=True, kw_only=True)
class AttributeSpec:
    name: str
    type: AttrType
    unit: str | None = None
    values: tuple[str, ...] | None = None  # for enums
    # The range commands may set when the device does not report its own (see DeviceInfo.
    # constraints); None: only the argument's own bounds apply.
    limits: Limits | None = None


_JSON_KINDS = {bool: "a boolean", str: "a string", type(None): "null", list: "an array",
               dict: "an object"}


def _json_number(value: Any) -> Any:
    """Numbers must be JSON numbers: pydantic's lax mode would read "21.5" and true (as 1) too."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise PydanticCustomError("json_number", "Input should be a JSON number, not {kind}",
                                  {"kind": kind})
    return value


# A float argument takes any JSON number (21 or 21.5); an integer one a number without fraction.
JsonFloat = Annotated[float, BeforeValidator(_json_number)]
JsonInt = Annotated[int, BeforeValidator(_json_number)]


class Args(BaseModel):
    """Base of every command's argument model: unknown arguments are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass


class SetLevelArgs(Args):
    level: JsonFloat = Field(ge=0, le=100, description="brightness in percent")
    transition: JsonFloat = Field(default=0, ge=0, le=6553, description="seconds")


KELVIN_DEFAULT = Limits(min=2000, max=6500)


class SetColorTemperatureArgs(Args):
    kelvin: JsonInt = Field(
        ge=1000, le=10000,
        description=f"within the bulb's color_temperature.kelvin constraints, else "
                    f"{KELVIN_DEFAULT.min:g}-{KELVIN_DEFAULT.max:g} K")
    transition: JsonFloat = Field(default=0, ge=0, le=6553)


class SetColorXYArgs(Args):
    x: JsonFloat = Field(ge=0, le=1)
    y: JsonFloat = Field(ge=0, le=1)
    transition: JsonFloat = Field(default=0, ge=0, le=6553)


class SetHueSaturationArgs(Args):
    hue: JsonFloat = Field(ge=0, le=360, description="degrees")
    saturation: JsonFloat = Field(ge=0, le=100, description="percent")
    transition: JsonFloat = Field(default=0, ge=0, le=6553)


# Zigbee2MQTT's thermostats mostly expose 5-35 °C (ZHA falls back to the ZCL defaults, 7-30 °C
# heating and 16-32 °C cooling); a device that reports its limits is held to those instead.
SETPOINT_DEFAULT = Limits(min=5, max=35)


class SetpointArgs(Args):
    # The bounds are what a ZCL setpoint can hold (int16 hundredths of a degree, not below 0 K).
    value: JsonFloat = Field(
        ge=-273.15, le=327.67,
        description=f"degrees Celsius, within the thermostat's constraints for this setpoint, "
                    f"else {SETPOINT_DEFAULT.min:g}-{SETPOINT_DEFAULT.max:g} °C")


ThermostatMode = Literal["off", "auto", "cool", "heat", "emergency_heating", "precooling",
                         "fan_only", "dry", "sleep"]


class SetModeArgs(Args):
    mode: ThermostatMode


class SetPositionArgs(Args):
    position: JsonFloat = Field(ge=0, le=100, description="percent open")


FanMode = Literal["off", "low", "medium", "high", "on", "auto", "smart"]


class SetFanModeArgs(Args):
    mode: FanMode


class SetPercentageArgs(Args):
    percentage: JsonFloat = Field(ge=0, le=100)


class SirenArgs(Args):
    duration: JsonInt = Field(default=5, ge=1, le=600, description="seconds the warning lasts")


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    name: str
    args: type[Args] = NoArgs
    # argument -> the capability attribute it sets, checked against that attribute's limits
    sets: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, kw_only=True)
class CapabilitySpec:
    name: str
    attributes: tuple[AttributeSpec, ...]
    commands: tuple[CommandSpec, ...] = ()
    description: str = ""
    by_name: dict[str, CommandSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({c.name: c for c in self.commands})

    def attribute(self, name: str) -> AttributeSpec | None:
        return next((a for a in self.attributes if a.name == name), None)


def _sensor(name: str, attribute: str, unit: str | None, kind: AttrType = "number",
            description: str = "") -> CapabilitySpec:
    return CapabilitySpec(name=name, attributes=(AttributeSpec(name=attribute, type=kind, unit=unit),),
                          description=description)


def _binary(name: str, attribute: str, description: str) -> CapabilitySpec:
    return _sensor(name, attribute, None, "bool", description)


# ZCL's control sequence of operation: whether the equipment heats, cools or both.
_CONTROL_SEQUENCES = ("cooling_only", "cooling_with_reheat", "heating_only", "heating_with_reheat",
                      "cooling_and_heating", "cooling_and_heating_with_reheat")
_THERMOSTAT_MODES = ("off", "auto", "cool", "heat", "emergency_heating", "precooling", "fan_only",
                     "dry", "sleep")

CAPABILITIES: dict[str, CapabilitySpec] = {
    spec.name: spec
    for spec in (
        CapabilitySpec(
            name="switch",
            attributes=(AttributeSpec(name="on", type="bool"),),
            commands=(CommandSpec(name="on"), CommandSpec(name="off"), CommandSpec(name="toggle")),
            description="on/off output (lights, plugs, relays)",
        ),
        CapabilitySpec(
            name="level",
            attributes=(AttributeSpec(name="level", type="number", unit="%"),),
            commands=(CommandSpec(name="set_level", args=SetLevelArgs),),
            description="brightness or level, 0-100 %",
        ),
        CapabilitySpec(
            name="color_temperature",
            attributes=(AttributeSpec(name="kelvin", type="integer", unit="K",
                                      limits=KELVIN_DEFAULT),),
            commands=(CommandSpec(name="set_color_temperature", args=SetColorTemperatureArgs,
                                  sets={"kelvin": "kelvin"}),),
        ),
        CapabilitySpec(
            name="color",
            attributes=(
                AttributeSpec(name="x", type="number"),
                AttributeSpec(name="y", type="number"),
                AttributeSpec(name="hue", type="number", unit="°"),
                AttributeSpec(name="saturation", type="number", unit="%"),
                AttributeSpec(name="mode", type="enum", values=("hs", "xy", "color_temperature")),
            ),
            commands=(
                CommandSpec(name="set_xy", args=SetColorXYArgs),
                CommandSpec(name="set_hue_saturation", args=SetHueSaturationArgs),
            ),
        ),
        CapabilitySpec(
            name="thermostat",
            attributes=(
                AttributeSpec(name="local_temperature", type="number", unit="°C"),
                AttributeSpec(name="heating_setpoint", type="number", unit="°C",
                              limits=SETPOINT_DEFAULT),
                AttributeSpec(name="cooling_setpoint", type="number", unit="°C",
                              limits=SETPOINT_DEFAULT),
                AttributeSpec(name="mode", type="enum", values=_THERMOSTAT_MODES),
                AttributeSpec(name="running_state", type="enum",
                              values=("idle", "heat", "cool", "fan")),
                AttributeSpec(name="control_sequence", type="enum", values=_CONTROL_SEQUENCES),
            ),
            commands=(
                CommandSpec(name="set_heating_setpoint", args=SetpointArgs,
                            sets={"value": "heating_setpoint"}),
                CommandSpec(name="set_cooling_setpoint", args=SetpointArgs,
                            sets={"value": "cooling_setpoint"}),
                CommandSpec(name="set_mode", args=SetModeArgs),
            ),
        ),
        CapabilitySpec(
            name="window_covering",
            attributes=(AttributeSpec(name="position", type="number", unit="%"),),
            commands=(
                CommandSpec(name="open"),
                CommandSpec(name="close"),
                CommandSpec(name="stop"),
                CommandSpec(name="set_position", args=SetPositionArgs),
            ),
        ),
        CapabilitySpec(
            name="lock",
            attributes=(AttributeSpec(name="locked", type="bool"),),
            commands=(CommandSpec(name="lock"), CommandSpec(name="unlock")),
        ),
        CapabilitySpec(
            name="fan",
            attributes=(AttributeSpec(name="mode", type="enum",
                                      values=("off", "low", "medium", "high", "on", "auto",
                                              "smart")),
                        AttributeSpec(name="percentage", type="number", unit="%")),
            commands=(CommandSpec(name="set_mode", args=SetFanModeArgs),
                      CommandSpec(name="set_percentage", args=SetPercentageArgs)),
        ),
        CapabilitySpec(
            name="siren",
            attributes=(AttributeSpec(name="active", type="bool"),),
            commands=(CommandSpec(name="on", args=SirenArgs), CommandSpec(name="off")),
            description="warning devices (sound and strobe); the state is what the hub told them",
        ),
        _sensor("temperature", "temperature", "°C"),
        _sensor("humidity", "humidity", "%"),
        _sensor("illuminance", "illuminance", "lx"),
        _sensor("pressure", "pressure", "hPa"),
        _sensor("soil_moisture", "soil_moisture", "%"),
        _sensor("pm25", "pm25", "µg/m³"),
        _sensor("voc", "voc", "ppb"),
        _sensor("co2", "co2", "ppm"),
        _sensor("co", "co", "ppm", description="carbon monoxide concentration"),
        _sensor("formaldehyde", "formaldehyde", "ppm"),
        _sensor("leaf_wetness", "leaf_wetness", "%"),
        _sensor("flow", "flow", "m³/h", description="volume flow rate"),
        _sensor("battery", "battery", "%"),
        _sensor("battery_voltage", "voltage", "V"),
        _sensor("power", "power", "W"),
        _sensor("apparent_power", "apparent_power", "VA"),
        _sensor("energy", "energy", "kWh"),
        _sensor("voltage", "voltage", "V"),
        _sensor("current", "current", "A"),
        _sensor("frequency", "frequency", "Hz"),
        _sensor("power_factor", "power_factor", "%"),
        _sensor("device_temperature", "temperature", "°C"),
        _binary("occupancy", "occupied", "motion and presence sensors"),
        _binary("contact", "open", "door and window sensors (true = open)"),
        _binary("water_leak", "wet", "water leak sensors"),
        _binary("smoke", "detected", "smoke detectors"),
        _binary("vibration", "detected", "vibration sensors"),
        _binary("acceleration", "moving", "accelerometers: the device is moving"),
        _binary("tamper", "tampered", "tamper switches"),
        _binary("alarm", "active", "generic IAS alarm zones"),
        _binary("binary_input", "active", "generic binary inputs"),
    )
}


class CommandInvalid(ValueError):
    """A command that does not fit the vocabulary or the device."""


def validate_command(
    capability: str, command: str, args: dict[str, Any], supported: set[str] | None = None,
    constraints: Constraints | None = None,
) -> dict[str, Any]:
    """Check a command against the vocabulary, and against the device when given: its
    capabilities, and the limits it reports for the attributes the command sets.

    Returns the arguments with defaults filled in; raises CommandInvalid with a readable message.
    """
    spec = CAPABILITIES.get(split_instance(capability)[0])
    if spec is None:
        raise CommandInvalid(f"unknown capability {capability!r}")
    if supported is not None and capability not in supported:
        raise CommandInvalid(
            f"device has no {capability!r} capability (it has: {', '.join(sorted(supported))})"
        )
    cmd = spec.by_name.get(command)
    if cmd is None:
        known = ", ".join(spec.by_name) or "none"
        raise CommandInvalid(
            f"unknown command {command!r} for capability {capability!r} (commands: {known})"
        )
    try:
        checked = cmd.args.model_validate(args).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
        )
        raise CommandInvalid(f"invalid arguments for {capability}.{command}: {problems}") from None
    reported = (constraints or {}).get(capability, {})
    for arg, attribute in cmd.sets.items():
        _check_limits(spec, cmd, capability, arg, checked[arg], attribute, reported.get(attribute))
    return checked


def _check_limits(spec: CapabilitySpec, cmd: CommandSpec, capability: str, arg: str,
                  value: float, attribute: str, reported: Limits | None) -> None:
    attr = spec.attribute(attribute)
    assert attr is not None, f"{spec.name}.{cmd.name} sets an unknown attribute {attribute}"
    limits = effective_limits(cmd.args, arg, attr, reported)
    if limits is None or limits.min <= value <= limits.max:
        return
    unit = f" {attr.unit}" if attr.unit else ""
    span = f"{limits.min:g} to {limits.max:g}{unit}"
    why = (f"this device accepts {attribute} from {span}" if limits is not attr.limits
           else f"{attribute} is {span} unless the device reports its limits")
    raise CommandInvalid(f"invalid arguments for {capability}.{cmd.name}: {arg}: {value:g}{unit} "
                         f"is out of range: {why}")


def effective_limits(args: type[Args], arg: str, attr: AttributeSpec,
                     reported: Limits | None) -> Limits | None:
    """The range a command argument is held to: what the device reports, within the argument's
    own bounds; else the vocabulary's default. Reported limits outside those bounds altogether
    (a bulb claiming 153-526 K) are a device's error and are not used."""
    if reported is not None:
        low, high = _bounds(args, arg)
        lo, hi = max(reported.min, low), min(reported.max, high)
        if lo <= hi:
            return reported if (lo, hi) == (reported.min, reported.max) else Limits(min=lo, max=hi)
    return attr.limits


def _bounds(args: type[Args], arg: str) -> tuple[float, float]:
    low, high = float("-inf"), float("inf")
    for rule in args.model_fields[arg].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = float(rule.ge)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Le):
            high = float(rule.le)  # type: ignore[arg-type]
    return low, high


def instance_name(capability: str, endpoint: int, primary_endpoint: int) -> str:
    """Name of a capability instance in a device's state: the capability itself on its first
    endpoint, ``capability@endpoint`` on the others (e.g. the second gang of a wall switch)."""
    return capability if endpoint == primary_endpoint else f"{capability}@{endpoint}"


def split_instance(instance: str) -> tuple[str, int | None]:
    """Inverse of instance_name: ("switch@2" -> ("switch", 2), "switch" -> ("switch", None))."""
    base, sep, ep = instance.partition("@")
    if sep and ep.isdigit():
        return base, int(ep)
    return instance, None
