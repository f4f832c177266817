"""The TLS context an MQTT client (the hub's, the cloud's) uses to reach the broker: trusting one CA
only, verifying the broker's name (the dialled host, or a configured name), TLS 1.2 at least, with an
optional client certificate. Hub and cloud both use this package, which knows nothing of either."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


class _NamedServerContext(ssl.SSLContext):
    """Checks the broker's certificate against a configured name instead of the host dialled."""

    server_name: str

    def wrap_socket(self, sock: socket.socket, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, do_handshake_on_connect,
                                   suppress_ragged_eofs, self.server_name, session)


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None,
                server_name: str | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` only, verifying the broker's name, with an optional client
    certificate."""
    context: ssl.SSLContext
    if server_name:
        context = _NamedServerContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = server_name
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
