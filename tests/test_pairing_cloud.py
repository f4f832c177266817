"""Pairing, rename, remove and availability through the cloud's REST API, end to end: REST -> cloud
-> broker -> hub -> zigpy -> simulated radio, and the hub's progress and confirmations back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zigpy.types as t

from hub.control import ControlError
from tests.common import device, eventually
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack

BULB_CAPABILITIES = {"switch", "level", "color_temperature"}


async def _hub(stack: Stack) -> dict[str, Any]:
    response = await stack.api.get(f"/api/v1/hubs/{stack.hub_settings.hub_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _pairing(stack: Stack, after: int) -> dict[str, Any]:
    response = await stack.api.get(f"/api/v1/hubs/{stack.hub_settings.hub_id}/pairing",
                                   params={"after": after})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_pairing_through_the_cloud(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        hub_id = stack.hub_settings.hub_id
        await eventually(lambda: _hub_online(stack), what="hub online in the cloud")
        assert (await _hub(stack))["pairing_open"] is False
        for bad in (0, 255, "soon"):
            response = await stack.api.post(f"/api/v1/hubs/{hub_id}/pairing",
                                            json={"duration": bad})
            assert response.status_code == 422, response.text
        missing = await stack.api.post("/api/v1/hubs/no-such-hub/pairing", json={})
        assert missing.status_code == 404
        assert (await stack.api.get("/api/v1/hubs/no-such-hub/pairing")).status_code == 404

        before = datetime.now(UTC)
        response = await stack.api.post(f"/api/v1/hubs/{hub_id}/pairing", json={"duration": 30})
        assert response.status_code == 202, response.text
        started = response.json()
        assert started["hub_id"] == hub_id and started["request_id"]
        assert 29 <= (datetime.fromisoformat(started["until"]) - before).total_seconds() <= 31

        async def open_in_hub_detail() -> bool:
            return (await _hub(stack))["pairing_open"] is True

        await eventually(open_in_hub_detail, what="pairing open in the hub's status")
        detail = await _hub(stack)
        until = datetime.fromisoformat(detail["pairing_until"])
        assert abs((until - datetime.fromisoformat(started["until"])).total_seconds()) < 2
        assert detail["radio_up"] is True and detail["status"]["pairing_until"]

        ieee = (await stack.hub.dispatch.control({"op": "join", "source": "bulb"}))["ieee"]
        events: list[dict[str, Any]] = []
        cursor = started["cursor"]

        async def adopted() -> bool:
            nonlocal cursor
            page = await _pairing(stack, cursor)
            assert all(e["id"] > cursor for e in page["events"])
            events.extend(page["events"])
            cursor = page["cursor"]
            return any(e["step"] == "adopted" and e["ieee"] == ieee for e in events)

        await eventually(adopted, within=20, what="the bulb adopted (pairing events)")
        ids = [e["id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert events[0]["step"] == "permit_open" and events[0]["until"] is not None
        steps = [e["step"] for e in events if e["ieee"] == ieee]
        for step in ("joined", "node_descriptor", "endpoints", "interviewed",
                     "configure_reporting", "capabilities", "adopted"):
            assert step in steps, (step, steps)
        assert steps.index("joined") < steps.index("interviewed") < steps.index("adopted")
        reporting = [e for e in events if e["step"] == "configure_reporting"]
        assert reporting and all(e["ok"] for e in reporting)
        final = next(e for e in events if e["step"] == "adopted")
        assert BULB_CAPABILITIES <= set(final["capabilities"])
        assert final["model"] == "SIM-BULB-CT"
        progress = await _pairing(stack, 0)
        assert progress["open"] is True and progress["until"] is not None
        assert progress["cursor"] == cursor == progress["events"][-1]["id"]

        bulb = await stack.device_by_model("SIM-BULB-CT")
        assert bulb["ieee"] == ieee and BULB_CAPABILITIES <= set(bulb["capabilities"])

        response = await stack.api.delete(f"/api/v1/hubs/{hub_id}/pairing")
        assert response.status_code == 202, response.text

        async def closed() -> bool:
            return (await _pairing(stack, cursor))["open"] is False

        await eventually(closed, what="pairing closed")
        assert (await _hub(stack))["pairing_until"] is None
        with pytest.raises(ControlError, match="permit join is closed"):
            await stack.hub.dispatch.control({"op": "join", "source": "plug"})

        async def closed_and_refused() -> bool:
            steps = [e["step"] for e in (await _pairing(stack, cursor))["events"]]
            return "permit_closed" in steps and "refused" in steps

        await eventually(closed_and_refused, what="permit_closed and refused events")
        assert [d["ieee"] for d in await stack.devices()] == [ieee]


async def _hub_online(stack: Stack) -> bool:
    response = await stack.api.get(f"/api/v1/hubs/{stack.hub_settings.hub_id}")
    return response.status_code == 200 and response.json()["online"] is True


async def test_rename_remove_and_availability_through_the_cloud(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, cloud={"command_timeout": 2.0},
                             hub={"radio_retry_min": 0.2}) as stack:
        assert stack.hub is not None
        hub_id = stack.hub_settings.hub_id
        await stack.wait_for_devices(5)
        bulb = await stack.device_by_model("SIM-BULB-CT")
        plug = await stack.device_by_model("SIM-PLUG-1")
        assert bulb["available"] is True and bulb["availability_reason"] is None

        # Rename: the answer is the device as the hub described it with its new name.
        response = await stack.api.patch(f"/api/v1/devices/{bulb['id']}", json={"name": "Hall"})
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Hall" and response.json()["id"] == bulb["id"]
        assert (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()["name"] == "Hall"
        assert stack.hub.device_info(bulb["ieee"])["name"] == "Hall"  # type: ignore[index]
        for bad in ({"name": ""}, {"name": "x" * 129}, {}, {"name": "a", "colour": "red"}):
            response = await stack.api.patch(f"/api/v1/devices/{bulb['id']}", json=bad)
            assert response.status_code == 422, (bad, response.text)
        response = await stack.api.patch(f"/api/v1/devices/{hub_id}-0000000000000000",
                                         json={"name": "x"})
        assert response.status_code == 404

        # Remove: the hub makes the device leave and clears its retained description.
        response = await stack.api.delete(f"/api/v1/devices/{plug['id']}")
        assert response.status_code == 204, response.text
        assert plug["id"] not in {d["id"] for d in await stack.devices()}
        assert (await stack.api.get(f"/api/v1/devices/{plug['id']}")).status_code == 404
        assert (await stack.api.delete(f"/api/v1/devices/{plug['id']}")).status_code == 404
        network = stack.sim
        assert t.EUI64.convert(plug["ieee"]) not in network.devices

        # A device the cloud knows but the hub does not: the request goes out, no confirmation.
        # (The broker lets nobody but the hub speak for it, so the ghost is written straight
        # into the cloud's registry.)
        ghost = device(hub_id, "0a:0b:0c:0d:0e:0f:10:11")
        with stack.services.storage.registry.ingest() as tx:
            tx.device_info(ghost)
        ghost_id = f"{hub_id}-0a0b0c0d0e0f1011"
        assert stack.services.storage.registry.get_device(ghost_id) is not None
        response = await stack.api.patch(f"/api/v1/devices/{ghost_id}", json={"name": "x"})
        assert response.status_code == 504, response.text
        assert response.json()["request_id"] and "did not confirm" in response.json()["detail"]

        # The radio goes down: the hub says so in its status and in each device's availability.
        await stack.hub.dispatch.control({"op": "radio_fail", "reason": "unplugged"})

        async def radio_down() -> bool:
            hub, d = await _hub(stack), (await stack.api.get(f"/api/v1/devices/{bulb['id']}"))
            return hub["radio_up"] is False and d.json()["availability_reason"] == "radio down"

        await eventually(radio_down, what="radio down in the cloud")
        assert "unplugged" in (await _hub(stack))["reason"]
        down = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()
        assert down["available"] is False and down["availability_changed_at"] is not None
        await stack.hub.dispatch.control({"op": "radio_recover"})

        async def radio_back() -> bool:
            d = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()
            return (await _hub(stack))["radio_up"] is True and d["available"] is True

        await eventually(radio_back, what="radio back in the cloud")

        # The hub drops off: all its devices read unavailable, "hub offline"; requests get 409.
        await stack.stop_hub()

        async def all_offline() -> bool:
            devices = await stack.devices()
            return all((d["available"], d["availability_reason"]) == (False, "hub offline")
                       for d in devices)

        await eventually(all_offline, what="devices unavailable with the hub offline")
        offline = await stack.api.get(f"/api/v1/devices/{bulb['id']}")
        assert offline.json()["availability_changed_at"] is not None
        detail = await _hub(stack)
        assert detail["online"] is False and detail["reason"] == "hub stopped"
        assert detail["pairing_open"] is False
        expected = {"detail": f"hub {hub_id!r} is offline"}
        for method, path, body in (
            ("POST", f"/api/v1/hubs/{hub_id}/pairing", {"duration": 60}),
            ("DELETE", f"/api/v1/hubs/{hub_id}/pairing", None),
            ("PATCH", f"/api/v1/devices/{bulb['id']}", {"name": "Porch"}),
            ("DELETE", f"/api/v1/devices/{bulb['id']}", None),
            ("POST", f"/api/v1/devices/{bulb['id']}/commands", {"capability": "switch",
                                                                 "command": "on"}),
        ):
            response = await stack.api.request(method, path, json=body)
            assert (response.status_code, response.json()) == (409, expected), (method, path)

        # Back online: the names the hub keeps survive its restart; availability is the hub's again.
        await stack.start_hub()

        async def back() -> bool:
            d = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()
            return d["available"] is True and d["availability_reason"] is None

        await eventually(back, what="devices available after the hub came back")
        assert stack.hub.device_info(bulb["ieee"])["name"] == "Hall"  # type: ignore[union-attr,index]
        assert (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()["name"] == "Hall"
        response = await stack.api.patch(f"/api/v1/devices/{bulb['id']}", json={"name": None})
        assert response.status_code == 200 and response.json()["name"] is None
        assert plug["id"] not in {d["id"] for d in await stack.devices()}
