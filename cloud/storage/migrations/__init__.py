"""Schema migrations of the cloud's SQL database (Alembic), run from code: no alembic.ini, no URL in a file.

The cloud upgrades its database to this Spoke's newest revision when it starts, one process at a time
(``database_auto_migrate``, on by default), or an operator does it first with ``spoke cloud migrate``.
A database that Spoke created before it had migrations (its tables, no ``alembic_version``) is
recognised by the baseline revision, brought to the baseline schema and stamped.

Adding a revision, after changing the tables in ``cloud.storage.sql_schema``::

    python -m cloud.storage.migrations revision "add the telemetry export queue"

writes ``versions/<next number>_<slug>.py`` with the operations Alembic finds between the schema at the
current head (built in a scratch SQLite database) and ``metadata``. Read it and fix what autogenerate
cannot know (renames, data to move, server defaults for NOT NULL columns on full tables); then
``tests/test_cloud_migrations.py`` checks, on SQLite and PostgreSQL, that a database migrated to head
matches ``metadata`` exactly. A revision never imports the current schema module: it spells out the
tables and columns as they were when it was written.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from cloud.storage.base import SchemaOutdated
from cloud.storage.sql_engine import WRITE_LOCK

log = logging.getLogger(__name__)

# The PostgreSQL advisory lock that every cloud process on one database takes to migrate it.
MIGRATION_LOCK = zlib.crc32(b"spoke-cloud-schema-migrations")
# Alembic's ``op`` and ``context`` are process-wide: one migration at a time in a process, whatever
# the database.
_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade found and left: revisions, None for none (an empty database, or one from
    before migrations: ``had_tables`` tells which)."""

    before: str | None
    after: str | None
    had_tables: bool


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the cloud's migrations, running on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this Spoke knows."""
    head = _scripts().get_current_head()
    assert head is not None, "the migrations have no revision"
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's revision; None when it has none."""
    return MigrationContext.configure(conn).get_current_revision()


def _where(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)


def _require_known(conn: Connection, revision: str | None) -> None:
    if revision is not None and revision not in {s.revision for s in _scripts().walk_revisions()}:
        raise SchemaOutdated(
            f"the database {_where(conn)} is at schema revision {revision}, which this Spoke does "
            "not know (a newer Spoke migrated it): run that Spoke, or restore the database's backup")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection that one process at a time migrates on: PostgreSQL's advisory lock, or SQLite's
    write lock (taken by the transaction's BEGIN IMMEDIATE before it reads the revision)."""
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            yield conn.execution_options(**{WRITE_LOCK: True})
            return
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        conn.commit()
        try:
            yield conn
        finally:
            with suppress(SQLAlchemyError):  # a lost connection took its lock with it
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()


def upgrade_to_head(engine: Engine) -> Upgrade:
    """Migrate the database to this Spoke's newest revision, in one transaction; other processes
    migrating the same database wait for it, then find nothing left to do."""
    with _IN_PROCESS, _migration_lock(engine) as conn, conn.begin():
        had_tables = bool(set(inspect(conn).get_table_names()) - {"alembic_version"})
        before = current_revision(conn)
        _require_known(conn, before)
        if before != head():
            log.info("migrating the database %s from schema revision %s to %s", _where(conn),
                     before or "none", head())
            command.upgrade(alembic_config(conn), "head")
        return Upgrade(before, current_revision(conn), had_tables)


def require_head(engine: Engine) -> None:
    """Refuse, with what to do, a database that is not at this Spoke's newest revision."""
    with engine.connect() as conn:
        revision = current_revision(conn)
        _require_known(conn, revision)
        if revision != head():
            raise SchemaOutdated(
                f"the database {_where(conn)} is at schema revision {revision or 'none'} and this "
                f"Spoke needs {head()}: run `spoke cloud migrate` first (the cloud migrates when "
                "it starts unless SPOKE_DATABASE_AUTO_MIGRATE is false)")
