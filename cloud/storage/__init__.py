"""Storage behind small interfaces: a SQL registry and a telemetry backend chosen by settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cloud.settings import CloudSettings
from cloud.storage.base import Registry, TelemetryReader, TelemetryWriter
from cloud.storage.sql import SqlRegistry, SqlTelemetry
from cloud.storage.sql_outbox import SqlTelemetryOutbox
from cloud.storage.sql_usage import SqlUsage
from cloud.storage.usage import UsageStore


@dataclass(kw_only=True)
class Storage:
    """The registry, where telemetry history is read, the API's rate-limit counters and metering
    (in the registry's database), and, for a separate telemetry backend, where telemetry is
    exported and the queue of points waiting for it."""

    registry: Registry
    telemetry: TelemetryReader
    usage: UsageStore
    telemetry_sink: TelemetryWriter | None = None
    telemetry_outbox: SqlTelemetryOutbox | None = None

    def close(self) -> None:
        self.telemetry.close()
        if self.telemetry_sink is not None and self.telemetry_sink is not self.telemetry:
            self.telemetry_sink.close()
        self.registry.close()


def _registry(settings: CloudSettings, *, export_telemetry: bool = False) -> SqlRegistry:
    return SqlRegistry.from_url(settings.database_url, migrate=settings.database_auto_migrate,
                                export_telemetry=export_telemetry)


def prepare_database(settings: CloudSettings) -> None:
    """Migrate the database now (or only check it, with auto-migrate off): raises SchemaOutdated
    when this Spoke cannot use it."""
    _registry(settings).close()


def open_storage(settings: CloudSettings) -> Storage:
    """Open the registry (and telemetry backend) named by the settings; migrates its database
    unless ``database_auto_migrate`` is off.

    With InfluxDB the SQL ledger stays the source of truth: the ingest queues each stored event's
    point in the same transaction, and ``cloud.telemetry_export`` moves the queue to InfluxDB.
    History is read from SQL unless ``history_source`` says InfluxDB.
    """
    export = settings.telemetry_backend == "influxdb"
    registry = _registry(settings, export_telemetry=export)
    sql_telemetry = SqlTelemetry(registry.engine)
    usage = SqlUsage(registry.engine)
    if not export:
        return Storage(registry=registry, telemetry=sql_telemetry, usage=usage)
    from cloud.storage.influx import InfluxTelemetry

    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    influx = InfluxTelemetry(settings.influx_url, token, settings.influx_org, settings.influx_bucket)
    reader: TelemetryReader = influx if settings.history_source == "influxdb" else sql_telemetry
    return Storage(registry=registry, telemetry=reader, usage=usage, telemetry_sink=influx,
                   telemetry_outbox=SqlTelemetryOutbox(registry.engine))


@contextmanager
def open_registry(settings: CloudSettings) -> Iterator[Registry]:
    """The registry alone, for one-off tasks such as token management from the CLI."""
    registry = _registry(settings)
    try:
        yield registry
    finally:
        registry.close()


@contextmanager
def open_usage(settings: CloudSettings) -> Iterator[UsageStore]:
    """The metering alone, for reading usage from the CLI."""
    registry = _registry(settings)
    try:
        yield SqlUsage(registry.engine)
    finally:
        registry.close()
