"""The InfluxDB telemetry adapter against a real InfluxDB 2.x (opt-in).

No InfluxDB 2.x server can be installed on the project's machines: Debian bookworm packages only
influxdb 1.6.7, which has neither the /api/v2 write endpoint nor Flux that influxdb-client needs.
Point SPOKE_TEST_INFLUX_URL (and _TOKEN, _ORG, _BUCKET) at a throwaway bucket to run this.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest

from cloud.storage.base import TelemetryPoint
from tests.common import T0

URL = os.environ.get("SPOKE_TEST_INFLUX_URL")
pytestmark = pytest.mark.skipif(
    not URL,
    reason="no InfluxDB 2.x here (Debian ships 1.6.7, without /api/v2 and Flux); "
    "set SPOKE_TEST_INFLUX_URL/_TOKEN/_ORG/_BUCKET to run",
)


def test_influx_round_trip_keeps_types_order_and_window():
    from cloud.storage.influx import InfluxTelemetry

    influx = InfluxTelemetry(URL or "", os.environ.get("SPOKE_TEST_INFLUX_TOKEN"),
                             os.environ.get("SPOKE_TEST_INFLUX_ORG", "spoke"),
                             os.environ.get("SPOKE_TEST_INFLUX_BUCKET", "spoke"))
    device_id = f"hub-i-{uuid.uuid4().hex[:16]}"
    values = [True, 3, 2.5, "heat", None]
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
