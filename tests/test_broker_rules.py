"""The broker rules as data (derived from the wire contract only) and the embedded broker's
dynamic-security model, checked without a broker."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cloud.broker_accounts import HubAccount, write_dynsec_config
from cloud.broker_credentials import cloud_password, ensure_broker_secret, hub_password
from cloud.broker_rules import (
    CLOUD_USERNAME,
    CONTROL_RESPONSE_TOPIC,
    CONTROL_TOPIC,
    AclType,
    cloud_role,
    generation_of,
    hub_client,
    hub_id_of,
    hub_role,
)
from cloud.dynsec import Access, Dynsec, filter_covers, topic_matches
from wire.contract import Topics, hub_client_id


def _topics(role_acls: object, acltype: AclType) -> list[str]:
    return [a.topic for a in role_acls if a.acltype == acltype]  # type: ignore[attr-defined]


def test_rules_come_from_the_wire_contracts_topic_lists() -> None:
    hub = hub_role("hub-1")
    assert _topics(hub.acls, AclType.PUBLISH_SEND) == Topics.hub_publications("hub-1")
    for acltype in (AclType.SUBSCRIBE_LITERAL, AclType.PUBLISH_RECEIVE):
        assert _topics(hub.acls, acltype) == Topics.hub_filters("hub-1")
    assert all(a.allow for a in hub.acls)
    cloud = cloud_role()
    assert _topics(cloud.acls, AclType.PUBLISH_SEND) == [*Topics.cloud_publications(), CONTROL_TOPIC]
    assert _topics(cloud.acls, AclType.PUBLISH_RECEIVE) == [Topics.everything(),
                                                            CONTROL_RESPONSE_TOPIC]
    assert f"$share/+/{Topics.everything()}" in _topics(cloud.acls, AclType.SUBSCRIBE_PATTERN)
    client = hub_client("hub-1", 3)
    assert client.clientid == client.username == hub_client_id("hub-1")
    assert generation_of(client.textdescription) == 3
    assert hub_id_of(client.username) == "hub-1" and hub_id_of(CLOUD_USERNAME) is None


@pytest.mark.parametrize(("acl", "sub", "covered"), [
    ("spoke/v1/#", "spoke/v1/hubs/+/events", True),
    ("spoke/v1/#", "spoke/v1", True),
    ("spoke/v1/#", "spoke/#", False),
    ("spoke/v1/#", "#", False),
    ("$share/+/spoke/v1/#", "$share/workers/spoke/v1/hubs/+/events", True),
    ("spoke/v1/#", "$share/workers/spoke/v1/hubs/+/events", False),
    ("spoke/v1/hubs/+/events", "spoke/v1/hubs/a/events", True),
    ("spoke/v1/hubs/a/events", "spoke/v1/hubs/+/events", False),
    ("#", "anything/at/all", True),
])
def test_subscription_patterns_match_like_mosquitto(acl: str, sub: str, covered: bool) -> None:
    assert filter_covers(acl, sub) is covered


def test_topic_matching() -> None:
    assert topic_matches("spoke/v1/hubs/+/devices/+", "spoke/v1/hubs/a/devices/0011")
    assert not topic_matches("spoke/v1/hubs/+/devices/+", "spoke/v1/hubs/a/devices")
    assert topic_matches("spoke/v1/#", "spoke/v1")
    assert not topic_matches("#", "$CONTROL/dynamic-security/v1")


def test_the_embedded_model_reads_mosquittos_own_file(tmp_path: Path) -> None:
    # The admin client of Mosquitto 2.0.11's test/broker/dynamic-security-init.json (password
    # "admin"), hashed by Mosquitto: the two implementations agree on the password format.
    path = tmp_path / "dynsec.json"
    path.write_text(json.dumps({
        "clients": [{"username": "admin", "salt": "Ezuo4G1TqYtTQDL/", "iterations": 101,
                     "password": "Rko31yHY12ryMoyZTBNIUsCPb5SDa4WmUP3Xe2+V6P+QOSW3Gj6IDmpl6z"
                                 "QsAjutb476zEYdBeTw9tU7WZ1new==",
                     "roles": [{"rolename": "admin"}]}],
        "roles": [{"rolename": "admin", "acls": [
            {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#",
             "allow": True}]}],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True}}))
    model = Dynsec(path)
    assert model.authenticate("admin", "admin", "any-client-id")
    assert not model.authenticate("admin", "wrong", "any-client-id")
    assert model.allows("admin", Access.PUBLISH_SEND, CONTROL_TOPIC)
    assert model.allows("admin", Access.PUBLISH_RECEIVE, "some/topic")  # that file's default
    assert not model.allows("admin", Access.PUBLISH_RECEIVE, "$CONTROL/x")  # never by default


def test_spokes_accounts_in_the_embedded_model(tmp_path: Path) -> None:
    secret = ensure_broker_secret(tmp_path / "secret")
    path = tmp_path / "dynsec.json"
    write_dynsec_config(path, secret, [HubAccount("hub-1", 2)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    model = Dynsec(path)
    password = hub_password(secret, "hub-1", 2)
    user = hub_client_id("hub-1")
    assert model.authenticate(user, password, user)
    assert not model.authenticate(user, password, "another-id")
    assert not model.authenticate(user, hub_password(secret, "hub-1", 1), user)  # old generation
    assert model.authenticate(CLOUD_USERNAME, cloud_password(secret), "spoke-cloud-anything")
    assert model.allows(user, Access.PUBLISH_SEND, Topics.events("hub-1"))
    assert not model.allows(user, Access.PUBLISH_SEND, Topics.events("hub-2"))
    assert not model.allows(user, Access.PUBLISH_SEND, Topics.commands("hub-1"))
    assert model.allows(user, Access.SUBSCRIBE, Topics.commands("hub-1"))
    assert not model.allows(user, Access.SUBSCRIBE, "spoke/v1/hubs/+/commands")
    assert not model.allows(user, Access.PUBLISH_RECEIVE, Topics.commands("hub-2"))
    assert not model.allows("nobody", Access.PUBLISH_SEND, Topics.events("hub-1"))

    response, kick = model.handle(json.dumps({"commands": [
        {"command": "deleteClient", "username": user, "correlationData": "1"},
        {"command": "deleteClient", "username": user, "correlationData": "2"},
        {"command": "fly", "correlationData": "3"}]}).encode())
    answers = json.loads(response)["responses"]
    assert [a.get("error") for a in answers] == [None, "Client not found", "Unknown command"]
    assert [a["correlationData"] for a in answers] == ["1", "2", "3"]
    assert kick == {user}
    assert not Dynsec(path).authenticate(user, password, user)  # saved
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
