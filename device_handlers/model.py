"""Values the device handlers hand to the hub: readings, command errors and the handler interface.

Device handlers know zigpy and the capability vocabulary (wire.capabilities); they know nothing of
MQTT or HTTP. The hub asks ``handler_for(device)`` (device_handlers.registry) for a DeviceHandler
and talks to the device only through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import zigpy.device

from wire.contract import Constraints, Value


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    """One capability attribute value derived from one Zigbee cluster attribute (or command)."""

    endpoint: int
    cluster: int  # numeric cluster id the value comes from
    capability: str  # vocabulary name, e.g. "temperature"
    instance: str  # key in the device state: "switch", or "switch@2" on a second endpoint
    attribute: str  # e.g. "temperature"
    value: Value
    unit: str | None = None


class CommandError(Exception):
    """A capability command that could not be carried out.

    ``code`` is one of: "nack" (device answered with a failure status), "no_route" (delivery
    failed), "timeout" (no answer), "unsupported" (the device lacks the cluster/command),
    "invalid" (arguments out of the device's range).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigureStep:
    """One step of configuring a device at pairing: a bind or a reporting configuration."""

    endpoint: int
    cluster: int
    action: str  # "bind" | "configure_reporting"
    ok: bool
    detail: str = ""


ReadingsCallback = Callable[[list[Reading]], None]


class DeviceHandler(Protocol):
    """What the hub can do with one zigpy device through its declared capability tables."""

    device: zigpy.device.Device

    @property
    def capabilities(self) -> dict[str, str]:
        """Capability instances of the device: {instance name: capability name}."""
        ...

    @property
    def constraints(self) -> Constraints:
        """The ranges the device reports for capability fields: {instance: {field: limits}}."""
        ...

    def attach(self, on_readings: ReadingsCallback) -> Callable[[], None]:
        """Listen to the device's clusters; call on_readings with the readings derived from each
        attribute report/update or cluster command. Returns a function that detaches."""
        ...

    def cached_readings(self) -> list[Reading]:
        """Readings from zigpy's attribute cache (no radio traffic): the state known at start."""
        ...

    async def read_state(self) -> list[Reading]:
        """Read every mapped attribute from the device and return the readings."""
        ...

    async def execute(self, instance: str, command: str, args: dict[str, Value]) -> list[Reading]:
        """Run a capability command on the device and return the affected state as read back
        from the device afterwards. Raises CommandError."""
        ...

    async def configure(self) -> list[ConfigureStep]:
        """Bind the handled clusters to the coordinator and configure attribute reporting."""
        ...
