"""The embedded MQTT broker (amqtt 0.12) for the demo and tests: plain TCP, anonymous clients.

amqtt speaks MQTT 3.1.1 only; the cloud's ``mqtt_protocol = "auto"`` falls back to it.
"""

from __future__ import annotations

import logging
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt's BrokerConfig as a dict: one TCP listener, anonymous, no $SYS, no websocket."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


async def start_broker(host: str = "127.0.0.1", port: int = 1883) -> Broker:
    """Start an embedded broker on ``host:port`` in the running event loop."""
    logging.getLogger("transitions").setLevel(logging.WARNING)  # amqtt's state machine chatter
    broker = Broker(broker_config(host, port))
    await broker.start()
    log.info("embedded MQTT broker listening on %s:%s", host, port)
    return broker


async def stop_broker(broker: Broker) -> None:
    await broker.shutdown()
    log.info("embedded MQTT broker stopped")
