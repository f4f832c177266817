"""Choosing and starting the Zigbee radio: a real stick through its library, or any radio library
advertised through zigpy's ``zigpy.radio`` entry points (the simulated radio among them).

Every radio is a zigpy ControllerApplication; the hub sees no difference after ``start_zigbee``.
zigpy keeps the paired devices in its own SQLite database (``zigbee.db`` in the hub's data dir).
A radio library may also offer controls for the hub's local control channel (the simulated radio
does: join a virtual device, fail the radio) through the ``spoke.radio_controls`` entry points;
the hub loads them by radio type and names no module of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import zigpy.application
import zigpy.config as conf
from pydantic import BaseModel
from zigpy.application import RADIO_ENTRY_POINT_GROUP

from hub.settings import HubSettings
from private_files import private_dir, private_sqlite

LOGGER = logging.getLogger(__name__)
CONTROLS_ENTRY_POINT_GROUP = "spoke.radio_controls"

# radio type -> (module, class) of its zigpy ControllerApplication, for the radio libraries that
# do not advertise themselves through zigpy's entry points
RADIO_LIBRARIES: dict[str, tuple[str, str]] = {
    "ezsp": ("bellows.zigbee.application", "ControllerApplication"),
    "znp": ("zigpy_znp.zigbee.application", "ControllerApplication"),
    "deconz": ("zigpy_deconz.zigbee.application", "ControllerApplication"),
}
PROBE_ORDER = ("ezsp", "znp", "deconz")


class RadioError(RuntimeError):
    """The radio cannot be used; the message says which port and what to check."""


@dataclass
class Zigbee:
    app: zigpy.application.ControllerApplication
    radio: str


# Waits until the given devices (by IEEE) were taken into use; returns how many were.
AdoptedWaiter = Callable[[list[str], float], Awaitable[int]]
ControlHandler = Callable[[Any], Awaitable[dict[str, Any]]]


class RadioControls(Protocol):
    """What a radio library's controls offer the hub (see ``spoke.radio_controls``)."""

    # The hub's ear for a device that tried to join while permit-join was closed: (ieee, why).
    on_refused: Callable[[str, str], None] | None

    @property
    def path(self) -> str:
        """The radio's device path (the library decides it; there is no serial port)."""
        ...

    @property
    def operations(self) -> dict[type[BaseModel], ControlHandler]:
        """Extra operations of the local control channel: request model -> handler."""
        ...

    async def start(self, adopted: AdoptedWaiter, *, within: float = 30.0) -> int:
        """Called once the radio runs (e.g. switch on the first virtual devices)."""
        ...

    def close(self) -> None: ...


def controller_class(radio: str) -> type[zigpy.application.ControllerApplication]:
    for entry in entry_points(group=RADIO_ENTRY_POINT_GROUP, name=radio):
        return entry.load()  # type: ignore[no-any-return]
    if radio not in RADIO_LIBRARIES:
        raise RadioError(f"no radio library for radio type {radio!r} is installed")
    module, name = RADIO_LIBRARIES[radio]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def radio_options(settings: HubSettings) -> dict[str, Any]:
    """The settings a radio library's controls take (the simulated network's, for ``sim``)."""
    return {"name": settings.hub_id, "state_path": str(settings.sim_state),
            "stick_path": str(settings.sim_stick), "speed": settings.sim_speed,
            "tick": settings.sim_tick, "devices": list(settings.sim_devices)}


def load_radio_controls(settings: HubSettings) -> RadioControls | None:
    """The controls the configured radio's library offers, if any."""
    for entry in entry_points(group=CONTROLS_ENTRY_POINT_GROUP, name=settings.radio):
        private_dir(settings.hub_data_dir)
        return entry.load()(radio_options(settings))  # type: ignore[no-any-return]
    return None


def zigpy_config(settings: HubSettings, path: str) -> dict[str, Any]:
    device: dict[str, Any] = {conf.CONF_DEVICE_PATH: path}
    if settings.baudrate:
        device[conf.CONF_DEVICE_BAUDRATE] = settings.baudrate
    if settings.flow_control:
        device[conf.CONF_DEVICE_FLOW_CONTROL] = settings.flow_control
    network: dict[str, Any] = {}
    if settings.channel:
        network[conf.CONF_NWK_CHANNEL] = settings.channel
    return {
        conf.CONF_DEVICE: device,
        conf.CONF_DATABASE: str(settings.zigbee_db),
        conf.CONF_NWK: network,
        conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
        conf.CONF_TOPO_SCAN_ENABLED: False,
        # The hub restores backups itself (spoke hub restore); don't refuse to start on mismatch.
        conf.CONF_NWK_VALIDATE_SETTINGS: False,
    }


