"""How the hub logs in to the broker and, when a CA is configured, speaks TLS to it."""

from __future__ import annotations

import socket
import ssl

import paho.mqtt.client as mqtt

from hub.settings import HubSettings


def secure(client: mqtt.Client, settings: HubSettings) -> None:
    """Apply the hub's login and TLS settings to its paho client (before it connects)."""
    if settings.mqtt_username:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        client.username_pw_set(settings.mqtt_username, password)
    if settings.mqtt_tls_ca is None:
        return
    context: ssl.SSLContext
    if settings.mqtt_tls_server_name:
        context = _NamedServerContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = settings.mqtt_tls_server_name
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(settings.mqtt_tls_ca))
    if settings.mqtt_tls_cert is not None:
        key = str(settings.mqtt_tls_key) if settings.mqtt_tls_key is not None else None
        context.load_cert_chain(str(settings.mqtt_tls_cert), key)
    client.tls_set_context(context)


class _NamedServerContext(ssl.SSLContext):
    """Checks the broker's certificate against a configured name instead of the host dialled."""

    server_name: str

    def wrap_socket(self, sock: socket.socket, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, do_handshake_on_connect,
                                   suppress_ragged_eofs, self.server_name, session)
