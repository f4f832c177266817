"""Hub management through the cloud: pairing windows and progress, renaming and removing devices.

Requests go to the hub over MQTT (``CommandService.request_hub``); what they changed comes back the
usual way (retained status, retained device descriptions, pairing events) and is read from storage.
A rename or remove waits until the hub's confirmation is stored. Several cloud processes may run,
and the confirmation may be ingested by another one, so the wait polls the database; the ingest of
this process also wakes it as soon as it stores a description of the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cloud.commands import CommandService
from cloud.errors import HubRequestTimedOut, NotFound
from cloud.settings import CloudSettings
from cloud.storage.base import DeviceRecord, HubRecord, PairingEventRecord, Registry

log = logging.getLogger(__name__)

# How often a waiting rename/remove reads the device again when no local ingest woke it.
POLL_INTERVAL = 0.1
PAIRING_PAGE_MAX = 500


def pairing_until(hub: HubRecord, now: datetime | None = None) -> datetime | None:
    """Until when permit-join is open on the hub according to its retained status, else None.

    Only an online hub pairs, and a window already in the past is closed even if the status that
    would say so has not arrived yet.
    """
    raw = (hub.status or {}).get("pairing_until")
    if hub.online is not True or not raw:
        return None
    try:
        until = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return until if until > (now or datetime.now(UTC)) else None


@dataclass(frozen=True, kw_only=True)
class PairingStarted:
    hub_id: str
    until: datetime  # what the hub will report: now + duration
    request_id: str
    cursor: int  # the hub's newest pairing event id before the request; poll for newer ones


@dataclass(frozen=True, kw_only=True)
class PairingProgress:
    open: bool
    until: datetime | None
    cursor: int
    events: list[PairingEventRecord] = field(default_factory=list)


class ManagementService:
    """Pairing, rename and remove: requests out to hubs, confirmations read back from storage."""

    def __init__(self, settings: CloudSettings, registry: Registry, commands: CommandService) -> None:
        self.settings = settings
        self.registry = registry
        self.commands = commands
        self._lock = threading.Lock()
        self._wakers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    # Pairing --------------------------------------------------------------------------------------
    async def open_pairing(self, hub_id: str, duration: int) -> PairingStarted:
        """Ask the hub to permit joins for ``duration`` seconds (NotFound, HubOffline)."""
        cursor = await asyncio.to_thread(self.registry.last_pairing_event_id, hub_id)
        request = await self.commands.request_hub(hub_id, "permit_join", duration=duration)
        until = datetime.now(UTC) + timedelta(seconds=duration)
        return PairingStarted(hub_id=hub_id, until=until, request_id=request.id, cursor=cursor)

    async def close_pairing(self, hub_id: str) -> str:
        """Ask the hub to stop permitting joins; return the request id (NotFound, HubOffline)."""
        return (await self.commands.request_hub(hub_id, "close_join")).id

    async def pairing_progress(self, hub_id: str, after: int = 0,
                               limit: int = PAIRING_PAGE_MAX) -> PairingProgress:
        """Whether the hub pairs now, and its pairing events newer than the cursor ``after``."""
        hub = await asyncio.to_thread(self.registry.get_hub, hub_id)
        if hub is None:
            raise NotFound("hub", hub_id)
        events = await asyncio.to_thread(self.registry.pairing_events, hub_id, after,
                                         min(limit, PAIRING_PAGE_MAX))
        if events:
            cursor = events[-1].id
        else:
            cursor = await asyncio.to_thread(self.registry.last_pairing_event_id, hub_id)
        until = pairing_until(hub)
        return PairingProgress(open=until is not None, until=until, cursor=cursor, events=events)

    # Devices --------------------------------------------------------------------------------------
    async def rename(self, device_id: str, name: str | None) -> DeviceRecord:
        """Rename a device on its hub; return it once the hub's description with the name is in.

        Raises NotFound, HubOffline, or HubRequestTimedOut (sent, not confirmed in time).
        """
        device = await self._device(device_id)
        with self._waking(device_id) as wake:
            request = await self.commands.request_hub(device.hub_id, "rename", ieee=device.ieee,
                                                      name=name)
            renamed = await self._wait_for(
                device_id, wake, lambda d: d is not None and not d.removed and d.name == name,
                request.id, f"hub {device.hub_id} did not confirm the new name")
        assert renamed is not None
        return renamed

    async def remove(self, device_id: str) -> None:
        """Remove a device from its hub's network; return once the hub's removal is stored.

        Raises NotFound, HubOffline, or HubRequestTimedOut (sent, not confirmed in time).
        """
        device = await self._device(device_id)
        with self._waking(device_id) as wake:
            request = await self.commands.request_hub(device.hub_id, "remove", ieee=device.ieee)
            await self._wait_for(device_id, wake, lambda d: d is None or d.removed, request.id,
                                 f"hub {device.hub_id} did not confirm the removal")

    def devices_changed(self, device_ids: Iterable[str]) -> None:
        """Wake requests waiting on these devices (called from the ingest thread after a commit)."""
        with self._lock:
            wakers = [w for d in device_ids for w in self._wakers.get(d, ())]
        for loop, event in wakers:
            with contextlib.suppress(RuntimeError):  # that request's loop has closed
                loop.call_soon_threadsafe(event.set)

    # Internals ------------------------------------------------------------------------------------
    async def _device(self, device_id: str) -> DeviceRecord:
        device = await asyncio.to_thread(self.registry.get_device, device_id)
        if device is None or device.removed:
            raise NotFound("device", device_id)
        return device

    @contextlib.contextmanager
    def _waking(self, device_id: str) -> Iterator[asyncio.Event]:
        """An event that ``devices_changed`` sets for this device, while the caller waits."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._wakers.setdefault(device_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                entries = self._wakers.get(device_id, set())
                entries.discard(entry)
                if not entries:
                    self._wakers.pop(device_id, None)

    async def _wait_for(self, device_id: str, wake: asyncio.Event,
                        done: Callable[[DeviceRecord | None], bool], request_id: str,
                        failure: str) -> DeviceRecord | None:
        """Read the device until ``done`` holds and return it; HubRequestTimedOut after
        ``command_timeout``."""
        loop = asyncio.get_running_loop()
        timeout = self.settings.command_timeout
        deadline = loop.time() + timeout
        while True:
            wake.clear()  # before the read, so a change stored meanwhile is not missed
            record = await asyncio.to_thread(self.registry.get_device, device_id)
            if done(record):
                return record
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("req=%s %s within %.1fs", request_id, failure, timeout,
                            extra={"req": request_id})
                raise HubRequestTimedOut(
                    request_id, f"{failure} within {timeout:g}s (the request was sent)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(POLL_INTERVAL, remaining))
