"""``/api/v1/usage``: an admin reads how much its account's tokens used the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from cloud.api.deps import AdminDep, ServicesDep, StoreDep
from cloud.auth import list_tokens
from cloud.errors import NotFound
from cloud.storage.usage import UsageRecord

router = APIRouter(prefix="/usage", tags=["usage"])

DEFAULT_DAYS = 30
MAX_DAYS = 366


class UsagePublic(BaseModel):
    """Requests of one token on one UTC day to one route, by status class."""

    day: date
    token_id: str
    token_name: str | None
    method: str
    route: str  # the template, e.g. /api/v1/devices/{device_id}
    status: str  # 2xx, 4xx (429 and the like), 5xx
    requests: int

    @classmethod
    def of(cls, r: UsageRecord) -> UsagePublic:
        return cls(day=r.day, token_id=r.token_id, token_name=r.token_name, method=r.method,
                   route=r.route, status=r.status, requests=r.count)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "token_id is not a token of the caller's account"},
    422: {"description": "since after until, or more than a year"}}


@router.get("", responses=_RESPONSES)
async def usage(
    caller: AdminDep, services: ServicesDep, store: StoreDep,
    since: Annotated[date | None, Query(description="first UTC day (default: 30 days "
                                                    "before until)")] = None,
    until: Annotated[date | None, Query(description="last UTC day (default: today)")] = None,
    token_id: Annotated[str | None, Query(max_length=32, description="one token only")] = None,
) -> list[UsagePublic]:
    """The account's requests per day, token, route and status class (this request not yet
    among them)."""
    until = until or datetime.now(UTC).date()
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until or (until - since).days >= MAX_DAYS:
        raise RequestValidationError([{
            "loc": ("query", "since"), "type": "value_error", "input": since.isoformat(),
            "msg": f"since must be on or before until and at most {MAX_DAYS} days before it"}])
    if token_id is not None:
        tokens = await run_in_threadpool(list_tokens, store, caller.account)
        if token_id not in {t.id for t in tokens}:
            raise NotFound("token", token_id)
    rows = await run_in_threadpool(services.storage.usage.usage, caller.account, since, until,
                                   token_id)
    return [UsagePublic.of(r) for r in rows]
