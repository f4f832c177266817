"""Home Assistant through MQTT discovery on a local broker: a real Mosquitto that requires a login,
a hub running zigpy with the simulated radio, and a client playing Home Assistant. The configs are
checked against the rules of Home Assistant's MQTT integration; commands from Home Assistant reach
the simulated devices, also while the cloud's broker is down."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zigpy.types as t
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.app import Hub
from hub.availability import RADIO_DOWN
from hub.ha_discovery import CommandRefused, Step, device_entities
from hub.ha_groups import group_commands, group_light
from hub.settings import HubSettings
from tests.common import eventually
from tests.conftest import BrokerAddress, _free_port
from tests.ha_support import (
    PREFIX,
    HomeAssistant,
    LocalBroker,
    Mosquitto,
    ha_settings,
    local_broker,
    render,
    render_problems,
    state_variants,
    template_refs,
    validate,
)
from tests.stack import running_stack
from wire.capabilities import CAPABILITIES, split_instance
from wire.contract import (
    DeviceInfo,
    GroupInfo,
    GroupMember,
    HubRequest,
    SceneInfo,
    WireError,
    ieee_to_topic,
)
from wire.homeassistant import GroupCommandTopic, HaTopics

CORPUS = Path(__file__).parent / "data" / "zha-diagnostics"
HUB = "hub-ha"
BASE = f"spoke/{HUB}"
TOPICS = HaTopics(PREFIX, BASE)


def _settings(tmp_path: Path, broker: LocalBroker, **overrides: Any) -> HubSettings:
    """A hub whose cloud broker is unreachable (nothing listens on its port) and whose Home
    Assistant broker is ``broker``."""
    values: dict[str, Any] = {
        "hub_id": HUB, "hub_data_dir": tmp_path / "hub", "radio": "sim",
        "mqtt_host": "127.0.0.1", "mqtt_port": _free_port(), "sim_speed": 60.0, "sim_tick": 0.2,
        "device_info_debounce": 0.2, "command_timeout": 5.0, "control_channel": False,
        **ha_settings(broker), **overrides}
    return HubSettings(**values)


@contextlib.asynccontextmanager
async def _hub(settings: HubSettings) -> AsyncIterator[Hub]:
    hub = Hub(settings)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def _announced(ha: HomeAssistant, hub: Hub) -> dict[str, dict[str, Any]]:
    """Wait until every device of the hub has its configs and state on the broker."""
    def done() -> bool:
        published = set(ha.configs())
        for tracked in hub.tracker.devices.values():
            info = hub.tracker.info(tracked)
            node = f"spoke_{ieee_to_topic(info.ieee)}"
            if not all(TOPICS.config(e.component, node, oid) in published
                       for oid, e in device_entities(info, TOPICS).items()):
                return False
            state = ha.json(TOPICS.device_state(info.ieee))
            if info.capabilities and (state is None or not set(info.capabilities) <= set(state)):
                return False  # the state with a capability just described is on its way
        return True

    await eventually(done, within=20, what="every device announced to Home Assistant")
    return ha.configs()


def _virtual(hub: Hub, ieee: str) -> Any:
    assert hub.controls is not None
    return hub.controls.network.devices[t.EUI64.convert(ieee)]  # type: ignore[attr-defined]


def _by_model(hub: Hub, model: str) -> str:
    return next(i for i, d in hub.tracker.devices.items() if d.device.model == model)


def _metrics(hub: Hub) -> Any:
    """What the hub's /metrics would say, as (name, labels) -> value items."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from hub.metrics import hub_registry

    text = generate_latest(hub_registry(hub)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}.items()


def _with(ha: HomeAssistant, topic: str, state: Any) -> Callable[[str], bytes | None]:
    """What Home Assistant would read on each topic, were ``state`` on ``topic``."""
    payload = json.dumps(state).encode()
    return lambda t: payload if t == topic else ha.payload(t)


@pytest.fixture
def ha_broker(tmp_path: Path) -> Any:
    with local_broker(tmp_path / "ha-broker") as broker:
        yield broker


