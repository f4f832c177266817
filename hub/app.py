"""The edge hub: zigpy radio + device handlers + MQTT link, wired together.

zigpy tells the hub about joins, interviews, frames, removals and a lost radio through its listener
interface; the hub adopts each interviewed device (configure reporting, read its state, publish its
description), answers commands and management requests, watches availability, keeps network
backups, and reconnects the radio on its own when it stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zigpy.device
import zigpy.types as t

from hub.availability import RADIO_DOWN, AvailabilityMonitor
from hub.backup import periodic_backups, write_backup
from hub.commands import CommandExecutor
from hub.control import ControlError, ControlServer
from hub.devices import DeviceTracker, quirk_name
from hub.link import HubLink
from hub.pairing import PairingReporter
from hub.radio import RadioError, Zigbee, start_zigbee
from hub.settings import HubSettings
from hub.store import HubStore
from wire.contract import HubRequest, HubStatus, TopicKind, Topics, WireError, utcnow

LOGGER = logging.getLogger(__name__)
VERSION = "0.1.0"
STATUS_INTERVAL = 60.0
JOURNAL_DAYS = 7


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
        self.pairing = PairingReporter(self.hub_id, self.link.publish_event)
        self.availability = AvailabilityMonitor(
            self.tracker, mains_timeout=settings.availability_mains_timeout,
            battery_timeout=settings.availability_battery_timeout,
            interval=settings.availability_interval)
        self.control_server = ControlServer(self, settings.control_socket)
        self.zigbee: Zigbee | None = None
        self.sim_network: Any = None  # the simulated air; it outlives radio reconnects
        self.pairing_until: float = 0.0
        self.adopted = asyncio.Event()  # set each time a device finishes adoption
        self.radio_up = False
        self.radio_reason: str | None = None
        self.radio_down_since: float | None = None
        self.radio_outages = 0
        self.radio_downtime = 0.0
        self._reconnecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []

    @property
    def app(self) -> Any:
        if self.zigbee is None:
            raise ControlError("the radio is not connected")
        return self.zigbee.app

    @property
    def pairing_open(self) -> bool:
        return self.pairing_until > time.time()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._attach_radio(await start_zigbee(self.settings))
        LOGGER.info("hub %s: %d paired devices loaded from zigpy's database", self.hub_id,
                    len(self.tracker.devices))
        await self.link.start()
        if self.settings.control_channel:
            await self.control_server.start()
        self.availability.start()
        self._loops = [
            asyncio.create_task(self._status_loop(), name="hub-status"),
            asyncio.create_task(periodic_backups(lambda: self.app, self.settings.backup_dir,
                                                 self.settings.backup_interval), name="backups"),
        ]
        network = self.sim_network
        if network is not None and not network.devices and self.settings.sim_devices:
            await self.power_on_sim_devices(self.settings.sim_devices)
        elif self.settings.state_refresh_on_start:
            self._spawn(self._refresh_all())

    async def stop(self) -> None:
        background = [*self._loops, *([self._reconnecting] if self._reconnecting else []),
                      *self._tasks]
        for task in background:
            task.cancel()
        await self.availability.stop()
        await self.control_server.stop()
        await asyncio.gather(*background, return_exceptions=True)
        self.tracker.close()
        await self.link.stop(self.status(online=False, reason="hub stopped"))
        if self.zigbee is not None:
            await self.zigbee.app.shutdown()
        if self.sim_network is not None:
            self.sim_network.close()
        self.store.close()
        LOGGER.info("hub %s stopped", self.hub_id)

    async def _attach_radio(self, zigbee: Zigbee) -> None:
        """Take a started zigpy application into use and follow its paired devices."""
        self.zigbee = zigbee
        self.sim_network = zigbee.network or self.sim_network
        zigbee.app.add_listener(self)
        for device in list(zigbee.app.devices.values()):
            if isinstance(device, zigpy.device.Device) and self._is_end_node(device) \
                    and device.is_initialized:
                self.tracker.track(device)
        self.radio_up, self.radio_reason = True, None

    def _is_end_node(self, device: zigpy.device.Device) -> bool:
        return device.nwk != 0x0000 and device.ieee != self.app.state.node_info.ieee

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ radio watchdog
    def connection_lost(self, exc: Exception) -> None:
        """zigpy: the radio stopped answering (watchdog) or went away (USB unplugged)."""
        if self._reconnecting is not None and not self._reconnecting.done():
            return
        reason = str(exc) or type(exc).__name__
        LOGGER.error("radio down: %s; reconnecting", reason)
        self.radio_up, self.radio_reason = False, f"radio down: {reason}"
        self.radio_down_since = time.monotonic()
        self.radio_outages += 1
        self.availability.all_unavailable(RADIO_DOWN)
        self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())
        self._reconnecting = asyncio.create_task(self._reconnect(reason), name="radio-reconnect")

    async def _reconnect(self, reason: str) -> None:
        old = self.zigbee
        self.zigbee = None
        if old is not None:
            old.app.remove_listener(self)
            with contextlib.suppress(Exception):
                await old.app.shutdown()
        delay = self.settings.radio_retry_min
        attempts = 0
        while True:
            attempts += 1
            try:
                zigbee = await start_zigbee(self.settings, network=self.sim_network)
                break
            except RadioError as exc:
                LOGGER.warning("radio reconnect attempt %d failed: %s; next in %.0f s", attempts,
                               exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.radio_retry_max)
        await self._attach_radio(zigbee)
        down = time.monotonic() - (self.radio_down_since or time.monotonic())
        self.radio_downtime += down
        self.radio_down_since = None
        self.radio_reason = f"radio was down for {down:.1f} s ({reason}); back after " \
                            f"{attempts} attempt(s)"
        LOGGER.warning(self.radio_reason)
        self.availability.restore_after(RADIO_DOWN)
        self.tracker.publish_all()
        self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())

    # ------------------------------------------------------------------ simulator
    async def power_on_sim_devices(self, sources: list[str], *, within: float = 30.0) -> int:
        """Switch on virtual devices with permit-join open and wait for their interviews."""
        network = self._sim_network()
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

    def _sim_network(self) -> Any:
        network = self.sim_network
        if network is None:
            raise ControlError("virtual devices need the simulated radio (--radio sim)")
        return network

    def sim_join(self, source: str) -> str:
        """Power on one virtual device; it joins only if permit-join is open."""
        from simulators.network import JoinRefused

        network = self._sim_network()
        sources = expand_sim_sources([source])
        if len(sources) != 1:
            raise ControlError(f"{source!r} is not one device")
        try:
            device = network.create(sources[0])
        except (ValueError, OSError) as exc:
            raise ControlError(str(exc)) from exc
        try:
            network.power_on(device)
        except JoinRefused as exc:
            self.pairing.emit("refused", str(device.ieee), ok=False, detail=str(exc))
            raise ControlError(f"join refused: {exc}") from exc
        return str(device.ieee)

    # ------------------------------------------------------------------ zigpy listener
    def device_joined(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s joined (nwk 0x%04x); interviewing", device.ieee, device.nwk)
        self.pairing.joined(device)

    def handle_message(self, device: zigpy.device.Device, profile: int, cluster: int,
                       src_ep: int, dst_ep: int, data: bytes) -> None:
        self.availability.seen(str(device.ieee))
        self.pairing.frame(device, profile, cluster, src_ep, data)

    def device_initialized(self, device: zigpy.device.Device) -> None:
        if self._is_end_node(device):
            self._spawn(self._adopt(device))

    def device_init_failure(self, device: zigpy.device.Device) -> None:
        LOGGER.warning("device %s failed its interview", device.ieee)
        self.pairing.failed(device, "interview failed (the device stopped answering)")

    def device_removed(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s removed", device.ieee)
        self.tracker.untrack(str(device.ieee))

    def device_left(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s left the network", device.ieee)
        self.tracker.untrack(str(device.ieee))

    async def _adopt(self, device: zigpy.device.Device) -> None:
        """Configure a freshly interviewed device and publish it with its current state."""
        fresh = str(device.ieee) in self.pairing.interviewing
        if fresh:
            self.pairing.interviewed(device, quirk_name(device))
        tracked = self.tracker.track(device)
        self.tracker.publish_info(tracked.ieee)  # the cloud learns the device before its events
        steps = await tracked.handler.configure()
        failed = [s for s in steps if not s.ok]
        capabilities = sorted(tracked.handler.capabilities)
        LOGGER.info("device %s (%s %s): configured %d steps (%d failed), capabilities %s",
                    device.ieee, device.manufacturer, device.model, len(steps), len(failed),
                    capabilities)
        await self._refresh(tracked.ieee)
        self.tracker.publish_info(tracked.ieee)
        if fresh:
            self.pairing.configured(tracked.ieee, steps)
            self.pairing.emit("state_read", tracked.ieee)
            self.pairing.adopted(tracked.ieee, capabilities, device.manufacturer, device.model)
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
        if request.hub_id != self.hub_id:  # as for commands: the payload must agree with the topic
            LOGGER.warning("rejected hub request req=%s for hub %r", request.id, request.hub_id)
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
            self.rename(request.ieee, request.name)
        elif request.action == "remove" and request.ieee:
            await self.remove(request.ieee)

    # ------------------------------------------------------------------ management
    async def permit(self, duration: int) -> None:
        await self.app.permit(duration)
        self.pairing_until = time.time() + duration if duration > 0 else 0.0
        self.pairing.permit(duration)
        self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())
        if duration > 0:
            self._spawn(self._close_later(self.pairing_until))

    async def _close_later(self, until: float) -> None:
        await asyncio.sleep(max(0.0, until - time.time()))
        if self.pairing_until == until:  # not reopened or closed meanwhile
            self.pairing_until = 0.0
            self.pairing.permit(0)
            self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())

    def rename(self, ieee: str, name: str | None) -> None:
        if self.tracker.get(ieee) is None:
            raise ControlError(f"no device {ieee} on hub {self.hub_id}")
        self.tracker.rename(ieee, name)

    async def remove(self, ieee: str) -> None:
        if self.tracker.get(ieee) is None:
            raise ControlError(f"no device {ieee} on hub {self.hub_id}")
        await self.app.remove(t.EUI64.convert(ieee))
        self.tracker.untrack(ieee)  # zigpy's device_removed also does it; clearing twice is fine

    def device_info(self, ieee: str) -> dict[str, Any] | None:
        tracked = self.tracker.get(ieee)
        return None if tracked is None else self.tracker.info(tracked).model_dump(mode="json")

    async def control(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        """Operations of the local control channel (pair is streamed by the server itself)."""
        if op == "status":
            return {"status": self.status().model_dump(mode="json")}
        if op == "devices":
            return {"devices": [self.tracker.info(d).model_dump(mode="json")
                                for d in self.tracker.devices.values()]}
        if op == "stop_pair":
            await self.permit(0)
            return {}
        if op == "join":
            return {"ieee": self.sim_join(str(request.get("source", "")))}
        if op == "rename":
            self.rename(str(request.get("ieee")), request.get("name"))
            return {}
        if op == "remove":
            await self.remove(str(request.get("ieee")))
            return {}
        if op == "backup":
            path = await write_backup(self.app, self.settings.backup_dir)
            return {"path": str(path.resolve())}
        if op == "radio_fail":
            self._sim_network().fail(str(request.get("reason") or "told to fail"),
                                     silent=bool(request.get("silent")))
            return {}
        if op == "radio_recover":
            self._sim_network().recover()
            return {}
        if op in ("sim_pause", "sim_resume"):
            self._sim_network().paused = op == "sim_pause"
            return {}
        if op == "sim_device":
            device = self._sim_network().devices.get(t.EUI64.convert(str(request.get("ieee"))))
            if device is None:
                raise ControlError(f"no virtual device {request.get('ieee')}")
            return {"kind": device.kind, "powered": device.powered, "joined": device.joined,
                    "commands": dict(device.command_counts)}
        raise ControlError(f"unknown operation {op!r}")

    # ------------------------------------------------------------------ status
    def status(self, *, online: bool = True, reason: str | None = None) -> HubStatus:
        pairing = (datetime.fromtimestamp(self.pairing_until, UTC) if self.pairing_open else None)
        down_now = (time.monotonic() - self.radio_down_since) if self.radio_down_since else 0.0
        return HubStatus(
            hub_id=self.hub_id, online=online, version=VERSION,
            reason=reason or self.radio_reason,
            radio=self.zigbee.radio if self.zigbee else self.settings.radio,
            devices=len(self.tracker.devices), pairing_until=pairing, radio_up=self.radio_up,
            metrics={
                "events_emitted": self.tracker.events_emitted,
                "last_seq": self.store.last_seq,
                "outbox_pending": self.store.pending,
                "outbox_dropped": self.store.dropped,
                "published": self.link.published,
                "mqtt_reconnects": self.link.reconnects,
                "radio_outages": self.radio_outages,
                "radio_downtime_s": round(self.radio_downtime + down_now, 1),
                "availability_changes": self.availability.changes,
                **{f"commands_{k}": v for k, v in self.executor.counts.items()},
            },
        )

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.link.publish_retained(Topics.status(self.hub_id), self.status().to_bytes())
            # A command id is only redelivered within its lifetime (seconds); a week is plenty.
            self.store.prune_commands(older_than=JOURNAL_DAYS * 86400)
            self.store.trim()  # age bound of the outbox, also while no events arrive


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

