"""A burst of events through the embedded broker (amqtt) and through Mosquitto, in the same run:
is every event stored exactly once, how many copies did the cloud drop, how often did the hubs
resend, and how long until the hubs' outboxes were empty.

The hubs are the hub's own ledger machinery without a radio: each has its outbox (``HubStore``,
SQLite), its MQTT link (``HubLink``: last will, in-flight window, outbox pump) and its publisher
(``Publisher``: the resend rule — when sent rows stay unacknowledged for ``ledger_resend_after``
seconds, ask the cloud where it stands with a status, and send everything past its mark again if
the mark has not moved), all in this process on one asyncio loop, with their own broker accounts.
On connecting each publishes its status and its devices' retained descriptions; once the cloud has
registered every device, every hub writes ``--events`` events to its outbox at once (what a hub
does when a radio that was away hands over its backlog).

The broker runs as its own process (Mosquitto with Spoke's shipped configuration, or `spoke broker`,
the embedded amqtt broker), and so does `spoke cloud run` on a fresh SQLite database. Drain is
timed from the burst until every hub's outbox is empty (the cloud acknowledged every event), and
the cloud's rows are then counted: stored must equal the events, with each (hub, epoch, seq) once.

    .venv/bin/python -m bench.broker_burst [--hubs 10] [--events 3000] [--rounds 1]
        [--brokers mosquitto,amqtt] [--resend-after 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bench.ingest import Fleet, _count
from bench.rig import MOSQUITTO, SPOKE, Service, free_port, render_mosquitto_conf, wait_port
from bench.tls import make_pki
from cloud.broker_accounts import HubAccount, write_dynsec_config
from cloud.broker_credentials import ensure_broker_secret, hub_password
from hub.link import HubLink
from hub.publisher import Publisher
from hub.settings import HubSettings
from hub.store import HubStore
from wire.contract import HubStatus, Topics, hub_client_id


class LedgerHub:
    """A hub's outbox, link and publisher, as `spoke hub run` assembles them, without a radio."""

    def __init__(self, settings: HubSettings, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.hub_id = settings.hub_id
        settings.hub_data_dir.mkdir(parents=True, exist_ok=True)
        self.store = HubStore(settings.outbox_db)
        self.link = HubLink(settings, self.store, self._on_message, self._on_connected)
        self.publisher = Publisher(self.hub_id, self.store, self.link,
                                   resend_after=settings.ledger_resend_after,
                                   flush_delay=settings.outbox_flush_delay)
        self.publisher.status_source = self.status

    def status(self) -> HubStatus:
        return HubStatus(hub_id=self.hub_id, online=True, version="bench", radio="none",
                         devices=self.fleet.devices_per_hub, epoch=self.store.epoch,
                         last_seq=self.store.last_seq, dropped_upto=self.store.dropped_upto,
                         metrics={"events_emitted": self.store.last_seq,
                                  "outbox_pending": self.store.pending,
                                  "resends": self.publisher.resends})

    def _on_connected(self, _session_present: bool) -> None:
        self.publisher.status()
        for topic, payload in self.fleet.descriptions(self.index):
            self.link.publish_retained(topic, payload)

    async def _on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        if topic == Topics.acks(self.hub_id):
            await self.publisher.on_ack(payload)

    async def start(self) -> None:
        await self.link.start()
        self.publisher.start()

    async def stop(self) -> None:
        await self.publisher.stop()
        await self.link.stop(self.status())
        self.store.close()

    def burst(self, events: int) -> None:
        ts = datetime.now(UTC)
        for n in range(events):
            self.publisher.event(self.fleet.ieee(self.index, n % self.fleet.devices_per_hub),
                                 "power", "power", float(n % 3000), "W", ts)


@dataclass
class Result:
    broker: str
    round: int
    events: int
    stored: int
    rows: int  # event rows of the hubs' epochs (one per (hub, epoch, seq) by the unique key)
    duplicates: int  # copies the cloud received and dropped
    dead_letters: int
    resends: int  # times a hub sent its unacknowledged rows again
    reconnects: int
    drain: float  # seconds from the burst until every outbox was empty

    @property
    def lost(self) -> int:
        return self.events - self.stored


class Round:
    def __init__(self, workdir: Path, broker: str, fleet: Fleet, events: int,
                 resend_after: float) -> None:
        self.workdir = workdir
        self.kind = broker
        self.fleet = fleet
        self.events = events
        self.resend_after = resend_after
        self.port = free_port()
        self.api_port = free_port()
        self.secret_file = workdir / "broker-secret"
        self.db = workdir / "cloud.db"
        self.secret = b""

    def _env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
        env.update(SPOKE_CONFIG=str(self.workdir / "none.toml"), SPOKE_MQTT_HOST="127.0.0.1",
                   SPOKE_MQTT_PORT=str(self.port), **values)
        return env

    def _broker(self) -> Service:
        secret = self.secret = ensure_broker_secret(self.secret_file)
        dynsec = self.workdir / "broker-dynsec.json"
        write_dynsec_config(dynsec, secret, [HubAccount(h, 1) for h in self.fleet.hub_ids])
        if self.kind == "amqtt":
            return Service("amqtt", [SPOKE, "broker", "--port", str(self.port), "--dynsec",
                                     str(dynsec)],
                           self._env(SPOKE_BROKER_SECRET_FILE=str(self.secret_file)),
                           self.workdir / "amqtt.log")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(render_mosquitto_conf(
            self.port, self.workdir / "mosquitto-data", dynsec_file=dynsec, tls_port=free_port(),
            pki=make_pki(self.workdir / "pki")))
        return Service("mosquitto", [MOSQUITTO, "-c", str(conf)], dict(os.environ),
                       self.workdir / "mosquitto.log")

    def _cloud(self) -> Service:
        return Service("cloud", [SPOKE, "cloud", "run"], self._env(
            SPOKE_DATABASE_URL=f"sqlite:///{self.db}",
            SPOKE_BROKER_SECRET_FILE=str(self.secret_file),
            SPOKE_METRICS_TOKEN_FILE=str(self.workdir / "metrics-token"),
            SPOKE_CLOUD_PORT=str(self.api_port),
            SPOKE_MQTT_PROTOCOL="3.1.1" if self.kind == "amqtt" else "5",
            SPOKE_MQTT_CLIENT_ID="spoke-cloud-burst", SPOKE_MQTT_SESSION_EXPIRY="3600",
            SPOKE_RATE_LIMIT_READS="off", SPOKE_RATE_LIMIT_COMMANDS="off"),
            self.workdir / "cloud.log")

    def _wait_ready(self, cloud: Service) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and cloud.alive:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.api_port}/readyz",
                             timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the cloud did not become ready\n{cloud.tail()}")

    def _duplicates(self) -> int:
        token = (self.workdir / "metrics-token").read_text().strip()
        body = httpx.get(f"http://127.0.0.1:{self.api_port}/metrics", timeout=30,
                         headers={"Authorization": f"Bearer {token}"}).text
        for line in body.splitlines():
            if line.startswith("spoke_ingest_events_duplicate_total "):
                return int(float(line.split()[1]))
        return 0

    async def run(self, rnd: int) -> Result:
        broker, cloud = self._broker(), self._cloud()
        engine = create_engine(f"sqlite:///{self.db}", poolclass=NullPool)
        hubs: list[LedgerHub] = []
        try:
            broker.start()
            wait_port(self.port)
            cloud.start()
            await asyncio.to_thread(self._wait_ready, cloud)
            for i, hub_id in enumerate(self.fleet.hub_ids):
                settings = HubSettings(
                    hub_id=hub_id, hub_data_dir=self.workdir / "hubs" / hub_id,
                    mqtt_host="127.0.0.1", mqtt_port=self.port,
                    mqtt_username=hub_client_id(hub_id),
                    mqtt_password=SecretStr(hub_password(self.secret, hub_id, 1)),
                    ledger_resend_after=self.resend_after)
                hubs.append(LedgerHub(settings, self.fleet, i))
            for hub in hubs:
                await hub.start()
            await self._until(lambda: _count(engine, "SELECT count(*) FROM devices")
                              >= self.fleet.devices, 120, "devices registered")
            started = time.perf_counter()
            for hub in hubs:
                hub.burst(self.events)
            await self._until(lambda: all(not h.store.pending and not h.store.queued
                                          for h in hubs), 900, "outboxes emptied")
            drain = time.perf_counter() - started
            epochs = [(h.hub_id, h.store.epoch) for h in hubs]
            stored = sum(_count(engine, "SELECT count(DISTINCT seq) FROM events "
                                "WHERE hub_id = :h AND epoch = :e", h=h, e=e) for h, e in epochs)
            rows = sum(_count(engine, "SELECT count(*) FROM events WHERE hub_id = :h "
                              "AND epoch = :e", h=h, e=e) for h, e in epochs)
            return Result(self.kind, rnd, self.events * len(hubs), stored, rows,
                          duplicates=self._duplicates(),
                          dead_letters=_count(engine, "SELECT count(*) FROM dead_letters"),
                          resends=sum(h.publisher.resends for h in hubs),
                          reconnects=sum(h.link.reconnects for h in hubs), drain=drain)
        finally:
            for hub in hubs:
                await hub.stop()
            cloud.stop()
            broker.stop()
            engine.dispose()

    @staticmethod
    async def _until(check: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not {what} within {within:.0f} s")
            await asyncio.sleep(0.05)


def run(fleet: Fleet, events: int, *, brokers: list[str], rounds: int = 1,
        resend_after: float = 10.0, workdir: Path | None = None) -> list[Result]:
    """Rounds alternate between the brokers; each on a fresh broker, cloud database and hubs."""
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="spoke-bench-burst-"))
    results = []
    try:
        for rnd in range(1, rounds + 1):
            for broker in brokers:
                folder = workdir / f"{broker}-{rnd}"
                folder.mkdir(parents=True)
                results.append(asyncio.run(Round(folder, broker, fleet, events,
                                                 resend_after).run(rnd)))
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def table(results: list[Result]) -> str:
    head = (f"{'broker':<10} {'round':>5} {'events':>8} {'stored':>8} {'lost':>5} {'rows':>8} "
            f"{'dupl dropped':>12} {'resends':>7} {'reconn':>6} {'drain s':>8} {'events/s':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.broker:<10} {r.round:>5} {r.events:>8,} {r.stored:>8,} {r.lost:>5} "
                     f"{r.rows:>8,} {r.duplicates:>12,} {r.resends:>7} {r.reconnects:>6} "
                     f"{r.drain:>8.2f} {r.events / r.drain:>9,.0f}")
    for broker in dict.fromkeys(r.broker for r in results):
        drains = [r.drain for r in results if r.broker == broker]
        lines.append(f"{broker:<10} {'median':>5} drain {statistics.median(drains):.2f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=10)
    parser.add_argument("--devices", type=int, default=10, help="devices of each hub")
    parser.add_argument("--events", type=int, default=3000, help="events per hub, at once")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--brokers", default="mosquitto,amqtt")
    parser.add_argument("--resend-after", type=float, default=10.0,
                        help="the hubs' SPOKE_LEDGER_RESEND_AFTER (seconds)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("hub.link").setLevel(logging.ERROR)  # every hub's disconnect at the end
    fleet = Fleet(hubs=args.hubs, devices_per_hub=args.devices)
    results = run(fleet, args.events, brokers=args.brokers.split(","), rounds=args.rounds,
                  resend_after=args.resend_after)
    print(f"burst: {args.hubs} hubs x {args.events} events at once, hub outbox and resend rule, "
          f"one cloud on SQLite; command: python -m bench.broker_burst {' '.join(sys.argv[1:])}")
    print(table(results))
    if any(r.lost or r.rows != r.stored or r.dead_letters for r in results):
        sys.exit("events were lost, doubled or kept as dead letters")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
