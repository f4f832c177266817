"""Controls of the simulated air, for whoever runs the simulated radio (the hub's local control
channel, ``spoke simulate join``, tests): power on virtual devices, pause simulated time, make the
radio fail and recover, and look at a virtual device.

They are found through the ``spoke.radio_controls`` entry point under the radio type ``sim``, so a
program that runs a radio by its type never names this module. The controls own the SimNetwork:
it is made here (or found by name), outlives the zigpy applications that attach to it across radio
reconnects, and is closed with the controls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import zigpy.types as t
from pydantic import BaseModel, ConfigDict, Field

from simulators.kinds import DEFAULT_KINDS
from simulators.network import JoinRefused, SimNetwork, find_network

LOGGER = logging.getLogger(__name__)

# Waits until the given devices were taken into use (by IEEE); returns how many were.
AdoptedWaiter = Callable[[list[str], float], Awaitable[int]]


def expand_sources(sources: list[str]) -> list[str]:
    """Device sources: "default" (the demo set), kind names, diagnostics files, or directories."""
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


def network_for(options: dict[str, Any]) -> SimNetwork:
    """The simulated network named in the radio options, made from them if it is not running."""
    name = str(options["name"])
    running = find_network(name)
    if running is not None:
        return running
    state, stick = options.get("state_path"), options.get("stick_path")
    return SimNetwork(name, state_path=Path(state) if state else None,
                      stick_path=Path(stick) if stick else None,
                      speed=float(options.get("speed", 1.0)), tick=float(options.get("tick", 1.0)))


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Join(_Op):
    op: Literal["join"] = "join"
    source: str


class RadioFail(_Op):
    op: Literal["radio_fail"] = "radio_fail"
    reason: str = "told to fail"
    silent: bool = False


class RadioRecover(_Op):
    op: Literal["radio_recover"] = "radio_recover"


class Pause(_Op):
    op: Literal["sim_pause"] = "sim_pause"


class Resume(_Op):
    op: Literal["sim_resume"] = "sim_resume"


class Burst(_Op):
    """Every load generator reports ``count`` steps at once (a burst, as after an outage)."""

    op: Literal["sim_burst"] = "sim_burst"
    count: int = Field(ge=1, le=100_000)


class DeviceQuery(_Op):
    op: Literal["sim_device"] = "sim_device"
    ieee: str


class SimControls:
    def __init__(self, options: dict[str, Any]) -> None:
        self.network = network_for(options)
        self.devices: list[str] = list(options.get("devices") or [])
        # Told of a device refused because permit-join was closed: (ieee, why).
        self.on_refused: Callable[[str, str], None] | None = None

    @property
    def path(self) -> str:
        return self.network.path

    @property
    def operations(self) -> dict[type[BaseModel], Callable[[Any], Awaitable[dict[str, Any]]]]:
        return {Join: self._join, RadioFail: self._fail, RadioRecover: self._recover,
                Pause: self._pause, Resume: self._resume, DeviceQuery: self._device,
                Burst: self._burst}

    async def start(self, adopted: AdoptedWaiter, *, within: float = 30.0) -> int:
        """On a new network, switch on the configured devices with permit-join open and wait
        until they are taken into use."""
        if self.network.devices or not self.devices or self.network.app is None:
            return 0
        app = self.network.app
        await app.permit(min(254, int(within) + 30))
        ieees = []
        for src in expand_sources(self.devices):
            try:
                device = self.network.create(src)
            except ValueError as exc:  # e.g. a file that is no ZHA diagnostics: the others join
                LOGGER.error("simulator: cannot build a virtual device: %s", exc)
                continue
            self.network.power_on(device)
            ieees.append(str(device.ieee))
        try:
            joined = await adopted(ieees, within)
        finally:
            await app.permit(0)
        LOGGER.info("simulator: %d of %d virtual devices joined and were adopted", joined,
                    len(ieees))
        return joined

    def close(self) -> None:
        self.network.close()

    def join(self, source: str) -> str:
        """Power on one virtual device; it joins only if permit-join is open."""
        sources = expand_sources([source])
        if len(sources) != 1:
            raise ValueError(f"{source!r} is not one device")
        device = self.network.create(sources[0])
        try:
            self.network.power_on(device)
        except JoinRefused as exc:
            if self.on_refused is not None:
                self.on_refused(str(device.ieee), str(exc))
            raise ValueError(f"join refused: {exc}") from exc
        return str(device.ieee)

    async def _join(self, op: Join) -> dict[str, Any]:
        return {"ieee": self.join(op.source)}

    async def _fail(self, op: RadioFail) -> dict[str, Any]:
        self.network.fail(op.reason, silent=op.silent)
        return {}

    async def _recover(self, op: RadioRecover) -> dict[str, Any]:
        self.network.recover()
        return {}

    async def _pause(self, op: Pause) -> dict[str, Any]:
        self.network.paused = True
        return {}

    async def _resume(self, op: Resume) -> dict[str, Any]:
        self.network.paused = False
        return {}

    async def _burst(self, op: Burst) -> dict[str, Any]:
        return {"reports": self.network.burst(op.count)}

    async def _device(self, op: DeviceQuery) -> dict[str, Any]:
        try:
            device = self.network.devices.get(t.EUI64.convert(op.ieee))
        except ValueError:
            device = None
        if device is None:
            raise LookupError(f"no virtual device {op.ieee}")
        return {"kind": device.kind, "powered": device.powered, "joined": device.joined,
                "commands": dict(device.command_counts)}
