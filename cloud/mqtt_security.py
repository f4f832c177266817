"""How the cloud's MQTT clients log in to the broker and, when a CA is configured, speak TLS to it."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import paho.mqtt.client as mqtt

from cloud.broker_credentials import BrokerSecretMissing, cloud_password, load_broker_secret
from cloud.broker_rules import CLOUD_USERNAME
from cloud.settings import CloudSettings
from mqtt_tls import tls_context

log = logging.getLogger(__name__)


def cloud_login(settings: CloudSettings) -> tuple[str, str | None]:
    """(username, password): the configured ones, else the cloud's account with the password
    derived from the broker secret (None when there is no secret file)."""
    username = settings.mqtt_username or CLOUD_USERNAME
    if settings.mqtt_password is not None:
        return username, settings.mqtt_password.get_secret_value()
    if username != CLOUD_USERNAME:
        return username, None
    try:
        return username, cloud_password(load_broker_secret(settings.broker_secret_file))
    except BrokerSecretMissing:
        _warn_no_password(settings.broker_secret_file)
        return username, None


@functools.cache
def _warn_no_password(path: Path) -> None:
    log.warning("no MQTT password for the cloud: %s does not exist (run `spoke cloud broker init`, "
                "or set SPOKE_MQTT_PASSWORD)", path)


def secure(client: mqtt.Client, settings: CloudSettings) -> None:
    """Apply the cloud's login and TLS settings to a paho client (before it connects)."""
    username, password = cloud_login(settings)
    client.username_pw_set(username, password)
    if settings.mqtt_tls_ca is not None:
        client.tls_set_context(tls_context(settings.mqtt_tls_ca, settings.mqtt_tls_cert,
                                           settings.mqtt_tls_key, settings.mqtt_tls_server_name))
