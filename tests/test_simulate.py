"""Virtual devices from ZHA diagnostics: building them, pairing them through the sim radio with zigpy
and zha-quirks, the inspect output, and conformance with what ZHA derived (the corpus floor)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import zigpy.types as t
from typer.testing import CliRunner
from zigpy.zcl import foundation
from zigpy.zcl.clusters.closures import WindowCovering
from zigpy.zcl.clusters.general import Basic, OnOff, PowerConfiguration
from zigpy.zcl.clusters.measurement import TemperatureMeasurement
from zigpy.zcl.clusters.security import IasZone

from simulators import diagnostics
from simulators.device import VirtualDevice
from spoke.conformance import check, load_diagnostics, table, zha_entities
from spoke.simulate import Inspection, inspect_files

# A copy of the shared corpus (Apache-2.0, from zigpy/zha's tests; see its README), kept with the
# tests so CI checks the floor wherever the repository is checked out.
CORPUS = Path(__file__).parent / "data" / "zha-diagnostics"
FLOOR = 97.0  # percent of ZHA's entities Spoke must agree with (the bar)

pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"the ZHA diagnostics corpus is not at {CORPUS}")

QUIRKED_IAS = "centralite-3320-l.json"  # CentraLite contact sensor, a v1 quirk
LIGHT = "philips-lct014.json"  # Hue colour bulb, no quirk
IAS_SENSOR = "third-reality-inc-3rds17bz.json"  # contact sensor, plain IAS zone
METERING_PLUG = "tyzb01-zanh6v1o-ts0121.json"  # Tuya plug: electrical measurement + metering
XIAOMI = "lumi-lumi-weather.json"  # quirk whose battery comes from the device's own reports
IKEA_BLIND = "ikea-of-sweden-fyrtur-block-out-roller-blind.json"  # quirk doubling the battery
SAMPLE = (QUIRKED_IAS, LIGHT, IAS_SENSOR, METERING_PLUG, XIAOMI, IKEA_BLIND)


def build(name: str) -> VirtualDevice:
    return diagnostics.build(str(CORPUS / name), ieee=t.EUI64.convert("02:00:00:00:00:00:00:10"),
                             nwk=0x1234)


def values(inspection: Inspection) -> dict[tuple[int, str, str], Any]:
    return {(r.endpoint, r.capability, r.attribute): r.value for r in inspection.readings}


# --- building ------------------------------------------------------------------------------------


def test_a_quirked_device_shows_the_signature_it_has_on_the_air() -> None:
    device = build(QUIRKED_IAS)
    assert sorted(device.endpoints) == [1, 2]
    ep1, ep2 = device.endpoints[1], device.endpoints[2]
    assert (ep1.profile_id, ep1.device_type) == (0x0104, 0x0402)
    # The quirk removes Power Configuration from endpoint 2; the device itself has it.
    assert PowerConfiguration.cluster_id in ep2.in_clusters
    assert ep2.profile_id == 0xC2DF
    assert int(device.node_desc.manufacturer_code) == 0xC2DF
    assert not device.is_mains_powered
    zone = ep1.in_clusters[IasZone.cluster_id]
    assert zone.values[IasZone.AttributeDefs.zone_type.id] == IasZone.ZoneType.Contact_Switch
    temperature = ep1.in_clusters[TemperatureMeasurement.cluster_id]
    assert temperature.values[TemperatureMeasurement.AttributeDefs.measured_value.id] == 2017
    basic = ep1.in_clusters[Basic.cluster_id]
    assert basic.values[Basic.AttributeDefs.model.id] == "3320-L"


@pytest.mark.parametrize("name", [LIGHT, IAS_SENSOR, METERING_PLUG])
def test_signature_and_values_come_from_the_file(name: str) -> None:
    diag = load_diagnostics(CORPUS / name)
    device = build(name)
    for ep_id, ep in diag["signature"]["endpoints"].items():
        virtual = device.endpoints[int(ep_id)]
        assert sorted(virtual.in_clusters) == sorted(int(c, 16) for c in ep["input_clusters"])
        assert sorted(virtual.out_clusters) == sorted(int(c, 16) for c in ep["output_clusters"])
        recorded = diag["cluster_details"][ep_id]["in_clusters"]
        for cluster_id, cluster in virtual.in_clusters.items():
            attributes = recorded.get(f"0x{cluster_id:04x}", {}).get("attributes", {})
            for attrid, value in cluster.values.items():
                shown = str(value) if isinstance(value, t.EUI64) else value  # ZHA's JSON
                assert attributes[f"0x{attrid:04x}"]["value"] == shown


def test_values_a_quirk_converted_are_sent_as_the_device_sent_them() -> None:
    # ZHA recorded 154 (77 %) after IKEA's quirk doubled the old firmware's 77.
    device = build(IKEA_BLIND)
    power = device.endpoints[1].in_clusters[PowerConfiguration.cluster_id]
    assert power.values[PowerConfiguration.AttributeDefs.battery_percentage_remaining.id] == 77


def test_unsupported_attributes_are_answered_as_a_real_device_does() -> None:
    device = build(QUIRKED_IAS)
    device.joined = True
    measured = TemperatureMeasurement.AttributeDefs.measured_value.id
    tolerance = TemperatureMeasurement.AttributeDefs.tolerance.id  # null in the file
    hdr = foundation.ZCLHeader.general(7, foundation.GeneralCommand.Read_Attributes)
    body = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Read_Attributes].schema(
        attribute_ids=[measured, tolerance, 0x4242])
    packet = t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=0x0000), src_ep=1,
        dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=device.nwk), dst_ep=1,
        tsn=7, profile_id=0x0104, cluster_id=TemperatureMeasurement.cluster_id,
        data=t.SerializableBytes(hdr.serialize() + body.serialize()))
    [reply] = device.handle(packet)
    rsp_hdr, rest = foundation.ZCLHeader.deserialize(reply.data.serialize())
    assert rsp_hdr.command_id == foundation.GeneralCommand.Read_Attributes_rsp
    assert rsp_hdr.tsn == 7
    records, _ = foundation.GENERAL_COMMANDS[
        foundation.GeneralCommand.Read_Attributes_rsp].schema.deserialize(rest)
    statuses = {r.attrid: r.status for r in records.status_records}
    assert statuses == {measured: foundation.Status.SUCCESS,
                        tolerance: foundation.Status.UNSUPPORTED_ATTRIBUTE,
                        0x4242: foundation.Status.UNSUPPORTED_ATTRIBUTE}
    [ok] = [r for r in records.status_records if r.attrid == measured]
    assert ok.value.value == 2017


def test_a_file_that_is_no_diagnostics_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(diagnostics.DiagnosticsError):
        build(str(bogus))


# --- pairing through the sim radio -----------------------------------------------------------------


@pytest.fixture(scope="module")
def paired() -> dict[str, Inspection]:
    """The sample paired once through a hub's Zigbee side (zigpy, zha-quirks, handlers)."""
    import asyncio

    inspections = asyncio.run(inspect_files([CORPUS / name for name in SAMPLE]))
    return {i.source.name: i for i in inspections}


