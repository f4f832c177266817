"""A short run of bench.cli_startup, so that it keeps working: no timing asserted, only that every
command was timed in every round and that the listing it timed held every device."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli_startup import FLOOR, commands, run


@pytest.mark.timeout(120)
def test_the_cli_benchmark_times_every_command_and_lists_every_device(tmp_path: Path) -> None:
    report = run(tmp_path, rounds=2, n_devices=5)
    assert set(report.seconds) == set(commands()) and FLOOR in report.seconds
    assert all(len(s) == 2 and all(t > 0 for t in s) for s in report.seconds.values())
    assert set(report.cpu) == set(report.seconds)
    assert all(len(s) == 2 and all(t > 0 for t in s) for s in report.cpu.values())
    assert len(report.listed) == len(set(report.listed)) == 5
    assert all(device_id in report.table for device_id in report.listed)
