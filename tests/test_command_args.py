"""Command arguments: strict JSON types, and the limits a device reports (a thermostat's setpoint
limits, a bulb's physical color temperature range) read by the hub, carried in the device's
description and held to by the cloud and the hub; otherwise the vocabulary's default ranges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zigpy.types as t
from zigpy.zcl.clusters.general import Basic
from zigpy.zcl.clusters.hvac import Thermostat

from device_handlers.registry import handler_for
from simulators.kinds import ClusterSpec
from tests.common import MqttTestClient, eventually
from tests.conftest import BrokerAddress
from tests.sim_devices import SimZigbee
from tests.stack import Stack, running_stack
from wire.capabilities import CAPABILITIES, CommandInvalid, validate_command
from wire.contract import Command, CommandResult, DeviceInfo, Limits, Topics

CORPUS = Path(__file__).parent / "data" / "zha-diagnostics"
IKEA_GU10_WS = CORPUS / "ikea-of-sweden-tradfri-bulb-gu10-ws-400lm.json"  # 250-454 mireds
LEDVANCE_RGB = CORPUS / "ledvance-outdoor-accent-light-rgb.json"  # 1901-6535 mireds (sic)


def setpoint(value: Any, constraints: Any = None, command: str = "set_heating_setpoint") -> Any:
    return validate_command("thermostat", command, {"value": value}, constraints=constraints)


# --- the vocabulary: strict types and default ranges ------------------------------------------


@pytest.mark.parametrize(("value", "why"), [
    ("21.5", "Input should be a JSON number, not a string"),
    (True, "Input should be a JSON number, not a boolean"),
    (None, "Input should be a JSON number, not null"),
    ([21], "Input should be a JSON number, not an array"),
])
def test_a_number_argument_takes_only_a_json_number(value: Any, why: str) -> None:
    with pytest.raises(CommandInvalid, match=f"set_heating_setpoint: value: {why}"):
        setpoint(value)


def test_a_json_integer_is_a_number_and_an_integer_argument_takes_no_fraction() -> None:
    assert setpoint(21) == {"value": 21.0}
    args = {"kelvin": 2700.0}  # a whole number written with a fraction is still that integer
    assert validate_command("color_temperature", "set_color_temperature", args)["kelvin"] == 2700
    with pytest.raises(CommandInvalid, match="kelvin: Input should be a valid integer"):
        validate_command("color_temperature", "set_color_temperature", {"kelvin": 2700.5})
    with pytest.raises(CommandInvalid, match="duration: Input should be a JSON number"):
        validate_command("siren", "on", {"duration": "5"})


def test_without_device_limits_setpoints_are_held_to_5_to_35_degrees() -> None:
    assert setpoint(5) == {"value": 5.0} and setpoint(35) == {"value": 35.0}
    for value in (300, 4.5, 35.5, -10):
        with pytest.raises(CommandInvalid, match="heating_setpoint is 5 to 35 °C unless the "
                                                 "device reports its limits"):
            setpoint(value)
    with pytest.raises(CommandInvalid, match="cooling_setpoint is 5 to 35 °C"):
        setpoint(40, command="set_cooling_setpoint")


def test_device_limits_replace_the_default_range_both_ways() -> None:
    narrow = {"thermostat": {"heating_setpoint": Limits(min=7, max=30)}}
    with pytest.raises(CommandInvalid, match=r"value: 31 °C is out of range: this device accepts "
                                             r"heating_setpoint from 7 to 30 °C"):
        setpoint(31, narrow)
    with pytest.raises(CommandInvalid, match="from 7 to 30 °C"):
        setpoint(6, narrow)
    floor_heating = {"thermostat": {"heating_setpoint": Limits(min=5, max=45)}}
    assert setpoint(40, floor_heating) == {"value": 40.0}
    # Limits of one setpoint say nothing of the other, nor of another endpoint's thermostat.
    with pytest.raises(CommandInvalid, match="cooling_setpoint is 5 to 35"):
        setpoint(40, floor_heating, command="set_cooling_setpoint")
    with pytest.raises(CommandInvalid, match="heating_setpoint is 5 to 35"):
        validate_command("thermostat@2", "set_heating_setpoint", {"value": 40},
                         constraints=floor_heating)


def test_limits_beyond_what_the_argument_can_mean_are_not_used() -> None:
    # A light claiming 153-526 K (its mireds misreported) would refuse every real request.
    absurd = {"color_temperature": {"kelvin": Limits(min=153, max=526)}}
    args = validate_command("color_temperature", "set_color_temperature", {"kelvin": 2700},
                            constraints=absurd)
    assert args["kelvin"] == 2700
    with pytest.raises(CommandInvalid, match="kelvin is 2000 to 6500 K unless the device"):
        validate_command("color_temperature", "set_color_temperature", {"kelvin": 9000},
                         constraints=absurd)


def test_a_description_without_constraints_still_parses_and_bad_limits_do_not() -> None:
    old = (b'{"v":1,"hub_id":"h","ieee":"00:00:00:00:00:00:00:01",'
           b'"capabilities":{"thermostat":{"heating_setpoint":20.0}}}')
    assert DeviceInfo.from_bytes(old).constraints == {}
    new = old[:-1] + b',"constraints":{"thermostat":{"heating_setpoint":{"min":7,"max":30,"step":0.5}}}}'
    assert DeviceInfo.from_bytes(new).constraints == {
        "thermostat": {"heating_setpoint": Limits(min=7, max=30)}}
    with pytest.raises(ValueError, match="min 30 is above max 7"):
        DeviceInfo.from_bytes(new.replace(b'"min":7,"max":30', b'"min":30,"max":7'))


# --- the device handlers read the limits the device reports -----------------------------------


async def test_the_simulated_thermostat_reports_its_setpoint_limits(sim: SimZigbee) -> None:
    paired = await sim.join_from("kind:thermostat")
    handler = handler_for(paired.device)
    await handler.configure()  # reads the limits with the other attributes conversions need
    assert handler.constraints == {"thermostat": {
        "heating_setpoint": Limits(min=5, max=30), "cooling_setpoint": Limits(min=16, max=32)}}


async def test_user_limits_win_over_absolute_ones_and_read_state_reads_them(
        sim: SimZigbee) -> None:
    thermostat = ClusterSpec(cluster=Thermostat, values={
        "local_temperature": 2000, "occupied_heating_setpoint": 2000,
        "abs_min_heat_setpoint_limit": 700, "abs_max_heat_setpoint_limit": 3000,
        "min_heat_setpoint_limit": 1000,  # the installer raised the minimum; no user maximum
    })
    paired = await sim.join({1: ([Basic, thermostat], [])})
    handler = handler_for(paired.device)
    assert handler.constraints == {}  # nothing read yet
    await handler.read_state()
    assert handler.constraints == {"thermostat": {"heating_setpoint": Limits(min=10, max=30)}}


async def test_a_bulb_from_zha_diagnostics_reports_its_color_temperature_range(
        sim: SimZigbee) -> None:
    handler = handler_for((await sim.join_from(f"file:{IKEA_GU10_WS}")).device)
    await handler.configure()
    # 454 mireds = 2203 K, 250 mireds = 4000 K: the ends turn round from mireds to kelvin.
    assert handler.constraints == {"color_temperature": {"kelvin": Limits(min=2203, max=4000)}}
    with pytest.raises(CommandInvalid, match="this device accepts kelvin from 2203 to 4000 K"):
        validate_command("color_temperature", "set_color_temperature", {"kelvin": 6500},
                         constraints=handler.constraints)


async def test_a_device_without_limit_attributes_has_no_constraints(sim: SimZigbee) -> None:
    paired = await sim.join({1: ([Basic, ClusterSpec(cluster=Thermostat, values={
        "local_temperature": 2000, "occupied_heating_setpoint": 2000})], [])})
    handler = handler_for(paired.device)
    await handler.configure()
    await handler.read_state()
    assert "thermostat" in handler.capabilities
    assert handler.constraints == {}


# --- end to end: hub -> description -> cloud -> REST, and the hub's own check -----------------


async def _post(stack: Stack, device_id: str, capability: str, command: str,
                args: dict[str, Any]) -> httpx.Response:
    return await stack.api.post(f"/api/v1/devices/{device_id}/commands",
                                json={"capability": capability, "command": command, "args": args})


async def _described(stack: Stack, model: str) -> dict[str, Any]:
    """The device once its description carries the limits read at its adoption."""
    found: dict[str, Any] = {}

    async def described() -> bool:
        found.update(await stack.device_by_model(model))
        return bool(found["constraints"])

    await eventually(described, what=f"{model}'s limits in the cloud")
    return found


async def test_the_cloud_holds_commands_to_the_limits_the_device_reports(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        trv = await _described(stack, "SIM-TRV-1")
        bulb = await _described(stack, "SIM-BULB-CT")
        assert trv["constraints"] == {"thermostat": {
            "heating_setpoint": {"min": 5.0, "max": 30.0},
            "cooling_setpoint": {"min": 16.0, "max": 32.0}}}
        # 500 and 153 mireds, as the bulb reports its physical range
        assert bulb["constraints"] == {"color_temperature": {"kelvin": {"min": 2000.0,
                                                                        "max": 6536.0}}}
        assert stack.hub is not None
        virtual = stack.sim.devices[t.EUI64.convert(trv["ieee"])]
        received = stack.hub.executor.counts["received"]
        for args, why in [
            ({"value": 32}, "value: 32 °C is out of range: this device accepts heating_setpoint "
                            "from 5 to 30 °C"),
            ({"value": 300}, "this device accepts heating_setpoint from 5 to 30 °C"),
        ]:
            response = await _post(stack, trv["id"], "thermostat", "set_heating_setpoint", args)
            assert (response.status_code, why in response.text) == (422, True), \
                response.text
        for args, why in [({"value": "21.5"}, "not a string"), ({"value": True}, "not a boolean")]:
            response = await _post(stack, trv["id"], "thermostat", "set_heating_setpoint", args)
            assert response.status_code == 422, response.text
            [error] = response.json()["detail"]
            assert error["loc"][-2:] == ["args", "value"]
            assert error["msg"] == f"Input should be a JSON number, {why}"
        response = await _post(stack, bulb["id"], "color_temperature", "set_color_temperature",
                               {"kelvin": 7000})
        assert response.status_code == 422
        assert "accepts kelvin from 2000 to 6536 K" in response.text
        await asyncio.sleep(0.5)
        assert stack.hub.executor.counts["received"] == received  # none of them was sent
        assert virtual.cluster(Thermostat.cluster_id).get("occupied_heating_setpoint") == 2000

        response = await _post(stack, trv["id"], "thermostat", "set_heating_setpoint",
                               {"value": 30})  # the limit itself is in range; an integer is a number
        assert response.status_code == 200, response.text
        assert virtual.cluster(Thermostat.cluster_id).get("occupied_heating_setpoint") == 3000


async def test_the_hub_refuses_out_of_range_values_the_cloud_let_through(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    """A cloud older than the limits (or one whose copy is stale) may send what the device would
    not take: the hub checks against what it reads itself and answers failed, invalid."""
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(5)
        trv = await _described(stack, "SIM-TRV-1")
        hub_id = stack.hub_settings.hub_id
        results: list[CommandResult] = []
        cloud = MqttTestClient.as_cloud(mosquitto, "spoke-cloud-test-limits")
        try:
            assert cloud.subscribe(Topics.results(hub_id), lambda _t, p: results.append(
                CommandResult.model_validate_json(p)))
            command = Command(id="beyond-the-limit", hub_id=hub_id, ieee=trv["ieee"],
                              capability="thermostat", command="set_heating_setpoint",
                              args={"value": 32.0},
                              expires_at=datetime.now(UTC) + timedelta(seconds=10))
            await asyncio.to_thread(cloud.publish, command, Topics.commands(hub_id))
            await eventually(lambda: any(r.id == command.id for r in results),
                             what="the hub's answer")
        finally:
            cloud.close()
        [result] = [r for r in results if r.id == command.id]
        assert (result.status, result.error_code) == ("failed", "invalid")
        assert "this device accepts heating_setpoint from 5 to 30 °C" in (result.error or "")
        virtual = stack.sim.devices[t.EUI64.convert(trv["ieee"])]
        assert virtual.cluster(Thermostat.cluster_id).get("occupied_heating_setpoint") == 2000


async def test_openapi_shows_each_commands_arguments(tmp_path: Path,
                                                     mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, start_hub=False) as stack:
        schema = (await stack.api.get("/openapi.json")).json()
    body = schema["paths"]["/api/v1/devices/{device_id}/commands"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    models = schema["components"]["schemas"]
    variants = [v["$ref"].rsplit("/", 1)[-1] for v in models[ref]["oneOf"]]
    assert len(variants) == sum(len(spec.commands) for spec in CAPABILITIES.values())
    setpoint_model = models["ThermostatSetHeatingSetpointCommand"]
    assert setpoint_model["properties"]["command"]["const"] == "set_heating_setpoint"
    assert setpoint_model["properties"]["capability"]["pattern"] == "^thermostat(@[0-9]+)?$"
    args = models[setpoint_model["properties"]["args"]["$ref"].rsplit("/", 1)[-1]]
    assert args["properties"]["value"]["type"] == "number"
    assert args["required"] == ["value"] and args["additionalProperties"] is False
    siren = models["SirenOnCommand"]["properties"]["args"]
    assert models[siren["$ref"].rsplit("/", 1)[-1]]["properties"]["duration"]["type"] == "integer"
    assert "CommandOutsideVocabulary" not in variants
