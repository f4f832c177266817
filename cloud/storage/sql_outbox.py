"""The telemetry export queue (``telemetry_outbox``): points the ingest queued, taken oldest first.

On PostgreSQL a batch is locked ``FOR UPDATE SKIP LOCKED`` for as long as it is being written, so
several cloud processes share the queue without taking the same rows. SQLite has one writer at a
time and no row locks: a batch is read in a short transaction and deleted in another once written
(two processes on one SQLite file may then both write a batch; InfluxDB keeps a point written twice
once, as it is the same series, time and fields).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from cloud.storage.base import TelemetryPoint
from cloud.storage.sql_engine import store_errors
from cloud.storage.sql_schema import telemetry_outbox

_t = telemetry_outbox.c


def _point(row: Any) -> TelemetryPoint:
    return TelemetryPoint(hub_id=row.hub_id, seq=row.seq, device_id=row.device_id,
                          capability=row.capability, attribute=row.attribute, ts=row.ts,
                          value=json.loads(row.value_json), unit=row.unit)


class SqlTelemetryOutbox:
    """The queue in the registry's database (see ``cloud.telemetry_export`` for who empties it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def take(self, limit: int) -> Iterator[list[TelemetryPoint]]:
        """Up to ``limit`` of the oldest queued points; deleted when the block ends without error,
        kept (for the next take) when it raises."""
        oldest = select(telemetry_outbox).order_by(_t.id).limit(limit)
        with store_errors():
            if self.engine.dialect.name == "postgresql":
                with self.engine.begin() as conn:
                    rows = conn.execute(oldest.with_for_update(skip_locked=True)).all()
                    yield [_point(row) for row in rows]
                    self._delete(conn, [row.id for row in rows])
                return
            with self.engine.connect() as conn:
                rows = conn.execute(oldest).all()
                conn.rollback()  # end the read at once: no snapshot held while InfluxDB writes
            yield [_point(row) for row in rows]
            if rows:
                with self.engine.begin() as conn:  # writes first: waits for the lock (busy_timeout)
                    self._delete(conn, [row.id for row in rows])

    @staticmethod
    def _delete(conn: Connection, ids: list[int]) -> None:
        if ids:
            conn.execute(delete(telemetry_outbox).where(_t.id.in_(ids)))

    def backlog(self, now: datetime | None = None) -> tuple[int, float]:
        """(points waiting, age in seconds of the oldest one; 0 when none wait)."""
        with store_errors(), self.engine.connect() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(_t.queued_at)).select_from(telemetry_outbox)
            ).one()
        if not count or oldest is None:
            return 0, 0.0
        age = ((now or datetime.now(UTC)) - oldest).total_seconds()
        return int(count), max(0.0, age)
