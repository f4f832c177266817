"""The end-to-end acknowledgement on real brokers: a hub keeps its events until the cloud has
committed them (the broker's PUBACK is not enough), sends again what never reached the cloud, lets
go of what the cloud acknowledged, and never acts on a retained command."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from cloud.service import CloudServices
from hub.app import Hub
from tests.common import MqttTestClient, cloud_settings, eventually, register_hub
from tests.conftest import BrokerAddress
from tests.stack import hub_settings
from wire.contract import Command, Topics, utcnow


def _cloud(tmp_path: Path, broker: BrokerAddress) -> CloudServices:
    return CloudServices.build(cloud_settings(tmp_path, broker, mqtt_client_id="ledger-cloud",
                                              mqtt_session_expiry=300))


async def test_events_wait_for_the_cloud_and_lost_ones_are_sent_again(
        tmp_path: Path, mqtt_broker: BrokerAddress) -> None:
    credentials = register_hub(cloud_settings(tmp_path, mqtt_broker), "hub-ledger")
    hub = Hub(hub_settings(tmp_path, mqtt_broker, "hub-ledger", credentials,
                           ledger_resend_after=0.5, shutdown_drain=1.0))
    await hub.start()
    cloud: CloudServices | None = None
    try:
        # No cloud yet: the broker acknowledges every publish, and drops them (no subscriber).
        await eventually(lambda: hub.link.published >= 20, within=20, what="20 events published")
        assert hub.store.acked_seq == 0
        assert hub.store.pending >= hub.store.last_seq >= 20  # every event still in the outbox

        # The cloud comes: it answers the hub's status with its mark (0); the hub sends again.
        cloud = await asyncio.to_thread(_cloud, tmp_path, mqtt_broker)
        cloud.start()
        registry = cloud.storage.registry

        def caught_up() -> bool:
            hub_row = registry.get_hub(hub.hub_id)
            return (hub_row is not None and hub.store.acked_seq >= 20
                    and hub_row.events_stored >= hub.store.acked_seq)

        await eventually(caught_up, within=30, what="the cloud to commit what the broker dropped")
        assert hub.publisher.resends >= 1
        hub_row = registry.get_hub(hub.hub_id)
        assert hub_row is not None and hub_row.epoch == hub.store.epoch
        # What the cloud acknowledged has left the outbox; the sequence goes on.
        await eventually(lambda: hub.store.pending < 20, within=10, what="the outbox to drain")
    finally:
        await hub.stop()
        if cloud is not None:
            await asyncio.to_thread(cloud.stop)


async def test_a_retained_command_is_never_executed(tmp_path: Path,
                                                    mqtt_broker: BrokerAddress) -> None:
    credentials = register_hub(cloud_settings(tmp_path, mqtt_broker), "hub-retained")
    settings = hub_settings(tmp_path, mqtt_broker, "hub-retained", credentials,
                            sim_devices=["bulb"])
    command = Command(id="retained-1", hub_id="hub-retained", ieee="00:11:22:33:44:55:66:77",
                      capability="switch", command="toggle",
                      expires_at=utcnow() + timedelta(minutes=5))
    # Only the cloud may publish commands: a cloud that (wrongly) retained one.
    client = MqttTestClient.as_cloud(mqtt_broker, "retaining-cloud")
    try:
        client.publish(command, Topics.commands("hub-retained"), retain=True)
        hub = Hub(settings)
        await hub.start()
        try:
            await eventually(lambda: hub.dispatch.refused >= 1, within=10,
                             what="the retained command refused")
            assert hub.executor.counts["received"] == 0
        finally:
            await hub.stop()
        client.publish_raw(Topics.commands("hub-retained"), b"", retain=True)  # clear it
    finally:
        client.close()
