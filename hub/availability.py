"""Device availability: who has gone silent, and who is back.

zigpy stamps ``device.last_seen`` on every frame. A mains-powered device silent past its timeout is
pinged (a Basic attribute read, as ZHA does) and marked unavailable when the ping fails; a battery
device sleeps most of the time, so it is only marked unavailable when silent past its (much longer)
timeout. Any frame from a device makes it available again at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import zigpy.exceptions
from zigpy.zcl.clusters.general import Basic

from hub.devices import DeviceTracker, TrackedDevice

LOGGER = logging.getLogger(__name__)

SILENT = "silent past its timeout"
PING_FAILED = "ping failed"
RADIO_DOWN = "radio down"


def last_seen(tracked: TrackedDevice) -> float:
    """Seconds since the epoch of the device's last frame (zigpy's stamp), 0 if never."""
    seen = tracked.device.last_seen
    if seen is None:
        return 0.0
    return seen if isinstance(seen, float) else seen.timestamp()


class AvailabilityMonitor:
    def __init__(self, tracker: DeviceTracker, *, mains_timeout: float, battery_timeout: float,
                 interval: float, clock: Callable[[], float] = time.time) -> None:
        self.tracker = tracker
        self.mains_timeout = mains_timeout
        self.battery_timeout = battery_timeout
        self.interval = interval
        self.clock = clock
        self.changes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="availability")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                LOGGER.exception("availability check failed")

    def timeout_for(self, tracked: TrackedDevice) -> float:
        desc = tracked.device.node_desc
        mains = desc is None or desc.is_mains_powered
        return self.mains_timeout if mains else self.battery_timeout

    async def check(self) -> None:
        """One pass over all devices: ping the silent mains devices, expire silent sleepers."""
        now = self.clock()
        for tracked in list(self.tracker.devices.values()):
            if not tracked.available:
                continue
            if now - last_seen(tracked) <= self.timeout_for(tracked):
                continue
            desc = tracked.device.node_desc
            if desc is not None and not desc.is_mains_powered:
                self.set(tracked, False, SILENT)
            elif not await self.ping(tracked):
                self.set(tracked, False, PING_FAILED)

    async def ping(self, tracked: TrackedDevice) -> bool:
        try:
            basic = tracked.device.endpoints[_first_endpoint(tracked)].in_clusters[Basic.cluster_id]
        except (KeyError, StopIteration):
            return False
        try:
            async with asyncio.timeout(10):
                await basic.read_attributes([Basic.AttributeDefs.zcl_version.name],
                                            allow_cache=False)
        except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
            LOGGER.info("device %s did not answer a ping: %s", tracked.ieee, exc)
            return False
        return True

    def seen(self, ieee: str) -> None:
        """A frame arrived from this device: it is available again if it was not."""
        tracked = self.tracker.get(ieee)
        if tracked is not None and not tracked.available:
            self.set(tracked, True, None)

    def set(self, tracked: TrackedDevice, available: bool, reason: str | None) -> None:
        if tracked.available == available and tracked.availability_reason == reason:
            return
        tracked.available = available
        tracked.availability_reason = reason
        from wire.contract import utcnow

        tracked.availability_changed_at = utcnow()
        self.changes += 1
        LOGGER.info("device %s is %s%s", tracked.ieee, "available" if available else "unavailable",
                    f" ({reason})" if reason else "")
        self.tracker.publish_info(tracked.ieee)

    def all_unavailable(self, reason: str) -> None:
        for tracked in list(self.tracker.devices.values()):
            self.set(tracked, False, reason)

    def restore_after(self, reason: str) -> None:
        """Devices marked unavailable for ``reason`` (e.g. radio down) are available again."""
        for tracked in list(self.tracker.devices.values()):
            if not tracked.available and tracked.availability_reason == reason:
                self.set(tracked, True, None)


def _first_endpoint(tracked: TrackedDevice) -> int:
    return next(ep.endpoint_id for ep in tracked.device.non_zdo_endpoints
                if Basic.cluster_id in ep.in_clusters)