async def test_discovery_conforms_for_every_device(tmp_path: Path, ha_broker: LocalBroker) -> None:
    """The default devices and every real device of the ZHA corpus: each config follows Home
    Assistant's rules, unique ids are unique, every template reads what the state holds and
    renders, as Home Assistant renders it, to a state its platform takes."""
    ha = HomeAssistant(ha_broker, BASE)
    settings = _settings(tmp_path, ha_broker, sim_devices=["default", "contact", str(CORPUS)])
    try:
        async with _hub(settings) as hub:
            configs = await _announced(ha, hub)
            problems = [p for topic, config in configs.items() for p in validate(topic, config)]
            assert not problems, "\n".join(problems[:30])
            unique_ids = [c["unique_id"] for c in configs.values()]
            assert len(unique_ids) == len(set(unique_ids))
            components = {topic.split("/")[1] for topic in configs}
            assert {"sensor", "binary_sensor", "switch", "light", "climate", "cover",
                    "lock", "fan"} <= components, components
            assert ha.text(TOPICS.bridge_state) == "online"
            hub_config = ha.entity(f"spoke_hub_{HUB}_connection_state")
            assert hub_config["state_topic"] == TOPICS.bridge_state
            hub_ids = hub_config["device"]["identifiers"]
            problems = render_problems(f"{PREFIX}/binary_sensor/x/connection_state/config",
                                       hub_config, ha.payload)
            rendered = 0
            for topic, config in configs.items():
                if config["unique_id"] == hub_config["unique_id"]:
                    continue
                assert config["device"]["via_device"] == hub_ids[0]
                assert config["availability"][0]["topic"] == TOPICS.bridge_state
                assert config["availability_mode"] == "all"
                ieee_hex = config["device"]["identifiers"][0].removeprefix("spoke_")
                state = ha.json(f"{BASE}/{ieee_hex}")
                assert ha.text(f"{BASE}/{ieee_hex}/availability") == "online"
                for instance, attribute in template_refs(config):
                    assert instance in state, (config["unique_id"], instance, state)
                    spec = CAPABILITIES[split_instance(instance)[0]]
                    assert spec.attribute(attribute) is not None, (instance, attribute)
                # Every template rendered as Home Assistant renders it: on what the hub
                # published, and on every other state the device's topic may carry.
                rendered += 1
                problems += render_problems(topic, config, ha.payload)
                device_topic = f"{BASE}/{ieee_hex}"
                for variant in state_variants(state):
                    problems += render_problems(topic, config, _with(ha, device_topic, variant))
                if "light" in config["unique_id"]:
                    light = ha.json(config["state_topic"])
                    assert light["state"] in ("ON", "OFF", None)  # None: not known yet
                    if "color_mode" in light:
                        assert light["color_mode"] in config["supported_color_modes"]
                        assert {"color_temp": "color_temp", "xy": "color", "hs": "color"}.get(
                            light["color_mode"], "state") in light
            assert len({c["device"]["identifiers"][0] for c in configs.values()}) > 100
            assert rendered == len(configs) - 1 > 400  # every device's config, and the hub's
            assert not problems, "\n".join(sorted(set(problems))[:40])
    finally:
        ha.close()


