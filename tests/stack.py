"""The whole stack for end-to-end tests: a real broker, the cloud on a real HTTP port, and a hub
running zigpy with the simulated radio, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cloud.auth import create_token
from cloud.hub_registration import HubCredentials
from cloud.service import CloudServices, run_cloud
from cloud.settings import CloudSettings
from hub.app import Hub
from hub.settings import HubSettings
from tests.common import TEST_RATE_LIMITS, MqttTestClient, eventually, register_hub
from tests.conftest import BrokerAddress, _free_port
from wire.contract import hub_client_id


@dataclass
class Stack:
    broker: BrokerAddress
    cloud_settings: CloudSettings
    services: CloudServices
    api: httpx.AsyncClient
    base_url: str
    token: str
    hub: Hub | None
    hub_settings: HubSettings

    @property
    def sim(self) -> Any:
        """The simulated air the hub's radio talks to (its SimNetwork)."""
        assert self.hub is not None and self.hub.controls is not None
        return self.hub.controls.network  # type: ignore[attr-defined]

    async def devices(self) -> list[dict[str, Any]]:
        response = await self.api.get("/api/v1/devices")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def device_by_model(self, model: str) -> dict[str, Any]:
        for d in await self.devices():
            if d["model"] == model:
                return d
        raise AssertionError(f"no {model} in the cloud")

    def as_hub(self) -> MqttTestClient:
        """A plain MQTT client logged in as the stack's hub (for a stack started without one), to
        publish wire messages as the hub would; close it after."""
        hs = self.hub_settings
        assert hs.mqtt_username is not None and hs.mqtt_password is not None
        return MqttTestClient(self.broker.host, self.broker.port, hub_client_id(hs.hub_id),
                              username=hs.mqtt_username,
                              password=hs.mqtt_password.get_secret_value())

    async def start_hub(self, **overrides: Any) -> Hub:
        settings = self.hub_settings.model_copy(update=overrides)
        self.hub = Hub(settings)
        await self.hub.start()
        return self.hub

    async def stop_hub(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None

    async def wait_hub_online(self, within: float = 20.0) -> None:
        """Until the cloud has the hub's online status (after a restart, its last will may still
        be what the cloud holds)."""
        async def online() -> bool:
            response = await self.api.get(f"/api/v1/hubs/{self.hub_settings.hub_id}")
            return response.status_code == 200 and response.json()["online"] is True

        await eventually(online, within=within, what="the hub online in the cloud")

    async def wait_for_devices(self, n: int, within: float = 20.0) -> list[dict[str, Any]]:
        async def enough() -> bool:
            devices = await self.devices()
            return len(devices) >= n and all(d["capabilities"] for d in devices)

        await eventually(enough, within=within, what=f"{n} devices in the cloud")
        return await self.devices()


def hub_settings(tmp_path: Path, broker: BrokerAddress, hub_id: str,
                 credentials: HubCredentials | None = None, **overrides: Any) -> HubSettings:
    """A simulated hub's settings, logged in with ``credentials`` (from ``register_hub``)."""
    values: dict[str, Any] = {
        "hub_id": hub_id, "hub_data_dir": tmp_path / hub_id, "radio": "sim",
        "mqtt_host": broker.host, "mqtt_port": broker.port, "sim_speed": 60.0,
        "sim_tick": 0.2, "device_info_debounce": 0.2, "command_timeout": 5.0,
    }
    if credentials is not None:
        values.update(mqtt_username=credentials.username, mqtt_password=credentials.password)
    values.update(overrides)
    return HubSettings(**values)


@contextlib.asynccontextmanager
async def running_stack(tmp_path: Path, broker: BrokerAddress, *, hub_id: str = "hub-e2e",
                        start_hub: bool = True, cloud: dict[str, Any] | None = None,
                        hub: dict[str, Any] | None = None) -> AsyncIterator[Stack]:
    port = _free_port()
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'cloud.db'}", "mqtt_host": broker.host,
        "mqtt_port": broker.port, "broker_secret_file": broker.secret_file,
        "metrics_token_file": tmp_path / "metrics-token",
        "cloud_host": "127.0.0.1", "cloud_port": port,
        "command_timeout": 5.0, "command_ttl": 10.0, **TEST_RATE_LIMITS}
    settings = CloudSettings(**{**values, **(cloud or {})})
    credentials = await asyncio.to_thread(register_hub, settings, hub_id)
    services = await asyncio.to_thread(CloudServices.build, settings)
    _, token = await asyncio.to_thread(create_token, services.storage.registry, "e2e")
    started = asyncio.Event()
    server_task = asyncio.create_task(run_cloud(settings, services=services, started=started))
    await asyncio.wait_for(started.wait(), 15)
    base = f"http://127.0.0.1:{port}"
    hs = hub_settings(tmp_path, broker, hub_id, credentials, **(hub or {}))
    async with httpx.AsyncClient(base_url=base, timeout=20,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        stack = Stack(broker, settings, services, api, base, token, None, hs)
        try:
            if start_hub:
                await stack.start_hub()
            yield stack
        finally:
            await stack.stop_hub()
            server_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server_task

