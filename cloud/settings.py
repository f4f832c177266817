"""Cloud configuration: environment (``SPOKE_*``), ``.env``, a TOML file, then defaults."""

from __future__ import annotations

import os
import secrets
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cloud.rate_limits import Rate, parse_rate
from wire.contract import MAX_BATCH_EVENTS

CONFIG_ENV = "SPOKE_CONFIG"
DEFAULT_CONFIG_FILE = "spoke.toml"


def _default_client_id() -> str:
    """A client id unique to this process (and to this settings object)."""
    return f"spoke-cloud-{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}"


def _toml_values(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    """Values from ``$SPOKE_CONFIG`` (or ./spoke.toml): its ``[cloud]`` table, else top level."""
    path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
    data: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as f:
            loaded = tomllib.load(f)
        table = loaded.get("cloud", loaded)
        data = {k: v for k, v in table.items() if not isinstance(v, dict)}
    return InitSettingsSource(settings_cls, data)


class CloudSettings(BaseSettings):
    """Everything the cloud service needs; each field is ``SPOKE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SPOKE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///.spoke/cloud.db"
    # Migrate the database to this Spoke's schema when the cloud starts (one process at a time).
    # Off: an operator runs `spoke cloud migrate` first, and a cloud meeting an older schema refuses
    # to start.
    database_auto_migrate: bool = True
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    # The broker login: by default the cloud's own account ("spoke-cloud") with the password derived
    # from broker_secret_file, the 0600 file `spoke cloud broker init` creates; the hubs' passwords
    # are derived from the same secret.
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    broker_secret_file: Path = Path(".spoke/broker-secret")
    # Bring the broker's hub accounts in line with the registry when the cloud starts (it needs the
    # cloud's own account, which may use the broker's dynamic-security API).
    broker_sync: bool = True
    # TLS to the broker, used when a CA is set: the CA that signed the broker's certificate, an
    # optional client certificate and key, and the name to verify instead of mqtt_host.
    mqtt_tls_ca: FilePath | None = None
    mqtt_tls_cert: FilePath | None = None
    mqtt_tls_key: FilePath | None = None
    mqtt_tls_server_name: str | None = None
    mqtt_client_id: str = Field(default_factory=_default_client_id)
    # "auto" tries MQTT 5 and falls back to 3.1.1 (the embedded amqtt broker speaks only 3.1.1).
    mqtt_protocol: Literal["auto", "5", "3.1.1"] = "auto"
    # Seconds the broker keeps this client's session (subscriptions, unacked messages) while it is
    # away; 0 = a clean session each time. Use a stable mqtt_client_id to survive process restarts.
    mqtt_session_expiry: int = Field(default=300, ge=0)
    # Shared-subscription group for events when several cloud processes run behind one broker.
    mqtt_shared_group: str | None = None
    mqtt_keepalive: int = Field(default=30, ge=5)
    # How long startup waits for the broker before serving anyway (/readyz then says mqtt is down).
    mqtt_startup_wait: float = Field(default=5.0, ge=0)
    cloud_host: str = "127.0.0.1"
    cloud_port: int = Field(default=8000, ge=0, le=65535)
    command_timeout: float = Field(default=10.0, gt=0)
    command_ttl: float = Field(default=30.0, gt=0)
    # "influxdb": every stored event is also exported to InfluxDB (InfluxDB 2.x write API) through
    # a queue in the database, kept until InfluxDB took it; the SQL ledger stays the source of truth.
    telemetry_backend: Literal["sql", "influxdb"] = "sql"
    influx_url: str = "http://127.0.0.1:8086"
    influx_token: SecretStr | None = None
    influx_org: str = "spoke"
    influx_bucket: str = "spoke"
    # Where the telemetry API reads history: the SQL ledger (complete whatever InfluxDB does), or
    # InfluxDB with Flux queries (needs telemetry_backend "influxdb"; not checked by Spoke's tests).
    history_source: Literal["sql", "influxdb"] = "sql"
    # The export to InfluxDB: points per write, seconds between looks at an empty queue, and the
    # longest wait between retries while InfluxDB refuses or is unreachable (doubling from 0.5 s).
    influx_export_batch: int = Field(default=2000, ge=1, le=50_000)
    influx_export_interval: float = Field(default=0.5, gt=0)
    influx_export_max_backoff: float = Field(default=10.0, gt=0)
    ingest_batch_size: int = Field(default=500, ge=1)
    # The most events a hub may put in one EventBatch, advertised to hubs in every acknowledgement
    # (LedgerAck.batch_max); 0: advertise none, so hubs send single events (batches are still read).
    event_batch_max: int = Field(default=500, ge=0, le=MAX_BATCH_EVENTS)
    # Seconds between two acknowledgements that only move a hub's mark: the marks committed in
    # between go out as one, the latest (a thousand hubs, each in nearly every batch, cost one
    # publish per hub per batch otherwise; a hub sending two events a second is acknowledged once
    # a second). Answers to a status and acknowledgements of command results go out at once.
    # Far below the hubs' resend timer (10 s); 0: every batch acknowledges at once.
    ack_interval: float = Field(default=1.0, ge=0, le=3.0)
    # Seconds the ingest may hold received messages without storing any before /readyz says it is
    # stalled (a worker stuck on a database lock, or storage refusing writes).
    ingest_stall_after: float = Field(default=30.0, gt=0)
    # The operator's bearer token for GET /metrics (across all accounts, so not an API token): a
    # 0600 file, created with a random token on first start; Prometheus reads the same file
    # (`authorization: credentials_file:`).
    metrics_token_file: Path = Path(".spoke/metrics-token")
    telemetry_max_limit: int = Field(default=10_000, ge=1)
    # Bytes of request body the API takes; a larger one is answered 413 before it is parsed.
    api_max_body: int = Field(default=64 * 1024, ge=1)
    # Requests per API token, counted in the database (so across all cloud processes on it) in fixed
    # windows: "N/second|minute|hour|day", "N/10s", or "N SECONDS"; "off" for no limit. Reads are
    # GET; commands every other method (commands, pairing, rename, tokens). A dashboard polling a
    # few views every second uses a few hundred reads a minute.
    rate_limit_reads: str = "1200/minute"
    rate_limit_commands: str = "120/minute"
    # Count every authenticated request per token, route and UTC day (GET /api/v1/usage).
    usage_metering: bool = True
    # Live updates (GET /api/v1/stream): streams one token may hold open at once, and the messages
    # a stream may hold for a slow client before it is dropped.
    live_streams_per_token: int = Field(default=4, ge=1)
    live_queue_size: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _history_needs_influx(self) -> CloudSettings:
        if self.history_source == "influxdb" and self.telemetry_backend != "influxdb":
            raise ValueError('history_source "influxdb" needs telemetry_backend "influxdb"')
        return self

    @field_validator("rate_limit_reads", "rate_limit_commands")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    def rate_limits(self) -> tuple[Rate | None, Rate | None]:
        """The (reads, commands) limits; None where off."""
        return parse_rate(self.rate_limit_reads), parse_rate(self.rate_limit_commands)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, _toml_values(settings_cls)

    def sqlite_path(self) -> Path | None:
        """The database file for a file-backed SQLite URL, else None."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        rest = self.database_url[len(prefix) :].split("?", 1)[0]
        if rest in ("", ":memory:"):
            return None
        return Path(rest)
