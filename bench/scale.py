"""The cloud at fleet scale: 1,000 hubs x 100 devices register, then hold a steady event rate;
one `spoke cloud run` on SQLite, then two sharing the hubs' events, beside a bare subscriber.

Mosquitto runs with Spoke's shipped configuration; every simulated hub logs in with its own broker
account (generation 1, in the broker's first dynamic-security file) and publishes valid wire
messages: its status (retained, with its ledger position, republished every 5 s while its counters
change, as a hub does), its devices' retained descriptions and its events, and reads the cloud's
LedgerAcks (``bench.sim_hubs``: a few processes, each running hundreds of paho clients on one
selector loop). Phases, in this order:

- raw: a bare paho subscriber (the cloud's account, QoS 1) counts the events of a paced round
  (``--rate`` events/s in all for ``--seconds``) and of a burst (``--burst`` events per hub at
  once, the publishers' fastest), before and after the clouds' phases (drift shows as a difference);
- one cloud (fresh SQLite): registration — the hubs publish every status and description with the
  cloud running, timed until the database holds every device; paced — the same round, each event
  stamped with the time it was published: stored counts the hubs' acknowledged marks (the cloud
  acknowledges only what it committed) and the rows, lag is (time the ingest transaction began -
  the event's time) from the rows, with the share of events over 5 s from the cloud's own
  ``spoke_ingest_lag_seconds`` histogram (measured at commit); drain is the time from the last
  publication until every event is acknowledged; held/s is what the hubs saw acknowledged within
  the publishing window, per second; the cloud's CPU (share of one core in the window, and CPU
  time per event until all were stored: on a shared machine the cores are shared, and the CPU an
  event costs decides the rate) and RSS (now and peak) from /proc; then the burst, timed until
  every hub's mark covers it (the most a setup stores per second);
- two clouds (``SPOKE_MQTT_SHARED_GROUP``, fresh SQLite shared by both): registration from the
  broker's retained copies (each process reads all of them as it subscribes), then the same paced
  round and burst. The ratio is the two processes' burst rate over the one's.

Every round uses a new ledger epoch on every hub, so each counts from seq 1 and rounds never mix.
Lost = published - stored; duplicates = the clouds' duplicate counters.

    .venv/bin/python -m bench.scale [--hubs 1000] [--per-hub 100] [--rate 2000] [--seconds 60]
        [--burst 30] [--processes 4] [--one] [--profile DIR]
        [--postgres postgresql+psycopg://user:pw@host/db]  (instead of SQLite)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.ingest import Databases, Fleet, _close, _count, _Counter, _cpu_seconds, _raw_subscriber
from bench.rig import (
    SPOKE,
    Service,
    free_port,
    hub_accounts_broker,
    wait_port,
)
from bench.sim_hubs import SimHubs, sim_hubs
from wire.contract import Topics

_POLL = 0.25  # seconds between looks at the hubs' acknowledged marks
_LAG_LIMIT = 5.0  # seconds: the goal's bound on an event's lag


def _rss_bytes(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process (Linux), 0 where /proc is not there."""
    found = {"VmRSS": 0, "VmHWM": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


@dataclass
class Row:
    setup: str  # "raw", "1 cloud", "2 clouds"
    phase: str  # "register", "paced", "burst"
    messages: int  # devices or events expected
    seconds: float  # register/burst: until all stored; paced: the publishing window
    stored: int = 0
    duplicates: int = 0
    published_rate: float = 0.0  # paced: events/s the hubs published in the window
    held: float = 0.0  # paced: events/s acknowledged (stored) within the window
    drain: float = 0.0  # paced: from the last publication until all were acknowledged
    lag_p50: float = 0.0
    lag_p99: float = 0.0
    lag_max: float = 0.0
    over_limit: float = 0.0  # share of events committed more than 5 s after their time
    cpu: float = 0.0  # share of one core (the clouds together)
    cpu_us: float = 0.0  # the clouds' CPU time per message, until all were stored (µs)
    rss_mb: float = 0.0  # the largest cloud process's current RSS at the end
    rss_peak_mb: float = 0.0

    @property
    def rate(self) -> float:
        """register/burst: stored per second until all were; paced: published per second."""
        if self.phase == "paced":
            return self.published_rate or self.messages / self.seconds
        return self.stored / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Clouds:
    """One or more `spoke cloud run` processes on one database."""

    services: list[Service]
    api_ports: list[int]
    url: str
    engine: Engine

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.services if s.proc is not None]

    def cpu(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids)

    def rss(self) -> tuple[float, float]:
        sizes = [_rss_bytes(pid) for pid in self.pids]
        return (max(s[0] for s in sizes) / 2**20, max(s[1] for s in sizes) / 2**20)


