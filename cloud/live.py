"""Live updates for the dashboard: what the ingest committed, fanned out to each account's streams.

The ingest worker (a thread) hands over each committed batch; the feed turns it into JSON messages
once and queues them, through the event loop, on the streams of the accounts whose hubs they are
from. A stream's queue is bounded: a client that does not keep up is dropped (its stream ends with a
``dropped`` message, and the page reloads what it shows) instead of letting the queue grow. Nothing
is done for a batch while no stream is open.

With several cloud processes each one serves its own streams; hub statuses, device descriptions and
pairing steps reach every process already, and events, which the broker splits between processes,
come to each process's feed through an observer subscription of its own (``cloud.live_observer``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloud.storage.base import DeviceRecord, HubRecord, TelemetryPoint

# A stream's queue ends with one of these (never a message).
END = object()  # the cloud stops, or the token is no longer valid
DROPPED = object()  # the client did not read fast enough

_ACCOUNT_TTL = 30.0  # seconds a hub's account is cached (hubs change account only when registered)


class TooManyStreams(Exception):
    """The token has as many streams open as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} live streams per token; close one first")
        self.limit = limit


@dataclass(eq=False, kw_only=True)
class Stream:
    """One client's stream: its account, its token and its bounded queue of SSE messages."""

    account: str
    token_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    closed: bool = False

    def offer(self, messages: Sequence[str]) -> None:
        """Queue messages (on the event loop's thread); drop the stream when its queue is full."""
        if self.closed:
            return
        for message in messages:
            try:
                self.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._end(DROPPED)
                return

    def _end(self, why: object) -> None:
        """Empty the queue and leave only ``why`` in it (so a full queue can take it)."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(why)


def sse(kind: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {kind}\ndata: {json.dumps(data, default=_iso, separators=(',', ':'))}\n\n"


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(kw_only=True)
class Committed:
    """What one ingest batch committed, as the feed needs it."""

    points: list[TelemetryPoint] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)  # described, changed or removed
    hubs: set[str] = field(default_factory=set)  # a new status
    pairing: set[str] = field(default_factory=set)  # hubs with new pairing steps


class LiveFeed:
    """In-process fan-out of committed changes to the open streams, by account."""

    def __init__(
        self,
        hub_account: Callable[[str], str | None],
        get_device: Callable[[str], DeviceRecord | None],
        get_hub: Callable[[str], HubRecord | None],
        *,
        queue_size: int = 1000,
        per_token: int = 4,
        device_view: Callable[[DeviceRecord], Any] = lambda d: d.__dict__,
        hub_view: Callable[[HubRecord], Any] = lambda h: h.__dict__,
    ) -> None:
        self._hub_account = hub_account
        self._get_device = get_device
        self._get_hub = get_hub
        self.queue_size = queue_size
        self.per_token = per_token
        self.device_view = device_view
        self.hub_view = hub_view
        self.events_from_ingest = True  # False while an observer feeds events instead
        self.on_first_stream: Callable[[], None] | None = None  # called as each stream opens
        self._lock = threading.Lock()
        self._streams: dict[str, set[Stream]] = {}  # by account
        self._accounts: dict[str, tuple[str | None, float]] = {}  # hub id -> (account, when)
        self.dropped = 0  # streams dropped for being slow, since the process started

    # Streams --------------------------------------------------------------------------------------
    def open(self, account: str, token_id: str) -> Stream:
        """A new stream for ``account`` (on the running event loop); TooManyStreams beyond the
        token's limit."""
        stream = Stream(account=account, token_id=token_id, loop=asyncio.get_running_loop(),
                        queue=asyncio.Queue(self.queue_size + 1))  # + 1: room for DROPPED
        with self._lock:
            streams = self._streams.setdefault(account, set())
            if sum(s.token_id == token_id for s in self._all()) >= self.per_token:
                if not streams:
                    del self._streams[account]
                raise TooManyStreams(self.per_token)
            streams.add(stream)
        if self.on_first_stream is not None:
            self.on_first_stream()
        return stream

    def close(self, stream: Stream) -> None:
        with self._lock:
            streams = self._streams.get(stream.account)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[stream.account]
        stream.closed = True

    def end_all(self) -> None:
        """End every stream (the cloud stops), so that no response stays open."""
        with self._lock:
            streams = list(self._all())
        for stream in streams:
            stream.loop.call_soon_threadsafe(stream._end, END)

    @property
    def active(self) -> bool:
        return bool(self._streams)

    def open_streams(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._streams.values())

    def _all(self) -> Iterable[Stream]:
        for streams in self._streams.values():
            yield from streams

    # From the ingest ------------------------------------------------------------------------------
    def committed(self, batch: Committed) -> None:
        """Called by the ingest after each commit (from its thread): queue what changed. Hubs and
        devices are read again only for accounts with a stream open."""
        if not self._streams:
            return
        by_hub: dict[str, list[str]] = {}
        if self.events_from_ingest:
            for point in batch.points:
                if self._watched(point.hub_id):
                    by_hub.setdefault(point.hub_id, []).append(point_message(point))
        for hub_id in sorted(batch.hubs):
            hub = self._get_hub(hub_id) if self._watched(hub_id) else None
            if hub is not None:
                by_hub.setdefault(hub_id, []).append(sse("hub", self.hub_view(hub)))
        for device_id in sorted(batch.devices):
            # A device's id is its hub's id, a dash and its IEEE address (device_id_for).
            if not self._watched(device_id.rpartition("-")[0]):
                continue
            device = self._get_device(device_id)
            if device is None:
                continue
            if device.removed:
                message = sse("device_removed", {"id": device.id, "hub_id": device.hub_id})
            else:
                message = sse("device", self.device_view(device))
            by_hub.setdefault(device.hub_id, []).append(message)
        for hub_id in sorted(batch.pairing):
            if self._watched(hub_id):
                by_hub.setdefault(hub_id, []).append(sse("pairing", {"hub_id": hub_id}))
        self.send(by_hub)

    def points(self, points: Sequence[TelemetryPoint]) -> None:
        """Events seen by an observer (another process stores them)."""
        if not self._streams:
            return
        by_hub: dict[str, list[str]] = {}
        for point in points:
            if self._watched(point.hub_id):
                by_hub.setdefault(point.hub_id, []).append(point_message(point))
        self.send(by_hub)

    def send(self, by_hub: dict[str, list[str]]) -> None:
        """Queue each hub's messages on the streams of the hub's account."""
        by_account: dict[str, list[str]] = {}
        for hub_id, messages in by_hub.items():
            account = self._account(hub_id)
            if account is not None:
                by_account.setdefault(account, []).extend(messages)
        with self._lock:
            targets = [(stream, by_account[account]) for account in by_account
                       for stream in self._streams.get(account, ())]
        for stream, messages in targets:
            try:
                stream.loop.call_soon_threadsafe(stream.offer, messages)
            except RuntimeError:  # its loop is closed: the stream is gone
                self.close(stream)

    def _watched(self, hub_id: str) -> bool:
        """Whether the hub's account has a stream open."""
        account = self._account(hub_id)
        return account is not None and account in self._streams

    def _account(self, hub_id: str) -> str | None:
        now = time.monotonic()
        cached = self._accounts.get(hub_id)
        if cached is not None and now - cached[1] < _ACCOUNT_TTL:
            return cached[0]
        account = self._hub_account(hub_id)
        if len(self._accounts) > 100_000:
            self._accounts.clear()
        self._accounts[hub_id] = (account, now)
        return account


def point_message(point: TelemetryPoint) -> str:
    return sse("event", {"device_id": point.device_id, "hub_id": point.hub_id, "seq": point.seq,
                         "capability": point.capability, "attribute": point.attribute,
                         "value": point.value, "unit": point.unit, "ts": point.ts})
