"""Schema migrations on SQLite and PostgreSQL: an empty database migrates to exactly the schema in
code; a database Spoke made before it had migrations is recognised, brought to the baseline with its
data, and stamped; a migration waits for the one under way; `spoke cloud migrate`; a cloud told not
to migrate refuses a schema it cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, text

from cloud.auth import hash_token, verify_token
from cloud.settings import CloudSettings
from cloud.storage import open_storage
from cloud.storage.base import EventOutcome, SchemaOutdated
from cloud.storage.migrations import (
    MIGRATION_LOCK,
    Upgrade,
    baseline,
    current_revision,
    head,
    upgrade_to_head,
)
from cloud.storage.sql import SqlRegistry, SqlTelemetry
from cloud.storage.sql_engine import WRITE_LOCK, make_engine
from cloud.storage.sql_schema import metadata
from tests.common import T0, event

SPOKE = str(Path(sys.executable).with_name("spoke"))
HUB, IEEE, DEV = "hub-m", "aa:bb:cc:dd:ee:ff:00:33", "hub-m-aabbccddeeff0033"
TOKEN = "an-old-token-that-was-strong-enough-then-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or a new PostgreSQL database from template0."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_database")(empty=True)  # type: ignore[no-any-return]
    return f"sqlite:///{tmp_path / 'cloud.db'}"


def differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between the database and ``metadata`` (nothing, at head)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_server_default": True})
        return compare_metadata(context, metadata)  # type: ignore[no-any-return]


def made_before_migrations(url: str, *, older: bool = False) -> None:
    """A database as Spoke made it before it had migrations (the baseline tables, no revision),
    with a token, a hub, its device and three events. ``older``: from before accounts, token scopes
    and device limits too, which that Spoke added in place when it started."""
    engine = make_engine(url)
    t = baseline.schema.tables
    with engine.begin() as conn:
        baseline.schema.create_all(conn)
        conn.execute(insert(t["api_tokens"]).values(
            id="t1", name="old", token_hash=hash_token(TOKEN), created_at=T0, revoked=False))
        conn.execute(insert(t["hubs"]).values(id=HUB, events_received=3, events_stored=3,
                                              duplicates=0, gaps=0, last_seq=3, epoch="e1"))
        conn.execute(insert(t["hub_registrations"]).values(  # before accounts: none
            hub_id=HUB, account=None, generation=1, revoked=False, registered_at=T0))
        conn.execute(insert(t["ledgers"]).values(hub_id=HUB, epoch="e1", mark=3, last_seq=3,
                                                 first_seen=T0, stored=3, duplicates=0, gaps=0,
                                                 refused=0))
        conn.execute(insert(t["devices"]).values(
            id=DEV, hub_id=HUB, ieee=IEEE, power_source="mains", available=True, removed=False,
            capabilities={"level": {"level": 30.0}}, updated_at=T0))
        conn.execute(insert(t["events"]), [
            {"hub_id": HUB, "epoch": "e1", "seq": seq, "device_id": DEV, "capability": "level",
             "attribute": "level", "ts": T0 + timedelta(seconds=seq), "value_num": 10.0 * seq,
             "value_json": json.dumps(10.0 * seq), "received_at": T0} for seq in (1, 2, 3)])
        if older:
            conn.execute(text("DROP INDEX ix_api_tokens_account"))
            for column in ("account", "scopes", "expires_at"):
                conn.execute(text(f"ALTER TABLE api_tokens DROP COLUMN {column}"))
            conn.execute(text('ALTER TABLE devices DROP COLUMN "constraints"'))
            conn.execute(text("DROP TABLE accounts"))
    engine.dispose()


def test_an_empty_database_migrates_to_exactly_the_schema_in_code(database: str) -> None:
    engine = make_engine(database)
    try:
        assert upgrade_to_head(engine) == Upgrade(before=None, after=head(), had_tables=False)
        assert differences(engine) == []
        assert upgrade_to_head(engine) == Upgrade(before=head(), after=head(), had_tables=True)
    finally:
        engine.dispose()


@pytest.mark.parametrize("older", [False, True], ids=["as-last-made", "before-accounts"])
def test_a_database_from_before_migrations_is_brought_to_head_with_its_data(
        database: str, older: bool) -> None:
    made_before_migrations(database, older=older)
    registry = SqlRegistry.from_url(database)
    try:
        with registry.engine.connect() as conn:
            assert current_revision(conn) == head()
        assert differences(registry.engine) == []
        record = verify_token(registry, TOKEN)
        assert record is not None and record.account == "default"
        assert record.scopes == {"read", "control", "admin"} and record.expires_at is None
        if older:  # the default account is made for the tokens that had none
            assert [a.id for a in registry.list_accounts()] == ["default"]
        dev = registry.get_device(DEV)
        assert dev is not None and dev.capabilities == {"level": {"level": 30.0}}
        registration = registry.get_hub_registration(HUB)
        assert registration is not None and registration.account == "default"
        assert [d.id for d in registry.list_devices(account="default", limit=10)] == [DEV]
        assert dev.constraints == {}
        samples = SqlTelemetry(registry.engine).query(DEV, "level", "level")
        assert [s.value for s in samples] == [10.0, 20.0, 30.0]
        with registry.ingest() as tx:  # the ledger goes on where it was
            assert tx.event(event(HUB, 4, IEEE, "level", "level", 40.0, epoch="e1")
                            ).outcome == EventOutcome.STORED
        hub = registry.get_hub(HUB)
        assert hub is not None and (hub.events_stored, hub.gaps) == (4, 0)
    finally:
        registry.close()


def test_a_database_from_before_ledger_epochs_is_refused_untouched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ancient.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (id INTEGER PRIMARY KEY, hub_id TEXT, seq INTEGER)"))
    with pytest.raises(SchemaOutdated, match="no epochs"):
        upgrade_to_head(engine)
    assert inspect(engine).get_table_names() == ["events"]  # the whole upgrade rolled back
    engine.dispose()


def test_a_database_a_newer_spoke_migrated_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    SqlRegistry.from_url(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for migrate in (True, False):
        with pytest.raises(SchemaOutdated, match="revision 9999, which this Spoke does not know"):
            SqlRegistry.from_url(url, migrate=migrate)


def test_a_migration_waits_for_the_one_under_way(database: str) -> None:
    """Clouds started together all migrate at start: each waits for the lock the first one holds
    (PostgreSQL's advisory lock; SQLite's write lock), then finds the work done."""
    holder, migrator = make_engine(database), make_engine(database)
    done: list[Upgrade] = []
    thread = threading.Thread(target=lambda: done.append(upgrade_to_head(migrator)))
    try:
        with holder.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            else:
                conn.execution_options(**{WRITE_LOCK: True}).begin()
            thread.start()
            thread.join(0.5)
            assert thread.is_alive() and inspect(conn).get_table_names() == []
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            conn.rollback()
        thread.join(30)
        assert done == [Upgrade(before=None, after=head(), had_tables=False)]
    finally:
        thread.join(30)
        holder.dispose()
        migrator.dispose()


def _spoke(database: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    environ.update(SPOKE_DATABASE_URL=database, SPOKE_CONFIG="/nonexistent.toml", COLUMNS="250",
                   **env)
    return subprocess.run([SPOKE, *args], env=environ, capture_output=True, text=True, timeout=60)


def test_without_auto_migration_a_cloud_refuses_until_spoke_cloud_migrate_ran(database: str
                                                                              ) -> None:
    made_before_migrations(database)
    settings = CloudSettings(database_url=database, database_auto_migrate=False)
    with pytest.raises(SchemaOutdated, match=r"revision none and this Spoke needs .*spoke cloud "
                                             r"migrate"):
        open_storage(settings)

    migrated = _spoke(database, "cloud", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema revision none (made before migrations) -> {head()}" in migrated.stdout
    if database.startswith("postgresql"):
        password = make_engine(database).url.password
        assert password and password not in migrated.stdout + migrated.stderr
    storage = open_storage(settings)
    try:
        assert verify_token(storage.registry, TOKEN) is not None
    finally:
        storage.close()


def test_spoke_cloud_run_refuses_a_schema_behind_in_one_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cloud.db'}"
    made_before_migrations(database)
    refused = _spoke(database, "cloud", "run", SPOKE_DATABASE_AUTO_MIGRATE="false")
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())  # rich wraps long lines
    assert message.startswith("error: cannot start the cloud: the database"), message
    assert "run `spoke cloud migrate` first" in message and "Traceback" not in message
