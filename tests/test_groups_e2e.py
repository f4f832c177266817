"""Zigbee groups and scenes end to end: REST -> cloud -> broker -> hub -> zigpy -> the simulated
radio, where a group command is one group-addressed frame that every member carries out, and each
member's new state comes back to the cloud as events."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from zigpy.zcl.clusters.general import LevelControl

from cloud.auth import create_token
from hub.groups import TABLE_BUDGET, GroupError
from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack
from wire.contract import MAX_PAYLOAD_BYTES, GroupInfo, HubRequest, HubStatus

HUB = {"sim_devices": ["bulb", "bulb", "bulb", "plug"]}


async def _bulbs(stack: Stack) -> list[dict[str, Any]]:
    devices = await stack.wait_for_devices(4)
    return sorted((d for d in devices if d["model"] == "SIM-BULB-CT"), key=lambda d: d["id"])


def _virtual(stack: Stack, device: dict[str, Any]) -> Any:
    return next(v for v in stack.sim.devices.values() if str(v.ieee) == device["ieee"])


def _level(stack: Stack, device: dict[str, Any]) -> int:
    cluster = _virtual(stack, device).cluster(LevelControl.cluster_id, 1)
    return int(cluster.get("current_level"))


async def _state(stack: Stack, device_id: str) -> dict[str, Any]:
    response = await stack.api.get(f"/api/v1/devices/{device_id}")
    assert response.status_code == 200, response.text
    return response.json()["capabilities"]  # type: ignore[no-any-return]


async def test_groups_and_scenes_through_the_cloud(tmp_path: Path,
                                                   mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub=HUB) as stack:
        hub_id = stack.hub_settings.hub_id
        groups = f"/api/v1/hubs/{hub_id}/groups"
        bulbs = await _bulbs(stack)
        plug = await stack.device_by_model("SIM-PLUG-1")

        created = await stack.api.post(groups, json={"name": "Kitchen"})
        assert created.status_code == 201, created.text
        gid = created.json()["group_id"]
        assert created.json() == {"group_id": gid, "name": "Kitchen", "members": [], "scenes": []}
        for bulb in bulbs[:2]:
            added = await stack.api.post(f"{groups}/{gid}/members", json={"device_id": bulb["id"]})
            assert added.status_code == 200, added.text
        assert {m["device_id"] for m in added.json()["members"]} == {b["id"] for b in bulbs[:2]}
        assert all(gid in _virtual(stack, b).endpoints[1].groups for b in bulbs[:2])
        # A plug has no Groups cluster: refused as bad input, the group unchanged.
        refused = await stack.api.post(f"{groups}/{gid}/members", json={"device_id": plug["id"]})
        assert refused.status_code == 422, refused.text

        # One multicast, carried out by both members; the third bulb is left alone.
        stack.sim.group_sends.clear()
        outsider = _level(stack, bulbs[2])
        response = await stack.api.post(f"{groups}/{gid}/commands",
                                        json={"command": "set_level", "args": {"level": 40}})
        assert response.status_code == 200, response.text
        assert response.json()["members"] == 2 and response.json()["read_back"] == 2
        assert stack.sim.group_sends == {gid: 1}
        assert [_level(stack, b) for b in bulbs[:2]] == [round(40 * 254 / 100)] * 2
        assert _level(stack, bulbs[2]) == outsider
        followed = await stack.api.get(f"/api/v1/commands/{response.json()['id']}")
        assert followed.status_code == 200, followed.text
        assert followed.json()["status"] == "succeeded"
        assert (followed.json()["capability"], followed.json()["command"]) == ("group",
                                                                                "group_command")

        async def cloud_has(level: float, which: list[dict[str, Any]]) -> bool:
            states = [await _state(stack, b["id"]) for b in which]
            return all(abs(s["level"]["level"] - level) < 1 for s in states)

        await eventually(lambda: cloud_has(40, bulbs[:2]), what="the members' level in the cloud")

        off = await stack.api.post(f"{groups}/{gid}/commands", json={"command": "off"})
        assert off.status_code == 200, off.text
        assert stack.sim.group_sends == {gid: 2}

        async def switched_off() -> bool:
            states = [await _state(stack, b["id"]) for b in bulbs[:2]]
            return all(s["switch"]["on"] is False for s in states)

        await eventually(switched_off, what="the members off in the cloud")

        # Scenes: store at 40 %, change, recall restores each member's stored level.
        await stack.api.post(f"{groups}/{gid}/commands",
                             json={"command": "set_level", "args": {"level": 40}})
        scene = await stack.api.post(f"{groups}/{gid}/scenes", json={"name": "Dinner"})
        assert scene.status_code == 201, scene.text
        sid = scene.json()["scene_id"]
        assert scene.json() == {"scene_id": sid, "name": "Dinner"}
        await stack.api.post(f"{groups}/{gid}/commands",
                             json={"command": "set_level", "args": {"level": 90}})
        await eventually(lambda: cloud_has(90, bulbs[:2]), what="the members at 90 %")
        recalled = await stack.api.post(f"{groups}/{gid}/scenes/{sid}/recall")
        assert recalled.status_code == 200, recalled.text
        assert [_level(stack, b) for b in bulbs[:2]] == [round(40 * 254 / 100)] * 2
        await eventually(lambda: cloud_has(40, bulbs[:2]), what="the recalled level in the cloud")
        listed = await stack.api.get(f"{groups}/{gid}/scenes")
        assert listed.json() == [{"scene_id": sid, "name": "Dinner"}]

        # Rename; remove a member; groups and scene names outlive a hub restart.
        renamed = await stack.api.patch(f"{groups}/{gid}", json={"name": "Cooking"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "Cooking", renamed.text
        removed = await stack.api.delete(f"{groups}/{gid}/members/{bulbs[1]['id']}")
        assert removed.status_code == 200, removed.text
        assert [m["device_id"] for m in removed.json()["members"]] == [bulbs[0]["id"]]
        assert gid not in _virtual(stack, bulbs[1]).endpoints[1].groups

        await stack.stop_hub()
        await stack.start_hub()
        await stack.wait_hub_online()
        again = (await stack.api.get(groups)).json()
        assert again == [{"group_id": gid, "name": "Cooking",
                          "members": [{"device_id": bulbs[0]["id"], "ieee": bulbs[0]["ieee"],
                                       "endpoint": 1}],
                          "scenes": [{"scene_id": sid, "name": "Dinner"}]}]
        # The hub's own table, not only the one the cloud kept while it was away.
        assert stack.hub is not None
        assert [g.model_dump() for g in stack.hub.groups.table() or []] == [
            {"group_id": gid, "name": "Cooking",
             "members": [{"ieee": bulbs[0]["ieee"], "endpoint": 1}],
             "scenes": [{"scene_id": sid, "name": "Dinner"}]}]
        stack.sim.group_sends.clear()
        on = await stack.api.post(f"{groups}/{gid}/commands", json={"command": "on"})
        assert on.status_code == 200 and on.json()["members"] == 1, on.text
        assert stack.sim.group_sends == {gid: 1}

        # Remove the scene, delete the group: the device leaves it too.
        assert (await stack.api.delete(f"{groups}/{gid}/scenes/{sid}")).status_code == 204
        assert (await stack.api.get(f"{groups}/{gid}/scenes")).json() == []
        assert (await stack.api.delete(f"{groups}/{gid}")).status_code == 204
        assert (await stack.api.get(groups)).json() == []
        assert gid not in _virtual(stack, bulbs[0]).endpoints[1].groups
        assert (await stack.api.get(f"{groups}/{gid}")).status_code == 404
        gone = await stack.api.post(f"{groups}/{gid}/commands", json={"command": "on"})
        assert gone.status_code == 404, gone.text


async def test_group_routes_are_scoped_and_checked(tmp_path: Path,
                                                   mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb"]}) as stack:
        hub_id = stack.hub_settings.hub_id
        groups = f"/api/v1/hubs/{hub_id}/groups"
        await stack.wait_for_devices(1)
        registry = stack.services.storage.registry
        _, read = await asyncio.to_thread(create_token, registry, "r", scopes=["read"])
        await asyncio.to_thread(registry.add_account, "other", datetime.now(UTC))
        _, other = await asyncio.to_thread(create_token, registry, "o", account="other",
                                           scopes=["control"])
        created = await stack.api.post(groups, json={"name": "Hall", "group_id": 7})
        assert created.status_code == 201 and created.json()["group_id"] == 7, created.text
        taken = await stack.api.post(groups, json={"name": "Again", "group_id": 7})
        assert taken.status_code == 422, taken.text
        # A name longer than a device's group table holds (16 characters) is the hub's to keep.
        long_name = "The lights along the hallway upstairs"
        renamed = await stack.api.patch(f"{groups}/7", json={"name": long_name})
        assert renamed.status_code == 200 and renamed.json()["name"] == long_name, renamed.text
        (bulb,) = await stack.devices()
        added = await stack.api.post(f"{groups}/7/members", json={"device_id": bulb["id"]})
        assert added.status_code == 200, added.text
        assert _virtual(stack, bulb).endpoints[1].groups == {7: long_name[:16]}

        async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as client:
            as_read = {"Authorization": f"Bearer {read}"}
            as_other = {"Authorization": f"Bearer {other}"}
            assert (await client.get(groups, headers=as_read)).status_code == 200
            for method, path, body in (
                    ("POST", groups, {"name": "x"}),
                    ("PATCH", f"{groups}/7", {"name": "x"}),
                    ("DELETE", f"{groups}/7", None),
                    ("POST", f"{groups}/7/commands", {"command": "on"}),
                    ("POST", f"{groups}/7/scenes", {}),
                    ("POST", f"{groups}/7/scenes/1/recall", None)):
                answer = await client.request(method, path, json=body, headers=as_read)
                assert answer.status_code == 403, (method, path, answer.text)
                answer = await client.request(method, path, json=body, headers=as_other)
                assert answer.status_code == 404, (method, path, answer.text)
            assert (await client.get(groups, headers=as_other)).status_code == 404

        bad = [("POST", groups, {"name": ""}), ("POST", groups, {"name": "x", "group_id": 0}),
               ("POST", f"{groups}/7/commands", {"command": "set_level", "args": {"level": 300}}),
               ("POST", f"{groups}/7/commands", {"command": "dance"}),
               ("POST", f"{groups}/7/members", {"device_id": "nope"})]
        for method, path, body in bad:
            answer = await stack.api.request(method, path, json=body)
            assert answer.status_code in (404, 422), (path, body, answer.text)
        unknown = await stack.api.post(f"{groups}/7/scenes/9/recall")
        assert unknown.status_code == 404, unknown.text

        # A request delivered again is answered from the hub's journal, never run again.
        assert stack.hub is not None
        again = HubRequest(id="once", hub_id=hub_id, action="group_command", group_id=7,
                           command="off", expires_at=datetime.now(UTC) + timedelta(seconds=30))
        stack.sim.group_sends.clear()
        for _ in range(2):
            await stack.hub.management.run(again)
        assert stack.sim.group_sends == {7: 1}

        # A device removed from the network leaves its groups.
        assert (await stack.api.delete(f"/api/v1/devices/{bulb['id']}")).status_code == 204

        async def left() -> bool:
            return (await stack.api.get(f"{groups}/7")).json()["members"] == []

        await eventually(left, what="the removed device out of its group")

        await stack.stop_hub()

        async def offline() -> bool:
            return (await stack.api.get(f"/api/v1/hubs/{hub_id}")).json()["online"] is False

        await eventually(offline, what="the hub offline in the cloud")
        # Its last will says nothing of groups: the cloud still lists the table it last had...
        hall = {"group_id": 7, "name": long_name, "members": [], "scenes": []}
        listed = await stack.api.get(groups)
        assert listed.status_code == 200 and listed.json() == [hall], listed.text
        assert (await stack.api.get(f"{groups}/7")).json() == hall
        assert (await stack.api.get(f"{groups}/7/scenes")).json() == []
        assert (await stack.api.get(f"{groups}/8")).status_code == 404
        # ... while what only the hub can do waits for it.
        for method, path, body in (("POST", f"{groups}/7/commands", {"command": "on"}),
                                   ("POST", groups, {"name": "x"}),
                                   ("PATCH", f"{groups}/7", {"name": "x"}),
                                   ("POST", f"{groups}/7/scenes", {})):
            answer = await stack.api.request(method, path, json=body)
            assert answer.status_code == 409, (method, path, answer.text)


async def test_the_group_table_keeps_within_the_status(tmp_path: Path,
                                                       mosquitto: BrokerAddress) -> None:
    """The table travels in the hub's status, which the cloud refuses whole above 64 KiB: filled
    up to its budget through the hub's manager, every request that would grow it is refused
    (422, saying which limit) and the status the cloud holds still lists every group."""
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb"]}) as stack:
        hub_id = stack.hub_settings.hub_id
        groups = f"/api/v1/hubs/{hub_id}/groups"
        (bulb,) = await stack.wait_for_devices(1)
        assert stack.hub is not None
        hub, manager = stack.hub, stack.hub.groups
        expires = datetime.now(UTC) + timedelta(minutes=5)
        ids = itertools.count()

        async def create(group_id: int, name: str) -> bool:
            await hub.management.run(HubRequest(
                id=f"fill-{next(ids)}", hub_id=hub_id, action="group_create", group_id=group_id,
                name=name, expires_at=expires))
            return group_id in hub.app.groups

        def size() -> int:
            return len(TypeAdapter(list[GroupInfo]).dump_json(manager.table() or []))

        # Groups with the longest names the wire allows, until the hub refuses one...
        group_id = 1
        while await create(group_id, "n" * 128):
            group_id += 1
        assert TABLE_BUDGET - 200 < size() <= TABLE_BUDGET
        # ... then one whose name leaves less room than a member or a scene takes.
        entry = len(GroupInfo(group_id=group_id, name="").model_dump_json()) + 1
        length = TABLE_BUDGET - size() - entry - 10
        if length >= 1:
            assert await create(group_id, "s" * length)
            group_id += 1
        assert TABLE_BUDGET - 40 < size() <= TABLE_BUDGET
        count = len(hub.app.groups)

        # Whatever would grow the table is refused before any device is told.
        refused = [await stack.api.post(groups, json={"name": "One more"}),
                   await stack.api.post(f"{groups}/1/members", json={"device_id": bulb["id"]}),
                   await stack.api.post(f"{groups}/1/scenes", json={"name": "Evening"})]
        for answer in refused:
            assert answer.status_code == 422, answer.text
            assert "group table would take" in answer.text, answer.text
            assert f"limit of {TABLE_BUDGET} bytes" in answer.text, answer.text
        assert len(hub.app.groups) == count
        assert 1 not in _virtual(stack, bulb).endpoints[1].groups
        # The wire's counts are limits too: a group holds at most 512 members.
        members = [{"ieee": f"00:00:00:00:00:00:{i // 256:02x}:{i % 256:02x}", "endpoint": 1}
                   for i in range(513)]
        with pytest.raises(GroupError, match="at most 512 members in a group") as wire_limit:
            manager.fitting([{"group_id": 1, "name": "x", "members": members}])
        assert wire_limit.value.code == "limit"

        # The status stays within the wire's bound, and the cloud took it: every group listed.
        payload = hub.status().to_bytes()
        assert len(payload) <= MAX_PAYLOAD_BYTES
        assert len(payload) - size() < 2 * 1024  # the rest of the status: the budget's headroom
        assert len(HubStatus.from_bytes(payload).groups or []) == count
        listed = await stack.api.get(groups)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == count

        # A status that would outgrow the wire all the same (a reason this long) goes out without
        # its group table: the cloud takes it, and keeps the table it had.
        long_reason = "r" * (20 * 1024)
        hub.publisher.status_source = lambda: hub.status(reason=long_reason)
        hub.publisher.status()

        async def took_it() -> bool:
            return bool((await stack.api.get(f"/api/v1/hubs/{hub_id}")).json()["reason"]
                        == long_reason)

        await eventually(took_it, what="the status without its group table in the cloud")
        assert len((await stack.api.get(groups)).json()) == count
        hub.publisher.status_source = hub.status

        # Room again once a group is gone.
        assert (await stack.api.delete(f"{groups}/1")).status_code == 204
        again = await stack.api.post(groups, json={"name": "One more"})
        assert again.status_code == 201, again.text
