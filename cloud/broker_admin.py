"""The cloud's connection to the broker's dynamic-security API (``$CONTROL/dynamic-security/v1``).

Mosquitto's dynamic-security plugin and the embedded broker both answer it, so registering, rotating
and revoking a hub is the same exchange on either. A short-lived paho client (MQTT 3.1.1, which both
speak) with the cloud's login sends a batch of commands and waits for the answers, matched by
correlation data since every admin client receives every response.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.broker_rules import (
    CONTROL_RESPONSE_TOPIC,
    CONTROL_TOPIC,
    Role,
    hub_client,
    hub_role,
    hub_rolename,
    hub_username,
)
from cloud.mqtt_security import secure
from cloud.settings import CloudSettings

# Answers that mean "already as wanted" when a command is used to converge.
_HARMLESS = {"Role already exists", "Client not found", "Role not found"}


class BrokerError(RuntimeError):
    """The broker could not be reached, refused the cloud, or did not carry a command out."""


class BrokerAdmin:
    """``with BrokerAdmin(settings) as admin:`` — a connection that sends dynamic-security commands."""

    def __init__(self, settings: CloudSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.where = f"{settings.mqtt_host}:{settings.mqtt_port}"
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._waiting: dict[str, dict[str, Any] | None] = {}
        self._answered = threading.Condition(self._lock)
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"spoke-cloud-admin-{secrets.token_hex(4)}",
                                   protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.on_message = self._on_message

    # Connection -----------------------------------------------------------------------------------
    def __enter__(self) -> BrokerAdmin:
        try:
            secure(self._client, self.settings)
            self._client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        except ssl.SSLError as exc:
            raise BrokerError(f"TLS with the MQTT broker at {self.where} failed: "
                              f"{exc.reason or exc} (did the CA in SPOKE_MQTT_TLS_CA sign the "
                              "broker's certificate, for this host name?)") from None
        except OSError as exc:
            raise BrokerError(f"cannot reach the MQTT broker at {self.where}: "
                              f"{exc.strerror or exc}") from None
        self._client.loop_start()
        try:
            if not self._connected.wait(self.timeout):
                hint = "" if self.settings.mqtt_tls_ca else " (a TLS port? then set SPOKE_MQTT_TLS_CA)"
                raise BrokerError(f"the MQTT broker at {self.where} did not answer the "
                                  f"connection{hint}")
            if self._refused is not None:
                raise BrokerError(f"the MQTT broker at {self.where} refused the cloud's login "
                                  f"({self._refused}): is it set up with `spoke cloud broker init` "
                                  f"from the same broker secret ({self.settings.broker_secret_file})?")
            self._client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)
            if not self._subscribed.wait(self.timeout):
                raise BrokerError(f"the MQTT broker at {self.where} did not confirm the subscription")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._answered:
            for response in responses:
                key = response.get("correlationData") if isinstance(response, dict) else None
                if key in self._waiting:
                    self._waiting[key] = response
            self._answered.notify_all()

    # Commands -------------------------------------------------------------------------------------
    def request(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands in one message; their answers, in order. Raise on an error other than
        the harmless ones (creating what exists, deleting what does not)."""
        batch = secrets.token_hex(6)
        keys = [f"{batch}-{i}" for i in range(len(commands))]
        with self._lock:
            self._waiting.update(dict.fromkeys(keys))
        payload = {"commands": [{**c, "correlationData": k} for c, k in zip(commands, keys,
                                                                           strict=True)]}
        self._client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)
        with self._answered:
            done = self._answered.wait_for(lambda: all(self._waiting[k] for k in keys),
                                           self.timeout)
            answers = [self._waiting.pop(k) or {} for k in keys]
        if not done:
            raise BrokerError(f"the MQTT broker at {self.where} did not answer on {CONTROL_TOPIC} "
                              "(is its dynamic-security plugin loaded?)")
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and error not in _HARMLESS:
                raise BrokerError(f"the MQTT broker refused {command['command']}: {error}")
        return answers

    def put_role(self, role: Role) -> None:
        """Create the role, or set its ACLs to these."""
        acls = role.to_json()["acls"]
        self.request([{"command": "createRole", "rolename": role.rolename,
                       "textname": role.textname, "acls": acls},
                      {"command": "modifyRole", "rolename": role.rolename, "acls": acls}])

    def put_hub(self, hub_id: str, password: str, generation: int) -> None:
        """Give a hub its role and an account with this password, bound to its client id. An
        existing account is replaced: the broker disconnects whoever used it."""
        self.put_role(hub_role(hub_id))
        client = hub_client(hub_id, generation).to_json()
        self.request([{"command": "deleteClient", "username": client["username"]},
                      {"command": "createClient", **client, "password": password}])

    def remove_hub(self, hub_id: str) -> None:
        """Delete the hub's account (the broker disconnects it at once) and its role."""
        self.request([{"command": "deleteClient", "username": hub_username(hub_id)},
                      {"command": "deleteRole", "rolename": hub_rolename(hub_id)}])

    def accounts(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The broker's clients and roles, by username and by role name."""
        clients, roles = self.request([{"command": "listClients", "verbose": True},
                                       {"command": "listRoles", "verbose": True}])
        return ({c["username"]: c for c in clients.get("data", {}).get("clients", [])},
                {r["rolename"]: r for r in roles.get("data", {}).get("roles", [])})
