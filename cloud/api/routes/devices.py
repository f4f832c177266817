"""``/api/v1/devices``: devices, their current state, their telemetry, commands to them, renaming
and removing them (through their hub)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from cloud.api.command_body import CommandCreate
from cloud.api.deps import (
    READ,
    AdminDep,
    CommandsDep,
    ControlDep,
    ManagementDep,
    OwnedDevice,
    ReadDep,
    SettingsDep,
    StoreDep,
    TelemetryDep,
    device_of,
)
from cloud.api.errors import invalid
from cloud.api.idempotency import IdempotencyKey, command_once, request_once
from cloud.api.limits import count_ahead, counted_ahead
from cloud.api.pages import PAGE_DEFAULT, PAGED, Cursor, Limit, decode_cursor, encode_cursor, page
from cloud.api.params import UtcDatetime
from cloud.api.responses import BODY, COMMAND, HUB_CONFIRMED, HUB_REQUEST, not_found
from cloud.api.schemas import (
    CommandPublic,
    DevicePublic,
    DeviceUpdate,
    SamplePublic,
)
from cloud.storage.base import CommandRecord, DeviceKey
from wire.capabilities import CAPABILITIES, split_instance

router = APIRouter(prefix="/devices", tags=["devices"])
_LIST = "devices"


def default_attribute(capability: str) -> str:
    spec = CAPABILITIES.get(split_instance(capability)[0])
    if spec is not None and len(spec.attributes) == 1:
        return spec.attributes[0].name
    names = ", ".join(a.name for a in spec.attributes) if spec else "unknown capability"
    raise invalid(("query", "attribute"),
                  f"attribute is required for capability {capability!r} ({names})", "missing")


@router.get("", responses=PAGED)
def list_devices(
    caller: ReadDep, store: StoreDep, request: Request, response: Response,
    hub_id: Annotated[str | None, Query(description="only this hub's devices")] = None,
    limit: Limit = PAGE_DEFAULT, cursor: Cursor = None,
) -> list[DevicePublic]:
    """The account's devices, a page at a time, ordered by hub, then id; follow the `Link` (or
    `X-Next-Cursor`) header for the next page."""
    after = DeviceKey(*decode_cursor(cursor, _LIST, 2)) if cursor is not None else None
    found = store.list_devices(hub_id, caller.account, after=after, limit=limit + 1)
    shown = page(found, limit, request, response, lambda d: encode_cursor(_LIST, d.hub_id, d.id))
    return [DevicePublic.of(d) for d in shown]


@router.get("/{device_id}", dependencies=[READ], responses=not_found("device"))
async def get_device(device: OwnedDevice) -> DevicePublic:
    return DevicePublic.of(device)


_MANAGED = {**not_found("device"), **HUB_CONFIRMED}


@router.patch("/{device_id}", responses={**_MANAGED, **BODY}, response_model=DevicePublic)
async def update_device(device_id: str, _device: OwnedDevice, body: DeviceUpdate,
                        management: ManagementDep, caller: ControlDep, store: StoreDep,
                        request: Request, key: IdempotencyKey = None) -> Any:
    """Rename a device (the name is kept by its hub); answers once the hub confirmed it."""

    async def rename() -> DevicePublic:
        return DevicePublic.of(await management.rename(device_id, body.name))

    return await request_once(store, caller, key, request, body, 200, rename)


@router.delete("/{device_id}", status_code=204, response_class=Response, responses=_MANAGED,
               response_model=None)
async def remove_device(device_id: str, management: ManagementDep, caller: AdminDep,
                        store: StoreDep, request: Request, key: IdempotencyKey = None) -> Any:
    """Remove a device from its hub's network (Zigbee leave); answers once the hub confirmed."""

    async def remove() -> None:  # a retry is answered before this, though the device is gone
        await run_in_threadpool(device_of, store, caller, device_id)
        await management.remove(device_id)

    return await request_once(store, caller, key, request, None, 204, remove)


@router.get("/{device_id}/telemetry", dependencies=[READ], responses=not_found("device"))
def get_telemetry(
    device_id: str,
    _device: OwnedDevice,
    telemetry: TelemetryDep,
    settings: SettingsDep,
    capability: Annotated[str, Query(min_length=1, max_length=64)],
    attribute: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: Annotated[UtcDatetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[UtcDatetime | None, Query(description="ISO 8601, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, description="the newest N samples")] = 1000,
) -> list[SamplePublic]:
    """Samples of one attribute, oldest first; ``limit`` keeps the newest N."""
    if limit > settings.telemetry_max_limit:
        raise invalid(("query", "limit"), f"limit must be at most {settings.telemetry_max_limit}",
                      "less_than_equal")
    samples = telemetry.query(
        device_id,
        capability,
        attribute or default_attribute(capability),
        since=since,
        until=until,
        limit=limit,
    )
    return [SamplePublic(ts=s.ts, value=s.value) for s in samples]


@router.post(
    "/{device_id}/commands",
    responses={**not_found("device"), **HUB_REQUEST, **COMMAND, **BODY},
)
async def send_command(
    device_id: str, device: OwnedDevice, body: CommandCreate, commands: CommandsDep,
    caller: ControlDep, store: StoreDep, request: Request, key: IdempotencyKey = None,
) -> CommandPublic:
    """Send a command and wait for the hub's result (at most ``command_timeout`` seconds). A 504
    means no answer yet: the command may still run until it expires; retry with the same
    ``Idempotency-Key`` to get its outcome without running it twice."""

    async def run(command_id: str | None) -> CommandRecord:
        # Counted as answered 200 with its row (one transaction): moved if it answers otherwise.
        return await commands.execute(device_id, body.capability, body.command, body.arguments(),
                                      command_id=command_id, device=device,
                                      meter=count_ahead(request, 200),
                                      metered=lambda counted: counted_ahead(request, counted))

    return CommandPublic.of(await command_once(store, commands, caller, key, request, body, run))
