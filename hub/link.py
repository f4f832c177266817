"""The hub's MQTT link: paho-mqtt with a last will, a persistent session and the outbox pump.

The pump publishes outbox rows in order, at most a window of messages unacknowledged by the broker
at a time. A broker acknowledgement only frees room in the window: rows leave the outbox when the
cloud acknowledges them (hub.publisher). Once the cloud said it takes batches (``batch_max``),
consecutive event rows leave as one ``EventBatch`` message, joined without parsing them; a batch not
full waits up to ``event_batch_delay`` after its first event for more, and whatever comes before a
command result goes with it at once. paho runs its network loop in its own thread; everything it
reports is handed to the asyncio loop with call_soon_threadsafe, so the rest of the hub stays
single-threaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.mqtt_client import LOOP_STOP_TIMEOUT, LoopHandoff, joined, no_delay
from hub.mqtt_security import secure
from hub.settings import HubSettings
from hub.store import HubStore, OutboxRow
from wire.contract import MAX_PAYLOAD_BYTES, EventBatcher, HubStatus, Topics, hub_client_id

LOGGER = logging.getLogger(__name__)
INFLIGHT_WINDOW = 100

MessageHandler = Callable[[str, bytes, bool], Awaitable[None]]  # topic, payload, retained
ConnectedHandler = Callable[[bool], None]  # the broker kept our session


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One message of the outbox: a row as it is, or a batch of consecutive event rows."""

    payload: bytes
    topic: str
    retain: bool
    last_id: int  # the newest outbox row it carries
    rows: int
    first_created: float  # when its oldest row was written
    joinable: bool = False  # events that may still be joined by more


