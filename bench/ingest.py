"""Cloud ingest throughput: what one `spoke cloud run` stores per second, beside what a bare MQTT
subscriber receives per second from the same publishers, measured in the same run.

Mosquitto runs with Spoke's shipped configuration. The simulated hubs log in with their own broker
accounts (generation 1, written into the broker's first dynamic-security file as `spoke cloud broker
init` writes them for registered hubs), so the broker checks every publication against the hubs'
real access rules, and publish valid wire messages from a separate process (one paho client and
thread per hub). Rounds alternate, so that drift and the other load on the machine hit both alike:

- raw: a bare paho subscriber (the cloud's broker account, QoS 1, acknowledging at once) counts the
  messages it receives, from the publishers' start until the last one;
- cloud: a `spoke cloud run` process on a fresh database (SQLite, and PostgreSQL with --postgres)
  stores them; timed from the publishers' start until every hub's ledger mark covers its last event.
  Then every event must be stored exactly once, and nothing kept as a dead letter.

Events (default): every hub first publishes its devices' retained descriptions (the cloud registers
them from the broker's retained copies before the timed part), then ``--events`` events each.

Batches (``--batch N``): the hubs publish their events N to a message (``EventBatch``, as hubs do once
the cloud advertises batches); the raw subscriber counts the events in each message (not the
messages), and each round also runs the cloud on single-event messages from the same publishers, the
rate batches are measured against. Rates are always events per second.

Columns: ``published``, when the broker had acknowledged the publishers' last event; ``per tx``,
events per ingest transaction; ``CPU``, the share of one core the subscriber (or the cloud process)
used, and per event: on a busy machine the processes share the cores, so the CPU an event costs
decides the rate.

Devices (``--devices``): every hub publishes ``--per-hub`` retained device descriptions once, before
the rounds; each subscriber then receives all of them as the broker's retained copies when it
subscribes (what a cloud meets when it starts), timed from the first message until the last one is
received (raw) or registered (cloud: from its first ingest transaction, by the rows' times).

    .venv/bin/python -m bench.ingest [--hubs 20] [--events 1000] [--rounds 2]
        [--batch 100 [--no-singles]] [--ingest-batch MESSAGES]  (SPOKE_INGEST_BATCH_SIZE)
        [--postgres postgresql+psycopg://user:pw@host/db]  (a role that may create databases)
        [--profile DIR]  (py-spy's collapsed stacks of each cloud process while it holds the GIL,
                          one file per phase, when py-spy is installed)
    .venv/bin/python -m bench.ingest --devices [--hubs 1000] [--per-hub 100] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.rig import (
    SPOKE,
    Service,
    free_port,
    hub_accounts_broker,
    wait_port,
)
from cloud.broker_credentials import cloud_password
from cloud.broker_rules import CLOUD_USERNAME
from wire.contract import BatchedEvent, DeviceInfo, Event, EventBatch, Topics, hub_client_id

EPOCH = "bench"
_POLL = 0.05  # seconds between looks at the cloud's database
_INFLIGHT = 100  # QoS 1 messages a publisher has unacknowledged (the broker's max_inflight_messages)


# ------------------------------------------------------------------------------------ the fleet
@dataclass(frozen=True)
class Fleet:
    """The simulated hubs and what each of them publishes."""

    hubs: int
    devices_per_hub: int
    events_per_hub: int = 0
    batch: int = 1  # events per message (EventBatch when above 1)

    @property
    def hub_ids(self) -> list[str]:
        return [f"bench-hub-{i:04d}" for i in range(self.hubs)]

    @property
    def devices(self) -> int:
        return self.hubs * self.devices_per_hub

    @property
    def events(self) -> int:
        return self.hubs * self.events_per_hub

    @staticmethod
    def ieee(hub: int, device: int) -> str:
        raw = f"{hub:06x}{device:010x}"
        return ":".join(raw[i:i + 2] for i in range(0, 16, 2))

    def descriptions(self, hub: int) -> list[tuple[str, bytes]]:
        hub_id = self.hub_ids[hub]
        out = []
        for d in range(self.devices_per_hub):
            ieee = self.ieee(hub, d)
            info = DeviceInfo(hub_id=hub_id, ieee=ieee, nwk=d % 0xFFF0 + 1, manufacturer="Spoke",
                              model="bench-meter", name=f"meter {d}", power_source="mains",
                              capabilities={"power": {"power": 0.0}})
            out.append((Topics.device(hub_id, ieee), info.to_bytes()))
        return out

    def event_messages(self, hub: int) -> list[tuple[str, bytes]]:
        hub_id = self.hub_ids[hub]
        topic = Topics.events(hub_id)
        start = datetime.now(UTC)
        out = []
        if self.batch > 1:
            for first in range(1, self.events_per_hub + 1, self.batch):
                last = min(first + self.batch, self.events_per_hub + 1)
                batch = EventBatch(hub_id=hub_id, epoch=EPOCH, events=[
                    BatchedEvent(seq=seq, ts=start + timedelta(milliseconds=seq),
                                 ieee=self.ieee(hub, seq % self.devices_per_hub),
                                 capability="power", attribute="power", value=float(seq % 3000),
                                 unit="W") for seq in range(first, last)])
                out.append((topic, batch.to_bytes()))
            return out
        for seq in range(1, self.events_per_hub + 1):
            ev = Event(hub_id=hub_id, epoch=EPOCH, seq=seq, ts=start + timedelta(milliseconds=seq),
                       ieee=self.ieee(hub, seq % self.devices_per_hub), capability="power",
                       attribute="power", value=float(seq % 3000), unit="W")
            out.append((topic, ev.to_bytes()))
        return out


# ------------------------------------------------------------------------------------ publishers
def _hub_client(port: int, hub_id: str, password: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=hub_client_id(hub_id), protocol=mqtt.MQTTv5)
    client.username_pw_set(hub_client_id(hub_id), password)
    client.max_inflight_messages_set(_INFLIGHT)
    client.connect("127.0.0.1", port, keepalive=60, clean_start=True)
    client.loop_start()
    return client


def _publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]], retain: bool) -> None:
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
        if not info.is_published():
            raise RuntimeError(f"the broker did not acknowledge a publication to {info}")


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish_retained(port: int, fleet: Fleet, passwords: dict[str, str], workers: int = 16) -> None:
    """Every hub's retained device descriptions, a few hubs at a time (not timed)."""
    todo = list(range(fleet.hubs))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                if not todo or errors:
                    return
                hub = todo.pop()
            hub_id = fleet.hub_ids[hub]
            try:
                client = _hub_client(port, hub_id, passwords[hub_id])
                try:
                    _publish_all(client, fleet.descriptions(hub), retain=True)
                finally:
                    _close(client)
            except BaseException as exc:  # reported by the caller
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(min(workers, fleet.hubs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _publisher_process(port: int, fleet: Fleet, passwords: dict[str, str], ready: MpEvent,
                       go: MpEvent, done: MpEvent, took: Any) -> None:
    """Every hub connected (its events encoded beforehand); on ``go`` all publish at once."""
    clients = [_hub_client(port, hub_id, passwords[hub_id]) for hub_id in fleet.hub_ids]
    messages = [fleet.event_messages(hub) for hub in range(fleet.hubs)]
    try:
        deadline = time.monotonic() + 30
        while not all(c.is_connected() for c in clients):
            if time.monotonic() > deadline:
                raise TimeoutError("publishers could not connect")
            time.sleep(0.01)
        ready.set()
        go.wait()
        started = time.perf_counter()
        threads = [threading.Thread(target=_publish_all, args=(c, m, False))
                   for c, m in zip(clients, messages, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took.value = time.perf_counter() - started
        done.set()
    finally:
        for c in clients:
            _close(c)


@dataclass
class Publishers:
    go: MpEvent  # set: every hub publishes its events
    took: Any  # then: seconds until the broker acknowledged the last of them (a shared double)


@contextlib.contextmanager
def publishers(port: int, fleet: Fleet, passwords: dict[str, str]) -> Iterator[Publishers]:
    """A process holding every hub's connection, ready to publish."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    took = ctx.Value("d", 0.0)
    proc = ctx.Process(target=_publisher_process,
                       args=(port, fleet, passwords, ready, go, done, took), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"publishers did not get ready (exit code {proc.exitcode})")
        yield Publishers(go, took)
        go.set()  # a caller that failed early: let the process end
        proc.join(300)
        if proc.exitcode != 0 or not done.is_set():
            raise RuntimeError(f"publishers failed (exit code {proc.exitcode})")
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(10)


# ------------------------------------------------------------------------------------ subscribers
@dataclass
class _Counter:
    expected: int
    batches: bool = False  # count the events in each message, not the messages
    received: int = 0
    first: float = 0.0
    last: float = 0.0
    finished: threading.Event = field(default_factory=threading.Event)

    def on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        now = time.perf_counter()
        if not self.received:
            self.first = now
        self.received += msg.payload.count(b'"seq":') if self.batches else 1
        if self.received >= self.expected:
            self.last = now
            self.finished.set()


def _raw_subscriber(port: int, secret: bytes, topic_filter: str, counter: _Counter) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"bench-raw-{secrets.token_hex(3)}", protocol=mqtt.MQTTv5)
    client.username_pw_set(CLOUD_USERNAME, cloud_password(secret))
    client.on_message = counter.on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(topic_filter, qos=1)
    client.connect("127.0.0.1", port, keepalive=60, clean_start=True)
    client.loop_start()
    if not subscribed.wait(30):
        _close(client)
        raise TimeoutError("the raw subscriber could not subscribe")
    return client


def _filter(kind: str) -> str:
    return next(f for f in Topics.cloud_ingest_filters() if f.endswith(kind))


# ------------------------------------------------------------------------------------ databases
class Databases:
    """A fresh database for each cloud process: SQLite files, or PostgreSQL databases made (and
    dropped at the end) on the server of ``postgres_url``."""

    def __init__(self, workdir: Path, postgres_url: str | None, sqlite: bool = True) -> None:
        self.workdir = workdir
        self._server: Engine | None = None
        self._created: list[str] = []
        if postgres_url:
            self._server = create_engine(postgres_url, isolation_level="AUTOCOMMIT",
                                         poolclass=NullPool)
        self.backends = (["sqlite"] if sqlite else []) + (["postgresql"] if postgres_url else [])

    def new(self, backend: str) -> str:
        name = f"spoke_bench_{os.getpid()}_{len(self._created)}"
        self._created.append(name)
        if backend == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        assert self._server is not None
        with self._server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        return self._server.url.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        if self._server is None:
            return
        with self._server.connect() as conn:
            for name in self._created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._server.dispose()


def _count(engine: Engine, sql: str, **params: Any) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar() or 0)
    except Exception:  # the cloud has not made its tables yet
        return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), 0 where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """This process's CPU time (the raw subscriber's, as the rest of it waits meanwhile)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------ the bench
@dataclass
class Phase:
    what: str  # "raw" or a database backend
    round: int
    messages: int
    seconds: float
    stored: int = 0  # events (or devices) in the cloud's database afterwards
    dead_letters: int = 0
    batches: int = 0  # the cloud's ingest transactions (its spoke_ingest_batches)
    cpu_seconds: float = 0.0  # the cloud process's CPU time (user + system) in the timed part
    published_seconds: float = 0.0  # until the broker acknowledged the publishers' last event
    broker_cpu_seconds: float = 0.0
    per_message: int = 1  # events per MQTT message

    @property
    def path(self) -> str:
        """What was measured: the subscriber or the cloud on a backend, and the batching."""
        what = "bare paho subscriber" if self.what == "raw" else f"spoke cloud ({self.what})"
        return what if self.per_message == 1 else f"{what}, {self.per_message}/msg"

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Bench:
    workdir: Path
    fleet: Fleet
    devices_mode: bool = False
    postgres_url: str | None = None
    profile_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra SPOKE_* settings for the cloud
    port: int = field(default_factory=free_port)
    secret: bytes = b""
    passwords: dict[str, str] = field(default_factory=dict)
    broker: Service | None = None
    _cloud_runs: int = 0

    def start(self) -> None:
        self.secret, self.passwords, self.broker = hub_accounts_broker(
            self.workdir, self.port, list(self.fleet.hub_ids))
        wait_port(self.port)
        publish_retained(self.port, self.fleet, self.passwords)

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def measured(self, phase: Callable[..., Phase], *args: Any) -> Phase:
        """The phase, with the broker's CPU time during it."""
        assert self.broker is not None and self.broker.proc is not None
        cpu = _cpu_seconds(self.broker.proc.pid)
        result = phase(*args)
        result.broker_cpu_seconds = _cpu_seconds(self.broker.proc.pid) - cpu
        return result

    # raw -------------------------------------------------------------------------------------
    def raw(self, rnd: int) -> Phase:
        if self.devices_mode:
            counter = _Counter(self.fleet.devices)
            cpu = _own_cpu_seconds()
            client = _raw_subscriber(self.port, self.secret, _filter("devices/+"), counter)
            try:
                if not counter.finished.wait(600):
                    raise TimeoutError(f"raw subscriber got {counter.received} descriptions")
                cpu = _own_cpu_seconds() - cpu
            finally:
                _close(client)
            return Phase("raw", rnd, counter.received, counter.last - counter.first,
                         cpu_seconds=cpu)
        counter = _Counter(self.fleet.events, batches=self.fleet.batch > 1)
        client = _raw_subscriber(self.port, self.secret, _filter("events"), counter)
        try:
            with publishers(self.port, self.fleet, self.passwords) as pub:
                cpu = _own_cpu_seconds()
                started = time.perf_counter()
                pub.go.set()
                if not counter.finished.wait(600):
                    raise TimeoutError(f"raw subscriber got {counter.received} events")
                cpu = _own_cpu_seconds() - cpu
        finally:
            _close(client)
        return Phase("raw", rnd, counter.received, counter.last - started, cpu_seconds=cpu,
                     published_seconds=pub.took.value, per_message=self.fleet.batch)

    # cloud -----------------------------------------------------------------------------------
    def cloud(self, backend: str, rnd: int, databases: Databases, batch: int | None = None
              ) -> Phase:
        """The cloud on a fresh database of ``backend``; ``batch``: events per message, when not
        the fleet's own."""
        fleet = self.fleet if batch is None else replace(self.fleet, batch=batch)
        url = databases.new(backend)
        self._cloud_runs += 1
        api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
        env.update(SPOKE_CONFIG=str(self.workdir / "none.toml"), SPOKE_DATABASE_URL=url,
                   SPOKE_MQTT_HOST="127.0.0.1", SPOKE_MQTT_PORT=str(self.port),
                   SPOKE_MQTT_PROTOCOL="5", SPOKE_MQTT_CLIENT_ID="spoke-cloud-bench",
                   SPOKE_MQTT_SESSION_EXPIRY="0",  # nothing queues for it between its runs
                   SPOKE_BROKER_SECRET_FILE=str(self.workdir / "broker-secret"),
                   SPOKE_METRICS_TOKEN_FILE=str(self.workdir / "metrics-token"),
                   SPOKE_CLOUD_PORT=str(api_port), SPOKE_RATE_LIMIT_READS="off",
                   SPOKE_RATE_LIMIT_COMMANDS="off", **self.env)
        cloud = Service(f"cloud-{self._cloud_runs}", [SPOKE, "cloud", "run"], env,
                        self.workdir / f"cloud-{self._cloud_runs}.log")
        engine = create_engine(url, poolclass=NullPool)
        profiler: subprocess.Popen[bytes] | None = None
        with contextlib.ExitStack() as stack:
            # the publishers connect while the cloud starts
            pub = None if self.devices_mode else stack.enter_context(
                publishers(self.port, fleet, self.passwords))
            cloud.start()
            stack.callback(cloud.stop)
            self._wait_ready(cloud, api_port)
            assert cloud.proc is not None
            profiler = self._profile(cloud.proc.pid, f"{backend}-{fleet.batch}permsg-round{rnd}")
            if pub is None:
                phase = self._register_devices(engine, backend, rnd, cloud.proc.pid)
            else:
                phase = self._store_events(engine, pub, backend, rnd, cloud.proc.pid)
                phase.per_message = fleet.batch
            phase.dead_letters = _count(engine, "SELECT count(*) FROM dead_letters")
            phase.batches = self._batches(api_port)
        if pub is not None:  # the publishers' process has ended: its figure is final
            phase.published_seconds = pub.took.value
        if profiler is not None:
            profiler.wait(60)
        engine.dispose()
        return phase

    def _wait_ready(self, cloud: Service, api_port: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and cloud.alive:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"the cloud did not become ready\n{cloud.tail()}")

    def _batches(self, api_port: int) -> int:
        token = (self.workdir / "metrics-token").read_text().strip()
        text_format = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=10,
                                headers={"Authorization": f"Bearer {token}"}).text
        for line in text_format.splitlines():
            if line.startswith("spoke_ingest_batches_total "):
                return int(float(line.split()[1]))
        return 0

    def _profile(self, pid: int, name: str) -> subprocess.Popen[bytes] | None:
        if self.profile_dir is None:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            print("py-spy is not installed: no profile", file=sys.stderr)
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--gil", "--format",
                                 "raw", "--output", str(self.profile_dir / f"{name}.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _wait_for(self, engine: Engine, sql: str, target: int, what: str, timeout: float = 600,
                  **params: Any) -> float:
        deadline = time.monotonic() + timeout
        while True:
            found = _count(engine, sql, **params)
            if found >= target:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cloud stored {found} of {target} {what}")
            time.sleep(_POLL)

    def _store_events(self, engine: Engine, pub: Publishers, backend: str, rnd: int,
                      pid: int) -> Phase:
        fleet = self.fleet
        # the retained descriptions reach the new database first, as they would from hubs
        self._wait_for(engine, "SELECT count(*) FROM devices", fleet.devices, "devices")
        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        pub.go.set()
        ended = self._wait_for(
            engine, "SELECT count(*) FROM ledgers WHERE epoch = :e AND mark >= :k",
            fleet.hubs, "hubs' ledgers", e=EPOCH, k=fleet.events_per_hub)
        cpu = _cpu_seconds(pid) - cpu
        stored = _count(engine, "SELECT count(*) FROM events")
        return Phase(backend, rnd, fleet.events, ended - started, stored=stored, cpu_seconds=cpu)

    def _register_devices(self, engine: Engine, backend: str, rnd: int, pid: int) -> Phase:
        cpu = _cpu_seconds(pid)  # from its start: it registers as soon as it subscribed
        self._wait_for(engine, "SELECT count(*) FROM devices", self.fleet.devices, "devices")
        ended = datetime.now(UTC)
        with engine.connect() as conn:
            first = conn.execute(text("SELECT min(updated_at) FROM devices")).scalar()
        if isinstance(first, str):  # SQLite hands the text back
            first = datetime.fromisoformat(first)
        assert isinstance(first, datetime)
        first = first.replace(tzinfo=UTC) if first.tzinfo is None else first
        seconds = (ended - first).total_seconds()
        cpu = _cpu_seconds(pid) - cpu
        stored = _count(engine, "SELECT count(*) FROM devices")
        return Phase(backend, rnd, self.fleet.devices, seconds, stored=stored, cpu_seconds=cpu)


def run(fleet: Fleet, *, rounds: int, devices_mode: bool = False, postgres_url: str | None = None,
        profile_dir: Path | None = None, env: dict[str, str] | None = None,
        workdir: Path | None = None, sqlite: bool = True, singles: bool = True) -> list[Phase]:
    """Every phase of the benchmark, rounds interleaved: raw, then the cloud on each backend."""
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="spoke-bench-ingest-"))
    bench = Bench(workdir, fleet, devices_mode=devices_mode, postgres_url=postgres_url,
                  profile_dir=profile_dir, env=env or {})
    databases = Databases(workdir, postgres_url, sqlite)
    phases: list[Phase] = []
    try:
        bench.start()
        for rnd in range(1, rounds + 1):
            phases.append(bench.measured(bench.raw, rnd))
            for backend in databases.backends:
                phases.append(bench.measured(bench.cloud, backend, rnd, databases))
                if fleet.batch > 1 and singles:  # the same events one to a message: the gain
                    phases.append(bench.measured(bench.cloud, backend, rnd, databases, 1))
    finally:
        bench.stop()
        databases.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return phases


