"""The command service: validate, record, publish to the hub, and wait for its result.

Results reach the waiting request through the ingest worker (another thread): it stores the result
and calls ``resolve``, which hands the record to the request's event loop. Every log line about a
command carries ``cmd=<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cloud.errors import CommandFailed, CommandTimedOut, HubOffline, NotFound
from cloud.metrics import CloudMetrics
from cloud.settings import CloudSettings
from cloud.storage.base import CommandRecord, DeviceRecord, Registry
from cloud.storage.usage import UsageCount
from wire.capabilities import validate_command
from wire.contract import Command, CommandStatus, GroupAction, HubRequest, Topics

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], bool]
# A pending command is reported as timed out once its expiry is this far behind us.
_TIMEOUT_GRACE = timedelta(seconds=5)


_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[CommandRecord]"]


def new_command_id() -> str:
    return uuid.uuid4().hex


def _settle(future: asyncio.Future[CommandRecord], record: CommandRecord) -> None:
    if not future.done():
        future.set_result(record)


class CommandService:
    """Sends capability commands and hub requests over MQTT and tracks their results."""

    def __init__(self, settings: CloudSettings, registry: Registry, publish: Publish,
                 observe: CloudMetrics | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self._publish = publish
        self.observe = observe if observe is not None else CloudMetrics()
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}

    async def execute(
        self, device_id: str, capability: str, command: str, args: dict[str, Any] | None = None,
        *, command_id: str | None = None, device: DeviceRecord | None = None,
        meter: UsageCount | None = None, metered: Callable[[UsageCount], None] | None = None,
    ) -> CommandRecord:
        """Run a command on a device and return its succeeded record. ``device`` is the device's
        record when the caller has just read it (the route's account check has); ``meter``, the
        request's count, is written with the command's row, and then ``metered`` is told.

        Raises NotFound, CommandInvalid or HubOffline (before anything is sent), CommandFailed
        (the hub said failed or expired) or CommandTimedOut (no answer within
        ``command_timeout``; the hub may still run it until it expires).
        """
        if device is None or device.id != device_id:
            device = await asyncio.to_thread(self.registry.get_device, device_id)
        if device is None or device.removed:
            raise NotFound("device", device_id)
        checked = validate_command(capability, command, args or {}, set(device.capabilities),
                                   device.constraints)
        now = datetime.now(UTC)
        record = CommandRecord(
            id=command_id or new_command_id(),
            hub_id=device.hub_id,
            device_id=device.id,
            ieee=device.ieee,
            capability=capability,
            command=command,
            args=checked,
            status=CommandStatus.PENDING.value,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.command_ttl),
        )
        if device.hub_online is False:  # as its hub's last status says, read with the device
            self.observe.command_ended("hub_offline", None)
            raise HubOffline(device.hub_id)  # it would only wait for command_timeout
        await asyncio.to_thread(self.registry.add_command, record, meter)
        if meter is not None and metered is not None:
            metered(meter)
        message = Command(
            id=record.id,
            hub_id=record.hub_id,
            ieee=record.ieee,
            capability=capability,
            command=command,
            args=checked,
            issued_at=now,
            expires_at=record.expires_at,
        )
        with self._waiting(record.id) as future:
            fields = {"cmd": record.id, "hub": record.hub_id}
            log.info("cmd=%s %s.%s %s -> device %s on hub %s", record.id, capability, command,
                     checked, device.id, device.hub_id, extra=fields)
            sent = time.monotonic()
            if not self._publish(Topics.commands(record.hub_id), message.to_bytes()):
                log.warning("cmd=%s could not be queued for publishing", record.id, extra=fields)
            return await self._observed_outcome(record, future, sent)

    async def follow(self, command_id: str) -> CommandRecord:
        """Answer for a command sent before (a retry under its idempotency key) as its first
        request would: wait for its result while it is pending, never send it again."""
        with self._waiting(command_id) as future:
            record = await self.get(command_id)
            if record.status == CommandStatus.PENDING:
                return await self._outcome(record, future)
        if record.status != CommandStatus.SUCCEEDED:
            raise CommandFailed(record, record.error or f"command {record.status}")
        return record

    async def _observed_outcome(self, record: CommandRecord,
                                future: asyncio.Future[CommandRecord], sent: float) -> CommandRecord:
        """``_outcome``, counted by how it ended and timed from ``sent`` (a monotonic time)."""
        try:
            result = await self._outcome(record, future)
        except CommandFailed as exc:
            self.observe.command_ended(exc.command.status, time.monotonic() - sent)
            raise
        except CommandTimedOut:
            self.observe.command_ended(CommandStatus.TIMEOUT, time.monotonic() - sent)
            raise
        self.observe.command_ended(result.status, time.monotonic() - sent)
        return result

    async def _outcome(self, record: CommandRecord, future: asyncio.Future[CommandRecord]
                       ) -> CommandRecord:
        try:
            result = await asyncio.wait_for(future, self.settings.command_timeout)
        except TimeoutError:
            log.warning("cmd=%s no result within %.1fs; it stays pending", record.id,
                        self.settings.command_timeout,
                        extra={"cmd": record.id, "hub": record.hub_id})
            raise CommandTimedOut(record, f"no result from hub {record.hub_id} within "
                                          f"{self.settings.command_timeout:g}s") from None
        if result.status != CommandStatus.SUCCEEDED:
            raise CommandFailed(result, result.error or f"command {result.status}")
        return result

    @contextlib.contextmanager
    def _waiting(self, command_id: str) -> Iterator[asyncio.Future[CommandRecord]]:
        """A future that ``resolve`` completes with the command's result, for this request."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommandRecord] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            self._waiters.setdefault(command_id, []).append(waiter)
        try:
            yield future
        finally:
            with self._lock:
                waiters = self._waiters.get(command_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(command_id, None)

    def resolve(self, record: CommandRecord) -> None:
        """Hand a stored result to whoever waits for it (called from the ingest thread)."""
        with self._lock:
            waiters = list(self._waiters.get(record.id, ()))
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_settle, future, record)
            except RuntimeError:  # the waiting loop has closed
                log.debug("cmd=%s result arrived after its request ended", record.id,
                          extra={"cmd": record.id, "hub": record.hub_id})

    async def get(self, command_id: str) -> CommandRecord:
        """A command's current record; an unanswered one past its expiry reads as timed out."""
        record = await asyncio.to_thread(self.registry.get_command, command_id)
        if record is None:
            raise NotFound("command", command_id)
        now = datetime.now(UTC)
        if record.status == CommandStatus.PENDING and record.expires_at + _TIMEOUT_GRACE < now:
            updated = await asyncio.to_thread(self.registry.mark_command_timeout, command_id,
                                              now - _TIMEOUT_GRACE)
            if updated is not None:
                if updated.status == CommandStatus.TIMEOUT:
                    log.info("cmd=%s expired without a result; marked timeout", command_id,
                             extra={"cmd": command_id, "hub": updated.hub_id})
                record = updated
        return record

    async def _online_hub(self, hub_id: str) -> None:
        """NotFound for a hub never heard from, HubOffline when its last status says offline."""
        hub = await asyncio.to_thread(self.registry.get_hub, hub_id)
        if hub is None:
            raise NotFound("hub", hub_id)
        if hub.online is False:
            raise HubOffline(hub_id)

    async def ask_hub(self, hub_id: str, action: GroupAction, **fields: Any) -> CommandRecord:
        """Send a hub request that the hub answers with a result (groups and scenes) and wait
        for it, as for a command: the request is recorded as a command of the hub (no device;
        ``command`` is the action), so its result is stored, acknowledged and followed like one.

        Raises NotFound, HubOffline (nothing sent), CommandFailed or CommandTimedOut.
        """
        await self._online_hub(hub_id)
        now = datetime.now(UTC)
        record = CommandRecord(
            id=new_command_id(), hub_id=hub_id, device_id="", ieee=fields.get("ieee") or "",
            capability="group", command=action,
            args={k: v for k, v in fields.items() if v is not None and k != "args"}
            | dict(fields.get("args") or {}),
            status=CommandStatus.PENDING.value, created_at=now,
            expires_at=now + timedelta(seconds=self.settings.command_ttl))
        await asyncio.to_thread(self.registry.add_command, record)
        request = HubRequest(id=record.id, hub_id=hub_id, action=action,
                             expires_at=record.expires_at, **fields)
        with self._waiting(record.id) as future:
            log_fields = {"req": record.id, "hub": hub_id}
            log.info("req=%s %s on hub %s %s", record.id, action, hub_id, record.args,
                     extra=log_fields)
            if not self._publish(Topics.requests(hub_id), request.to_bytes()):
                log.warning("req=%s could not be queued for publishing", record.id,
                            extra=log_fields)
            return await self._outcome(record, future)

    async def request_hub(
        self,
        hub_id: str,
        action: Literal["permit_join", "close_join", "rename", "remove"],
        *,
        ieee: str | None = None,
        duration: int | None = None,
        name: str | None = None,
    ) -> HubRequest:
        """Publish a management request (pairing, rename, remove) to a hub; return it.

        Raises NotFound for a hub never heard from and HubOffline when its last status says offline.
        """
        await self._online_hub(hub_id)
        now = datetime.now(UTC)
        request = HubRequest(
            id=uuid.uuid4().hex,
            hub_id=hub_id,
            action=action,
            ieee=ieee,
            duration=duration,
            name=name,
            expires_at=now + timedelta(seconds=self.settings.command_ttl),
        )
        fields = {"req": request.id, "hub": hub_id}
        log.info("req=%s %s on hub %s%s", request.id, action, hub_id, f" ({ieee})" if ieee else "",
                 extra=fields)
        if not self._publish(Topics.requests(hub_id), request.to_bytes()):
            log.warning("req=%s could not be queued for publishing", request.id, extra=fields)
        return request
