"""Managing the hub's Zigbee network: the permit-join window, renaming and removing devices, and
network backups. The cloud asks through hub requests, a person on the hub's machine through the
local control channel; both end up here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zigpy.types as t

from hub.backup import write_backup
from hub.control import ControlError
from hub.devices import DeviceTracker
from hub.pairing import PairingReporter
from hub.publisher import Publisher
from wire.contract import GROUP_ACTIONS, HubRequest

if TYPE_CHECKING:
    from hub.groups import GroupManager

LOGGER = logging.getLogger(__name__)


class ManagementError(ControlError):
    """A management operation the hub refuses; the message says why."""


class Management:
    def __init__(self, hub_id: str, app: Callable[[], Any], tracker: DeviceTracker,
                 pairing: PairingReporter, publisher: Publisher, backup_dir: Path) -> None:
        self.hub_id = hub_id
        self._app = app
        self.tracker = tracker
        self.pairing = pairing
        self.publisher = publisher
        self.backup_dir = backup_dir
        self.pairing_until = 0.0
        self._closer: asyncio.Task[None] | None = None
        self.groups: GroupManager | None = None  # Zigbee groups and scenes (hub/groups.py)

    @property
    def pairing_open(self) -> bool:
        return self.pairing_until > time.time()

    async def stop(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            await asyncio.gather(self._closer, return_exceptions=True)

    async def run(self, request: HubRequest) -> None:
        """A request from the cloud (already checked to be this hub's, unexpired)."""
        match request.action:
            case "permit_join":
                await self.permit(request.duration if request.duration is not None else 60)
            case "close_join":
                await self.permit(0)
            case "rename" if request.ieee:
                self.rename(request.ieee, request.name)
            case "remove" if request.ieee:
                await self.remove(request.ieee)
            case action if action in GROUP_ACTIONS and self.groups is not None:
                await self.groups.run(request)
            case _:
                raise ManagementError(f"{request.action} needs a device")

    async def permit(self, duration: int) -> None:
        """Open permit-join for ``duration`` seconds (0 closes it)."""
        await self._app().permit(duration)
        self.pairing_until = time.time() + duration if duration > 0 else 0.0
        self.pairing.permit(duration)
        self.publisher.status()
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        if duration > 0:
            self._closer = asyncio.create_task(self._close_later(self.pairing_until),
                                               name="permit-close")

    async def _close_later(self, until: float) -> None:
        await asyncio.sleep(max(0.0, until - time.time()))
        if self.pairing_until == until:  # not reopened or closed meanwhile
            self.pairing_until = 0.0
            self.pairing.permit(0)
            self.publisher.status()

    def rename(self, ieee: str, name: str | None) -> None:
        self._known(ieee)
        self.tracker.rename(ieee, name)

    async def remove(self, ieee: str) -> None:
        self._known(ieee)
        if self.groups is not None:
            self.groups.forget_device(ieee)
        await self._app().remove(t.EUI64.convert(ieee))
        self.tracker.untrack(ieee)  # zigpy's device_removed also does it; clearing twice is fine

    async def backup(self) -> Path:
        return await write_backup(self._app(), self.backup_dir)

    def _known(self, ieee: str) -> None:
        if self.tracker.get(ieee) is None:
            raise ManagementError(f"no device {ieee} on hub {self.hub_id}")
