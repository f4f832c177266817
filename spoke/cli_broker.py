"""`spoke cloud hub register|revoke|list` and `spoke cloud broker init|sync`: the hubs' broker
credentials and the broker's accounts, managed by the cloud."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spoke.console import command_group, console, err_console, fail
from spoke.listing import iso, print_json, print_list

if TYPE_CHECKING:
    from cloud.settings import CloudSettings
    from cloud.storage.base import Registry

hub_app = command_group("Hubs' broker credentials: register, revoke, list.")
broker_app = command_group("The MQTT broker's accounts and rules.")


def register(cloud_app: typer.Typer) -> None:
    cloud_app.add_typer(hub_app, name="hub")
    cloud_app.add_typer(broker_app, name="broker")


def cloud_settings() -> CloudSettings:
    """The cloud's settings, or one error line."""
    from pydantic import ValidationError

    from cloud.settings import CloudSettings

    try:
        return CloudSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid cloud setting {'.'.join(map(str, first['loc']))}: {first['msg']}")


@contextmanager
def _registry(settings: CloudSettings) -> Iterator[Registry]:
    """The registry; the errors of registering with the broker as one line each."""
    from cloud.broker_admin import BrokerError
    from cloud.broker_credentials import BrokerSecretMissing
    from cloud.hub_registration import RegistrationError
    from cloud.storage import open_registry
    from cloud.storage.base import SchemaOutdated, StoreUnavailable

    try:
        with open_registry(settings) as registry:
            yield registry
    except (BrokerError, BrokerSecretMissing, RegistrationError, SchemaOutdated,
            StoreUnavailable) as exc:
        fail(str(exc))


# ------------------------------------------------------------------------------------ spoke cloud hub
@hub_app.command("register")
def hub_register(
    hub_id: Annotated[str, typer.Argument(help="The hub's id (its SPOKE_HUB_ID).")],
    account: Annotated[str | None, typer.Option(help="Who the hub belongs to.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the hub's settings to this file (mode 0600) instead of printing them.")
    ] = None,
    mqtt_host: Annotated[str | None, typer.Option(
        help="The broker's address as the hub reaches it (default: SPOKE_MQTT_HOST).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(
        help="The broker's port as the hub reaches it (default: SPOKE_MQTT_PORT).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(
        help="Where the broker's CA certificate will be on the hub (default: SPOKE_MQTT_TLS_CA).")
    ] = None,
) -> None:
    """Give a hub broker credentials (registering it again rotates them) and print its settings."""
    from cloud.broker_credentials import write_private
    from cloud.hub_registration import hub_settings_snippet, register_hub

    settings = cloud_settings()
    with _registry(settings) as registry:
        credentials = register_hub(settings, registry, hub_id, account)
    snippet = hub_settings_snippet(
        credentials, mqtt_host=mqtt_host or settings.mqtt_host,
        mqtt_port=mqtt_port or settings.mqtt_port, tls_ca=tls_ca or settings.mqtt_tls_ca,
        tls_server_name=settings.mqtt_tls_server_name)
    generation = credentials.registration.generation
    if credentials.rotated:
        err_console.print(f"hub {hub_id} was registered before: its credentials are rotated "
                          f"(generation {generation}); the broker disconnected it until it uses "
                          "these new settings", highlight=False)
    else:
        err_console.print(f"hub {hub_id} registered", highlight=False)
    if out is None:
        typer.echo(snippet, nl=False)
        return
    try:
        write_private(out, snippet)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    err_console.print(f"wrote the hub's settings to {out} (mode 0600)", highlight=False)


@hub_app.command("revoke")
def hub_revoke(hub_id: Annotated[str, typer.Argument(help="The hub's id.")]) -> None:
    """Take a hub's credentials away: the broker disconnects it at once and refuses it after."""
    from cloud.hub_registration import revoke_hub

    settings = cloud_settings()
    with _registry(settings) as registry:
        revoke_hub(settings, registry, hub_id)
    console.print(f"hub {hub_id} revoked: disconnected, and refused by the broker from now on",
                  highlight=False)


@hub_app.command("list")
def hub_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for programs).")
                                ] = False) -> None:
    """Registered hubs: credential generation, revoked or not, online or not."""
    settings = cloud_settings()
    with _registry(settings) as registry:
        found = [(reg, registry.get_hub(reg.hub_id)) for reg in registry.list_hub_registrations()]
    if as_json:
        print_json([{"hub_id": reg.hub_id, "account": reg.account, "generation": reg.generation,
                     "revoked": reg.revoked, "registered_at": iso(reg.registered_at),
                     "rotated_at": iso(reg.rotated_at), "revoked_at": iso(reg.revoked_at),
                     "online": None if hub is None else hub.online} for reg, hub in found])
        return
    rows = []
    for reg, hub in found:
        online = "—" if hub is None or hub.online is None else ("yes" if hub.online else "no")
        changed = reg.revoked_at if reg.revoked else reg.rotated_at
        rows.append((reg.hub_id, reg.account or "", str(reg.generation),
                     "revoked" if reg.revoked else "active", f"{reg.registered_at:%Y-%m-%d %H:%M}",
                     f"{changed:%Y-%m-%d %H:%M}" if changed else "", online))
    print_list(("hub", "account", "generation", "credentials", "registered", "changed", "online"),
               rows, whole=(0, 1))



# --------------------------------------------------------------------------------- spoke cloud broker
@broker_app.command("init")
def broker_init(
    mosquitto_dynsec: Annotated[Path | None, typer.Option(
        "--mosquitto-dynsec", help="Write Mosquitto's first dynamic-security file here.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing dynamic-security file.")] = False,
) -> None:
    """Create the cloud's broker secret (once), and the broker's first dynamic-security file: the
    cloud's account and role, every registered hub, everything else denied."""
    from cloud.broker_accounts import active_hubs, write_dynsec_config
    from cloud.broker_credentials import ensure_broker_secret

    settings = cloud_settings()
    path = settings.broker_secret_file
    existed = path.exists()
    try:
        secret = ensure_broker_secret(path)
    except (OSError, ValueError) as exc:
        fail(f"cannot create the broker secret {path}: {exc}")
    console.print(f"broker secret: {path} ({'kept' if existed else 'created'}, mode 0600)",
                  highlight=False)
    if mosquitto_dynsec is None:
        return
    if mosquitto_dynsec.exists() and not force:
        fail(f"{mosquitto_dynsec} exists (the broker may be using it); --force replaces it")
    with _registry(settings) as registry:
        hubs = active_hubs(registry.list_hub_registrations())
    try:
        count = write_dynsec_config(mosquitto_dynsec, secret, hubs)
    except OSError as exc:
        fail(f"cannot write {mosquitto_dynsec}: {exc.strerror or exc}")
    console.print(f"wrote {mosquitto_dynsec} (mode 0600): the cloud's account and {count} hub "
                  "account(s). Point Mosquitto's plugin_opt_config_file at it and let user "
                  "mosquitto own it.", highlight=False)


@broker_app.command("sync")
def broker_sync() -> None:
    """Bring the broker's hub accounts in line with the registry now (the cloud does it when it
    starts): create missing ones, update stale ones, remove revoked ones."""
    from cloud.broker_sync import sync_now

    settings = cloud_settings()
    with _registry(settings) as registry:
        report = sync_now(settings, registry)
    console.print(f"broker synced: {report}", highlight=False)
