"""``/api/v1/hubs/{id}/pairing``: open and close a hub's permit-join window, follow its progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from cloud.api.deps import READ, ControlDep, ManagementDep, OwnedHub, StoreDep
from cloud.api.idempotency import IdempotencyKey, request_once
from cloud.api.params import MAX_INT64
from cloud.api.responses import BODY, HUB_REQUEST, not_found
from cloud.api.schemas import (
    PairingClosedPublic,
    PairingOpen,
    PairingProgressPublic,
    PairingStartedPublic,
)
from cloud.management import PAIRING_PAGE_MAX

router = APIRouter(prefix="/hubs", tags=["pairing"])

_SENT = {**not_found("hub"), **HUB_REQUEST}


@router.post("/{hub_id}/pairing", status_code=202, responses={**_SENT, **BODY},
             response_model=PairingStartedPublic)
async def open_pairing(hub_id: OwnedHub, management: ManagementDep, caller: ControlDep,
                       store: StoreDep, request: Request, body: PairingOpen | None = None,
                       key: IdempotencyKey = None) -> Any:
    """Ask the hub to permit joins for ``duration`` seconds (default 60); poll GET for progress
    with ``after=cursor``."""
    wanted = body or PairingOpen()

    async def open_() -> PairingStartedPublic:
        return PairingStartedPublic.of(await management.open_pairing(hub_id, wanted.duration))

    return await request_once(store, caller, key, request, wanted, 202, open_)


@router.delete("/{hub_id}/pairing", status_code=202, responses=_SENT,
               response_model=PairingClosedPublic)
async def close_pairing(hub_id: OwnedHub, management: ManagementDep, caller: ControlDep,
                        store: StoreDep, request: Request, key: IdempotencyKey = None) -> Any:
    """Ask the hub to stop permitting joins."""

    async def close() -> PairingClosedPublic:
        return PairingClosedPublic(hub_id=hub_id,
                                   request_id=await management.close_pairing(hub_id))

    return await request_once(store, caller, key, request, None, 202, close)


@router.get("/{hub_id}/pairing", responses=not_found("hub"), dependencies=[READ])
async def pairing_progress(
    hub_id: OwnedHub,
    management: ManagementDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT64,
                                       description="a cursor from an earlier answer")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAIRING_PAGE_MAX)] = PAIRING_PAGE_MAX,
) -> PairingProgressPublic:
    """Whether permit-join is open (and until when), and the pairing events after ``after``,
    oldest first."""
    return PairingProgressPublic.of(await management.pairing_progress(hub_id, after, limit))