async def test_light_and_thermostat_from_home_assistant(tmp_path: Path,
                                                        ha_broker: LocalBroker) -> None:
    ha = HomeAssistant(ha_broker, BASE)
    try:
        async with _hub(_settings(tmp_path, ha_broker,
                                  sim_devices=["default", "heat_pump"])) as hub:
            await _announced(ha, hub)
            bulb, trv = _by_model(hub, "SIM-BULB-CT"), _by_model(hub, "SIM-TRV-1")
            light = ha.entity(f"spoke_{ieee_to_topic(bulb)}_light")
            assert light["supported_color_modes"] == ["color_temp"]
            virtual_bulb = _virtual(hub, bulb)

            ha.publish(light["command_topic"], json.dumps({"state": "ON", "brightness": 127}))
            await eventually(lambda: ha.json(light["state_topic"]).get("brightness") == 127,
                             what="brightness 127 read back")
            assert virtual_bulb.cluster(0x0008).get("current_level") == 127
            assert virtual_bulb.cluster(0x0006).get("on_off")

            ha.publish(light["command_topic"], json.dumps({"state": "ON", "color_temp": 250}))
            await eventually(lambda: ha.json(light["state_topic"]).get("color_temp") == 250,
                             what="250 mireds read back")
            assert virtual_bulb.cluster(0x0300).get("color_temperature") == 250
            assert ha.json(light["state_topic"])["color_mode"] == "color_temp"

            ha.publish(light["command_topic"], json.dumps({"state": "OFF"}))
            await eventually(lambda: ha.json(light["state_topic"]).get("state") == "OFF",
                             what="the light off")
            assert not virtual_bulb.cluster(0x0006).get("on_off")

            climate = ha.entity(f"spoke_{ieee_to_topic(trv)}_climate")
            virtual_trv = _virtual(hub, trv)
            state_topic = TOPICS.device_state(trv)
            ha.publish(climate["temperature_command_topic"], "22.5")
            await eventually(lambda: ha.json(state_topic)["thermostat"].get("heating_setpoint")
                             == 22.5, what="setpoint 22.5 read back")
            assert virtual_trv.cluster(0x0201).get("occupied_heating_setpoint") == 2250
            ha.publish(climate["mode_command_topic"], "off")
            await eventually(lambda: ha.json(state_topic)["thermostat"].get("mode") == "off",
                             what="thermostat off")
            assert virtual_trv.cluster(0x0201).get("system_mode") == 0
            await eventually(lambda: ha.json(climate["mode_state_topic"]) == {"mode": "off"},
                             what="Home Assistant sees the thermostat off")
            assert render(climate["mode_state_template"],
                          ha.payload(climate["mode_state_topic"]) or b"") == "off"
            # Local commands leave no result for the cloud (it issued none) but their state
            # changes are events in the ledger, on their way to the cloud.
            assert hub.executor.counts["local_succeeded"] == 5
            assert [r.kind for r in hub.store.pending_rows(0, 100_000) if r.kind != "event"] == []
            assert hub.store.last_seq > 0

            # Bad input: logged and dropped, nothing runs, nothing crashes.
            refused = hub.home_assistant.refused  # type: ignore[union-attr]
            bad: list[tuple[str, str | bytes]] = [
                (light["command_topic"], b"{not json"),
                (light["command_topic"], json.dumps({"state": "ON", "brightness": "lots"})),
                (light["command_topic"], b"x" * 10_000),
                (f"{BASE}/{ieee_to_topic(bulb)}/nothing/set", b"ON"),
                (f"{BASE}/0011223344556677/light/set", b"{}"),
                (f"{BASE}/not-an-ieee/light/set", b"{}"),
                (climate["mode_command_topic"], b"warp"),
            ]
            for topic, payload in bad:
                ha.publish(topic, payload)
            await eventually(lambda: hub.home_assistant.refused == refused + 7,  # type: ignore[union-attr]
                             what="seven bad commands refused")
            failed = hub.executor.counts["local_failed"]
            ha.publish(climate["temperature_command_topic"], "99")  # beyond the TRV's limits
            await eventually(lambda: hub.executor.counts["local_failed"] == failed + 1,
                             what="an out-of-range setpoint refused by the executor")
            assert virtual_trv.cluster(0x0201).get("occupied_heating_setpoint") == 2250
            assert hub.executor.counts["local_succeeded"] == 5
            assert _metrics(hub) >= {
                ("spoke_hub_home_assistant_connected", ()): 1,
                ("spoke_hub_local_commands_total", (("outcome", "succeeded"),)): 5,
                ("spoke_hub_local_commands_total", (("outcome", "failed"),)): 1,
                ("spoke_hub_local_commands_total", (("outcome", "refused"),)): refused + 7,
            }.items()

            # A radiator valve heats only (its control sequence says so), though it has a
            # cooling setpoint attribute as nearly every thermostat has.
            assert climate["modes"] == ["off", "heat", "auto"]
            assert "temperature_low_command_topic" not in climate

            # Heating and cooling (a heat pump): Zigbee's auto is Home Assistant's heat_cool, a
            # range from the heating setpoint to the cooling one, each set from its own topic.
            pump = _by_model(hub, "SIM-HP-1")
            climate = ha.entity(f"spoke_{ieee_to_topic(pump)}_climate")
            assert climate["modes"] == ["off", "heat", "cool", "heat_cool"]
            virtual_pump = _virtual(hub, pump)
            state_topic = TOPICS.device_state(pump)
            ha.publish(climate["mode_command_topic"], "heat_cool")
            await eventually(lambda: ha.json(climate["mode_state_topic"]) == {"mode": "heat_cool"},
                             what="Home Assistant sees the heat pump in heat_cool")
            assert virtual_pump.cluster(0x0201).get("system_mode") == 1  # auto
            ha.publish(climate["temperature_low_command_topic"], "19")
            ha.publish(climate["temperature_high_command_topic"], "25.5")
            await eventually(lambda: ha.json(state_topic)["thermostat"].get("cooling_setpoint")
                             == 25.5, what="the cooling setpoint read back")
            assert virtual_pump.cluster(0x0201).get("occupied_heating_setpoint") == 1900
            assert virtual_pump.cluster(0x0201).get("occupied_cooling_setpoint") == 2550
            state = ha.payload(state_topic) or b""
            assert [render(climate[f"{key}_template"], state) for key in (
                "temperature_low_state", "temperature_high_state", "temperature_state")] == [
                "19.0", "25.5", "None"]  # no single target: Home Assistant shows the range
    finally:
        ha.close()


