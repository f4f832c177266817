"""A smoke run of the Home Assistant benchmark at a tiny size, so it keeps working: no timing is
asserted, only that it measured what it says (every frame acknowledged with Home Assistant's link
on and off, state messages on the local broker, the bulb switched both ways)."""

from __future__ import annotations

import pytest

from bench import home_assistant


def test_home_assistant_benchmark_measures_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    [size], latency = home_assistant.cli(["--devices", "3", "--frames", "60", "--rounds", "1",
                                          "--commands", "4", "--timeout", "60"])
    [plain], [with_ha] = size.plain, size.with_ha
    assert plain.events == with_ha.events == 60  # every frame an event the cloud acknowledged
    assert size.ha_messages > 0  # and Home Assistant was told of them
    assert len(latency.direct_ms) == len(latency.through_ha_ms) == 2
    assert all(ms > 0 for ms in latency.direct_ms + latency.through_ha_ms)
    out = capsys.readouterr().out
    assert "python -m bench.home_assistant --devices 3" in out
