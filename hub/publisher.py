"""The hub's one way out: every hub fact that leaves the hub becomes a wire message here.

Status and device descriptions are retained latest-state messages; pairing progress is live and
best effort; events and command results go through the outbox and stay there until the cloud
acknowledges that it has committed them (``LedgerAck`` on the hub's acks topic).

The cloud's acknowledgement is the guarantee; the broker's QoS 1 is only the transport. When rows
the hub sent are still unacknowledged after ``resend_after`` seconds, the hub asks the cloud where
it stands (it republishes its status, which carries its ledger position; the cloud answers every
status with an acknowledgement). If the cloud answers and its mark has not moved, what is past the
mark was lost on the way (a broker that died before saving its queue, a broker that dropped
messages) and the hub sends it again; the cloud drops the copies it already has. A hub never
resends blindly into a broker while the cloud is away.

Every acknowledgement also says whether the cloud takes batches of events (``batch_max``); the link
batches events only while the latest one allows it, so a hub never sends a batch to a cloud that
predates them (and a batch such a cloud refused is sent again as single events, as above).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from hub.link import HubLink
from hub.store import HubStore
from wire.contract import (
    MAX_PAYLOAD_BYTES,
    DeviceInfo,
    Event,
    HubStatus,
    LedgerAck,
    PairingEvent,
    Topics,
    Value,
    WireError,
)

LOGGER = logging.getLogger(__name__)


class LocalMirror(Protocol):
    """A second, local way out (Home Assistant's broker): told of every description, removal and
    event as the cloud is, never able to hold up the cloud's way."""

    def device(self, info: DeviceInfo) -> None: ...

    def device_removed(self, ieee: str) -> None: ...

    def event(self, ieee: str, instance: str, attribute: str, value: Value) -> None: ...

    def groups_changed(self) -> None: ...


class Publisher:
    def __init__(self, hub_id: str, store: HubStore, link: HubLink, *,
                 resend_after: float = 10.0, flush_delay: float = 0.005,
                 batch_max: int = 1) -> None:
        self.hub_id = hub_id
        self.batch_max = batch_max  # events per message at most, when the cloud takes batches
        self.store = store
        self.link = link
        self.resend_after = resend_after
        self.flush_delay = flush_delay  # events queued this long at most before their commit
        self._flush_timer: asyncio.TimerHandle | None = None
        self.status_source: Callable[[], HubStatus] | None = None
        self.local: LocalMirror | None = None
        self._status_sent: dict[str, object] | None = None  # what the last status said (sans ts)
        self.resends = 0
        self.acks = 0
        self._progress_at = time.monotonic()  # the cloud's mark last moved (or a resend began)
        self._answered_at = 0.0  # the cloud last answered (any acknowledgement)
        self._asked_at = 0.0  # the hub last asked the cloud where it stands
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="ledger-watch")

    async def stop(self) -> None:
        """Commit what is queued and leave no timer behind: the store closes next. An event that
        still comes is committed at once (no timer), so nothing accepted is lost."""
        self._stopped = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self.store.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ------------------------------------------------------------------ latest state
    def status(self, *, if_changed: bool = False) -> None:
        """Publish the hub's status (retained); with ``if_changed``, only when something in it
        (a counter, the radio, the device count) differs from the status last published."""
        if self.status_source is None or not self.link.connected.is_set():
            return  # the status goes out on every connect
        status = self.status_source()
        said = status.model_dump(exclude={"ts"})
        if if_changed and said == self._status_sent:
            return
        payload = status.to_bytes()
        if len(payload) > MAX_PAYLOAD_BYTES and status.groups is not None:
            # The cloud would refuse it whole: without the group table (the cloud keeps the one
            # it has), the hub's health and ledger still get through.
            LOGGER.error("status of %d bytes is above %d: sent without its group table",
                         len(payload), MAX_PAYLOAD_BYTES)
            payload = status.model_copy(update={"groups": None}).to_bytes()
        self.link.publish_retained(Topics.status(self.hub_id), payload)
        self._status_sent = said

    def device(self, info: DeviceInfo) -> None:
        self.link.publish_retained(Topics.device(self.hub_id, info.ieee), info.to_bytes())
        if self.local is not None:
            self._mirror(self.local.device, info)

    def device_removed(self, ieee: str) -> None:
        """An empty retained payload clears the description: the device is gone."""
        self.link.publish_retained(Topics.device(self.hub_id, ieee), b"")
        if self.local is not None:
            self._mirror(self.local.device_removed, ieee)

    def groups_changed(self) -> None:
        """The group table changed (a group or scene made, renamed or removed, a member added
        or gone); the cloud learns it from the status, the local mirror from this."""
        if self.local is not None:
            self._mirror(self.local.groups_changed)

    @staticmethod
    def _mirror(fn: Callable[..., None], *args: object) -> None:
        """A failure of the local way out is logged; it never stops the cloud's."""
        try:
            fn(*args)
        except Exception:
            LOGGER.exception("the local mirror (Home Assistant) failed")

    def pairing(self, event: PairingEvent) -> None:
        self.link.publish_live(Topics.pairing(self.hub_id), event.to_bytes())

    # ------------------------------------------------------------------ the ledger
    def event(self, ieee: str, capability: str, attribute: str, value: Value, unit: str | None,
              ts: datetime) -> int:
        """Write one capability change to the outbox with the next sequence number. Events that
        arrive together (a burst of frames) are committed together within ``flush_delay``: one
        transaction per burst instead of one per event; the pump publishes only committed rows."""
        epoch = self.store.epoch

        def build(seq: int) -> bytes:
            return Event(hub_id=self.hub_id, epoch=epoch, seq=seq, ts=ts, ieee=ieee,
                         capability=capability, attribute=attribute, value=value,
                         unit=unit).to_bytes()

        seq = self.store.add_event(Topics.events(self.hub_id), build)
        if self.local is not None:
            self._mirror(self.local.event, ieee, capability, attribute, value)
        if self._stopped:
            self.store.flush()
        elif not self.store.queued:
            self.link.kick()  # a full queue was committed at once
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(self.flush_delay, self._flush)
        return seq

    def _flush(self) -> None:
        self._flush_timer = None
        if self._stopped:
            return  # stop() committed the queue; the store may be closed by now
        try:
            self.store.flush()
        except Exception:  # e.g. a full disk: the events stay queued and are tried again
            LOGGER.exception("cannot commit %d events to the outbox", self.store.queued)
            self._flush_timer = asyncio.get_running_loop().call_later(1.0, self._flush)
            return
        self.link.kick()

    def result(self, command_id: str, payload: bytes) -> None:
        """A command's result (already journaled) goes out through the outbox."""
        self.store.add_result(Topics.results(self.hub_id), command_id, payload)
        self.link.kick()

    async def drain(self, within: float, *, silence: float = 2.0) -> bool:
        """Wait (at most ``within`` seconds, while connected) until the cloud has acknowledged
        everything in the outbox; True when it has. A clean stop leaves nothing behind. The
        cloud answers every status, so a cloud silent for ``silence`` seconds after being asked
        is gone (stopped first, unreachable): what is left is kept for the next start."""
        start = time.monotonic()
        deadline = start + within
        self.status()  # ask where the cloud stands
        while self.store.pending and time.monotonic() < deadline:
            if not self.link.connected.is_set():
                return False
            if time.monotonic() - max(start, self._answered_at) >= silence:
                return False
            await asyncio.sleep(0.05)
        return not self.store.pending

    async def on_ack(self, payload: bytes) -> None:
        """The cloud's acknowledgement: let go of what it committed; resend what it lost."""
        try:
            ack = LedgerAck.from_bytes(payload)
        except WireError as exc:
            LOGGER.warning("ignored acknowledgement: %s", exc)
            return
        if ack.hub_id != self.hub_id or ack.epoch not in (None, self.store.epoch):
            return  # another ledger's mark (this hub's store was replaced)
        self.acks += 1
        # Batches only to a cloud that said it takes them (one before batches says nothing: 0).
        self.link.batch_max = max(1, min(self.batch_max, ack.batch_max))
        now = time.monotonic()
        self._answered_at = now
        before = self.store.acked_seq
        removed = self.store.ack(ack.seq, ack.results)
        if removed or ack.seq > before:
            self._progress_at = now
        if self._lost(now):
            LOGGER.warning("the cloud's mark stays at seq %d with %d rows unacknowledged for "
                           "%.0f s: sending them again", ack.seq, self.store.pending,
                           now - self._progress_at)
            self.resends += 1
            self._progress_at = now
            self.link.rewind()

    def _stalled(self, now: float) -> bool:
        """Rows went out and the cloud's mark has not moved for ``resend_after`` seconds."""
        return (self.store.pending > 0 and self.link.sent_upto > 0
                and now - self._progress_at >= self.resend_after)

    def _lost(self, now: float) -> bool:
        """Stalled, and the cloud answered after being asked: it is there but lacks the rows."""
        return self._stalled(now) and self._asked_at > 0 and self._answered_at >= self._asked_at

    async def _watch(self) -> None:
        """Ask the cloud where it stands while sent rows stay unacknowledged."""
        while True:
            await asyncio.sleep(max(0.2, self.resend_after / 4))
            now = time.monotonic()
            if (self.link.connected.is_set() and self._stalled(now)
                    and now - self._asked_at >= self.resend_after):
                self._asked_at = now
                self.status()
