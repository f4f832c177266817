"""Pairing progress: permit-join windows, joins, interview steps and adoption, as PairingEvents.

Events go to the cloud on the hub's pairing topic (live progress through the REST API) and to local
listeners (``spoke hub pair`` on the hub's control channel). The interview steps are read off the
frames zigpy receives while it interviews a new device, so they are the real exchange, not a guess.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import zigpy.device
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Basic

from device_handlers.model import ConfigureStep
from wire.contract import PairingEvent, PairingStep

LOGGER = logging.getLogger(__name__)

_ZDO_STEPS: dict[int, PairingStep] = {
    zdo_t.ZDOCmd.Node_Desc_rsp: "node_descriptor",
    zdo_t.ZDOCmd.Active_EP_rsp: "endpoints",
    zdo_t.ZDOCmd.Simple_Desc_rsp: "simple_descriptor",
}


# The steps that begin or end a device's way into the network, counted since the hub started.
COUNTED_STEPS: tuple[PairingStep, ...] = ("joined", "adopted", "failed", "refused")


class PairingReporter:
    def __init__(self, hub_id: str, publish: Callable[[PairingEvent], None]) -> None:
        self.hub_id = hub_id
        self._publish = publish
        self.listeners: set[asyncio.Queue[PairingEvent]] = set()
        self.interviewing: dict[str, float] = {}  # ieee -> join time
        self.history: list[PairingEvent] = []
        self.counts: dict[str, int] = dict.fromkeys(COUNTED_STEPS, 0)

    def emit(self, step: PairingStep, ieee: str | None = None, **fields: object) -> PairingEvent:
        event = PairingEvent(hub_id=self.hub_id, step=step, ieee=ieee, **fields)  # type: ignore[arg-type]
        if step in self.counts:
            self.counts[step] += 1
        self.history = [*self.history[-199:], event]
        for queue in list(self.listeners):
            queue.put_nowait(event)
        self._publish(event)
        return event

    def subscribe(self) -> asyncio.Queue[PairingEvent]:
        queue: asyncio.Queue[PairingEvent] = asyncio.Queue()
        self.listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[PairingEvent]) -> None:
        self.listeners.discard(queue)

    # ------------------------------------------------------------------ permit join
    def permit(self, duration: int) -> None:
        if duration > 0:
            until = datetime.fromtimestamp(time.time() + duration, UTC)
            self.emit("permit_open", until=until, detail=f"open for {duration} s")
        else:
            self.emit("permit_closed")

    # ------------------------------------------------------------------ interview
    def joined(self, device: zigpy.device.Device) -> None:
        ieee = str(device.ieee)
        self.interviewing[ieee] = time.monotonic()
        self.emit("joined", ieee, detail=f"nwk 0x{int(device.nwk):04x}")

    def frame(self, device: zigpy.device.Device, profile: int, cluster: int, src_ep: int,
              data: bytes) -> None:
        """A frame from a device; if it is being interviewed, name the step it answers."""
        if not self.interviewing:
            return  # the common case, on every frame: spare the IEEE address's formatting
        ieee = str(device.ieee)
        if ieee not in self.interviewing:
            return
        if src_ep == 0 and cluster in _ZDO_STEPS:
            step = _ZDO_STEPS[cluster]
            detail = None
            if step == "endpoints":
                detail = "endpoints " + ", ".join(str(e.endpoint_id) for e in
                                                  device.non_zdo_endpoints) if \
                    device.non_zdo_endpoints else None
            self.emit(step, ieee, detail=detail)
        elif cluster == Basic.cluster_id and _is_read_response(data):
            self.emit("basic_attributes", ieee, manufacturer=device.manufacturer,
                      model=device.model)

    def interviewed(self, device: zigpy.device.Device, quirk: str | None) -> None:
        ieee = str(device.ieee)
        self.interviewing.pop(ieee, None)
        self.emit("interviewed", ieee, manufacturer=device.manufacturer, model=device.model,
                  detail=f"quirk {quirk}" if quirk else None)

    def failed(self, device: zigpy.device.Device, detail: str) -> None:
        self.interviewing.pop(str(device.ieee), None)
        self.emit("failed", str(device.ieee), ok=False, detail=detail)

    def configured(self, ieee: str, steps: list[ConfigureStep]) -> None:
        for s in steps:
            step: PairingStep = "bind" if s.action == "bind" else "configure_reporting"
            if s.action not in ("bind", "configure_reporting"):
                continue
            self.emit(step, ieee, ok=s.ok,
                      detail=f"endpoint {s.endpoint} cluster 0x{s.cluster:04x}"
                      + (f": {s.detail}" if s.detail else ""))

    def adopted(self, ieee: str, capabilities: list[str], manufacturer: str | None,
                model: str | None) -> None:
        self.emit("capabilities", ieee, capabilities=capabilities)
        self.emit("adopted", ieee, capabilities=capabilities, manufacturer=manufacturer,
                  model=model)


def _is_read_response(data: bytes) -> bool:
    try:
        hdr, _ = foundation.ZCLHeader.deserialize(data)
    except ValueError:
        return False
    return hdr.frame_control.is_general and hdr.command_id == \
        foundation.GeneralCommand.Read_Attributes_rsp
