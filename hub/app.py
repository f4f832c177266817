"""The edge hub: zigpy radio + device handlers + MQTT link, assembled and run.

The parts, in the order they are built: the store and the link, the publisher (the one way out),
the device tracker, the command executor and management, the dispatcher (the one way in), the
radio watchdog and the local control channel. zigpy tells the hub about joins, interviews, frames,
removals and a lost radio through its listener interface (the methods below).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import zigpy.device

from hub.adoption import adopt
from hub.availability import RADIO_DOWN, AvailabilityMonitor
from hub.backup import periodic_backups
from hub.commands import CommandExecutor
from hub.control import ControlServer
from hub.devices import DeviceTracker, quirk_name
from hub.dispatch import (
    BackupOp,
    DevicesOp,
    Dispatcher,
    RemoveOp,
    RenameOp,
    StatusOp,
    StopPairOp,
)
from hub.groups import GroupManager
from hub.link import HubLink
from hub.management import Management, ManagementError
from hub.pairing import PairingReporter
from hub.publisher import Publisher
from hub.radio import RadioControls, Zigbee, load_radio_controls, start_zigbee
from hub.settings import HubSettings
from hub.store import HubStore
from hub.watchdog import RadioWatchdog
from wire.contract import HubStatus

if TYPE_CHECKING:
    from hub.ha_bridge import HaBridge
    from hub.metrics_server import MetricsServer

LOGGER = logging.getLogger(__name__)
VERSION = "0.1.0"
STATUS_HEARTBEAT = 60.0  # the status is published this often even when nothing in it changed
JOURNAL_DAYS = 7
RADIO_STOP_TIMEOUT = 10.0  # seconds a stopping hub waits for zigpy to let go of the radio


class Hub:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.hub_id = settings.hub_id
        self.store = HubStore(settings.outbox_db, max_rows=settings.outbox_max_events,
                              max_age=settings.outbox_max_age)
        self.link = HubLink(settings, self.store, self._on_message, self._on_connected)
        self.publisher = Publisher(self.hub_id, self.store, self.link,
                                   resend_after=settings.ledger_resend_after,
                                   flush_delay=settings.outbox_flush_delay,
                                   batch_max=settings.event_batch_max)
        self.publisher.status_source = self.status
        self.tracker = DeviceTracker(self.hub_id, self.store, self.publisher,
                                     info_debounce=settings.device_info_debounce)
        self.executor = CommandExecutor(self.hub_id, self.store, self.publisher, self.tracker,
                                        timeout=settings.command_timeout)
        self.pairing = PairingReporter(self.hub_id, self.publisher.pairing)
        self.management = Management(self.hub_id, lambda: self.app, self.tracker, self.pairing,
                                     self.publisher, settings.backup_dir)
        self.groups = GroupManager(self.hub_id, lambda: self.app, self.tracker, self.store,
                                   self.publisher, settings.hub_data_dir / "scenes.json",
                                   timeout=settings.command_timeout)
        self.management.groups = self.groups
        self.dispatch = Dispatcher(self.hub_id, self.executor, self.management, self.publisher)
        self.dispatch.register({
            StatusOp: self._op_status, DevicesOp: self._op_devices, StopPairOp: self._op_stop_pair,
            RenameOp: self._op_rename, RemoveOp: self._op_remove, BackupOp: self._op_backup,
        })
        self.availability = AvailabilityMonitor(
            self.tracker, mains_timeout=settings.availability_mains_timeout,
            battery_timeout=settings.availability_battery_timeout,
            interval=settings.availability_interval)
        self.watchdog = RadioWatchdog(self._start_radio, retry_min=settings.radio_retry_min,
                                      retry_max=settings.radio_retry_max,
                                      on_down=self._radio_down, on_up=self._radio_back)
        self.control_server = ControlServer(settings.control_socket, self.dispatch.control,
                                            self.management, self.pairing, self.device_info)
        self.metrics_server: MetricsServer | None = None
        if settings.metrics_port:
            # Only a hub that serves metrics loads prometheus_client (~2 MiB resident).
            from hub.metrics import hub_registry
            from hub.metrics_server import MetricsServer

            self.metrics_server = MetricsServer(hub_registry(self), settings.metrics_host,
                                                settings.metrics_port, settings.metrics_token_path)
        self.home_assistant: HaBridge | None = None
        if settings.ha_enabled:
            # Home Assistant on a local broker: loaded only by a hub that is given one.
            from hub.ha_bridge import HaBridge

            self.home_assistant = HaBridge(
                settings, self.executor, lambda: [self.tracker.info(d) for d in
                                                  list(self.tracker.devices.values())], VERSION,
                groups=self.groups)
            self.publisher.local = self.home_assistant
        self.controls: RadioControls | None = None
        self.zigbee: Zigbee | None = None
        self.adopted = asyncio.Event()  # set each time a device finishes adoption
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._ran = False  # the radio started: there is a running hub to stop

    @property
    def app(self) -> Any:
        if self.zigbee is None:
            raise ManagementError("the radio is not connected")
        return self.zigbee.app

    @property
    def pairing_open(self) -> bool:
        return self.management.pairing_open

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.controls = load_radio_controls(self.settings)
        if self.controls is not None:
            self.dispatch.register(self.controls.operations)
            self.controls.on_refused = self._join_refused
        try:
            await self._attach_radio(await self._start_radio())
        except BaseException:
            self._close_controls()
            raise
        self._ran = True
        self.watchdog.running()
        LOGGER.info("hub %s: %d paired devices loaded from zigpy's database (ledger epoch %s)",
                    self.hub_id, len(self.tracker.devices), self.store.epoch,
                    extra={"hub": self.hub_id})
        await self.link.start()
        self.publisher.start()
        if self.home_assistant is not None:
            await self.home_assistant.start()
        if self.settings.control_channel:
            await self.control_server.start()
        await self._serve_metrics()
        self.availability.start()
        self._loops = [
            asyncio.create_task(self._status_loop(), name="hub-status"),
            asyncio.create_task(periodic_backups(lambda: self.app, self.settings.backup_dir,
                                                 self.settings.backup_interval), name="backups"),
        ]
        joined = 0
        if self.controls is not None:
            joined = await self.controls.start(self.wait_adopted)
        if not joined and self.settings.state_refresh_on_start:
            self._spawn(self._refresh_all())
        # What start-up made (zigpy's devices and clusters, the loaded modules: some 400,000
        # objects) lives as long as the hub: the collector stops walking it on every full
        # collection, which the allocations of a stream of reports trigger every few seconds.
        gc.freeze()

    async def stop(self) -> None:
        """Stop in the order that loses nothing and never waits on what is gone: the background
        work first, then (bounded) the cloud's acknowledgements, the link (no more commands or
        acknowledgements in), the radio (no more events), and last the outbox: what is still
        queued is committed before the store closes, and no timer is left to touch it after."""
        background = [*self._loops, *self._tasks]
        for task in background:
            task.cancel()
        await self.watchdog.stop()
        await self.management.stop()
        await self.availability.stop()
        await self.control_server.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await asyncio.gather(*background, return_exceptions=True)
        self.tracker.close()
        drain = self.settings.shutdown_drain
        if self._ran and self.store.pending and not await self.publisher.drain(drain):
            LOGGER.warning("stopping with %d messages the cloud has not acknowledged; they are "
                           "kept and sent after the next start", self.store.pending)
        await self.link.stop(self.status(online=False, reason="hub stopped"))
        if self.home_assistant is not None:
            await self.home_assistant.stop()
        await self._stop_radio()
        late = list(self._tasks)  # spawned by zigpy while stopping (an interview that ended)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        await self.publisher.stop()
        self.store.close()
        if self._ran:
            LOGGER.info("hub %s stopped", self.hub_id, extra={"hub": self.hub_id})

    async def _stop_radio(self) -> None:
        """Shut zigpy down (its frames are what make events); a radio that hangs is left behind
        after RADIO_STOP_TIMEOUT rather than holding the hub's stop."""
        zigbee, self.zigbee = self.zigbee, None
        if zigbee is not None:
            zigbee.app.remove_listener(self)
            try:
                await asyncio.wait_for(zigbee.app.shutdown(), RADIO_STOP_TIMEOUT)
            except Exception as exc:
                LOGGER.warning("the radio did not shut down cleanly: %r", exc)
        self._close_controls()

    async def _serve_metrics(self) -> None:
        """Serve /metrics when configured; a hub that cannot (port taken, weak token) goes on
        without them and says why: its devices matter more than its numbers."""
        if self.metrics_server is None:
            return
        from hub.metrics_server import MetricsTokenError

        try:
            await self.metrics_server.start()
        except (OSError, MetricsTokenError) as exc:
            LOGGER.error("hub metrics not served on %s:%s: %s", self.settings.metrics_host,
                         self.settings.metrics_port, exc, extra={"hub": self.hub_id})
            self.metrics_server = None

    def _close_controls(self) -> None:
        if self.controls is not None:
            self.controls.close()
            self.controls = None

    async def _start_radio(self) -> Zigbee:
        return await start_zigbee(self.settings, self.controls)

    async def _attach_radio(self, zigbee: Zigbee) -> None:
        """Take a started zigpy application into use and follow its paired devices."""
        self.zigbee = zigbee
        zigbee.app.add_listener(self)
        for device in list(zigbee.app.devices.values()):
            if isinstance(device, zigpy.device.Device) and self._is_end_node(device) \
                    and device.is_initialized:
                self.tracker.track(device)

    def _is_end_node(self, device: zigpy.device.Device) -> bool:
        return device.nwk != 0x0000 and device.ieee != self.app.state.node_info.ieee

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_adopted(self, ieees: list[str], within: float) -> int:
        """Wait until the given devices were adopted (or ``within`` seconds); how many were."""
        deadline = time.monotonic() + within
        while any(i not in self.tracker.devices for i in ieees) and time.monotonic() < deadline:
            self.adopted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.adopted.wait(), deadline - time.monotonic())
        return sum(i in self.tracker.devices for i in ieees)

    # ------------------------------------------------------------------ radio watchdog
    def connection_lost(self, exc: Exception) -> None:
        """zigpy: the radio stopped answering (watchdog) or went away (USB unplugged)."""
        old, self.zigbee = self.zigbee, None
        self.watchdog.lost(exc, old, self)

    def _radio_down(self, reason: str) -> None:
        self.availability.all_unavailable(RADIO_DOWN)
        self.publisher.status()

    async def _radio_back(self, zigbee: Zigbee) -> None:
        await self._attach_radio(zigbee)
        self.availability.restore_after(RADIO_DOWN)
        self.tracker.publish_all()
        self.publisher.status()

    # ------------------------------------------------------------------ zigpy listener
    def _join_refused(self, ieee: str, detail: str) -> None:
        self.pairing.emit("refused", ieee, ok=False, detail=detail)

    def device_joined(self, device: zigpy.device.Device) -> None:
        LOGGER.info("device %s joined (nwk 0x%04x); interviewing", device.ieee, device.nwk)
        self.pairing.joined(device)

    def handle_message(self, device: zigpy.device.Device, profile: int, cluster: int,
                       src_ep: int, dst_ep: int, data: bytes) -> None:
        tracked = self.tracker.of(device)
        if tracked is None or not tracked.available:  # seen() acts on unavailable devices only
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
        """Take a freshly interviewed device into use and publish it with its current state."""
        fresh = str(device.ieee) in self.pairing.interviewing
        if fresh:
            self.pairing.interviewed(device, quirk_name(device))
        tracked = self.tracker.track(device)
        self.tracker.publish_info(tracked.ieee)  # the cloud learns the device before its events
        adoption = await adopt(device, tracked.handler)
        capabilities = sorted(tracked.handler.capabilities)
        LOGGER.info("device %s (%s %s): configured %d steps (%d failed), capabilities %s",
                    device.ieee, device.manufacturer, device.model, len(adoption.steps),
                    len(adoption.failed_steps), capabilities)
        if adoption.readings is not None:
            self.tracker.on_readings(tracked.ieee, adoption.readings)
        self.tracker.publish_info(tracked.ieee)
        if fresh:
            self.pairing.configured(tracked.ieee, adoption.steps)
            self.pairing.emit("state_read", tracked.ieee)
            self.pairing.adopted(tracked.ieee, capabilities, device.manufacturer, device.model)
        self.adopted.set()

    async def _refresh_all(self) -> None:
        """Read the state of every mains-powered device (battery devices sleep; they report)."""
        for ieee, tracked in list(self.tracker.devices.items()):
            if tracked.device.node_desc is None or tracked.device.node_desc.is_mains_powered:
                try:
                    readings = await tracked.handler.read_state()
                except Exception as exc:  # an unreachable device keeps its cached state
                    LOGGER.info("device %s: state read failed: %s", ieee, exc)
                    continue
                self.tracker.on_readings(ieee, readings)
                # The read also took the limits not known yet (devices paired before the hub read
                # them): describe the device again so the cloud holds commands to them.
                self.tracker.schedule_info(ieee)

    # ------------------------------------------------------------------ MQTT
    def _on_connected(self, session_present: bool) -> None:
        self.publisher.status()
        self.tracker.publish_all()

    async def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        await self.dispatch.on_message(topic, payload, retained)

    # ------------------------------------------------------------------ local control operations
    def device_info(self, ieee: str) -> dict[str, Any] | None:
        tracked = self.tracker.get(ieee)
        return None if tracked is None else self.tracker.info(tracked).model_dump(mode="json")

    async def _op_status(self, op: StatusOp) -> dict[str, Any]:
        return {"status": self.status().model_dump(mode="json")}

    async def _op_devices(self, op: DevicesOp) -> dict[str, Any]:
        return {"devices": [self.tracker.info(d).model_dump(mode="json")
                            for d in self.tracker.devices.values()]}

    async def _op_stop_pair(self, op: StopPairOp) -> dict[str, Any]:
        await self.management.permit(0)
        return {}

    async def _op_rename(self, op: RenameOp) -> dict[str, Any]:
        self.management.rename(op.ieee, op.name)
        return {}

    async def _op_remove(self, op: RemoveOp) -> dict[str, Any]:
        await self.management.remove(op.ieee)
        return {}

    async def _op_backup(self, op: BackupOp) -> dict[str, Any]:
        return {"path": str((await self.management.backup()).resolve())}

    # ------------------------------------------------------------------ status
    def status(self, *, online: bool = True, reason: str | None = None) -> HubStatus:
        management, watchdog = self.management, self.watchdog
        pairing = (datetime.fromtimestamp(management.pairing_until, UTC)
                   if management.pairing_open else None)
        return HubStatus(
            hub_id=self.hub_id, online=online, version=VERSION,
            reason=reason or watchdog.reason,
            radio=self.zigbee.radio if self.zigbee else self.settings.radio,
            devices=len(self.tracker.devices), pairing_until=pairing, radio_up=watchdog.up,
            epoch=self.store.epoch, last_seq=self.store.last_seq,
            dropped_upto=self.store.dropped_upto, groups=self.groups.table() if online else None,
            metrics={
                # The events this ledger emitted, across restarts: its last sequence number.
                "events_emitted": self.store.last_seq,
                "last_seq": self.store.last_seq,
                "acked_seq": self.store.acked_seq,
                "outbox_pending": self.store.pending,
                "outbox_dropped": self.store.dropped,
                "published": self.link.published,
                "resends": self.publisher.resends,
                "mqtt_reconnects": self.link.reconnects,
                "refused_messages": self.dispatch.refused,
                "radio_outages": watchdog.outages,
                "radio_downtime_s": round(watchdog.downtime_now, 1),
                "availability_changes": self.availability.changes,
                **{f"commands_{k}": v for k, v in self.executor.counts.items()},
            },
        )

    async def _status_loop(self) -> None:
        """The status again when its counters changed (at most every status_interval seconds),
        and every minute regardless, with the journal and outbox housekeeping."""
        heartbeat_at = time.monotonic() + STATUS_HEARTBEAT
        while True:
            await asyncio.sleep(min(self.settings.status_interval, STATUS_HEARTBEAT))
            if time.monotonic() < heartbeat_at:
                self.publisher.status(if_changed=True)
                continue
            heartbeat_at = time.monotonic() + STATUS_HEARTBEAT
            self.publisher.status()
            # A command id is only redelivered within its lifetime (seconds); a week is plenty.
            self.store.prune_commands(older_than=JOURNAL_DAYS * 86400)
            self.store.trim()  # age bound of the outbox, also while no events arrive


