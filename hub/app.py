"""The edge hub: zigpy radio + device handlers + MQTT link, wired together.

zigpy tells the hub about joins, interviews and removals through its listener interface; the hub
adopts each interviewed device (configure reporting, read its state, publish its description) and
answers commands and management requests arriving over MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import zigpy.device
import zigpy.types as t

from hub.commands import CommandExecutor
from hub.devices import DeviceTracker
from hub.link import HubLink
from hub.radio import Zigbee, start_zigbee
from hub.settings import HubSettings
from hub.store import HubStore
from wire.contract import HubRequest, HubStatus, TopicKind, Topics, WireError, utcnow

LOGGER = logging.getLogger(__name__)
VERSION = "0.1.0"
STATUS_INTERVAL = 60.0


class Hub:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.hub_id = settings.hub_id
        self.store = HubStore(settings.outbox_db, max_rows=settings.outbox_max_events,
                              max_age=settings.outbox_max_age)
        self.link = HubLink(settings, self.store, self._on_message, self._on_connected)
        self.tracker = DeviceTracker(self.hub_id, self.store, self.link,
                                     info_debounce=settings.device_info_debounce)
        self.executor = CommandExecutor(self.hub_id, self.store, self.link, self.tracker,
                                        timeout=settings.command_timeout)
        self.zigbee: Zigbee | None = None
        self.started_at = utcnow()
        self.pairing_until: float = 0.0
        self.adopted = asyncio.Event()  # set each time a device finishes adoption
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status_task: asyncio.Task[None] | None = None

    @property
    def app(self) -> Any:
        assert self.zigbee is not None
        return self.zigbee.app

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.zigbee = await start_zigbee(self.settings)
        self.app.add_listener(self)
        for device in list(self.app.devices.values()):
            if self._is_end_node(device) and device.is_initialized:
                self.tracker.track(device)
        LOGGER.info("hub %s: %d paired devices loaded from zigpy's database", self.hub_id,
                    len(self.tracker.devices))
        await self.link.start()
        self._status_task = asyncio.create_task(self._status_loop(), name="hub-status")
        network = self.zigbee.network
        if network is not None and not network.devices and self.settings.sim_devices:
            await self.power_on_sim_devices(self.settings.sim_devices)
        elif self.settings.state_refresh_on_start:
            self._spawn(self._refresh_all())

    async def stop(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.tracker.close()
        await self.link.stop(self.status(online=False, reason="hub stopped"))
        if self.zigbee is not None:
            await self.zigbee.app.shutdown()
            if self.zigbee.network is not None:
                self.zigbee.network.close()
        self.store.close()
        LOGGER.info("hub %s stopped", self.hub_id)

    def _is_end_node(self, device: zigpy.device.Device) -> bool:
        return device.nwk != 0x0000 and device.ieee != self.app.state.node_info.ieee

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ simulator
    async def power_on_sim_devices(self, sources: list[str], *, within: float = 30.0) -> int:
        """Switch on virtual devices with permit-join open and wait for their interviews."""
        network = self.zigbee.network if self.zigbee else None
        if network is None:
            raise RuntimeError("virtual devices need the simulated radio (--radio sim)")
        expanded = expand_sim_sources(sources)
        await self.app.permit(min(254, int(within) + 30))
        ieees = []
        for src in expanded:
            device = network.create(src)
            network.power_on(device)
            ieees.append(str(device.ieee))
        deadline = time.monotonic() + within
        while any(i not in self.tracker.devices for i in ieees) and time.monotonic() < deadline:
            self.adopted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.adopted.wait(), deadline - time.monotonic())
        await self.app.permit(0)
        joined = sum(i in self.tracker.devices for i in ieees)
        LOGGER.info("simulator: %d of %d virtual devices joined and were adopted", joined,
                    len(ieees))
        return joined

    # ------------------------------------------------------------------ zigpy listener
    def device_joined(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s joined (nwk 0x%04x); interviewing", device.ieee, device.nwk)

    def device_initialized(self, device: zigpy.device.Device) -> None:
        if self._is_end_node(device):
            self._spawn(self._adopt(device))

    def device_init_failure(self, device: zigpy.device.Device) -> None:
        LOGGER.warning("device %s failed its interview", device.ieee)

    def device_removed(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s removed", device.ieee)
        self.tracker.untrack(str(device.ieee))

    def device_left(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s left the network", device.ieee)

    async def _adopt(self, device: zigpy.device.Device) -> None:
        """Configure a freshly interviewed device and publish it with its current state."""
        tracked = self.tracker.track(device)
        self.tracker.publish_info(tracked.ieee)  # the cloud learns the device before its events
        steps = await tracked.handler.configure()
        failed = [s for s in steps if not s.ok]
        LOGGER.info("device %s (%s %s): configured %d steps (%d failed), capabilities %s",
                    device.ieee, device.manufacturer, device.model, len(steps), len(failed),
                    sorted(tracked.handler.capabilities))
        await self._refresh(tracked.ieee)
        self.tracker.publish_info(tracked.ieee)
        self.adopted.set()

    async def _refresh(self, ieee: str) -> None:
        tracked = self.tracker.get(ieee)
        if tracked is None:
            return
        try:
            readings = await tracked.handler.read_state()
        except Exception as exc:  # an unreachable device keeps its cached state
            LOGGER.info("device %s: state read failed: %s", ieee, exc)
            return
        self.tracker.on_readings(ieee, readings)

    async def _refresh_all(self) -> None:
        for ieee, tracked in list(self.tracker.devices.items()):
            if tracked.device.node_desc is None or tracked.device.node_desc.is_mains_powered:
                await self._refresh(ieee)

    # ------------------------------------------------------------------ MQTT
    def _on_connected(self) -> None:
        self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())
        self.tracker.publish_all()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            kind, hub_id, _ = Topics.parse(topic)
        except WireError as exc:
            LOGGER.warning("ignored message on %s: %s", topic, exc)
            return
        if hub_id != self.hub_id:
            return
        if kind is TopicKind.COMMANDS:
            await self.executor.handle(payload)
        elif kind is TopicKind.REQUESTS:
            await self._handle_request(payload)

    async def _handle_request(self, payload: bytes) -> None:
        try:
            request = HubRequest.from_bytes(payload)
        except WireError as exc:
            LOGGER.warning("rejected hub request: %s", exc)
            return
        if utcnow() > request.expires_at:
            LOGGER.info("req=%s expired, ignored", request.id)
            return
        LOGGER.info("req=%s %s", request.id, request.action)
        try:
            await self.run_request(request)
        except Exception as exc:
            LOGGER.warning("req=%s failed: %s", request.id, exc)

    async def run_request(self, request: HubRequest) -> None:
        if request.action == "permit_join":
            await self.permit(request.duration if request.duration is not None else 60)
        elif request.action == "close_join":
            await self.permit(0)
        elif request.action == "rename" and request.ieee:
            self.tracker.rename(request.ieee, request.name)
        elif request.action == "remove" and request.ieee:
            await self.app.remove(t.EUI64.convert(request.ieee))

    async def permit(self, duration: int) -> None:
        await self.app.permit(duration)
        self.pairing_until = time.time() + duration if duration > 0 else 0.0
        self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())

    # ------------------------------------------------------------------ status
    def status(self, *, online: bool = True, reason: str | None = None) -> HubStatus:
        from datetime import UTC, datetime

        pairing = (datetime.fromtimestamp(self.pairing_until, UTC)
                   if self.pairing_until > time.time() else None)
        return HubStatus(
            hub_id=self.hub_id, online=online, version=VERSION, reason=reason,
            radio=self.zigbee.radio if self.zigbee else None,
            devices=len(self.tracker.devices), pairing_until=pairing, radio_up=True,
            metrics={
                "events_emitted": self.tracker.events_emitted,
                "last_seq": self.store.last_seq,
                "outbox_pending": self.store.pending,
                "outbox_dropped": self.store.dropped,
                "published": self.link.published,
                "mqtt_reconnects": self.link.reconnects,
                **{f"commands_{k}": v for k, v in self.executor.counts.items()},
            },
        )

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())


def expand_sim_sources(sources: list[str]) -> list[str]:
    """Device sources for the simulator: "default" (the demo set), kind names, diagnostics files,
    or directories of them."""
    from simulators.kinds import DEFAULT_KINDS

    expanded: list[str] = []
    for src in sources:
        if src == "default":
            expanded.extend(DEFAULT_KINDS)
        elif Path(src).is_dir():
            expanded.extend(f"file:{p}" for p in sorted(Path(src).glob("*.json")))
        elif src.endswith(".json") or Path(src).is_file():
            expanded.append(f"file:{src}")
        else:
            expanded.append(src)
    return expanded


async def run_hub(settings: HubSettings, *, ready: asyncio.Event | None = None) -> None:
    """Run a hub until cancelled (Ctrl-C), then shut it down cleanly."""
    hub = Hub(settings)
    try:
        await hub.start()
    except BaseException:
        hub.store.close()
        raise
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        # Finish the shutdown even if cancelled again (a second Ctrl-C, a cancelling parent):
        # a half-stopped hub would leave the radio and its database open.
        stopping = asyncio.ensure_future(hub.stop())
        while not stopping.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stopping)
