"""Bring the broker's accounts in line with the registry: the registry is the truth, the broker follows.

Missing or stale hub accounts are (re)created, roles whose ACLs differ from the rules are reset,
revoked hubs are removed. A hub account newer than the registry is left alone (a registration may be
under way), and accounts Spoke did not make are never touched. Every cloud process runs this once
it reaches the broker, so a broker that lost its dynamic-security file gets its hubs back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from cloud.broker_admin import BrokerAdmin, BrokerError
from cloud.broker_credentials import BrokerSecretMissing, hub_password, load_broker_secret
from cloud.broker_rules import (
    Role,
    cloud_role,
    generation_of,
    hub_role,
    hub_rolename,
    hub_username,
)
from cloud.settings import CloudSettings
from cloud.storage.base import Registry, StoreUnavailable
from wire.contract import hub_client_id

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)  # hub accounts (re)made
    roles_fixed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # revoked hubs taken off the broker

    def __str__(self) -> str:
        parts = [f"{what}: {', '.join(names)}" for what, names in (
            ("accounts set", self.created), ("roles reset", self.roles_fixed),
            ("revoked hubs removed", self.removed)) if names]
        return "; ".join(parts) or "the broker was up to date"


def _acl_set(acls: list[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    return {(a["acltype"], a["topic"], bool(a.get("allow"))) for a in acls}


def _role_differs(role: Role, live: dict[str, Any] | None) -> bool:
    return live is None or _acl_set(live.get("acls", [])) != _acl_set(role.to_json()["acls"])


def sync_broker(admin: BrokerAdmin, secret: bytes, registry: Registry) -> SyncReport:
    report = SyncReport()
    clients, roles = admin.accounts()
    role = cloud_role()
    if _role_differs(role, roles.get(role.rolename)):
        admin.put_role(role)
        report.roles_fixed.append(role.rolename)
    for reg in registry.list_hub_registrations():
        username, rolename = hub_username(reg.hub_id), hub_rolename(reg.hub_id)
        live = clients.get(username)
        if reg.revoked:
            if live is not None or rolename in roles:
                admin.remove_hub(reg.hub_id)
                report.removed.append(reg.hub_id)
            continue
        generation = generation_of(live.get("textdescription")) if live else None
        account_ok = (live is not None and generation is not None
                      and generation >= reg.generation and not live.get("disabled")
                      and live.get("clientid") == hub_client_id(reg.hub_id)
                      and rolename in {r.get("rolename") for r in live.get("roles", [])})
        if not account_ok:
            admin.put_hub(reg.hub_id, hub_password(secret, reg.hub_id, reg.generation),
                          reg.generation)
            report.created.append(reg.hub_id)
        elif _role_differs(hub_role(reg.hub_id), roles.get(rolename)):
            admin.put_role(hub_role(reg.hub_id))
            report.roles_fixed.append(rolename)
    return report


def sync_now(settings: CloudSettings, registry: Registry) -> SyncReport:
    """Connect with the cloud's login and sync; raises BrokerError or BrokerSecretMissing."""
    secret = load_broker_secret(settings.broker_secret_file)
    with BrokerAdmin(settings) as admin:
        return sync_broker(admin, secret, registry)


class BrokerSync:
    """Syncs the broker once in a background thread, retrying while the broker is unreachable."""

    def __init__(self, settings: CloudSettings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spoke-broker-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                report = sync_now(self.settings, self.registry)
            except BrokerSecretMissing:
                log.warning("broker accounts not synced: no broker secret at %s",
                            self.settings.broker_secret_file)
                return
            except (BrokerError, StoreUnavailable) as exc:
                log.info("broker accounts not synced yet (%s); retrying in %.0f s", exc, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 60.0)
                continue
            log.info("broker accounts synced: %s", report)
            self.done.set()
            return
