"""The InfluxDB telemetry adapter: its writes (InfluxDB 2's write API, line protocol) against a real
victoria-metrics, which takes that API; its Flux reader only against a real InfluxDB 2.x.

No InfluxDB 2.x server can be installed on the project's machines (Debian bookworm packages
influxdb 1.6.7, without /api/v2 and Flux) and victoria-metrics answers no Flux: point
SPOKE_TEST_INFLUX_URL (and _TOKEN, _ORG, _BUCKET) at a throwaway bucket to run the reader's test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud.storage.base import StoreUnavailable, TelemetryPoint
from cloud.storage.influx import InfluxTelemetry
from tests.common import T0
from tests.victoria import Series, VictoriaMetrics
from wire.contract import Value

URL = os.environ.get("SPOKE_TEST_INFLUX_URL")


def _points(hub_id: str, values: list[Value], start: datetime) -> list[TelemetryPoint]:
    return [TelemetryPoint(hub_id=hub_id, seq=i + 1, device_id=f"{hub_id}-00124b0001020304",
                           capability="thermostat", attribute="mode", unit="x",
                           ts=start + timedelta(seconds=i), value=v)
            for i, v in enumerate(values)]


def _wait_for(read: Callable[[], dict[str, Series]], names: set[str],
              within: float = 10.0) -> dict[str, Series]:
    deadline = time.monotonic() + within
    while True:
        series = read()
        if set(series) >= names or time.monotonic() > deadline:
            return series
        time.sleep(0.1)


def test_write_lands_one_series_per_field_type(victoria_metrics: VictoriaMetrics) -> None:
    start = datetime.now(UTC).replace(microsecond=250_000) - timedelta(minutes=1)
    values: list[Value] = [True, 3, 2.5, "heat", None, False]
    points = _points("hub-w", values, start)
    influx = InfluxTelemetry(victoria_metrics.url, None, "spoke", "spoke")
    try:
        assert influx.ping()
        influx.write(points)
    finally:
        influx.close()

    names = {"telemetry_b", "telemetry_i", "telemetry_f", "telemetry_s", "telemetry_n",
             "telemetry_seq"}
    series = _wait_for(lambda: {s.name: s for s in victoria_metrics.export(hub_id="hub-w")},
                       names)
    assert set(series) == names
    tags = {"hub_id": "hub-w", "device_id": "hub-w-00124b0001020304",
            "capability": "thermostat", "attribute": "mode"}
    assert all(s.labels == tags for s in series.values())
    ms = [int(p.ts.timestamp() * 1000) for p in points]
    assert (series["telemetry_seq"].timestamps_ms, series["telemetry_seq"].values) == (
        ms, [1, 2, 3, 4, 5, 6])
    # Each value in the field of its JSON type, at its point's time (booleans read back as 1/0).
    assert (series["telemetry_b"].timestamps_ms, series["telemetry_b"].values) == (
        [ms[0], ms[5]], [1, 0])
    assert (series["telemetry_i"].timestamps_ms, series["telemetry_i"].values) == ([ms[1]], [3])
    assert (series["telemetry_f"].timestamps_ms, series["telemetry_f"].values) == (
        [ms[2]], [2.5])
    assert series["telemetry_s"].timestamps_ms == [ms[3]]  # the text itself is not kept there
    assert (series["telemetry_n"].timestamps_ms, series["telemetry_n"].values) == ([ms[4]], [1])


def test_failures_are_store_unavailable(victoria_metrics: VictoriaMetrics,
                                        free_port: Callable[[], int]) -> None:
    nowhere = InfluxTelemetry(f"http://127.0.0.1:{free_port()}", None, "spoke", "spoke")
    flux_less = InfluxTelemetry(victoria_metrics.url, None, "spoke", "spoke")
    try:
        with pytest.raises(StoreUnavailable, match="influxdb write failed"):
            nowhere.write(_points("hub-x", [1.0], datetime.now(UTC)))
        with pytest.raises(StoreUnavailable, match="influxdb query failed"):  # no Flux there
            flux_less.query("hub-x-00124b0001020304", "thermostat", "mode")
        with pytest.raises(StoreUnavailable, match="influxdb query failed"):
            flux_less.buckets("hub-x-00124b0001020304", "thermostat", "local_temperature",
                              since=T0, until=T0 + timedelta(hours=1), width=60)
    finally:
        nowhere.close()
        flux_less.close()


@pytest.mark.skipif(not URL, reason="no InfluxDB 2.x with Flux here; set "
                    "SPOKE_TEST_INFLUX_URL/_TOKEN/_ORG/_BUCKET to run")
def test_influx_round_trip_keeps_types_order_and_window() -> None:
    influx = InfluxTelemetry(URL or "", os.environ.get("SPOKE_TEST_INFLUX_TOKEN"),
                             os.environ.get("SPOKE_TEST_INFLUX_ORG", "spoke"),
                             os.environ.get("SPOKE_TEST_INFLUX_BUCKET", "spoke"))
    device_id = f"hub-i-{uuid.uuid4().hex[:16]}"
    values: list[Value] = [True, 3, 2.5, "heat", None]
    points = [
        TelemetryPoint(hub_id="hub-i", seq=i + 1, device_id=device_id, capability="x",
                       attribute="y", ts=T0 + timedelta(seconds=i + 1), value=v)
        for i, v in enumerate(values)
    ]
    try:
        assert influx.ping()
        influx.write(points)
        assert [s.value for s in influx.query(device_id, "x", "y")] == values
        assert [s.value for s in influx.query(device_id, "x", "y", limit=2)] == ["heat", None]
        window = influx.query(device_id, "x", "y", since=T0 + timedelta(seconds=2),
                              until=T0 + timedelta(seconds=3))
        assert [s.value for s in window] == [3, 2.5]
    finally:
        influx.close()


@pytest.mark.skipif(not URL, reason="no InfluxDB 2.x with Flux here; set "
                    "SPOKE_TEST_INFLUX_URL/_TOKEN/_ORG/_BUCKET to run")
def test_influx_buckets_sum_up_each_window_as_sql_does() -> None:
    influx = InfluxTelemetry(URL or "", os.environ.get("SPOKE_TEST_INFLUX_TOKEN"),
                             os.environ.get("SPOKE_TEST_INFLUX_ORG", "spoke"),
                             os.environ.get("SPOKE_TEST_INFLUX_BUCKET", "spoke"))
    device_id = f"hub-i-{uuid.uuid4().hex[:16]}"
    values: list[tuple[int, Value]] = [(0, 1.0), (5, 3), (9, True), (10, 10.0), (25, -4.5),
                                       (26, "text"), (60, 8.0), (61, 99.0)]
    points = [TelemetryPoint(hub_id="hub-i", seq=i + 1, device_id=device_id, capability="x",
                             attribute="y", ts=T0 + timedelta(seconds=s), value=v)
              for i, (s, v) in enumerate(values)]
    try:
        influx.write(points)
        found = influx.buckets(device_id, "x", "y", since=T0, until=T0 + timedelta(seconds=60),
                               width=10)
        assert [((b.start - T0).total_seconds(), b.count, b.min, b.max) for b in found] == [
            (0, 3, 1.0, 3.0), (10, 1, 10.0, 10.0), (20, 1, -4.5, -4.5), (60, 1, 8.0, 8.0)]
    finally:
        influx.close()


def test_history_is_read_from_sql_unless_influxdb_is_asked_for(tmp_path: Path) -> None:
    from cloud.settings import CloudSettings
    from cloud.storage import open_storage
    from cloud.storage.sql import SqlTelemetry

    base = {"database_url": f"sqlite:///{tmp_path / 'cloud.db'}", "telemetry_backend": "influxdb"}
    for history, reader in (("sql", SqlTelemetry), ("influxdb", InfluxTelemetry)):
        storage = open_storage(CloudSettings.model_validate({**base, "history_source": history}))
        try:
            assert isinstance(storage.telemetry, reader)
            assert isinstance(storage.telemetry_sink, InfluxTelemetry)
            assert storage.telemetry_outbox is not None
        finally:
            storage.close()
    with pytest.raises(ValidationError, match="needs telemetry_backend"):
        CloudSettings.model_validate({**base, "telemetry_backend": "sql",
                                      "history_source": "influxdb"})
