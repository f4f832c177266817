"""Domain errors of the cloud services; the API maps them to HTTP status codes in one place."""

from __future__ import annotations

from cloud.storage.base import CommandRecord, StoreUnavailable
from wire.capabilities import CommandInvalid


class NotFound(LookupError):
    """No such hub, device or command."""

    def __init__(self, kind: str, ident: str) -> None:
        shown = ident if len(ident) <= 64 else ident[:63] + "…"  # an id from a URL may be kilobytes
        super().__init__(f"{kind} {shown!r} not found")
        self.kind = kind
        self.ident = ident


class Unauthorized(PermissionError):
    """Missing, unknown or revoked API token."""


class Forbidden(PermissionError):
    """A valid token without the scope the request needs."""


class HubOffline(RuntimeError):
    """The hub's last status says it is offline, so a request to it would only wait."""

    def __init__(self, hub_id: str) -> None:
        super().__init__(f"hub {hub_id!r} is offline")
        self.hub_id = hub_id


class HubRequestTimedOut(RuntimeError):
    """A request (rename, remove) was sent but the hub's confirmation did not arrive in time."""

    def __init__(self, request_id: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class CommandNotCompleted(RuntimeError):
    """A command that did not succeed; ``command`` says how far it got."""

    def __init__(self, command: CommandRecord, message: str) -> None:
        super().__init__(message)
        self.command = command


class CommandFailed(CommandNotCompleted):
    """The hub answered: the device refused, could not be reached, or the command expired."""


class CommandTimedOut(CommandNotCompleted):
    """No answer within the REST call's wait; the command stays pending and queryable."""


__all__ = [
    "CommandFailed",
    "CommandInvalid",
    "CommandNotCompleted",
    "CommandTimedOut",
    "Forbidden",
    "HubOffline",
    "HubRequestTimedOut",
    "NotFound",
    "StoreUnavailable",
    "Unauthorized",
]
