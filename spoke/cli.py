"""The `spoke` command line: run the hub, the cloud, the broker or the demo; talk to the REST API.

Building the commands imports typer and the small spoke.cli_* modules only: each command imports
what it runs (hub, cloud, zigpy, SQLAlchemy, httpx, rich) when it runs, so `spoke --help` and the
commands that call the REST API start in a fraction of what the hub or the cloud take to import.
"""

from __future__ import annotations

import faulthandler
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from spoke.cli_access import register as register_access_tools
from spoke.cli_broker import cloud_settings
from spoke.cli_broker import register as register_broker_tools
from spoke.cli_database import register as register_database_tools
from spoke.cli_groups import register as register_group_tools
from spoke.cli_hub import register as register_hub_tools
from spoke.cli_simulate import simulate_app
from spoke.console import choose_log_format, command_group, console, fail, setup_logging
from spoke.listing import print_json, print_list, print_record
from spoke_logging import LOG_FORMAT_ENV, LogFormat

app = command_group("Spoke: Zigbee hub on the edge, FastAPI + MQTT in the cloud.",
                    pretty_exceptions_enable=False)
hub_app = command_group("Run and manage the edge hub.")
cloud_app = command_group("Run the cloud; manage its accounts, API tokens, hubs' broker "
                          "credentials and the broker's accounts.")
devices_app = command_group("Devices known to the cloud.")
hubs_app = command_group("Hubs known to the cloud.")
device_app = command_group("One device: show it, command it.")
app.add_typer(hub_app, name="hub")
app.add_typer(cloud_app, name="cloud")
app.add_typer(devices_app, name="devices")
app.add_typer(hubs_app, name="hubs")
app.add_typer(device_app, name="device")
app.add_typer(simulate_app, name="simulate")
register_hub_tools(hub_app, simulate_app)
register_broker_tools(cloud_app)
register_access_tools(cloud_app)
register_database_tools(cloud_app)
register_group_tools(app)

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
ApiUrl = Annotated[str, typer.Option("--api-url", envvar="SPOKE_API_URL",
                                     help="Cloud API base URL.")]
Token = Annotated[str | None, typer.Option("--token", envvar="SPOKE_API_TOKEN",
                                           help="API bearer token.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for programs).")]
DEFAULT_API = "http://127.0.0.1:8000"


@app.callback()
def options(
    log_format: Annotated[LogFormat | None, typer.Option(
        "--log-format", envvar=LOG_FORMAT_ENV, case_sensitive=False,
        help="text: lines for a person; json: one JSON object per log line on stderr (for a log "
             "collector).")] = None,
) -> None:
    """Spoke: Zigbee hub on the edge, FastAPI + MQTT in the cloud."""
    choose_log_format(log_format)


def _run(coro: object) -> None:
    """Run a service until Ctrl-C; a clean stop is not an error."""
    import asyncio
    import contextlib

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its state.")] = Path(
        ".spoke/demo"),
    speed: Annotated[float, typer.Option(help="Simulated time per real second.")] = 10.0,
    verbose: Verbose = False,
) -> None:
    """Broker + cloud + hub with simulated devices, in one process (ports from SPOKE_CLOUD_PORT,
    SPOKE_MQTT_PORT; token from SPOKE_DEMO_TOKEN or generated)."""
    from cloud.auth import AccessError
    from cloud.broker_admin import BrokerError
    from cloud.dynsec import DynsecError
    from cloud.storage.base import SchemaOutdated
    from spoke.demo import demo_settings_from_env, run_demo

    setup_logging(verbose)
    api_port, mqtt_port, token = demo_settings_from_env()
    try:
        _run(run_demo(api_port=api_port, mqtt_port=mqtt_port, token=token, data_dir=data_dir,
                      sim_speed=speed))
    except SchemaOutdated as exc:
        fail(f"cannot start the demo: {exc} (the demo keeps everything in {data_dir}/)")
    except OSError as exc:
        fail(f"cannot start the demo: {exc} (is port {api_port} or {mqtt_port} in use? "
             "set SPOKE_CLOUD_PORT / SPOKE_MQTT_PORT)")
    except (BrokerError, DynsecError, AccessError) as exc:
        fail(f"cannot start the demo: {exc}")


