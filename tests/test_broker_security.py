"""The broker enforces who is who and who may do what, on Mosquitto (shipped config, with TLS) and on
the embedded amqtt broker alike: real paho clients, hubs registered through the cloud."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.tls import BROKER_NAME, make_pki
from cloud.broker_admin import BrokerAdmin
from cloud.broker_sync import sync_now
from cloud.hub_registration import HubCredentials, revoke_hub
from cloud.settings import CloudSettings
from cloud.storage import open_registry
from mqtt_tls import tls_context
from tests.common import (
    T0,
    MqttRefused,
    MqttTestClient,
    cloud_settings,
    device,
    event,
    eventually,
    register_hub,
    running_cloud,
    status,
    topic_for,
)
from tests.conftest import BrokerAddress
from tests.stack import running_stack
from wire.contract import Command, Topics, hub_client_id

A, B = "hub-a", "hub-b"
IEEE = "00:12:4b:00:01:02:03:04"


@pytest.fixture
def settings(tmp_path: Path, mqtt_broker: BrokerAddress) -> CloudSettings:
    return cloud_settings(tmp_path, mqtt_broker)


@pytest.fixture
def observer(mqtt_broker: BrokerAddress) -> Iterator[MqttTestClient]:
    """A client with the cloud's account reading every Spoke topic."""
    client = MqttTestClient.as_cloud(mqtt_broker, "spoke-cloud-test-observer")
    assert client.subscribe(Topics.everything())
    yield client
    client.close()


def _topics(client: MqttTestClient) -> list[str]:
    return [topic for topic, _ in client.received]


def _publish_as(broker: BrokerAddress, credentials: HubCredentials, topic: str,
                payload: bytes, *, retain: bool = False) -> None:
    """Publish once, on a connection of its own: Mosquitto disconnects an MQTT 3.1.1 client
    whose publish it refused (amqtt drops the message and keeps the client)."""
    client = MqttTestClient.as_hub(broker, credentials)
    try:
        client.publish_raw(topic, payload, retain=retain)
    finally:
        client.close()


def _refused(broker: BrokerAddress, client_id: str, username: str | None,
             password: str | None) -> bool:
    try:
        MqttTestClient(broker.host, broker.port, client_id, username=username,
                       password=password).close()
    except MqttRefused:
        return True
    return False


async def _until(check: object, what: str) -> None:
    await eventually(check, within=10, what=what)  # type: ignore[arg-type]


def test_anonymous_and_wrong_logins_are_refused(mqtt_broker: BrokerAddress,
                                                settings: CloudSettings) -> None:
    a = register_hub(settings, A)
    assert _refused(mqtt_broker, hub_client_id(A), None, None)  # anonymous
    assert _refused(mqtt_broker, hub_client_id(A), a.username, "wrong password")
    assert _refused(mqtt_broker, hub_client_id(A), "nobody", a.password)
    assert _refused(mqtt_broker, "some-other-id", a.username, a.password)  # bound client id
    assert not _refused(mqtt_broker, hub_client_id(A), a.username, a.password)


