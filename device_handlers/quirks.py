"""zha-quirks applied to zigpy devices the way ZHA applies them.

ZHA's gateway hands zigpy two hooks when it creates the ControllerApplication: ZHA's quirk
registry resolver (``zha.quirks.DEVICE_REGISTRY.resolve``), which zigpy calls on every freshly
interviewed device to replace it with its quirk, and zha-quirks' handler for frames from devices
that are not initialized yet (Xiaomi's quick init). zha-quirks fills the registry in
``zhaquirks.setup()``, which imports every quirk module: that takes seconds, so it runs once, the
first time a device needs resolving.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zigpy.device

LOGGER = logging.getLogger(__name__)

_setup_lock = threading.Lock()
_setup_done = False
setup_seconds: float | None = None  # how long zhaquirks.setup() took (None: not run yet)


def ensure_quirks_loaded() -> None:
    """Run ``zhaquirks.setup()`` once per process (it registers every v1 and v2 quirk)."""
    global _setup_done, setup_seconds
    if _setup_done:
        return
    with _setup_lock:
        if _setup_done:
            return
        started = time.perf_counter()
        try:
            import zhaquirks

            zhaquirks.setup()
        except Exception:  # devices then pair as they are, without their quirks
            LOGGER.exception("zha-quirks could not be loaded; devices pair without quirks")
        setup_seconds = time.perf_counter() - started
        _setup_done = True
        LOGGER.info("zha-quirks loaded in %.1f s", setup_seconds)


def preload() -> None:
    """Start loading the quirks in a background thread, so that the first device to resolve
    does not hold the event loop for the whole load."""
    if not _setup_done:
        threading.Thread(target=ensure_quirks_loaded, name="zhaquirks-setup",
                         daemon=True).start()


def resolve_device(device: zigpy.device.Device) -> zigpy.device.Device:
    """zigpy's device resolver: the device replaced by its zha-quirk, if one matches."""
    ensure_quirks_loaded()
    from zha.quirks import DEVICE_REGISTRY

    return DEVICE_REGISTRY.resolve(device)


def uninitialized_packet(device: zigpy.device.Device, profile: int, cluster: int, src_ep: int,
                         dst_ep: int, message: bytes) -> None:
    """A frame from a device whose interview has not finished: zha-quirks may complete it from
    the frame (Xiaomi devices announce their model in an attribute report)."""
    ensure_quirks_loaded()
    from zhaquirks.legacy import handle_message_from_uninitialized_sender

    handle_message_from_uninitialized_sender(device, profile, cluster, src_ep, dst_ep, message)


def quirk_hooks() -> dict[str, Any]:
    """Keyword arguments for ``ControllerApplication.new`` that apply zha-quirks."""
    preload()
    return {"device_resolver": resolve_device, "uninitialized_packet_handler": uninitialized_packet}
