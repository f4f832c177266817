"""Query parameter types bounded by what storage can take: SQL integers are 64-bit, and a time must
still be a datetime once converted to UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

MAX_INT64 = 2**63 - 1


def to_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC; an aware time that leaves datetime's range in UTC is refused
    (9999-12-31T23:59:59-01:00 is a valid ISO 8601 time with no UTC datetime)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]
