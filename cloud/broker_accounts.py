"""The accounts the broker should hold: the cloud's, and one per registered hub that is not revoked,
with passwords derived from the broker secret. Rendered as a whole dynamic-security file for a
broker's first start (``spoke cloud broker init``, the demo, ``spoke broker``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.broker_credentials import cloud_password, hash_password, hub_password, write_private
from cloud.broker_rules import DEFAULT_ACL_ACCESS, cloud_client, cloud_role, hub_client, hub_role
from cloud.storage.base import HubRegistration


@dataclass(frozen=True)
class HubAccount:
    hub_id: str
    generation: int


def active_hubs(registrations: Iterable[HubRegistration]) -> list[HubAccount]:
    return [HubAccount(r.hub_id, r.generation) for r in registrations if not r.revoked]


def dynsec_config(secret: bytes, hubs: Iterable[HubAccount]) -> dict[str, Any]:
    """A complete dynamic-security configuration: the cloud, the given hubs, everything else denied."""
    clients = [{**cloud_client().to_json(), **hash_password(cloud_password(secret))}]
    roles = [cloud_role().to_json()]
    for hub in hubs:
        clients.append({**hub_client(hub.hub_id, hub.generation).to_json(),
                        **hash_password(hub_password(secret, hub.hub_id, hub.generation))})
        roles.append(hub_role(hub.hub_id).to_json())
    return {"clients": clients, "groups": [], "roles": roles,
            "defaultACLAccess": dict(DEFAULT_ACL_ACCESS)}


def write_dynsec_config(path: Path, secret: bytes, hubs: Iterable[HubAccount]) -> int:
    """Write the configuration to ``path`` (0600); returns the number of hub accounts in it."""
    config = dynsec_config(secret, hubs)
    write_private(path, json.dumps(config, indent=2) + "\n")
    return len(config["clients"]) - 1