@app.command()
def broker(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="SPOKE_MQTT_PORT")] = 1883,
    dynsec: Annotated[Path, typer.Option(
        help="The accounts and rules (dynamic-security JSON); made with the cloud's account when "
             "missing.")] = Path(".spoke/broker-dynsec.json"),
    verbose: Verbose = False,
) -> None:
    """Run the embedded MQTT broker (amqtt) alone, with Spoke's broker rules enforced."""
    from cloud.broker import start_broker, stop_broker
    from cloud.broker_accounts import write_dynsec_config
    from cloud.broker_credentials import ensure_broker_secret
    from cloud.dynsec import DynsecError

    setup_logging(verbose)
    if not dynsec.exists():
        settings = cloud_settings()
        write_dynsec_config(dynsec, ensure_broker_secret(settings.broker_secret_file), [])
        console.print(f"wrote {dynsec} with the cloud's account (secret "
                      f"{settings.broker_secret_file}); the cloud adds registered hubs when it "
                      "connects", highlight=False)

    import asyncio

    async def serve() -> None:
        b = await start_broker(host, port, dynsec_file=dynsec)
        console.print(f"MQTT broker on mqtt://{host}:{port} (Ctrl-C stops it)")
        try:
            await asyncio.Event().wait()
        finally:
            await stop_broker(b)

    try:
        _run(serve())
    except DynsecError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


