"""Home automation: the Electrical Measurement cluster (power, voltage, current, frequency)."""

from __future__ import annotations

from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement

from device_handlers.convert import identity, multiplier_divisor
from device_handlers.tables import AttributeMap, ClusterTable, ReportConfig

_attrs = ElectricalMeasurement.AttributeDefs
_REPORT = ReportConfig(min=5, max=900, change=1)  # ZHA's electrical measurement reporting

_power = multiplier_divisor(_attrs.ac_power_multiplier, _attrs.ac_power_divisor, ndigits=1,
                            fallbacks=(_attrs.power_multiplier, _attrs.power_divisor))

ELECTRICAL_MEASUREMENT = ClusterTable(
    cluster=ElectricalMeasurement,
    attributes=(
        AttributeMap(attribute=_attrs.active_power, capability="power", field="power",
                     convert=_power, report=_REPORT),
        AttributeMap(attribute=_attrs.apparent_power, capability="apparent_power",
                     field="apparent_power", convert=_power, report=_REPORT),
        AttributeMap(attribute=_attrs.rms_voltage, capability="voltage", field="voltage",
                     convert=multiplier_divisor(_attrs.ac_voltage_multiplier,
                                                _attrs.ac_voltage_divisor, ndigits=1),
                     report=_REPORT),
        AttributeMap(attribute=_attrs.rms_current, capability="current", field="current",
                     convert=multiplier_divisor(_attrs.ac_current_multiplier,
                                                _attrs.ac_current_divisor),
                     report=_REPORT),
        AttributeMap(attribute=_attrs.ac_frequency, capability="frequency", field="frequency",
                     convert=multiplier_divisor(_attrs.ac_frequency_multiplier,
                                                _attrs.ac_frequency_divisor, ndigits=2),
                     report=_REPORT),
        # power_factor is already a percentage (-100..100).
        AttributeMap(attribute=_attrs.power_factor, capability="power_factor",
                     field="power_factor", convert=identity),
    ),
)

TABLES = (ELECTRICAL_MEASUREMENT,)
