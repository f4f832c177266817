"""End to end through the real stack: simulated Zigbee devices -> zigpy -> hub -> broker -> cloud ->
storage, and REST commands back down to the devices."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from zigpy.zcl.clusters.measurement import TemperatureMeasurement

from tests.common import MqttTestClient, eventually, register_hub
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack
from wire.contract import Topics

DEFAULT_MODELS = {"SIM-TRV-1", "SIM-BULB-CT", "SIM-TH-1", "SIM-PIR-1", "SIM-PLUG-1"}


async def _command(stack: Stack, device_id: str, capability: str, command: str,
                   **args: object) -> httpx.Response:
    return await stack.api.post(f"/api/v1/devices/{device_id}/commands",
                                json={"capability": capability, "command": command, "args": args})


async def test_default_devices_reach_the_cloud(tmp_path: Path, mqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, mqtt_broker) as stack:
        devices = await stack.wait_for_devices(5)
        assert {d["model"] for d in devices} == DEFAULT_MODELS
        by_model = {d["model"]: d for d in devices}
        assert set(by_model["SIM-TRV-1"]["capabilities"]) == {"thermostat"}
        assert {"switch", "level", "color_temperature"} <= set(
            by_model["SIM-BULB-CT"]["capabilities"])
        assert {"temperature", "humidity", "battery"} <= set(by_model["SIM-TH-1"]["capabilities"])
        assert "occupancy" in by_model["SIM-PIR-1"]["capabilities"]
        assert {"switch", "power", "energy"} <= set(by_model["SIM-PLUG-1"]["capabilities"])

        async def battery_known() -> bool:
            sensor = await stack.device_by_model("SIM-TH-1")
            # ZCL battery_percentage_remaining is in half-percent units: raw 174 is 87 %.
            return sensor["capabilities"]["battery"].get("battery") == 87.0

        await eventually(battery_known, what="battery state in the cloud")
        hub = (await stack.api.get(f"/api/v1/hubs/{stack.hub_settings.hub_id}")).json()
        assert hub["online"] is True
        assert hub["events_received"] > 0


async def test_setpoint_round_trip(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        trv = await stack.device_by_model("SIM-TRV-1")
        response = await _command(stack, trv["id"], "thermostat", "set_heating_setpoint",
                                  value=23.5)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "succeeded"
        # The state is what the device reports back after the write, not the request echoed.
        assert body["state"]["thermostat"]["heating_setpoint"] == 23.5
        assert stack.hub is not None
        virtual = stack.sim.devices[_eui(trv["ieee"])]  # type: ignore[union-attr]
        assert virtual.cluster(0x0201).get("occupied_heating_setpoint") == 2350
        command = (await stack.api.get(f"/api/v1/commands/{body['id']}")).json()
        assert command["status"] == "succeeded"

        # The room warms toward the new setpoint and the thermostat reports heating.
        async def heating() -> bool:
            d = (await stack.api.get(f"/api/v1/devices/{trv['id']}")).json()
            return d["capabilities"]["thermostat"].get("running_state") == "heat"

        await eventually(heating, within=10, what="thermostat heating")


async def test_bulb_dims_and_switches(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        bulb = await stack.device_by_model("SIM-BULB-CT")
        response = await _command(stack, bulb["id"], "level", "set_level", level=30)
        assert response.status_code == 200, response.text
        state = response.json()["state"]
        assert state["level"]["level"] == pytest.approx(30, abs=0.5)
        assert state["switch"]["on"] is True

        response = await _command(stack, bulb["id"], "switch", "off")
        assert response.status_code == 200, response.text
        assert response.json()["state"]["switch"]["on"] is False

        response = await _command(stack, bulb["id"], "color_temperature",
                                  "set_color_temperature", kelvin=4000)
        assert response.status_code == 200, response.text
        # 4000 K is 250 mireds on the wire; reading it back gives 1e6/250 = 4000 K.
        assert response.json()["state"]["color_temperature"]["kelvin"] == 4000

        async def stored_off() -> bool:
            d = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()
            return d["capabilities"]["switch"]["on"] is False

        await eventually(stored_off, what="switch state stored in the cloud")


async def test_telemetry_is_stored_and_served(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_speed": 120.0}) as stack:
        await stack.wait_for_devices(5)
        sensor = await stack.device_by_model("SIM-TH-1")
        assert stack.hub is not None and stack.hub.zigbee is not None
        virtual = stack.sim.devices[_eui(sensor["ieee"])]
        virtual.behaviour = None  # hold the room still: only the values set below change
        path = f"/api/v1/devices/{sensor['id']}/telemetry"
        # The sensor's firmware measures these; each is a change beyond the reporting threshold
        # (0.5 °C), sent once the minimum reporting interval (30 s simulated) has passed.
        for raw in (2400, 2500, 2600):
            virtual.set_attribute(1, TemperatureMeasurement.cluster_id, "measured_value", raw)
            await asyncio.sleep(30 / 120 + 0.3)

        async def reported() -> bool:
            r = await stack.api.get(path, params={"capability": "temperature"})
            return [p["value"] for p in r.json()][-3:] == [24.0, 25.0, 26.0]

        await eventually(reported, within=10, what="24, 25, 26 °C stored")
        points = (await stack.api.get(path, params={"capability": "temperature"})).json()
        stamps = [datetime.fromisoformat(p["ts"]) for p in points]
        assert stamps == sorted(stamps), "newest last"
        newest = (await stack.api.get(path, params={"capability": "temperature", "limit": 1})
                  ).json()
        assert newest == points[-1:]
        since = stamps[-2].isoformat()
        recent = (await stack.api.get(path, params={"capability": "temperature", "since": since})
                  ).json()
        assert [p["value"] for p in recent] == [25.0, 26.0]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert (await stack.api.get(path, params={"capability": "temperature",
                                                  "since": future})).json() == []
        bad = await stack.api.get(path, params={"capability": "temperature", "limit": 0})
        assert bad.status_code == 422


async def test_hub_restart_keeps_paired_devices(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        before = {d["ieee"] for d in await stack.wait_for_devices(5)}
        await stack.stop_hub()

        async def offline() -> bool:
            hub = (await stack.api.get(f"/api/v1/hubs/{stack.hub_settings.hub_id}")).json()
            return hub["online"] is False

        await eventually(offline, what="hub offline in the cloud")
        hub = await stack.start_hub()
        # Loaded from zigpy's database: same devices, no new joins.
        assert {str(ieee) for ieee in hub.tracker.devices} == before
        assert hub.controls is not None and hub.controls.network.refused_joins == 0
        await stack.wait_hub_online()
        bulb = await stack.device_by_model("SIM-BULB-CT")
        response = await _command(stack, bulb["id"], "switch", "toggle")
        assert response.status_code == 200, response.text
        assert {d["ieee"] for d in await stack.devices()} == before


async def test_bad_mqtt_input_is_rejected_and_ingest_goes_on(tmp_path: Path,
                                                             mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        hub_id = stack.hub_settings.hub_id
        ingest = stack.services.ingest.metrics
        rejected_before = ingest.snapshot()["rejected_total"]
        # The broker lets a hub speak for itself only: garbage comes from a (buggy) hub of its
        # own, and a garbage command from the cloud's account.
        rogue = "hub-e2e-rogue"
        credentials = await asyncio.to_thread(register_hub, stack.cloud_settings, rogue)
        client = MqttTestClient.as_hub(mosquitto, credentials)
        cloud = MqttTestClient.as_cloud(mosquitto, "spoke-cloud-test-garbage")
        try:
            client.publish_raw(Topics.events(rogue), b"not json {")
            client.publish_raw(Topics.events(rogue), b'{"v": 1, "hub_id": "x", "seq": "a"}')
            client.publish_raw(Topics.events(rogue), (
                b'{"v":1,"hub_id":"%s","seq":999999,"ts":"2026-01-01T00:00:00Z",'
                b'"ieee":"01:02:03:04:05:06:07:08","capability":"switch","attribute":"on",'
                b'"value":true}') % rogue.encode())
            cloud.publish_raw(Topics.commands(hub_id), b"\xff\xfe garbage")
        finally:
            client.close()
            cloud.close()
        await eventually(lambda: ingest.snapshot()["rejected_total"] >= rejected_before + 3,
                         what="three rejections counted")
        assert stack.hub is not None
        await eventually(lambda: stack.hub.executor.counts["rejected"] >= 1,  # type: ignore[union-attr]
                         what="hub rejected the garbage command")
        # Ingest goes on: the next real readings are stored.
        stored = ingest.stored
        await eventually(lambda: ingest.stored > stored, within=15, what="more events stored")
        health = await stack.api.get("/healthz")
        assert health.status_code == 200


async def test_api_rejects_bad_tokens_and_bad_commands(tmp_path: Path,
                                                       mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        async with httpx.AsyncClient(base_url=stack.base_url) as anon:
            assert (await anon.get("/api/v1/devices")).status_code == 401
            wrong = await anon.get("/api/v1/devices", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert (await anon.get("/healthz")).status_code == 200
        trv = await stack.device_by_model("SIM-TRV-1")
        for capability, command, args in [
            ("thermostat", "set_heating_setpoint", {"value": "warm"}),
            ("thermostat", "set_heating_setpoint", {}),
            ("thermostat", "fly", {}),
            ("level", "set_level", {"level": 50}),  # the thermostat has no level
            ("nonsense", "on", {}),
        ]:
            r = await _command(stack, trv["id"], capability, command, **args)
            assert r.status_code == 422, (capability, command, r.text)
        assert (await _command(stack, "no-such-device", "switch", "on")).status_code == 404


async def test_unreachable_device_reports_failure(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        plug = await stack.device_by_model("SIM-PLUG-1")
        assert stack.hub is not None and stack.hub.zigbee is not None
        stack.sim.power_off(_eui(plug["ieee"]))
        response = await _command(stack, plug["id"], "switch", "off")
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["status"] == "failed"
        assert body["error_code"] == "no_route"


async def test_a_command_to_a_hub_known_offline_is_refused_at_once(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, cloud={"command_timeout": 5.0}) as stack:
        await stack.wait_for_devices(5)
        bulb = await stack.device_by_model("SIM-BULB-CT")
        hub_id = stack.hub_settings.hub_id
        await stack.stop_hub()

        async def offline() -> bool:
            return (await stack.api.get(f"/api/v1/hubs/{hub_id}")).json()["online"] is False

        await eventually(offline, what="the cloud knows the hub is offline")
        started = time.monotonic()
        response = await _command(stack, bulb["id"], "switch", "on")
        assert (response.status_code, response.json()) == (
            409, {"detail": f"hub {hub_id!r} is offline"})
        assert time.monotonic() - started < 1.0  # no wait for command_timeout (5 s)
        # Nothing was sent: the hub that comes back finds no command waiting for it.
        await stack.start_hub()
        await stack.wait_for_devices(5)
        await asyncio.sleep(1.0)
        assert stack.hub is not None and stack.hub.executor.counts["received"] == 0


def _eui(ieee: str):  # type: ignore[no-untyped-def]
    import zigpy.types as t

    return t.EUI64.convert(ieee)
