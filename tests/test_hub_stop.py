"""The hub stops cleanly on SIGINT or SIGTERM, also while events wait for their group commit and
when the broker and the cloud are gone; a second signal exits at once. Whatever the hub accepted
is in its outbox afterwards or already stored by the cloud: no event is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.rig import Rig
from hub.app import Hub
from hub.settings import HubSettings
from tests.common import eventually
from tests.conftest import MOSQUITTO, BrokerAddress, _free_port
from tests.stack import running_stack

SPOKE = Path(sys.executable).with_name("spoke")
STOP_BOUND = 60.0  # seconds; generous: a liveness bound on a loaded machine, not a speed figure


def _outbox(db: Path) -> tuple[int, list[int]]:
    """(the ledger's last committed sequence number, the event sequence numbers in the outbox),
    read as a restarted hub would."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        row = c.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        seqs = [r[0] for r in c.execute("SELECT seq FROM outbox WHERE kind = 'event' ORDER BY id")]
    return (int(row[0]) if row else 0), seqs


async def test_stop_commits_the_events_queued_for_the_group_commit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Events wait up to a second for their commit; the hub stops meanwhile, with its broker
    unreachable: every event it numbered is committed, and no timer touches the closed store."""
    settings = HubSettings(
        hub_id="hub-stop", hub_data_dir=tmp_path / "hub", radio="sim", mqtt_host="127.0.0.1",
        mqtt_port=_free_port(), sim_devices=["loadgen", "loadgen", "loadgen"], sim_speed=100.0,
        sim_tick=0.05, outbox_flush_delay=1.0, control_channel=False,
        state_refresh_on_start=False)
    hub = Hub(settings)
    await hub.start()
    stopped = False
    try:
        await eventually(lambda: hub.store.queued > 0, within=30, what="events queued")
        committed, _ = _outbox(settings.outbox_db)
        queued = hub.store.queued
        with caplog.at_level(logging.WARNING):
            await hub.stop()
            stopped = True
            await asyncio.sleep(settings.outbox_flush_delay + 0.5)  # past any flush timer left behind
    finally:
        if not stopped:
            await hub.stop()
    last, seqs = _outbox(settings.outbox_db)
    assert last >= committed + queued > committed
    assert seqs == list(range(1, last + 1))  # nothing acknowledged or dropped: all of them
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def _started(tmp_path: Path, broker: str, **env: str) -> Rig:
    if broker == "mosquitto" and not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    rig = Rig(tmp_path, loadgens=2, broker_kind=broker, env=env)
    rig.start()
    rig.wait_hub_ready(3, timeout=120)
    return rig


def _wait_exit(rig: Rig, within: float) -> int:
    assert rig.hub is not None and rig.hub.proc is not None
    try:
        return rig.hub.proc.wait(within)
    except subprocess.TimeoutExpired:
        rig.hub.proc.send_signal(signal.SIGUSR1)  # its stacks, into its log
        time.sleep(1)
        rig.hub.proc.kill()
        rig.hub.proc.wait()
        raise AssertionError(f"the hub did not stop within {within:.0f} s\n"
                             f"{rig.hub.tail(80)}") from None


def _nothing_lost(rig: Rig) -> None:
    """Every event the hub numbered is stored by the cloud or still in the hub's outbox."""
    last, seqs = _outbox(rig.hub_dir / "outbox.db")
    epoch, _ = rig.ledger()
    _, stored = rig.stored()
    kept = set(seqs) | {seq for e, seq in stored if e == epoch}
    assert last > 0
    assert [seq for seq in range(1, last + 1) if seq not in kept] == []


@pytest.mark.parametrize(("broker", "sig", "frozen"), [("mosquitto", signal.SIGINT, False),
                                                       ("mosquitto", signal.SIGINT, True),
                                                       ("amqtt", signal.SIGTERM, False)])
def test_hub_stops_after_its_broker_and_cloud_went_away(
        tmp_path: Path, broker: str, sig: signal.Signals, frozen: bool) -> None:
    """The cloud is stopped, then the broker is stopped or frozen (SIGSTOP: the connection stays
    up and nothing answers); the hub still stops cleanly, with whatever it numbered kept."""
    rig = _started(tmp_path, broker)
    assert rig.broker is not None and rig.broker.proc is not None
    try:
        for cloud in rig.clouds:
            cloud.stop()
        if frozen:
            rig.broker.proc.send_signal(signal.SIGSTOP)
        else:
            rig.broker.stop()
        time.sleep(1.0)  # the hub goes on numbering events into its outbox
        assert rig.hub is not None and rig.hub.proc is not None
        rig.hub.proc.send_signal(sig)
        assert _wait_exit(rig, STOP_BOUND) == 0, rig.hub.tail(60)
        log = rig.hub.log_path.read_text()
        assert f"hub {rig.hub_id} stopped" in log and "Traceback" not in log, rig.hub.tail(60)
        _nothing_lost(rig)
    finally:
        if frozen:
            rig.broker.proc.send_signal(signal.SIGCONT)
        rig.stop()


def test_a_second_signal_exits_at_once_and_keeps_the_outbox(tmp_path: Path) -> None:
    """The broker is frozen (SIGSTOP: the connection stays up, nothing answers), so the first
    SIGINT's stop waits for acknowledgements within its bounds; the second SIGINT exits without
    waiting, outbox intact."""
    rig = _started(tmp_path, "mosquitto")
    assert rig.broker is not None and rig.broker.proc is not None
    try:
        for cloud in rig.clouds:
            cloud.stop()
        time.sleep(1.0)  # events the cloud never acknowledges
        rig.broker.proc.send_signal(signal.SIGSTOP)
        assert rig.hub is not None and rig.hub.proc is not None
        rig.hub.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_BOUND
        while "stopping the hub" not in rig.hub.log_path.read_text():
            assert time.monotonic() < deadline, rig.hub.tail(60)
            time.sleep(0.02)
        assert rig.hub.alive  # waiting for a broker that does not answer
        rig.hub.proc.send_signal(signal.SIGINT)
        assert _wait_exit(rig, STOP_BOUND) == 128 + signal.SIGINT, rig.hub.tail(60)
        assert "exiting without finishing the stop" in rig.hub.log_path.read_text()
        _nothing_lost(rig)
    finally:
        rig.broker.proc.send_signal(signal.SIGCONT)
        rig.stop()


async def test_stop_while_the_cloud_acknowledges_leaves_nothing_behind(
        tmp_path: Path, mosquitto: BrokerAddress, caplog: pytest.LogCaptureFixture) -> None:
    """The hub stops while the cloud (in this process, as in `spoke demo`) acknowledges its
    events and more wait for their commit: after the stop nothing touches its closed store."""
    async with running_stack(tmp_path, mosquitto, start_hub=False) as stack:
        hub = await stack.start_hub(sim_devices=["loadgen", "loadgen", "loadgen"],
                                    sim_speed=100.0, sim_tick=0.05, outbox_flush_delay=1.0,
                                    state_refresh_on_start=False)
        await eventually(lambda: hub.publisher.acks > 3 and hub.store.queued > 0, within=60,
                         what="events acknowledged by the cloud and more queued")
        with caplog.at_level(logging.WARNING):
            await stack.stop_hub()
            await asyncio.sleep(hub.settings.outbox_flush_delay + 0.5)
        last, seqs = _outbox(hub.settings.outbox_db)
        assert seqs == list(range(last - len(seqs) + 1, last + 1))  # the unacknowledged tail
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors]


def test_sigint_stops_a_hub_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A program started in the background by a shell inherits SIGINT ignored; the hub still
    stops on it (as on SIGTERM), here with no broker to reach."""
    log_path = tmp_path / "hub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    env.update(SPOKE_MQTT_HOST="127.0.0.1", SPOKE_MQTT_PORT=str(_free_port()),
               SPOKE_HUB_ID="hub-ignored", SPOKE_SIM_DEVICES="loadgen",
               SPOKE_CONFIG=str(tmp_path / "none.toml"))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(SPOKE), "hub", "run", "--radio", "sim", "--data-dir", str(tmp_path / "hub")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + STOP_BOUND * 2
        while "virtual devices joined" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(STOP_BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, log_path.read_text()[-3000:]
    assert "hub hub-ignored stopped" in log_path.read_text()
