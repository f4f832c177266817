"""The group commands benchmark (bench.group_commands) at a tiny size, so that it does not rot: a
real broker, `spoke cloud run` and `spoke hub run --radio sim`, real HTTP. No timing is asserted,
only that every sample was measured and the table printed."""

from __future__ import annotations

import pytest

from bench import group_commands


def test_each_way_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    result = group_commands.cli(["--bulbs", "2", "--n", "2", "--rounds", "2", "--gap", "0",
                                 "--broker", "amqtt"])
    assert len(result.group) == len(result.devices) == 2
    assert all(v > 0 for v in result.group + result.devices)
    out = capsys.readouterr().out
    assert "python -m bench.group_commands --bulbs 2 --n 2 --rounds 2" in out
    assert "one group command" in out and "2 device commands at once" in out