def table(phases: list[Phase], unit: str) -> str:
    """Each round's rates with the cloud's share of the raw rate of the same round; medians."""
    raw_of = {p.round: p.rate for p in phases if p.what == "raw"}
    width = max(24, *(len(p.path) for p in phases))
    lines = [f"{'round':>5}  {'path':<{width}} {unit:>9} {'seconds':>8} {unit + '/s':>12} "
             f"{'of raw':>7} {'published':>9} {'per tx':>9} {'CPU':>5} {'CPU/' + unit[:-1]:>8} "
             f"{'broker CPU':>10}"]
    for p in phases:
        share = f"{p.rate / raw_of[p.round]:7.0%}" if p.what != "raw" else " " * 7
        per_batch = f"{p.published_seconds:8.2f}s" if p.published_seconds else " " * 9
        per_batch += f" {p.messages / p.batches:9.0f}" if p.batches else " " * 10
        if p.cpu_seconds:
            per_batch += (f" {p.cpu_seconds / p.seconds:5.0%} "
                          f"{p.cpu_seconds / p.messages * 1e6:6.0f}µs")
        per_batch += f" {p.broker_cpu_seconds:9.2f}s"
        lines.append(f"{p.round:>5}  {p.path:<{width}} {p.messages:>9,} {p.seconds:>8.2f} "
                     f"{p.rate:>12,.0f} {share} {per_batch}")
    raw_median = statistics.median(raw_of.values())
    for path in dict.fromkeys(p.path for p in phases):
        same = [p for p in phases if p.path == path]
        med = statistics.median(p.rate for p in same)
        share = f"{med / raw_median:7.0%}" if same[0].what != "raw" else ""
        lines.append(f"{'median':>5}  {path:<{width}} {'':>9} {'':>8} {med:>12,.0f} {share}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=None, help="20 (events) or 1000 (--devices)")
    parser.add_argument("--events", type=int, default=1000, help="events per hub")
    parser.add_argument("--devices-per-hub", type=int, default=2, help="devices of each hub (events)")
    parser.add_argument("--devices", action="store_true", help="measure device registration")
    parser.add_argument("--per-hub", type=int, default=100, help="descriptions per hub (--devices)")
    parser.add_argument("--rounds", type=int, default=None, help="2 (events) or 1 (--devices)")
    parser.add_argument("--postgres", metavar="URL", help="also on this PostgreSQL server")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="py-spy stacks of the cloud")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="events per message (EventBatch); the cloud is also run on single "
                             "events in each round")
    parser.add_argument("--no-singles", action="store_true",
                        help="with --batch: skip the cloud's runs on single events")
    parser.add_argument("--ingest-batch", type=int, help="the cloud's SPOKE_INGEST_BATCH_SIZE")
    args = parser.parse_args()
    if args.devices:
        fleet = Fleet(hubs=args.hubs or 1000, devices_per_hub=args.per_hub)
    else:
        fleet = Fleet(hubs=args.hubs or 20, devices_per_hub=args.devices_per_hub,
                      events_per_hub=args.events, batch=args.batch)
    rounds = args.rounds or (1 if args.devices else 2)
    env = {"SPOKE_INGEST_BATCH_SIZE": str(args.ingest_batch)} if args.ingest_batch else {}
    phases = run(fleet, rounds=rounds, devices_mode=args.devices, postgres_url=args.postgres,
                 profile_dir=args.profile, env=env, singles=not args.no_singles)
    for p in phases:
        expected = fleet.devices if args.devices else fleet.events
        if p.what != "raw" and (p.stored != expected or p.dead_letters):
            sys.exit(f"round {p.round} on {p.what}: {p.stored} of {expected} stored, "
                     f"{p.dead_letters} dead letters")
    what = (f"{fleet.hubs} hubs x {fleet.devices_per_hub} retained device descriptions"
            if args.devices else f"{fleet.hubs} hubs x {fleet.events_per_hub} events")
    shown = [make_url(a).render_as_string(hide_password=True) if a == args.postgres else a
             for a in sys.argv[1:]]
    print(f"cloud ingest: {what}, {rounds} round(s), Mosquitto; command: "
          f"python -m bench.ingest {' '.join(shown)}")
    print(table(phases, "devices" if args.devices else "events"))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