async def test_a_hub_cannot_speak_for_another_nor_read_its_commands(
        mqtt_broker: BrokerAddress, settings: CloudSettings, observer: MqttTestClient) -> None:
    a, b = register_hub(settings, A), register_hub(settings, B)
    async with running_cloud(settings) as cloud:
        # Forgeries on hub B's topics, then one real message of hub A's own.
        for message in (status(B), device(B, IEEE), event(B, 1, IEEE)):
            _publish_as(mqtt_broker, a, topic_for(message), message.to_bytes())
        _publish_as(mqtt_broker, a, Topics.status(A), status(A).to_bytes())
        await _until(lambda: cloud.services.storage.registry.get_hub(A) is not None,
                     "hub A's own status stored")
        await asyncio.sleep(0.3)
        assert cloud.services.storage.registry.get_hub(B) is None
        assert cloud.services.ingest.metrics.snapshot()["received"] == 1
        assert not [t for t in _topics(observer) if f"/hubs/{B}/" in t]

        hub_a, hub_b = MqttTestClient.as_hub(mqtt_broker, a), MqttTestClient.as_hub(mqtt_broker, b)
        try:
            # Reading hub B's commands, or everything, is refused.
            assert not hub_a.subscribe(Topics.commands(B))
            assert not hub_a.subscribe(Topics.everything())
            assert hub_a.subscribe(Topics.commands(A))
            assert hub_b.subscribe(Topics.commands(B))
            # A command to hub B reaches hub B only.
            command = Command(id="c1", hub_id=B, ieee=IEEE, capability="switch", command="on",
                              expires_at=T0)
            assert cloud.services.ingest.publish(Topics.commands(B), command.to_bytes())
            await _until(lambda: Topics.commands(B) in _topics(hub_b), "hub B got its command")
            await asyncio.sleep(0.2)
            assert Topics.commands(B) not in _topics(hub_a)
        finally:
            hub_a.close()
            hub_b.close()


async def test_only_the_cloud_sends_commands_requests_and_acks(
        mqtt_broker: BrokerAddress, settings: CloudSettings, observer: MqttTestClient) -> None:
    a, b = register_hub(settings, A), register_hub(settings, B)
    hub_b = MqttTestClient.as_hub(mqtt_broker, b)
    cloud = MqttTestClient.as_cloud(mqtt_broker, "spoke-cloud-test-sender")
    try:
        for topic in Topics.hub_filters(B):
            assert hub_b.subscribe(topic)
        for topic in Topics.hub_filters(A) + Topics.hub_filters(B):
            _publish_as(mqtt_broker, a, topic, b'{"forged": true}')
        _publish_as(mqtt_broker, a, Topics.events(A), event(A, 1, IEEE).to_bytes())  # allowed
        await _until(lambda: Topics.events(A) in _topics(observer), "hub A's own event")
        cloud.publish_raw(Topics.commands(B), b'{"real": true}')
        await _until(lambda: Topics.commands(B) in _topics(hub_b), "the cloud's command")
        await asyncio.sleep(0.2)
        forged = [(t, p) for t, p in observer.received + hub_b.received if b"forged" in p]
        assert forged == []
        assert (Topics.commands(B), b'{"real": true}') in observer.received
    finally:
        hub_b.close()
        cloud.close()


async def test_a_hub_gets_no_retained_message_of_another_hub(
        mqtt_broker: BrokerAddress, settings: CloudSettings, observer: MqttTestClient) -> None:
    a, b = register_hub(settings, A), register_hub(settings, B)
    _publish_as(mqtt_broker, b, Topics.status(B), status(B).to_bytes(), retain=True)
    cloud = MqttTestClient.as_cloud(mqtt_broker, "spoke-cloud-test-acks")
    try:
        cloud.publish_raw(Topics.acks(B), b'{"for": "hub B"}', retain=True)
        cloud.publish_raw(Topics.acks(A), b'{"for": "hub A"}', retain=True)
    finally:
        cloud.close()
    await _until(lambda: Topics.acks(A) in _topics(observer), "the retained acks published")
    hub = MqttTestClient.as_hub(mqtt_broker, a)  # a cloud subscription to everything exists
    try:
        for topic in Topics.hub_filters(A):
            assert hub.subscribe(topic)
        await _until(lambda: Topics.acks(A) in _topics(hub), "hub A's own retained ack")
        await asyncio.sleep(0.3)
        assert [t for t in _topics(hub) if f"/hubs/{A}/" not in t] == []
    finally:
        hub.close()