async def test_home_assistant_broker_may_come_late_and_never_sees_the_password(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The hub starts (devices adopted) while Home Assistant's broker is down, and announces them
    once it is up; its login never appears in the hub's logs."""
    caplog.set_level(logging.DEBUG)
    with local_broker(tmp_path / "ha-broker") as broker:
        port = broker.port
        password = broker.users["spoke-hub"]
        late = Mosquitto(tmp_path / "late-broker", (tmp_path / "ha-broker" / "mosquitto.conf")
                         .read_text(), port)
    settings = _settings(tmp_path, broker)
    async with _hub(settings) as hub:
        assert hub.tracker.devices and hub.home_assistant is not None
        assert not hub.home_assistant.connected.is_set()
        late.start()
        try:
            ha = HomeAssistant(broker, BASE)
            try:
                await _announced(ha, hub)
            finally:
                ha.close()
        finally:
            late.stop()
    assert password not in caplog.text
    assert password not in repr(settings) and password not in str(settings.model_dump())


async def test_home_assistant_broker_over_tls(tmp_path: Path, pki: Any) -> None:
    """TLS to Home Assistant's broker as to the cloud's: its CA trusted, its name verified."""
    with local_broker(tmp_path / "ha-broker", pki) as broker:
        assert broker.tls_port is not None
        ha = HomeAssistant(broker, BASE)
        try:
            settings = _settings(tmp_path, broker, ha_port=broker.tls_port, ha_tls_ca=pki.ca,
                                 ha_host="localhost", sim_devices=["bulb"])
            async with _hub(settings) as hub:
                await _announced(ha, hub)
            # A CA that did not sign the broker's certificate: no connection.
            wrong = _settings(tmp_path / "wrong", broker, ha_port=broker.tls_port,
                              ha_tls_ca=pki.client_cert, sim_devices=["bulb"])
            async with _hub(wrong) as hub:
                bridge = hub.home_assistant
                assert bridge is not None
                await eventually(lambda: bridge.unreachable, what="the handshake refused")
                assert not bridge.connected.is_set()
        finally:
            ha.close()


async def test_retained_command_is_never_replayed(tmp_path: Path, ha_broker: LocalBroker) -> None:
    ha = HomeAssistant(ha_broker, BASE)
    settings = _settings(tmp_path, ha_broker)
    try:
        async with _hub(settings) as hub:
            await _announced(ha, hub)
            plug = _by_model(hub, "SIM-PLUG-1")
            switch = ha.entity(f"spoke_{ieee_to_topic(plug)}_switch")
        # A stale command someone left retained on the broker while the hub was away.
        ha.publish(switch["command_topic"], "OFF", retain=True)
        # Configs left over from a device removed while the hub was away, this hub's and
        # another hub's: only this hub's is cleared.
        leftover = dict(switch, unique_id="spoke_0011223344556677_switch")
        ours = TOPICS.config("switch", "spoke_0011223344556677", "switch")
        theirs = TOPICS.config("switch", "spoke_0011223344556688", "switch")
        ha.publish(ours, json.dumps(leftover), retain=True)
        other = dict(leftover, device={**switch["device"], "via_device": "spoke_hub_other"})
        ha.publish(theirs, json.dumps(other), retain=True)
        async with _hub(settings) as hub:
            await _announced(ha, hub)
            bridge = hub.home_assistant
            assert bridge is not None
            await eventually(lambda: bridge.refused >= 1, what="the retained command refused")
            await eventually(lambda: ha.retained.get(ours) == b"", what="the leftover cleared")
            assert ha.json(theirs)["device"]["via_device"] == "spoke_hub_other"
            assert _virtual(hub, plug).cluster(0x0006).get("on_off")
            assert hub.executor.counts["local_succeeded"] == 0
            ha.publish(switch["command_topic"], "", retain=True)  # clear it
            ha.publish(switch["command_topic"], "OFF")  # a live one runs
            await eventually(lambda: not _virtual(hub, plug).cluster(0x0006).get("on_off"),
                             what="the plug off")
    finally:
        ha.close()


async def test_birth_rename_and_removal(tmp_path: Path, ha_broker: LocalBroker) -> None:
    ha = HomeAssistant(ha_broker, BASE)
    try:
        async with _hub(_settings(tmp_path, ha_broker)) as hub:
            configs = await _announced(ha, hub)
            # Home Assistant restarted: its birth message brings every config again.
            before = ha.config_messages
            ha.publish(f"{PREFIX}/status", "online")
            await eventually(lambda: ha.config_messages >= before + len(configs),
                             what="discovery republished after the birth message")

            sensor = _by_model(hub, "SIM-TH-1")
            hub.management.rename(sensor, "Kitchen")
            temperature = f"spoke_{ieee_to_topic(sensor)}_temperature"
            await eventually(lambda: ha.entity(temperature)["device"]["name"] == "Kitchen",
                             what="the new name in the config")

            # The radio went down: every device unavailable to Home Assistant, then back. (The
            # next frame from a device makes it available again: look at what was published.)
            hub.availability.all_unavailable(RADIO_DOWN)
            await eventually(lambda: ha.seen(TOPICS.device_availability(sensor), b"offline"),
                             what="the device offline in Home Assistant")
            hub.availability.restore_after(RADIO_DOWN)
            await eventually(lambda: ha.text(TOPICS.device_availability(sensor)) == "online",
                             what="the device online again")

            # A capability gone (a new quirk, a re-interview): its entity goes too.
            info = hub.tracker.info(hub.tracker.devices[sensor])
            humidity = TOPICS.config("sensor", f"spoke_{ieee_to_topic(sensor)}", "humidity")
            assert ha.json(humidity) is not None
            hub.publisher.device(info.model_copy(update={"capabilities": {
                k: v for k, v in info.capabilities.items() if k != "humidity"}}))
            await eventually(lambda: ha.retained.get(humidity) == b"", what="humidity removed")
            hub.tracker.publish_info(sensor)
            await eventually(lambda: bool(ha.retained.get(humidity)), what="humidity back")

            ours = [topic for topic in configs if f"/spoke_{ieee_to_topic(sensor)}/" in topic]
            assert len(ours) >= 3  # temperature, humidity, battery
            await hub.management.remove(sensor)
            await eventually(lambda: all(ha.retained.get(topic) == b"" for topic in ours),
                             what="the removed device's configs emptied")
            await eventually(lambda: ha.retained.get(TOPICS.device_state(sensor)) == b"",
                             what="the removed device's state emptied")
        # A Home Assistant that connects later finds none of them retained.
        late = HomeAssistant(ha_broker, BASE)
        try:
            await asyncio.sleep(0.3)
            assert not [t for t in late.configs() if t in ours]
            assert late.text(TOPICS.bridge_state) == "offline"  # the hub stopped
        finally:
            late.close()
    finally:
        ha.close()


async def test_local_command_while_the_cloud_broker_is_down(tmp_path: Path, pki: Any) -> None:
    """Two brokers: the cloud's stops; Home Assistant still switches the bulb through the hub, and
    the change reaches the cloud through the outbox once its broker is back."""
    from bench.rig import render_mosquitto_conf
    from tests.conftest import broker_files

    port, tls_port = _free_port(), _free_port()
    secret_file, dynsec_file = broker_files(tmp_path / "cloud-broker")
    cloud_broker = Mosquitto(tmp_path / "cloud-mosquitto", render_mosquitto_conf(
        port, tmp_path / "cloud-mosquitto" / "data", dynsec_file=dynsec_file, tls_port=tls_port,
        pki=pki), port)
    cloud_broker.start()
    address = BrokerAddress("mosquitto", "127.0.0.1", port, secret_file, tls_port, pki)
    try:
        with local_broker(tmp_path / "ha-broker") as ha_broker:
            ha = HomeAssistant(ha_broker, BASE)
            try:
                async with running_stack(tmp_path, address, hub_id=HUB,
                                         hub=ha_settings(ha_broker)) as stack:
                    await stack.wait_for_devices(5)
                    hub = stack.hub
                    assert hub is not None
                    await _announced(ha, hub)
                    bulb = await stack.device_by_model("SIM-BULB-CT")
                    light = ha.entity(f"spoke_{ieee_to_topic(bulb['ieee'])}_light")
                    assert bulb["capabilities"]["switch"]["on"] is True

                    cloud_broker.stop()
                    await eventually(lambda: not hub.link.connected.is_set(),
                                     what="the hub's cloud link down")
                    ha.publish(light["command_topic"], json.dumps({"state": "OFF"}))
                    await eventually(lambda: not _virtual(hub, bulb["ieee"]).cluster(6).get(
                        "on_off"), what="the bulb off, from Home Assistant")
                    await eventually(lambda: ha.json(light["state_topic"])["state"] == "OFF",
                                     what="Home Assistant sees it off")
                    assert hub.store.pending > 0  # the change waits in the outbox

                    cloud_broker.start()

                    async def off_in_the_cloud() -> bool:
                        d = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()
                        return d["capabilities"]["switch"]["on"] is False

                    await eventually(off_in_the_cloud, within=30, what="the cloud sees it off")
            finally:
                ha.close()
    finally:
        cloud_broker.stop()


# ---------------------------------------------------------------------- payloads, without a broker
def _info(capabilities: dict[str, dict[str, Any]], **constraints: Any) -> DeviceInfo:
    return DeviceInfo(hub_id=HUB, ieee="00:11:22:33:44:55:66:77", manufacturer="M", model="X",
                      capabilities=capabilities, constraints=constraints)


def test_commands_translate_to_the_vocabulary() -> None:
    info = _info({"switch": {"on": True}, "level": {"level": 50.0},
                  "color_temperature": {"kelvin": 4000}, "color": {"x": 0.3, "y": 0.3},
                  "switch@2": {"on": False}, "window_covering": {"position": 10.0},
                  "lock": {"locked": True}, "fan": {"mode": "low"}},
                 color_temperature={"kelvin": {"min": 2200, "max": 4000}})
    entities = device_entities(info, TOPICS)
    assert set(entities) == {"light", "switch_2", "cover", "lock", "fan"}
    light = entities["light"]
    assert light.config["supported_color_modes"] == ["xy", "color_temp"]
    assert light.state is not None and light.state(info.capabilities) == {
        "state": "ON", "brightness": 127, "color_temp": 250, "color": {"x": 0.3, "y": 0.3},
        "color_mode": "xy"}
    # 2200 K is 454.5 mireds: rounded as the state rounds it (a bulb at 2200 K reads 455).
    assert (light.config["min_mireds"], light.config["max_mireds"]) == (250, 455)
    warmest = light.state({**info.capabilities, "color_temperature": {"kelvin": 2200}})
    assert warmest is not None and warmest["color_temp"] == 455
    assert light.commands(None, b'{"state": "ON", "brightness": 254, "transition": 2}') == [
        Step("level", "set_level", {"level": 100.0, "transition": 2.0})]
    # 1e6 / 200 mireds is 5000 K, beyond this bulb's 4000 K: held to its range.
    assert light.commands(None, b'{"color_temp": 200}') == [
        Step("switch", "on"), Step("color_temperature", "set_color_temperature", {"kelvin": 4000})]
    assert light.commands(None, b'{"state": "ON", "color_temp": 300}', info.capabilities) == [
        Step("color_temperature", "set_color_temperature", {"kelvin": 3333})]  # on already
    assert light.commands(None, b'{"color": {"h": 120, "s": 50}}')[1] == Step(
        "color", "set_hue_saturation", {"hue": 120.0, "saturation": 50.0})
    assert entities["switch_2"].commands(None, b"OFF") == [Step("switch@2", "off")]
    assert entities["cover"].commands("position", b"40") == [
        Step("window_covering", "set_position", {"position": 40.0})]
    assert entities["lock"].commands(None, b"UNLOCK") == [Step("lock", "unlock")]
    assert entities["fan"].commands("preset_mode", b"high") == [
        Step("fan", "set_mode", {"mode": "high"})]
    for entity, field, payload in [
        (light, None, b"[1]"), (light, None, b'{"state": "BLINK"}'),
        (light, None, b'{"brightness": 300}'), (light, None, b'{"flash": "long"}'),
        (light, None, b'{"color": {"r": 1}}'), (light, None, b"\xff"),
        (entities["cover"], "position", b"NaN"), (entities["cover"], None, b"UP"),
        (entities["fan"], "preset_mode", b"turbo"), (entities["lock"], "x", b"LOCK"),
    ]:
        with pytest.raises(CommandRefused):
            entity.commands(field, payload)


@pytest.mark.parametrize("setpoints", [{"heating_setpoint": 20.0},
                                       {"cooling_setpoint": 26.0},
                                       {"heating_setpoint": 20.0, "cooling_setpoint": 26.0}])
def test_a_thermostat_mode_is_sent_only_as_one_home_assistant_shows(setpoints: dict[str, Any]
                                                                    ) -> None:
    """Home Assistant logs an error for a mode outside the entity's modes and has no unknown
    one: the mode's topic carries a mode of the list, or nothing."""
    climate = device_entities(_info({"thermostat": setpoints}), TOPICS)["climate"]
    assert climate.state is not None
    modes = climate.config["modes"]
    shown = set()
    spec = CAPABILITIES["thermostat"].attribute("mode")
    assert spec is not None and spec.values
    for mode in [None, *spec.values]:
        state = climate.state({"thermostat": {**setpoints, "mode": mode}})
        if state is not None:
            out = render(climate.config["mode_state_template"], json.dumps(state).encode())
            assert out in modes, (mode, out)
            shown.add(out)
    assert climate.state({"thermostat": setpoints}) is None  # not known yet
    assert shown == set(modes)  # each mode it offers, it also shows


_FUZZ_INFO = _info({"switch": {"on": True}, "level": {"level": 50.0},
                    "color_temperature": {"kelvin": 4000}, "color": {"hue": 10.0,
                                                                     "saturation": 50.0},
                    "thermostat": {"heating_setpoint": 20.0, "cooling_setpoint": 26.0,
                                   "mode": "heat"},
                    "window_covering": {"position": 10.0}, "lock": {"locked": True},
                    "fan": {"mode": "low"}, "siren": {"active": False}})
_FUZZ_ENTITIES = list(device_entities(_FUZZ_INFO, TOPICS).values())
_JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers()
                     | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["state", "brightness", "color_temp",
                                                        "color", "x", "y", "h", "s",
                                                        "transition"]), inner, max_size=4),
                     max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(entity=st.sampled_from(_FUZZ_ENTITIES),
       field=st.sampled_from([None, "temperature", "temperature_low", "temperature_high", "mode",
                              "position", "percentage", "preset_mode", "x"]),
       payload=st.binary(max_size=64) | _JSON.map(lambda v: json.dumps(v).encode()))
