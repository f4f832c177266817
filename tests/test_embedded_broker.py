"""The embedded broker under churn: a message is delivered to every subscriber even while other
clients subscribe and unsubscribe as it is being broadcast."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.common import MqttTestClient, cloud_settings, register_hub
from tests.conftest import BrokerAddress
from wire.contract import Topics

MESSAGES = 1000


def test_subscriptions_changing_during_a_broadcast_lose_nothing(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    hub = register_hub(cloud_settings(tmp_path, amqtt_broker), "hub-churn")
    # A cloud worker that is away: the broker keeps its session and queues for it (and yields
    # while it does, in the middle of a broadcast).
    away = MqttTestClient.as_cloud(amqtt_broker, "away-worker", clean_session=False)
    away.subscribe(Topics.events("hub-churn"))
    away.close()
    # Several filters, the watched one among them, so a broadcast has many to walk through.
    watchers = [MqttTestClient.as_cloud(amqtt_broker, f"watcher-{i}") for i in range(10)]
    for i, watcher in enumerate(watchers):
        watcher.subscribe(Topics.events("hub-churn") if i == 9 else f"spoke/v1/hubs/x{i}/events")
    stop = threading.Event()

    def churn(n: int) -> None:
        client = MqttTestClient.as_cloud(amqtt_broker, f"churn-{n}")
        try:
            k = 0
            while not stop.is_set():
                topic = f"spoke/v1/hubs/churn-{n}-{k % 50}/status"
                client.client.subscribe(topic, qos=1)
                client.client.unsubscribe(topic)
                k += 1
                time.sleep(0.001)
        finally:
            client.close()

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    publisher = MqttTestClient.as_hub(amqtt_broker, hub)
    try:
        for i in range(MESSAGES):
            publisher.client.publish(Topics.events("hub-churn"), str(i).encode(), qos=1)
        deadline = time.monotonic() + 30
        while len(watchers[9].received) < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        publisher.close()
        for watcher in watchers:
            watcher.close()
    assert len({payload for _, payload in watchers[9].received}) == MESSAGES
