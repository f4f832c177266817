"""The radio: clear errors for a bad serial port, the watchdog that reconnects a radio that stopped
answering, and network backup/restore onto a new (simulated) stick."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import zigpy.types as t

from hub.backup import load_backup, restore_backup
from hub.control import request
from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import hub_settings, running_stack

SPOKE = Path(sys.executable).with_name("spoke")


def _hub_run(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SPOKE_RADIO_CONNECT_TIMEOUT="3", COLUMNS="200")
    return subprocess.run([str(SPOKE), "hub", "run", "--data-dir", str(tmp_path / "hub"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_missing_serial_port_is_one_clear_line(tmp_path: Path) -> None:
    result = _hub_run(tmp_path, "--radio", "ezsp", "--port", "/dev/ttyUSB-nope")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "/dev/ttyUSB-nope does not exist" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_radio_that_does_not_answer_is_one_clear_line(tmp_path: Path) -> None:
    master, slave = pty.openpty()  # a serial port with nothing behind it
    try:
        port = os.ttyname(slave)
        started = time.monotonic()
        result = _hub_run(tmp_path, "--radio", "ezsp", "--port", port)
        assert time.monotonic() - started < 30
        assert result.returncode == 2, result.stderr
        assert f"the ezsp radio on {port} does not answer" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        auto = _hub_run(tmp_path, "--radio", "auto", "--port", port)
        assert auto.returncode == 2
        assert f"no supported radio answered on {port}" in auto.stderr
    finally:
        os.close(master)
        os.close(slave)


async def test_watchdog_reconnects_a_radio_that_stopped_answering(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub={"radio_retry_min": 0.2,
                                                       "radio_retry_max": 0.5}) as stack:
        before = {d["ieee"] for d in await stack.wait_for_devices(5)}
        assert stack.hub is not None
        sock = stack.hub.settings.control_socket
        hub_path = f"/api/v1/hubs/{stack.hub_settings.hub_id}"
        # A silent failure: nothing tells the hub; zigpy's watchdog notices.
        assert (await request(sock, {"op": "radio_fail", "silent": True,
                                     "reason": "stick hung"}))["ok"]

        async def radio_down() -> bool:
            status = (await stack.api.get(hub_path)).json()["status"]
            return status["radio_up"] is False and "radio down" in (status["reason"] or "")

        await eventually(radio_down, within=10, what="hub status says radio down")

        async def devices_unavailable() -> bool:
            return all(not d["available"] and d["availability_reason"] == "radio down"
                       for d in await stack.devices())

        await eventually(devices_unavailable, what="devices unavailable: radio down")
        await asyncio.sleep(1.0)  # a few failed reconnect attempts
        assert (await request(sock, {"op": "radio_recover"}))["ok"]

        async def radio_back() -> bool:
            status = (await stack.api.get(hub_path)).json()["status"]
            return status["radio_up"] is True and "was down for" in (status["reason"] or "")

        await eventually(radio_back, within=10, what="radio back up")
        status = (await stack.api.get(hub_path)).json()["status"]
        assert status["metrics"]["radio_outages"] == 1
        assert status["metrics"]["radio_downtime_s"] >= 1.0

        async def all_available() -> bool:
            return all(d["available"] for d in await stack.devices())

        await eventually(all_available, what="devices available again")
        assert {d["ieee"] for d in await stack.devices()} == before
        bulb = await stack.device_by_model("SIM-BULB-CT")
        response = await stack.api.post(f"/api/v1/devices/{bulb['id']}/commands",
                                        json={"capability": "switch", "command": "toggle"})
        assert response.status_code == 200, response.text

        # A loud failure (USB unplugged) is noticed at once.
        assert (await request(sock, {"op": "radio_fail", "reason": "unplugged"}))["ok"]
        await eventually(radio_down, within=5, what="radio down after unplug")
        assert (await request(sock, {"op": "radio_recover"}))["ok"]
        await eventually(radio_back, within=10, what="radio back after replug")


async def test_backup_and_restore_onto_a_new_stick(tmp_path: Path,
                                                   mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        before = {d["ieee"] for d in await stack.wait_for_devices(5)}
        assert stack.hub is not None
        settings = stack.hub.settings
        startup_backups = sorted(settings.backup_dir.glob("network-backup-*.json"))
        assert startup_backups, "a backup is written at start"
        answer = await request(settings.control_socket, {"op": "backup"})
        assert answer["ok"], answer
        backup_file = Path(answer["path"])
        backup = json.loads(backup_file.read_text())
        assert backup["metadata"]["format"] == "zigpy/open-coordinator-backup"
        original = load_backup(backup_file).network_info
        await stack.stop_hub()

        # A new stick: blank network settings. The devices are still powered, in the air.
        settings.sim_stick.unlink()
        await restore_backup(settings, backup_file)
        stick = json.loads(settings.sim_stick.read_text())
        assert stick["pan_id"] == backup["pan_id"]
        assert stick["network_key"]["key"] == backup["network_key"]["key"]

        hub = await stack.start_hub()
        assert hub.app.state.network_info.pan_id == original.pan_id
        assert hub.app.state.network_info.network_key.key == original.network_key.key
        assert {str(ieee) for ieee in hub.tracker.devices} == before
        await stack.wait_hub_online()
        plug = await stack.device_by_model("SIM-PLUG-1")
        response = await stack.api.post(f"/api/v1/devices/{plug['id']}/commands",
                                        json={"capability": "switch", "command": "off"})
        assert response.status_code == 200, response.text
        assert response.json()["state"]["switch"]["on"] is False
        assert t.EUI64.convert(plug["ieee"]) in stack.sim.devices


async def test_restore_rejects_a_file_that_is_not_a_backup(tmp_path: Path,
                                                           mosquitto: BrokerAddress) -> None:
    from hub.radio import RadioError

    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": "world"}')
    settings = hub_settings(tmp_path, mosquitto, "hub-restore")
    try:
        await restore_backup(settings, bogus)
    except RadioError as exc:
        assert "not an open coordinator backup" in str(exc)
    else:
        raise AssertionError("restore accepted a bogus file")

