"""Storage behind small interfaces: a SQL registry and a telemetry backend chosen by settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cloud.settings import CloudSettings
from cloud.storage.base import Registry, TelemetryReader, TelemetryWriter
from cloud.storage.sql import SqlRegistry, SqlTelemetry
from cloud.storage.sql_usage import SqlUsage
from cloud.storage.usage import UsageStore


@dataclass(kw_only=True)
class Storage:
    """The registry, where telemetry is read, and (for a separate backend) where it is copied;
    the API's rate-limit counters and metering (in the registry's database)."""

    registry: Registry
    telemetry: TelemetryReader
    usage: UsageStore
    telemetry_sink: TelemetryWriter | None = None

    def close(self) -> None:
        self.telemetry.close()
        self.registry.close()


def open_storage(settings: CloudSettings) -> Storage:
    """Open the registry (and telemetry backend) named by the settings; creates tables if needed."""
    registry = SqlRegistry.from_url(settings.database_url)
    if settings.telemetry_backend == "influxdb":
        from cloud.storage.influx import InfluxTelemetry

        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        influx = InfluxTelemetry(
            settings.influx_url, token, settings.influx_org, settings.influx_bucket
        )
        return Storage(registry=registry, telemetry=influx, telemetry_sink=influx,
                       usage=SqlUsage(registry.engine))
    return Storage(registry=registry, telemetry=SqlTelemetry(registry.engine),
                   usage=SqlUsage(registry.engine))


@contextmanager
def open_registry(settings: CloudSettings) -> Iterator[Registry]:
    """The registry alone, for one-off tasks such as token management from the CLI."""
    registry = SqlRegistry.from_url(settings.database_url)
    try:
        yield registry
    finally:
        registry.close()


@contextmanager
def open_usage(settings: CloudSettings) -> Iterator[UsageStore]:
    """The metering alone, for reading usage from the CLI."""
    registry = SqlRegistry.from_url(settings.database_url)  # creates the tables if needed
    try:
        yield SqlUsage(registry.engine)
    finally:
        registry.close()
