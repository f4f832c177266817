"""Downsampled history for the dashboard's charts: a week of a chatty sensor, read as buckets.

Stores one week of one sensor reporting every ``--every`` seconds (120,960 events at 5 s) through the
cloud's ingest transaction (``registry.ingest``), into a new SQLite file or an empty PostgreSQL
database, plus the same week of nine other series of the device (so the index has neighbours). Then
times, interleaved so that drift hits every kind alike, what a chart asks for: the week as 240
buckets (the dashboard's 7 d), 24 h as 240 buckets and 1 h as 240 buckets, against the baseline of
reading the raw samples of the same range (``TelemetryReader.query``, what a chart without
downsampling would need; the REST route caps that at 10,000 samples).

    .venv/bin/python -m bench.history_buckets [--every 5] [--runs 15]
        [--database-url postgresql+psycopg://…]   (an empty database; default: a new SQLite file)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloud.storage.base import device_id_for
from cloud.storage.sql import SqlRegistry, SqlTelemetry
from wire.contract import DeviceInfo, Event

HUB = "hub-bench"
IEEE = "00:12:4b:00:00:00:be:ec"
WEEK = timedelta(days=7)
BATCH = 5000
OTHER_SERIES = [("humidity", "humidity"), ("battery", "battery"), ("power", "power"),
                ("energy", "energy"), ("illuminance", "illuminance"), ("pressure", "pressure"),
                ("co2", "co2"), ("voltage", "voltage"), ("current", "current")]


def seed(registry: SqlRegistry, end: datetime, every: float) -> int:
    """The week before ``end``: the temperature every ``every`` s, the other series every 10x."""
    with registry.ingest([HUB]) as tx:
        tx.device_info(DeviceInfo(hub_id=HUB, ieee=IEEE, manufacturer="Bench", model="TH",
                                  capabilities={"temperature": {"temperature": None}}))
    n = int(WEEK.total_seconds() / every)
    start = end - WEEK
    seq = 0
    pending: list[Event] = []

    def flush() -> None:
        with registry.ingest([HUB]) as tx:
            tx.events(pending)
        pending.clear()

    for i in range(n):
        ts = start + timedelta(seconds=i * every)
        seq += 1
        pending.append(Event(hub_id=HUB, epoch="b" * 16, seq=seq, ts=ts, ieee=IEEE,
                             capability="temperature", attribute="temperature",
                             value=round(20 + 3 * ((i % 1440) / 1440), 2)))
        if i % 10 == 0:
            for capability, attribute in OTHER_SERIES:
                seq += 1
                pending.append(Event(hub_id=HUB, epoch="b" * 16, seq=seq, ts=ts, ieee=IEEE,
                                     capability=capability, attribute=attribute, value=float(i)))
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="spoke-bench-history-"))
    url = args.database_url or f"sqlite:///{folder / 'cloud.db'}"
    registry = SqlRegistry.from_url(url)
    try:
        end = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        n = seed(registry, end, args.every)
        print(f"{registry.engine.dialect.name}: stored {n:,} temperature events of one week "
              f"(+{n // 10 * len(OTHER_SERIES):,} of other series) in "
              f"{time.perf_counter() - started:.1f} s")
        telemetry = SqlTelemetry(registry.engine)
        device = device_id_for(HUB, IEEE)
        reads: dict[str, Callable[[], Any]] = {}
        for label, span in (("7 d", WEEK), ("24 h", timedelta(hours=24)),
                            ("1 h", timedelta(hours=1))):
            since = end - span
            width = max(1, int(-(-span.total_seconds() // 240)))
            reads[f"{label} as 240 buckets"] = (
                lambda s=since, w=width: telemetry.buckets(device, "temperature", "temperature",
                                                           since=s, until=end, width=w))
            reads[f"{label} raw samples (baseline)"] = (
                lambda s=since: telemetry.query(device, "temperature", "temperature", since=s,
                                                until=end, limit=10**7))
        times: dict[str, list[float]] = {name: [] for name in reads}
        rows: dict[str, int] = {}
        for _ in range(args.runs):
            for name, read in reads.items():
                t0 = time.perf_counter()
                found = read()
                times[name].append(time.perf_counter() - t0)
                rows[name] = len(found)
        print(f"\n| read ({args.runs} runs, interleaved) | rows | p50 ms | max ms |")
        print("|---|---:|---:|---:|")
        for name in reads:
            print(f"| {name} | {rows[name]:,} | {statistics.median(times[name]) * 1000:.1f} | "
                  f"{max(times[name]) * 1000:.1f} |")
    finally:
        registry.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
