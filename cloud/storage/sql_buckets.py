"""Downsampled history from the SQL event ledger: min, max, mean and count per time bucket, computed
by the database (SQLite or PostgreSQL) over the series index, so a week of a chatty sensor comes back
as a few hundred rows."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Float, Integer, cast, func, literal, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from cloud.storage.base import Bucket, StoreUnavailable
from cloud.storage.sql_schema import events


def _bucket_index(dialect: str, since: datetime, width: int) -> ColumnElement[int]:
    """The bucket an event's ``ts`` falls in, counted from ``since`` (ts >= since)."""
    if dialect == "sqlite":
        # SQLite keeps naive UTC text; julianday reads it (fractions of a second included) as a
        # day number whose last bits are ~40 µs: rounded to the millisecond, 10 s stays 10 s.
        start = literal(since, events.c.ts.type)
        days = func.julianday(events.c.ts) - func.julianday(start)
        return cast(func.round(days * 86400.0, 3) / width, Integer)  # truncation is floor: >= 0
    seconds = func.extract("epoch", events.c.ts - literal(since, events.c.ts.type))
    return cast(func.floor(seconds / width), Integer)


def sql_buckets(engine: Engine, device_id: str, capability: str, attribute: str, *,
                since: datetime, until: datetime, width: int) -> list[Bucket]:
    index = _bucket_index(engine.dialect.name, since, width).label("bucket")
    value = cast(events.c.value_num, Float)
    stmt = (
        select(index, func.count().label("n"), func.min(value).label("lo"),
               func.max(value).label("hi"), func.avg(value).label("mean"))
        .where(events.c.device_id == device_id, events.c.capability == capability,
               events.c.attribute == attribute, events.c.ts >= since, events.c.ts <= until,
               events.c.value_num.is_not(None))
        .group_by(index)
        .order_by(index)
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
    except OperationalError as exc:
        raise StoreUnavailable(str(exc.orig or exc)) from exc
    return [Bucket(start=since + timedelta(seconds=int(r.bucket) * width), count=int(r.n),
                   min=float(r.lo), max=float(r.hi), avg=float(r.mean)) for r in rows]
