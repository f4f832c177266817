"""Fault tests over real processes (Mosquitto or amqtt, `spoke cloud run`, `spoke hub run`): broker
restarted or down, cloud SIGKILLed, hub SIGKILLed, one of two cloud workers SIGKILLed, the broker
SIGKILLed while events wait for an absent cloud, the hub's store lost, a burst through amqtt —
while simulated load generators report at a fixed rate. Every event the hub emitted is stored
exactly once, and every command ran at most once and ended succeeded, failed or expired (never
silently lost)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.fault_scenarios import SCENARIOS, Outcome, run
from bench.rig import Rig, executions
from tests.conftest import MOSQUITTO

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(),
                                reason="mosquitto is not installed (apt-get install mosquitto)")

ENDED = {"succeeded", "failed", "expired", "timeout"}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_event_lost_or_duplicated_and_commands_run_at_most_once(
        scenario: str, tmp_path: Path) -> None:
    outcome: Outcome = run(scenario, tmp_path, down=4.0)
    print(outcome)
    assert outcome.emitted > 150, "the load generators should have produced a steady stream"
    assert outcome.lost == 0
    assert outcome.duplicates == 0
    assert outcome.stored == outcome.emitted

    sent = sum(outcome.commands.values())
    assert sent >= 3
    assert set(outcome.commands) <= ENDED, outcome.commands  # none left pending
    succeeded = outcome.commands.get("succeeded", 0)
    unknown = outcome.commands.get("timeout", 0) + outcome.commands.get("failed", 0)
    # Each succeeded command ran once on the device; a command whose answer was lost with a
    # killed process may have run once or not at all — never twice.
    assert succeeded <= outcome.executions <= succeeded + unknown, outcome
    if scenario in ("broker restarted", "2 workers, 1 SIGKILL"):
        assert outcome.commands.get("succeeded", 0) == sent, outcome.commands
    if scenario == "hub store lost":
        assert outcome.epochs == 2  # the old ledger and the new one, both complete
    if scenario == "amqtt burst":
        assert outcome.emitted >= 3000


def test_a_command_that_expires_while_the_hub_is_frozen_never_runs(tmp_path: Path) -> None:
    """The hub process is frozen (SIGSTOP: a stalled SD card, a debugger) while a command waits
    for it: the REST call answers 504 saying the command may still run until it expires; the hub,
    thawed after the expiry, reports it expired and the device never carries it out."""
    rig = Rig(tmp_path, loadgens=0, command_ttl=4.0, command_timeout=1.5)
    try:
        rig.start()
        [bulb] = rig.wait_hub_ready(1)
        assert rig.hub is not None and rig.hub.proc is not None
        url = f"/api/v1/devices/{bulb['id']}/commands"
        with rig.http() as api:
            assert api.post(url, json={"capability": "switch", "command": "toggle"}
                            ).status_code == 200  # the hub answers while it runs
            assert executions(rig, bulb["ieee"]) == 1
            rig.hub.proc.send_signal(signal.SIGSTOP)
            try:
                response = api.post(url, json={"capability": "switch", "command": "toggle"})
                assert response.status_code == 504, response.text
                body = response.json()
                assert (body["status"], body["may_still_run"]) == ("pending", True)
                expires_at = datetime.fromisoformat(body["expires_at"])
                assert f"command {body['id']} may still run until it expires at" in body["detail"]
                time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
            finally:
                rig.hub.proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 4.0  # within the cloud's grace before "timeout"
            status = "pending"
            while status == "pending" and time.monotonic() < deadline:
                time.sleep(0.1)
                status = api.get(f"/api/v1/commands/{body['id']}").json()["status"]
            command = api.get(f"/api/v1/commands/{body['id']}").json()
        assert (command["status"], command["error_code"]) == ("expired", "expired"), rig.hub.tail()
        time.sleep(0.5)
        assert executions(rig, bulb["ieee"]) == 1  # the first toggle only
    finally:
        rig.stop()