def test_any_payload_is_commands_or_a_clear_refusal(entity: Any, field: str | None,
                                                    payload: bytes) -> None:
    """Whatever arrives on a command topic becomes capability commands the vocabulary accepts
    for the device, or a CommandRefused; nothing else escapes."""
    from wire.capabilities import CommandInvalid, validate_command

    try:
        steps = entity.commands(field, payload, _FUZZ_INFO.capabilities)
    except CommandRefused as exc:
        assert str(exc)
        return
    assert steps
    for step in steps:
        assert step.instance in _FUZZ_INFO.capabilities
        try:
            validate_command(step.instance, step.command, dict(step.args),
                             supported=set(_FUZZ_INFO.capabilities))
        except CommandInvalid as exc:  # a value outside the vocabulary's range: the hub says so
            assert "invalid arguments" in str(exc), exc


_GROUP = GroupInfo(group_id=5, name="Kitchen",
                   members=[GroupMember(ieee=_FUZZ_INFO.ieee, endpoint=1)],
                   scenes=[SceneInfo(scene_id=3, name="Dinner")])
_GROUP_LIGHT = group_light(_GROUP, {_FUZZ_INFO.ieee: _FUZZ_INFO})


@settings(max_examples=300, deadline=None)
@given(light=st.sampled_from([_GROUP_LIGHT, None]), on=st.sampled_from([True, False, None]),
       payload=st.binary(max_size=64) | _JSON.map(lambda v: json.dumps(v).encode())
       | st.integers(-2, 300).map(lambda n: json.dumps({"scene_recall": n}).encode()))