async def run_hub(settings: HubSettings, *, ready: asyncio.Event | None = None,
                  stop: asyncio.Event | None = None) -> None:
    """Run a hub until ``stop`` is set or the task is cancelled, then shut it down cleanly."""
    await serve_hub(Hub(settings), ready=ready, stop=stop)


async def serve_hub(hub: Hub, *, ready: asyncio.Event | None = None,
                    stop: asyncio.Event | None = None) -> None:
    """Start ``hub``, run it until ``stop`` is set or the task is cancelled, then stop it; a stop
    asked for while the hub is still starting cuts the start short and stops what had started."""
    stop = stop or asyncio.Event()
    try:
        starting = asyncio.ensure_future(hub.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not starting.done():
                starting.cancel()
                # zigpy may finish its step before it sees the cancellation: wait for either.
                await asyncio.wait({starting})
        if not starting.cancelled():
            starting.result()  # a failed start (a radio that does not answer) is raised here
        if ready is not None and not stop.is_set():
            ready.set()
        await stop.wait()
    finally:
        # Finish the shutdown even if cancelled again (a cancelling parent): a half-stopped hub
        # would leave the radio and its database open.
        closing = asyncio.ensure_future(hub.stop())
        while not closing.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(closing)
        closing.result()


def run_hub_process(settings: HubSettings) -> None:
    """Run a hub as this process until SIGINT or SIGTERM, then stop it cleanly. A second signal
    exits at once, after committing the events still queued: the outbox is SQLite in WAL mode, so
    every committed transaction survives the exit."""
    asyncio.run(_run_until_signalled(settings))


async def _run_until_signalled(settings: HubSettings) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(settings)
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            LOGGER.info("%s: stopping the hub (once more to exit at once)", signum.name)
            stop.set()
            return
        LOGGER.warning("%s again: exiting without finishing the stop", signum.name)
        with contextlib.suppress(Exception):  # the store may be closed already
            hub.store.flush()
        logging.shutdown()
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serve_hub(hub, stop=stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
