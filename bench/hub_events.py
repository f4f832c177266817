"""Attribute reports per second through the hub, beside zigpy's own rate on the same frames.

The same stream of ZCL Report_Attributes frames (made by the simulated load generators, one report
per device in turn) is fed, in the same run and on copies of the same paired network, to:

- zigpy alone: a ControllerApplication on the simulated radio with a listener that does nothing,
  so the frames go through zigpy's parsing, attribute cache and database and nowhere else;
- the Spoke hub: zigpy, the device handlers, the ledger (outbox) and the MQTT link to a real
  Mosquitto, until a cloud acknowledged every event (LedgerAck). The acknowledging cloud is
  bench.ledger_acker in its own process: it acknowledges exactly as the cloud does (highest
  contiguous sequence number of the hub's epoch, retained, and on every status), advertises event
  batches as the cloud does by default (so the hub sends up to 100 events per message), but stores
  nothing, so the figure is the hub's and not the cloud's database's.

A hub's rate counts from the first frame fed until the cloud acknowledged the last event. Frames
are fed ``--chunk`` at a time per event-loop turn, the same for both.

    .venv/bin/python -m bench.hub_events [--devices 50,500] [--frames 6000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zigpy.types as t
from pydantic import SecretStr

from bench.rig import REPO, Service, free_port, render_mosquitto_conf, wait_port
from bench.tls import make_pki
from hub.app import Hub
from hub.radio import load_radio_controls, start_zigbee
from hub.settings import HubSettings

HUB_ID = "bench-hub"


@dataclass
class Broker:
    """Mosquitto with Spoke's configuration, the hub registered on it."""

    workdir: Path
    port: int
    username: str
    password: str

    @property
    def secret(self) -> Path:
        return self.workdir / "broker-secret"


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[Broker]:
    from cloud.broker_accounts import write_dynsec_config
    from cloud.broker_credentials import ensure_broker_secret
    from cloud.hub_registration import register_hub
    from cloud.settings import CloudSettings
    from cloud.storage import open_registry

    port = free_port()
    dynsec = workdir / "broker-dynsec.json"
    write_dynsec_config(dynsec, ensure_broker_secret(workdir / "broker-secret"), [])
    conf = workdir / "mosquitto.conf"
    conf.write_text(render_mosquitto_conf(port, workdir / "mosquitto-data", dynsec_file=dynsec,
                                          tls_port=free_port(), pki=make_pki(workdir / "pki")))
    service = Service("mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                                    str(conf)], dict(os.environ), workdir / "mosquitto.log")
    service.start()
    try:
        wait_port(port)
        settings = CloudSettings(database_url=f"sqlite:///{workdir / 'cloud.db'}",
                                 mqtt_host="127.0.0.1", mqtt_port=port,
                                 broker_secret_file=workdir / "broker-secret")
        with open_registry(settings) as registry:
            login = register_hub(settings, registry, HUB_ID)
        yield Broker(workdir, port, login.username, login.password)
    finally:
        service.stop()


@contextlib.contextmanager
def acker(broker: Broker) -> Iterator[subprocess.Popen[bytes]]:
    """bench.ledger_acker in its own process, subscribed before this returns."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.ledger_acker", "--port", str(broker.port), "--secret-file",
         str(broker.secret), "--hub-id", HUB_ID], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, cwd=REPO)
    assert proc.stdout is not None
    first = proc.stdout.readline().decode().strip()
    if first != "ready":
        proc.kill()
        raise RuntimeError(f"the acker did not start: {first}{proc.stdout.read().decode()}")
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def hub_settings(data_dir: Path, devices: int, broker: Broker | None) -> HubSettings:
    mqtt: dict[str, Any] = {}
    if broker is not None:
        mqtt = {"mqtt_port": broker.port, "mqtt_username": broker.username,
                "mqtt_password": SecretStr(broker.password)}
    return HubSettings(hub_id=HUB_ID, hub_data_dir=data_dir, radio="sim",
                       sim_devices=["loadgen"] * devices, sim_tick=3600.0,
                       state_refresh_on_start=False, control_channel=False, shutdown_drain=0,
                       **mqtt)


async def pair(data_dir: Path, devices: int, broker: Broker, within: float) -> None:
    """A network with ``devices`` load generators paired and adopted by a hub; its ledger is
    removed afterwards so that every measured hub starts a ledger of its own."""
    hub = Hub(hub_settings(data_dir, devices, broker))
    await hub.start()
    try:
        deadline = time.monotonic() + within
        while len(hub.tracker.devices) < devices:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(hub.tracker.devices)} of {devices} devices adopted")
            await asyncio.sleep(0.2)
    finally:
        await hub.stop()
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"outbox.db{suffix}").unlink(missing_ok=True)


def make_frames(data_dir: Path, per_device: int) -> list[t.ZigbeePacket]:
    """Report frames from the paired load generators, one per device in turn, as their
    simulated radios put them on the air."""
    from simulators.network import SimNetwork

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "sim-network.json"
        shutil.copy(data_dir / "sim-network.json", state)
        network = SimNetwork("bench-frames", state_path=state)
    try:
        frames: list[t.ZigbeePacket] = []
        loadgens = [d for d in network.devices.values() if hasattr(d.behaviour, "burst")]
        for device in loadgens:
            device.send = frames.append
        now = network.clock()
        for _ in range(per_device):
            for device in loadgens:
                device.behaviour.burst(device, 1, now)  # type: ignore[union-attr]
        return frames
    finally:
        network.close()


async def feed(app: Any, frames: list[t.ZigbeePacket], chunk: int) -> None:
    for start in range(0, len(frames), chunk):
        for packet in frames[start:start + chunk]:
            app.packet_received(packet)
        await asyncio.sleep(0)


class Frames:
    """The listener that does nothing but count what zigpy hands its listeners."""

    def __init__(self) -> None:
        self.count = 0

    def handle_message(self, *args: Any) -> None:
        self.count += 1


@dataclass
class Run:
    frames: int
    seconds: float
    cpu: float  # CPU seconds of this process (all its threads) over the same span
    events: int = 0  # hub: events written to the ledger
    fed: float = 0.0  # hub: seconds until every frame was handed to zigpy

    @property
    def rate(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Frames per CPU second: what the rate would be with a core to itself."""
        return self.frames / self.cpu


async def run_zigpy(data_dir: Path, devices: int, frames: list[t.ZigbeePacket],
                    chunk: int) -> Run:
    settings = hub_settings(data_dir, devices, None)
    controls = load_radio_controls(settings)
    zigbee = await start_zigbee(settings, controls)
    try:
        seen = Frames()
        zigbee.app.add_listener(seen)
        started, cpu = time.perf_counter(), time.process_time()
        await feed(zigbee.app, frames, chunk)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if seen.count != len(frames):
            raise RuntimeError(f"zigpy handed on {seen.count} of {len(frames)} frames")
        return Run(len(frames), seconds, cpu)
    finally:
        await zigbee.app.shutdown()
        if controls is not None:
            controls.close()


async def run_hub(data_dir: Path, devices: int, frames: list[t.ZigbeePacket], chunk: int,
                  broker: Broker, within: float) -> Run:
    hub = Hub(hub_settings(data_dir, devices, broker))
    await hub.start()
    try:
        await asyncio.wait_for(hub.link.connected.wait(), 15)
        await asyncio.sleep(1.0)  # the retained descriptions of every device go out first
        first = hub.store.last_seq
        started, cpu = time.perf_counter(), time.process_time()
        await feed(hub.app, frames, chunk)
        fed = time.perf_counter() - started
        target = first + len(frames)
        deadline = time.monotonic() + within
        while hub.store.acked_seq < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"acknowledged {hub.store.acked_seq - first} of {len(frames)} "
                                   f"events ({hub.store.last_seq - first} emitted)")
            await asyncio.sleep(0.005)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return Run(len(frames), seconds, cpu, hub.store.last_seq - first, fed)
    finally:
        await hub.stop()


