"""The simulated network keeps its air in a file: changes are saved together soon after they
happen, and at once when the radio detaches, so a restarted network finds every device."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from simulators.network import SimNetwork
from tests.sim_devices import SimZigbee


def saved(state: Path) -> list[str]:
    if not state.exists():
        return []
    return [d["ieee"] for d in json.loads(state.read_text())["devices"]]


async def test_joins_are_saved_soon_after_and_everything_on_detach(tmp_path: Path) -> None:
    state = tmp_path / "sim-network.json"
    sim = await SimZigbee.start(state_path=state, save_delay=0.1)
    try:
        joined = [str((await sim.join_from("loadgen")).virtual.ieee) for _ in range(3)]
        await asyncio.sleep(0.2)  # its timer comes due after the save's: the loop runs that first
        assert sorted(saved(state)) == sorted(joined)
        joined.append(str((await sim.join_from("loadgen")).virtual.ieee))
    finally:
        await sim.close()  # detaches the radio: what is not saved yet is saved now
    assert sorted(saved(state)) == sorted(joined)
    restarted = SimNetwork("tests-restarted", state_path=state)
    try:
        assert sorted(str(ieee) for ieee in restarted.devices) == sorted(joined)
    finally:
        restarted.close()
