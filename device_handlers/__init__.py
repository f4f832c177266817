"""Spoke device handlers: zigpy devices seen through the capability vocabulary.

- ``model``: the interface the hub uses (Reading, CommandError, ConfigureStep, DeviceHandler).
- ``tables``: the shapes of the cluster → capability tables (AttributeMap, CommandMap, ...).
- ``convert``: raw ZCL value → capability value conversions and the predicates tables use.
- ``clusters/``: the tables, one module per ZCL domain (general, lighting, measurement, ...).
- ``registry``: tables by cluster id, and ``handler_for(device)``.
- ``handler``: the one table-driven DeviceHandler implementation.
"""
