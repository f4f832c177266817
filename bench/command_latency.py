"""Command latency: the cloud's own share of a REST command, beside a bare MQTT request/response
over the same broker measured in alternate rounds of the same run.

For each broker (Mosquitto with Spoke's configuration when installed, and the embedded amqtt) it
starts the broker, a `spoke cloud run` and a `spoke hub run --radio sim` with a simulated
thermostat, each its own process as in production (bench.rig), then alternates rounds of:

- bare: two paho clients on the same broker, one answering the other at once from its network
  thread (QoS 1 both ways, TCP_NODELAY, payloads the size of a real command and of its result).
  They log in as the cloud and talk on cloud -> hub topics of a hub that does not exist, so no
  Spoke process sees them. This is the floor any command over MQTT stands on.
- REST: ``POST /api/v1/devices/{id}/commands`` (thermostat ``set_heating_setpoint``) over one
  kept-alive HTTP connection (TCP_NODELAY); the answer is the state read back from the device, and
  its ``duration_ms`` is the hub's Zigbee exchange and read back.

The cloud's share is the round trip minus ``duration_ms``: HTTP, the API, the database, MQTT both
ways, the hub's handling around the Zigbee exchange, the result's way back. The table gives p50,
p95 and p99 of each and the share over the bare exchange. Both kinds go ``--gap`` seconds apart:
zigpy drops a frame identical to one it saw within 10 s, and a device's "write succeeded" answer
repeats once the 256 ZCL sequence numbers wrap, so commands stay below ~128 per 10 s.

    .venv/bin/python -m bench.command_latency [--n 200] [--rounds 4] [--brokers mosquitto,amqtt]
        [--profile DIR]   (py-spy records the cloud and the hub, raw stacks, while it measures)
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.rig import MOSQUITTO, Rig
from cloud.broker_credentials import cloud_password, load_broker_secret
from cloud.broker_rules import CLOUD_USERNAME
from wire.contract import Command, CommandResult, CommandStatus, Topics

WARM_UP = 5  # of each kind, not counted
ECHO_HUB = "bench-echo"  # never registered, never connected: only the two bare clients use it


@dataclass
class Samples:
    bare: list[float] = field(default_factory=list)  # ms
    rest: list[float] = field(default_factory=list)  # ms
    hub: list[float] = field(default_factory=list)  # the results' duration_ms

    @property
    def share(self) -> list[float]:
        return [r - h for r, h in zip(self.rest, self.hub, strict=True)]


@dataclass
class BrokerResult:
    broker: str
    samples: Samples

    def row(self, name: str) -> list[float]:
        return {"bare": self.samples.bare, "rest": self.samples.rest, "hub": self.samples.hub,
                "share": self.samples.share}[name]

    def ratio(self, q: float) -> float:
        return pct(self.samples.share, q) / pct(self.samples.bare, q)


def pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class BareExchange:
    """A requester and a responder, two paho clients on the broker, QoS 1 both ways."""

    def __init__(self, port: int, password: str) -> None:
        self.request_topic = Topics.commands(ECHO_HUB)
        self.reply_topic = Topics.acks(ECHO_HUB)
        now = datetime.now(UTC)
        self.request = Command(id=uuid.uuid4().hex, hub_id=ECHO_HUB, ieee="00:12:4b:00:01:02:03:04",
                               capability="thermostat", command="set_heating_setpoint",
                               args={"value": 21.5}, issued_at=now,
                               expires_at=now + timedelta(seconds=30)).to_bytes()
        self.reply = CommandResult(
            id=uuid.uuid4().hex, hub_id=ECHO_HUB, ieee="00:12:4b:00:01:02:03:04",
            status=CommandStatus.SUCCEEDED, duration_ms=13.5,
            state={"thermostat": {"local_temperature": 19.14, "heating_setpoint": 21.5,
                                  "cooling_setpoint": 26.0, "mode": "heat",
                                  "running_state": "heat"}}).to_bytes()
        self._answered = threading.Event()
        self.responder = self._client("responder", port, password, self._answer,
                                      self.request_topic)
        self.requester = self._client("requester", port, password, self._got_reply,
                                      self.reply_topic)

    def _client(self, role: str, port: int, password: str, on_message: Any,
                topic: str) -> mqtt.Client:
        subscribed = threading.Event()
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=f"bench-{role}-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv311)
        client.username_pw_set(CLOUD_USERNAME, password)
        client.on_socket_open = _no_delay
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError(f"the bare {role} could not subscribe to {topic}")
        return client

    def _answer(self, client: mqtt.Client, _userdata: Any, _msg: mqtt.MQTTMessage) -> None:
        client.publish(self.reply_topic, self.reply, qos=1)

    def _got_reply(self, _client: mqtt.Client, _userdata: Any, _msg: mqtt.MQTTMessage) -> None:
        self._answered.set()

    def once(self) -> float:
        """One request and its answer, in ms."""
        self._answered.clear()
        started = time.perf_counter()
        self.requester.publish(self.request_topic, self.request, qos=1)
        if not self._answered.wait(10):
            raise TimeoutError("the bare responder did not answer within 10 s")
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        for client in (self.requester, self.responder):
            client.disconnect()
            client.loop_stop()


class RestCommands:
    """Setpoint commands to the thermostat over one kept-alive HTTP connection."""

    def __init__(self, rig: Rig, device_id: str) -> None:
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.http = httpx.Client(base_url=rig.api(), transport=transport, timeout=30,
                                 headers={"Authorization": f"Bearer {rig.token}"})
        self.path = f"/api/v1/devices/{device_id}/commands"
        self.sent = 0

    def once(self) -> tuple[float, float]:
        """One command: (round trip, the hub's duration_ms), in ms."""
        value = 18.0 + (self.sent % 20) * 0.5
        self.sent += 1
        started = time.perf_counter()
        r = self.http.post(self.path, json={"capability": "thermostat",
                                            "command": "set_heating_setpoint",
                                            "args": {"value": value}})
        elapsed = (time.perf_counter() - started) * 1000
        body = r.json()
        if r.status_code != 200 or body["state"]["thermostat"]["heating_setpoint"] != value:
            raise RuntimeError(f"command answered {r.status_code}: {body}")
        return elapsed, float(body["duration_ms"])

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def profiling(rig: Rig, out: Path | None) -> Iterator[None]:
    """py-spy recording the cloud and the hub (raw collapsed stacks, by thread) while inside."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    targets = {"cloud": rig.clouds[0].proc, "hub": rig.hub.proc if rig.hub else None}
    recorders = []
    for name, proc in targets.items():
        assert proc is not None
        path = out / f"{rig.broker_kind}-{name}.txt"
        recorders.append(subprocess.Popen(
            [py_spy, "record", "--pid", str(proc.pid), "--rate", "1000", "--nonblocking",
             "--threads", "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(30)


def measure(kind: str, n: int, rounds: int, gap: float, profile: Path | None) -> BrokerResult:
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="spoke-cmdlat-") as tmp:
        rig = Rig(Path(tmp), loadgens=0, devices=("thermostat",), broker_kind=kind, tick=5.0,
                  hub_id=f"bench-{kind}", command_timeout=10)
        try:
            rig.start()
            [device] = rig.wait_hub_ready(1)
            password = cloud_password(load_broker_secret(rig.broker_secret))
            bare = BareExchange(rig.mqtt_port, password)
            rest = RestCommands(rig, device["id"])
            try:
                for _ in range(WARM_UP):
                    bare.once()
                    time.sleep(gap)
                    rest.once()
                    time.sleep(gap)
                per_round = [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]
                with profiling(rig, profile):
                    for count in per_round:
                        for _ in range(count):
                            samples.bare.append(bare.once())
                            time.sleep(gap)
                        for _ in range(count):
                            rtt, hub_ms = rest.once()
                            samples.rest.append(rtt)
                            samples.hub.append(hub_ms)
                            time.sleep(gap)
            finally:
                rest.close()
                bare.close()
        finally:
            rig.stop()
    return BrokerResult(kind, samples)


def table(results: list[BrokerResult], command: str, n: int, rounds: int, gap: float) -> str:
    lines = [f"command latency: {n} bare MQTT request/responses and {n} REST commands per broker, "
             f"in {rounds} alternate rounds, {gap:g} s apart (ms)",
             f"  {command}",
             f"{'broker':<10} {'':<28} {'p50':>7} {'p95':>7} {'p99':>7}"]
    names = {"bare": "bare MQTT request/response", "rest": "REST command round trip",
             "hub": "hub's duration_ms", "share": "cloud's share (rtt - hub)"}
    for result in results:
        for i, (name, label) in enumerate(names.items()):
            values = result.row(name)
            lines.append(f"{result.broker if i == 0 else '':<10} {label:<28} "
                         f"{pct(values, 0.5):7.1f} {pct(values, 0.95):7.1f} "
                         f"{pct(values, 0.99):7.1f}")
        lines.append(f"{'':<10} {'share / bare':<28} {result.ratio(0.5):6.1f}x {'':>7} "
                     f"{result.ratio(0.99):6.1f}x")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> list[BrokerResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200, help="of each kind, per broker")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between two exchanges")
    found = ["mosquitto"] if shutil.which(MOSQUITTO) else []
    parser.add_argument("--brokers", default=",".join([*found, "amqtt"]))
    parser.add_argument("--profile", type=Path, default=None,
                        help="a folder for py-spy's raw stacks of the cloud and the hub")
    args = parser.parse_args(argv)
    if args.n < args.rounds:
        parser.error("--n must be at least --rounds")
    results = [measure(kind, args.n, args.rounds, args.gap, args.profile)
               for kind in args.brokers.split(",")]
    command = " ".join(["python -m bench.command_latency",
                        *(argv if argv is not None else sys.argv[1:])])
    print(table(results, command, args.n, args.rounds, args.gap))
    return results


if __name__ == "__main__":
    cli()
