"""The cloud's Prometheus metrics over real HTTP from a running cloud and broker, with a hub's wire
messages published as the hub, read with prometheus_client's own parser: only the operator's
metrics token opens them, every family has the type its name promises, no label names a hub,
device or account, and the counters move as events and commands flow."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cloud.auth import create_token
from cloud.storage.base import device_id_for
from tests.common import MqttTestClient, device, event, eventually, status
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack
from wire.contract import Command, CommandResult, CommandStatus, EventBatcher, Topics

PLUG = "00:00:00:00:00:00:00:01"
SENSOR = "00:00:00:00:00:00:00:02"

COUNTERS = {
    "spoke_ingest_messages_received", "spoke_ingest_events_stored", "spoke_ingest_events_duplicate",
    "spoke_ingest_event_gaps", "spoke_ingest_command_results", "spoke_ingest_pairing_events",
    "spoke_ingest_batches", "spoke_ingest_acks_sent", "spoke_ingest_events_received",
    "spoke_ingest_event_batches", "spoke_ingest_messages_rejected", "spoke_mqtt_reconnects", "spoke_commands",
}
HISTOGRAMS = {"spoke_ingest_lag_seconds", "spoke_ingest_batch_commit_seconds",
              "spoke_command_duration_seconds"}
GAUGES = {"spoke_mqtt_connected", "spoke_ingest_waiting_messages", "spoke_ingest_stalled",
          "spoke_hubs", "spoke_devices", "spoke_fleet_count_seconds"}
# Every label a spoke_ metric may carry, each from a small fixed set.
LABELS = {"reason", "status", "outcome", "state", "availability", "le"}


def metrics_token(stack: Stack) -> str:
    return stack.cloud_settings.metrics_token_file.read_text().strip()


async def scrape(stack: Stack) -> dict[str, Metric]:
    """The spoke_ families of one scrape, by name (counters without their _total)."""
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.get("/metrics",
                                  headers={"Authorization": f"Bearer {metrics_token(stack)}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert "process_cpu_seconds" in families  # the process collector, in this cloud's registry
    return {name: f for name, f in families.items() if name.startswith("spoke_")}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The one sample of ``name`` with ``labels`` (a counter's _total, a histogram's _count)."""
    family = families[name]
    suffix = {"counter": "_total", "histogram": "_count"}.get(family.type, "")
    found = [s.value for s in family.samples if s.name == name + suffix and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


async def test_metrics_need_the_operators_token(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, start_hub=False) as stack:
        token_file = stack.cloud_settings.metrics_token_file
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert len(metrics_token(stack)) >= 32
        _, admin = await asyncio.to_thread(create_token, stack.services.storage.registry,
                                           "an account's admin", scopes=["admin"])
        async with httpx.AsyncClient(base_url=stack.base_url) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": f"Bearer {admin}"},  # an account's token: no
                            {"Authorization": f"Basic {metrics_token(stack)}"},
                            {"Authorization": f"Bearer {metrics_token(stack)}x"}):
                response = await http.get("/metrics", headers=headers)
                assert response.status_code == 401, (headers, response.text)
                assert set(response.json()) == {"detail"}
                assert response.headers["www-authenticate"] == "Bearer"
            operation = (await http.get("/openapi.json")).json()["paths"]["/metrics"]["get"]
        assert {"200", "401"} <= set(operation["responses"])
        assert operation["security"] == [{"MetricsToken": []}]
        assert "spoke_ingest_events_stored" in await scrape(stack)


