"""Smart energy: the Metering cluster (energy delivered, instantaneous demand)."""

from __future__ import annotations

from zigpy.zcl.clusters.smartenergy import Metering, MeteringUnitofMeasure

from device_handlers.convert import attr_in, multiplier_divisor
from device_handlers.tables import AttributeMap, ClusterTable, ReportConfig

_attrs = Metering.AttributeDefs

# Only electric meters (unit kWh/kW) map onto energy and power; gas and water meters need
# volume capabilities first. A meter that has not told its unit yet is taken as electric.
_electric = attr_in(
    _attrs.unit_of_measure,
    frozenset({MeteringUnitofMeasure.Kwh_and_Kwh_binary}),
    unknown=True,
)

METERING = ClusterTable(
    cluster=Metering,
    attributes=(
        AttributeMap(attribute=_attrs.current_summ_delivered, capability="energy",
                     field="energy", convert=multiplier_divisor(_attrs.multiplier, _attrs.divisor),
                     when=_electric, report=ReportConfig(min=30, max=900, change=1)),
        # Demand is in kW; a plug with ElectricalMeasurement too reports power from there.
        AttributeMap(attribute=_attrs.instantaneous_demand, capability="power", field="power",
                     convert=multiplier_divisor(_attrs.multiplier, _attrs.divisor, factor=1000,
                                                ndigits=1),
                     when=_electric, priority=-1, report=ReportConfig(min=5, max=900, change=1)),
    ),
)

TABLES = (METERING,)
