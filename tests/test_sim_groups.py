"""Zigbee groups and scenes on the simulated network, driven by zigpy's own group API: the Groups
cluster configures the devices, a group command is one multicast frame every member carries out,
and the Scenes cluster stores and recalls on/off, level and colour temperature."""

from __future__ import annotations

from pathlib import Path

import zigpy.types as t
from zigpy.zcl.clusters.general import LevelControl, OnOff
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.foundation import Status

from simulators.network import SimNetwork
from tests.sim_devices import SimZigbee, running_sim, values_of


async def test_a_group_command_is_one_multicast_that_every_member_carries_out() -> None:
    async with running_sim() as zigbee:
        bulbs = [await zigbee.join_from("kind:bulb") for _ in range(3)]
        for bulb in bulbs[:2]:
            assert await bulb.device.endpoints[1].add_to_group(0x0010, "Kitchen") == Status.SUCCESS
        await zigbee.settle()
        assert all(0x0010 in b.virtual.endpoints[1].groups for b in bulbs[:2])
        group = zigbee.app.groups[0x0010]
        assert len(group.members) == 2 and group.name == "Kitchen"

        await group.endpoint.on_off.off()
        await group.endpoint.level.move_to_level_with_on_off(level=100, transition_time=0)
        await zigbee.settle()
        assert zigbee.network.group_sends[0x0010] == 2  # one frame per command, not per member
        on_air = [p for p in zigbee.sent if p.dst.addr_mode == t.AddrMode.Group]
        assert [(p.dst.address, p.cluster_id) for p in on_air] == [
            (0x0010, OnOff.cluster_id), (0x0010, LevelControl.cluster_id)]
        for bulb in bulbs[:2]:
            assert values_of(bulb.virtual, OnOff)["on_off"] is True
            assert values_of(bulb.virtual, LevelControl)["current_level"] == 100
        assert values_of(bulbs[2].virtual, LevelControl)["current_level"] != 100  # not a member

        membership = await bulbs[0].device.endpoints[1].groups.get_membership(groups=[])
        assert list(membership[1]) == [0x0010]
        assert await bulbs[0].device.endpoints[1].remove_from_group(0x0010) == Status.SUCCESS
        await group.endpoint.on_off.off()
        await zigbee.settle()
        assert values_of(bulbs[0].virtual, OnOff)["on_off"] is True  # left the group
        assert values_of(bulbs[1].virtual, OnOff)["on_off"] is False


async def test_scenes_store_and_recall_on_off_level_and_colour_temperature() -> None:
    async with running_sim() as zigbee:
        bulbs = [await zigbee.join_from("kind:bulb") for _ in range(2)]
        for bulb in bulbs:
            await bulb.device.endpoints[1].add_to_group(0x0020, "Lounge")
        group = zigbee.app.groups[0x0020]
        await bulbs[0].device.endpoints[1].level.move_to_level(level=40, transition_time=0)
        await bulbs[1].device.endpoints[1].level.move_to_level(level=200, transition_time=0)
        await group.endpoint.light_color.move_to_color_temp(color_temp_mireds=300,
                                                            transition_time=0)
        await group.endpoint.scenes.store(group_id=0x0020, scene_id=3)
        await zigbee.settle()
        await group.endpoint.level.move_to_level(level=10, transition_time=0)
        await group.endpoint.light_color.move_to_color_temp(color_temp_mireds=400,
                                                            transition_time=0)
        await zigbee.settle()
        assert values_of(bulbs[0].virtual, LevelControl)["current_level"] == 10

        await group.endpoint.scenes.recall(group_id=0x0020, scene_id=3)
        await zigbee.settle()
        assert values_of(bulbs[0].virtual, LevelControl)["current_level"] == 40
        assert values_of(bulbs[1].virtual, LevelControl)["current_level"] == 200
        assert values_of(bulbs[1].virtual, Color)["color_temperature"] == 300

        answer = await bulbs[0].device.endpoints[1].scenes.get_scene_membership(group_id=0x0020)
        assert list(answer.scenes) == [3]
        answer = await bulbs[0].device.endpoints[1].scenes.remove(group_id=0x0020, scene_id=3)
        assert answer.status == Status.SUCCESS
        await group.endpoint.scenes.recall(group_id=0x0020, scene_id=3)  # gone on bulb 0 only
        await group.endpoint.level.move_to_level(level=10, transition_time=0)
        await zigbee.settle()
        await group.endpoint.scenes.recall(group_id=0x0020, scene_id=3)
        await zigbee.settle()
        assert values_of(bulbs[0].virtual, LevelControl)["current_level"] == 10
        assert values_of(bulbs[1].virtual, LevelControl)["current_level"] == 200


async def test_groups_and_scenes_are_kept_with_the_device(tmp_path: Path) -> None:
    state = tmp_path / "air.json"
    zigbee = await SimZigbee.start(state_path=state, save_delay=0.05)
    try:
        bulb = await zigbee.join_from("kind:bulb")
        await bulb.device.endpoints[1].add_to_group(0x0030, "Hall")
        await zigbee.app.groups[0x0030].endpoint.scenes.store(group_id=0x0030, scene_id=1)
        await zigbee.settle()
        stored = dict(bulb.virtual.endpoints[1].scenes)
    finally:
        await zigbee.close()
    again = SimNetwork("groups-restored", state_path=state)
    try:
        virtual = again.devices[bulb.virtual.ieee]
        assert virtual.endpoints[1].groups == {0x0030: "Hall"}
        assert virtual.endpoints[1].scenes == stored and stored
    finally:
        again.close()
