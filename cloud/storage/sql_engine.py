"""SQLAlchemy engines for the cloud's database: SQLite (WAL, early write locks) or PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from cloud.storage.base import StoreUnavailable
from private_files import private_sqlite

# Execution option of a connection that writes: on SQLite its transactions take the write lock at once.
WRITE_LOCK = "spoke_sqlite_immediate"
_WAL_SWITCH_WAIT = 10.0  # seconds


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets its folder, WAL, a busy timeout and early write locks."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in str(parsed)
    if in_memory:
        engine = create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        private_sqlite(Path(database))  # token hashes and the registry: the owner's alone
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        if not in_memory:
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then writes
        # fails at once with SQLITE_BUSY under WAL instead of waiting for the lock.
        immediate = conn.get_execution_options().get(WRITE_LOCK, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch a SQLite file to WAL (it stays so). Another process doing the same at that moment
    makes SQLite answer "locked" at once rather than wait (its busy handler is not used here), so
    try again for a while."""
    deadline = time.monotonic() + _WAL_SWITCH_WAIT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def store_errors() -> Iterator[None]:
    """A database that cannot be reached (or whose connection broke) as ``StoreUnavailable``;
    other database errors go on as they are."""
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(str(exc.orig or exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(str(exc.orig or exc)) from exc
        raise
