"""Shared test helpers: a paho client that plays a hub, wire payload builders, polling, a cloud."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from wire.contract import DeviceInfo, Event, HubStatus, Message, Topics

if TYPE_CHECKING:
    import httpx

    from cloud.hub_registration import HubCredentials
    from cloud.service import CloudServices
    from cloud.settings import CloudSettings
    from tests.conftest import BrokerAddress

T0 = datetime(2025, 1, 1, tzinfo=UTC)

# For a cloud test whose storage differs on PostgreSQL (transactions, constraints, batches, time
# zones): run it on both brokers with SQLite, and once more on mosquitto with PostgreSQL. The test
# takes the ``database`` fixture (a URL) for its cloud.
ON_POSTGRESQL_TOO = pytest.mark.parametrize(
    ("mqtt_broker", "database"),
    [("mosquitto", "sqlite"), ("amqtt", "sqlite"), ("mosquitto", "postgresql")],
    indirect=True)


class MqttRefused(RuntimeError):
    """The broker refused the test client's connection."""


class MqttTestClient:
    """A plain paho client (MQTT 3.1.1, works on every broker) to publish and receive in tests."""

    def __init__(self, host: str, port: int, client_id: str = "", *, username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None,
                 will: tuple[str, bytes] | None = None, clean_session: bool = True) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, protocol=mqtt.MQTTv311,
                                  reconnect_on_failure=False, clean_session=clean_session)
        self.received: list[tuple[str, bytes]] = []
        self._handlers: list[Callable[[str, bytes], None]] = []
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self.refusal: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.on_message = self._on_message
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        if will is not None:
            self.client.will_set(*will, qos=1)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise RuntimeError(f"test client could not connect to {host}:{port}")
        if self.refusal is not None:
            self.close()
            raise MqttRefused(self.refusal)

    @classmethod
    def as_hub(cls, broker: BrokerAddress, credentials: HubCredentials,
               client_id: str | None = None) -> MqttTestClient:
        """Logged in with a hub's credentials (and, unless told otherwise, its own client id)."""
        return cls(broker.host, broker.port, credentials.client_id if client_id is None
                   else client_id, username=credentials.username, password=credentials.password)

    @classmethod
    def as_cloud(cls, broker: BrokerAddress, client_id: str, **options: Any) -> MqttTestClient:
        """Logged in with the cloud's account."""
        from cloud.broker_credentials import cloud_password, load_broker_secret
        from cloud.broker_rules import CLOUD_USERNAME

        return cls(broker.host, broker.port, client_id, username=CLOUD_USERNAME,
                   password=cloud_password(load_broker_secret(broker.secret_file)), **options)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.refusal = str(reason)
        self._connected.set()

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append((msg.topic, bytes(msg.payload)))
        for handler in self._handlers:
            handler(msg.topic, bytes(msg.payload))

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None] | None = None) -> bool:
        """Subscribe (QoS 1); whether the broker granted it."""
        done = threading.Event()
        granted: list[bool] = []

        def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: list[Any], _p: Any) -> None:
            granted.extend(not getattr(r, "is_failure", False) for r in reasons)
            done.set()

        self.client.on_subscribe = on_subscribe
        if handler is not None:
            self._handlers.append(handler)
        self.client.subscribe(topic, qos=1)
        if not done.wait(10):
            raise RuntimeError(f"no SUBACK for {topic}")
        return all(granted)

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def publish(self, message: Message, topic: str | None = None, *, retain: bool = False) -> None:
        self.publish_raw(topic or topic_for(message), message.to_bytes(), retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT (the broker then publishes the will)."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        self.disconnected.wait(5)
        self.client.loop_stop()


def topic_for(message: Message) -> str:
    """The topic a hub publishes this message on."""
    if isinstance(message, HubStatus):
        return Topics.status(message.hub_id)
    if isinstance(message, DeviceInfo):
        return Topics.device(message.hub_id, message.ieee)
    if isinstance(message, Event):
        return Topics.events(message.hub_id)
    return Topics.results(message.hub_id)  # type: ignore[attr-defined]


def status(hub_id: str, online: bool = True, **kw: Any) -> HubStatus:
    return HubStatus(hub_id=hub_id, online=online, version="test", **kw)


def device(hub_id: str, ieee: str, capabilities: dict[str, dict[str, Any]] | None = None,
           **kw: Any) -> DeviceInfo:
    caps = capabilities if capabilities is not None else {"switch": {"on": False}}
    return DeviceInfo(hub_id=hub_id, ieee=ieee, manufacturer="Acme", model="Plug 1",
                      capabilities=caps, **kw)


def event(hub_id: str, seq: int, ieee: str, capability: str = "switch", attribute: str = "on",
          value: Any = True, ts: datetime | None = None, epoch: str | None = None) -> Event:
    return Event(hub_id=hub_id, seq=seq, ts=ts or T0 + timedelta(seconds=seq), ieee=ieee,
                 capability=capability, attribute=attribute, value=value, epoch=epoch)


# Tests poll the API every 20 ms while they wait, far faster than any app; rate limits are tested
# on their own (test_api_limits.py) with their own settings.
TEST_RATE_LIMITS = {"rate_limit_reads": "100000/minute", "rate_limit_commands": "10000/minute"}


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                     within: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` (sync or async) until it is true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def cloud_settings(tmp_path: Path, broker: BrokerAddress, **overrides: Any) -> CloudSettings:
    from cloud.settings import CloudSettings

    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'cloud.db'}",
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "broker_secret_file": broker.secret_file,
        "metrics_token_file": tmp_path / "metrics-token",
        "command_timeout": 2.0,
        "command_ttl": 5.0,
        # amqtt speaks only 3.1.1: say so rather than spend 3 s finding out on every connect
        # ("auto" is exercised by the whole-stack tests).
        "mqtt_protocol": "3.1.1" if broker.name == "amqtt" else "auto",
        **TEST_RATE_LIMITS,
    }
    values.update(overrides)
    return CloudSettings(**values)


def register_hub(settings: CloudSettings, hub_id: str) -> HubCredentials:
    """Register (or rotate) a hub the way `spoke cloud hub register` does."""
    from cloud.hub_registration import register_hub as register
    from cloud.storage import open_registry

    with open_registry(settings) as registry:
        return register(settings, registry, hub_id)


@dataclass
class CloudHarness:
    settings: CloudSettings
    services: CloudServices
    http: httpx.AsyncClient
    token: str

    async def get_json(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running_cloud(settings: CloudSettings) -> AsyncIterator[CloudHarness]:
    """The cloud app with its lifespan running (ingest connected), a token and an httpx client."""
    import httpx

    from cloud.api.app import create_app
    from cloud.auth import create_token
    from cloud.service import CloudServices

    services = await asyncio.to_thread(CloudServices.build, settings)
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        assert await asyncio.to_thread(services.ingest.wait_ready, 10), "ingest did not connect"
        _, token = await asyncio.to_thread(create_token, services.storage.registry, "tests")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud",
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            yield CloudHarness(settings, services, http, token)
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("spoke-")]
    assert not leftover, f"threads left running: {leftover}"
