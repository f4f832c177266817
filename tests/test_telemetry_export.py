"""The durable export of telemetry to InfluxDB: the queue the ingest fills in its own transaction, and
the thread that empties it into a real victoria-metrics (which takes InfluxDB 2's write API), from
hub events over MQTT through an InfluxDB outage with a cloud restart in the middle of it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, Table, distinct, func, select

from cloud.storage.base import StoreUnavailable, device_id_for
from cloud.storage.sql import SqlRegistry, make_engine
from cloud.storage.sql_outbox import SqlTelemetryOutbox
from cloud.storage.sql_schema import events, telemetry_outbox
from tests.common import (
    MqttTestClient,
    cloud_settings,
    device,
    event,
    register_hub,
    running_cloud,
    status,
)
from tests.conftest import BrokerAddress
from tests.victoria import VictoriaMetrics
from wire.contract import Event

HUB = "hub-x"
IEEE = "00:12:4b:00:0a:0b:0c:0d"
OTHER = "00:12:4b:00:0e:0e:0e:0e"
DEV = device_id_for(HUB, IEEE)


def _temperature(seq: int, base: datetime, ieee: str = IEEE) -> Event:
    return event(HUB, seq, ieee, "temperature", "temperature", value=20 + seq / 100,
                 ts=base + timedelta(milliseconds=100 * seq))


def _queue(registry: SqlRegistry, seqs: range, base: datetime) -> None:
    with registry.ingest() as tx:
        tx.hub_status(status(HUB))
        tx.device_info(device(HUB, IEEE, {"temperature": {"temperature": 20.0}}))
        for seq in seqs:
            tx.event(_temperature(seq, base))


def _rows(engine: Engine, table: Table) -> tuple[int, int]:
    """(rows, distinct sequence numbers) of hub-x in the events table or the queue."""
    with engine.connect() as conn:
        return tuple(conn.execute(  # type: ignore[return-value]
            select(func.count(), func.count(distinct(table.c.seq))).where(table.c.hub_id == HUB)
        ).one())


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll a blocking check off the event loop, five times a second."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.2)


# The queue -----------------------------------------------------------------------------------------
def test_each_stored_event_is_queued_in_its_own_transaction(registry: SqlRegistry) -> None:
    registry.export_telemetry = True
    outbox = SqlTelemetryOutbox(registry.engine)
    base = datetime.now(UTC).replace(microsecond=0)
    _queue(registry, range(1, 4), base)
    with registry.ingest() as tx:
        tx.event(_temperature(2, base))  # a duplicate: not stored, not queued
        tx.event(_temperature(4, base, OTHER))  # no such device yet: a dead letter, not queued
    with pytest.raises(RuntimeError), registry.ingest() as tx:
        tx.event(_temperature(5, base))
        raise RuntimeError("the transaction fails: its event and its point both vanish")
    assert outbox.backlog()[0] == 3
    with outbox.take(10) as points:
        assert [(p.seq, p.device_id, p.capability, p.attribute, p.ts, p.value) for p in points] == [
            (seq, DEV, "temperature", "temperature", base + timedelta(milliseconds=100 * seq),
             20 + seq / 100) for seq in (1, 2, 3)]
    with registry.ingest() as tx:  # the device is described: its dead letter becomes an event
        tx.device_info(device(HUB, OTHER, {"temperature": {"temperature": 20.0}}))
    with outbox.take(10) as points:
        assert [(p.seq, p.device_id) for p in points] == [(4, device_id_for(HUB, OTHER))]
    assert outbox.backlog() == (0, 0.0)


def test_values_keep_their_json_type(registry: SqlRegistry) -> None:
    registry.export_telemetry = True
    base = datetime.now(UTC)
    values = [True, 3, 2.5, "heat", None, 2.0]
    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE, {"thermostat": {"mode": "off"}}))
        for seq, value in enumerate(values, 1):
            tx.event(event(HUB, seq, IEEE, "thermostat", "mode", value=value, ts=base))
    with SqlTelemetryOutbox(registry.engine).take(10) as points:
        got = [p.value for p in points]
    assert got == values and [type(v) for v in got] == [type(v) for v in values]


def test_points_are_deleted_only_once_written(registry: SqlRegistry) -> None:
    registry.export_telemetry = True
    outbox = SqlTelemetryOutbox(registry.engine)
    _queue(registry, range(1, 6), datetime.now(UTC))
    with pytest.raises(StoreUnavailable), outbox.take(2) as points:
        assert [p.seq for p in points] == [1, 2]
        raise StoreUnavailable("influxdb write failed")
    count, age = outbox.backlog(now=datetime.now(UTC) + timedelta(seconds=60))
    assert count == 5 and 59 < age < 70
    with outbox.take(2) as points:
        assert [p.seq for p in points] == [1, 2]
    with outbox.take(10) as points:
        assert [p.seq for p in points] == [3, 4, 5]
    assert outbox.backlog() == (0, 0.0)


def test_concurrent_takes_skip_locked_rows_on_postgresql(registry: SqlRegistry) -> None:
    registry.export_telemetry = True
    outbox = SqlTelemetryOutbox(registry.engine)
    _queue(registry, range(1, 6), datetime.now(UTC))
    with outbox.take(2) as first, outbox.take(2) as second:
        taken = ([p.seq for p in first], [p.seq for p in second])
    if registry.engine.dialect.name == "postgresql":
        assert taken == ([1, 2], [3, 4])  # rows locked by one are skipped by the other
        rest = [5]
    else:  # SQLite has no row locks: both take the oldest (written twice, kept once)
        assert taken == ([1, 2], [1, 2])
        rest = [3, 4, 5]
    with outbox.take(10) as points:
        assert [p.seq for p in points] == rest


# The export thread against victoria-metrics --------------------------------------------------------
async def test_no_point_is_lost_through_an_influxdb_outage_and_a_cloud_restart(
        tmp_path: Path, mosquitto: BrokerAddress, victoria_metrics: VictoriaMetrics) -> None:
    before, total, outage = 50, 350, 30.0
    settings = cloud_settings(tmp_path, mosquitto, telemetry_backend="influxdb",
                              influx_url=victoria_metrics.url, influx_export_interval=0.1,
                              influx_export_max_backoff=2.0)
    hub = MqttTestClient.as_hub(mosquitto, register_hub(settings, HUB))
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    engine = make_engine(settings.database_url)
    stop_stream = threading.Event()
    producer: threading.Thread | None = None
    try:
        async with running_cloud(settings) as cloud:
            export = cloud.services.telemetry_export
            assert export is not None
            await asyncio.to_thread(hub.publish, status(HUB), retain=True)
            await asyncio.to_thread(hub.publish, device(HUB, IEEE, {"temperature": {
                "temperature": 20.0}}), retain=True)
            for seq in range(1, before + 1):
                await asyncio.to_thread(hub.publish, _temperature(seq, base))
            await _until(lambda: victoria_metrics.seqs(hub_id=HUB) == list(range(1, before + 1)),
                         within=10, what="the first events in victoria-metrics")
            assert export.backlog() == (0, 0.0)

            await asyncio.to_thread(victoria_metrics.stop)
            down_at = time.monotonic()

            def stream() -> None:  # a steady stream through the whole outage
                step = (outage - 3) / (total - before)
                for n, seq in enumerate(range(before + 1, total + 1)):
                    if stop_stream.wait(max(0.0, down_at + n * step - time.monotonic())):
                        return
                    hub.publish(_temperature(seq, base))

            producer = threading.Thread(target=stream, name="test-event-stream")
            producer.start()
            await _until(lambda: _rows(engine, events)[0] >= before + 60, within=15,
                         what="events stored while InfluxDB is down")
            assert export.snapshot()["failures"] >= 1
        # The cloud is down in the middle of the outage: what it could not export is still queued.
        stored, queued = _rows(engine, events)[0], _rows(engine, telemetry_outbox)
        assert queued == (stored - before, stored - before) and stored > before

        async with running_cloud(settings) as cloud:
            export = cloud.services.telemetry_export
            assert export is not None
            await asyncio.to_thread(producer.join)
            await _until(lambda: _rows(engine, events)[0] == total, within=15,
                         what="every event stored")
            assert export.backlog()[0] == total - before  # all still waiting for InfluxDB
            scraped = _samples(cloud.services.metrics.render())
            assert scraped["spoke_telemetry_export_queue_points"] == total - before
            assert scraped["spoke_telemetry_export_oldest_seconds"] > 0
            # History is read from SQL: complete while InfluxDB is down.
            history = await cloud.get_json(f"/api/v1/devices/{DEV}/telemetry",
                                           capability="temperature")
            assert [s["value"] for s in history] == [20 + seq / 100 for seq in range(1, total + 1)]
            await asyncio.sleep(max(0.0, down_at + outage - time.monotonic()))
            await asyncio.to_thread(victoria_metrics.start)  # same folder, same port

            await _until(lambda: export.backlog()[0] == 0, within=15, what="the queue emptied")
            assert _rows(engine, events) == (total, total)  # none duplicated in SQL
            scraped = _samples(cloud.services.metrics.render())
            assert scraped["spoke_telemetry_export_queue_points"] == 0
            assert scraped["spoke_telemetry_export_points_total"] == total - before
            await _until(lambda: victoria_metrics.seqs(hub_id=HUB) == list(range(1, total + 1)),
                         within=10, what="every point in victoria-metrics, once")
            exported = victoria_metrics.export(hub_id=HUB, device_id=DEV)
            (values,) = [s for s in exported if s.name == "telemetry_f"]
            expected = [(int(_temperature(seq, base).ts.timestamp() * 1000),
                         pytest.approx(20 + seq / 100)) for seq in range(1, total + 1)]
            assert list(zip(values.timestamps_ms, values.values, strict=True)) == expected
    finally:
        stop_stream.set()
        if producer is not None:
            producer.join()
        hub.close()
        engine.dispose()


def _samples(text: bytes) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text exposition, by name."""
    return {sample.name: sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples if not sample.labels}
