"""Cluster → capability tables, one module per ZCL functional domain (as in zigpy and ZHA)."""