# ---------------------------------------------------------------------------------------- hub
@hub_app.command("run")
def hub_run(
    radio: Annotated[str | None, typer.Option(help="sim | ezsp | znp | deconz | auto")] = None,
    port: Annotated[str | None, typer.Option("--port", help="Serial port of the stick.")] = None,
    baudrate: Annotated[int | None, typer.Option()] = None,
    flow_control: Annotated[str | None, typer.Option(help="hardware | software")] = None,
    sim_devices: Annotated[list[str] | None, typer.Option(
        "--sim-devices", help="Kinds or ZHA diagnostics files/dirs to power on (sim radio).")
    ] = None,
    hub_id: Annotated[str | None, typer.Option(envvar="SPOKE_HUB_ID")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Hub state directory.")] = None,
    verbose: Verbose = False,
) -> None:
    """Run the edge hub: zigpy with the radio, MQTT to the cloud."""
    from pydantic import ValidationError

    from hub.app import run_hub_process
    from hub.radio import RadioError
    from hub.settings import HubSettings

    setup_logging(verbose)
    overrides: dict[str, Any] = {k: v for k, v in {
        "radio": radio, "serial_port": port, "baudrate": baudrate, "flow_control": flow_control,
        "sim_devices": sim_devices, "hub_id": hub_id, "hub_data_dir": data_dir}.items()
        if v is not None}
    try:
        settings = HubSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid hub setting {'.'.join(map(str, first['loc']))}: {first['msg']}")
    try:
        run_hub_process(settings)  # SIGINT or SIGTERM stops it cleanly, a second one at once
    except RadioError as exc:
        fail(str(exc), code=2)


# ---------------------------------------------------------------------------------------- cloud
@cloud_app.command("run")
def cloud_run(verbose: Verbose = False) -> None:
    """Run the cloud: REST API + MQTT ingest (settings from SPOKE_* and spoke.toml)."""
    from sqlalchemy.exc import OperationalError

    from cloud.service import run_cloud
    from cloud.storage import prepare_database
    from cloud.storage.base import SchemaOutdated

    setup_logging(verbose)
    settings = cloud_settings()
    try:
        prepare_database(settings)  # a schema it cannot use is refused here, in one line
        _run(run_cloud(settings))
    except OperationalError as exc:
        fail(f"cannot start the cloud: its database is unreachable: {str(exc.orig or exc).strip()}")
    except SchemaOutdated as exc:
        fail(f"cannot start the cloud: {exc}")
    except OSError as exc:
        fail(f"cannot start the cloud on {settings.cloud_host}:{settings.cloud_port}: {exc}")


@cloud_app.command("metrics-token")
def cloud_metrics_token() -> None:
    """Print where the operator's token for GET /metrics is kept (created, 0600, if missing).

    Give Prometheus that file (`authorization: credentials_file: <file>`); the token itself is
    never printed."""
    from cloud.metrics_token import ensure_metrics_token

    path = cloud_settings().metrics_token_file
    try:
        ensure_metrics_token(path)
    except (OSError, ValueError) as exc:
        fail(f"cannot read or create the metrics token {path}: {exc}")
    typer.echo(path.resolve())


# ---------------------------------------------------------------------------------------- REST
def _value(v: object) -> str:
    return "—" if v is None else str(v)


def _state(device: dict[str, Any]) -> str:
    return "; ".join(
        f"{cap}: " + ", ".join(f"{k}={_value(v)}" for k, v in attrs.items())
        for cap, attrs in sorted((device.get("capabilities") or {}).items()))


def _label(device: dict[str, Any]) -> str:
    return device.get("name") or (
        f"{device.get('manufacturer') or ''} {device.get('model') or ''}".strip())


@devices_app.command("list")
def devices_list(api_url: ApiUrl = DEFAULT_API, token: Token = None, as_json: AsJson = False
                 ) -> None:
    """List devices with their current capability state (ids are never cut: a table when the
    terminal is wide enough, a block per device when it is not)."""
    from spoke.api_client import ApiClient

    devices = ApiClient(api_url, token).get_all("/api/v1/devices")
    if as_json:
        print_json(devices)
        return
    print_list(("id", "name / model", "available", "state"),
               [(d["id"], _label(d), "yes" if d.get("available") else "no", _state(d))
                for d in devices])


@hubs_app.command("list")
def hubs_list(api_url: ApiUrl = DEFAULT_API, token: Token = None, as_json: AsJson = False) -> None:
    """List the account's hubs: online or not, last seen, events stored, pairing."""
    from spoke.api_client import ApiClient

    hubs = ApiClient(api_url, token).get_all("/api/v1/hubs")
    if as_json:
        print_json(hubs)
        return

    def online(h: dict[str, Any]) -> str:
        state = "—" if h.get("online") is None else "yes" if h["online"] else "no"
        return f"{state} ({h['reason']})" if h.get("reason") else state

    print_list(("id", "online", "last seen", "events", "pairing"),
               [(h["id"], online(h), _value(h.get("last_seen")), str(h.get("events_stored", 0)),
                 f"until {h['pairing_until']}" if h.get("pairing_open") else "closed")
                for h in hubs])


@device_app.command("show")
def device_show(device_id: str, api_url: ApiUrl = DEFAULT_API, token: Token = None,
                as_json: AsJson = False) -> None:
    """Show one device: its id, hub, model, availability and each capability's state."""
    from spoke.api_client import ApiClient

    d = ApiClient(api_url, token).get(f"/api/v1/devices/{device_id}")
    if as_json:
        print_json(d)
        return
    available = "yes" if d.get("available") else "no"
    if d.get("availability_reason"):
        available += f" ({d['availability_reason']})"
    fields = [("id", d["id"]), ("hub", d.get("hub_id") or ""), ("ieee", d.get("ieee") or ""),
              ("name", _value(d.get("name"))),
              ("model", f"{d.get('manufacturer') or ''} {d.get('model') or ''}".strip() or "—"),
              ("available", available)]
    fields += [(cap, ", ".join(f"{k}={_value(v)}" for k, v in attrs.items()))
               for cap, attrs in sorted((d.get("capabilities") or {}).items())]
    print_record([label for label, _ in fields], [value for _, value in fields], whole=(0, 1, 2))


@device_app.command("command")
def device_command(
    device_id: str,
    capability: str,
    command: str,
    args: Annotated[list[str] | None, typer.Argument(help="key=value arguments")] = None,
    api_url: ApiUrl = DEFAULT_API,
    token: Token = None,
) -> None:
    """Send a capability command and print the state read back from the device."""
    from spoke.api_client import ApiClient, parse_args

    body = {"capability": capability, "command": command, "args": parse_args(args or [])}
    result = ApiClient(api_url, token).post(f"/api/v1/devices/{device_id}/commands", body)
    console.print_json(data=result)


@device_app.command("rename")
def device_rename(device_id: str, name: str, api_url: ApiUrl = DEFAULT_API,
                  token: Token = None) -> None:
    """Give a device a name (kept by its hub)."""
    from spoke.api_client import ApiClient

    device = ApiClient(api_url, token).request("PATCH", f"/api/v1/devices/{device_id}",
                                               json={"name": name})
    console.print(f"{device_id} is now {device.get('name')!r}" if device else "rename sent")


@device_app.command("remove")
def device_remove(device_id: str, api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Remove a device from its hub's network (zigpy leave/remove); the cloud drops it."""
    from spoke.api_client import ApiClient

    ApiClient(api_url, token).request("DELETE", f"/api/v1/devices/{device_id}")
    console.print(f"{device_id} removed")


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck service is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    app()


if __name__ == "__main__":
    main()
