"""The hub's view of its devices: each zigpy device with its handler, capability state and name.

Readings from the device handlers become state changes; each change is one event in the hub's
ledger (hub.publisher). Descriptions (DeviceInfo) are published retained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import zigpy.device

from device_handlers.model import DeviceHandler, Reading
from device_handlers.registry import handler_for
from hub.publisher import Publisher
from hub.store import HubStore
from wire.contract import DeviceInfo, State, utcnow

LOGGER = logging.getLogger(__name__)


@dataclass
class TrackedDevice:
    device: zigpy.device.Device
    handler: DeviceHandler
    state: State = field(default_factory=dict)
    detach: Callable[[], None] | None = None
    available: bool = True
    availability_reason: str | None = None
    availability_changed_at: datetime | None = None
    last_seen: float = 0.0
    # Formatted once: zigpy formats an IEEE address in ~15 µs, and every event needs it.
    ieee: str = field(init=False)

    def __post_init__(self) -> None:
        self.ieee = str(self.device.ieee)


def power_source(device: zigpy.device.Device) -> str:
    if device.node_desc is None:
        return "unknown"
    return "mains" if device.node_desc.is_mains_powered else "battery"


# A quirks v2 device is an instance of zha-quirks' generic clone class; ZHA's diagnostics name it by
# the class's historical home in zigpy.
_V2_DEVICE_CLASS = ("zhaquirks.device", "CustomZigpyDevice")
V2_QUIRK_NAME = "zigpy.quirks.v2.CustomDeviceV2"


def quirk_name(device: zigpy.device.Device) -> str | None:
    """The applied quirk's class as ZHA's diagnostics name it (``quirk_class``), e.g.
    "zhaquirks.centralite.ias.CentraLiteIASSensor"; None for a device without a quirk."""
    cls = type(device)
    if cls is zigpy.device.Device:
        return getattr(device, "quirk_id", None) or None
    if any((c.__module__, c.__name__) == _V2_DEVICE_CLASS for c in cls.__mro__):
        return V2_QUIRK_NAME
    return f"{cls.__module__}.{cls.__name__}"


class DeviceTracker:
    """Devices by IEEE, their state, and the events their readings produce."""

    def __init__(self, hub_id: str, store: HubStore, publisher: Publisher, *,
                 info_debounce: float = 5.0) -> None:
        self.hub_id = hub_id
        self.store = store
        self.publisher = publisher
        self.info_debounce = info_debounce
        self.devices: dict[str, TrackedDevice] = {}
        self._by_device: dict[int, TrackedDevice] = {}  # id(zigpy device) -> its tracking
        self.names = store.names()
        self._info_timers: dict[str, asyncio.TimerHandle] = {}

    def get(self, ieee: str) -> TrackedDevice | None:
        return self.devices.get(ieee)

    def of(self, device: zigpy.device.Device) -> TrackedDevice | None:
        """The tracking of this very zigpy device object (None for one zigpy has replaced since,
        e.g. by its quirk): found without formatting its IEEE address."""
        tracked = self._by_device.get(id(device))
        return tracked if tracked is not None and tracked.device is device else None

    def track(self, device: zigpy.device.Device) -> TrackedDevice:
        """Start following a device: build its handler from its clusters and listen to it."""
        ieee = str(device.ieee)
        self.untrack(ieee, publish=False)
        tracked = TrackedDevice(device=device, handler=handler_for(device))
        self.devices[ieee] = tracked
        self._by_device[id(device)] = tracked
        # The state known from zigpy's attribute cache, without radio traffic and without events.
        self._apply(tracked, tracked.handler.cached_readings(), emit=False)
        tracked.detach = tracked.handler.attach(lambda readings: self.on_readings(ieee, readings))
        return tracked

    def untrack(self, ieee: str, *, publish: bool = True) -> None:
        tracked = self.devices.pop(ieee, None)
        if tracked is None:
            return
        if self._by_device.get(id(tracked.device)) is tracked:
            del self._by_device[id(tracked.device)]
        if tracked.detach is not None:
            tracked.detach()
        timer = self._info_timers.pop(ieee, None)
        if timer is not None:
            timer.cancel()
        if publish:
            self.publisher.device_removed(ieee)

    def on_readings(self, ieee: str, readings: list[Reading]) -> None:
        tracked = self.devices.get(ieee)
        if tracked is not None:
            self._apply(tracked, readings, emit=True)

    def apply(self, tracked: TrackedDevice, readings: list[Reading]) -> State:
        """Apply readings (e.g. read back after a command); return them as a state fragment."""
        self._apply(tracked, readings, emit=True)
        fragment: State = {}
        for r in readings:
            fragment.setdefault(r.instance, {})[r.attribute] = r.value
        return fragment

    def _apply(self, tracked: TrackedDevice, readings: list[Reading], *, emit: bool) -> None:
        changed = False
        for r in readings:
            attrs = tracked.state.setdefault(r.instance, {})
            if r.attribute in attrs and attrs[r.attribute] == r.value:
                continue
            attrs[r.attribute] = r.value
            changed = True
            if emit:
                self._emit(tracked, r)
        if changed and emit:
            self.schedule_info(tracked.ieee)

    def _emit(self, tracked: TrackedDevice, r: Reading) -> None:
        seq = self.publisher.event(tracked.ieee, r.instance, r.attribute, r.value, r.unit,
                                   utcnow())
        LOGGER.debug("event seq=%d %s %s.%s=%r", seq, tracked.ieee, r.instance, r.attribute,
                     r.value)

    # ------------------------------------------------------------------ descriptions
    def info(self, tracked: TrackedDevice) -> DeviceInfo:
        device = tracked.device
        state: State = {instance: dict(tracked.state.get(instance, {}))
                        for instance in tracked.handler.capabilities}
        return DeviceInfo(
            hub_id=self.hub_id, ieee=tracked.ieee, nwk=int(device.nwk),
            manufacturer=device.manufacturer, model=device.model,
            name=self.names.get(tracked.ieee), quirk=quirk_name(device),
            power_source=power_source(device),  # type: ignore[arg-type]
            available=tracked.available, availability_reason=tracked.availability_reason,
            availability_changed_at=tracked.availability_changed_at, capabilities=state,
            constraints=tracked.handler.constraints,
        )

    def publish_info(self, ieee: str) -> None:
        self._info_timers.pop(ieee, None)
        tracked = self.devices.get(ieee)
        if tracked is not None:
            self.publisher.device(self.info(tracked))

    def schedule_info(self, ieee: str) -> None:
        """Republish a description after state changes, at most once per debounce period."""
        if ieee in self._info_timers:
            return
        loop = asyncio.get_running_loop()
        self._info_timers[ieee] = loop.call_later(self.info_debounce, self.publish_info, ieee)

    def publish_all(self) -> None:
        for ieee in list(self.devices):
            self.publish_info(ieee)

    def rename(self, ieee: str, name: str | None) -> None:
        self.store.set_name(ieee, name)
        if name:
            self.names[ieee] = name
        else:
            self.names.pop(ieee, None)
        self.publish_info(ieee)

    def close(self) -> None:
        for ieee in list(self.devices):
            self.untrack(ieee, publish=False)
