"""The command latency benchmark (bench.command_latency) at a tiny size, so that it does not rot: a
real broker, a real `spoke cloud run` and `spoke hub run --radio sim`, real HTTP. No timing is
asserted, only that every exchange was measured and the figures hang together."""

from __future__ import annotations

import shutil

import pytest

from bench import command_latency
from bench.rig import MOSQUITTO


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_every_command_is_measured_beside_the_bare_exchange(
        broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    if broker == "mosquitto" and not shutil.which(MOSQUITTO):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    [result] = command_latency.cli(["--n", "4", "--rounds", "2", "--gap", "0.05",
                                    "--brokers", broker])
    samples = result.samples
    assert result.broker == broker
    assert len(samples.bare) == len(samples.rest) == len(samples.hub) == 4
    assert all(v > 0 for v in samples.bare + samples.hub)
    # The hub's part of a command is inside its round trip, so the cloud's share is positive.
    assert all(share > 0 for share in samples.share)
    assert result.ratio(0.5) > 0 and result.ratio(0.99) > 0
    out = capsys.readouterr().out
    assert f"python -m bench.command_latency --n 4 --rounds 2 --gap 0.05 --brokers {broker}" in out
    assert "cloud's share (rtt - hub)" in out and "share / bare" in out
