"""The REST API on a running cloud: auth, devices, telemetry queries and commands end to end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cloud.auth import create_token, revoke_token
from cloud.service import run_cloud
from tests.common import (
    ON_POSTGRESQL_TOO,
    T0,
    CloudHarness,
    MqttTestClient,
    cloud_settings,
    device,
    event,
    eventually,
    register_hub,
    running_cloud,
    status,
)
from tests.conftest import BrokerAddress
from wire.contract import Command, CommandResult, Topics

HUB = "hub-a"
PLUG = "00:00:00:00:00:00:00:01"
PLUG_ID = "hub-a-0000000000000001"
SENSOR = "00:00:00:00:00:00:00:02"
SENSOR_ID = "hub-a-0000000000000002"


@pytest.fixture
def hub(tmp_path: Path, mqtt_broker: BrokerAddress, database: str) -> Iterator[MqttTestClient]:
    """A test client logged in as hub-a (registered in the cloud the tests start)."""
    credentials = register_hub(cloud_settings(tmp_path, mqtt_broker, database_url=database), HUB)
    client = MqttTestClient.as_hub(mqtt_broker, credentials)
    yield client
    client.close()


@pytest.fixture
async def cloud(
    tmp_path: Path, mqtt_broker: BrokerAddress, database: str, hub: MqttTestClient
) -> AsyncIterator[CloudHarness]:
    """A cloud that knows hub-a with a plug (switch, level) and a temperature sensor."""
    settings = cloud_settings(tmp_path, mqtt_broker, command_timeout=1.0, database_url=database)
    async with running_cloud(settings) as harness:
        caps = {"switch": {"on": False}, "level": {"level": 10.0}}
        sensor_caps = {"temperature": {"temperature": None}, "battery": {"battery": 90}}
        for message in (status(HUB), device(HUB, PLUG, caps), device(HUB, SENSOR, sensor_caps)):
            await asyncio.to_thread(hub.publish, message)
        await eventually(lambda: len(harness.services.storage.registry.list_devices()) == 2)
        yield harness


def answer_commands(hub: MqttTestClient, reply) -> None:
    """Make the test client answer every command on hub-a with ``reply(command)``."""

    def handle(_topic: str, payload: bytes) -> None:
        result = reply(Command.model_validate_json(payload))
        if result is not None:
            hub.client.publish(Topics.results(HUB), result.to_bytes(), qos=1)

    hub.subscribe(Topics.commands(HUB), handle)


# Auth ---------------------------------------------------------------------------------------------


async def test_every_api_route_needs_a_valid_token(cloud: CloudHarness):
    paths = ["/api/v1/hubs", f"/api/v1/hubs/{HUB}", "/api/v1/devices", f"/api/v1/devices/{PLUG_ID}",
             f"/api/v1/devices/{PLUG_ID}/telemetry?capability=switch", "/api/v1/commands/x"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dTpw"}):
        for path in paths:
            response = await cloud.http.get(path, headers=headers or {"Authorization": ""})
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    response = await cloud.http.post(f"/api/v1/devices/{PLUG_ID}/commands",
                                     json={"capability": "switch", "command": "on"},
                                     headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


@ON_POSTGRESQL_TOO
async def test_revoked_token_is_refused(cloud: CloudHarness):
    registry = cloud.services.storage.registry
    record, token = await asyncio.to_thread(create_token, registry, "short-lived")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await cloud.http.get("/api/v1/hubs", headers=headers)).status_code == 200
    assert await asyncio.to_thread(revoke_token, registry, record.id)
    assert (await cloud.http.get("/api/v1/hubs", headers=headers)).status_code == 401


async def test_healthz_and_readyz_need_no_token_and_report_parts(cloud: CloudHarness):
    response = await cloud.http.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["mqtt"], body["ingest_stall"]) == ("ok", "ok", None)
    assert body["ingest"]["received"] >= 3
    response = await cloud.http.get("/readyz", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "reasons": [], "db": "ok", "mqtt": "ok",
                               "ingest": "ok", "ingest_waiting": 0}


async def test_readyz_is_503_naming_the_broker_when_it_is_down_while_healthz_stays_200(
        tmp_path: Path, free_port):
    down = BrokerAddress("none", "127.0.0.1", free_port(), tmp_path / "broker-secret")
    settings = cloud_settings(tmp_path, down, mqtt_startup_wait=0.1)
    from cloud.api.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            ready = await http.get("/readyz")
            live = await http.get("/healthz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready" and body["db"] == "ok" and body["ingest"] == "ok"
    assert body["mqtt"].startswith("down")
    assert body["reasons"] == [f"broker {body['mqtt']}"]
    assert live.status_code == 200 and live.json()["mqtt"].startswith("down")


# Devices and hubs ---------------------------------------------------------------------------------


async def test_devices_list_and_detail(cloud: CloudHarness):
    devices = await cloud.get_json("/api/v1/devices")
    assert [d["id"] for d in devices] == [PLUG_ID, SENSOR_ID]
    plug = await cloud.get_json(f"/api/v1/devices/{PLUG_ID}")
    expected_keys = {"id", "hub_id", "ieee", "manufacturer", "model", "name", "available",
                     "availability_reason", "capabilities"}
    assert expected_keys <= plug.keys()
    assert plug["capabilities"] == {"switch": {"on": False}, "level": {"level": 10.0}}
    assert await cloud.get_json("/api/v1/devices", hub_id="other") == []
    assert len(await cloud.get_json("/api/v1/devices", hub_id=HUB)) == 2


async def test_unknown_ids_are_404(cloud: CloudHarness):
    for path in ("/api/v1/devices/hub-a-ffffffffffffffff", "/api/v1/hubs/nope",
                 "/api/v1/commands/nope",
                 "/api/v1/devices/hub-a-ffffffffffffffff/telemetry?capability=switch"):
        response = await cloud.http.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
    response = await cloud.http.post("/api/v1/devices/hub-a-ffffffffffffffff/commands",
                                     json={"capability": "switch", "command": "on"})
    assert response.status_code == 404


# Telemetry ----------------------------------------------------------------------------------------


@ON_POSTGRESQL_TOO
async def test_telemetry_since_until_limit_newest_last(cloud: CloudHarness, hub: MqttTestClient):
    # published out of time order on purpose: the answer is ordered by the event time
    order = [3, 1, 2, 5, 4, 6]
    for seq in order:
        await asyncio.to_thread(hub.publish, event(HUB, seq, SENSOR, "temperature",
                                                   "temperature", 20.0 + seq))
    await eventually(lambda: cloud.services.ingest.metrics.snapshot()["stored"] == 6)
    url = f"/api/v1/devices/{SENSOR_ID}/telemetry"

    samples = await cloud.get_json(url, capability="temperature")  # attribute defaults
    assert [s["value"] for s in samples] == [21.0, 22.0, 23.0, 24.0, 25.0, 26.0]
    assert samples[0]["ts"].startswith("2025-01-01T00:00:01")

    samples = await cloud.get_json(url, capability="temperature", attribute="temperature",
                                   limit=2)
    assert [s["value"] for s in samples] == [25.0, 26.0]

    since, until = (T0 + timedelta(seconds=2)).isoformat(), (T0 + timedelta(seconds=4)).isoformat()
    samples = await cloud.get_json(url, capability="temperature", since=since, until=until)
    assert [s["value"] for s in samples] == [22.0, 23.0, 24.0]
    samples = await cloud.get_json(url, capability="temperature", since=since, limit=1)
    assert [s["value"] for s in samples] == [26.0]

    naive = (T0 + timedelta(seconds=5)).replace(tzinfo=None).isoformat()  # taken as UTC
    samples = await cloud.get_json(url, capability="temperature", since=naive)
    assert [s["value"] for s in samples] == [25.0, 26.0]
    assert await cloud.get_json(url, capability="battery") == []


async def test_telemetry_bad_parameters_are_422(cloud: CloudHarness):
    url = f"/api/v1/devices/{PLUG_ID}/telemetry"
    for params in ({}, {"capability": "switch", "limit": 0}, {"capability": "switch", "limit": "x"},
                   {"capability": "switch", "since": "yesterday"},
                   {"capability": "switch", "limit": 10**6},
                   {"capability": "color"}):  # several attributes: which one?
        response = await cloud.http.get(url, params=params)
        assert response.status_code == 422, (params, response.text)


# Commands -----------------------------------------------------------------------------------------


async def test_invalid_commands_are_422_with_a_reason(cloud: CloudHarness):
    url = f"/api/v1/devices/{PLUG_ID}/commands"
    cases = [
        ({"capability": "teleport", "command": "go"}, "unknown capability"),
        ({"capability": "switch", "command": "explode"}, "unknown command"),
        ({"capability": "level", "command": "set_level", "args": {"level": 140}}, "level"),
        ({"capability": "level", "command": "set_level", "args": {"lvl": 1}},
         "Extra inputs are not permitted"),
        # JSON types are kept: a string or a boolean is no number (no "50" -> 50, no true -> 1)
        ({"capability": "level", "command": "set_level", "args": {"level": "50"}},
         "'args', 'level'], 'msg': 'Input should be a JSON number, not a string'"),
        ({"capability": "level", "command": "set_level", "args": {"level": True}},
         "'args', 'level'], 'msg': 'Input should be a JSON number, not a boolean'"),
        ({"capability": "level", "command": "set_level", "args": {"level": 5, "transition": "1"}},
         "'args', 'transition'], 'msg': 'Input should be a JSON number, not a string'"),
        ({"capability": "lock", "command": "lock"}, "device has no 'lock' capability"),
        ({"capability": "switch"}, "command"),  # missing field: FastAPI's own 422
    ]
    for body, reason in cases:
        response = await cloud.http.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert reason in str(response.json()["detail"]), (body, response.text)
    assert cloud.services.storage.registry.get_command("x") is None


@ON_POSTGRESQL_TOO
async def test_command_succeeds_when_the_hub_answers(cloud: CloudHarness, hub: MqttTestClient):
    seen: list[Command] = []

    def reply(command: Command) -> CommandResult:
        seen.append(command)
        return CommandResult(id=command.id, hub_id=HUB, ieee=command.ieee, status="succeeded",
                             state={"level": {"level": command.args["level"]}}, duration_ms=12.5)

    answer_commands(hub, reply)
    response = await cloud.http.post(
        f"/api/v1/devices/{PLUG_ID}/commands",
        json={"capability": "level", "command": "set_level", "args": {"level": 55}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["state"] == {"level": {"level": 55.0}}
    assert body["args"] == {"level": 55.0, "transition": 0.0}  # defaults filled in
    assert len(seen) == 1 and seen[0].id == body["id"] and seen[0].ieee == PLUG
    assert seen[0].expires_at - seen[0].issued_at == timedelta(seconds=5)

    stored = await cloud.get_json(f"/api/v1/commands/{body['id']}")
    assert stored["status"] == "succeeded" and stored["completed_at"] is not None
    plug = await cloud.get_json(f"/api/v1/devices/{PLUG_ID}")
    assert plug["capabilities"]["level"] == {"level": 55.0}


async def test_hub_failure_is_502_and_expiry_504(cloud: CloudHarness, hub: MqttTestClient):
    def reply(command: Command) -> CommandResult:
        if command.command == "on":
            return CommandResult(id=command.id, hub_id=HUB, status="failed", error="no ACK",
                                 error_code="nack")
        if command.command == "toggle":
            return CommandResult(id=command.id, hub_id=HUB, status="succeeded",
                                 state={"switch": {"on": True}})
        return CommandResult(id=command.id, hub_id=HUB, status="expired", error="too late")

    answer_commands(hub, reply)
    url = f"/api/v1/devices/{PLUG_ID}/commands"
    response = await cloud.http.post(url, json={"capability": "switch", "command": "on"})
    assert response.status_code == 502
    body = response.json()
    assert (body["status"], body["error_code"], body["error"]) == ("failed", "nack", "no ACK")
    response = await cloud.http.post(url, json={"capability": "switch", "command": "off"})
    assert response.status_code == 504
    assert response.json()["status"] == "expired"
    assert response.json()["may_still_run"] is False  # the hub said it will never run it

    # Metered by the class each answered: a command counts itself as 2xx when it is recorded,
    # and is moved once it answers otherwise (no 2xx row is left at zero).
    template = "/api/v1/devices/{device_id}/commands"

    async def counted() -> dict[str, int]:
        rows = await cloud.get_json("/api/v1/usage")
        return {r["status"]: r["requests"] for r in rows if r["route"] == template}

    assert await counted() == {"5xx": 2}
    response = await cloud.http.post(url, json={"capability": "switch", "command": "toggle"})
    assert response.status_code == 200, response.text
    assert await counted() == {"2xx": 1, "5xx": 2}


@ON_POSTGRESQL_TOO
async def test_no_answer_is_504_and_the_command_stays_queryable(
    cloud: CloudHarness, hub: MqttTestClient
):
    commands: list[Command] = []
    answer_commands(hub, lambda c: commands.append(c))  # the hub never answers
    response = await cloud.http.post(f"/api/v1/devices/{PLUG_ID}/commands",
                                     json={"capability": "switch", "command": "toggle"})
    assert response.status_code == 504
    body = response.json()
    assert body["status"] == "pending" and body["id"]
    # Unanswered is not undone: the hub may still run it until it expires (TTL 5 s here).
    assert body["may_still_run"] is True
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=3) < expires_at - datetime.now(UTC) <= timedelta(seconds=5)
    assert f"command {body['id']} may still run until it expires at" in body["detail"]
    assert [c.id for c in commands] == [body["id"]]
    assert (await cloud.get_json(f"/api/v1/commands/{body['id']}"))["status"] == "pending"

    # the answer comes late: the command record still gets it
    late = CommandResult(id=body["id"], hub_id=HUB, status="succeeded",
                         state={"switch": {"on": True}})
    await asyncio.to_thread(hub.publish_raw, Topics.results(HUB), late.to_bytes())

    async def answered() -> bool:
        return (await cloud.get_json(f"/api/v1/commands/{body['id']}"))["status"] == "succeeded"

    await eventually(answered, what="late result stored")
    plug = await cloud.get_json(f"/api/v1/devices/{PLUG_ID}")
    assert plug["capabilities"]["switch"] == {"on": True}


@ON_POSTGRESQL_TOO
async def test_result_for_an_unknown_command_is_rejected(cloud: CloudHarness,
                                                         hub: MqttTestClient):
    stray = CommandResult(id="not-ours", hub_id=HUB, status="succeeded")
    await asyncio.to_thread(hub.publish_raw, Topics.results(HUB), stray.to_bytes())
    await eventually(
        lambda: cloud.services.ingest.metrics.snapshot()["rejected"].get("unknown_command") == 1
    )


# The process --------------------------------------------------------------------------------------


async def test_run_cloud_serves_http_and_stops_on_cancel(tmp_path: Path, mosquitto: BrokerAddress,
                                                         free_port):
    port = free_port()
    settings = cloud_settings(tmp_path, mosquitto, cloud_port=port)
    started = asyncio.Event()
    task = asyncio.create_task(run_cloud(settings, started=started))
    await asyncio.wait_for(started.wait(), 15)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        await eventually(lambda: _ready(http), what="ready over TCP")
        assert (await http.get("/api/v1/devices")).status_code == 401
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/healthz")


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def test_run_cloud_raises_oserror_when_its_port_is_taken(tmp_path: Path,
                                                               mosquitto: BrokerAddress):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = cloud_settings(tmp_path, mosquitto, cloud_port=port)
        with pytest.raises(OSError, match=f"could not start on 127.0.0.1:{port}"):
            await asyncio.wait_for(run_cloud(settings), 15)
