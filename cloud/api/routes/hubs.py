"""``/api/v1/hubs``: the account's hubs the cloud has heard from, with their ingest counters."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api.deps import READ, OwnedHub, ReadDep, StoreDep
from cloud.api.responses import not_found
from cloud.api.schemas import HubPublic
from cloud.errors import NotFound

router = APIRouter(prefix="/hubs", tags=["hubs"])


@router.get("")
def list_hubs(caller: ReadDep, store: StoreDep) -> list[HubPublic]:
    return [HubPublic.of(h) for h in store.list_hubs(caller.account)]


@router.get("/{hub_id}", dependencies=[READ], responses=not_found("hub"))
def get_hub(hub_id: OwnedHub, store: StoreDep) -> HubPublic:
    hub = store.get_hub(hub_id)
    if hub is None:
        raise NotFound("hub", hub_id)
    return HubPublic.of(hub)
