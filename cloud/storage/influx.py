"""The InfluxDB 2.x telemetry adapter (influxdb-client: synchronous writes, Flux queries).

One measurement, ``telemetry``; tags hub_id, device_id, capability, attribute; the value goes to
a field named after its JSON type (f float, i integer, b bool, s string, n null) so that a series
never mixes field types, and the hub's sequence number to the ``seq`` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from cloud.storage.base import Bucket, Sample, StoreUnavailable, TelemetryPoint
from wire.contract import Value

MEASUREMENT = "telemetry"
_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(value: Value) -> tuple[str, bool | int | float | str]:
    if value is None:
        return "n", True
    if isinstance(value, bool):
        return "b", value
    if isinstance(value, int):
        return "i", value
    if isinstance(value, float):
        return "f", value
    return "s", value


def _value(field: str, raw: object) -> Value:
    if field == "n":
        return None
    if field == "b":
        return bool(raw)
    if field == "i":
        return int(raw)  # type: ignore[call-overload]
    if field == "f":
        return float(raw)  # type: ignore[arg-type]
    return str(raw)


class InfluxTelemetry:
    """Telemetry reader and writer on an InfluxDB 2.x bucket."""

    def __init__(self, url: str, token: str | None, org: str, bucket: str) -> None:
        self.org = org
        self.bucket = bucket
        self.client = InfluxDBClient(url=url, token=token or "", org=org)
        self._write = self.client.write_api(write_options=SYNCHRONOUS)
        self._query = self.client.query_api()

    def close(self) -> None:
        self._write.close()
        self.client.close()

    def ping(self) -> bool:
        return bool(self.client.ping())

    def write(self, points: Sequence[TelemetryPoint]) -> None:
        records = []
        for p in points:
            name, value = _field(p.value)
            point = (
                Point(MEASUREMENT)
                .tag("hub_id", p.hub_id)
                .tag("device_id", p.device_id)
                .tag("capability", p.capability)
                .tag("attribute", p.attribute)
                .field(name, value)
                .field("seq", p.seq)
                .time(p.ts, WritePrecision.NS)
            )
            records.append(point)
        if not records:
            return
        try:
            self._write.write(bucket=self.bucket, org=self.org, record=records)
        except Exception as exc:  # the client raises urllib3 and ApiException errors alike
            raise StoreUnavailable(f"influxdb write failed: {exc}") from exc

    def query(
        self,
        device_id: str,
        capability: str,
        attribute: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[Sample]:
        start = since or _EPOCH
        stop = (until + timedelta(microseconds=1)) if until is not None else _FAR_FUTURE
        flux = (
            "from(bucket: params.bucket)\n"
            f"  |> range(start: {_rfc3339(start)}, stop: {_rfc3339(stop)})\n"
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and '
            "r.device_id == params.device_id and r.capability == params.capability and "
            'r.attribute == params.attribute and r._field != "seq")\n'
            "  |> group()\n"
            '  |> sort(columns: ["_time"], desc: true)\n'
            f"  |> limit(n: {int(limit)})\n"
        )
        params = {
            "bucket": self.bucket,
            "device_id": device_id,
            "capability": capability,
            "attribute": attribute,
        }
        try:
            tables = self._query.query(flux, org=self.org, params=params)
        except Exception as exc:
            raise StoreUnavailable(f"influxdb query failed: {exc}") from exc
        samples = [
            Sample(ts=record.get_time(), value=_value(record.get_field(), record.get_value()))
            for table in tables
            for record in table.records
        ]
        samples.sort(key=lambda s: s.ts)
        return samples

    def buckets(self, device_id: str, capability: str, attribute: str, *, since: datetime,
                until: datetime, width: int) -> list[Bucket]:
        """Flux windows of ``width`` seconds aligned on ``since``; numbers and booleans (0/1)."""
        stop = until + timedelta(microseconds=1)
        offset = int(since.timestamp()) % width
        flux = (
            "from(bucket: params.bucket)\n"
            f"  |> range(start: {_rfc3339(since)}, stop: {_rfc3339(stop)})\n"
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and '
            "r.device_id == params.device_id and r.capability == params.capability and "
            'r.attribute == params.attribute and (r._field == "f" or r._field == "i" or '
            'r._field == "b"))\n'
            "  |> map(fn: (r) => ({_time: r._time, _value: float(v: r._value)}))\n"
            f"  |> window(every: {int(width)}s, offset: {offset}s)\n"
            "  |> reduce(identity: {n: 0, lo: 0.0, hi: 0.0, total: 0.0}, fn: (r, accumulator) => ({\n"
            "       n: accumulator.n + 1, total: accumulator.total + r._value,\n"
            "       lo: if accumulator.n == 0 or r._value < accumulator.lo then r._value "
            "else accumulator.lo,\n"
            "       hi: if accumulator.n == 0 or r._value > accumulator.hi then r._value "
            "else accumulator.hi}))\n"
            "  |> group()\n"
            '  |> sort(columns: ["_start"])\n'
        )
        params = {"bucket": self.bucket, "device_id": device_id, "capability": capability,
                  "attribute": attribute}
        try:
            tables = self._query.query(flux, org=self.org, params=params)
        except Exception as exc:
            raise StoreUnavailable(f"influxdb query failed: {exc}") from exc
        found = []
        for table in tables:
            for record in table.records:
                n = int(record["n"])
                if n:
                    start = max(record.get_start(), since)
                    found.append(Bucket(start=start, count=n, min=float(record["lo"]),
                                        max=float(record["hi"]), avg=float(record["total"]) / n))
        return found