async def test_metrics_count_events_and_commands_with_bounded_labels(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, start_hub=False) as stack:
        hub_id = stack.hub_settings.hub_id
        hub = await asyncio.to_thread(stack.as_hub)
        try:
            for message in (status(hub_id), device(hub_id, PLUG), device(hub_id, SENSOR)):
                await asyncio.to_thread(hub.publish, message)
            await stack.wait_for_devices(2)
            before = await scrape(stack)
            assert {n for n, f in before.items() if f.type == "counter"} == COUNTERS
            assert {n for n, f in before.items() if f.type == "histogram"} == HISTOGRAMS
            assert {n for n, f in before.items() if f.type == "gauge"} == GAUGES
            assert value(before, "spoke_hubs", state="online") == 1
            assert value(before, "spoke_devices", availability="available") == 2
            assert value(before, "spoke_mqtt_connected") == 1
            assert value(before, "spoke_ingest_messages_rejected", reason="not_json") == 0
            assert value(before, "spoke_ingest_events_stored") == 0

            # Ten live events (stamped now), one resent, one not JSON; then a command answered.
            now = datetime.now(UTC)
            events = [event(hub_id, seq, PLUG, value=seq % 2 == 0, ts=now) for seq in range(1, 11)]
            for message in [*events[:6], events[-1]]:
                await asyncio.to_thread(hub.publish, message)
            # Seqs 7 to 10 in one batch, the form hubs send once the cloud takes batches.
            batcher = EventBatcher(hub_id, None)
            await asyncio.to_thread(hub.publish_raw, Topics.events(hub_id), batcher.join(
                [item for ev in events[6:] if (item := batcher.item(ev.to_bytes())) is not None]))
            await asyncio.to_thread(hub.publish_raw, Topics.events(hub_id), b"{not json")
            answer_commands(hub, hub_id)
            plug_id = device_id_for(hub_id, PLUG)
            response = await stack.api.post(f"/api/v1/devices/{plug_id}/commands",
                                            json={"capability": "switch", "command": "on"})
            assert response.status_code == 200, response.text

            async def all_counted() -> bool:
                m = await scrape(stack)
                return (value(m, "spoke_ingest_events_duplicate") == 1
                        and value(m, "spoke_ingest_messages_rejected", reason="not_json") == 1)

            await eventually(all_counted, what="the events, the duplicate and the refusal counted")
        finally:
            hub.close()
        after = await scrape(stack)
        assert value(after, "spoke_ingest_events_stored") == 10
        assert value(after, "spoke_ingest_events_received") == 11  # with the one sent twice
        assert value(after, "spoke_ingest_event_batches") == 1
        assert value(after, "spoke_commands", status="succeeded") == 1
        assert value(after, "spoke_commands", status="timeout") == 0
        assert value(after, "spoke_command_duration_seconds", outcome="succeeded") == 1
        assert value(after, "spoke_ingest_command_results") == 1
        # Stamped now: every one of the ten within the 5 s bucket of the lag histogram.
        assert value(after, "spoke_ingest_lag_seconds") == 10
        assert bucket(after, "spoke_ingest_lag_seconds", "5.0") == 10
        for name in ("spoke_ingest_messages_received", "spoke_ingest_batches",
                     "spoke_ingest_acks_sent", "spoke_ingest_batch_commit_seconds"):
            assert value(after, name) > value(before, name), name
        identities = {hub_id, "default", plug_id, PLUG, device_id_for(hub_id, SENSOR), SENSOR}
        for family in after.values():
            for sample in family.samples:
                assert set(sample.labels) <= LABELS, sample
                assert not identities & set(sample.labels.values()), sample


def answer_commands(hub: MqttTestClient, hub_id: str) -> None:
    """Make the test hub answer every command with succeeded."""

    def handle(_topic: str, payload: bytes) -> None:
        command = Command.model_validate_json(payload)
        result = CommandResult(id=command.id, hub_id=hub_id, status=CommandStatus.SUCCEEDED,
                               ts=datetime.now(UTC))
        hub.client.publish(Topics.results(hub_id), result.to_bytes(), qos=1)

    hub.subscribe(Topics.commands(hub_id), handle)


def bucket(families: dict[str, Metric], name: str, le: str) -> float:
    [found] = [s.value for s in families[name].samples
               if s.name == name + "_bucket" and s.labels == {"le": le}]
    return found


def test_cli_shows_where_the_metrics_token_is_never_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "secrets" / "metrics-token"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")},
           "SPOKE_METRICS_TOKEN_FILE": str(token_file), "SPOKE_CONFIG": str(tmp_path / "none.toml")}
    spoke = str(Path(sys.executable).with_name("spoke"))
    first = subprocess.run([spoke, "cloud", "metrics-token"], env=env, capture_output=True,
                           text=True, timeout=60, check=True)
    assert first.stdout.strip() == str(token_file)
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) >= 32
    assert token not in first.stdout + first.stderr
    token_file.chmod(0o644)  # copied in carelessly: tightened, and kept
    again = subprocess.run([spoke, "cloud", "metrics-token"], env=env, capture_output=True,
                           text=True, timeout=60, check=True)
    assert again.stdout.strip() == str(token_file) and token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
