"""Taking an interviewed Zigbee device into use: its handler from its clusters, binding and
reporting configured as ZHA does, and its current state read from the device.

The hub runs this for every device that finishes its interview; ``spoke simulate inspect`` runs
the same steps on virtual devices built from ZHA diagnostics, so both see a device the same way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import zigpy.device
import zigpy.types as t

from device_handlers.model import ConfigureStep, DeviceHandler, Reading
from device_handlers.registry import handler_for

LOGGER = logging.getLogger(__name__)


@dataclass
class Adoption:
    handler: DeviceHandler
    steps: list[ConfigureStep] = field(default_factory=list)
    readings: list[Reading] | None = None  # None: the device did not answer the state read
    error: str | None = None

    @property
    def failed_steps(self) -> list[ConfigureStep]:
        return [s for s in self.steps if not s.ok]


class Interviews:
    """A zigpy listener with a future per IEEE, resolved when zigpy has interviewed the device
    (quirk applied), or failed with the interview."""

    def __init__(self) -> None:
        self.pending: dict[t.EUI64, asyncio.Future[zigpy.device.Device]] = {}

    def expect(self, ieee: t.EUI64) -> asyncio.Future[zigpy.device.Device]:
        return self.pending.setdefault(ieee, asyncio.get_running_loop().create_future())

    def device_initialized(self, device: zigpy.device.Device) -> None:
        future = self.pending.pop(device.ieee, None)
        if future is not None and not future.done():
            future.set_result(device)

    def device_init_failure(self, device: zigpy.device.Device) -> None:
        future = self.pending.pop(device.ieee, None)
        if future is not None and not future.done():
            future.set_exception(RuntimeError(f"zigpy could not interview {device.ieee}"))


def current(device: zigpy.device.Device) -> zigpy.device.Device:
    """The object zigpy keeps for a device: the quirk's replacement when one applied."""
    kept = device.application.devices.get(device.ieee)
    return kept if isinstance(kept, zigpy.device.Device) else device


async def configure(handler: DeviceHandler) -> list[ConfigureStep]:
    """Bind and configure reporting for every handled cluster; log what failed."""
    steps = await handler.configure()
    for step in steps:
        if not step.ok:
            LOGGER.debug("%s: %s on cluster 0x%04x failed: %s", handler.device.ieee, step.action,
                         step.cluster, step.detail)
    return steps


async def read_state(handler: DeviceHandler) -> Adoption:
    """Read the device's state; an unreachable device keeps its cached state."""
    adoption = Adoption(handler=handler)
    try:
        adoption.readings = await handler.read_state()
    except Exception as exc:
        adoption.error = str(exc) or type(exc).__name__
        LOGGER.info("device %s: state read failed: %s", handler.device.ieee, adoption.error)
    return adoption


async def adopt(device: zigpy.device.Device, handler: DeviceHandler | None = None) -> Adoption:
    """Configure a freshly interviewed device and read its state."""
    handler = handler or handler_for(current(device))
    steps = await configure(handler)
    adoption = await read_state(handler)
    adoption.steps = steps
    return adoption
