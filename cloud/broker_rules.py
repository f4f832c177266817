"""Who may do what on the MQTT broker, derived from the wire contract's topic lists and nothing else.

The rules are written as Mosquitto dynamic-security roles and clients. Both brokers take them in that
form: Mosquitto through its dynamic-security plugin, the embedded amqtt broker through Spoke's own
implementation of the same model (``cloud.dynsec``). Every access type defaults to deny.

- A hub's client is bound to the client id ``hub_client_id(hub_id)``; its role lets it publish its
  own hub -> cloud topics only, and subscribe to and receive its own commands, requests and acks.
- The cloud's client (one for every cloud process, any client id) publishes commands, requests and
  acks to any hub, reads every Spoke topic (shared subscriptions included) and drives the broker's
  dynamic-security API. Mosquitto 2.0.11 substitutes no %u/%c in these ACLs, hence one role per hub.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wire.contract import Topics, hub_client_id, is_hub_id

CLOUD_USERNAME = "spoke-cloud"
CLOUD_ROLE = "spoke-cloud"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
SHARED_PREFIX = "$share/+/"  # a shared subscription is checked with its $share/<group>/ prefix
_HUB_PREFIX = hub_client_id("")
_GENERATION = re.compile(r"credentials generation (\d+)")


class AclType(StrEnum):
    PUBLISH_SEND = "publishClientSend"  # client -> broker
    PUBLISH_RECEIVE = "publishClientReceive"  # broker -> client
    SUBSCRIBE_LITERAL = "subscribeLiteral"
    SUBSCRIBE_PATTERN = "subscribePattern"
    UNSUBSCRIBE_LITERAL = "unsubscribeLiteral"
    UNSUBSCRIBE_PATTERN = "unsubscribePattern"


# Keys of the plugin's "defaultACLAccess": all denied.
DEFAULT_ACL_ACCESS = {"publishClientSend": False, "publishClientReceive": False,
                      "subscribe": False, "unsubscribe": False}


@dataclass(frozen=True)
class Acl:
    acltype: AclType
    topic: str
    allow: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype.value, "topic": self.topic, "allow": self.allow,
                "priority": 0}


@dataclass(frozen=True)
class Role:
    rolename: str
    acls: tuple[Acl, ...]
    textname: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rolename": self.rolename, "textname": self.textname,
                "acls": [acl.to_json() for acl in self.acls]}


@dataclass(frozen=True)
class Client:
    """An account on the broker (its password is set separately, never kept here)."""

    username: str
    rolename: str
    clientid: str | None = None  # set: the account works with this client id only
    textdescription: str = ""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"username": self.username, "textdescription": self.textdescription,
                               "roles": [{"rolename": self.rolename}]}
        if self.clientid:
            doc["clientid"] = self.clientid
        return doc


def _acls(acltype: AclType, topics: Iterable[str]) -> list[Acl]:
    return [Acl(acltype, topic) for topic in topics]


def hub_username(hub_id: str) -> str:
    """A hub logs in under the same name as its client id."""
    return hub_client_id(hub_id)


def hub_rolename(hub_id: str) -> str:
    return hub_client_id(hub_id)


def hub_id_of(username: str) -> str | None:
    """The hub id behind a hub's username or role name, None for any other name."""
    if not username.startswith(_HUB_PREFIX):
        return None
    hub_id = username[len(_HUB_PREFIX):]
    return hub_id if is_hub_id(hub_id) else None


def hub_role(hub_id: str) -> Role:
    reads = Topics.hub_filters(hub_id)
    return Role(hub_rolename(hub_id), tuple(
        _acls(AclType.PUBLISH_SEND, Topics.hub_publications(hub_id))
        + _acls(AclType.SUBSCRIBE_LITERAL, reads)
        + _acls(AclType.UNSUBSCRIBE_LITERAL, reads)
        + _acls(AclType.PUBLISH_RECEIVE, reads)
    ), textname=f"Spoke hub {hub_id}")


def cloud_role() -> Role:
    everything = Topics.everything()
    reads = [everything, SHARED_PREFIX + everything, CONTROL_RESPONSE_TOPIC]
    return Role(CLOUD_ROLE, tuple(
        _acls(AclType.PUBLISH_SEND, [*Topics.cloud_publications(), CONTROL_TOPIC])
        + _acls(AclType.SUBSCRIBE_PATTERN, reads)
        + _acls(AclType.UNSUBSCRIBE_PATTERN, reads)
        + _acls(AclType.PUBLISH_RECEIVE, [everything, CONTROL_RESPONSE_TOPIC])
    ), textname="Spoke cloud")


def hub_client(hub_id: str, generation: int) -> Client:
    # The generation is kept on the broker so that the cloud can tell a stale account from a current
    # one (passwords cannot be read back).
    return Client(hub_username(hub_id), hub_rolename(hub_id), clientid=hub_client_id(hub_id),
                  textdescription=f"Spoke hub {hub_id}, credentials generation {generation}")


def cloud_client() -> Client:
    return Client(CLOUD_USERNAME, CLOUD_ROLE, textdescription="Spoke cloud (every cloud process)")


def generation_of(textdescription: str | None) -> int | None:
    found = _GENERATION.search(textdescription or "")
    return int(found.group(1)) if found else None
