"""`spoke group` and `spoke scene` as the `spoke` script, against a real cloud, broker and
simulated hub: each command does what the REST API does, a group command is one multicast, and
`--json` prints the API's objects."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from zigpy.zcl.clusters.general import LevelControl

from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack
from tests.test_cli_lists import SPOKE


async def _spoke(*args: str, env: dict[str, str], ok: bool = True) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        SPOKE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode == 0) is ok, (args, out.decode(), err.decode())
    return out.decode(), err.decode()


def _level(stack: Stack, device: dict[str, Any]) -> int:
    virtual = next(v for v in stack.sim.devices.values() if str(v.ieee) == device["ieee"])
    return int(virtual.cluster(LevelControl.cluster_id, 1).get("current_level"))


async def test_group_and_scene_commands(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": ["bulb", "bulb"]}) as stack:
        bulbs = sorted((d for d in await stack.wait_for_devices(2)), key=lambda d: d["id"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")} | {
            "SPOKE_API_URL": stack.base_url, "SPOKE_API_TOKEN": stack.token, "COLUMNS": "200"}

        out, _ = await _spoke("group", "create", "Porch", "--id", "12", env=env)
        assert "group 12 'Porch'" in out
        for bulb in bulbs:
            out, _ = await _spoke("group", "add", "12", bulb["id"], env=env)
        assert "2 members" in out
        listed = json.loads((await _spoke("group", "list", "--json", env=env))[0])
        assert [g["group_id"] for g in listed] == [12]
        assert {m["device_id"] for m in listed[0]["members"]} == {b["id"] for b in bulbs}
        table, _ = await _spoke("group", "list", env=env)
        assert all(b["id"] in table for b in bulbs) and "Porch" in table

        stack.sim.group_sends.clear()
        out, _ = await _spoke("group", "level", "12", "50", env=env)
        assert "one multicast to 2 members" in out
        await _spoke("group", "color-temp", "12", "2700", env=env)
        assert stack.sim.group_sends == {12: 2}
        assert [_level(stack, b) for b in bulbs] == [127, 127]

        out, _ = await _spoke("scene", "store", "12", "Evening", "--id", "4", env=env)
        assert "scene 4 'Evening' stored in group 12" in out
        await _spoke("group", "level", "12", "100", env=env)
        await _spoke("group", "off", "12", env=env)
        await _spoke("scene", "recall", "12", "4", env=env)
        assert [_level(stack, b) for b in bulbs] == [127, 127]

        async def back_on() -> bool:
            states = [(await stack.api.get(f"/api/v1/devices/{b['id']}")).json() for b in bulbs]
            return all(s["capabilities"]["switch"]["on"] is True for s in states)

        await eventually(back_on, what="the recalled scene's on/off in the cloud")
        scenes = json.loads((await _spoke("scene", "list", "12", "--json", env=env))[0])
        assert scenes == [{"scene_id": 4, "name": "Evening"}]

        await _spoke("group", "rename", "12", "Garden", env=env)
        await _spoke("group", "remove", "12", bulbs[1]["id"], env=env)
        listed = json.loads((await _spoke("group", "list", "--json", env=env))[0])
        assert listed[0]["name"] == "Garden"
        assert [m["device_id"] for m in listed[0]["members"]] == [bulbs[0]["id"]]
        await _spoke("scene", "remove", "12", "4", env=env)
        await _spoke("group", "delete", "12", env=env)
        assert json.loads((await _spoke("group", "list", "--json", env=env))[0]) == []

        # Errors are one line and a non-zero exit.
        _, err = await _spoke("group", "on", "12", env=env, ok=False)
        assert "not found" in err and len(err.strip().splitlines()) == 1
        _, err = await _spoke("group", "level", "12", "150", env=env, ok=False)
        assert err.strip()