async def test_a_will_on_another_hubs_topic_is_never_published(
        mqtt_broker: BrokerAddress, settings: CloudSettings, observer: MqttTestClient) -> None:
    a = register_hub(settings, A)

    def connect_with_will(topic: str) -> MqttTestClient | None:
        try:
            return MqttTestClient(mqtt_broker.host, mqtt_broker.port, a.client_id,
                                  username=a.username, password=a.password,
                                  will=(topic, b"last words"))
        except MqttRefused:
            return None  # amqtt refuses the connection outright; Mosquitto drops the will

    forger = connect_with_will(Topics.status(B))
    if forger is not None:
        forger.drop()
    honest = connect_with_will(Topics.status(A))
    assert honest is not None
    honest.drop()
    await _until(lambda: Topics.status(A) in _topics(observer), "hub A's own will")
    assert Topics.status(B) not in _topics(observer)


async def test_nobody_takes_over_the_clouds_or_a_hubs_client_id(
        mqtt_broker: BrokerAddress, settings: CloudSettings) -> None:
    a, b = register_hub(settings, A), register_hub(settings, B)
    cloud = MqttTestClient.as_cloud(mqtt_broker, "spoke-cloud-test-victim")
    hub = MqttTestClient.as_hub(mqtt_broker, a)
    try:
        assert cloud.subscribe(Topics.events(A))
        assert hub.subscribe(Topics.commands(A))
        for client_id in (cloud.client._client_id.decode(), a.client_id):
            assert _refused(mqtt_broker, client_id, None, None)
            assert _refused(mqtt_broker, client_id, b.username, b.password)
            assert _refused(mqtt_broker, client_id, "spoke-cloud", "wrong password")
        assert _refused(mqtt_broker, a.client_id, "spoke-cloud", "wrong password")
        # Both are still connected, with their sessions and subscriptions intact.
        await asyncio.sleep(0.3)
        assert not cloud.disconnected.is_set() and not hub.disconnected.is_set()
        hub.publish(event(A, 1, IEEE))
        cloud.publish_raw(Topics.commands(A), b"{}")
        await _until(lambda: Topics.events(A) in _topics(cloud), "the cloud still receives")
        await _until(lambda: Topics.commands(A) in _topics(hub), "the hub still receives")
    finally:
        cloud.close()
        hub.close()


async def test_a_revoked_hub_is_disconnected_and_cannot_reconnect(
        mqtt_broker: BrokerAddress, settings: CloudSettings) -> None:
    a = register_hub(settings, A)
    hub = MqttTestClient.as_hub(mqtt_broker, a)
    try:
        with open_registry(settings) as registry:
            await asyncio.to_thread(revoke_hub, settings, registry, A)
        assert await asyncio.to_thread(hub.disconnected.wait, 5), "the revoked hub stayed connected"
    finally:
        hub.close()
    assert _refused(mqtt_broker, a.client_id, a.username, a.password)
    # Registering it again gives new credentials; the old ones stay refused.
    again = register_hub(settings, A)
    assert again.registration.generation == 2 and again.password != a.password
    assert _refused(mqtt_broker, a.client_id, a.username, a.password)
    assert not _refused(mqtt_broker, again.client_id, again.username, again.password)


def test_rotation_disconnects_the_old_credentials(mqtt_broker: BrokerAddress,
                                                  settings: CloudSettings) -> None:
    old = register_hub(settings, A)
    hub = MqttTestClient.as_hub(mqtt_broker, old)
    try:
        new = register_hub(settings, A)
        assert new.rotated and hub.disconnected.wait(5)
    finally:
        hub.close()
    assert _refused(mqtt_broker, old.client_id, old.username, old.password)
    assert not _refused(mqtt_broker, new.client_id, new.username, new.password)


