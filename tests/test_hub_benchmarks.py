"""Smoke runs of the hub benchmarks at tiny sizes, so they keep working: no timing is asserted,
only that they measured what they say (every frame became an event the cloud acknowledged, memory
figures that a hub process can have)."""

from __future__ import annotations

import pytest

from bench import hub_events, hub_memory


def test_hub_events_benchmark_counts_every_report(capsys: pytest.CaptureFixture[str]) -> None:
    [size] = hub_events.cli(["--devices", "3", "--frames", "60", "--rounds", "1", "--timeout",
                             "60"])
    assert size.devices == 3
    [zigpy], [hub] = size.zigpy, size.hub
    assert zigpy.frames == hub.frames == 60
    assert hub.events == 60  # every frame became one event, and the cloud acknowledged them all
    assert zigpy.rate > 0 and hub.rate > 0 and zigpy.cpu > 0 and hub.cpu > 0
    out = capsys.readouterr().out
    assert "python -m bench.hub_events --devices 3" in out
    assert f"{size.ratio:.2f}" in out


def test_hub_memory_benchmark_measures_a_hub_above_the_floor() -> None:
    (floor_rss, floor_peak), (zigpy_rss, _), [sample] = hub_memory.cli(
        ["--devices", "2", "--seconds", "1", "--tick", "0.5", "--speed", "10", "--timeout", "60"])
    assert 30 < zigpy_rss < floor_rss <= floor_peak < 1000
    # The hub runs zigpy too, plus its own parts: never below zigpy alone.
    assert zigpy_rss < sample.steady <= sample.peak < 1000
    assert sample.devices == 2 and sample.pair_seconds > 0
