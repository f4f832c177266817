"""Rate-limit windows and metering on SQL: one atomic upsert (INSERT … ON CONFLICT DO UPDATE …
RETURNING) per request, the same statement on SQLite and PostgreSQL, so concurrent requests in
several cloud processes never lose a count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from cloud.storage.base import StoreUnavailable
from cloud.storage.sql_schema import api_tokens, api_usage, rate_windows
from cloud.storage.usage import UsageRecord


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
        t = api_usage.c
        stmt = self._insert(api_usage).values(
            day=day, token_id=token_id, method=method, route=route, status=status,
            account=account, count=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.day, t.token_id, t.method, t.route, t.status],
            set_={"count": t.count + 1},
        )
        with self._write() as conn:
            conn.execute(stmt)

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
