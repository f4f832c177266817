"""Many simulated hubs in a few processes: each hub is a paho client with its own broker account,
last will and acks subscription, publishing valid wire messages (status, retained device
descriptions, events with its ledger's sequence numbers) and reading the cloud's LedgerAcks.

A thread per hub does not scale to a thousand hubs, so each process runs its hubs' clients on one
selector loop (paho's external-loop API: ``loop_read`` when a socket is readable, ``loop_write``
when a client has bytes waiting, ``loop_misc`` for keep-alives). The parent drives the processes
through a pipe, and reads their progress (events published, the sum of the hubs' acknowledged
marks in the current epoch) from shared counters, so it can watch the cloud without asking it.

Like a real hub, each one republishes its status every ``status_interval`` seconds while its
counters change; the cloud answers every status with an acknowledgement.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import selectors
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import Fleet
from wire.contract import Event, HubStatus, Topics, hub_client_id

_INFLIGHT = 100  # as a real hub's window (hub.link.INFLIGHT_WINDOW)
_MISC_EVERY = 1.0  # seconds between paho's keep-alive bookkeeping for every client


class _Hub:
    """One simulated hub: its client, its ledger (epoch, last seq) and the cloud's mark."""

    def __init__(self, index: int, hub_id: str, password: str, port: int,
                 totals: _Totals) -> None:
        self.index = index
        self.hub_id = hub_id
        self.epoch = "boot"
        self.seq = 0
        self.mark = 0
        self.status_seq = -1  # last_seq the last status carried
        self.connected = False
        self.totals = totals
        self.events_topic = Topics.events(hub_id)
        self.status_topic = Topics.status(hub_id)
        c = self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                      client_id=hub_client_id(hub_id), protocol=mqtt.MQTTv311,
                                      clean_session=True)
        c.username_pw_set(hub_client_id(hub_id), password)
        c.will_set(self.status_topic, HubStatus(hub_id=hub_id, online=False,
                                                reason="connection lost").to_bytes(),
                   qos=1, retain=True)
        c.max_inflight_messages_set(_INFLIGHT)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=60)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            raise RuntimeError(f"the broker refused {self.hub_id}: {reason}")
        client.subscribe([(t, 1) for t in Topics.hub_filters(self.hub_id)])
        self.connected = True

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/acks"):
            return
        ack = json.loads(msg.payload)
        if ack.get("epoch") == self.epoch and ack["seq"] > self.mark:
            self.totals.acked += ack["seq"] - self.mark
            self.mark = ack["seq"]

    def status(self) -> None:
        self.status_seq = self.seq
        st = HubStatus(hub_id=self.hub_id, online=True, version="bench", radio="sim",
                       epoch=self.epoch, last_seq=self.seq,
                       metrics={"events_emitted": self.seq})
        self.client.publish(self.status_topic, st.to_bytes(), qos=1, retain=True)

    def new_epoch(self, epoch: str) -> None:
        self.epoch, self.seq, self.mark = epoch, 0, 0
        self.status()

    def event(self, ts: datetime, fleet: Fleet) -> None:
        self.seq += 1
        ev = Event(hub_id=self.hub_id, epoch=self.epoch, seq=self.seq, ts=ts,
                   ieee=fleet.ieee(self.index, self.seq % fleet.devices_per_hub),
                   capability="power", attribute="power", value=float(self.seq % 3000), unit="W")
        self.client.publish(self.events_topic, ev.to_bytes(), qos=1)
        self.totals.published += 1


@dataclass
class _Totals:
    published: int = 0
    acked: int = 0


