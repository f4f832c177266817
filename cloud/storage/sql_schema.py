"""SQL tables of the cloud (SQLAlchemy Core), shared by SQLite and PostgreSQL.

A change here needs a migration revision: see ``cloud.storage.migrations``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone, PostgreSQL does)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()
_ID = 64
_BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER keys

hubs = Table(
    "hubs",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("online", Boolean, nullable=True),  # None until the hub's status was seen
    Column("online_changed_at", UtcDateTime, nullable=True),
    Column("last_seen", UtcDateTime, nullable=True),
    Column("events_received", BigInteger, nullable=False, default=0),
    Column("events_stored", BigInteger, nullable=False, default=0),
    Column("duplicates", BigInteger, nullable=False, default=0),
    Column("gaps", BigInteger, nullable=False, default=0),
    Column("last_seq", BigInteger, nullable=True),
    Column("status", JSON, nullable=True),  # the hub's last status, its group table apart
    Column("epoch", String(32), nullable=True),  # the hub's current ledger epoch
    # The hub's last known Zigbee group table (HubStatus.groups): written only by a status that
    # carries one, so it outlives the last will (which says nothing of groups). None: never said.
    Column("groups", JSON, nullable=True),
)

# One row per hub and ledger epoch. ``mark``: every sequence number up to it is committed (stored,
# or kept as a dead letter, or dropped by the hub's own outbox bound): what the hub is told.
ledgers = Table(
    "ledgers",
    metadata,
    Column("hub_id", String(_ID), primary_key=True),
    Column("epoch", String(32), primary_key=True),
    Column("mark", BigInteger, nullable=False, default=0),
    Column("last_seq", BigInteger, nullable=True),  # the highest sequence number stored
    Column("first_seen", UtcDateTime, nullable=False),
    Column("stored", BigInteger, nullable=False, default=0),
    Column("duplicates", BigInteger, nullable=False, default=0),
    Column("gaps", BigInteger, nullable=False, default=0),
    Column("refused", BigInteger, nullable=False, default=0),  # implausible sequence numbers
)

# Availability columns hold what the hub reported; readers overlay "hub offline" from hubs.online.
# Lists walk devices hub by hub in id order (ix_devices_hub_id_id), which keyset pages resume from.
devices = Table(
    "devices",
    metadata,
    Column("id", String(2 * _ID), primary_key=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("ieee", String(23), nullable=False),
    Column("nwk", Integer, nullable=True),
    Column("manufacturer", String(128), nullable=True),
    Column("model", String(128), nullable=True),
    Column("name", String(128), nullable=True),
    Column("quirk", String(256), nullable=True),
    Column("power_source", String(16), nullable=False, default="unknown"),
    Column("available", Boolean, nullable=False, default=True),
    Column("availability_reason", Text, nullable=True),
    Column("availability_changed_at", UtcDateTime, nullable=True),
    Column("capabilities", JSON, nullable=False),
    Column("state_at", UtcDateTime, nullable=True),  # hub time of the newest value in capabilities
    # {instance: {attribute: {"min", "max"}}} as the hub described them; commands are checked with it
    Column("constraints", JSON, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("removed", Boolean, nullable=False, default=False),
    UniqueConstraint("hub_id", "ieee", name="uq_devices_hub_ieee"),
    Index("ix_devices_hub_id_id", "hub_id", "id"),
)

# The event ledger: one row per (hub, seq); it is also the SQL telemetry store.
events = Table(
    "events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("epoch", String(32), nullable=False, default=""),
    Column("seq", BigInteger, nullable=False),
    Column("device_id", String(2 * _ID), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("attribute", String(64), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("value_num", Float, nullable=True),  # numbers and booleans, for aggregation
    Column("value_json", Text, nullable=False),  # the exact value as it came
    Column("unit", String(16), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("hub_id", "epoch", "seq", name="uq_events_hub_epoch_seq"),
    Index("ix_events_series", "device_id", "capability", "attribute", "ts"),
)

# Telemetry points waiting to be exported to InfluxDB (telemetry_backend "influxdb"): added in the
# ingest transaction that stores their event, deleted once InfluxDB took them; taken in id order.
# AUTOINCREMENT: SQLite never reuses an id, so a newer point never sorts before an older one.
telemetry_outbox = Table(
    "telemetry_outbox",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("device_id", String(2 * _ID), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("attribute", String(64), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("value_json", Text, nullable=False),  # the exact value as it came (its JSON type kept)
    Column("unit", String(16), nullable=True),
    Column("queued_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# Hub messages that were valid but could not be applied (an event for a device the cloud does not
# know, a result for an unknown command), kept rather than lost. Dead-lettered events count as
# committed in their ledger, and become events when their device is described (a broker may deliver
# an event before the description the hub sent first).
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("epoch", String(32), nullable=True),
    Column("seq", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("ieee", String(23), nullable=True),  # an event's device: promoted once it is described
    Column("payload", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("hub_id", "epoch", "seq", name="uq_dead_letters_hub_epoch_seq"),
    Index("ix_dead_letters_device", "hub_id", "ieee"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("device_id", String(2 * _ID), nullable=False, index=True),
    Column("ieee", String(23), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("command", String(64), nullable=False),
    Column("args", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("state", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("duration_ms", Float, nullable=True),
)

# The households one cloud serves: every hub (through its registration), device and token belongs to
# one. A hub registered without an account, and a token from before accounts, belong to DEFAULT_ACCOUNT.
DEFAULT_ACCOUNT = "default"

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex; never the token
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("account", String(_ID), nullable=False, server_default=DEFAULT_ACCOUNT, index=True),
    Column("scopes", String(64), nullable=False, server_default="admin control read"),  # expanded
    Column("expires_at", UtcDateTime, nullable=True),
)

# Hubs given broker credentials. No password: it is derived from the generation and the cloud's
# broker secret, so the broker's accounts can be rebuilt from this table. An account's lists walk
# its hubs in id order (ix_hub_registrations_account).
hub_registrations = Table(
    "hub_registrations",
    metadata,
    Column("hub_id", String(_ID), primary_key=True),
    Column("account", String(128), nullable=False),  # DEFAULT_ACCOUNT when registered without one
    Column("generation", Integer, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("rotated_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_hub_registrations_account", "account", "hub_id"),
)

# Pairing progress per hub; ``id`` is the cursor clients poll with. ``digest`` (of the event) makes a
# redelivered event, or one ingested by several cloud processes, land once. The newest
# ``PAIRING_EVENTS_KEPT`` per hub are kept. AUTOINCREMENT: SQLite never reuses an id.
PAIRING_EVENTS_KEPT = 1000

pairing_events = Table(
    "pairing_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("step", String(32), nullable=False),
    Column("ieee", String(23), nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
    Column("until", UtcDateTime, nullable=True),
    Column("capabilities", JSON, nullable=True),
    Column("manufacturer", Text, nullable=True),
    Column("model", Text, nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("hub_id", "digest", name="uq_pairing_events_hub_digest"),
    Index("ix_pairing_events_hub_id", "hub_id", "id"),
    sqlite_autoincrement=True,
)

# Idempotency keys of an account's actions (commands, pairing, rename, remove), kept 24 h: a retry with
# the same key gets the first request's command, or its stored answer, and never runs it again.
# ``fingerprint`` (of method, route and body) tells a retry from a different request under a reused key.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account", String(_ID), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("command_id", String(_ID), nullable=True),
    Column("status_code", Integer, nullable=True),  # set once the answer is final
    Column("response", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False, index=True),
)

# Requests per token and kind (reads, commands) in one fixed rate-limit window, shared by every cloud
# process on this database; a token's older windows are deleted when it opens a new one.
rate_windows = Table(
    "rate_windows",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),  # unix seconds, a multiple of the window
    Column("count", Integer, nullable=False),
)

# Metering: requests per UTC day, token, method, route template and status class ("2xx").
api_usage = Table(
    "api_usage",
    metadata,
    Column("day", Date, primary_key=True),
    Column("token_id", String(32), primary_key=True),
    Column("method", String(8), primary_key=True),
    Column("route", String(256), primary_key=True),
    Column("status", String(3), primary_key=True),
    Column("account", String(_ID), nullable=False),  # the token's, for reading one account's usage
    Column("count", BigInteger, nullable=False),
    Index("ix_api_usage_account_day", "account", "day"),
)
