"""Events for the live streams of a cloud that shares the hubs' events with other processes.

With ``mqtt_shared_group`` the broker gives each cloud process only its share of the events, so a
process's own ingest would show its streams only the events it stored itself. The observer is a
second, non-shared subscription to every hub's events (QoS 0, a clean session, no acknowledgements):
the process learns of every event, whichever process stores it. It connects when the first stream
opens, so a cloud nobody watches live pays nothing for it, and it hands events on only while
streams are open. An event the storing process then refuses (unknown device) reaches no page that
knows its device; a duplicate sent again by its hub shows once more, with the same time and value.
"""

from __future__ import annotations

import logging
import threading

from cloud.live import LiveFeed
from cloud.mqtt import Inbound, MqttLink
from cloud.settings import CloudSettings
from cloud.storage.base import device_id_for, event_point
from wire.contract import Event, EventBatch, TopicKind, Topics, WireError, decode

log = logging.getLogger(__name__)


class LiveObserver:
    """A non-shared QoS 0 subscription to all events, feeding ``feed``'s streams."""

    def __init__(self, settings: CloudSettings, feed: LiveFeed) -> None:
        self.feed = feed
        events = next(f for f in Topics.cloud_ingest_filters() if f.endswith("/events"))
        own = settings.model_copy(update={"mqtt_client_id": f"{settings.mqtt_client_id}-live",
                                          "mqtt_session_expiry": 0})
        self.link = MqttLink(own, [(events, 0)], self._received)
        self._lock = threading.Lock()
        self._started = False
        feed.events_from_ingest = False
        feed.on_first_stream = self.start

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        log.info("live streams open: following every hub's events")
        self.link.start()

    def stop(self) -> None:
        with self._lock:
            started, self._started = self._started, False
        if started:
            self.link.stop()

    def _received(self, inbound: Inbound) -> None:
        if not self.feed.active:
            return
        try:
            kind, hub_id, _, message = decode(inbound.topic, inbound.payload)
        except WireError:
            return  # the ingest that stores it says why (this is only a copy)
        if kind is not TopicKind.EVENTS:
            return
        if isinstance(message, EventBatch):
            events = message.expand()
        elif isinstance(message, Event):
            events = [message]
        else:
            return
        self.feed.points([event_point(ev, device_id_for(hub_id, ev.ieee)) for ev in events])
