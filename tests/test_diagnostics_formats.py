"""The newer ZHA diagnostics formats (``node_descriptor``/``endpoints``, flat entities): read into
the same virtual device as the older format, paired through the sim radio with zigpy and
zha-quirks, compared with ZHA's entities, and a clear error for a file of neither format."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from typer.testing import CliRunner
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import LevelControl, OnOff, PowerConfiguration
from zigpy.zcl.clusters.security import IasZone

from simulators import diagnostics
from simulators.device import VirtualDevice
from spoke.conformance import check, check_file, load_diagnostics, zha_entities
from spoke.simulate import Inspection, inspect_files
from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import running_stack

DATA = Path(__file__).parent / "data"
OLDER = DATA / "zha-diagnostics"
NEWER = DATA / "zha-diagnostics-newer"
CONTACT_OLD = OLDER / "centralite-3320-l.json"  # the older format ...
CONTACT_V1 = NEWER / "centralite-3320-l-v1.json"  # ... and the same device in the newer one
CLIMATE_V3 = NEWER / "centralite-3310-g-v3.json"  # flat entities, quirk_class "module:Class"
LIGHT_V3 = NEWER / "candeo-c-zb-lc20-dim-v3.json"  # flat entities, unsupported attributes
SMOKE_V3 = NEWER / "bosch-rbsh-sd-zb-eu-v3.json"  # a flat binary sensor, no quirk
HUMIDITY = 0xFC45  # the 3310-G's manufacturer-specific humidity cluster

pytestmark = pytest.mark.skipif(
    not (OLDER.is_dir() and NEWER.is_dir()), reason="the ZHA diagnostics samples are missing")


def build(path: Path | str) -> VirtualDevice:
    return diagnostics.build(str(path), ieee=t.EUI64.convert("02:00:00:00:00:00:00:10"),
                             nwk=0x1234)


def shape(device: VirtualDevice) -> dict[str, Any]:
    """Everything the device shows on the air: descriptor, endpoints, clusters, typed values."""
    return {
        "node_desc": device.node_desc.serialize(),
        "manufacturer_code": device.manufacturer_code,
        "endpoints": {
            ep_id: (ep.profile_id, ep.device_type,
                    {c: (dict(v.values), dict(v.types)) for c, v in ep.in_clusters.items()},
                    {c: (dict(v.values), dict(v.types)) for c, v in ep.out_clusters.items()})
            for ep_id, ep in device.endpoints.items()},
    }


def read_attributes(device: VirtualDevice, endpoint: int, cluster_id: int, attrids: list[int]
                    ) -> dict[int, foundation.ReadAttributeRecord]:
    """A Read Attributes request on the air, as the coordinator sends it; the records by id."""
    device.joined = True
    hdr = foundation.ZCLHeader.general(9, foundation.GeneralCommand.Read_Attributes)
    body = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Read_Attributes].schema(
        attribute_ids=attrids)
    packet = t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=0x0000), src_ep=1,
        dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=device.nwk), dst_ep=endpoint,
        tsn=9, profile_id=0x0104, cluster_id=cluster_id,
        data=t.SerializableBytes(hdr.serialize() + body.serialize()))
    [reply] = device.handle(packet)
    _, rest = foundation.ZCLHeader.deserialize(reply.data.serialize())
    records, _ = foundation.GENERAL_COMMANDS[
        foundation.GeneralCommand.Read_Attributes_rsp].schema.deserialize(rest)
    return {r.attrid: r for r in records.status_records}


# --- reading the formats ---------------------------------------------------------------------------


def test_the_newer_format_builds_the_device_the_older_one_builds() -> None:
    older, newer = build(CONTACT_OLD), build(CONTACT_V1)
    assert shape(newer) == shape(older)
    assert sorted(newer.endpoints) == [1, 2]
    assert newer.endpoints[2].profile_id == 0xC2DF  # the device's own signature, not the quirk's
    assert not newer.is_mains_powered


def test_newest_format_signature_and_node_descriptor() -> None:
    light = build(LIGHT_V3)
    [ep] = light.endpoints.values()
    assert (ep.endpoint_id, ep.profile_id, ep.device_type) == (11, 0x0104, 0x0101)
    assert sorted(ep.in_clusters) == [0x0000, 0x0003, 0x0004, 0x0005, 0x0006, 0x0008, 0x1000]
    assert sorted(ep.out_clusters) == [0x0019]
    assert light.node_desc.logical_type == zdo_t.LogicalType.Router  # written as "Router"
    assert light.is_mains_powered
    assert light.manufacturer_code == 4687
    sensor = build(CLIMATE_V3)
    assert sensor.node_desc.logical_type == zdo_t.LogicalType.EndDevice
    assert not sensor.is_mains_powered


def test_reads_are_answered_with_the_recorded_zcl_types() -> None:
    light = build(LIGHT_V3)
    level = LevelControl.AttributeDefs
    records = read_attributes(light, 11, LevelControl.cluster_id,
                              [level.current_level.id, level.start_up_current_level.id,
                               level.on_level.id, level.on_transition_time.id])
    assert records[level.current_level.id].status == foundation.Status.SUCCESS
    assert records[level.current_level.id].value.value == 254
    assert records[level.start_up_current_level.id].value.type == foundation.DataTypeId.uint8
    assert records[level.start_up_current_level.id].value.value == 129
    # Recorded as "unsupported": the real device answered so, and so does the virtual one.
    assert records[level.on_level.id].status == foundation.Status.UNSUPPORTED_ATTRIBUTE
    assert records[level.on_transition_time.id].status == foundation.Status.UNSUPPORTED_ATTRIBUTE
    [on] = read_attributes(light, 11, OnOff.cluster_id, [OnOff.AttributeDefs.on_off.id]).values()
    assert on.value.type == foundation.DataTypeId.bool_ and on.value.value  # "zcl_type": "bool"
    # A cluster zigpy does not define: the type comes from the file's zcl_type.
    sensor = build(CLIMATE_V3)
    [humidity] = read_attributes(sensor, 1, HUMIDITY, [0x0000]).values()
    assert humidity.status == foundation.Status.SUCCESS
    assert humidity.value.type == foundation.DataTypeId.uint16
    assert humidity.value.value == 5987


def test_an_eui64_recorded_as_bytes_and_an_unsupported_battery_voltage() -> None:
    smoke = build(SMOKE_V3)
    zone = smoke.endpoints[1].in_clusters[IasZone.cluster_id]
    assert zone.values[IasZone.AttributeDefs.cie_addr.id] == t.EUI64.convert(
        "00:15:8d:00:02:32:4f:32")  # [50, 79, ...]: zigpy's little-endian byte order
    power = PowerConfiguration.AttributeDefs
    records = read_attributes(smoke, 1, PowerConfiguration.cluster_id,
                              [power.battery_percentage_remaining.id, power.battery_voltage.id])
    assert records[power.battery_percentage_remaining.id].value.value == 200
    assert records[power.battery_voltage.id].status == foundation.Status.UNSUPPORTED_ATTRIBUTE


def test_home_assistants_download_wrapper_is_read_too(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"home_assistant": {}, "data": json.loads(LIGHT_V3.read_text())}))
    assert shape(build(wrapped)) == shape(build(LIGHT_V3))


# --- malformed files --------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    ({"ieee": "00:11:22:33:44:55:66:77", "model": "x"},
     "it has neither `signature` (the older format) nor `endpoints`"),
    ([1, 2, 3], "not a JSON object"),
    ({"node_descriptor": {}, "endpoints": {"1": {"in_clusters": [{"attributes": []}]}}},
     "endpoints.1.in_clusters[0] has no cluster_id"),
    ({"endpoints": {"1": {"in_clusters": [{"cluster_id": "0x0006", "attributes": [{"x": 1}]}]}}},
     "endpoints.1.in_clusters[0].attributes[0] has no id"),
    ({"endpoints": {"one": {}}}, "endpoints.one is not a number"),
    ({"endpoints": {"1": {"profile_id": 260, "out_clusters": "0x0019"}}},
     "endpoints.1.out_clusters is not a list"),
    ({"signature": {"endpoints": {"1": {"profile_id": "zigbee"}}}}, "malformed ZHA diagnostics"),
])
def test_a_malformed_file_gets_an_error_naming_what_is_missing(
        tmp_path: Path, content: Any, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    with pytest.raises(diagnostics.DiagnosticsError) as caught:
        build(bad)
    assert message in str(caught.value)
    assert str(bad) in str(caught.value)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(diagnostics.DiagnosticsError, match="cannot read ZHA diagnostics"):
        build(bad)


def test_the_commands_report_a_malformed_file_without_a_traceback(tmp_path: Path) -> None:
    from spoke.cli import app

    shutil.copy(LIGHT_V3, tmp_path / LIGHT_V3.name)
    (tmp_path / "notes.json").write_text(json.dumps({"hello": "world"}))
    runner = CliRunner()
    inspected = runner.invoke(app, ["simulate", "inspect", str(tmp_path / "notes.json")])
    assert inspected.exit_code == 1
    [line] = [json.loads(x) for x in inspected.stdout.splitlines() if x.startswith("{")]
    assert "neither `signature`" in line["error"]
    compared = runner.invoke(app, ["simulate", "conformance", str(tmp_path)])
    assert compared.exit_code == 0, compared.output
    assert "Traceback" not in compared.output
    rows = compared.stdout.splitlines()
    assert rows[0].startswith(LIGHT_V3.name) and "1/1" in rows[0]
    assert rows[1].startswith("notes.json") and "ERROR" in rows[1] and "neither" in rows[1]
    assert rows[-1] == "conformance: 1/1 (100.0%)"


def test_check_file_turns_an_unreadable_file_into_a_device_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    result = check_file(bad, {"readings": []})
    assert result.outcomes == [] and result.error is not None and "not a JSON object" in result.error
    # A readable device whose entities are in neither shape.
    diag = json.loads(CONTACT_V1.read_text())
    diag["zha_lib_entities"]["binary_sensor"][0]["info_object"]["cluster_handlers"] = [
        {"endpoint_id": 1, "cluster": {"id": "power"}}]
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(diag))
    result = check_file(odd, {"readings": []})
    assert result.outcomes == []
    assert result.error is not None and "unreadable zha_lib_entities" in result.error


# --- the entities ZHA recorded --------------------------------------------------------------------


def test_flat_entities_are_read_with_their_endpoint_clusters_and_state() -> None:
    light = {e.platform: e for e in zha_entities(load_diagnostics(LIGHT_V3))}
    assert list(light) == ["light"]  # config, diagnostic and button entities are out
    assert light["light"].endpoint == 11
    assert light["light"].clusters == {0x0006, 0x0008}  # its unique_id names no cluster
    assert (light["light"].state["on"], light["light"].state["brightness"]) == (True, 254)
    sensors = {e.device_class: e for e in zha_entities(load_diagnostics(CLIMATE_V3))}
    assert set(sensors) == {"battery", "temperature", "humidity"}
    assert sensors["temperature"].clusters == {0x0402}  # from "IEEE-1-1026"
    assert sensors["temperature"].state["state"] == 21.37  # native_value
    assert sensors["humidity"].clusters == {HUMIDITY} and sensors["humidity"].decimals == 1
    assert sensors["battery"].state["state"] == 92.5 and sensors["battery"].decimals == 0


def test_a_flat_binary_sensor_and_whether_zha_had_its_value(tmp_path: Path) -> None:
    [smoke] = [e for e in zha_entities(load_diagnostics(SMOKE_V3)) if e.platform == "binary_sensor"]
    assert (smoke.device_class, smoke.endpoint, smoke.clusters) == ("smoke", 1, {IasZone.cluster_id})
    assert smoke.state["state"] is False and smoke.recorded  # is_on; zone_status has a value
    # The same file with zone_status unsupported: ZHA's "off" is then not the device's.
    diag = json.loads(SMOKE_V3.read_text())
    [zone] = [c for c in diag["endpoints"]["1"]["in_clusters"] if c["cluster_id"] == "0x0500"]
    for attr in zone["attributes"]:
        if attr["name"] == "zone_status":
            del attr["value"]
            attr["unsupported"] = True
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(diag))
    [unknown] = [e for e in zha_entities(load_diagnostics(edited))
                 if e.platform == "binary_sensor"]
    assert not unknown.recorded


def test_info_object_entities_of_the_newer_format_match_the_older_ones() -> None:
    def key(e: Any) -> tuple[Any, ...]:  # (states differ: the older ZHA rounded to 20.2)
        return (e.platform, e.class_name, e.device_class, e.endpoint, e.clusters)

    older = sorted(map(key, zha_entities(load_diagnostics(CONTACT_OLD))), key=str)
    newer = sorted(map(key, zha_entities(load_diagnostics(CONTACT_V1))), key=str)
    assert newer == older


# --- pairing through the sim radio ----------------------------------------------------------------


@pytest.fixture(scope="module")
def paired() -> dict[str, Inspection]:
    """The newer-format devices and the older file of one of them, paired through one hub
    Zigbee side (zigpy interview, zha-quirks, the hub's adoption, the handlers)."""
    inspections = asyncio.run(inspect_files([CONTACT_OLD, CONTACT_V1, CLIMATE_V3, LIGHT_V3,
                                             SMOKE_V3]))
    return {i.source.name: i for i in inspections}


def readings(inspection: Inspection) -> dict[tuple[int, int, str, str], Any]:
    return {(r.endpoint, r.cluster, r.capability, r.attribute): r.value
            for r in inspection.readings}


def test_each_format_pairs_with_its_quirk(paired: dict[str, Inspection]) -> None:
    for name, inspection in paired.items():
        assert inspection.error is None, (name, inspection.error)
    assert paired[CONTACT_V1.name].quirk == "zhaquirks.centralite.ias.CentraLiteIASSensor"
    assert paired[CLIMATE_V3.name].quirk == "zhaquirks.centralite.cl_3310S.CentraLite3310S"
    assert paired[LIGHT_V3.name].quirk == "zigpy.quirks.v2.CustomDeviceV2"
    assert paired[SMOKE_V3.name].quirk is None
    assert (paired[LIGHT_V3.name].manufacturer, paired[LIGHT_V3.name].model) == (
        "Candeo", "C-ZB-LC20-Dim")
    assert paired[LIGHT_V3.name].ieee == "ab:cd:ef:12:99:61:76:7a"  # the recorded address


def test_capabilities_and_values_from_each_format(paired: dict[str, Inspection]) -> None:
    # The same device recorded in both formats: the same readings.
    assert readings(paired[CONTACT_V1.name]) == readings(paired[CONTACT_OLD.name])
    contact = readings(paired[CONTACT_V1.name])
    assert contact[(1, 0x0402, "temperature", "temperature")] == 20.17
    assert contact[(1, 0x0500, "contact", "open")] is False
    assert contact[(1, 0x0001, "battery", "battery")] == 100.0
    climate = readings(paired[CLIMATE_V3.name])
    assert climate[(1, 0x0402, "temperature", "temperature")] == 21.37
    assert climate[(1, HUMIDITY, "humidity", "humidity")] == 59.87
    assert climate[(1, 0x0001, "battery", "battery")] == 92.5
    assert climate[(1, 0x0001, "battery_voltage", "voltage")] == 2.7
    light = readings(paired[LIGHT_V3.name])
    assert light[(11, 0x0006, "switch", "on")] is True
    assert light[(11, 0x0008, "level", "level")] == 100.0
    smoke = readings(paired[SMOKE_V3.name])
    assert smoke[(1, 0x0500, "smoke", "detected")] is False
    assert smoke[(1, 0x0001, "battery", "battery")] == 100.0
    assert not any(key[2] == "battery_voltage" for key in smoke)  # unsupported by the device


def test_conformance_on_the_newer_formats(paired: dict[str, Inspection]) -> None:
    results = {name: check(load_diagnostics(paired[name].source), paired[name].as_json(), name)
               for name in (CONTACT_V1.name, CLIMATE_V3.name, LIGHT_V3.name, SMOKE_V3.name)}
    contact = results[CONTACT_V1.name]
    assert (contact.matched, len(contact.outcomes)) == (3, 3)
    light = results[LIGHT_V3.name]
    assert (light.matched, len(light.outcomes)) == (1, 1)
    smoke = results[SMOKE_V3.name]
    assert (smoke.matched, len(smoke.outcomes)) == (2, 2)
    climate = {o.expected.device_class: o for o in results[CLIMATE_V3.name].outcomes}
    assert set(climate) == {"battery", "temperature", "humidity"}
    assert climate["temperature"].matched and climate["battery"].matched
    assert climate["humidity"].matched  # 59.87 % from the manufacturer cluster 0xFC45


# --- a hub with --sim-devices, end to end -------------------------------------------------------------


async def test_a_hub_with_newer_format_sim_devices_publishes_their_capabilities(
        tmp_path: Path, mosquitto: BrokerAddress, caplog: pytest.LogCaptureFixture) -> None:
    notes = tmp_path / "notes.json"  # no diagnostics: refused by name, the others still join
    notes.write_text(json.dumps({"hello": "world"}))
    hub = {"sim_devices": [str(notes), str(LIGHT_V3), str(SMOKE_V3)]}
    async with running_stack(tmp_path, mosquitto, hub=hub) as stack:
        await stack.wait_for_devices(2, within=40)

        async def states_arrived() -> bool:
            light = (await stack.device_by_model("C-ZB-LC20-Dim"))["capabilities"]
            smoke = (await stack.device_by_model("RBSH-SD-ZB-EU"))["capabilities"]
            return (light.get("switch", {}).get("on") is True
                    and light.get("level", {}).get("level") == 100.0
                    and smoke.get("smoke", {}).get("detected") is False
                    and smoke.get("battery", {}).get("battery") == 100.0)

        await eventually(states_arrived, within=20, what="the recorded states in the cloud")
        assert (await stack.device_by_model("C-ZB-LC20-Dim"))["manufacturer"] == "Candeo"
        assert len(await stack.devices()) == 2
    [refused] = [r for r in caplog.records if "cannot build a virtual device" in r.getMessage()]
    assert str(notes) in refused.getMessage() and "neither `signature`" in refused.getMessage()
