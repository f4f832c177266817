"""Rate-limit windows and metering on SQL: one atomic upsert (INSERT … ON CONFLICT DO UPDATE …
RETURNING) per request, the same statement on SQLite and PostgreSQL, so concurrent requests in
several cloud processes never lose a count."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from cloud.storage.base import StoreUnavailable
from cloud.storage.sql_schema import api_tokens, api_usage, rate_windows
from cloud.storage.usage import UsageCount, UsageRecord


@functools.cache
def _count_usage(dialect: str) -> Any:
    """Count one request (an upsert), built once per dialect: each use only binds its values."""
    t = api_usage.c
    dml = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = dml(api_usage).values(
        day=bindparam("p_day"), token_id=bindparam("p_token_id"), method=bindparam("p_method"),
        route=bindparam("p_route"), status=bindparam("p_status"), account=bindparam("p_account"),
        count=1)
    return stmt.on_conflict_do_update(index_elements=[t.day, t.token_id, t.method, t.route, t.status],
                                      set_={"count": t.count + 1})


_UNCOUNT = (update(api_usage).where(
    api_usage.c.day == bindparam("p_day"), api_usage.c.token_id == bindparam("p_token_id"),
    api_usage.c.method == bindparam("p_method"), api_usage.c.route == bindparam("p_route"),
    api_usage.c.status == bindparam("p_status"), api_usage.c.count > 0)
    .values(count=api_usage.c.count - 1))


_DROP_EMPTY = delete(api_usage).where(
    api_usage.c.day == bindparam("p_day"), api_usage.c.token_id == bindparam("p_token_id"),
    api_usage.c.method == bindparam("p_method"), api_usage.c.route == bindparam("p_route"),
    api_usage.c.status == bindparam("p_status"), api_usage.c.count <= 0)


def _params(counted: UsageCount, status: str | None = None) -> dict[str, Any]:
    return {"p_day": counted.day, "p_token_id": counted.token_id, "p_method": counted.method,
            "p_route": counted.route, "p_status": status or counted.status,
            "p_account": counted.account}


def count_usage(conn: Connection, counted: UsageCount) -> None:
    """Count one metered request in ``conn``'s transaction."""
    conn.execute(_count_usage(conn.dialect.name), _params(counted))


class SqlUsage:
    """``UsageStore`` on the registry's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        if engine.dialect.name == "postgresql":
            self._insert: Any = postgresql.insert
        elif engine.dialect.name == "sqlite":
            self._insert = sqlite.insert
        else:
            raise ValueError(f"usage counters need SQLite or PostgreSQL, not {engine.dialect.name}")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # The first statement writes, so SQLite takes its write lock there (and waits its busy
        # timeout for it); no read-then-write upgrade that could fail with SQLITE_BUSY.
        try:
            with self.engine.begin() as conn:
                if self._postgres:  # a counter lost in a crash is fine; a flush per request is not
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable(str(exc.orig or exc)) from exc

    def hit(self, token_id: str, kind: str, window_start: int) -> int:
        t = rate_windows.c
        stmt = self._insert(rate_windows).values(
            token_id=token_id, kind=kind, window_start=window_start, count=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.token_id, t.kind, t.window_start],
            set_={"count": t.count + 1},
        ).returning(t.count)
        with self._write() as conn:
            count = int(conn.execute(stmt).scalar_one())
            if count == 1:  # a new window: the token's older ones are of no more use
                conn.execute(delete(rate_windows).where(t.token_id == token_id)
                             .where(t.kind == kind).where(t.window_start < window_start))
        return count

    def record(self, day: date, account: str, token_id: str, method: str, route: str,
               status: str) -> None:
        with self._write() as conn:
            count_usage(conn, UsageCount(day=day, account=account, token_id=token_id,
                                         method=method, route=route, status=status))

    def recount(self, counted: UsageCount, status: str) -> None:
        with self._write() as conn:
            conn.execute(_UNCOUNT, _params(counted))
            conn.execute(_DROP_EMPTY, _params(counted))  # a class no request ended in stays unlisted
            conn.execute(_count_usage(conn.dialect.name), _params(counted, status))

    def usage(self, account: str, since: date, until: date, token_id: str | None = None
              ) -> list[UsageRecord]:
        t = api_usage.c
        stmt = (select(api_usage, api_tokens.c.name.label("token_name"))
                .select_from(api_usage.outerjoin(api_tokens, api_tokens.c.id == t.token_id))
                .where(t.account == account, t.day >= since, t.day <= until)
                .order_by(t.day, t.token_id, t.route, t.method, t.status))
        if token_id is not None:
            stmt = stmt.where(t.token_id == token_id)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
        except OperationalError as exc:
            raise StoreUnavailable(str(exc.orig or exc)) from exc
        return [UsageRecord(day=r.day, token_id=r.token_id, token_name=r.token_name,
                            method=r.method, route=r.route, status=r.status,
                            count=int(r._mapping["count"]))
                for r in rows]
