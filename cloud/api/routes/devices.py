"""``/api/v1/devices``: devices, their current state, their telemetry, commands to them, renaming
and removing them (through their hub)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from cloud.api.deps import CommandsDep, ManagementDep, SettingsDep, StoreDep, TelemetryDep
from cloud.api.errors import invalid
from cloud.api.params import UtcDatetime
from cloud.api.responses import BODY, COMMAND, HUB_CONFIRMED, not_found
from cloud.api.schemas import (
    CommandCreate,
    CommandPublic,
    DevicePublic,
    DeviceUpdate,
    SamplePublic,
)
from cloud.errors import NotFound
from cloud.storage.base import DeviceRecord, Registry
from wire.capabilities import CAPABILITIES, split_instance

router = APIRouter(prefix="/devices", tags=["devices"])


def _device(store: Registry, device_id: str) -> DeviceRecord:
    device = store.get_device(device_id)
    if device is None or device.removed:
        raise NotFound("device", device_id)
    return device


def _default_attribute(capability: str) -> str:
    spec = CAPABILITIES.get(split_instance(capability)[0])
    if spec is not None and len(spec.attributes) == 1:
        return spec.attributes[0].name
    names = ", ".join(a.name for a in spec.attributes) if spec else "unknown capability"
    raise invalid(("query", "attribute"),
                  f"attribute is required for capability {capability!r} ({names})", "missing")


@router.get("")
def list_devices(
    store: StoreDep, hub_id: Annotated[str | None, Query()] = None
) -> list[DevicePublic]:
    return [DevicePublic.of(d) for d in store.list_devices(hub_id)]


@router.get("/{device_id}", responses=not_found("device"))
def get_device(device_id: str, store: StoreDep) -> DevicePublic:
    return DevicePublic.of(_device(store, device_id))


_MANAGED = {**not_found("device"), **HUB_CONFIRMED}


@router.patch("/{device_id}", responses={**_MANAGED, **BODY})
async def update_device(device_id: str, body: DeviceUpdate,
                        management: ManagementDep) -> DevicePublic:
    """Rename a device (the name is kept by its hub); answers once the hub confirmed it."""
    return DevicePublic.of(await management.rename(device_id, body.name))


@router.delete("/{device_id}", status_code=204, response_class=Response, responses=_MANAGED)
async def remove_device(device_id: str, management: ManagementDep) -> None:
    """Remove a device from its hub's network (Zigbee leave); answers once the hub confirmed."""
    await management.remove(device_id)


@router.get("/{device_id}/telemetry", responses=not_found("device"))
def get_telemetry(
    device_id: str,
    store: StoreDep,
    telemetry: TelemetryDep,
    settings: SettingsDep,
    capability: Annotated[str, Query(min_length=1, max_length=64)],
    attribute: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: Annotated[UtcDatetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[UtcDatetime | None, Query(description="ISO 8601, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, description="the newest N samples")] = 1000,
) -> list[SamplePublic]:
    """Samples of one attribute, oldest first; ``limit`` keeps the newest N."""
    _device(store, device_id)
    if limit > settings.telemetry_max_limit:
        raise invalid(("query", "limit"), f"limit must be at most {settings.telemetry_max_limit}",
                      "less_than_equal")
    samples = telemetry.query(
        device_id,
        capability,
        attribute or _default_attribute(capability),
        since=since,
        until=until,
        limit=limit,
    )
    return [SamplePublic(ts=s.ts, value=s.value) for s in samples]


@router.post(
    "/{device_id}/commands",
    responses={**not_found("device"), **COMMAND, **BODY},
)
async def send_command(
    device_id: str, body: CommandCreate, commands: CommandsDep
) -> CommandPublic:
    """Send a command and wait for the hub's result (at most ``command_timeout`` seconds)."""
    record = await commands.execute(device_id, body.capability, body.command, body.args)
    return CommandPublic.of(record)
