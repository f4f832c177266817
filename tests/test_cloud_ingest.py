"""The ingest worker against real brokers: what hubs publish ends up in storage, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloud.service import CloudServices
from tests.common import (
    ON_POSTGRESQL_TOO,
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
from wire.contract import MAX_PAYLOAD_BYTES, LedgerAck, Topics

HUB = "hub-1"
IEEE = "00:12:4b:00:01:02:03:04"
DEVICE_ID = "hub-1-00124b0001020304"


@pytest.fixture
async def cloud(tmp_path: Path, mqtt_broker: BrokerAddress, database: str
                ) -> AsyncIterator[CloudHarness]:
    async with running_cloud(cloud_settings(tmp_path, mqtt_broker, database_url=database)
                             ) as harness:
        yield harness


@pytest.fixture
def hub(tmp_path: Path, mqtt_broker: BrokerAddress, database: str) -> Iterator[MqttTestClient]:
    """A test client logged in as hub-1 (registered in the cloud the tests start)."""
    credentials = register_hub(cloud_settings(tmp_path, mqtt_broker, database_url=database), HUB)
    client = MqttTestClient.as_hub(mqtt_broker, credentials)
    yield client
    client.close()


def metrics(cloud: CloudHarness) -> dict:
    return cloud.services.ingest.metrics.snapshot()


async def publish(hub: MqttTestClient, *messages, retain: bool = False) -> None:
    for message in messages:
        await asyncio.to_thread(hub.publish, message, retain=retain)


@ON_POSTGRESQL_TOO
async def test_ingest_stores_status_devices_and_events(cloud: CloudHarness, hub: MqttTestClient):
    await publish(hub, status(HUB), device(HUB, IEEE, {"switch": {"on": False}}), retain=True)
    await publish(hub, *(event(HUB, seq, IEEE, value=seq % 2 == 1) for seq in (1, 2, 3)))
    await eventually(lambda: metrics(cloud)["stored"] == 3, what="3 events stored")

    hubs = await cloud.get_json("/api/v1/hubs")
    assert [h["id"] for h in hubs] == [HUB]
    detail = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert detail["online"] is True
    assert detail["last_seen"] is not None
    assert (detail["events_received"], detail["duplicates"], detail["gaps"]) == (3, 0, 0)
    assert detail["status"]["version"] == "test"

    devices = await cloud.get_json("/api/v1/devices")
    assert isinstance(devices, list) and len(devices) == 1
    dev = devices[0]
    assert dev["id"] == DEVICE_ID
    assert (dev["hub_id"], dev["ieee"], dev["manufacturer"], dev["model"]) == (
        HUB, IEEE, "Acme", "Plug 1")
    assert dev["available"] is True and dev["availability_reason"] is None
    assert dev["capabilities"] == {"switch": {"on": True}}  # seq 3 was the last: on

    samples = await cloud.get_json(f"/api/v1/devices/{DEVICE_ID}/telemetry", capability="switch")
    assert [s["value"] for s in samples] == [True, False, True]
    assert metrics(cloud)["rejected_total"] == 0


@ON_POSTGRESQL_TOO
async def test_duplicate_events_are_stored_once_and_counted(cloud: CloudHarness,
                                                            hub: MqttTestClient):
    await publish(hub, status(HUB), device(HUB, IEEE))
    first = event(HUB, 1, IEEE, value=True)
    await publish(hub, first, first, event(HUB, 2, IEEE, value=False), first)
    await eventually(lambda: metrics(cloud)["received"] >= 6, what="all messages received")
    await eventually(lambda: metrics(cloud)["duplicates"] == 2, what="2 duplicates")
    hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert (hub_row["events_received"], hub_row["events_stored"], hub_row["duplicates"]) == (
        4, 2, 2)
    samples = await cloud.get_json(f"/api/v1/devices/{DEVICE_ID}/telemetry", capability="switch")
    assert [s["value"] for s in samples] == [True, False]
    # a duplicate of an old event must not roll the current state back
    assert (await cloud.get_json(f"/api/v1/devices/{DEVICE_ID}"))["capabilities"] == {
        "switch": {"on": False}}


@ON_POSTGRESQL_TOO
async def test_gaps_are_counted_and_late_events_fill_them(cloud: CloudHarness,
                                                          hub: MqttTestClient):
    await publish(hub, status(HUB), device(HUB, IEEE))
    await publish(hub, *(event(HUB, seq, IEEE, value=seq) for seq in (1, 2, 5, 6, 10)))
    await eventually(lambda: metrics(cloud)["stored"] == 5, what="5 events stored")
    hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert (hub_row["gaps"], hub_row["last_seq"]) == (5, 10)  # 3, 4, 7, 8, 9
    assert metrics(cloud)["gaps"] == 5

    await publish(hub, event(HUB, 4, IEEE, value=4))  # arrives late
    await eventually(lambda: metrics(cloud)["stored"] == 6, what="late event stored")
    hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert (hub_row["gaps"], hub_row["last_seq"]) == (4, 10)
    dev = await cloud.get_json(f"/api/v1/devices/{DEVICE_ID}")
    assert dev["capabilities"]["switch"]["on"] == 10  # the late event is history, not state


async def test_malformed_messages_are_rejected_counted_and_ingest_goes_on(
    cloud: CloudHarness, hub: MqttTestClient
):
    await publish(hub, status(HUB), device(HUB, IEEE))
    events_topic = Topics.events(HUB)
    good = event(HUB, 1, IEEE)
    bad: list[tuple[str, bytes]] = [
        (events_topic, b"{not json"),
        (events_topic, json.dumps({"hub_id": HUB, "seq": "x"}).encode()),  # wrong schema
        (events_topic, event("hub-2", 1, IEEE).to_bytes()),  # payload hub != topic hub
        (events_topic, b"[" + b" " * MAX_PAYLOAD_BYTES + b"]"),  # oversized
        (Topics.device(HUB, "00:00:00:00:00:00:00:99"), device(HUB, IEEE).to_bytes()),  # ieee
        (events_topic, event(HUB, 1, "00:00:00:00:00:00:00:99").to_bytes()),  # unknown device
    ]
    for topic, payload in bad:
        await asyncio.to_thread(hub.publish_raw, topic, payload)
    await publish(hub, event(HUB, 2, IEEE, value=False), good)
    await eventually(lambda: metrics(cloud)["stored"] == 2, what="valid events stored")

    m = metrics(cloud)
    assert m["rejected"] == {"not_json": 1, "invalid_payload": 1, "mismatch": 2, "too_large": 1,
                             "unknown_device": 1}
    assert m["rejected_total"] == 6
    hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert hub_row["events_stored"] == 2
    assert [d["id"] for d in await cloud.get_json("/api/v1/devices")] == [DEVICE_ID]
    health = (await cloud.http.get("/healthz")).json()
    assert health["ingest"]["rejected"]["unknown_device"] == 1


@ON_POSTGRESQL_TOO
async def test_removed_device_disappears_and_its_events_are_rejected(
    cloud: CloudHarness, hub: MqttTestClient
):
    await publish(hub, status(HUB), device(HUB, IEEE), retain=True)
    await eventually(lambda: cloud.services.storage.registry.get_device(DEVICE_ID) is not None)
    await asyncio.to_thread(hub.publish_raw, Topics.device(HUB, IEEE), b"", retain=True)
    await publish(hub, event(HUB, 1, IEEE))
    await eventually(lambda: metrics(cloud)["rejected"].get("unknown_device") == 1)
    assert await cloud.get_json("/api/v1/devices") == []
    assert (await cloud.http.get(f"/api/v1/devices/{DEVICE_ID}")).status_code == 404

    await publish(hub, device(HUB, IEEE))  # re-paired
    await eventually(lambda: len(cloud.services.storage.registry.list_devices()) == 1)


@ON_POSTGRESQL_TOO
async def test_hub_offline_makes_its_devices_unavailable_until_it_returns(
    cloud: CloudHarness, hub: MqttTestClient
):
    await publish(hub, status(HUB), device(HUB, IEEE), device(HUB, "00:00:00:00:00:00:00:02"))
    await eventually(lambda: len(cloud.services.storage.registry.list_devices()) == 2)
    await publish(hub, status(HUB, online=False, reason="connection lost"))
    await eventually(lambda: cloud.services.storage.registry.get_hub(HUB).online is False)
    for dev in await cloud.get_json("/api/v1/devices"):
        assert dev["available"] is False
        assert dev["availability_reason"] == "hub offline"
        assert dev["availability_changed_at"] is not None
    assert (await cloud.get_json(f"/api/v1/hubs/{HUB}"))["online"] is False

    await publish(hub, status(HUB))
    await eventually(lambda: cloud.services.storage.registry.get_hub(HUB).online is True)
    assert all(d["available"] for d in await cloud.get_json("/api/v1/devices"))


async def test_retained_state_is_picked_up_by_a_cloud_started_later(
    tmp_path: Path, mqtt_broker: BrokerAddress, database: str, hub: MqttTestClient
):
    await publish(hub, status(HUB), device(HUB, IEEE, {"level": {"level": 40.0}}), retain=True)
    async with running_cloud(cloud_settings(tmp_path, mqtt_broker, database_url=database)) as cloud:
        await eventually(lambda: len(cloud.services.storage.registry.list_devices()) == 1)
        dev = await cloud.get_json(f"/api/v1/devices/{DEVICE_ID}")
        assert dev["capabilities"] == {"level": {"level": 40.0}}


async def test_persistent_session_delivers_what_was_published_while_away(
    tmp_path: Path, mosquitto: BrokerAddress
):
    """Messages published while the cloud is down reach it when it comes back (same client id)."""
    settings = cloud_settings(tmp_path, mosquitto, mqtt_client_id="spoke-cloud-test-persistent")
    hub = MqttTestClient.as_hub(mosquitto, register_hub(settings, HUB))
    try:
        async with running_cloud(settings) as cloud:
            assert cloud.services.ingest.link.protocol == "5"
            await publish(hub, status(HUB), device(HUB, IEEE), event(HUB, 1, IEEE))
            await eventually(lambda: metrics(cloud)["stored"] == 1)
        await publish(hub, *(event(HUB, seq, IEEE) for seq in (2, 3, 4)))  # nobody listening
        async with running_cloud(settings) as cloud:
            await eventually(lambda: metrics(cloud)["stored"] == 3, what="queued events")
            hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
            assert (hub_row["events_stored"], hub_row["gaps"]) == (4, 0)
    finally:
        hub.close()


async def test_amqtt_is_spoken_to_in_mqtt_311(tmp_path: Path, amqtt_broker: BrokerAddress):
    async with running_cloud(cloud_settings(tmp_path, amqtt_broker)) as cloud:
        assert cloud.services.ingest.link.protocol == "3.1.1"
        assert isinstance(cloud.services, CloudServices)


@ON_POSTGRESQL_TOO
async def test_marks_are_acknowledged_after_the_interval_with_the_latest_one(
        tmp_path: Path, mqtt_broker: BrokerAddress, database: str, hub: MqttTestClient):
    settings = cloud_settings(tmp_path, mqtt_broker, database_url=database, ack_interval=3.0)
    async with running_cloud(settings) as cloud:
        assert await asyncio.to_thread(hub.subscribe, Topics.acks(HUB))

        def marks() -> list[int]:
            return [LedgerAck.from_bytes(p).seq for t, p in hub.received if t == Topics.acks(HUB)]

        await publish(hub, status(HUB, epoch="e1", last_seq=0), device(HUB, IEEE))
        await eventually(lambda: marks() == [0], what="the status answered")
        await publish(hub, *(event(HUB, seq, IEEE, epoch="e1") for seq in range(1, 7)))
        await eventually(lambda: metrics(cloud)["stored"] == 6, what="six events stored")
        # Held until the hub's interval passed, then sent although no message came after them.
        await eventually(lambda: marks()[-1:] == [6], what="the latest mark acknowledged")
        assert marks() == sorted(marks())
        hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
        assert (hub_row["events_stored"], hub_row["last_seq"], hub_row["gaps"]) == (6, 6, 0)
