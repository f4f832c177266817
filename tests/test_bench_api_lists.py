"""A few seconds of bench.api_lists at a tiny size, so that it keeps working: no timing asserted,
only that it measured what it says (every device walked once, every kind of request timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.api_lists import FLOOR, run


@pytest.mark.timeout(120)
def test_the_list_benchmark_walks_every_device_once_and_times_every_kind(tmp_path: Path) -> None:
    report = run(tmp_path, n_hubs=3, per_hub=70, requests=3)
    assert report.devices == 210
    assert report.walks[100].pages == 3 and report.walks[1000].pages == 1
    for walked in report.walks.values():
        assert walked.items == walked.distinct == 210
    assert len(report.latency_ms) == 9 and FLOOR in report.latency_ms
    assert all(len(ms) == 3 and 0 < ms[0] <= ms[-1] for ms in report.latency_ms.values())
    assert report.page_bytes > 100 * 200  # a hundred devices, each more than a few fields
    assert all(kb["VmHWM"] >= kb["VmRSS"] > 10_000 for kb in report.memory_kb.values())