class _Loop:
    """One process's hubs on one selector loop, driven by commands from the parent's pipe."""

    def __init__(self, conn: Connection, port: int, fleet: Fleet, indexes: list[int],
                 passwords: dict[str, str], status_interval: float) -> None:
        self.conn = conn
        self.fleet = fleet
        self.status_interval = status_interval
        self.totals = _Totals()
        self.sel = selectors.DefaultSelector()
        self.hubs: list[_Hub] = []
        for i in indexes:
            hub_id = fleet.hub_ids[i]
            hub = _Hub(i, hub_id, passwords[hub_id], port, self.totals)
            self.hubs.append(hub)
            self.sel.register(hub.client.socket(), selectors.EVENT_READ, hub)  # type: ignore[arg-type]
        self.sel.register(conn, selectors.EVENT_READ, None)
        self.status_due = [0.0] * len(self.hubs)
        self.rate = 0.0  # events per second of the paced job running (0: none)
        self.until = 0.0  # when it ends
        self.started = 0.0
        self.sent = 0  # events of the running job published
        self.cursor = 0  # the hub publishing the job's next event (round robin)
        self.confirm: list[mqtt.MQTTMessageInfo] = []  # retained publications to see confirmed
        self.reply: tuple[Any, ...] | None = None  # sent once ``confirm`` is empty
        self.announced = False

    def run(self, published: Any, acked: Any) -> None:
        misc_at = time.monotonic()
        while True:
            for key, _ in self.sel.select(0.002 if self.rate else 0.05):
                if key.data is None:
                    if not self.command(self.conn.recv()):
                        return
                    continue
                client = key.data.client
                client.loop_read()
                if client.want_write():
                    client.loop_write()
            now = time.monotonic()
            if self.rate:
                self.pace(now)
            self.statuses(now)
            if self.confirm and all(info.is_published() for info in self.confirm):
                self.confirm.clear()
            if self.reply is not None and not self.confirm:
                self.conn.send(self.reply)
                self.reply = None
            if not self.announced and all(h.connected for h in self.hubs):
                self.announced = True
                self.conn.send(("connected",))
            if now - misc_at >= _MISC_EVERY:
                misc_at = now
                for hub in self.hubs:
                    hub.client.loop_misc()
            published.value = self.totals.published
            acked.value = self.totals.acked

    def command(self, cmd: tuple[Any, ...]) -> bool:
        what = cmd[0]
        if what == "stop":
            for hub in self.hubs:
                hub.client.disconnect()
            return False
        if what == "describe":  # status and every retained description, confirmed by the broker
            for hub in self.hubs:
                hub.status()
                self.confirm.extend(hub.client.publish(topic, payload, qos=1, retain=True)
                                    for topic, payload in self.fleet.descriptions(hub.index))
            self.reply = ("described",)
        elif what == "epoch":  # a new ledger on every hub (what a hub with a new store does)
            self.totals.acked = 0
            for hub in self.hubs:
                hub.new_epoch(cmd[1])
            self.reply = ("epoch",)
        elif what == "paced":  # ("paced", events per second for these hubs, seconds)
            self.rate, self.started, self.sent = cmd[1], time.monotonic(), 0
            self.until = self.started + cmd[2]
        elif what == "burst":  # ("burst", events per hub): all at once
            ts = datetime.now(UTC)
            for _ in range(cmd[1]):
                for hub in self.hubs:
                    hub.event(ts, self.fleet)
            self.reply = ("published", self.totals.published)
        return True

    def pace(self, now: float) -> None:
        due = int(self.rate * (min(now, self.until) - self.started)) - self.sent
        if due > 0:
            ts = datetime.now(UTC)
            for _ in range(due):
                self.hubs[self.cursor].event(ts, self.fleet)
                self.cursor = (self.cursor + 1) % len(self.hubs)
            self.sent += due
        if now >= self.until:
            self.rate = 0.0
            self.reply = ("published", self.totals.published)

    def statuses(self, now: float) -> None:
        """Each hub's status when its counters changed, at most every ``status_interval``
        (spread over the interval, as hubs that started at different times)."""
        for i, hub in enumerate(self.hubs):
            if hub.seq != hub.status_seq and now >= self.status_due[i] and hub.connected:
                if self.status_due[i] == 0.0:  # first change: start this hub's own rhythm
                    self.status_due[i] = now + self.status_interval * (hub.index % 97) / 97
                    continue
                hub.status()
                self.status_due[i] = now + self.status_interval


def _hubs_process(conn: Connection, port: int, fleet: Fleet, indexes: list[int],
                  passwords: dict[str, str], published: Any, acked: Any,
                  status_interval: float) -> None:
    try:
        _Loop(conn, port, fleet, indexes, passwords, status_interval).run(published, acked)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))
        raise


class SimHubs:
    """The fleet's hubs spread over ``processes`` processes; commands go to all of them."""

    def __init__(self, port: int, fleet: Fleet, passwords: dict[str, str], processes: int,
                 status_interval: float = 5.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.fleet = fleet
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.published: list[Any] = []
        self.acked: list[Any] = []
        self._published = 0
        n = max(1, min(processes, fleet.hubs))
        for k in range(n):
            parent, child = ctx.Pipe()
            published, acked = ctx.Value("q", 0, lock=False), ctx.Value("q", 0, lock=False)
            proc = ctx.Process(target=_hubs_process, daemon=True, args=(
                child, port, fleet, list(range(k, fleet.hubs, n)), passwords, published, acked,
                status_interval))
            proc.start()
            self.procs.append(proc)
            self.conns.append(parent)
            self.published.append(published)
            self.acked.append(acked)
        try:
            self._expect("connected", 120)
        except BaseException:
            self.close()
            raise

    def _expect(self, what: str, timeout: float) -> list[tuple[Any, ...]]:
        answers = []
        deadline = time.monotonic() + timeout
        for conn, proc in zip(self.conns, self.procs, strict=True):
            while not conn.poll(0.1):
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"simulated hubs did not answer {what!r} "
                                       f"(exit code {proc.exitcode})")
            answer = conn.recv()
            if answer[0] != what:
                raise RuntimeError(f"simulated hubs: {answer}")
            answers.append(answer)
        return answers

    def _send(self, *cmd: Any) -> None:
        for conn in self.conns:
            conn.send(cmd)

    def describe(self, timeout: float = 600) -> None:
        """Every hub's status and retained descriptions, until the broker confirmed them all."""
        self._send("describe")
        self._expect("described", timeout)

    def new_epoch(self, epoch: str) -> None:
        self._send("epoch", epoch)
        self._expect("epoch", 60)

    def paced(self, rate: float, seconds: float) -> None:
        """Start publishing ``rate`` events per second in all (spread over the hubs)."""
        for conn in self.conns:
            conn.send(("paced", rate / len(self.conns), seconds))

    def burst(self, per_hub: int) -> None:
        self._send("burst", per_hub)

    def wait_published(self, timeout: float) -> int:
        """Until every process has published its share; the events published since the last
        call."""
        total = sum(a[1] for a in self._expect("published", timeout))
        since, self._published = total - self._published, total
        return since

    @property
    def published_now(self) -> int:
        return sum(v.value for v in self.published)

    @property
    def acked_now(self) -> int:
        """The sum of every hub's acknowledged mark in its current epoch."""
        return sum(v.value for v in self.acked)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send("stop")
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


@contextlib.contextmanager
def sim_hubs(port: int, fleet: Fleet, passwords: dict[str, str], processes: int,
             status_interval: float = 5.0) -> Iterator[SimHubs]:
    hubs = SimHubs(port, fleet, passwords, processes, status_interval)
    try:
        yield hubs
    finally:
        hubs.close()
