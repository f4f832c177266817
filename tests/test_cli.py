"""The `spoke` CLI as a person uses it: pairing with live progress (on the hub's machine and
through the cloud), simulated joins, listing devices and sending commands, one-line errors."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import running_stack

SPOKE = str(Path(sys.executable).with_name("spoke"))


async def _spoke(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        SPOKE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", **(env or {})})


async def _output(proc: asyncio.subprocess.Process, within: float = 60) -> str:
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    return out.decode()


async def test_pair_on_the_hub_machine_shows_progress_and_new_devices(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        data_dir = str(stack.hub.settings.hub_data_dir)
        pair = await _spoke("hub", "pair", "--duration", "5", "--data-dir", data_dir)
        await eventually(lambda: stack.hub.pairing_open, what="permit join open")  # type: ignore[union-attr]
        join = await _spoke("simulate", "join", "thermostat", "--data-dir", data_dir)
        joined = await _output(join)
        assert join.returncode == 0, joined
        output = await _output(pair)
        assert pair.returncode == 0, output
        assert "New devices" in output
        assert "SIM-TRV-1" in output and "thermostat" in output
        assert "reporting configured" in output
        # Closed now: a second device is refused, with one clear line.
        refused = await _spoke("simulate", "join", "bulb", "--data-dir", data_dir)
        text = await _output(refused)
        assert refused.returncode == 1
        assert "join refused" in text and "Traceback" not in text


async def test_pair_list_and_command_through_the_cloud(tmp_path: Path,
                                                       mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"sim_devices": []}) as stack:
        assert stack.hub is not None
        env = {"SPOKE_API_URL": stack.base_url, "SPOKE_API_TOKEN": stack.token}
        pair = await _spoke("hub", "pair", "--duration", "4", "--api-url", stack.base_url,
                            "--hub", stack.hub_settings.hub_id, env=env)
        await eventually(lambda: stack.hub.pairing_open, what="permit join open")  # type: ignore[union-attr]
        await stack.hub.dispatch.control({"op": "join", "source": "bulb"})
        output = await _output(pair)
        assert pair.returncode == 0, output
        assert "SIM-BULB-CT" in output and "level" in output

        listing = await _output(await _spoke("devices", "list", env=env))
        assert "SIM-BULB-CT" in listing
        bulb = await stack.device_by_model("SIM-BULB-CT")
        command = await _spoke("device", "command", bulb["id"], "level", "set_level",
                               "level=40", env=env)
        result = await _output(command)
        assert command.returncode == 0, result
        assert '"status": "succeeded"' in result
        bad = await _spoke("device", "command", bulb["id"], "level", "set_level", "level=400",
                           env=env)
        text = await _output(bad)
        assert bad.returncode == 1
        assert "HTTP 422" in text and "less than or equal to 100" in text

        wrong = await _spoke("devices", "list", env={**env, "SPOKE_API_TOKEN": "nope"})
        text = await _output(wrong)
        assert wrong.returncode == 1 and "HTTP 401" in text
