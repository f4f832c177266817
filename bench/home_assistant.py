"""What Home Assistant's local path costs the hub, and how fast it answers, beside the hub without it.

Two figures, each beside its baseline measured in the same run:

- attribute reports per second through the hub until the cloud acknowledged them (as
  bench.hub_events measures it: the same frames from simulated load generators, a real Mosquitto,
  bench.ledger_acker as the cloud), with Home Assistant's link on a second Mosquitto (a client
  subscribed to every state topic, as Home Assistant is) against the same hub without it,
  alternating rounds;
- a bulb switched from Home Assistant (its command topic on the local broker, until the state read
  back from the device arrives there) against the same command run by the hub's executor
  directly (the Zigbee exchange and read back alone).

    .venv/bin/python -m bench.home_assistant [--devices 50] [--frames 6000] [--rounds 3] [--commands 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from bench import hub_events
from bench.rig import Service, free_port, wait_port
from hub.app import Hub
from hub.settings import HubSettings
from wire.homeassistant import HaTopics

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalBroker:
    port: int
    password: str  # the hub's and Home Assistant's (one login is enough here)


@contextlib.contextmanager
def local_broker(workdir: Path) -> Iterator[LocalBroker]:
    """Home Assistant's broker: Mosquitto with a password file, no anonymous clients."""
    workdir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    passwords = workdir / "passwords"
    passwords.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "spoke", password], check=True,
                   capture_output=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
                    f"persistence false\nset_tcp_nodelay true\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    service = Service("mosquitto-ha", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                                       str(conf)], dict(os.environ), workdir / "mosquitto.log")
    service.start()
    try:
        wait_port(port)
        yield LocalBroker(port, password)
    finally:
        service.stop()