def device_path(settings: HubSettings, controls: RadioControls | None) -> str:
    return controls.path if controls is not None else serial_path(settings)


async def start_zigbee(settings: HubSettings, controls: RadioControls | None = None) -> Zigbee:
    """Connect the configured radio, form a network on first start or resume it from zigpy's DB."""
    private_sqlite(settings.zigbee_db)  # it holds the network key: made private before zigpy opens it
    radio: str = settings.radio
    path = device_path(settings, controls)
    if radio == "auto":
        radio = await _probe(settings, path)
    cls = controller_class(radio)
    config = zigpy_config(settings, path)
    if controls is not None and conf.CONF_NWK_CHANNEL not in config[conf.CONF_NWK]:
        config[conf.CONF_NWK][conf.CONF_NWK_CHANNEL] = 15  # no energy scan without real air
    # As ZHA does: load zigpy's database first, then start the radio, so a radio that fails to
    # start can be shut down together with the database (no thread left behind).
    quirks = await asyncio.to_thread(_quirks_kwargs, settings)  # the index may be built first
    app = await cls.new(config=config, auto_form=True, start_radio=False, **quirks)
    try:
        async with asyncio.timeout(settings.radio_connect_timeout):
            await app.startup(auto_form=True)
    except (Exception, asyncio.CancelledError) as exc:
        with contextlib.suppress(Exception):
            await app.shutdown()
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise RadioError(_explain(radio, path, exc)) from exc
    LOGGER.info("Zigbee radio %s started on %s: %d devices in zigpy's database", radio, path,
                len(app.devices) - 1)
    return Zigbee(app=app, radio=radio)


def _quirks_kwargs(settings: HubSettings) -> dict[str, Any]:
    """zha-quirks, applied the way ZHA applies them (zigpy's device resolver hook), loaded by
    their index: only the quirk modules of the models the hub has are imported."""
    try:
        from device_handlers.quirks import quirk_hooks
    except ImportError:
        return {}
    return quirk_hooks(settings.quirk_index)


def serial_path(settings: HubSettings) -> str:
    if not settings.serial_port:
        raise RadioError(f"radio {settings.radio!r} needs a serial port: pass --port "
                         "(e.g. /dev/ttyUSB0 or /dev/serial/by-id/...)")
    port = settings.serial_port
    if "://" not in port and not Path(port).exists():
        raise RadioError(f"serial port {port} does not exist: is the stick plugged in? "
                         "(ls /dev/serial/by-id/ lists the sticks this machine sees)")
    return port


async def _probe(settings: HubSettings, path: str) -> str:
    for radio in PROBE_ORDER:
        cls = controller_class(radio)
        device: dict[str, Any] = {conf.CONF_DEVICE_PATH: path}
        if settings.baudrate:
            device[conf.CONF_DEVICE_BAUDRATE] = settings.baudrate
        try:
            async with asyncio.timeout(min(10.0, settings.radio_connect_timeout)):
                answered = await cls.probe(device)
            if answered:
                LOGGER.info("radio on %s answered as %s", path, radio)
                return radio
        except Exception as exc:  # a probe that crashes means "not this radio"
            LOGGER.debug("probe %s on %s failed: %s", radio, path, exc)
    raise RadioError(f"no supported radio answered on {path} (tried {', '.join(PROBE_ORDER)}): "
                     "check the port, that no other program (ZHA, Zigbee2MQTT) holds it, "
                     "and the baud rate")


def _explain(radio: str, path: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return (f"the {radio} radio on {path} does not answer: check that the stick speaks {radio}, "
                "its firmware, the baud rate (--baudrate) and flow control (--flow-control)")
    # zigpy wraps connection errors in an empty TransientConnectionError; the cause says why.
    while not str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return (f"cannot open {path}: permission denied; add your user to the 'dialout' group "
                "(sudo usermod -aG dialout $USER, then log in again)")
    if "busy" in text.lower() or "Resource temporarily unavailable" in text:
        return f"{path} is busy: another program (ZHA, Zigbee2MQTT, a second hub) holds it"
    if isinstance(exc, TimeoutError | ConnectionError) or "Timeout" in type(exc).__name__:
        return (f"the {radio} radio on {path} does not answer: check that the stick speaks {radio}, "
                "its firmware, the baud rate (--baudrate) and flow control (--flow-control)")
    return f"cannot start the {radio} radio on {path}: {text}"
