"""The embedded broker keeps delivering while subscriptions change: amqtt 0.12.1 walks its
subscriptions across awaits when it broadcasts a message, and a client subscribing meanwhile ended
the walk ("dictionary changed size during iteration"): subscribers not yet walked never got the
message (seen 68 times in 3,000 messages with six clients subscribing and unsubscribing). Spoke's
broker walks a snapshot instead, and of only the filters that match the message's topic."""

from __future__ import annotations

import logging
from pathlib import Path

from amqtt.broker import Broker

from cloud.broker import SpokeBroker, _Subscriptions, broker_config
from cloud.broker_accounts import write_dynsec_config
from cloud.broker_credentials import ensure_broker_secret


def test_a_broadcast_walks_a_snapshot_while_clients_subscribe_and_leave() -> None:
    subscriptions = _Subscriptions({"spoke/v1/hubs/a/events": [], "spoke/v1/hubs/b/events": []})
    walked = []
    for topic, _sessions in subscriptions.items():  # as amqtt's broadcast does
        walked.append(topic)
        subscriptions[f"{topic}/new"] = []  # a client subscribes in the middle of it
    assert walked == ["spoke/v1/hubs/a/events", "spoke/v1/hubs/b/events"]
    for topic in subscriptions:  # as amqtt's unsubscribe-all does, deleting as it goes
        del subscriptions[topic]
    assert subscriptions == {}


def test_a_message_meets_its_exact_filter_and_the_wildcard_filters_that_match() -> None:
    subscriptions = _Subscriptions({"spoke/v1/hubs/a/acks": [], "spoke/v1/hubs/b/acks": [],
                                    "spoke/v1/hubs/+/events": [], "spoke/v1/hubs/+/status": [],
                                    "spoke/#": []})
    broker = Broker.__new__(Broker)
    broker.logger = logging.getLogger("amqtt")

    def met(topic: str) -> list[str]:
        return sorted(f for f, _ in subscriptions.matching(topic, broker._matches))

    assert met("spoke/v1/hubs/a/acks") == ["spoke/#", "spoke/v1/hubs/a/acks"]
    assert met("spoke/v1/hubs/c/events") == ["spoke/#", "spoke/v1/hubs/+/events"]
    assert met("other/topic") == []
    del subscriptions["spoke/#"]
    subscriptions["spoke/v1/hubs/c/acks"] = []
    assert met("spoke/v1/hubs/c/acks") == ["spoke/v1/hubs/c/acks"]
    assert subscriptions.wildcards == {"spoke/v1/hubs/+/events", "spoke/v1/hubs/+/status"}


async def test_the_embedded_broker_uses_it(tmp_path: Path) -> None:
    dynsec = tmp_path / "dynsec.json"
    write_dynsec_config(dynsec, ensure_broker_secret(tmp_path / "secret"), [])
    broker = SpokeBroker(broker_config("127.0.0.1", 1, dynsec))
    assert isinstance(broker._subscriptions, _Subscriptions)
