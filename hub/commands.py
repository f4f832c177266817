"""Executing capability commands from the cloud on Zigbee devices, at most once per command id.

The result carries the device's state as read back from the device after the command. Results go
through the outbox, so they reach the cloud even across a reconnect. Every log line about a command
carries ``cmd=<id>``, the correlation id the cloud logs too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Literal

from device_handlers.model import CommandError
from hub.devices import DeviceTracker
from hub.publisher import Publisher
from hub.store import HubStore
from wire.capabilities import CommandInvalid, validate_command
from wire.contract import Command, CommandResult, CommandStatus, Value, WireError, utcnow

LOGGER = logging.getLogger(__name__)


class CommandExecutor:
    def __init__(self, hub_id: str, store: HubStore, publisher: Publisher,
                 tracker: DeviceTracker, *, timeout: float) -> None:
        self.hub_id = hub_id
        self.store = store
        self.publisher = publisher
        self.tracker = tracker
        self.timeout = timeout
        self.counts: dict[str, int] = {"received": 0, "rejected": 0, "duplicate": 0,
                                       "succeeded": 0, "failed": 0, "expired": 0,
                                       "local_succeeded": 0, "local_failed": 0}

    async def handle(self, payload: bytes) -> None:
        """Entry point for a message on the hub's commands topic. Never raises."""
        self.counts["received"] += 1
        try:
            command = Command.from_bytes(payload)
        except WireError as exc:
            self._reject(payload, str(exc))
            return
        if command.hub_id != self.hub_id:
            self._reject(payload, f"command for hub {command.hub_id!r} reached {self.hub_id!r}")
            return
        first, stored = self.store.begin_command(command.id)
        if not first:
            # Redelivered (broker retry, cloud resend): never run it again; repeat the answer.
            self.counts["duplicate"] += 1
            LOGGER.info("cmd=%s duplicate delivery, not executed again", command.id,
                        extra=self._fields(command.id))
            if stored is None:
                # Journaled but never answered: the hub stopped while running it. It may or may
                # not have reached the device; at most once means it is not tried again.
                stored = CommandResult(
                    id=command.id, hub_id=self.hub_id, ieee=command.ieee,
                    status=CommandStatus.FAILED, error_code="interrupted",
                    error="the hub restarted while running this command; not retried",
                ).to_bytes()
            self._send(command.id, stored)
            return
        result = await self._run(command)
        self.counts[result.status] += 1
        self._send(command.id, result.to_bytes())

    async def run_local(self, ieee: str, capability: str, command: str,
                        args: dict[str, Value]) -> CommandResult:
        """A command from the hub's own side (Home Assistant on the local broker), run as a cloud
        command is (checked against the device, one Zigbee exchange, the state read back) under
        an id of its own. Its result goes to the caller only: the cloud never issued it, so it is
        neither journaled nor sent as a CommandResult (the cloud would keep a result of an unknown
        command as a dead letter); the state it changed reaches the cloud as events through the
        outbox, like any change. At most once is the caller's transport: it never redelivers."""
        local = Command(id=f"local-{uuid.uuid4().hex[:16]}", hub_id=self.hub_id, ieee=ieee,
                        capability=capability, command=command, args=args,
                        expires_at=utcnow() + timedelta(seconds=self.timeout))
        result = await self._run(local)
        self.counts["local_succeeded" if result.status == CommandStatus.SUCCEEDED
                    else "local_failed"] += 1
        return result

    async def _run(self, command: Command) -> CommandResult:
        cid = command.id
        fields = self._fields(cid)
        started = time.perf_counter()

        def done(status: Literal[CommandStatus.SUCCEEDED, CommandStatus.FAILED,
                                 CommandStatus.EXPIRED], **fields: object) -> CommandResult:
            return CommandResult(id=cid, hub_id=self.hub_id, ieee=command.ieee, status=status,
                                 duration_ms=round((time.perf_counter() - started) * 1000, 2),
                                 **fields)  # type: ignore[arg-type]

        if utcnow() > command.expires_at:
            LOGGER.info("cmd=%s expired at %s, not executed", cid, command.expires_at.isoformat(),
                        extra=fields)
            return done(CommandStatus.EXPIRED, error="command expired before it reached the hub",
                        error_code="expired")
        tracked = self.tracker.get(command.ieee)
        if tracked is None:
            return done(CommandStatus.FAILED, error=f"unknown device {command.ieee}",
                        error_code="unknown_device")
        try:
            # The cloud checked the same; the hub holds to the limits it knows now regardless.
            args = validate_command(command.capability, command.command, dict(command.args),
                                    supported=set(tracked.handler.capabilities),
                                    constraints=tracked.handler.constraints)
        except CommandInvalid as exc:
            return done(CommandStatus.FAILED, error=str(exc), error_code="invalid")
        LOGGER.info("cmd=%s executing %s.%s %s on %s", cid, command.capability, command.command,
                    args, command.ieee, extra=fields)
        try:
            async with asyncio.timeout(self.timeout):
                readings = await tracked.handler.execute(command.capability, command.command, args)
        except CommandError as exc:
            LOGGER.warning("cmd=%s failed: %s (%s)", cid, exc.message, exc.code, extra=fields)
            return done(CommandStatus.FAILED, error=exc.message, error_code=exc.code)
        except TimeoutError:
            LOGGER.warning("cmd=%s timed out after %.1f s", cid, self.timeout, extra=fields)
            return done(CommandStatus.FAILED, error=f"no answer from the device within "
                        f"{self.timeout:.0f} s", error_code="timeout")
        state = self.tracker.apply(tracked, readings)
        result = done(CommandStatus.SUCCEEDED, state=state)
        LOGGER.info("cmd=%s succeeded in %.1f ms: %s", cid, result.duration_ms, state, extra=fields)
        return result

    def _fields(self, command_id: str) -> dict[str, str]:
        """The log fields of a line about a command (JSON logs carry them as fields)."""
        return {"cmd": command_id, "hub": self.hub_id}

    def _send(self, command_id: str, payload: bytes) -> None:
        self.store.finish_command(command_id, payload)
        self.publisher.result(command_id, payload)

    def _reject(self, payload: bytes, reason: str) -> None:
        """A command we cannot parse: answer "failed" if it at least has an id, else only log."""
        self.counts["rejected"] += 1
        LOGGER.warning("rejected command: %s", reason, extra={"hub": self.hub_id})
        try:
            command_id = json.loads(payload).get("id")
            if isinstance(command_id, str):
                command_id.encode()  # a lone surrogate can be neither journaled nor answered
        except (ValueError, AttributeError, TypeError, RecursionError):  # incl. UnicodeEncodeError
            return
        if isinstance(command_id, str) and 0 < len(command_id) <= 64:
            first, _ = self.store.begin_command(command_id)
            if first:
                result = CommandResult(id=command_id, hub_id=self.hub_id,
                                       status=CommandStatus.FAILED, error=reason,
                                       error_code="invalid")
                self._send(command_id, result.to_bytes())