class HomeAssistant:
    """Subscribed to the hub's state topics as Home Assistant is; counts and waits for them."""

    def __init__(self, broker: LocalBroker, base: str) -> None:
        self.messages = 0
        self.latest: dict[str, bytes] = {}
        self._changed = threading.Condition()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"ha-{secrets.token_hex(3)}", protocol=mqtt.MQTTv311)
        self.client.username_pw_set("spoke", broker.password)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{base}/#", 0),
                                                            ("homeassistant/#", 0)])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("Home Assistant's client did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages += 1
            self.latest[msg.topic] = bytes(msg.payload)
            self._changed.notify_all()

    def wait_for(self, topic: str, check: Any, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        with self._changed:
            while not check(self.latest.get(topic)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing right on {topic}")
                self._changed.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def with_home_assistant(settings: HubSettings, broker: LocalBroker) -> HubSettings:
    return settings.model_copy(update={"ha_host": "127.0.0.1", "ha_port": broker.port,
                                       "ha_username": "spoke",
                                       "ha_password": SecretStr(broker.password)})


async def run_hub(settings: HubSettings, frames: list[Any], chunk: int,
                  within: float) -> hub_events.Run:
    """bench.hub_events' measured run, for a hub with these settings."""
    hub = Hub(settings)
    await hub.start()
    try:
        await asyncio.wait_for(hub.link.connected.wait(), 15)
        if hub.home_assistant is not None:
            await asyncio.wait_for(hub.home_assistant.connected.wait(), 15)
        await asyncio.sleep(1.0)  # the retained descriptions (and configs) go out first
        first = hub.store.last_seq
        started, cpu = time.perf_counter(), time.process_time()
        await hub_events.feed(hub.app, frames, chunk)
        fed = time.perf_counter() - started
        target = first + len(frames)
        deadline = time.monotonic() + within
        while hub.store.acked_seq < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"acknowledged {hub.store.acked_seq - first} of {len(frames)}")
            await asyncio.sleep(0.005)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return hub_events.Run(len(frames), seconds, cpu, hub.store.last_seq - first, fed)
    finally:
        await hub.stop()


@dataclass
class Rates:
    devices: int
    plain: list[hub_events.Run]
    with_ha: list[hub_events.Run]
    ha_messages: int


async def rates(devices: int, total: int, rounds: int, chunk: int, workdir: Path,
                cloud: hub_events.Broker, local: LocalBroker, within: float) -> Rates:
    template = workdir / f"paired-{devices}"
    await hub_events.pair(template, devices, cloud, within)
    frames = hub_events.make_frames(template, max(1, total // devices))
    out = Rates(devices, [], [], 0)
    for i in range(rounds):
        for kind in ("plain", "ha") if i % 2 == 0 else ("ha", "plain"):
            copy = workdir / f"run-{devices}-{i}-{kind}"
            shutil.copytree(template, copy)
            settings = hub_events.hub_settings(copy, devices, cloud)
            if kind == "ha":
                with subscriber(local, workdir / f"ha-{devices}-{i}.txt") as received:
                    out.with_ha.append(await run_hub(with_home_assistant(settings, local),
                                                     frames, chunk, within))
                out.ha_messages = len(received.read_bytes().splitlines()) - 1
            else:
                out.plain.append(await run_hub(settings, frames, chunk, within))
            shutil.rmtree(copy)
    return out


_SUBSCRIBER = """
import sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, password, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = sys.stdout.buffer
def subscribed(*_):
    out.write(b"subscribed\\n")
    out.flush()
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
c.username_pw_set("spoke", password)
c.on_connect = lambda c, *_: c.subscribe(topic)
c.on_subscribe = subscribed
c.on_message = lambda c, u, m: (out.write(m.topic.encode() + b"\\n"), out.flush())
c.connect("127.0.0.1", port)
c.loop_forever()
"""


@contextlib.contextmanager
def subscriber(local: LocalBroker, into: Path) -> Iterator[Path]:
    """Home Assistant reading every state message, in a process of its own (as it is): the
    hub's CPU time is the hub's alone. One line per message (JSON has no raw newlines)."""
    with into.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, str(local.port),
                                 local.password, f"spoke/{hub_events.HUB_ID}/#"],
                                stdout=out, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not into.read_bytes().startswith(b"subscribed"):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("Home Assistant's subscriber did not start")
                time.sleep(0.02)
            yield into
            time.sleep(0.3)  # the last messages through
        finally:
            proc.terminate()
            proc.wait(5)


@dataclass
class Latency:
    direct_ms: list[float]
    through_ha_ms: list[float]


async def latency(workdir: Path, cloud: hub_events.Broker, local: LocalBroker,
                  commands: int) -> Latency:
    """A bulb toggled ``commands`` times each way, alternating."""
    settings = hub_events.hub_settings(workdir / "bulb", 0, cloud).model_copy(
        update={"sim_devices": ["bulb"], "state_refresh_on_start": True, "sim_tick": 1.0})
    hub = Hub(with_home_assistant(settings, local))
    await hub.start()
    ha = HomeAssistant(local, f"spoke/{hub_events.HUB_ID}")
    out = Latency([], [])
    try:
        assert hub.home_assistant is not None
        await asyncio.wait_for(hub.home_assistant.connected.wait(), 15)
        [ieee] = list(hub.tracker.devices)
        topics = HaTopics("homeassistant", f"spoke/{hub_events.HUB_ID}")
        state_topic = topics.entity_state(ieee, "light")
        on = True
        for i in range(commands):
            on = not on
            word = "ON" if on else "OFF"
            if i % 2 == 0:
                started = time.perf_counter()
                ha.client.publish(topics.command(ieee, "light"), json.dumps({"state": word}))
                await asyncio.to_thread(ha.wait_for, state_topic, lambda p, w=word: p is not None
                                        and json.loads(p).get("state") == w)
                out.through_ha_ms.append((time.perf_counter() - started) * 1000)
            else:
                started = time.perf_counter()
                result = await hub.executor.run_local(ieee, "switch", word.lower(), {})
                out.direct_ms.append((time.perf_counter() - started) * 1000)
                if result.status != "succeeded":
                    raise RuntimeError(f"the bulb did not switch: {result.error}")
                await asyncio.to_thread(ha.wait_for, state_topic, lambda p, w=word: p is not None
                                        and json.loads(p).get("state") == w)
    finally:
        ha.close()
        await hub.stop()
    return out


def table(sizes: list[Rates], lat: Latency, command: str) -> str:
    lines = [f"$ {command}",
             "reports/s through the hub until acknowledged (wall clock; per CPU second)",
             f"{'devices':>7} {'frames':>7} {'hub':>7} {'hub+HA':>7} {'ratio':>6} {'hub/cpu-s':>9} "
             f"{'hub+HA/cpu-s':>12} {'ratio':>6} {'HA msgs':>7}  per round (hub|hub+HA)"]
    for s in sizes:
        plain, ha = (statistics.fmean(r.rate for r in s.plain),
                     statistics.fmean(r.rate for r in s.with_ha))
        plain_cpu, ha_cpu = (statistics.fmean(r.cpu_rate for r in s.plain),
                             statistics.fmean(r.cpu_rate for r in s.with_ha))
        rounds = "  ".join(f"{p.rate:.0f}|{h.rate:.0f}"
                           for p, h in zip(s.plain, s.with_ha, strict=True))
        lines.append(f"{s.devices:>7} {s.plain[0].frames:>7} {plain:>7.0f} {ha:>7.0f} "
                     f"{ha / plain:>6.2f} {plain_cpu:>9.0f} {ha_cpu:>12.0f} "
                     f"{ha_cpu / plain_cpu:>6.2f} {s.ha_messages:>7}  {rounds}")
    q = statistics.quantiles
    lines += ["", "a bulb switched (ms): p50, p90",
              f"  executor directly (Zigbee exchange + read back): "
              f"{statistics.median(lat.direct_ms):.1f}, {q(lat.direct_ms, n=10)[-1]:.1f}",
              f"  from Home Assistant's broker until its state there: "
              f"{statistics.median(lat.through_ha_ms):.1f}, {q(lat.through_ha_ms, n=10)[-1]:.1f}"]
    return "\n".join(lines)


async def main(devices: list[int], total: int, rounds: int, chunk: int, commands: int,
               within: float, workdir: Path) -> tuple[list[Rates], Latency]:
    from device_handlers.quirks import quirk_hooks

    await asyncio.to_thread(quirk_hooks, workdir / "zha-quirks-index.json")
    sizes = []
    with hub_events.mosquitto(workdir) as cloud, hub_events.acker(cloud), \
            local_broker(workdir / "ha-broker") as local:
        for n in devices:
            sizes.append(await rates(n, total, rounds, chunk, workdir, cloud, local, within))
        lat = await latency(workdir, cloud, local, commands)
    return sizes, lat


def cli(argv: list[str] | None = None) -> tuple[list[Rates], Latency]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="50", help="comma-separated device counts")
    parser.add_argument("--frames", type=int, default=6000, help="report frames per size")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs, alternating")
    parser.add_argument("--chunk", type=int, default=20, help="frames fed per loop turn")
    parser.add_argument("--commands", type=int, default=40, help="bulb commands, both ways")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="spoke-home-assistant-") as tmp:
        sizes, lat = asyncio.run(main([int(n) for n in args.devices.split(",")], args.frames,
                                      args.rounds, args.chunk, args.commands, args.timeout,
                                      Path(tmp)))
    command = " ".join(["python -m bench.home_assistant",
                        *(argv if argv is not None else sys.argv[1:])])
    print(table(sizes, lat, command))
    return sizes, lat


if __name__ == "__main__":
    cli()
