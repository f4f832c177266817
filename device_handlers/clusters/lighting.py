"""Lighting: the Color Control cluster (color temperature, xy, hue/saturation, color mode)."""

from __future__ import annotations

from typing import Any

from zigpy.zcl.clusters.lighting import Color

from device_handlers.convert import (
    has_flag,
    kelvin_to_mireds,
    mireds_to_kelvin,
    named,
    percent_to,
    ranged,
    tenths,
)
from device_handlers.tables import (
    AttributeMap,
    ClusterTable,
    CommandArgs,
    CommandMap,
    LimitMap,
    ReportConfig,
    cluster_command,
)

_attrs = Color.AttributeDefs
_caps = Color.ColorCapabilities

# Which parts of the cluster a light implements (color_capabilities); unknown → assume all.
_has_ct = has_flag(_attrs.color_capabilities, _caps.Color_temperature)
_has_xy = has_flag(_attrs.color_capabilities, _caps.XY_attributes)
_has_hs = has_flag(_attrs.color_capabilities, _caps.Hue_and_saturation)
_has_enhanced_hue = has_flag(_attrs.color_capabilities, _caps.Enhanced_hue, unknown=False)
_has_color = has_flag(_attrs.color_capabilities, _caps.Hue_and_saturation | _caps.XY_attributes)

_MODES = {
    Color.ColorMode.Hue_and_saturation: "hs",
    Color.ColorMode.X_and_Y: "xy",
    Color.ColorMode.Color_temperature: "color_temperature",
}
_ENHANCED_MODES = {
    Color.EnhancedColorMode.Hue_and_saturation: "hs",
    Color.EnhancedColorMode.Enhanced_hue_and_saturation: "hs",
    Color.EnhancedColorMode.X_and_Y: "xy",
    Color.EnhancedColorMode.Color_temperature: "color_temperature",
}

_LIGHT_REPORT = ReportConfig(min=30, max=900, change=1)  # ZHA's light reporting


def _color_temp(args: CommandArgs) -> dict[str, Any]:
    return {
        "color_temp_mireds": kelvin_to_mireds(float(args["kelvin"] or 0)),
        "transition_time": tenths(float(args.get("transition") or 0)),
    }


def _xy(args: CommandArgs) -> dict[str, Any]:
    return {
        "color_x": round(float(args["x"] or 0) * 65535),
        "color_y": round(float(args["y"] or 0) * 65535),
        "transition_time": tenths(float(args.get("transition") or 0)),
    }


def _hue_saturation(args: CommandArgs) -> dict[str, Any]:
    return {
        "hue": min(254, round(float(args["hue"] or 0) * 254 / 360)),
        "saturation": percent_to(254, float(args["saturation"] or 0)),
        "transition_time": tenths(float(args.get("transition") or 0)),
    }


def _enhanced_hue_saturation(args: CommandArgs) -> dict[str, Any]:
    return {
        "enhanced_hue": min(65535, round(float(args["hue"] or 0) * 65535 / 360)),
        "saturation": percent_to(254, float(args["saturation"] or 0)),
        "transition_time": tenths(float(args.get("transition") or 0)),
    }


COLOR = ClusterTable(
    cluster=Color,
    attributes=(
        AttributeMap(attribute=_attrs.color_temperature, capability="color_temperature",
                     field="kelvin", convert=mireds_to_kelvin, when=_has_ct,
                     report=_LIGHT_REPORT),
        AttributeMap(attribute=_attrs.current_x, capability="color", field="x",
                     convert=ranged(65535, 1, ndigits=4), when=_has_xy, report=_LIGHT_REPORT),
        AttributeMap(attribute=_attrs.current_y, capability="color", field="y",
                     convert=ranged(65535, 1, ndigits=4), when=_has_xy, report=_LIGHT_REPORT),
        AttributeMap(attribute=_attrs.current_hue, capability="color", field="hue",
                     convert=ranged(254, 360), when=_has_hs),
        # The 16-bit hue, when the light has it, is the precise one (priority over current_hue).
        AttributeMap(attribute=_attrs.enhanced_current_hue, capability="color", field="hue",
                     convert=ranged(65535, 360), when=_has_enhanced_hue, priority=1),
        AttributeMap(attribute=_attrs.current_saturation, capability="color",
                     field="saturation", convert=ranged(254, 100), when=_has_hs),
        AttributeMap(attribute=_attrs.color_mode, capability="color", field="mode",
                     convert=named(_MODES), when=_has_color),
        AttributeMap(attribute=_attrs.enhanced_color_mode, capability="color", field="mode",
                     convert=named(_ENHANCED_MODES), when=_has_enhanced_hue, priority=1),
    ),
    commands=(
        CommandMap(capability="color_temperature", command="set_color_temperature",
                   action=cluster_command(Color.ServerCommandDefs.move_to_color_temp,
                                          _color_temp),
                   read_back=("color_temperature", "color")),
        CommandMap(capability="color", command="set_xy",
                   action=cluster_command(Color.ServerCommandDefs.move_to_color, _xy),
                   read_back=("color", "color_temperature")),
        # Lights with enhanced hue get the 16-bit command; the others the 8-bit one.
        CommandMap(capability="color", command="set_hue_saturation",
                   action=cluster_command(
                       Color.ServerCommandDefs.enhanced_move_to_hue_and_saturation,
                       _enhanced_hue_saturation),
                   read_back=("color", "color_temperature"), when=_has_enhanced_hue),
        CommandMap(capability="color", command="set_hue_saturation",
                   action=cluster_command(Color.ServerCommandDefs.move_to_hue_and_saturation,
                                          _hue_saturation),
                   read_back=("color", "color_temperature")),
    ),
    # The bulb's physical range (ZHA's min/max mireds); 0 mireds is no value, as ZHA takes it.
    limits=(LimitMap(capability="color_temperature", field="kelvin", convert=mireds_to_kelvin,
                     ends=((_attrs.color_temp_physical_min,), (_attrs.color_temp_physical_max,))),),
)

TABLES = (COLOR,)
