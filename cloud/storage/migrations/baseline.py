"""The cloud's schema when migrations began (revision 0001), frozen: what Spoke created before it had
migrations, and how a database from then, or from earlier, reaches it.

Never edit these tables: later schema changes are later revisions."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    inspect,
    select,
)

from cloud.storage.base import SchemaOutdated

schema = MetaData()
_ID = 64
_At = DateTime(timezone=True)
_BigId = BigInteger().with_variant(Integer(), "sqlite")
DEFAULT_ACCOUNT = "default"

Table(
    "hubs", schema,
    Column("id", String(_ID), primary_key=True),
    Column("online", Boolean, nullable=True),
    Column("online_changed_at", _At, nullable=True),
    Column("last_seen", _At, nullable=True),
    Column("events_received", BigInteger, nullable=False),
    Column("events_stored", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("gaps", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=True),
    Column("status", JSON, nullable=True),
    Column("epoch", String(32), nullable=True),
)
Table(
    "ledgers", schema,
    Column("hub_id", String(_ID), primary_key=True),
    Column("epoch", String(32), primary_key=True),
    Column("mark", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=True),
    Column("first_seen", _At, nullable=False),
    Column("stored", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("gaps", BigInteger, nullable=False),
    Column("refused", BigInteger, nullable=False),
)
Table(
    "devices", schema,
    Column("id", String(2 * _ID), primary_key=True),
    Column("hub_id", String(_ID), nullable=False, index=True),
    Column("ieee", String(23), nullable=False),
    Column("nwk", Integer, nullable=True),
    Column("manufacturer", String(128), nullable=True),
    Column("model", String(128), nullable=True),
    Column("name", String(128), nullable=True),
    Column("quirk", String(256), nullable=True),
    Column("power_source", String(16), nullable=False),
    Column("available", Boolean, nullable=False),
    Column("availability_reason", Text, nullable=True),
    Column("availability_changed_at", _At, nullable=True),
    Column("capabilities", JSON, nullable=False),
    Column("state_at", _At, nullable=True),
    Column("constraints", JSON, nullable=True),
    Column("updated_at", _At, nullable=False),
    Column("removed", Boolean, nullable=False),
    UniqueConstraint("hub_id", "ieee", name="uq_devices_hub_ieee"),
)
Table(
    "events", schema,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("epoch", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("device_id", String(2 * _ID), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("attribute", String(64), nullable=False),
    Column("ts", _At, nullable=False),
    Column("value_num", Float, nullable=True),
    Column("value_json", Text, nullable=False),
    Column("unit", String(16), nullable=True),
    Column("received_at", _At, nullable=False),
    UniqueConstraint("hub_id", "epoch", "seq", name="uq_events_hub_epoch_seq"),
    Index("ix_events_series", "device_id", "capability", "attribute", "ts"),
)
Table(
    "dead_letters", schema,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("epoch", String(32), nullable=True),
    Column("seq", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("ieee", String(23), nullable=True),
    Column("payload", Text, nullable=False),
    Column("received_at", _At, nullable=False),
    UniqueConstraint("hub_id", "epoch", "seq", name="uq_dead_letters_hub_epoch_seq"),
    Index("ix_dead_letters_device", "hub_id", "ieee"),
)
Table(
    "commands", schema,
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
    Column("created_at", _At, nullable=False),
    Column("expires_at", _At, nullable=False),
    Column("completed_at", _At, nullable=True),
    Column("duration_ms", Float, nullable=True),
)
accounts = Table(
    "accounts", schema,
    Column("id", String(_ID), primary_key=True),
    Column("created_at", _At, nullable=False),
)
api_tokens = Table(
    "api_tokens", schema,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", _At, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("revoked_at", _At, nullable=True),
    Column("account", String(_ID), nullable=False, server_default=DEFAULT_ACCOUNT, index=True),
    Column("scopes", String(64), nullable=False, server_default="admin control read"),
    Column("expires_at", _At, nullable=True),
)
Table(
    "hub_registrations", schema,
    Column("hub_id", String(_ID), primary_key=True),
    Column("account", String(128), nullable=True),
    Column("generation", Integer, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("registered_at", _At, nullable=False),
    Column("rotated_at", _At, nullable=True),
    Column("revoked_at", _At, nullable=True),
)
Table(
    "pairing_events", schema,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("hub_id", String(_ID), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("ts", _At, nullable=False),
    Column("step", String(32), nullable=False),
    Column("ieee", String(23), nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
    Column("until", _At, nullable=True),
    Column("capabilities", JSON, nullable=True),
    Column("manufacturer", Text, nullable=True),
    Column("model", Text, nullable=True),
    Column("received_at", _At, nullable=False),
    UniqueConstraint("hub_id", "digest", name="uq_pairing_events_hub_digest"),
    Index("ix_pairing_events_hub_id", "hub_id", "id"),
    sqlite_autoincrement=True,
)
Table(
    "idempotency_keys", schema,
    Column("account", String(_ID), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("command_id", String(_ID), nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", _At, nullable=False, index=True),
)
Table(
    "rate_windows", schema,
    Column("token_id", String(32), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)
Table(
    "api_usage", schema,
    Column("day", Date, primary_key=True),
    Column("token_id", String(32), primary_key=True),
    Column("method", String(8), primary_key=True),
    Column("route", String(256), primary_key=True),
    Column("status", String(3), primary_key=True),
    Column("account", String(_ID), nullable=False),
    Column("count", BigInteger, nullable=False),
    Index("ix_api_usage_account_day", "account", "day"),
)


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def create(conn: Connection) -> None:
    """The baseline on ``conn``: an empty database gets every table; one Spoke made before it had
    migrations gets the tables and columns it lacks, as that Spoke added them when it started."""
    existing = set(inspect(conn).get_table_names())
    if "events" in existing and "epoch" not in _columns(conn, "events"):
        raise SchemaOutdated(
            f"the database {conn.engine.url.render_as_string(hide_password=True)} was created by "
            "an earlier Spoke (its event ledger has no epochs): move it aside and start again")
    schema.create_all(conn, checkfirst=True)
    if "api_tokens" in existing and "account" not in _columns(conn, "api_tokens"):
        _give_old_tokens_accounts_and_scopes(conn)
    if "devices" in existing and "constraints" not in _columns(conn, "devices"):
        op.add_column("devices", Column("constraints", JSON, nullable=True))


def _give_old_tokens_accounts_and_scopes(conn: Connection) -> None:
    """Tokens from before accounts and scopes keep what they could do then: everything, in the
    default account."""
    op.add_column("api_tokens", Column("account", String(_ID), nullable=False,
                                       server_default=DEFAULT_ACCOUNT))
    op.add_column("api_tokens", Column("scopes", String(64), nullable=False,
                                       server_default="admin control read"))
    op.add_column("api_tokens", Column("expires_at", _At, nullable=True))
    op.create_index("ix_api_tokens_account", "api_tokens", ["account"])
    if conn.execute(select(func.count()).select_from(api_tokens)).scalar_one():
        conn.execute(insert(accounts).values(id=DEFAULT_ACCOUNT, created_at=datetime.now(UTC)))