def test_any_group_payload_is_requests_or_a_clear_refusal(light: Any, on: bool | None,
                                                          payload: bytes) -> None:
    """Whatever arrives on a group's command topic becomes group requests the hub's group
    manager takes (a scene of the group, a group command the vocabulary accepts), or a
    CommandRefused; nothing else escapes."""
    from hub.groups import GROUP_COMMANDS
    from wire.capabilities import CommandInvalid, validate_command

    try:
        steps = group_commands(light, payload, on, {3})
    except CommandRefused as exc:
        assert str(exc)
        return
    assert steps
    for step in steps:
        request = HubRequest(id="x", hub_id=HUB, action=step.action, group_id=5,
                             expires_at=datetime.now(UTC), **step.fields)
        if step.action == "scene_recall":
            assert request.scene_id == 3 and len(steps) == 1
            continue
        assert step.action == "group_command" and light is not None
        capability, command = GROUP_COMMANDS[str(request.command)]
        try:
            validate_command(capability, command, dict(request.args))
        except CommandInvalid as exc:  # a value outside the vocabulary's range: the hub says so
            assert "invalid arguments" in str(exc), exc


def test_group_topics() -> None:
    assert TOPICS.group_state(5) == f"{BASE}/group/5"
    assert TOPICS.parse_command(TOPICS.group_command(0xFFF7)) == GroupCommandTopic(0xFFF7)
    for bad in ("group/0/set", "group/65528/set", "group/05/set", "group/x/set",
                "group/5/set/state", "group/5/get"):
        with pytest.raises(WireError):
            TOPICS.parse_command(f"{BASE}/{bad}")


