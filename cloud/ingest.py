"""The MQTT ingest worker: decode every hub message, store it, and only then acknowledge it.

paho's network thread only queues messages; one worker thread decodes them, applies a batch in one
database transaction, commits, and then sends the PUBACKs, so a crash before the commit leaves the
messages with the broker (persistent session) to be delivered again. After the commit it tells
each hub concerned how far its ledger is committed (``LedgerAck``, retained on the hub's acks
topic): a hub keeps every event and result until then, and resends what the cloud never got.
An acknowledgement that only moves a mark waits until ``ack_interval`` has passed since the hub's
last one, and goes out as the latest mark; results and answers to a status go out at once.
A batch of events (``EventBatch``) is stored as its events would be one message each, in the same
insert as the single events around it; every acknowledgement tells the hub how many events one
batch may hold (``event_batch_max``; hubs batch only after hearing it).
Bad messages are logged on one line, counted by reason and acknowledged; they never stop the worker.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cloud.live import Committed, LiveFeed
from cloud.metrics import CloudMetrics
from cloud.mqtt import Inbound, MqttLink
from cloud.settings import CloudSettings
from cloud.storage import Storage
from cloud.storage.base import (
    AckDue,
    CommandRecord,
    EventOutcome,
    IngestTx,
    StoreUnavailable,
    device_id_for,
    event_point,
)
from wire.contract import (
    MAX_PAYLOAD_BYTES,
    PAYLOAD_MODELS,
    CommandResult,
    DeviceInfo,
    Event,
    EventBatch,
    HubStatus,
    LedgerAck,
    Message,
    PairingEvent,
    TopicKind,
    Topics,
    WireError,
    decode,
    decode_events,
)

log = logging.getLogger(__name__)

_STOP = object()
_TO_HUBS = {TopicKind.COMMANDS, TopicKind.REQUESTS, TopicKind.ACKS}
# Kinds that several cloud processes may split between them (one $share group). Results are not
# shared (the process that sent a command waits for its result), retained kinds neither, and pairing
# events are not: every process stores each one (deduplicated by digest), so their ids, the clients'
# cursors, are committed in the order the hub sent them.
_SHARED = {TopicKind.EVENTS}
_RETRY_MAX_DELAY = 5.0
_ACK_RESULTS = 1000  # result ids per acknowledgement (the contract's bound)


class IngestMetrics:
    """Counters since the process started (thread-safe); /metrics reads them at each scrape."""

    # Every reason a message is refused for (a bounded label of spoke_ingest_messages_rejected).
    # invalid_event: one event of a batch broke the contract (the batch's other events are kept).
    REJECT_REASONS = ("bad_topic", "too_large", "not_json", "invalid_payload", "mismatch",
                      "unexpected_topic", "unknown_device", "implausible_seq", "unknown_command",
                      "store_error", "invalid_event")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.events = 0  # events received: one per single-event message, several per batch
        self.event_batches = 0  # messages that were batches of events
        self.stored = 0
        self.duplicates = 0
        self.gaps = 0
        self.results = 0
        self.pairing_events = 0
        self.batches = 0
        self.acks = 0
        self.rejected: Counter[str] = Counter()

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": self.received,
                "events": self.events,
                "event_batches": self.event_batches,
                "stored": self.stored,
                "duplicates": self.duplicates,
                "gaps": self.gaps,
                "results": self.results,
                "pairing_events": self.pairing_events,
                "batches": self.batches,
                "acks": self.acks,
                "rejected": dict(self.rejected),
                "rejected_total": sum(self.rejected.values()),
            }


def reject_reason(topic: str, payload: bytes) -> str:
    """Name the kind of contract violation of a message that ``decode`` refused."""
    try:
        kind, _, _ = Topics.parse(topic)
    except WireError:
        return "bad_topic"
    if len(payload) > MAX_PAYLOAD_BYTES:
        return "too_large"
    try:
        if kind is TopicKind.EVENTS:
            decode_events(payload)
        else:
            PAYLOAD_MODELS[kind].from_bytes(payload)
    except WireError:
        try:
            json.loads(payload)
        except (ValueError, RecursionError):  # nested too deep to read counts as not JSON
            return "not_json"
        return "invalid_payload"
    return "mismatch"  # valid on its own, but its hub id or IEEE disagrees with the topic


@dataclass(frozen=True, kw_only=True)
class IngestProgress:
    """Whether the ingest keeps up: messages waiting, and why it is stalled (None when it is not)."""

    waiting: int
    idle_seconds: float  # since the worker last took or finished a batch
    stall: str | None


@dataclass(frozen=True, kw_only=True)
class _Decoded:
    inbound: Inbound
    kind: TopicKind
    hub_id: str
    ieee: str | None
    message: Message | None


@dataclass(kw_only=True)
class _Applied:
    """What one batch did, gathered inside the transaction and published after the commit."""

    stored: int = 0
    events: int = 0  # events received in the batch's messages
    batched: int = 0  # messages that were batches of events
    duplicates: int = 0
    gaps: int = 0
    results: int = 0
    pairing_events: int = 0
    event_times: list[datetime]  # of the events stored (for the lag histogram)
    devices: set[str]  # ids of devices described or removed
    commands: list[CommandRecord]
    rejected: list[tuple[_Decoded, str, str]]
    acks: list[AckDue]
    live: Committed  # what the live feed shows (gathered only while it has streams)


def _runs(items: Sequence[_Decoded]) -> list[list[_Decoded]]:
    """The items in order, cut where the kind changes (and between descriptions and removals), so
    that events, and device descriptions, are applied a run at a time."""
    runs: list[list[_Decoded]] = []
    for item in items:
        last = runs[-1][-1] if runs else None
        if (last is not None and last.kind is item.kind
                and item.kind in (TopicKind.EVENTS, TopicKind.DEVICE)
                and (last.message is None) == (item.message is None)):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def ingest_subscriptions(shared_group: str | None = None) -> list[tuple[str, int]]:
    """The QoS 1 subscriptions of the ingest; events may be shared, results never are."""
    subs = []
    shared_ends = tuple("/" + kind.value for kind in _SHARED)
    for topic_filter in Topics.cloud_ingest_filters():
        if shared_group and topic_filter.endswith(shared_ends):
            topic_filter = f"$share/{shared_group}/{topic_filter}"
        subs.append((topic_filter, 1))
    return subs


class Ingest:
    """Receives hub messages over MQTT and writes them to storage off the asyncio loop."""

    def __init__(
        self,
        settings: CloudSettings,
        storage: Storage,
        on_result: Callable[[CommandRecord], None] | None = None,
        on_devices: Callable[[set[str]], None] | None = None,
        observe: CloudMetrics | None = None,
        live: LiveFeed | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.metrics = IngestMetrics()
        self.observe = observe if observe is not None else CloudMetrics()
        self._on_result = on_result
        self._on_devices = on_devices
        self.live = live
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Read by /readyz from other threads; plain assignments, so no lock per batch.
        self._idle = True  # the worker waits on an empty queue: nothing can be stuck
        self._busy = 0  # messages the worker holds (taken from the queue, not yet finished)
        self._moved_at = time.monotonic()  # when the worker last took or finished a batch
        # Acknowledgements that only move a mark, held until their hub's interval has passed (the
        # latest per hub), and when each hub was last sent one; the worker thread's alone.
        self._held: dict[str, AckDue] = {}
        self._acked_at: dict[str, float] = {}
        self.link = MqttLink(settings, ingest_subscriptions(settings.mqtt_shared_group),
                             self._queue.put)

    # Lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spoke-ingest", daemon=True)
        self._thread.start()
        self.link.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect, store what was already received, and end the worker thread."""
        self.link.stop()
        self._stopping.set()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_ready(self, timeout: float) -> bool:
        return self.link.wait_ready(timeout)

    @property
    def connected(self) -> bool:
        return self.link.connected

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        return self.link.publish(topic, payload, qos=qos)

    def progress(self) -> IngestProgress:
        """Stalled: the worker is not running, or messages wait and it has neither taken nor
        finished a batch for ``ingest_stall_after`` seconds (stuck on a database lock, or
        storage refusing writes)."""
        waiting = self._queue.qsize() + self._busy
        idle = time.monotonic() - self._moved_at
        thread = self._thread
        stall = None
        if thread is None or not thread.is_alive():
            stall = "the ingest worker is not running"
        elif waiting and not self._idle and idle > self.settings.ingest_stall_after:
            stall = (f"ingest stalled: {waiting} messages waiting, no batch finished for "
                     f"{idle:.0f}s")
        return IngestProgress(waiting=waiting, idle_seconds=idle, stall=stall)

    # Worker ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._idle = True
            try:
                first = (self._queue.get(timeout=self.settings.ack_interval) if self._held
                         else self._queue.get())
            except queue.Empty:
                self._send_held(time.monotonic())
                continue
            self._moved_at = time.monotonic()  # before _idle: a reader never sees an old time
            self._idle = False
            if first is _STOP:
                self._send_held(None)
                return
            batch: list[Inbound] = [first]
            stop = False
            while len(batch) < self.settings.ingest_batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._busy = len(batch)
            try:
                self._process(batch)
            except Exception:  # never let the worker die
                log.exception("ingest batch of %d messages failed", len(batch))
            self._moved_at = time.monotonic()
            self._busy = 0
            if stop:
                self._send_held(None)
                return

    def _process(self, batch: list[Inbound]) -> None:
        self.metrics.add(received=len(batch))
        decoded: list[_Decoded] = []
        for inbound in batch:
            try:
                kind, hub_id, ieee, message = decode(inbound.topic, inbound.payload)
            except WireError as exc:
                self._reject(inbound, reject_reason(inbound.topic, inbound.payload), str(exc))
                self.link.ack(inbound)
                continue
            if kind in _TO_HUBS:
                self._reject(inbound, "unexpected_topic", f"{kind} messages go to hubs")
                self.link.ack(inbound)
                continue
            decoded.append(_Decoded(inbound=inbound, kind=kind, hub_id=hub_id, ieee=ieee,
                                    message=message))
        if decoded:
            self._store(decoded)

    def _store(self, items: Sequence[_Decoded]) -> None:
        delay = 0.2
        while True:
            try:
                started = time.perf_counter()
                applied = self._apply(items)
                took = time.perf_counter() - started
                break
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    log.error("storage unavailable while stopping; %d messages left to the "
                              "broker to deliver again: %s", len(items), exc)
                    return
                log.error("storage unavailable, retrying %d messages in %.1fs: %s",
                          len(items), delay, exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
            except Exception:
                if len(items) == 1:
                    self._reject(items[0].inbound, "store_error", "could not be stored",
                                 exc_info=True)
                    self.link.ack(items[0].inbound)
                    return
                for item in items:  # find the one message that breaks the batch
                    self._store([item])
                return
        self.observe.batch_committed(took, applied.event_times)
        self._committed(items, applied)

    def _apply(self, items: Sequence[_Decoded]) -> _Applied:
        applied = _Applied(event_times=[], commands=[], rejected=[], devices=set(), acks=[],
                           live=Committed())
        if self._apply_results(items, applied):
            return applied
        with self.storage.registry.ingest(item.hub_id for item in items) as tx:
            statuses = [item.message for item in items if isinstance(item.message, HubStatus)]
            if statuses:
                tx.statuses_ahead(statuses)
            for run in _runs(items):
                if run[0].kind is TopicKind.EVENTS:
                    self._apply_events(tx, run, applied)
                elif run[0].kind is TopicKind.DEVICE and run[0].message is not None:
                    self._apply_descriptions(tx, run, applied)
                else:
                    for item in run:
                        self._apply_one(tx, item, applied)
            applied.acks = tx.acks_due()
        return applied

    def _apply_results(self, items: Sequence[_Decoded], applied: _Applied) -> bool:
        """A batch of command results alone through the registry's short transaction; False
        when it is not one, or needs the general transaction."""
        results = [item.message for item in items if isinstance(item.message, CommandResult)]
        if len(results) != len(items):
            return False
        done = self.storage.registry.ingest_results(results)
        if done is None:
            return False
        applied.commands, applied.acks = done
        applied.results = len(results)
        return True

    def _apply_events(self, tx: IngestTx, run: Sequence[_Decoded], applied: _Applied) -> None:
        """A run of event messages, single events and batches alike, as one list of events."""
        evs: list[Event] = []
        owners: list[_Decoded] = []  # the message each event came in
        for item in run:
            msg = item.message
            if isinstance(msg, EventBatch):
                batch = msg.expand()
                evs.extend(batch)
                owners.extend([item] * len(batch))
                applied.batched += 1
                for bad in msg.refused:
                    kept = bad.seq is not None and tx.invalid_event(
                        msg.hub_id, msg.epoch, bad.seq, bad.raw)
                    applied.rejected.append(
                        (item, "invalid_event", f"event #{bad.position}"
                         f"{'' if bad.seq is None else f' (seq {bad.seq})'} of the batch: "
                         f"{bad.reason}{' (kept as a dead letter)' if kept else ''}"))
            else:
                assert isinstance(msg, Event)
                evs.append(msg)
                owners.append(item)
        applied.events += len(evs)
        # The storage makes a point only for the export; the live feed, while it has streams,
        # makes its own.
        live = self.live is not None and self.live.active
        for item, ev, result in zip(owners, evs, tx.events(evs), strict=True):
            applied.gaps += result.gap
            if result.outcome is EventOutcome.STORED:
                applied.stored += 1
                applied.event_times.append(ev.ts)
                if live:
                    applied.live.points.append(
                        result.point or event_point(ev, device_id_for(ev.hub_id, ev.ieee)))
            elif result.outcome is EventOutcome.DUPLICATE:
                applied.duplicates += 1
            elif result.outcome is EventOutcome.IMPLAUSIBLE:
                applied.rejected.append(
                    (item, "implausible_seq", f"seq {ev.seq} is far beyond what hub "
                     f"{ev.hub_id} has committed")
                )
            else:
                applied.rejected.append(
                    (item, "unknown_device", f"no device {ev.ieee} on hub {ev.hub_id} "
                     "(kept as a dead letter)")
                )

    def _apply_descriptions(self, tx: IngestTx, run: Sequence[_Decoded],
                            applied: _Applied) -> None:
        infos: list[DeviceInfo] = []
        for item in run:
            assert isinstance(item.message, DeviceInfo) and item.ieee is not None
            infos.append(item.message)
            applied.devices.add(device_id_for(item.hub_id, item.ieee))
        points = tx.device_infos(infos)
        applied.stored += len(points)
        applied.live.points.extend(points)

    def _apply_one(self, tx: IngestTx, item: _Decoded, applied: _Applied) -> None:
        msg = item.message
        if item.kind is TopicKind.STATUS:
            assert isinstance(msg, HubStatus)
            tx.hub_status(msg)
            applied.live.hubs.add(item.hub_id)
        elif item.kind is TopicKind.DEVICE:
            assert item.ieee is not None
            applied.devices.add(device_id_for(item.hub_id, item.ieee))
            if msg is None:
                tx.device_removed(item.hub_id, item.ieee)
            else:
                assert isinstance(msg, DeviceInfo)
                points = tx.device_info(msg)
                applied.stored += len(points)
                applied.live.points.extend(points)
        elif item.kind is TopicKind.EVENTS:
            self._apply_events(tx, [item], applied)
        elif item.kind is TopicKind.RESULTS:
            assert isinstance(msg, CommandResult)
            record = tx.command_result(msg)
            if record is None:
                applied.rejected.append((item, "unknown_command", f"cmd={msg.id} is not known"))
            else:
                applied.results += 1
                applied.commands.append(record)
        elif item.kind is TopicKind.PAIRING:
            assert isinstance(msg, PairingEvent)
            if tx.pairing_event(msg):
                applied.pairing_events += 1
                applied.live.pairing.add(item.hub_id)

    def _committed(self, items: Sequence[_Decoded], applied: _Applied) -> None:
        # Requests waiting for a command's result first: it is committed, and nothing below (broker
        # acknowledgements, the hub's LedgerAck, log lines) is theirs to wait for.
        if self._on_result is not None:
            for record in applied.commands:
                try:
                    self._on_result(record)
                except Exception:
                    log.exception("cmd=%s result callback failed", record.id,
                                  extra={"cmd": record.id, "hub": record.hub_id})
        for item in items:
            self.link.ack(item.inbound)
        now = time.monotonic()
        interval = self.settings.ack_interval
        for due in applied.acks:
            if (due.results or due.asked
                    or now - self._acked_at.get(due.hub_id, -interval) >= interval):
                self._held.pop(due.hub_id, None)  # this one is newer
                self._send_ack(due, now)
            else:
                self._held[due.hub_id] = due
        self._send_held(now)
        self.metrics.add(stored=applied.stored, events=applied.events,
                         event_batches=applied.batched, duplicates=applied.duplicates, gaps=applied.gaps,
                         results=applied.results, pairing_events=applied.pairing_events,
                         batches=1)
        for item, reason, detail in applied.rejected:
            self._reject(item.inbound, reason, detail)
        for record in applied.commands:
            log.info("cmd=%s result %s%s", record.id, record.status,
                     f" ({record.error_code}: {record.error})" if record.error else "",
                     extra={"cmd": record.id, "hub": record.hub_id})
        if self._on_devices is not None and applied.devices:
            try:
                self._on_devices(applied.devices)
            except Exception:
                log.exception("device change callback failed")
        if self.live is not None and self.live.active:
            applied.live.devices = applied.devices
            try:
                self.live.committed(applied.live)
            except Exception:
                log.exception("live feed failed")

    def _send_ack(self, due: AckDue, now: float) -> None:
        """Tell the hub its committed mark (and results), retained: it reads it when it comes back."""
        self._acked_at[due.hub_id] = now
        sent = 0
        for start in range(0, max(1, len(due.results)), _ACK_RESULTS):
            ack = LedgerAck(hub_id=due.hub_id, epoch=due.epoch, seq=due.seq,
                            results=due.results[start:start + _ACK_RESULTS],
                            batch_max=self.settings.event_batch_max)
            sent += self.link.publish(Topics.acks(due.hub_id), ack.to_bytes(), retain=True)
        if sent:
            self.metrics.add(acks=sent)

    def _send_held(self, now: float | None) -> None:
        """Send the held acknowledgements whose hub's interval has passed (all of them: None)."""
        if not self._held:
            return
        interval = self.settings.ack_interval
        for hub_id, due in list(self._held.items()):
            if now is None or now - self._acked_at.get(hub_id, -interval) >= interval:
                del self._held[hub_id]
                self._send_ack(due, time.monotonic() if now is None else now)

    def _reject(self, inbound: Inbound, reason: str, detail: str, exc_info: bool = False) -> None:
        self.metrics.reject(reason)
        try:
            fields = {"hub": Topics.parse(inbound.topic)[1]}
        except WireError:
            fields = {}  # not a Spoke topic: no hub to name
        log.warning("rejected message on %s (%s): %s", inbound.topic, reason, detail,
                    exc_info=exc_info, extra=fields)