def test_shared_subscriptions_are_the_clouds(mqtt_broker: BrokerAddress,
                                             settings: CloudSettings) -> None:
    shared = f"$share/spoke-ingest/{Topics.cloud_ingest_filters()[2]}"  # .../+/events
    hub = MqttTestClient.as_hub(mqtt_broker, register_hub(settings, A))
    cloud = MqttTestClient.as_cloud(mqtt_broker, "spoke-cloud-test-shared")
    try:
        assert not hub.subscribe(shared)
        assert cloud.subscribe(shared)
        if mqtt_broker.name == "mosquitto":  # amqtt 0.12 has no shared subscriptions
            hub.publish(event(A, 1, IEEE))
            deadline = time.monotonic() + 10
            while Topics.events(A) not in _topics(cloud) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert Topics.events(A) in _topics(cloud)
    finally:
        hub.close()
        cloud.close()


def test_the_cloud_restores_the_brokers_accounts_from_its_registry(
        mqtt_broker: BrokerAddress, settings: CloudSettings) -> None:
    a, b = register_hub(settings, A), register_hub(settings, B)
    with BrokerAdmin(settings) as admin:  # the broker loses hub A's account
        admin.remove_hub(A)
    assert _refused(mqtt_broker, a.client_id, a.username, a.password)
    with open_registry(settings) as registry:
        registry.revoke_hub(B, a.registration.registered_at)  # revoked while the broker was away
        report = sync_now(settings, registry)
        assert (report.created, report.removed) == ([A], [B])
        assert str(sync_now(settings, registry)) == "the broker was up to date"
    assert not _refused(mqtt_broker, a.client_id, a.username, a.password)  # same password
    assert _refused(mqtt_broker, b.client_id, b.username, b.password)


async def test_a_cloud_syncs_the_broker_when_it_starts(mqtt_broker: BrokerAddress,
                                                       settings: CloudSettings) -> None:
    a = register_hub(settings, A)
    with BrokerAdmin(settings) as admin:
        admin.remove_hub(A)
    async with running_cloud(settings) as cloud:
        assert await asyncio.to_thread(cloud.services.broker_sync.done.wait, 10)
    assert not _refused(mqtt_broker, a.client_id, a.username, a.password)


# TLS (Mosquitto's TLS listener, as shipped) --------------------------------------------------------


async def test_a_hub_over_tls_works_end_to_end(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    assert mosquitto.pki is not None and mosquitto.tls_port is not None
    pki = mosquitto.pki
    tls = {"mqtt_port": mosquitto.tls_port, "mqtt_tls_ca": pki.ca}
    hub = {**tls, "sim_devices": ["bulb"], "mqtt_tls_server_name": BROKER_NAME,
           "mqtt_tls_cert": pki.client_cert, "mqtt_tls_key": pki.client_key}
    async with running_stack(tmp_path, mosquitto, cloud=tls, hub=hub) as stack:
        devices = await stack.wait_for_devices(1)
        response = await stack.api.post(f"/api/v1/devices/{devices[0]['id']}/commands",
                                        json={"capability": "switch", "command": "off"})
        assert response.status_code == 200, response.text
        assert response.json()["state"]["switch"]["on"] is False


def test_tls_refuses_a_broker_certificate_from_another_ca(tmp_path: Path,
                                                          mosquitto: BrokerAddress) -> None:
    assert mosquitto.tls_port is not None and mosquitto.pki is not None
    settings = cloud_settings(tmp_path, mosquitto)
    a = register_hub(settings, A)
    stranger = make_pki(tmp_path / "other-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        MqttTestClient(mosquitto.host, mosquitto.tls_port, a.client_id, username=a.username,
                       password=a.password, tls=tls_context(stranger.ca))
    with pytest.raises(ssl.SSLCertVerificationError):  # the right CA, the wrong name
        MqttTestClient(mosquitto.host, mosquitto.tls_port, a.client_id, username=a.username,
                       password=a.password, tls=tls_context(mosquitto.pki.ca,
                                                            server_name="elsewhere.test"))
    MqttTestClient(mosquitto.host, mosquitto.tls_port, a.client_id, username=a.username,
                   password=a.password, tls=tls_context(mosquitto.pki.ca)).close()
