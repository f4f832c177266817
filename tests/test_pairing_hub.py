"""Pairing on the hub: permit-join, joins refused while closed, live interview progress on the
local control channel, reporting configured on the device, rename and remove."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import zigpy.types as t
from zigpy.zcl.clusters.general import LevelControl, OnOff

from hub.control import ControlError, request, stream
from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import running_stack


async def test_join_refused_while_permit_join_is_closed(tmp_path: Path,
                                                        mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        sock = stack.hub.settings.control_socket
        answer = await request(sock, {"op": "join", "source": "bulb"})
        assert answer["ok"] is False
        assert "permit join is closed" in answer["error"]
        network = stack.sim
        assert network.refused_joins == 1
        assert not network.devices
        await asyncio.sleep(0.5)
        assert await stack.devices() == []


async def test_pairing_streams_interview_and_configures_reporting(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        sock = stack.hub.settings.control_socket
        messages: list[dict] = []

        async def pair() -> None:
            async for message in stream(sock, {"op": "pair", "duration": 4}):
                messages.append(message)

        pairing = asyncio.create_task(pair())
        await eventually(lambda: stack.hub.pairing_open, what="permit join open")  # type: ignore[union-attr]
        status = (await request(sock, {"op": "status"}))["status"]
        assert status["pairing_until"] is not None
        joined = await request(sock, {"op": "join", "source": "bulb"})
        assert joined["ok"], joined
        ieee = joined["ieee"]
        await asyncio.wait_for(pairing, 15)  # ends when permit-join closes after 4 s

        steps = [m["event"]["step"] for m in messages if "event" in m
                 and m["event"].get("ieee") in (None, ieee)]
        for step in ("permit_open", "joined", "node_descriptor", "endpoints", "simple_descriptor",
                     "interviewed", "bind", "configure_reporting", "capabilities", "adopted",
                     "permit_closed"):
            assert step in steps, (step, steps)
        assert steps.index("joined") < steps.index("interviewed") < steps.index("adopted")
        final = messages[-1]
        assert final["done"] is True
        assert [d["ieee"] for d in final["devices"]] == [ieee]
        assert {"switch", "level", "color_temperature"} <= set(final["devices"][0]["capabilities"])

        # The hub bound the clusters and configured reporting on the device itself.
        virtual = stack.sim.devices[t.EUI64.convert(ieee)]  # type: ignore[union-attr]
        onoff = virtual.cluster(OnOff.cluster_id)
        level = virtual.cluster(LevelControl.cluster_id)
        assert onoff.bound and level.bound
        assert OnOff.AttributeDefs.on_off.id in onoff.reporting
        assert LevelControl.AttributeDefs.current_level.id in level.reporting

        # Closed again: the next device is refused; the cloud has the paired one.
        assert not stack.hub.pairing_open
        refused = await request(sock, {"op": "join", "source": "plug"})
        assert refused["ok"] is False
        devices = await stack.wait_for_devices(1)
        assert [d["ieee"] for d in devices] == [ieee]

        # The virtual bulb now pushes its changes: a level change on the device reaches the cloud.
        virtual.set_attribute(1, LevelControl.cluster_id, "current_level", 127)

        async def pushed() -> bool:
            d = (await stack.devices())[0]
            return d["capabilities"]["level"]["level"] == pytest.approx(50, abs=0.5)

        await eventually(pushed, what="reported level in the cloud")


async def test_hanging_up_closes_permit_join(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        sock = stack.hub.settings.control_socket
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(json.dumps({"op": "pair", "duration": 200}).encode() + b"\n")
        await writer.drain()
        first = json.loads(await reader.readline())
        assert first["event"]["step"] == "permit_open"
        assert stack.hub.pairing_open
        writer.close()  # what Ctrl-C in `spoke hub pair` does
        await eventually(lambda: not stack.hub.pairing_open, what="permit join closed")  # type: ignore[union-attr]
        assert not stack.sim.permit_open


async def test_rename_and_remove(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        assert stack.hub is not None
        sock = stack.hub.settings.control_socket
        await stack.wait_for_devices(5)
        plug = await stack.device_by_model("SIM-PLUG-1")
        answer = await request(sock, {"op": "rename", "ieee": plug["ieee"], "name": "Kettle"})
        assert answer["ok"], answer

        async def renamed() -> bool:
            return (await stack.device_by_model("SIM-PLUG-1"))["name"] == "Kettle"

        await eventually(renamed, what="name in the cloud")
        answer = await request(sock, {"op": "remove", "ieee": plug["ieee"]})
        assert answer["ok"], answer

        async def gone() -> bool:
            return all(d["ieee"] != plug["ieee"] for d in await stack.devices())

        await eventually(gone, what="device dropped by the cloud")
        network = stack.sim
        assert t.EUI64.convert(plug["ieee"]) not in network.devices  # it left the network
        assert plug["ieee"] not in stack.hub.tracker.devices
        missing = await request(sock, {"op": "remove", "ieee": plug["ieee"]})
        assert missing["ok"] is False and "no device" in missing["error"]


async def test_control_channel_rejects_bad_requests(tmp_path: Path,
                                                   mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        sock = stack.hub.settings.control_socket
        assert (await request(sock, {"op": "fly"}))["error"] == "unknown operation 'fly'"
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"not json\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
        writer.close()
        assert answer["ok"] is False
        unknown = await request(sock, {"op": "join", "source": "toaster"})
        assert unknown["ok"] is False and "unknown device kind" in unknown["error"]
        # The hub is still fine.
        assert (await request(sock, {"op": "status"}))["ok"] is True
    with pytest.raises(ControlError, match="no hub is running"):
        await request(tmp_path / "nowhere" / "control.sock", {"op": "status"})
