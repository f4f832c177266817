"""The wire's group additions: optional fields that old payloads still satisfy, and bounds."""

from __future__ import annotations

import json

import pytest

from wire.contract import GROUP_ACTIONS, HubRequest, HubStatus, WireError

EXPIRES = "2030-01-01T00:00:00Z"


def _request(**fields: object) -> bytes:
    return json.dumps({"v": 1, "id": "r1", "hub_id": "hub-1", "expires_at": EXPIRES,
                       **fields}).encode()


def test_requests_before_groups_read_as_before() -> None:
    request = HubRequest.from_bytes(_request(action="rename", ieee="00:12:4b:00:01:02:03:04",
                                             name="Kettle"))
    assert request.group_id is None and request.command is None and request.args == {}


def test_group_requests_carry_their_fields() -> None:
    request = HubRequest.from_bytes(_request(action="group_command", group_id=5,
                                             command="set_level",
                                             args={"level": 40, "transition": 1.5}))
    assert (request.group_id, request.command, request.args) == (
        5, "set_level", {"level": 40, "transition": 1.5})
    assert request.action in GROUP_ACTIONS
    assert HubRequest.from_bytes(request.to_bytes()) == request


@pytest.mark.parametrize("fields", [
    {"action": "group_dance", "group_id": 5},
    {"action": "group_create", "group_id": 0},
    {"action": "group_create", "group_id": 0xFFF8},
    {"action": "group_add", "group_id": 5, "endpoint": 241},
    {"action": "scene_store", "group_id": 5, "scene_id": 256},
    {"action": "group_command", "group_id": 5, "command": "explode"},
])
def test_out_of_bounds_group_requests_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(WireError):
        HubRequest.from_bytes(_request(**fields))


def test_a_status_says_its_groups_and_older_ones_none() -> None:
    old = HubStatus.from_bytes(b'{"v":1,"hub_id":"hub-1","online":true}')
    assert old.groups is None
    status = HubStatus.from_bytes(json.dumps({
        "v": 1, "hub_id": "hub-1", "online": True,
        "groups": [{"group_id": 3, "name": "Hall",
                    "members": [{"ieee": "00:12:4b:00:01:02:03:04", "endpoint": 1}],
                    "scenes": [{"scene_id": 1, "name": "Night"}], "later": "ignored"}]}).encode())
    assert status.groups is not None
    (group,) = status.groups
    assert (group.group_id, group.members[0].endpoint, group.scenes[0].name) == (3, 1, "Night")
    with pytest.raises(WireError):
        HubStatus.from_bytes(json.dumps({"v": 1, "hub_id": "hub-1", "online": True,
                                         "groups": [{"group_id": 3, "members": [
                                             {"ieee": "nope", "endpoint": 1}]}]}).encode())
