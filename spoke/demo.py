"""`spoke demo`: the embedded broker, the cloud and a hub with simulated devices in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from rich.panel import Panel

from spoke.console import console

if TYPE_CHECKING:
    from cloud.hub_registration import HubCredentials
    from cloud.settings import CloudSettings
    from hub.settings import HubSettings

LOGGER = logging.getLogger(__name__)
DEMO_HUB_ID = "demo-hub"
DEMO_ACCOUNT = "demo"


async def run_demo(*, api_port: int, mqtt_port: int, token: str | None, data_dir: Path,
                   sim_speed: float = 10.0) -> None:
    from cloud.broker import start_broker, stop_broker
    from cloud.service import run_cloud
    from cloud.settings import CloudSettings
    from hub.app import run_hub
    from hub.settings import HubSettings
    from private_files import private_dir

    await asyncio.to_thread(private_dir, data_dir)  # the database, the broker secret, the hub's key
    token = token or secrets.token_urlsafe(24)
    cloud_settings = CloudSettings(
        database_url=f"sqlite:///{data_dir / 'cloud.db'}", mqtt_host="127.0.0.1",
        mqtt_port=mqtt_port, cloud_host="127.0.0.1", cloud_port=api_port,
        mqtt_client_id="spoke-demo-cloud", telemetry_backend="sql",
        mqtt_protocol="3.1.1",  # the embedded amqtt broker speaks only MQTT 3.1.1
        broker_secret_file=data_dir / "broker-secret",
        metrics_token_file=data_dir / "metrics-token",
    )
    dynsec_file = data_dir / "broker-dynsec.json"
    await asyncio.to_thread(_prepare_broker, cloud_settings, dynsec_file, token)
    broker = await start_broker("127.0.0.1", mqtt_port, dynsec_file=dynsec_file)
    try:
        credentials = await asyncio.to_thread(_demo_hub, cloud_settings)
    except BaseException:
        await stop_broker(broker)
        raise
    hub_settings = HubSettings(
        hub_id=DEMO_HUB_ID, hub_data_dir=data_dir / "hub", radio="sim", mqtt_host="127.0.0.1",
        mqtt_port=mqtt_port, sim_devices=["default"], sim_speed=sim_speed,
        mqtt_username=credentials.username, mqtt_password=SecretStr(credentials.password),
        metrics_host="127.0.0.1", metrics_port=_metrics_port(),
    )
    cloud_ready, hub_ready = asyncio.Event(), asyncio.Event()
    cloud = asyncio.create_task(run_cloud(cloud_settings, started=cloud_ready), name="cloud")
    hub: asyncio.Task[None] | None = None
    try:
        await _first(cloud_ready.wait(), cloud)
        hub = asyncio.create_task(run_hub(hub_settings, ready=hub_ready), name="hub")
        await _first(hub_ready.wait(), hub)
        _banner(api_port, mqtt_port, token, data_dir, hub_settings)
        await asyncio.wait({cloud, hub}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (hub, cloud):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await stop_broker(broker)
        console.print("[bold]Spoke demo stopped.[/]")


def _prepare_broker(settings: CloudSettings, dynsec_file: Path, token: str) -> None:
    """The API token, the broker secret, and (first run) the broker's accounts: the cloud's and
    those of the hubs registered before."""
    from cloud.auth import ensure_token
    from cloud.broker_accounts import active_hubs, write_dynsec_config
    from cloud.broker_credentials import ensure_broker_secret
    from cloud.storage import open_registry

    secret = ensure_broker_secret(settings.broker_secret_file)
    with open_registry(settings) as registry:
        registry.add_account(DEMO_ACCOUNT, datetime.now(UTC))  # the demo's household
        # SPOKE_DEMO_TOKEN is explicitly the demo's: a weak one is let through (with a warning),
        # bound to the demo's account on a cloud that listens on loopback only.
        ensure_token(registry, token, name="demo", account=DEMO_ACCOUNT, weak_ok=True)
        if not dynsec_file.exists():
            write_dynsec_config(dynsec_file, secret, active_hubs(registry.list_hub_registrations()))


def _demo_hub(settings: CloudSettings) -> HubCredentials:
    """The demo hub's broker credentials, registered through the running broker the first time."""
    from cloud.hub_registration import ensure_hub
    from cloud.storage import open_registry

    with open_registry(settings) as registry:
        return ensure_hub(settings, registry, DEMO_HUB_ID, DEMO_ACCOUNT)


async def _first(waiter: Coroutine[Any, Any, Any], task: asyncio.Task[None]) -> None:
    """Wait for a readiness event, or re-raise if the task it belongs to dies first."""
    ready = asyncio.ensure_future(waiter)
    done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
        raise RuntimeError(f"{task.get_name()} stopped during startup")


def _metrics_port() -> int:
    """SPOKE_METRICS_PORT, or a port that is free now."""
    if os.environ.get("SPOKE_METRICS_PORT"):
        return int(os.environ["SPOKE_METRICS_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _banner(api_port: int, mqtt_port: int, token: str, data_dir: Path,
            hub: HubSettings) -> None:
    api = f"http://127.0.0.1:{api_port}"
    metrics = f"http://{hub.metrics_host}:{hub.metrics_port}/metrics"
    text = (
        f"[bold green]Spoke demo is running[/]  (Ctrl-C stops it)\n\n"
        f"  Dashboard    {api}/  (sign in with the API token below)\n"
        f"  API          {api}/api/v1\n"
        f"  OpenAPI docs {api}/docs\n"
        f"  Health       {api}/healthz (alive), {api}/readyz (ready)\n"
        f"  Metrics      {api}/metrics  (Bearer token in {data_dir}/metrics-token)\n"
        f"  MQTT broker  mqtt://127.0.0.1:{mqtt_port}  (topics spoke/v1/#)\n"
        f"  MQTT logins  {data_dir}/broker-dynsec.json\n"
        f"  Hub metrics  {metrics}  (bearer token in {hub.metrics_token_path})\n"
        f"  API token    [bold]{token}[/]  (account {DEMO_ACCOUNT}, scope admin)\n"
        f"  Data         {data_dir}/\n\n"
        f"  export SPOKE_API_URL={api} SPOKE_API_TOKEN={token}\n"
        f"  curl -H 'Authorization: Bearer {token}' {api}/api/v1/devices\n"
        f"  curl -H \"Authorization: Bearer $(cat {hub.metrics_token_path})\" {metrics}\n"
        f"  .venv/bin/spoke devices list"
    )
    if _weak(token):
        text += ("\n\n  [yellow]SPOKE_DEMO_TOKEN is weak: fine for this demo, refused for a real "
                 "cloud[/]")
    console.print(Panel(text, title="spoke demo", expand=False), highlight=False)


def _weak(token: str) -> bool:
    from cloud.auth import AccessError, check_token_strength

    try:
        check_token_strength(token)
    except AccessError:
        return True
    return False


def demo_settings_from_env() -> tuple[int, int, str | None]:
    return (int(os.environ.get("SPOKE_CLOUD_PORT", "8000")),
            int(os.environ.get("SPOKE_MQTT_PORT", "1883")),
            os.environ.get("SPOKE_DEMO_TOKEN") or None)
