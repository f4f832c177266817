"""`spoke hub pair|backup|restore` and `spoke simulate join`: managing a hub from its own machine
(the control channel in its data dir) or through the cloud (--api-url)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from spoke.console import console, fail, setup_logging, stdout_console

if TYPE_CHECKING:
    from rich.live import Live

    from spoke.pairing_view import PairingView

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="The hub's data directory (default: SPOKE_HUB_DATA_DIR or .spoke/hub).")]


def _socket(data_dir: Path | None) -> Path:
    from hub.settings import HubSettings

    return (HubSettings(hub_data_dir=data_dir) if data_dir else HubSettings()).control_socket


def _control(data_dir: Path | None, message: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from hub.control import ControlError, request

    try:
        answer = asyncio.run(request(_socket(data_dir), message))
    except ControlError as exc:
        fail(str(exc))
    if not answer.get("ok"):
        fail(str(answer.get("error")))
    return answer


def register(hub_app: typer.Typer, simulate_app: typer.Typer | None = None) -> None:
    hub_app.command("pair")(pair)
    hub_app.command("backup")(backup)
    hub_app.command("restore")(restore)
    if simulate_app is not None:
        simulate_app.command("join")(join)


def pair(
    duration: Annotated[int, typer.Option(min=1, max=254, help="Seconds to keep joining open.")
                        ] = 120,
    hub: Annotated[str | None, typer.Option("--hub", help="Hub id (through the cloud).")] = None,
    api_url: Annotated[str | None, typer.Option("--api-url", help="Pair through the cloud API.")
                       ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="SPOKE_API_TOKEN")] = None,
    data_dir: DataDir = None,
) -> None:
    """Open permit-join and show devices joining live; Ctrl-C closes it."""
    from spoke.pairing_view import PairingView, print_new_devices

    view = PairingView()
    if api_url or hub:
        devices = _pair_cloud(view, duration, hub, api_url or "http://127.0.0.1:8000", token)
    else:
        devices = _pair_local(view, duration, data_dir)
    if devices:
        print_new_devices(devices)
    else:
        console.print("No new devices joined.")


def _pair_local(view: PairingView, duration: int, data_dir: Path | None) -> list[dict[str, Any]]:
    import asyncio

    from rich.live import Live

    from hub.control import ControlError, stream

    if not _socket(data_dir).exists():
        fail(f"no hub is running with data dir {_socket(data_dir).parent}: start it with "
             "`spoke hub run` (or pair through the cloud with --api-url)")
    devices: list[dict[str, Any]] = []

    async def run(live: Live) -> None:
        async for message in stream(_socket(data_dir), {"op": "pair", "duration": duration}):
            if "event" in message:
                view.apply(message["event"])
                live.update(view.render())
            elif not message.get("ok"):
                raise ControlError(str(message.get("error")))
            else:
                devices.extend(message.get("devices", []))

    with Live(view.render(), console=stdout_console(), refresh_per_second=4) as live:
        try:
            asyncio.run(run(live))
        except KeyboardInterrupt:
            view.closed = True  # the hub closes permit-join when we hang up
        except ControlError as exc:
            fail(str(exc))
        live.update(view.render())
    return devices


def _pair_cloud(view: PairingView, duration: int, hub: str | None, api_url: str,
                token: str | None) -> list[dict[str, Any]]:
    from rich.live import Live

    from spoke.api_client import ApiClient

    api = ApiClient(api_url, token)
    if hub is None:
        hubs = api.get_all("/api/v1/hubs")
        online = [h["id"] for h in hubs if h.get("online")]
        if len(online) != 1:
            fail("pass --hub ID (online hubs: " + (", ".join(online) or "none") + ")")
        hub = online[0]
    started = api.post(f"/api/v1/hubs/{hub}/pairing", {"duration": duration})
    cursor = int(started.get("cursor", 0)) if isinstance(started, dict) else 0
    adopted: list[str] = []
    deadline = time.time() + duration + 15
    with Live(view.render(), console=stdout_console(), refresh_per_second=4) as live:
        try:
            while time.time() < deadline and not view.closed:
                page = api.get(f"/api/v1/hubs/{hub}/pairing", after=cursor)
                for event in page.get("events", []):
                    view.apply(event)
                    if event.get("step") == "adopted" and event.get("ieee"):
                        adopted.append(event["ieee"])
                cursor = int(page.get("cursor", cursor))
                live.update(view.render())
                time.sleep(0.5)
        except KeyboardInterrupt:
            with contextlib.suppress(typer.Exit):
                api.request("DELETE", f"/api/v1/hubs/{hub}/pairing")
            view.closed = True
        live.update(view.render())
    devices = api.get_all("/api/v1/devices", hub_id=hub)
    return [d for d in devices if d.get("ieee") in adopted]


def backup(data_dir: DataDir = None) -> None:
    """Write a network backup now (the running hub writes one on start and daily)."""
    answer = _control(data_dir, {"op": "backup"})
    console.print(f"network backup written to {answer['path']}")


def restore(
    file: Annotated[Path, typer.Argument(help="An open coordinator backup JSON file.")],
    radio: Annotated[str | None, typer.Option(help="sim | ezsp | znp | deconz")] = None,
    port: Annotated[str | None, typer.Option("--port", help="Serial port of the new stick.")
                    ] = None,
    data_dir: DataDir = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Write a backup onto a (new) stick; stop the hub first. Paired devices keep working."""
    import asyncio

    from hub.backup import restore_backup
    from hub.radio import RadioError
    from hub.settings import HubSettings

    setup_logging(verbose)
    overrides: dict[str, Any] = {k: v for k, v in {"radio": radio, "serial_port": port,
                                   "hub_data_dir": data_dir}.items() if v is not None}
    settings = HubSettings(**overrides)
    if settings.control_socket.exists() and asyncio.run(_answers(settings.control_socket)):
        fail("the hub is running: stop it before restoring a backup onto its radio")
    try:
        restored = asyncio.run(restore_backup(settings, file))
    except RadioError as exc:
        fail(str(exc), code=2)
    info = restored.network_info
    console.print(f"restored network {info.extended_pan_id} (channel {info.channel}, "
                  f"PAN 0x{int(info.pan_id):04x}); start the hub with `spoke hub run`")


async def _answers(path: Path) -> bool:
    from hub.control import ControlError, request

    try:
        await request(path, {"op": "status"}, wait=2)
    except (ControlError, OSError, TimeoutError):
        return False
    return True


def join(
    source: Annotated[str, typer.Argument(help="A built-in kind (thermostat, heat_pump, bulb, "
                                                "climate, motion, motion_ias, contact, plug) or a ZHA "
                                                "diagnostics file.")],
    data_dir: DataDir = None,
) -> None:
    """Power on a new virtual device next to a running simulated hub; it joins if permit-join
    is open (refused otherwise, as on a real network)."""
    answer = _control(data_dir, {"op": "join", "source": source})
    console.print(json.dumps({"ieee": answer["ieee"]}))