def test_settings_from_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    toml = tmp_path / "spoke.toml"
    toml.write_text('[hub]\nhub_id = "attic"\nha_host = "ha.lan"\nha_discovery_prefix = "hass"\n')
    monkeypatch.setenv("SPOKE_CONFIG", str(toml))
    monkeypatch.setenv("SPOKE_HA_PORT", "8883")
    monkeypatch.setenv("SPOKE_HA_USERNAME", "spoke")
    monkeypatch.setenv("SPOKE_HA_PASSWORD", "s3cret-pass")
    settings = HubSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ha_enabled and (settings.ha_host, settings.ha_port) == ("ha.lan", 8883)
    assert settings.ha_discovery_prefix == "hass" and settings.ha_base == "spoke/attic"
    assert "s3cret-pass" not in repr(settings)
    monkeypatch.delenv("SPOKE_CONFIG")
    assert not HubSettings(_env_file=None).ha_enabled  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        HubSettings(_env_file=None, ha_base_topic="spoke/#")  # type: ignore[call-arg]


async def test_groups_and_scenes_in_home_assistant(tmp_path: Path,
                                                   ha_broker: LocalBroker) -> None:
    """A group of two bulbs is one light in Home Assistant: each command from it is one
    group-addressed frame both bulbs carry out, its state their aggregate; a scene stored to the
    group is a scene entity whose activation recalls it; the configs follow the group table."""
    ha = HomeAssistant(ha_broker, BASE)
    # A group's config left from a group deleted while the hub was away: cleared when it connects.
    leftover = TOPICS.config("light", f"spoke_hub_{HUB}_group_9", "light")
    ha.publish(leftover, json.dumps({"unique_id": f"spoke_hub_{HUB}_group_9_light",
                                     "device": {"identifiers": [f"spoke_hub_{HUB}_group_9"],
                                                "via_device": f"spoke_hub_{HUB}"}}), retain=True)
    try:
        async with _hub(_settings(tmp_path, ha_broker, sim_devices=["bulb", "bulb"])) as hub:
            await _announced(ha, hub)
            await eventually(lambda: ha.payload(leftover) == b"", what="the leftover cleared")
            bulbs = sorted(hub.tracker.devices)
            assert hub.controls is not None
            network = hub.controls.network  # type: ignore[attr-defined]
            expires = datetime.now(UTC) + timedelta(minutes=5)
            ids = itertools.count()

            async def request(action: Any, **fields: Any) -> None:
                await hub.management.run(HubRequest(id=f"req-{next(ids)}", hub_id=HUB,
                                                    action=action, expires_at=expires, **fields))

            def level(ieee: str) -> int:
                return int(_virtual(hub, ieee).cluster(0x0008).get("current_level"))

            await request("group_create", group_id=5, name="Kitchen")
            node = f"spoke_hub_{HUB}_group_5"
            light_topic = TOPICS.config("light", node, "light")
            await asyncio.sleep(0.2)
            assert ha.json(light_topic) is None  # no light among its members yet
            for bulb in bulbs:
                await request("group_add", group_id=5, ieee=bulb)
            await eventually(lambda: ha.json(light_topic) is not None, what="the group's light")
            light = ha.json(light_topic)
            assert validate(light_topic, light) == []
            assert light["unique_id"] == f"{node}_light" and light["name"] is None
            assert light["device"]["name"] == "Kitchen"
            assert light["device"]["via_device"] == f"spoke_hub_{HUB}"
            assert light["availability"] == [{"topic": TOPICS.bridge_state}]
            assert light["supported_color_modes"] == ["color_temp"]
            assert light["state_topic"] == TOPICS.group_state(5)
            assert light["command_topic"] == TOPICS.group_command(5)
            state_topic = light["state_topic"]
            await eventually(lambda: ha.json(state_topic) is not None, what="the group's state")
            assert render_problems(light_topic, light, ha.payload) == []

            def group_state() -> dict[str, Any]:
                return ha.json(state_topic) or {}

            network.group_sends.clear()
            ha.publish(light["command_topic"], json.dumps({"state": "OFF"}))
            await eventually(lambda: group_state().get("state") == "OFF", what="the group off")
            assert network.group_sends == {5: 1}
            assert not any(_virtual(hub, b).cluster(0x0006).get("on_off") for b in bulbs)

            ha.publish(light["command_topic"], json.dumps({"state": "ON", "brightness": 100}))
            await eventually(lambda: group_state().get("brightness") == 100,
                             what="the group at brightness 100")
            assert network.group_sends == {5: 2}
            assert hub.executor.counts["local_succeeded"] == 2
            assert [level(b) for b in bulbs] == [100, 100]
            assert all(_virtual(hub, b).cluster(0x0006).get("on_off") for b in bulbs)
            assert group_state()["state"] == "ON"
            assert render_problems(light_topic, light, ha.payload) == []

            # A scene: stored at 100, the levels changed, its activation restores them.
            await request("scene_store", group_id=5, scene_id=3, name="Dinner")
            scene_topic = TOPICS.config("scene", node, "scene_3")
            await eventually(lambda: ha.json(scene_topic) is not None, what="the scene entity")
            scene = ha.json(scene_topic)
            assert validate(scene_topic, scene) == []
            assert scene["name"] == "Dinner" and scene["device"] == light["device"]
            ha.publish(light["command_topic"], json.dumps({"brightness": 200}))
            await eventually(lambda: [level(b) for b in bulbs] == [200, 200]
                             and group_state().get("brightness") == 200, what="the group at 200")
            network.group_sends.clear()
            ha.publish(scene["command_topic"], scene.get("payload_on", "ON"))
            await eventually(lambda: [level(b) for b in bulbs] == [100, 100]
                             and group_state().get("brightness") == 100,
                             what="the scene's levels restored")
            assert network.group_sends == {5: 1}

            # The group follows its members: one switched off alone, the group is still on,
            # at the brightness of the one that is.
            first = ha.entity(f"spoke_{ieee_to_topic(bulbs[0])}_light")
            second = ha.entity(f"spoke_{ieee_to_topic(bulbs[1])}_light")
            ha.publish(first["command_topic"], json.dumps({"state": "OFF"}))
            ha.publish(second["command_topic"], json.dumps({"brightness": 50}))
            await eventually(lambda: (group_state().get("state"), group_state().get("brightness"))
                             == ("ON", 50), what="the group at its one lit member's brightness")
            ha.publish(second["command_topic"], json.dumps({"state": "OFF"}))
            await eventually(lambda: group_state() == {"state": "OFF"}, what="the group off")
            assert render_problems(light_topic, light, ha.payload) == []

            # Renamed, a scene removed, deleted: the configs follow.
            await request("group_rename", group_id=5, name="Cooking")
            await eventually(lambda: ha.json(light_topic)["device"]["name"] == "Cooking",
                             what="the group renamed")
            await request("scene_remove", group_id=5, scene_id=3)
            await eventually(lambda: ha.payload(scene_topic) == b"", what="the scene emptied")
            await request("group_delete", group_id=5)
            await eventually(lambda: ha.payload(light_topic) == b""
                             and ha.payload(state_topic) == b"", what="the group emptied")
            refused = hub.home_assistant.refused  # type: ignore[union-attr]
            ha.publish(light["command_topic"], json.dumps({"state": "ON"}))
            await eventually(lambda: hub.home_assistant.refused > refused,  # type: ignore[union-attr]
                             what="a command to the deleted group refused")
    finally:
        ha.close()
