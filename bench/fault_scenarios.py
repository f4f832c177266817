"""Fault scenarios over real processes, shared by tests/test_faults.py (short) and bench/faults.py
(full length): while simulated load generators report at a fixed rate and commands are sent, break
the broker, the cloud or the hub (or lose the hub's store, or burst through the embedded broker),
then account for every event, per ledger epoch, and every command."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.rig import CommandLog, Rig, executions


@dataclass
class Outcome:
    scenario: str
    emitted: int
    stored: int
    lost: int
    duplicates: int
    recovery_s: float
    commands: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    executions: int = 0
    rate: float = 0.0  # events per second the hub emitted over the whole run
    epochs: int = 1
    resends: int = 0  # times the hub sent unacknowledged events again (since its last start)


# A fault breaks something, sends commands while it is broken, repairs it, and returns the
# monotonic time the repair began.
Fault = Callable[[Rig, CommandLog, str, float], float]


def _commands_during(rig: Rig, log: CommandLog, device_id: str, seconds: float,
                     worker: int = 0) -> None:
    """Send a command about every 0.5 s for ``seconds`` (the fault is in progress)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        log.send(rig, device_id, worker)
        time.sleep(0.5)


def broker_restart(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    assert rig.broker is not None
    rig.broker.stop(signal.SIGTERM)  # mosquitto saves its persistence file on the way out
    log.send(rig, device_id)
    repaired = time.monotonic()
    rig.start_broker()
    return repaired


def broker_down(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    assert rig.broker is not None
    rig.broker.stop(signal.SIGTERM)
    _commands_during(rig, log, device_id, down)
    repaired = time.monotonic()
    rig.start_broker()
    return repaired


def cloud_kill(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    rig.clouds[0].kill()
    _commands_during(rig, log, device_id, down)  # refused: the API is gone too
    repaired = time.monotonic()
    rig.start_cloud(0)
    return repaired


def hub_kill(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    assert rig.hub is not None
    rig.hub.kill()
    _commands_during(rig, log, device_id, down)  # 409 once the cloud knows the hub is away
    repaired = time.monotonic()
    rig.hub.start()
    rig.wait_hub_answers()
    return repaired


def broker_kill_cloud_away(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    """Events queue in the broker for a cloud that is away; the broker is then SIGKILLed before
    it saved them (a power cut, the OOM killer), restarted, and only then the cloud comes back."""
    assert rig.broker is not None
    rig.clouds[0].stop()  # a clean stop: the broker keeps its session and queues for it
    _commands_during(rig, log, device_id, down)  # refused: the API is away too
    rig.broker.kill()
    rig.start_broker()
    time.sleep(1.0)  # the hub reconnects to the restarted broker
    repaired = time.monotonic()
    rig.start_cloud(0)
    return repaired


def hub_store_lost(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    """The hub's store is lost while it is stopped (a new SD card, a restored backup): it comes
    back with the same id and devices and starts a new ledger epoch at seq 1."""
    assert rig.hub is not None
    rig.hub.stop()  # a clean stop: the hub waits for the cloud to acknowledge its outbox
    rig.replace_hub_store()
    _commands_during(rig, log, device_id, down)  # 409 once the cloud knows the hub is away
    repaired = time.monotonic()
    rig.hub.start()
    rig.wait_hub_answers()
    return repaired


def amqtt_burst(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    """3,000 reports at once (1,500 from each load generator) through the embedded amqtt broker,
    which acknowledges publishes it then fails to deliver."""
    rig.control("sim_burst", count=BURST // max(1, rig.loadgens))
    log.send(rig, device_id)
    return time.monotonic()


def worker_kill(rig: Rig, log: CommandLog, device_id: str, down: float) -> float:
    rig.clouds[1].kill()
    _commands_during(rig, log, device_id, down, worker=0)  # the other worker carries on
    repaired = time.monotonic()
    rig.start_cloud(1)
    return repaired


BURST = 3000

SCENARIOS: dict[str, tuple[Fault, int, str]] = {  # name -> (fault, cloud workers, broker)
    "broker restarted": (broker_restart, 1, "mosquitto"),
    "broker down": (broker_down, 1, "mosquitto"),
    "cloud SIGKILL": (cloud_kill, 1, "mosquitto"),
    "hub SIGKILL": (hub_kill, 1, "mosquitto"),
    "2 workers, 1 SIGKILL": (worker_kill, 2, "mosquitto"),
    "broker SIGKILL, cloud away": (broker_kill_cloud_away, 1, "mosquitto"),
    "hub store lost": (hub_store_lost, 1, "mosquitto"),
    "amqtt burst": (amqtt_burst, 1, "amqtt"),
}


def run(name: str, workdir: Path, *, down: float, load_before: float = 3.0,
        load_after: float = 3.0, tick: float = 0.05, loadgens: int = 2) -> Outcome:
    fault, workers, broker = SCENARIOS[name]
    rig = Rig(workdir, workers=workers, tick=tick, loadgens=loadgens,
              command_ttl=max(30.0, down + 20), broker_kind=broker)
    rig.start()
    started = time.monotonic()
    try:
        devices = rig.wait_hub_ready(loadgens + 1)
        bulb = next(d for d in devices if d["model"] == "SIM-BULB-CT")
        log = CommandLog()
        time.sleep(load_before)
        log.send(rig, bulb["id"])
        repaired = fault(rig, log, bulb["id"], down)
        rig.wait_caught_up(rig.emitted(), timeout=down + 120)
        recovery = time.monotonic() - repaired  # repair begun -> cloud has every event so far
        log.send(rig, bulb["id"])
        time.sleep(load_after)
        log.send(rig, bulb["id"])
        rig.quiesce()
        elapsed = time.monotonic() - started
        _settle_commands(rig, log, timeout=rig.command_ttl + 10)
        counts = rig.report()
        resends = int(rig.control("status")["status"]["metrics"].get("resends", 0))
        return Outcome(scenario=name, emitted=counts["emitted"], stored=counts["stored"],
                       lost=counts["lost"], duplicates=counts["duplicates"],
                       recovery_s=round(recovery, 1), commands=log.outcomes(rig),
                       refused=log.refused, executions=executions(rig, bulb["ieee"]),
                       rate=round(counts["emitted"] / elapsed, 1), epochs=counts["epochs"],
                       resends=resends)
    except BaseException:
        for service in [rig.broker, *rig.clouds, rig.hub]:
            if service is not None:
                print(f"---- {service.name} log ----\n{service.tail()}")
        raise
    finally:
        rig.stop()


def _settle_commands(rig: Rig, log: CommandLog, timeout: float) -> None:
    """Wait until no sent command is still pending (a result or its expiry decides each)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "pending" not in log.outcomes(rig):
            return
        time.sleep(0.5)