@dataclass
class Size:
    devices: int
    zigpy: list[Run]
    hub: list[Run]

    @property
    def ratio(self) -> float:
        return _mean(self.hub, "rate") / _mean(self.zigpy, "rate")

    @property
    def cpu_ratio(self) -> float:
        return _mean(self.hub, "cpu_rate") / _mean(self.zigpy, "cpu_rate")


def _mean(runs: list[Run], what: str) -> float:
    return statistics.fmean(getattr(r, what) for r in runs)


async def measure(devices: int, total: int, rounds: int, chunk: int, workdir: Path,
                  broker: Broker, within: float) -> Size:
    template = workdir / f"paired-{devices}"
    await pair(template, devices, broker, within)
    frames = make_frames(template, max(1, total // devices))
    size = Size(devices, [], [])
    for i in range(rounds):
        for kind in ("zigpy", "hub") if i % 2 == 0 else ("hub", "zigpy"):
            copy = workdir / f"run-{devices}-{i}-{kind}"
            shutil.copytree(template, copy)
            if kind == "zigpy":
                size.zigpy.append(await run_zigpy(copy, devices, frames, chunk))
            else:
                size.hub.append(await run_hub(copy, devices, frames, chunk, broker, within))
            shutil.rmtree(copy)
    return size


def table(sizes: list[Size], command: str) -> str:
    lines = [f"$ {command}",
             "reports/s (wall clock; and per CPU second of the process, which other load on the "
             "machine disturbs less)",
             f"{'devices':>7} {'frames':>7} {'zigpy alone':>11} {'hub → acked':>11} {'hub/zigpy':>9}"
             f" {'zigpy/cpu-s':>11} {'hub/cpu-s':>9} {'ratio':>6}  per round (zigpy|hub)"]
    for s in sizes:
        rounds = "  ".join(f"{z.rate:.0f}|{h.rate:.0f}" for z, h in zip(s.zigpy, s.hub, strict=True))
        lines.append(
            f"{s.devices:>7} {s.zigpy[0].frames:>7} {_mean(s.zigpy, 'rate'):>11.0f} "
            f"{_mean(s.hub, 'rate'):>11.0f} {s.ratio:>9.2f} {_mean(s.zigpy, 'cpu_rate'):>11.0f} "
            f"{_mean(s.hub, 'cpu_rate'):>9.0f} {s.cpu_ratio:>6.2f}  {rounds}")
    return "\n".join(lines)


async def main(devices: list[int], total: int, rounds: int, chunk: int, within: float,
               workdir: Path) -> list[Size]:
    from device_handlers.quirks import quirk_hooks

    # The quirk index, as a running hub has it: its build is not part of any figure.
    await asyncio.to_thread(quirk_hooks, workdir / "zha-quirks-index.json")
    sizes = []
    with mosquitto(workdir) as broker, acker(broker):
        for n in devices:
            size = await measure(n, total, rounds, chunk, workdir, broker, within)
            for run in size.hub:
                if run.events != run.frames:
                    raise RuntimeError(f"{run.frames} frames became {run.events} events")
            sizes.append(size)
    return sizes


def cli(argv: list[str] | None = None) -> list[Size]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="50,500", help="comma-separated device counts")
    parser.add_argument("--frames", type=int, default=6000, help="report frames per size")
    parser.add_argument("--rounds", type=int, default=3, help="zigpy/hub pairs, alternating")
    parser.add_argument("--chunk", type=int, default=20, help="frames fed per loop turn")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="spoke-hub-events-") as tmp:
        sizes = asyncio.run(main([int(n) for n in args.devices.split(",")], args.frames,
                                 args.rounds, args.chunk, args.timeout, Path(tmp)))
    command = " ".join(["python -m bench.hub_events", *(argv if argv is not None else sys.argv[1:])])
    print(table(sizes, command))
    return sizes


if __name__ == "__main__":
    cli()