@dataclass
class Scale:
    workdir: Path
    fleet: Fleet
    rate: float
    seconds: float
    burst: int
    processes: int
    status_interval: float = 5.0
    profile_dir: Path | None = None
    port: int = field(default_factory=free_port)
    secret: bytes = b""
    broker: Service | None = None
    hubs: SimHubs | None = None
    rows: list[Row] = field(default_factory=list)
    _epochs: int = 0
    _clouds: int = 0

    # set-up ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def running(self) -> Iterator[Scale]:
        self.secret, passwords, self.broker = hub_accounts_broker(
            self.workdir, self.port, list(self.fleet.hub_ids))
        try:
            wait_port(self.port)
            with sim_hubs(self.port, self.fleet, passwords, self.processes,
                          self.status_interval) as hubs:
                self.hubs = hubs
                yield self
        finally:
            self.broker.stop()

    @contextlib.contextmanager
    def clouds(self, n: int, databases: Databases) -> Iterator[Clouds]:
        url = databases.new(databases.backends[0])
        services, ports = [], []
        for i in range(n):
            self._clouds += 1
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
            env.update(SPOKE_CONFIG=str(self.workdir / "none.toml"), SPOKE_DATABASE_URL=url,
                       SPOKE_MQTT_HOST="127.0.0.1", SPOKE_MQTT_PORT=str(self.port),
                       SPOKE_MQTT_PROTOCOL="5", SPOKE_MQTT_CLIENT_ID=f"spoke-cloud-scale-{i}",
                       SPOKE_MQTT_SESSION_EXPIRY="0",  # nothing queues for it between setups
                       SPOKE_BROKER_SECRET_FILE=str(self.workdir / "broker-secret"),
                       SPOKE_METRICS_TOKEN_FILE=str(self.workdir / "metrics-token"),
                       SPOKE_CLOUD_PORT=str(port), SPOKE_RATE_LIMIT_READS="off",
                       SPOKE_RATE_LIMIT_COMMANDS="off", SPOKE_BROKER_SYNC="false")
            if n > 1:
                env["SPOKE_MQTT_SHARED_GROUP"] = "spoke-ingest"
            services.append(Service(f"cloud-{self._clouds}", [SPOKE, "cloud", "run"], env,
                                    self.workdir / f"cloud-{self._clouds}.log"))
            ports.append(port)
        engine = create_engine(url, poolclass=NullPool)
        clouds = Clouds(services, ports, url, engine)
        profilers: list[subprocess.Popen[bytes]] = []
        try:
            for service in services:  # one at a time: the first makes the schema
                service.start()
                self._wait_ready(service, ports[services.index(service)])
            for service in services:
                assert service.proc is not None
                profiler = self._profile(service.proc.pid, f"{n}-clouds-{service.name}")
                if profiler is not None:
                    profilers.append(profiler)
            yield clouds
        finally:
            for service in services:
                service.stop()
            for profiler in profilers:
                profiler.wait(60)
            engine.dispose()

    def _wait_ready(self, cloud: Service, api_port: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and cloud.alive:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the cloud did not become ready\n{cloud.tail()}")

    def _profile(self, pid: int, name: str) -> subprocess.Popen[bytes] | None:
        if self.profile_dir is None:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            print("py-spy is not installed: no profile", file=sys.stderr)
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--idle",
                                 "--threads", "--format", "raw", "--output",
                                 str(self.profile_dir / f"{name}.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _epoch(self) -> str:
        assert self.hubs is not None
        self._epochs += 1
        epoch = f"r{self._epochs}"
        self.hubs.new_epoch(epoch)
        return epoch

    # raw ------------------------------------------------------------------------------------------
    def raw(self) -> None:
        assert self.hubs is not None
        hubs = self.hubs
        events_filter = next(f for f in Topics.cloud_ingest_filters() if f.endswith("events"))
        self._epoch()
        total = int(self.rate * self.seconds)
        counter = _Counter(total)
        client = _raw_subscriber(self.port, self.secret, events_filter, counter)
        try:
            hubs.paced(self.rate, self.seconds)
            published = hubs.wait_published(self.seconds + 120)
            deadline = time.monotonic() + 30
            while counter.received < published and time.monotonic() < deadline:
                time.sleep(0.05)
            self.rows.append(Row("raw", "paced", published, self.seconds, stored=counter.received,
                                 published_rate=published / self.seconds,
                                 held=counter.received / self.seconds))
            self._epoch()
            total = self.burst * self.fleet.hubs
            counter = _Counter(total)
            client.on_message = counter.on_message
            started = time.perf_counter()
            hubs.burst(self.burst)
            if not counter.finished.wait(300):
                raise TimeoutError(f"the raw subscriber got {counter.received} of {total}")
            self.rows.append(Row("raw", "burst", total, counter.last - started,
                                 stored=counter.received))
            hubs.wait_published(60)
        finally:
            _close(client)

    # clouds ---------------------------------------------------------------------------------------
    def setup(self, n: int, databases: Databases) -> None:
        assert self.hubs is not None
        name = "1 cloud" if n == 1 else f"{n} clouds"
        started = time.perf_counter()
        with self.clouds(n, databases) as clouds:
            cpu = clouds.cpu() if n == 1 else 0.0  # more processes: from their start
            if n == 1:  # the hubs come while the cloud runs
                started = time.perf_counter()
                self.hubs.describe()
            # with more processes, each reads the broker's retained copies as it subscribes
            seconds = self._until_devices(clouds, started)
            self.rows.append(Row(name, "register", self.fleet.devices, seconds,
                                 stored=self.fleet.devices,
                                 cpu=(clouds.cpu() - cpu) / seconds, rss_mb=clouds.rss()[0],
                                 cpu_us=(clouds.cpu() - cpu) / self.fleet.devices * 1e6,
                                 rss_peak_mb=clouds.rss()[1]))
            self._settle(clouds)
            self.rows.append(self._paced(name, clouds))
            self._settle(clouds)
            self.rows.append(self._burst(name, clouds))

    def _until_devices(self, clouds: Clouds, started: float) -> float:
        deadline = time.monotonic() + 900
        while True:
            found = _count(clouds.engine, "SELECT count(*) FROM devices")
            if found >= self.fleet.devices:
                return time.perf_counter() - started
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cloud registered {found} of {self.fleet.devices} devices")
            time.sleep(_POLL)

    def _settle(self, clouds: Clouds, timeout: float = 600) -> None:
        """Until every process has stored what it received (the retained flood at start)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 3:
            waiting = 0
            for port in clouds.api_ports:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
                    waiting += int(health.get("ingest_waiting", 0))
            quiet = quiet + 1 if waiting == 0 else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"the clouds still hold {waiting} messages")
            time.sleep(0.5)

    def _paced(self, name: str, clouds: Clouds) -> Row:
        assert self.hubs is not None
        hubs = self.hubs
        epoch = self._epoch()
        before = self._metrics(clouds)
        cpu = clouds.cpu()
        started = time.perf_counter()
        hubs.paced(self.rate, self.seconds)
        published = hubs.wait_published(self.seconds + 120)
        window = time.perf_counter() - started
        cpu_window = clouds.cpu() - cpu
        in_window = hubs.acked_now
        ended = time.perf_counter()
        self._until_acked(published, 900)
        drain = time.perf_counter() - ended
        cpu_all = clouds.cpu() - cpu
        after = self._metrics(clouds)
        rss, peak = clouds.rss()
        stored = _count(clouds.engine, "SELECT count(*) FROM events WHERE epoch = :e", e=epoch)
        lags = self._lags(clouds.engine, epoch)
        row = Row(name, "paced", published, window, stored=stored,
                  duplicates=int(after["dup"] - before["dup"]),
                  published_rate=published / window, held=in_window / window, drain=drain,
                  cpu=cpu_window / window, cpu_us=cpu_all / max(1, published) * 1e6,
                  rss_mb=rss, rss_peak_mb=peak)
        if lags:
            row.lag_p50 = statistics.median(lags)
            row.lag_p99 = lags[int(len(lags) * 0.99) - 1] if len(lags) >= 100 else lags[-1]
            row.lag_max = lags[-1]
        count = after["lag_count"] - before["lag_count"]
        within = after["lag_within"] - before["lag_within"]
        row.over_limit = (count - within) / count if count else 0.0
        return row

    def _burst(self, name: str, clouds: Clouds) -> Row:
        assert self.hubs is not None
        self._epoch()
        total = self.burst * self.fleet.hubs
        before = self._metrics(clouds)
        cpu = clouds.cpu()
        started = time.perf_counter()
        self.hubs.burst(self.burst)
        self._until_acked(total, 600)
        seconds = time.perf_counter() - started
        self.hubs.wait_published(60)
        after = self._metrics(clouds)
        rss, peak = clouds.rss()
        return Row(name, "burst", total, seconds, stored=int(after["stored"] - before["stored"]),
                   duplicates=int(after["dup"] - before["dup"]),
                   cpu=(clouds.cpu() - cpu) / seconds, cpu_us=(clouds.cpu() - cpu) / total * 1e6,
                   rss_mb=rss, rss_peak_mb=peak)

    def _until_acked(self, total: int, timeout: float) -> None:
        assert self.hubs is not None
        deadline = time.monotonic() + timeout
        while self.hubs.acked_now < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the hubs' marks cover {self.hubs.acked_now} of {total} events")
            time.sleep(_POLL / 5)

    def _metrics(self, clouds: Clouds) -> dict[str, float]:
        """The clouds' counters summed: stored, duplicates, and the lag histogram's count and
        the events within 5 s."""
        token = (self.workdir / "metrics-token").read_text().strip()
        out = {"stored": 0.0, "dup": 0.0, "lag_count": 0.0, "lag_within": 0.0}
        for port in clouds.api_ports:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30,
                             headers={"Authorization": f"Bearer {token}"}).text
            for line in body.splitlines():
                name, _, value = line.rpartition(" ")
                if name == "spoke_ingest_events_stored_total":
                    out["stored"] += float(value)
                elif name == "spoke_ingest_events_duplicate_total":
                    out["dup"] += float(value)
                elif name == "spoke_ingest_lag_seconds_count":
                    out["lag_count"] += float(value)
                elif name == f'spoke_ingest_lag_seconds_bucket{{le="{_LAG_LIMIT}"}}':
                    out["lag_within"] += float(value)
        return out

    @staticmethod
    def _lags(engine: Engine, epoch: str) -> list[float]:
        """(received_at - ts) of every event of the round, sorted."""
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT ts, received_at FROM events WHERE epoch = :e"),
                                {"e": epoch}).all()

        def moment(value: Any) -> datetime:
            if isinstance(value, str):  # SQLite hands the text back
                value = datetime.fromisoformat(value)
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # type: ignore[no-any-return]

        return sorted((moment(r[1]) - moment(r[0])).total_seconds() for r in rows)


def run(fleet: Fleet, *, rate: float, seconds: float, burst: int, processes: int = 4,
        two: bool = True, status_interval: float = 5.0, profile_dir: Path | None = None,
        postgres_url: str | None = None, workdir: Path | None = None) -> list[Row]:
    """raw, one cloud, two clouds (unless ``two`` is False), raw again."""
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="spoke-bench-scale-"))
    bench = Scale(workdir, fleet, rate, seconds, burst, processes, status_interval, profile_dir)
    databases = Databases(workdir, postgres_url, sqlite=postgres_url is None)
    try:
        with bench.running():
            bench.raw()
            bench.setup(1, databases)
            if two:
                bench.setup(2, databases)
            bench.raw()
    except BaseException:
        if own_dir:
            print(f"kept for a look: {workdir}", file=sys.stderr)
            own_dir = False
        raise
    finally:
        databases.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return bench.rows


def table(rows: list[Row]) -> str:
    head = (f"{'setup':<9} {'phase':<9} {'messages':>9} {'stored':>9} {'lost':>5} {'dupl':>5} "
            f"{'seconds':>8} {'rate/s':>8} {'held/s':>7} {'drain s':>7} {'lag p50/p99/max s':>18} {'>5s':>5} "
            f"{'CPU':>5} {'µs/msg':>6} {'RSS MB':>7} {'peak':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lost = r.messages - r.stored
        lag = f"{r.lag_p50:.2f}/{r.lag_p99:.2f}/{r.lag_max:.2f}" if r.lag_max else ""
        cloud = r.setup != "raw"
        lines.append(
            f"{r.setup:<9} {r.phase:<9} {r.messages:>9,} {r.stored:>9,} {lost:>5} "
            f"{r.duplicates if cloud else '':>5} {r.seconds:>8.2f} {r.rate:>8,.0f} "
            f"{f'{r.held:,.0f}' if r.held else '':>7} "
            f"{f'{r.drain:.2f}' if r.phase == 'paced' and cloud else '':>7} {lag:>18} "
            f"{f'{r.over_limit:.1%}' if r.phase == 'paced' and cloud else '':>5} "
            f"{f'{r.cpu:.0%}' if cloud else '':>5} {f'{r.cpu_us:.0f}' if cloud else '':>6} "
            f"{f'{r.rss_mb:.0f}' if cloud else '':>7} {f'{r.rss_peak_mb:.0f}' if cloud else '':>6}")
    bursts = {r.setup: r.rate for r in rows if r.phase == "burst"}
    raw_bursts = [r.rate for r in rows if r.setup == "raw" and r.phase == "burst"]
    if "1 cloud" in bursts and "2 clouds" in bursts and bursts["1 cloud"]:
        lines.append(f"burst rate, two processes / one: {bursts['2 clouds'] / bursts['1 cloud']:.2f}"
                     f" (bare subscriber, median: {statistics.median(raw_bursts):,.0f}/s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=1000)
    parser.add_argument("--per-hub", type=int, default=100, help="devices of each hub")
    parser.add_argument("--rate", type=float, default=2000, help="events/s of all hubs together")
    parser.add_argument("--seconds", type=float, default=60, help="length of the paced round")
    parser.add_argument("--burst", type=int, default=30, help="events per hub at once")
    parser.add_argument("--processes", type=int, default=4, help="processes running the hubs")
    parser.add_argument("--one", action="store_true", help="one cloud process only")
    parser.add_argument("--postgres", metavar="URL",
                        help="PostgreSQL instead of SQLite (a role that may create databases)")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="py-spy stacks of the clouds")
    args = parser.parse_args()
    fleet = Fleet(hubs=args.hubs, devices_per_hub=args.per_hub)
    rows = run(fleet, rate=args.rate, seconds=args.seconds, burst=args.burst,
               processes=args.processes, two=not args.one, profile_dir=args.profile,
               postgres_url=args.postgres)
    shown = [make_url(a).render_as_string(hide_password=True) if a == args.postgres else a
             for a in sys.argv[1:]]
    print(f"cloud at scale: {fleet.hubs:,} hubs x {fleet.devices_per_hub} devices, paced "
          f"{args.rate:,.0f} events/s for {args.seconds:.0f} s, bursts of {args.burst} events per "
          f"hub; Mosquitto, {'PostgreSQL' if args.postgres else 'SQLite'}; command: "
          f"python -m bench.scale {' '.join(shown)}")
    print(table(rows))
    bad = [r for r in rows if r.setup != "raw" and (r.stored != r.messages or r.duplicates)]
    if bad:
        sys.exit(f"{len(bad)} phase(s) lost or doubled events")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    threading.current_thread().name = "bench"
    main()
