"""Manufacturer-specific clusters that zha-quirks define, mapped where they carry device state.

zigpy has no definition for these cluster ids; a zha-quirk gives a device its own cluster class
with named attributes. The classes below only declare the cluster id and the attributes the
tables name (never the quirk's behaviour), so a table entry can refer to them. Entries bind to a
device's cluster by attribute name: a device whose cluster with the same id is not the quirk's
(another vendor's use of the id) has no such attribute and gets no reading.
"""

from __future__ import annotations

import math
from typing import Any, Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, ZCLAttributeDef

from device_handlers.convert import Cached, divide, flag
from device_handlers.tables import (
    AttributeMap,
    ClusterTable,
    CommandArgs,
    CommandMap,
    ReportConfig,
    write_attribute,
)
from wire.contract import Value


class IkeaAirPurifier(Cluster):
    """IKEA STARKVIND air purifier control, 0xFC7D, as zha-quirks' ``IkeaAirpurifier`` defines
    it. With the quirk, fan_mode is 0 (off), 1 (auto) or a speed 2-10 and fan_speed the running
    speed 0-10 (the quirk turns the device's 10-50 into 2-10)."""

    cluster_id = t.uint16_t(0xFC7D)
    ep_attribute = "ikea_airpurifier"
    _skip_registry = True

    class AttributeDefs(BaseAttributeDefs):
        fan_mode: Final = ZCLAttributeDef(id=t.uint16_t(0x0006), type=t.uint8_t,
                                          is_manufacturer_specific=True)
        fan_speed: Final = ZCLAttributeDef(id=t.uint16_t(0x0007), type=t.uint8_t,
                                           is_manufacturer_specific=True)


class SmartThingsAcceleration(Cluster):
    """SmartThings multi-sensor accelerometer, 0xFC02, as zha-quirks' ``SmartThingsAccelCluster``
    defines it: bit 0 of ``acceleration`` is set while the sensor moves."""

    cluster_id = t.uint16_t(0xFC02)
    ep_attribute = "accelerometer"
    _skip_registry = True

    class AttributeDefs(BaseAttributeDefs):
        acceleration: Final = ZCLAttributeDef(id=t.uint16_t(0x0010), type=t.bitmap8,
                                              is_manufacturer_specific=True)


class SmartThingsHumidity(Cluster):
    """SmartThings/CentraLite relative humidity, 0xFC45, as zha-quirks'
    ``SmartthingsRelativeHumidityCluster`` defines it: the ZCL humidity attribute (0.01 %) on a
    manufacturer cluster id, which the 3310 temperature/humidity sensors use instead of 0x0405."""

    cluster_id = t.uint16_t(0xFC45)
    ep_attribute = "smartthings_humidity"
    _skip_registry = True

    class AttributeDefs(BaseAttributeDefs):
        measured_value: Final = ZCLAttributeDef(id=t.uint16_t(0x0000), type=t.int16s,
                                                is_manufacturer_specific=True)


_purifier = IkeaAirPurifier.AttributeDefs
_PURIFIER_MODES: dict[int, str] = {0: "off", 1: "auto"}


def _purifier_mode(raw: Any, cached: Cached) -> Value | None:
    return _PURIFIER_MODES.get(int(raw), "on")


def _purifier_percentage(raw: Any, cached: Cached) -> Value | None:
    """Speeds 1-10 as 10-100 % (ZHA's range for the STARKVIND); 0 is off."""
    return max(0, min(100, int(raw) * 10))


def _purifier_speed_for(args: CommandArgs) -> int:
    """0 % → off (0); otherwise speed 2-10 (1 would be auto)."""
    percentage = float(args["percentage"] or 0)
    return 0 if percentage <= 0 else max(2, min(10, math.ceil(percentage / 10)))


# Model-specific (IKEA STARKVIND): its fan is this manufacturer cluster, not the ZCL Fan cluster.
IKEA_AIR_PURIFIER = ClusterTable(
    cluster=IkeaAirPurifier,
    attributes=(
        AttributeMap(attribute=_purifier.fan_mode, capability="fan", field="mode",
                     convert=_purifier_mode),
        AttributeMap(attribute=_purifier.fan_speed, capability="fan", field="percentage",
                     convert=_purifier_percentage),
    ),
    commands=(
        CommandMap(capability="fan", command="set_percentage",
                   action=write_attribute(_purifier.fan_mode, _purifier_speed_for)),
        CommandMap(capability="fan", command="set_mode",
                   action=write_attribute(
                       _purifier.fan_mode,
                       lambda args: {"off": 0, "auto": 1, "on": 10}[str(args["mode"])])),
    ),
)

# Model-specific (SmartThings/Samjin multi-sensor): its accelerometer is this manufacturer cluster.
SMARTTHINGS_ACCELERATION = ClusterTable(
    cluster=SmartThingsAcceleration,
    attributes=(
        AttributeMap(attribute=SmartThingsAcceleration.AttributeDefs.acceleration,
                     capability="acceleration", field="moving", convert=flag(0x01)),
    ),
)

# Model-specific (CentraLite 3310): its humidity is this manufacturer cluster, not 0x0405.
SMARTTHINGS_HUMIDITY = ClusterTable(
    cluster=SmartThingsHumidity,
    attributes=(
        AttributeMap(attribute=SmartThingsHumidity.AttributeDefs.measured_value,
                     capability="humidity", field="humidity", convert=divide(100),
                     report=ReportConfig(min=30, max=900, change=100)),
    ),
)

TABLES = (IKEA_AIR_PURIFIER, SMARTTHINGS_ACCELERATION, SMARTTHINGS_HUMIDITY)
