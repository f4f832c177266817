"""Hubs' broker credentials: register (or rotate), revoke, and the settings a hub needs to connect.

Registering first makes sure the broker answers, then records the registration, then tells the broker;
revoking records first (the intent counts even when the broker cannot be reached). The registry is the
truth that ``cloud.broker_sync`` restores the broker from. A hub's password is derived from the broker
secret and its credential generation, so it is shown when made and stored nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cloud.auth import AccessError, require_account
from cloud.broker_admin import BrokerAdmin, BrokerError
from cloud.broker_credentials import hub_password, load_broker_secret
from cloud.broker_rules import hub_username
from cloud.settings import CloudSettings
from cloud.storage.base import HubRegistration, Registry
from wire.contract import HUB_ID_PATTERN, hub_client_id, is_hub_id


class RegistrationError(ValueError):
    """A hub id that is not valid, or not registered."""


@dataclass(frozen=True)
class HubCredentials:
    registration: HubRegistration
    username: str
    client_id: str
    password: str = field(repr=False)

    @property
    def hub_id(self) -> str:
        return self.registration.hub_id

    @property
    def rotated(self) -> bool:
        return self.registration.generation > 1


def _check(hub_id: str) -> None:
    if not is_hub_id(hub_id):
        raise RegistrationError(f"invalid hub id {hub_id!r} (letters, digits, '_', '.', '-'; "
                                f"pattern {HUB_ID_PATTERN})")


def _credentials(secret: bytes, registration: HubRegistration) -> HubCredentials:
    hub_id = registration.hub_id
    return HubCredentials(registration=registration, username=hub_username(hub_id),
                          client_id=hub_client_id(hub_id),
                          password=hub_password(secret, hub_id, registration.generation))


def register_hub(settings: CloudSettings, registry: Registry, hub_id: str,
                 account: str | None = None) -> HubCredentials:
    """Register ``hub_id``, or rotate its credentials when it was registered (or revoked) before:
    the broker then disconnects the hub until it logs in with the new password."""
    _check(hub_id)
    if account is not None or registry.get_hub_registration(hub_id) is None:
        try:
            account = require_account(registry, account)
        except AccessError as exc:
            raise RegistrationError(str(exc)) from None
    secret = load_broker_secret(settings.broker_secret_file)
    with BrokerAdmin(settings) as admin:  # reach the broker before anything changes
        registration = registry.register_hub(hub_id, account, datetime.now(UTC))
        credentials = _credentials(secret, registration)
        admin.put_hub(hub_id, credentials.password, registration.generation)
    return credentials


def ensure_hub(settings: CloudSettings, registry: Registry, hub_id: str,
               account: str | None = None) -> HubCredentials:
    """The hub's current credentials, registering it first when it is not, or not to ``account``
    (the demo's hub)."""
    _check(hub_id)
    registration = registry.get_hub_registration(hub_id)
    if (registration is None or registration.revoked
            or (account is not None and registration.account != account)):
        return register_hub(settings, registry, hub_id, account)
    return _credentials(load_broker_secret(settings.broker_secret_file), registration)


def revoke_hub(settings: CloudSettings, registry: Registry, hub_id: str) -> HubRegistration:
    """Take the hub's credentials away: recorded in the registry, then the broker deletes the
    account and disconnects the hub at once."""
    _check(hub_id)
    registration = registry.revoke_hub(hub_id, datetime.now(UTC))
    if registration is None:
        raise RegistrationError(f"no hub {hub_id!r} is registered")
    try:
        with BrokerAdmin(settings) as admin:
            admin.remove_hub(hub_id)
    except BrokerError as exc:
        raise BrokerError(f"hub {hub_id} is revoked in the registry, but {exc}; a cloud process "
                          "removes it from the broker when it next connects (or run "
                          "`spoke cloud broker sync`)") from None
    return registration


def hub_settings_snippet(credentials: HubCredentials, *, mqtt_host: str, mqtt_port: int,
                         tls_ca: Path | None = None, tls_server_name: str | None = None) -> str:
    """What the hub needs, as SPOKE_* lines (a ``.env`` file or a systemd EnvironmentFile)."""
    lines = [
        f"# Spoke hub {credentials.hub_id}: broker credentials, generation "
        f"{credentials.registration.generation}. Keep this file private (mode 0600).",
        f"SPOKE_HUB_ID={credentials.hub_id}",
        f"SPOKE_MQTT_HOST={mqtt_host}",
        f"SPOKE_MQTT_PORT={mqtt_port}",
        f"SPOKE_MQTT_USERNAME={credentials.username}",
        f"SPOKE_MQTT_PASSWORD={credentials.password}",
    ]
    if tls_ca is not None:
        lines += ["# the CA certificate that signed the broker's: copy it to this path on the hub",
                  f"SPOKE_MQTT_TLS_CA={tls_ca}"]
        if tls_server_name:
            lines.append(f"SPOKE_MQTT_TLS_SERVER_NAME={tls_server_name}")
    return "\n".join(lines) + "\n"
