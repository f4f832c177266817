"""The hub's one way in: commands, hub requests and acknowledgements from the broker, and operations
of the local control channel, each parsed into its typed message and handed to its one handler.

From the broker, the hub acts only on messages on its own topics (the broker's rules allow it to
read nothing else; a message that still names another hub is refused), never on a retained command
or request (a command is for now, not for whoever connects next), and never on an expired request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.commands import CommandExecutor
from hub.control import ControlError
from hub.management import Management, ManagementError
from hub.publisher import Publisher
from wire.contract import HubRequest, Ieee, TopicKind, Topics, WireError, utcnow

LOGGER = logging.getLogger(__name__)

OperationHandler = Callable[[Any], Awaitable[dict[str, Any]]]


# ---------------------------------------------------------------------- local control operations
class ControlOp(BaseModel):
    """A request on the local control channel: ``{"op": NAME, ...fields}``."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class StatusOp(ControlOp):
    op: Literal["status"] = "status"


class DevicesOp(ControlOp):
    op: Literal["devices"] = "devices"


class StopPairOp(ControlOp):
    op: Literal["stop_pair"] = "stop_pair"


class RenameOp(ControlOp):
    op: Literal["rename"] = "rename"
    ieee: Ieee
    name: str | None = Field(default=None, max_length=128)


class RemoveOp(ControlOp):
    op: Literal["remove"] = "remove"
    ieee: Ieee


class BackupOp(ControlOp):
    op: Literal["backup"] = "backup"


def op_name(model: type[BaseModel]) -> str:
    """The ``op`` a request model answers to (the default of its ``op`` literal)."""
    return str(model.model_fields["op"].default)


class Dispatcher:
    def __init__(self, hub_id: str, executor: CommandExecutor, management: Management,
                 publisher: Publisher) -> None:
        self.hub_id = hub_id
        self.executor = executor
        self.management = management
        self.publisher = publisher
        self.refused = 0  # broker messages the hub would not act on
        self._operations: dict[str, tuple[type[BaseModel], OperationHandler]] = {}
        self._inbound: dict[TopicKind, Callable[[bytes], Awaitable[None]]] = {
            TopicKind.COMMANDS: executor.handle,
            TopicKind.REQUESTS: self._request,
            TopicKind.ACKS: publisher.on_ack,
        }

    def register(self, operations: dict[type[BaseModel], OperationHandler]) -> None:
        for model, handler in operations.items():
            self._operations[op_name(model)] = (model, handler)

    # ------------------------------------------------------------------ from the broker
    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message from the broker. The handlers never raise on bad input; a bug that escapes
        is logged by the link's task (and found by the fuzz tests)."""
        try:
            kind, hub_id, _ = Topics.parse(topic)
        except WireError as exc:
            self._refuse(topic, str(exc))
            return
        handler = self._inbound.get(kind)
        if handler is None or hub_id != self.hub_id:
            self._refuse(topic, "not one of this hub's inbound topics")
            return
        if retained and kind is not TopicKind.ACKS:
            self._refuse(topic, "a retained command or request is never acted on")
            return
        await handler(payload)

    def _refuse(self, topic: str, reason: str) -> None:
        self.refused += 1
        LOGGER.warning("ignored message on %s: %s", topic, reason)

    async def _request(self, payload: bytes) -> None:
        try:
            request = HubRequest.from_bytes(payload)
        except WireError as exc:
            LOGGER.warning("rejected hub request: %s", exc)
            return
        if request.hub_id != self.hub_id:  # as for commands: the payload must agree with the topic
            LOGGER.warning("rejected hub request req=%s for hub %r", request.id, request.hub_id,
                           extra={"req": request.id, "hub": self.hub_id})
            return
        fields = {"req": request.id, "hub": self.hub_id}
        if utcnow() > request.expires_at:
            LOGGER.info("req=%s expired, ignored", request.id, extra=fields)
            return
        LOGGER.info("req=%s %s", request.id, request.action, extra=fields)
        try:
            await self.management.run(request)
        except Exception as exc:
            LOGGER.warning("req=%s failed: %s", request.id, exc, extra=fields)

    # ------------------------------------------------------------------ local control channel
    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One operation of the local control channel; ControlError for anything refused."""
        name = request.get("op")
        entry = self._operations.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ControlError(f"unknown operation {name!r}")
        model, handler = entry
        try:
            op = model.model_validate(request)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "request"
            raise ControlError(f"{name}: {where}: {first.get('msg')}") from None
        try:
            return await handler(op)
        except (ManagementError, ValueError, LookupError) as exc:
            raise ControlError(str(exc)) from exc
