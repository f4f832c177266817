"""``/api/v1/hubs``: the account's hubs the cloud has heard from, with their ingest counters."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from cloud.api.deps import READ, OwnedHub, ReadDep, StoreDep
from cloud.api.pages import PAGE_DEFAULT, PAGED, Cursor, Limit, decode_cursor, encode_cursor, page
from cloud.api.responses import not_found
from cloud.api.schemas import HubPublic
from cloud.errors import NotFound

router = APIRouter(prefix="/hubs", tags=["hubs"])
_LIST = "hubs"


@router.get("", responses=PAGED)
def list_hubs(caller: ReadDep, store: StoreDep, request: Request, response: Response,
              limit: Limit = PAGE_DEFAULT, cursor: Cursor = None) -> list[HubPublic]:
    """The account's hubs, a page at a time, ordered by id; follow the `Link` (or
    `X-Next-Cursor`) header for the next page."""
    after = decode_cursor(cursor, _LIST, 1)[0] if cursor is not None else None
    found = store.list_hubs(caller.account, after=after, limit=limit + 1)
    shown = page(found, limit, request, response, lambda h: encode_cursor(_LIST, h.id))
    return [HubPublic.of(h) for h in shown]


@router.get("/{hub_id}", dependencies=[READ], responses=not_found("hub"))
def get_hub(hub_id: OwnedHub, store: StoreDep) -> HubPublic:
    hub = store.get_hub(hub_id)
    if hub is None:
        raise NotFound("hub", hub_id)
    return HubPublic.of(hub)
