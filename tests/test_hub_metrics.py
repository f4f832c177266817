"""The hub's numbers on a running hub (simulated radio, real Mosquitto): the retained status carries
current integer counters that agree with the ledger, also after a restart, and /metrics serves
them to a caller with the token only."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.app import Hub
from tests.common import MqttTestClient, cloud_settings, eventually, register_hub
from tests.conftest import BrokerAddress, _free_port
from tests.stack import hub_settings
from wire.contract import Command, HubStatus, Topics, utcnow

HUB = "hub-metrics"


def _statuses(client: MqttTestClient) -> list[dict[str, Any]]:
    """The hub's online statuses received so far, as raw JSON (to see ints as ints)."""
    found = [json.loads(p) for t, p in list(client.received) if t == Topics.status(HUB) and p]
    return [s for s in found if s["online"]]


def _agrees(status: dict[str, Any]) -> bool:
    metrics = status["metrics"]
    return metrics["events_emitted"] == metrics["last_seq"] == status["last_seq"]


async def test_retained_status_counters_are_current_integers_across_a_restart(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    credentials = register_hub(cloud_settings(tmp_path, mosquitto), HUB)
    settings = hub_settings(tmp_path, mosquitto, HUB, credentials, sim_devices=["loadgen"],
                            sim_tick=0.1, status_interval=0.3, shutdown_drain=0)
    watcher = MqttTestClient.as_cloud(mosquitto, "status-watcher")
    try:
        assert watcher.subscribe(Topics.status(HUB))
        hub = Hub(settings)
        await hub.start()
        try:
            await eventually(lambda: hub.store.last_seq >= 10, within=30, what="10 events")
            first = len(_statuses(watcher))
            started = time.monotonic()
            # Without waiting for the minute's heartbeat: the status follows the counters.
            await eventually(lambda: any(s["last_seq"] >= 10 for s in _statuses(watcher)),
                             within=5, what="a status with the 10 events")
            await asyncio.sleep(1.5)
            window = time.monotonic() - started
            sent = len(_statuses(watcher)) - first
        finally:
            await hub.stop()
        # Events arrive every 0.1 s; the status follows at most every 0.3 s.
        assert 2 <= sent <= window / 0.3 + 2, sent
        statuses = _statuses(watcher)
        for status in statuses:
            assert _agrees(status), status
            counters = {k: v for k, v in status["metrics"].items() if k != "radio_downtime_s"}
            assert all(type(v) is int for v in counters.values()), counters
            HubStatus.model_validate(status)  # the wire contract takes it back
        before_restart = statuses[-1]["last_seq"]

        # A restart keeps the ledger, and the status says so from its first publish on.
        watcher.received.clear()
        hub = Hub(settings)
        await hub.start()
        try:
            await eventually(lambda: bool(_statuses(watcher)), within=15, what="a status")
        finally:
            await hub.stop()
        after = _statuses(watcher)[0]
        assert after["metrics"]["events_emitted"] >= before_restart > 0
        assert _agrees(after), after
    finally:
        watcher.close()


def _scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_metrics_are_served_with_the_token_only(
        tmp_path: Path, mosquitto: BrokerAddress, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = register_hub(cloud_settings(tmp_path, mosquitto), HUB)
    port = _free_port()
    settings = hub_settings(tmp_path, mosquitto, HUB, credentials, sim_devices=["bulb"],
                            metrics_port=port, shutdown_drain=0)
    threads = set(threading.enumerate())
    cloud = MqttTestClient.as_cloud(mosquitto, "metrics-cloud")
    hub = Hub(settings)
    await hub.start()
    try:
        token_file = settings.metrics_token_path
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        await eventually(lambda: len(hub.tracker.devices) == 1, within=30, what="the bulb")
        [ieee] = hub.tracker.devices
        # Two commands as the cloud sends them: one the bulb carries out, one for no device.
        for cid, target in (("metrics-ok", ieee), ("metrics-unknown", "00:00:00:00:00:00:00:99")):
            cloud.publish(Command(id=cid, hub_id=HUB, ieee=target, capability="switch",
                                  command="toggle", expires_at=utcnow() + timedelta(minutes=1)),
                          Topics.commands(HUB))
        await eventually(lambda: hub.executor.counts["failed"] == 1
                         and hub.executor.counts["succeeded"] == 1, within=15, what="2 commands")

        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for headers in ({}, {"Authorization": "Bearer " + "x" * len(token)},
                            {"Authorization": f"Basic {token}"}):
                refused = await http.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert "spoke_hub" not in refused.text
            auth = {"Authorization": f"Bearer {token}"}
            assert (await http.get("/other", headers=auth)).status_code == 404
            assert (await http.post("/metrics", headers=auth)).status_code == 405
            low, pending_low = hub.store.last_seq, hub.store.pending
            response = await http.get("/metrics", headers=auth)
            high = hub.store.last_seq
        assert (await _raw(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        assert (await _raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
                ).startswith(b"HTTP/1.1 431 ")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _scrape(response.text)
        assert low <= samples[("spoke_hub_events_emitted_total", ())] <= high
        assert samples[("spoke_hub_outbox_depth", ())] >= pending_low > 0  # no cloud acknowledges
        assert samples[("spoke_hub_oldest_unacked_event_age_seconds", ())] > 0
        assert samples[("spoke_hub_commands_total", (("outcome", "succeeded"),))] == 1
        assert samples[("spoke_hub_commands_total", (("outcome", "failed"),))] == 1
        assert samples[("spoke_hub_commands_total", (("outcome", "expired"),))] == 0
        assert samples[("spoke_hub_devices", (("availability", "available"),))] == 1
        assert samples[("spoke_hub_devices", (("availability", "unavailable"),))] == 0
        assert samples[("spoke_hub_pairing_joins_total", (("step", "joined"),))] == 1
        assert samples[("spoke_hub_pairing_joins_total", (("step", "adopted"),))] == 1
        assert samples[("spoke_hub_mqtt_connected", ())] == 1
        assert samples[("spoke_hub_mqtt_reconnects_total", ())] == 0
        assert samples[("spoke_hub_radio_outages_total", ())] == 0
        assert ieee not in response.text and "metrics-ok" not in response.text  # bounded labels
    finally:
        await hub.stop()
        cloud.close()
    with pytest.raises(OSError):  # the listener is gone with the hub
        await _raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert token not in caplog.text and str(token_file) in caplog.text
    # (the event loop's own executor threads end with the loop)
    left = [t.name for t in set(threading.enumerate()) - threads
            if t.is_alive() and not t.name.startswith("asyncio_")]
    assert not left, left


async def test_a_taken_port_leaves_the_hub_running_without_metrics(
        tmp_path: Path, mosquitto: BrokerAddress, caplog: pytest.LogCaptureFixture) -> None:
    credentials = register_hub(cloud_settings(tmp_path, mosquitto), HUB)
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(taken.sockets[0].getsockname()[1])
    hub = Hub(hub_settings(tmp_path, mosquitto, HUB, credentials, sim_devices=[],
                           metrics_port=port, shutdown_drain=0))
    try:
        await hub.start()
        assert hub.metrics_server is None
        assert f"hub metrics not served on 127.0.0.1:{port}" in caplog.text
        await eventually(hub.link.connected.is_set, within=10, what="the hub connected")
    finally:
        await hub.stop()
        taken.close()
        await taken.wait_closed()
