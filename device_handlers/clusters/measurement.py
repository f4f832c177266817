"""Measurement and sensing clusters: temperature, humidity, pressure, light, occupancy, air."""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.clusters.measurement import (
    PM25,
    CarbonDioxideConcentration,
    CarbonMonoxideConcentration,
    FlowMeasurement,
    FormaldehydeConcentration,
    IlluminanceMeasurement,
    LeafWetness,
    OccupancySensing,
    PressureMeasurement,
    RelativeHumidity,
    SoilMoisture,
    TemperatureMeasurement,
)
from zigpy.zcl.foundation import BaseAttributeDefs, ZCLAttributeDef

from device_handlers.convert import (
    attr_missing,
    divide,
    flag,
    identity,
    log_lux,
    scale,
    scaled_pressure,
)
from device_handlers.tables import AttributeMap, ClusterTable, ReportConfig


class VOCLevel(Cluster):
    """VOC level, 0x042E. zigpy has no definition for it; ZHA (``VOC_LEVEL_CLUSTER``) and
    zha-quirks use this id, and only quirked devices expose it with a ``measured_value``.
    Declared here (outside zigpy's registry) so the table below can name its attribute."""

    cluster_id = t.uint16_t(0x042E)
    ep_attribute = "voc_level"
    _skip_registry = True

    class AttributeDefs(BaseAttributeDefs):
        measured_value: Final = ZCLAttributeDef(id=t.uint16_t(0x0000), type=t.Single)


TEMPERATURE = ClusterTable(
    cluster=TemperatureMeasurement,
    attributes=(
        AttributeMap(attribute=TemperatureMeasurement.AttributeDefs.measured_value,
                     capability="temperature", field="temperature", convert=divide(100),
                     report=ReportConfig(min=30, max=900, change=50)),
    ),
)

HUMIDITY = ClusterTable(
    cluster=RelativeHumidity,
    attributes=(
        AttributeMap(attribute=RelativeHumidity.AttributeDefs.measured_value,
                     capability="humidity", field="humidity", convert=divide(100),
                     report=ReportConfig(min=30, max=900, change=100)),
    ),
)

_scaled = PressureMeasurement.AttributeDefs.scaled_value

PRESSURE = ClusterTable(
    cluster=PressureMeasurement,
    attributes=(
        # measured_value is in 0.1 kPa = hPa; devices with the extended scaled_value give more
        # precision, so measured_value only counts while scaled_value is unknown.
        AttributeMap(attribute=PressureMeasurement.AttributeDefs.measured_value,
                     capability="pressure", field="pressure", convert=identity,
                     when=attr_missing(_scaled), report=ReportConfig(min=30, max=900, change=1)),
        AttributeMap(attribute=_scaled, capability="pressure", field="pressure",
                     convert=scaled_pressure(PressureMeasurement.AttributeDefs.scale),
                     report=ReportConfig(min=30, max=900, change=1)),
    ),
)

ILLUMINANCE = ClusterTable(
    cluster=IlluminanceMeasurement,
    attributes=(
        AttributeMap(attribute=IlluminanceMeasurement.AttributeDefs.measured_value,
                     capability="illuminance", field="illuminance", convert=log_lux,
                     report=ReportConfig(min=30, max=900, change=1)),
    ),
)

OCCUPANCY = ClusterTable(
    cluster=OccupancySensing,
    attributes=(
        AttributeMap(attribute=OccupancySensing.AttributeDefs.occupancy,
                     capability="occupancy", field="occupied",
                     convert=flag(OccupancySensing.Occupancy.Occupied),
                     report=ReportConfig(min=0, max=900, change=1)),
    ),
)

SOIL_MOISTURE = ClusterTable(
    cluster=SoilMoisture,
    attributes=(
        AttributeMap(attribute=SoilMoisture.AttributeDefs.measured_value,
                     capability="soil_moisture", field="soil_moisture", convert=divide(100),
                     report=ReportConfig(min=30, max=900, change=100)),
    ),
)

PM25_TABLE = ClusterTable(
    cluster=PM25,
    attributes=(
        # measured_value is a float in µg/m³.
        AttributeMap(attribute=PM25.AttributeDefs.measured_value, capability="pm25",
                     field="pm25", convert=scale(1, ndigits=1),
                     report=ReportConfig(min=30, max=900, change=0.1)),
    ),
)

CO2 = ClusterTable(
    cluster=CarbonDioxideConcentration,
    attributes=(
        # Concentration clusters report a fraction (float); * 1e6 gives ppm.
        AttributeMap(attribute=CarbonDioxideConcentration.AttributeDefs.measured_value,
                     capability="co2", field="co2", convert=scale(1e6, ndigits=0),
                     report=ReportConfig(min=30, max=900, change=0.000001)),
    ),
)

CO = ClusterTable(
    cluster=CarbonMonoxideConcentration,
    attributes=(
        AttributeMap(attribute=CarbonMonoxideConcentration.AttributeDefs.measured_value,
                     capability="co", field="co", convert=scale(1e6, ndigits=1),
                     report=ReportConfig(min=30, max=900, change=0.000001)),
    ),
)

FORMALDEHYDE = ClusterTable(
    cluster=FormaldehydeConcentration,
    attributes=(
        AttributeMap(attribute=FormaldehydeConcentration.AttributeDefs.measured_value,
                     capability="formaldehyde", field="formaldehyde",
                     convert=scale(1e6, ndigits=2),
                     report=ReportConfig(min=30, max=900, change=0.000001)),
    ),
)

LEAF_WETNESS = ClusterTable(
    cluster=LeafWetness,
    attributes=(
        AttributeMap(attribute=LeafWetness.AttributeDefs.measured_value,
                     capability="leaf_wetness", field="leaf_wetness", convert=divide(100),
                     report=ReportConfig(min=30, max=900, change=100)),
    ),
)

FLOW = ClusterTable(
    cluster=FlowMeasurement,
    attributes=(
        # measured_value is in tenths of m³/h.
        AttributeMap(attribute=FlowMeasurement.AttributeDefs.measured_value, capability="flow",
                     field="flow", convert=divide(10), report=ReportConfig(min=30, max=900,
                                                                           change=1)),
    ),
)

VOC = ClusterTable(
    cluster=VOCLevel,
    attributes=(
        # Model-specific: the Aqara TVOC monitor's quirk mirrors its TVOC reading (in ppb) into
        # a VOC level cluster; other 0x042E implementations use other units, so they are not
        # mapped until we know them.
        AttributeMap(attribute=VOCLevel.AttributeDefs.measured_value, capability="voc",
                     field="voc", convert=scale(1, ndigits=0),
                     models=frozenset({"lumi.airmonitor.acn01"})),
    ),
)

TABLES = (TEMPERATURE, HUMIDITY, PRESSURE, ILLUMINANCE, OCCUPANCY, SOIL_MOISTURE, PM25_TABLE,
          CO2, CO, FORMALDEHYDE, LEAF_WETNESS, FLOW, VOC)
