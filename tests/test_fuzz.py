"""Fuzzing what arrives over MQTT: the cloud's ingest and the hub's command and request
handling each take at least 10,000 hostile or malformed payloads (interleaved with valid ones)
without an exception, store nothing but the valid events, and account for every message.

The ingest runs for real on a SQLite file: ``Ingest._process`` decodes a batch and applies it in one
transaction, exactly what the worker thread does with what paho queued (tests/test_cloud_ingest.py
covers the broker path; the direct path is what makes 10,000+ cases take seconds). A ledger model
of the README's rules (seq per hub and epoch, duplicates, gaps, late events, implausible seqs)
says what the database and the metrics must hold after each batch.

The hub side is a real ``Hub`` that was never started: its ``HubStore`` on SQLite, a ``HubLink``
never connected (results wait in the outbox), and its tracker following one zigpy device, a virtual
dimmable light that joined the simulator's network (tests/sim_devices.py), so valid commands really
execute on it and read back. Messages go in through the hub's dispatcher
(``Dispatcher.on_message``), the MQTT entry point of commands, management requests and acks.

Strategies are in tests/fuzz_payloads.py (the ingest's) and tests/fuzz_commands.py (the hub's).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from zigpy.zcl.clusters.general import Basic, LevelControl, OnOff

from cloud.ingest import Ingest
from cloud.mqtt import Inbound
from cloud.settings import CloudSettings
from cloud.storage import open_storage
from cloud.storage.base import device_id_for
from cloud.storage.sql_ingest import MAX_AHEAD
from cloud.storage.sql_schema import (
    commands,
    dead_letters,
    devices,
    events,
    hubs,
    ledgers,
    pairing_events,
)
from hub.app import Hub
from hub.settings import HubSettings
from simulators.kinds import ClusterSpec
from tests.fuzz_commands import HUB_DEVICE, Delivery, hub_deliveries, usable_id
from tests.fuzz_payloads import HUB, IEEE, T0, Wire, finite_json, ingest_messages
from tests.sim_devices import SimZigbee
from wire.contract import CommandResult, DeviceInfo, Event, HubStatus, Topics, Value

MIN_PAYLOADS = 10_000
FUZZ = settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
DEVICE_ID = device_id_for(HUB, IEEE)
SEEDED = 5
SEED_STATUS = HubStatus(hub_id=HUB, online=True, version="test", ts=T0)
SEED_DEVICE = DeviceInfo(hub_id=HUB, ieee=IEEE, nwk=0x1234, manufacturer="Acme", model="Plug 1",
                         capabilities={"switch": {"on": False}, "level": {"level": 10}})
DECODE_REASONS = {"bad_topic", "too_large", "not_json", "invalid_payload", "mismatch"}


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> None:
    """One warning per rejected message is right in production and noise here."""
    for name in ("cloud.ingest", "hub"):
        caplog.set_level(logging.ERROR, logger=name)


def report(capsys: pytest.CaptureFixture[str], what: str, seen: Counter[str], extra: str) -> None:
    """Print what was fuzzed (past pytest's capture) and hold the test to its floor of 10,000."""
    kinds = {k: v for k, v in seen.items() if k not in ("payloads", "examples")}
    with capsys.disabled():
        print(f"\n{what}: {seen['payloads']} fuzzed payloads in {seen['examples']} examples {kinds}"
              f"\n  {extra}")
    assert seen["payloads"] >= MIN_PAYLOADS


# --------------------------------------------------------------------------------------------------
# Cloud ingest
# --------------------------------------------------------------------------------------------------


@dataclass
class OtherLedger:
    """A hub with no devices: each of its events is kept as a dead letter."""

    mark: int = 0
    last_seq: int | None = None
    letters: set[int] = field(default_factory=set)


@dataclass
class Ledger:
    """What the cloud must hold for hub-1: the README's event ledger, applied message by message.

    ``mark`` is the highest contiguous committed sequence number, as of the start of the batch
    being applied (the cloud refuses a seq more than MAX_AHEAD beyond it)."""

    rows: dict[int, Event]
    state: dict[str, dict[str, Value]]
    last_seq: int | None
    gaps: int = 0
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    letters: set[int] = field(default_factory=set)  # dead-lettered seqs (unknown devices)
    mark: int = 0
    # What the metrics must have counted in this batch.
    new_stored: int = 0
    new_duplicates: int = 0
    new_gaps: int = 0  # the metric counts gaps found, not the ones late events fill
    unknown_device: int = 0
    implausible: int = 0
    other_hubs: dict[str, OtherLedger] = field(default_factory=dict)

    def batch_committed(self) -> None:
        """A transaction ended: marks move over every contiguous committed seq."""
        committed = set(self.rows) | self.letters
        while self.mark + 1 in committed:
            self.mark += 1
        for other in self.other_hubs.values():
            while other.mark + 1 in other.letters:
                other.mark += 1

    def apply(self, ev: Event) -> None:
        if ev.hub_id != HUB:  # no hub but hub-1 has devices: another hub's events are letters
            other = self.other_hubs.setdefault(ev.hub_id, OtherLedger())
            if ev.seq > other.mark + MAX_AHEAD:
                self.implausible += 1
            elif ev.seq in other.letters:
                self.new_duplicates += 1
            else:
                other.letters.add(ev.seq)
                self.unknown_device += 1
                if other.last_seq is None or ev.seq > other.last_seq:
                    base = other.last_seq if other.last_seq is not None else other.mark
                    self.new_gaps += max(0, ev.seq - base - 1)
                    other.last_seq = ev.seq
            return
        self.received += 1
        if ev.seq > self.mark + MAX_AHEAD:
            self.implausible += 1
            return
        if ev.ieee != IEEE:
            if ev.seq in self.letters:
                self.duplicates += 1
                self.new_duplicates += 1
                return
            self.letters.add(ev.seq)
            self.unknown_device += 1
            self._advance(ev.seq)  # an unknown device's event still takes its seq
            return
        if ev.seq in self.rows:
            self.duplicates += 1
            self.new_duplicates += 1
            return
        self.rows[ev.seq] = ev
        self.stored += 1
        self.new_stored += 1
        if self.last_seq is None or ev.seq > self.last_seq:
            self._advance(ev.seq)
            self.state.setdefault(ev.capability, {})[ev.attribute] = ev.value
        elif ev.seq < self.last_seq and self.gaps > 0:
            self.gaps -= 1  # a late event fills a hole; it is history, not the current state

    def _advance(self, seq: int) -> None:
        if self.last_seq is not None and seq <= self.last_seq:
            return
        base = self.last_seq if self.last_seq is not None else self.mark
        gap = max(0, seq - base - 1)
        self.gaps += gap
        self.new_gaps += gap
        self.last_seq = seq


def seed_events() -> list[Event]:
    return [Event(hub_id=HUB, seq=seq, ts=T0 + timedelta(seconds=seq), ieee=IEEE,
                  capability="switch", attribute="on", value=seq % 2 == 1)
            for seq in range(1, SEEDED + 1)]


class IngestRig:
    """A real Ingest on a SQLite file, never connected: batches go straight to ``_process``."""

    def __init__(self, tmp_path: Path) -> None:
        cloud = CloudSettings(database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
                              mqtt_host="127.0.0.1", mqtt_port=1)
        self.storage = open_storage(cloud)
        self.ingest = Ingest(cloud, self.storage)
        self.engine = self.storage.registry.engine  # type: ignore[attr-defined]
        self.mid = 0

    def process(self, messages: list[tuple[str, bytes]]) -> None:
        batch = []
        for topic, payload in messages:
            self.mid = self.mid % 65535 + 1
            batch.append(Inbound(topic=topic, payload=payload, mid=self.mid, qos=1, retain=False))
        self.ingest._process(batch)  # raises whatever escapes: that is the test

    def reset(self) -> Ledger:
        """Empty the database, then let the ingest store one hub, one device and seqs 1..5."""
        with self.engine.begin() as conn:
            for table in (events, devices, hubs, commands, pairing_events, ledgers,
                          dead_letters):
                conn.execute(delete(table))
        seeds = seed_events()
        self.process([(Topics.status(HUB), SEED_STATUS.to_bytes()),
                      (Topics.device(HUB, IEEE), SEED_DEVICE.to_bytes()),
                      *((Topics.events(HUB), ev.to_bytes()) for ev in seeds)])
        state = {cap: dict(attrs) for cap, attrs in SEED_DEVICE.capabilities.items()}
        state["switch"]["on"] = seeds[-1].value
        return Ledger(rows={ev.seq: ev for ev in seeds}, state=state, last_seq=SEEDED,
                      received=SEEDED, stored=SEEDED, mark=SEEDED)

    def check(self, ledger: Ledger, wires: list[Wire], before: dict[str, Any]) -> None:
        after = self.ingest.metrics.snapshot()
        delta = {k: after[k] - before[k] for k in ("received", "stored", "duplicates", "gaps",
                                                   "results", "pairing_events")}
        rejected = Counter(after["rejected"])
        rejected.subtract(before["rejected"])
        rejected = +rejected
        expected = Counter(w.expect for w in wires)
        # Every message is accounted for, by its reason.
        assert delta["received"] == len(wires)
        assert (delta["stored"], delta["duplicates"], delta["gaps"]) == (
            ledger.new_stored, ledger.new_duplicates, ledger.new_gaps)
        assert (delta["results"], delta["pairing_events"]) == (0, 0)
        assert rejected["unknown_device"] == ledger.unknown_device
        assert rejected["implausible_seq"] == ledger.implausible
        assert rejected["unknown_command"] == expected["unknown_command"]
        assert rejected["unexpected_topic"] == expected["to_hub"]
        assert rejected["bad_topic"] == expected["bad_topic"], rejected
        assert sum(rejected[r] for r in DECODE_REASONS) == expected["invalid"] + expected["bad_topic"]
        assert set(rejected) <= DECODE_REASONS | {"unknown_device", "unknown_command",
                                                  "unexpected_topic", "implausible_seq"
                                                  }, rejected  # no store_error
        assert delta["received"] == (delta["stored"] + delta["duplicates"] + delta["results"]
                                     + delta["pairing_events"] + sum(rejected.values()))

        with self.engine.connect() as conn:
            stored = conn.execute(select(events)).all()
            hub_rows = {r.id: r for r in conn.execute(select(hubs)).all()}
            device_rows = conn.execute(select(devices)).all()
            assert conn.execute(select(commands)).all() == []
            assert conn.execute(select(pairing_events)).all() == []
        # The telemetry is exactly the valid events, as they were sent.
        assert sorted(r.seq for r in stored) == sorted(ledger.rows)
        for row in stored:
            ev = ledger.rows[row.seq]
            assert (row.hub_id, row.device_id, row.capability, row.attribute, row.unit) == (
                HUB, DEVICE_ID, ev.capability, ev.attribute, ev.unit)
            assert row.value_json == json.dumps(ev.value) and finite_json(json.loads(row.value_json))
            assert row.ts == ev.ts
        # Hub counters and the device follow the ledger; nothing else was described.
        hub = hub_rows.pop(HUB)
        assert (hub.events_received, hub.events_stored, hub.duplicates, hub.gaps, hub.last_seq) == (
            ledger.received, ledger.stored, ledger.duplicates, ledger.gaps, ledger.last_seq)
        assert hub.online is True
        assert hub.status == SEED_STATUS.model_dump(mode="json", exclude={"groups"})
        result_hubs = {Topics.parse(w.topic)[1] for w in wires if w.expect == "unknown_command"}
        assert set(hub_rows) <= set(ledger.other_hubs) | result_hubs
        assert all(h.events_stored == 0 and h.status is None for h in hub_rows.values())
        [device] = device_rows
        assert (device.id, device.manufacturer, device.model, device.nwk, device.name) == (
            DEVICE_ID, "Acme", "Plug 1", 0x1234, None)
        assert device.available is True and device.removed is False
        assert device.capabilities == ledger.state and finite_json(device.capabilities)


@pytest.fixture
def ingest_rig(tmp_path: Path) -> Iterator[IngestRig]:
    rig = IngestRig(tmp_path)
    yield rig
    rig.storage.close()


def test_ingest_survives_hostile_payloads(ingest_rig: IngestRig, quiet: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    seen: Counter[str] = Counter()

    @FUZZ
    @given(wires=st.lists(ingest_messages, min_size=20, max_size=24),
           cuts=st.lists(st.integers(1, 23), max_size=3))
    def batch(wires: list[Wire], cuts: list[int]) -> None:
        ledger = ingest_rig.reset()
        before = ingest_rig.ingest.metrics.snapshot()
        bounds = [0, *sorted(c for c in set(cuts) if c < len(wires)), len(wires)]
        for start, end in itertools.pairwise(bounds):
            ingest_rig.process([(w.topic, w.payload) for w in wires[start:end]])
            for w in wires[start:end]:
                if w.expect == "event":
                    assert w.event is not None
                    ledger.apply(w.event)
            ledger.batch_committed()
        ingest_rig.check(ledger, wires, before)
        seen["payloads"] += len(wires)
        seen["examples"] += 1
        seen.update(w.expect for w in wires)

    batch()
    metrics = ingest_rig.ingest.metrics.snapshot()
    report(capsys, "cloud ingest", seen, f"ingest metrics (seeds included): {metrics}")


# --------------------------------------------------------------------------------------------------
# Hub command handling
# --------------------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the executor must have done with one example's deliveries."""

    counts: Counter[str] = field(default_factory=Counter)
    rows: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)

    def deliver(self, d: Delivery) -> None:
        if d.kind in ("ignored", "request"):
            return
        self.counts["received"] += 1
        if d.kind == "command":
            assert d.id is not None and d.expect is not None
            if d.id in self.answered:  # never run again; the first answer is repeated
                self.counts["duplicate"] += 1
                self.rows.append(("again", d.id, None, None))
            else:
                self.answered.add(d.id)
                self.counts[d.expect] += 1
                self.rows.append(("first", d.id, d.expect, d.error_code))
            return
        self.counts["rejected"] += 1
        command_id = usable_id(d.payload)
        if command_id is not None and command_id not in self.answered:
            self.answered.add(command_id)
            self.rows.append(("first", command_id, "failed", "invalid"))


class HubRig:
    """A Hub that was never started, following one virtual device; its own event loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.hub = Hub(HubSettings(hub_id=HUB, hub_data_dir=tmp_path / "hub", command_timeout=2.0,
                                   device_info_debounce=3600.0))
        self.sim = self.loop.run_until_complete(SimZigbee.start())
        light = {1: ([Basic, ClusterSpec(cluster=OnOff, values={"on_off": 0}),
                      ClusterSpec(cluster=LevelControl, values={"current_level": 128})], [])}
        self.device = self.loop.run_until_complete(self.sim.join(light, ieee=HUB_DEVICE)).device
        self.hub.tracker.track(self.device)
        assert str(self.device.ieee) == HUB_DEVICE
        self.outbox_seen = 0

    def run(self, deliveries: list[Delivery]) -> None:
        # zigpy drops a frame equal to one received in the last 10 s as a duplicate. The virtual
        # device answers hundreds of commands a second, so after 256 requests (the TSN wraps) its
        # answer to the same command repeats byte for byte: forget the frames of earlier examples.
        self.device._packet_debouncer.clean(math.inf)

        async def deliver() -> None:
            for d in deliveries:
                await self.hub.dispatch.on_message(d.topic, d.payload, False)  # raises whatever escapes

        self.loop.run_until_complete(deliver())

    def new_rows(self) -> list[Any]:
        rows = self.hub.store.pending_rows(self.outbox_seen, 1_000_000)
        if rows:
            self.outbox_seen = rows[-1].id
        return rows

    def close(self) -> None:
        self.hub.tracker.close()
        try:
            self.loop.run_until_complete(self.hub.publisher.stop())  # commits what is queued
            self.loop.run_until_complete(self.sim.close())
        finally:
            self.hub.store.close()
            self.loop.close()


@pytest.fixture
def hub_rig(tmp_path: Path) -> Iterator[HubRig]:
    rig = HubRig(tmp_path)
    yield rig
    rig.close()


def test_hub_command_handling_survives_hostile_payloads(hub_rig: HubRig, quiet: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    hub, executor = hub_rig.hub, hub_rig.hub.executor
    seen: Counter[str] = Counter()

    @FUZZ
    @given(deliveries=st.lists(hub_deliveries, min_size=23, max_size=27),
           again=st.lists(st.tuples(st.integers(0, 26), st.integers(0, 27)), max_size=4))
    def batch(deliveries: list[Delivery], again: list[tuple[int, int]]) -> None:
        for source, at in again:  # redeliveries of the very same message
            if source < len(deliveries):
                deliveries.insert(min(at, len(deliveries)), deliveries[source])
        hub.store.db.execute("DELETE FROM commands")  # each example starts with an empty journal
        hub_rig.new_rows()
        before = dict(executor.counts)
        hub_rig.run(deliveries)

        expected = Expected()
        for d in deliveries:
            expected.deliver(d)
        counts = {k: v - before[k] for k, v in executor.counts.items()}
        assert counts == {k: expected.counts[k] for k in counts}
        assert counts["received"] == sum(v for k, v in counts.items() if k != "received")

        rows = hub_rig.new_rows()
        results = [r for r in rows if r.topic == Topics.results(HUB)]
        assert all(r.topic in (Topics.results(HUB), Topics.events(HUB)) for r in rows)
        if not counts["succeeded"]:  # only an executed command changes the device
            assert len(results) == len(rows)
        assert len(results) == len(expected.rows)
        first: dict[str, bytes] = {}
        for row, (how, command_id, status, error_code) in zip(results, expected.rows, strict=True):
            if how == "again":
                assert row.payload == first[command_id]  # the same answer, not a new execution
                continue
            result = CommandResult.from_bytes(row.payload)
            assert (result.id, result.hub_id, result.status) == (command_id, HUB, status), result
            if error_code is not None:
                assert result.error_code == error_code, result
            first[command_id] = row.payload
        journal = dict(hub.store.db.execute("SELECT id, result FROM commands").fetchall())
        assert set(journal) == expected.answered
        assert all(journal[i] == first[i] for i in journal)  # journaled with its one answer
        # Hostile requests changed nothing.
        assert hub.store.names() == {} and hub.tracker.names == {}
        assert list(hub.tracker.devices) == [HUB_DEVICE]
        # Counted: what reached the command executor or the request handler.
        seen["payloads"] += sum(d.kind != "ignored" for d in deliveries)
        seen["examples"] += 1
        seen.update(d.expect or d.kind for d in deliveries)

    batch()
    report(capsys, "hub commands and requests", seen, f"executor counts: {executor.counts}")
