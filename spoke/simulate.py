"""Pair virtual devices built from ZHA diagnostics through a real hub's Zigbee side and report
what Spoke's device handlers derive from them.

The path is the hub's own: ``hub.radio.start_zigbee`` (the simulated radio, zha-quirks applied by
zigpy's device resolver), zigpy's interview, then the hub's own adoption (``hub.adoption.adopt``:
configure binding and reporting, read the state). The readings are the handler's view of zigpy's
attribute cache once the devices have also sent their own reports. No MQTT: only the Zigbee side
runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zigpy.device
import zigpy.types as t

from device_handlers.model import Reading
from device_handlers.registry import handler_for
from hub.adoption import Interviews, adopt, current
from hub.devices import quirk_name
from hub.radio import load_radio_controls, start_zigbee
from hub.settings import HubSettings

LOGGER = logging.getLogger(__name__)

INTERVIEW_TIMEOUT = 40.0  # seconds for all devices to join and finish their interviews
QUIET = 0.2  # seconds without a frame on the air: the devices' reports have all arrived
QUIET_WITHIN = 10.0
_runs = itertools.count(1)  # each run its own simulated network (they are found by name)


@dataclass
class Inspection:
    """What one virtual device became after pairing: identity, applied quirk, readings."""

    source: Path
    ieee: str = ""
    manufacturer: str | None = None
    model: str | None = None
    quirk: str | None = None
    readings: list[Reading] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The inspect line: the format other tools read (fixed)."""
        line: dict[str, Any] = {
            "ieee": self.ieee, "manufacturer": self.manufacturer, "model": self.model,
            "quirk": self.quirk,
            "readings": [
                {"endpoint": r.endpoint, "cluster": r.cluster, "capability": r.capability,
                 "attribute": r.attribute, "value": r.value, "unit": r.unit}
                for r in self.readings
            ],
        }
        if self.error is not None:
            line["error"] = self.error
        return line


def diagnostics_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; directories expanded to their ``*.json`` files, sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return files


async def _adopt(inspection: Inspection, interviewed: asyncio.Future[zigpy.device.Device],
                 deadline: float) -> Any:
    """The hub's adoption of the interviewed device; returns its handler."""
    device = current(await asyncio.wait_for(interviewed, max(0.1, deadline - time.monotonic())))
    inspection.manufacturer, inspection.model = device.manufacturer, device.model
    inspection.quirk = quirk_name(device)
    handler = handler_for(device)
    handler.attach(lambda readings: None)
    await adopt(device, handler)
    return handler


async def inspect_files(files: list[Path]) -> list[Inspection]:
    """Pair every file's virtual device through one simulated network and hub Zigbee stack."""
    from simulators import diagnostics

    inspections = [Inspection(source=f) for f in files]
    with tempfile.TemporaryDirectory(prefix="spoke-inspect-") as tmp:
        settings = HubSettings(hub_id=f"inspect-{os.getpid()}-{next(_runs)}",
                               hub_data_dir=Path(tmp), radio="sim",
                               sim_devices=[], sim_speed=1.0, sim_tick=0.05,
                               state_refresh_on_start=False)
        controls: Any = load_radio_controls(settings)
        network = controls.network
        network.state_path = None  # nothing to keep: the network lives for this run only
        try:
            zigbee = await start_zigbee(settings, controls)
        except BaseException:
            controls.close()
            raise
        app = zigbee.app
        interviews = Interviews()
        app.add_listener(interviews)
        try:
            await app.permit(254)
            futures: list[asyncio.Future[Any] | None] = []
            for inspection in inspections:
                futures.append(_power_on(network, interviews, inspection, diagnostics))
            deadline = time.monotonic() + INTERVIEW_TIMEOUT
            tasks = [asyncio.ensure_future(_adopt(i, f, deadline)) if f is not None else None
                     for i, f in zip(inspections, futures, strict=True)]
            handlers = await asyncio.gather(*(t for t in tasks if t is not None),
                                            return_exceptions=True)
            await app.permit(0)
            adopted = iter(handlers)
            pairs = []
            for inspection, task in zip(inspections, tasks, strict=True):
                if task is None:
                    continue
                handler = next(adopted)
                if isinstance(handler, BaseException):
                    inspection.error = _describe(handler)
                    continue
                pairs.append((inspection, handler))
                network.wake(t.EUI64.convert(inspection.ieee))  # its heartbeat, now
            await network.quiet(QUIET, within=QUIET_WITHIN)
            for inspection, handler in pairs:
                inspection.readings = sorted(
                    handler.cached_readings(),
                    key=lambda r: (r.endpoint, r.cluster, r.capability, r.attribute))
        finally:
            app.remove_listener(interviews)
            await _shutdown(app)
            controls.close()
    return inspections


async def _shutdown(app: Any) -> None:
    """Stop zigpy. Its device tasks still sleeping (fast-poll resets) are cancelled on the way
    and trip over their own bookkeeping; that is zigpy's noise, logged at debug level here."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def quiet(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        LOGGER.debug("zigpy shutdown: %s", context.get("message"), exc_info=context.get("exception"))

    loop.set_exception_handler(quiet)
    try:
        await app.shutdown()
        for _ in range(3):  # let the cancelled tasks' callbacks run under this handler
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)


def _power_on(network: Any, interviews: Interviews, inspection: Inspection, diagnostics: Any
              ) -> asyncio.Future[zigpy.device.Device] | None:
    """Build the virtual device (with the recorded IEEE/NWK when free) and switch it on."""
    try:
        ieee, nwk = diagnostics.recorded_identity(inspection.source)
        if ieee is None or ieee in network.devices or ieee == network.app.state.node_info.ieee:
            ieee = None
        if nwk is not None and (nwk in (0, 0xFFFF) or any(d.nwk == nwk
                                                          for d in network.devices.values())):
            nwk = None
        device = network.create(f"file:{inspection.source}", ieee=ieee, nwk=nwk)
        inspection.ieee = str(device.ieee)
        future = interviews.expect(device.ieee)
        network.power_on(device)
    except Exception as exc:
        inspection.error = _describe(exc)
        return None
    return future


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the device did not finish pairing in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
