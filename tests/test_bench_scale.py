"""The fleet benchmarks end to end at a tiny size, so that they do not rot: bench.scale (simulated
hubs on selector loops, one cloud process and two sharing the events, a bare subscriber) and
bench.broker_burst (hubs running the hub's outbox and resend rule, through amqtt and Mosquitto).
No timing is asserted, only that every message was received and stored exactly once and the
tables show the figures."""

from __future__ import annotations

from pathlib import Path

from bench import broker_burst, scale
from bench.ingest import Fleet


def test_scale_registers_every_device_and_stores_every_event(tmp_path: Path) -> None:
    fleet = Fleet(hubs=6, devices_per_hub=3)
    rows = scale.run(fleet, rate=60, seconds=2, burst=5, processes=2, status_interval=0.5,
                     workdir=tmp_path)
    phases = [(r.setup, r.phase) for r in rows]
    assert phases == [("raw", "paced"), ("raw", "burst"),
                      ("1 cloud", "register"), ("1 cloud", "paced"), ("1 cloud", "burst"),
                      ("2 clouds", "register"), ("2 clouds", "paced"), ("2 clouds", "burst"),
                      ("raw", "paced"), ("raw", "burst")]
    for row in rows:
        assert row.stored == row.messages > 0, row
        assert row.duplicates == 0 and row.seconds > 0
    paced = [r for r in rows if r.phase == "paced" and r.setup != "raw"]
    assert all(r.messages == 120 and r.lag_max > 0 and r.rss_mb > 0 and r.cpu > 0 for r in paced)
    assert all(r.messages == 30 for r in rows if r.phase == "burst")
    shown = scale.table(rows)
    assert "two processes / one" in shown and "2 clouds" in shown


def test_a_burst_through_each_broker_is_stored_exactly_once(tmp_path: Path) -> None:
    results = broker_burst.run(Fleet(hubs=2, devices_per_hub=3), 150,
                               brokers=["mosquitto", "amqtt"], workdir=tmp_path)
    assert [r.broker for r in results] == ["mosquitto", "amqtt"]
    for r in results:
        assert (r.events, r.stored, r.rows, r.dead_letters) == (300, 300, 300, 0), r
        assert r.drain > 0
    assert "amqtt" in broker_burst.table(results)