def test_every_sample_device_pairs(paired: dict[str, Inspection]) -> None:
    for name, inspection in paired.items():
        diag = load_diagnostics(CORPUS / name)
        assert inspection.error is None, name
        assert inspection.ieee == diag["ieee"]  # the recorded address, when free
        assert (inspection.manufacturer, inspection.model) == (diag["manufacturer"], diag["model"])


def test_quirks_are_applied_and_named_as_zha_names_them(paired: dict[str, Inspection]) -> None:
    assert paired[QUIRKED_IAS].quirk == "zhaquirks.centralite.ias.CentraLiteIASSensor"
    assert paired[XIAOMI].quirk == "zhaquirks.xiaomi.aqara.weather.Weather"
    assert paired[LIGHT].quirk is None


def test_readings_of_the_sample(paired: dict[str, Inspection]) -> None:
    sensor = values(paired[QUIRKED_IAS])
    assert sensor[(1, "temperature", "temperature")] == 20.17
    assert sensor[(1, "contact", "open")] is False
    assert sensor[(1, "battery", "battery")] == 100.0  # the quirk derives it from the voltage
    light = values(paired[LIGHT])
    assert light[(11, "switch", "on")] is False
    assert light[(11, "level", "level")] == 100.0
    assert light[(11, "color_temperature", "kelvin")] == 2732
    plug = values(paired[METERING_PLUG])
    assert plug[(1, "energy", "energy")] == 22.568
    assert plug[(1, "voltage", "voltage")] == 123.0
    assert plug[(1, "switch", "on")] is True
    weather = values(paired[XIAOMI])  # Xiaomi: battery only from the device's own reports
    assert weather[(1, "battery", "battery")] == 59.0
    assert weather[(1, "pressure", "pressure")] == 1009
    blind = values(paired[IKEA_BLIND])
    assert blind[(1, "battery", "battery")] == 77.0  # doubled once, by the quirk on the hub
    assert blind[(1, "window_covering", "position")] == 0
    [cover] = [r for r in paired[IKEA_BLIND].readings if r.capability == "window_covering"]
    assert cover.cluster == WindowCovering.cluster_id