class HubLink(LoopHandoff):
    """Publishes the outbox in order, retained state directly, and delivers commands."""

    def __init__(self, settings: HubSettings, store: HubStore, on_message: MessageHandler,
                 on_connected: ConnectedHandler) -> None:
        self.settings = settings
        self.hub_id = settings.hub_id
        self.store = store
        self._on_message = on_message
        self._on_connected = on_connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox rows it carries
        self._batcher = EventBatcher(self.hub_id, store.epoch)
        # Events per message: 1 until the cloud's acknowledgement says it takes batches.
        self.batch_max = 1
        self._hold: asyncio.TimerHandle | None = None  # wakes the pump for a batch held back
        # Broker acknowledgements (paho mids) from paho's thread, handed to the loop in batches:
        # one loop wake-up per batch, not one per message.
        self._acked_mids: deque[int] = deque()
        self._acks_handed = False
        self._sent_upto = 0
        self._pump_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.published = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=hub_client_id(self.hub_id),
            clean_session=False,  # keep command subscriptions queued while we are away
            protocol=mqtt.MQTTv311,
        )
        secure(self.client, settings)
        self.client.will_set(Topics.status(self.hub_id),
                             HubStatus(hub_id=self.hub_id, online=False,
                                       reason="connection lost").to_bytes(), qos=1, retain=True)
        self.client.max_inflight_messages_set(INFLIGHT_WINDOW)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_socket_open = no_delay
        self.client.on_connect = self._paho_connect
        self.client.on_disconnect = self._paho_disconnect
        self.client.on_message = self._paho_message
        self.client.on_publish = self._paho_publish

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port,
                                  keepalive=self.settings.mqtt_keepalive)
        self.client.loop_start()
        self._pump_task = asyncio.create_task(self._pump(), name="outbox-pump")

    async def stop(self, status: HubStatus | None = None) -> None:
        """Publish a final status (clean shutdown, so the will is not sent) and disconnect."""
        if status is not None and self.connected.is_set():
            info = self.client.publish(Topics.status(self.hub_id), status.to_bytes(), qos=1,
                                       retain=True)
            await joined(lambda: info.wait_for_publish(2), 3)
        if self._hold is not None:
            self._hold.cancel()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        self._stopped = True  # what paho's thread hands over from now on is dropped
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=LOOP_STOP_TIMEOUT)
        self.client.disconnect()
        await joined(self.client.loop_stop, LOOP_STOP_TIMEOUT)

    # ------------------------------------------------------------------ publishing
    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Latest-state messages (status, device descriptions): republished on every connect."""
        if self.connected.is_set():
            self.client.publish(topic, payload, qos=1, retain=True)

    def publish_live(self, topic: str, payload: bytes) -> None:
        """Live, best-effort messages (pairing progress): not worth an outbox row."""
        if self.connected.is_set():
            self.client.publish(topic, payload, qos=1)

    def kick(self) -> None:
        """Something was added to the outbox."""
        self._wake.set()

    def rewind(self) -> None:
        """Send every row still in the outbox again, from the oldest (the cloud did not get them)."""
        self._sent_upto = 0
        self._wake.set()

    @property
    def sent_upto(self) -> int:
        """The id of the newest outbox row handed to the broker since the last rewind."""
        return self._sent_upto

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.connected.is_set():
                self._send()

    def _send(self) -> None:
        room = INFLIGHT_WINDOW - len(self._inflight)
        if room <= 0:
            return
        limit = room * self.batch_max
        rows = self.store.pending_rows(self._sent_upto, limit)
        messages = self._messages(rows)
        more = len(rows) == limit  # rows left behind once acks make room
        if messages and not more and self._open(messages[-1]):
            held = messages.pop()
            wait = held.first_created + self.settings.event_batch_delay - time.time()
            if self._hold is not None:
                self._hold.cancel()
            self._hold = asyncio.get_running_loop().call_later(max(0.0, wait), self._wake.set)
        for message in messages[:room]:
            info = self.client.publish(message.topic, message.payload, qos=1,
                                       retain=message.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # Not handed to the socket: leave it in the outbox and retry on reconnect.
                self.last_error = mqtt.error_string(info.rc)
                return
            self._inflight[info.mid] = message.rows
            self._sent_upto = message.last_id
        if more:
            self._wake.set()  # more waiting once acks make room

    def _open(self, message: _Outgoing) -> bool:
        """A batch that could take more events, whose first event has not waited its delay."""
        return (message.joinable and message.rows < self.batch_max
                and time.time() - message.first_created < self.settings.event_batch_delay)

    def _messages(self, rows: list[OutboxRow]) -> list[_Outgoing]:
        """The rows as messages: runs of consecutive events of the current ledger joined in
        batches of at most ``batch_max`` events and ``MAX_PAYLOAD_BYTES``; other rows alone."""
        out: list[_Outgoing] = []
        run: list[OutboxRow] = []
        items: list[bytes] = []
        size = 0

        def close_run() -> None:
            if len(run) == 1:
                out.append(self._alone(run[0], joinable=True))
            elif run:
                out.append(_Outgoing(self._batcher.join(items), run[0].topic, False, run[-1].id,
                                     len(run), run[0].created, joinable=True))
            run.clear()
            items.clear()

        for row in rows:
            item = (self._batcher.item(row.payload)
                    if self.batch_max > 1 and row.kind == "event" and not row.retain else None)
            if item is None:
                close_run()
                out.append(self._alone(row))
                continue
            if run and (len(run) >= self.batch_max or size + len(item)
                        + self._batcher.overhead(len(run) + 1) > MAX_PAYLOAD_BYTES):
                close_run()
            if not run:
                size = 0
            run.append(row)
            items.append(item)
            size += len(item)
        close_run()
        return out

    @staticmethod
    def _alone(row: OutboxRow, joinable: bool = False) -> _Outgoing:
        return _Outgoing(row.payload, row.topic, row.retain, row.id, 1, row.created, joinable)

    def _acked(self) -> None:
        self._acks_handed = False  # before draining: a mid appended from now on is handed again
        mids = self._acked_mids
        while mids:
            rows = self._inflight.pop(mids.popleft(), None)
            if rows is not None:
                self.published += rows
        self._wake.set()

    # ------------------------------------------------------------------ paho callbacks (thread)
    def _paho_connect(self, client: mqtt.Client, userdata: object, flags: object,
                      reason_code: object, properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            LOGGER.warning("MQTT broker refused the hub: %s", reason_code)
            self.last_error = str(reason_code)
            return
        client.subscribe([(topic, 1) for topic in Topics.hub_filters(self.hub_id)])
        self._call(self._connected, bool(getattr(flags, "session_present", False)))

    def _connected(self, session_present: bool) -> None:
        LOGGER.info("MQTT connected to %s:%s as hub %s (session %s)", self.settings.mqtt_host,
                    self.settings.mqtt_port, self.hub_id, "resumed" if session_present else "new",
                    extra={"hub": self.hub_id})
        self.connected.set()
        # Descriptions first, then the outbox: the cloud must know a device before its events.
        # paho resends its own unacknowledged messages; a broker that lost our session may have
        # lost queued rows too, so then everything still in the outbox goes again.
        if not session_present:
            self._sent_upto = 0
            self._inflight.clear()  # paho will not resend those into a new session
        self._on_connected(session_present)
        self._wake.set()

    def _paho_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                         reason_code: object, properties: object) -> None:
        self._call(self._disconnected, str(reason_code))

    def _disconnected(self, reason: str) -> None:
        if self.connected.is_set():
            LOGGER.warning("MQTT connection lost (%s); reconnecting", reason)
            self.reconnects += 1
        self.connected.clear()

    def _paho_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._call(self._dispatch, msg.topic, bytes(msg.payload), bool(msg.retain))

    def _dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        self._spawn(self._on_message(topic, payload, retained))

    def _paho_publish(self, client: mqtt.Client, userdata: object, mid: int, reason_code: object,
                      properties: object) -> None:
        self._acked_mids.append(mid)
        if not self._acks_handed:
            self._acks_handed = True
            self._call(self._acked)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOGGER.error("hub task failed", exc_info=task.exception())
