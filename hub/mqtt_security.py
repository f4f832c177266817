"""How the hub logs in to the broker and, when a CA is configured, speaks TLS to it."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from hub.settings import HubSettings
from mqtt_tls import tls_context


def secure(client: mqtt.Client, settings: HubSettings) -> None:
    """Apply the hub's login and TLS settings to its paho client (before it connects)."""
    if settings.mqtt_username:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        client.username_pw_set(settings.mqtt_username, password)
    if settings.mqtt_tls_ca is None:
        return
    client.tls_set_context(tls_context(settings.mqtt_tls_ca, settings.mqtt_tls_cert,
                                       settings.mqtt_tls_key, settings.mqtt_tls_server_name))