def test_the_sample_agrees_with_zha(paired: dict[str, Inspection]) -> None:
    for name, inspection in paired.items():
        result = check(load_diagnostics(CORPUS / name), inspection.as_json(), name)
        misses = [o.detail for o in result.outcomes if not o.matched]
        assert not misses, (name, misses)


def test_readings_come_from_zigbee_not_from_the_file(paired: dict[str, Inspection]) -> None:
    # On/Off is read from the device: a server cluster the light really has.
    [on] = [r for r in paired[LIGHT].readings if r.capability == "switch"]
    assert on.cluster == OnOff.cluster_id and on.endpoint == 11


# --- the commands ---------------------------------------------------------------------------------


def test_inspect_prints_one_json_object_per_file(tmp_path: Path) -> None:
    from spoke.cli import app

    result = CliRunner().invoke(app, ["simulate", "inspect", str(CORPUS / IAS_SENSOR),
                                      str(CORPUS / METERING_PLUG)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2
    for line in lines:
        assert list(line) == ["ieee", "manufacturer", "model", "quirk", "readings"]
        assert line["readings"]
        for reading in line["readings"]:
            assert list(reading) == ["endpoint", "cluster", "capability", "attribute", "value",
                                     "unit"]
            assert isinstance(reading["cluster"], int)
    plug = lines[1]
    assert plug["model"] == "TS0121"
    assert {"endpoint": 1, "cluster": 1794, "capability": "energy", "attribute": "energy",
            "value": 22.568, "unit": "kWh"} in plug["readings"]


def test_conformance_prints_a_row_per_device_and_the_figure(tmp_path: Path) -> None:
    from spoke.cli import app

    for name in (IAS_SENSOR, LIGHT):
        shutil.copy(CORPUS / name, tmp_path / name)
    result = CliRunner().invoke(app, ["simulate", "conformance", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.strip()]
    assert rows[0].startswith(LIGHT) and rows[1].startswith(IAS_SENSOR)
    assert rows[-1] == "conformance: 3/3 (100.0%)"


def test_conformance_over_the_corpus_stays_above_the_floor() -> None:
    import asyncio
    import time

    files = sorted(CORPUS.glob("*.json"))
    started = time.perf_counter()
    inspections = asyncio.run(inspect_files(files))
    seconds = time.perf_counter() - started
    assert not [(i.source.name, i.error) for i in inspections if i.error]
    results = [check(load_diagnostics(i.source), i.as_json(), i.source.name) for i in inspections]
    last = table(results)[-1]
    match = re.fullmatch(r"conformance: (\d+)/(\d+) \((\d+\.\d)%\)", last)
    assert match, last
    matched, total = int(match[1]), int(match[2])
    assert total == sum(len(zha_entities(load_diagnostics(f))) for f in files)
    assert 100 * matched / total >= FLOOR, "\n".join(table(results))
    assert seconds < 60
