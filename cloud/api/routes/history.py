"""``/api/v1/devices/{id}/telemetry/buckets``: downsampled history for charts.

The range is cut into at most ``buckets`` equal buckets (a whole number of seconds each) and the
database sums each up (min, max, mean, count), so a week of a sensor reporting every few seconds
answers as fast as an hour of it. Booleans (occupancy, contact) count as 0 and 1: a bucket's max is
1 when the state was on at some point in it. Authorised as the raw history route.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from cloud.api.deps import READ, OwnedDevice, TelemetryDep
from cloud.api.errors import invalid
from cloud.api.params import UtcDatetime
from cloud.api.responses import not_found
from cloud.api.routes.devices import default_attribute

router = APIRouter(prefix="/devices", tags=["devices"])

MAX_RANGE = timedelta(days=400)
DEFAULT_RANGE = timedelta(hours=24)


class BucketPublic(BaseModel):
    ts: datetime = Field(description="the bucket's start")
    count: int
    min: float
    max: float
    avg: float


class BucketsPublic(BaseModel):
    since: datetime
    until: datetime
    bucket_seconds: int
    buckets: list[BucketPublic] = Field(description="oldest first; empty buckets are left out")


@router.get("/{device_id}/telemetry/buckets", dependencies=[READ], responses=not_found("device"))
async def telemetry_buckets(
    device: OwnedDevice,
    telemetry: TelemetryDep,
    capability: Annotated[str, Query(min_length=1, max_length=64)],
    attribute: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: Annotated[UtcDatetime | None, Query(description="ISO 8601; default until - 24 h")] = None,
    until: Annotated[UtcDatetime | None, Query(description="ISO 8601; default now")] = None,
    buckets: Annotated[int, Query(ge=1, le=2000, description="at most this many buckets")] = 300,
) -> BucketsPublic:
    """Numeric samples of one attribute (booleans as 0/1) summed up per bucket, oldest first."""
    end = until or datetime.now(UTC)
    start = since or end - DEFAULT_RANGE
    if start >= end:
        raise invalid(("query", "since"), "since must be before until")
    if end - start > MAX_RANGE:
        raise invalid(("query", "since"), f"the range may span at most {MAX_RANGE.days} days")
    width = max(1, math.ceil((end - start).total_seconds() / buckets))
    found = await run_in_threadpool(
        telemetry.buckets, device.id, capability, attribute or default_attribute(capability),
        since=start, until=end, width=width)
    return BucketsPublic(since=start, until=end, bucket_seconds=width, buckets=[
        BucketPublic(ts=b.start, count=b.count, min=b.min, max=b.max, avg=b.avg) for b in found])
