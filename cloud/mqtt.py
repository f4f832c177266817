"""The cloud's MQTT connection (paho-mqtt 2.x): persistent session, manual acks, protocol fallback.

One connection per cloud process: the ingest worker receives on it and the command service
publishes on it. Acknowledgements are sent by the caller once a message is safely stored.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.mqtt_security import secure
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

# CONNACK codes meaning "this broker does not speak the protocol version you asked for".
_UNSUPPORTED_PROTOCOL = {1, 0x84}
# At most this many unacknowledged QoS 1 messages in flight to us (MQTT 5 Receive Maximum).
RECEIVE_MAXIMUM = 1000


@dataclass(frozen=True, kw_only=True)
class Inbound:
    """A received message, with what is needed to acknowledge it later."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool


class MqttLink:
    """A self-reconnecting MQTT client that subscribes on every connect and acks on request."""

    def __init__(
        self,
        settings: CloudSettings,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[Inbound], None],
    ) -> None:
        self.settings = settings
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._stop_event = threading.Event()
        self._probe: threading.Thread | None = None
        self.protocol = "3.1.1" if settings.mqtt_protocol == "3.1.1" else "5"
        self.last_error: str | None = "not connected yet"
        self.connections = 0  # accepted connections so far: the ones after the first reconnected
        self._client = self._make_client()

    # Lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; paho reconnects on its own after a loss."""
        if self.settings.mqtt_protocol == "auto":
            self._probe = threading.Thread(target=self._detect_then_connect,
                                           name="spoke-mqtt-probe", daemon=True)
            self._probe.start()
        else:
            self._connect(self._client)

    def stop(self) -> None:
        """Disconnect cleanly (the broker keeps a persistent session for its expiry interval)."""
        with self._lock:
            self._stopping = True
        self._stop_event.set()
        if self._probe is not None:
            self._probe.join(10)
        with self._lock:
            client = self._client
        self._ready.clear()
        client.disconnect()
        client.loop_stop()

    def wait_ready(self, timeout: float) -> bool:
        """Block until connected and subscribed (or the timeout passes)."""
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # Messaging ------------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message; False when it could not even be queued (QoS 1 survives a reconnect)."""
        with self._lock:
            client = self._client
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        return True

    def ack(self, message: Inbound) -> None:
        if message.qos > 0:
            with self._lock:
                client = self._client
            client.ack(message.mid, message.qos)

    # paho plumbing --------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = self.protocol == "5"
        client = _BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else s.mqtt_session_expiry == 0,
            manual_ack=True,
        )
        secure(client, s)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_socket_open = _no_delay
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        return client

    def _connect(self, client: mqtt.Client) -> None:
        s = self.settings
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.mqtt_session_expiry
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            client.connect_async(
                s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive,
                clean_start=s.mqtt_session_expiry == 0, properties=props,
            )
        else:
            client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive)
        client.loop_start()

    def _handle_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        code = getattr(reason, "value", reason)
        if code != 0:
            hint = " (try SPOKE_MQTT_PROTOCOL=3.1.1)" if code in _UNSUPPORTED_PROTOCOL else ""
            self.last_error = f"connection refused: {reason}{hint}"
            log.warning("MQTT %s:%s refused the connection: %s%s",
                        self.settings.mqtt_host, self.settings.mqtt_port, reason, hint)
            return
        self.last_error = None
        self.connections += 1  # paho's network thread is the only writer
        resumed = bool(getattr(flags, "session_present", False))
        log.info("MQTT connected to %s:%s (MQTT %s, session %s)", self.settings.mqtt_host,
                 self.settings.mqtt_port, self.protocol, "resumed" if resumed else "new")
        result, _mid = client.subscribe(self.subscriptions)  # ready once the SUBACK arrives
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.last_error = f"subscribe failed: {mqtt.error_string(result)}"

    def _detect_then_connect(self) -> None:
        """Find the protocol the broker speaks (retrying while it is unreachable), then connect."""
        delay = 0.5
        while True:
            found = probe_protocol(self.settings)
            if found is not None:
                break
            s = self.settings
            self.last_error = f"broker {s.mqtt_host}:{s.mqtt_port} unreachable"
            if self._stop_event.wait(delay):
                break
            delay = min(delay * 2, 10.0)
        with self._lock:
            if self._stopping or found is None:
                return
            if found != self.protocol:
                log.info("broker %s:%s does not speak MQTT 5; using MQTT %s",
                         self.settings.mqtt_host, self.settings.mqtt_port, found)
                self.protocol = found
                self._client = self._make_client()
            client = self._client
        self._connect(client)

    def _handle_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: list[Any], _props: Any
    ) -> None:
        failed = [str(r) for r in reasons if getattr(r, "value", r) >= 0x80]
        if failed:
            self.last_error = f"subscription refused: {', '.join(failed)}"
            log.error("MQTT broker refused subscriptions %s: %s", self.subscriptions, failed)
            return
        self._ready.set()

    def _handle_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._ready.clear()
        if not self._stopping:
            self.last_error = f"disconnected: {reason}"
            log.warning("MQTT connection to %s:%s lost (%s); reconnecting",
                        self.settings.mqtt_host, self.settings.mqtt_port, reason)

    def _handle_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(
            Inbound(topic=msg._topic.decode("utf-8", "replace"), payload=bytes(msg.payload),
                    mid=msg.mid, qos=msg.qos, retain=bool(msg.retain))
        )


class _BufferedSocket:
    """A plain TCP socket that reads what is there in one call and hands it out as asked.

    paho reads each packet's header a byte at a time: three or four system calls per message, each
    letting go of the GIL that the ingest worker then holds, which made paho's reading the narrow
    part of the ingest. ``pending`` tells paho's loop that buffered bytes are waiting (it asks TLS
    sockets the same), so it reads them without waiting for the socket to become readable."""

    _CHUNK = 256 * 1024

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buffer):
            data = self._sock.recv(max(size, self._CHUNK))  # BlockingIOError when nothing is there
            if len(data) <= size:
                return data
            self._buffer, self._pos = data, 0
        end = self._pos + size
        data = self._buffer[self._pos:end]
        self._pos = end
        return data

    def pending(self) -> int:
        return len(self._buffer) - self._pos

    def __getattr__(self, name: str) -> Any:  # fileno, send, close, setsockopt, ...
        return getattr(self._sock, name)


class _BufferedClient(mqtt.Client):
    """paho's client reading plain TCP through ``_BufferedSocket`` (TLS sockets buffer already)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if type(sock) is socket.socket:
            return _BufferedSocket(sock)
        return sock


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Small MQTT packets must not wait for Nagle's algorithm (40 ms per exchange otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def probe_protocol(settings: CloudSettings, timeout: float = 3.0) -> str | None:
    """"5" or "3.1.1" by what the broker answers to a bare MQTT 5 CONNECT; None if unreachable.

    A broker that takes the connection but never answers (amqtt misreads MQTT 5 packets) is
    taken to speak 3.1.1 only.
    """
    answered = threading.Event()
    verdict: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        code = getattr(reason, "value", reason)
        verdict.append("3.1.1" if code in _UNSUPPORTED_PROTOCOL else "5")
        answered.set()

    probe = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id=f"spoke-probe-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
    secure(probe, settings)
    probe.on_connect = on_connect
    try:
        probe.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10, clean_start=True)
    except OSError as exc:
        log.debug("MQTT broker %s:%s unreachable: %s", settings.mqtt_host, settings.mqtt_port, exc)
        return None
    probe.loop_start()
    try:
        return verdict[0] if answered.wait(timeout) else "3.1.1"
    finally:
        probe.disconnect()
        probe.loop_stop()
