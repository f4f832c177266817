"""FastAPI dependencies and their aliases: services, storage, commands, management, the token and
scope check, and the account check of the hub, device or command a path names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from cloud.api.limits import admit, admitted
from cloud.auth import Scope, lookup_hash, valid_token, verify_token
from cloud.commands import CommandService
from cloud.errors import Forbidden, NotFound, Unauthorized
from cloud.management import ManagementService
from cloud.service import CloudServices
from cloud.settings import CloudSettings
from cloud.storage.base import DeviceRecord, Registry, TelemetryReader, TokenRecord

_bearer = HTTPBearer(auto_error=False, description="an API token from `spoke token create`")

# The getters below are coroutines though they never wait: FastAPI runs a plain function
# dependency in its thread pool, a thread hop per getter on every request.


async def get_services(request: Request) -> CloudServices:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[CloudServices, Depends(get_services)]


async def get_settings(services: ServicesDep) -> CloudSettings:
    return services.settings


async def get_store(services: ServicesDep) -> Registry:
    return services.storage.registry


async def get_telemetry(services: ServicesDep) -> TelemetryReader:
    return services.storage.telemetry


async def get_commands(services: ServicesDep) -> CommandService:
    return services.commands


async def get_management(services: ServicesDep) -> ManagementService:
    return services.management


SettingsDep = Annotated[CloudSettings, Depends(get_settings)]
StoreDep = Annotated[Registry, Depends(get_store)]
TelemetryDep = Annotated[TelemetryReader, Depends(get_telemetry)]
CommandsDep = Annotated[CommandService, Depends(get_commands)]
ManagementDep = Annotated[ManagementService, Depends(get_management)]


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_token(security_scopes: SecurityScopes, request: Request, store: StoreDep,
                        credentials: Bearer) -> TokenRecord:
    """The caller's token record: 401 for a missing, unknown, expired or revoked bearer token, 429
    beyond its rate limit, 403 when it lacks a scope the route needs."""
    if admitted(request) is not None:  # checked once per request: only the scopes are left
        return caller_of(request, store, credentials, security_scopes.scopes)
    # The token's lookup and its count may both ask the database: one thread hop for both.
    return await run_in_threadpool(caller_of, request, store, credentials, security_scopes.scopes)


def caller_of(request: Request, store: Registry, credentials: HTTPAuthorizationCredentials | None,
              scopes: Sequence[str]) -> TokenRecord:
    """``require_token``'s checks, run where the caller is (blocking: the database)."""
    record = admitted(request)
    if record is None:
        record = verify_token(store, presented(credentials))
    return checked_caller(request, record, scopes)


def presented(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The bearer token presented; 401 without one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return credentials.credentials


def checked_caller(request: Request, record: TokenRecord | None, scopes: Sequence[str]
                   ) -> TokenRecord:
    """The caller's valid token record (``valid_token``'s: 401 for None), admitted (rate limit
    and metering, once per request), with every scope in ``scopes`` (else 403)."""
    if record is None:
        raise Unauthorized("invalid, expired or revoked token")
    admit(request, record)  # rate limit and metering (cloud/api/limits.py)
    missing = [s for s in scopes if s not in record.scopes]
    if missing:
        raise Forbidden(f"this token lacks the {' and '.join(missing)} scope")
    return record


# What each route needs: every route of the API declares exactly one of these.
ReadDep = Annotated[TokenRecord, Security(require_token, scopes=[Scope.READ])]
ControlDep = Annotated[TokenRecord, Security(require_token, scopes=[Scope.CONTROL])]
AdminDep = Annotated[TokenRecord, Security(require_token, scopes=[Scope.ADMIN])]
READ = Security(require_token, scopes=[Scope.READ])
CONTROL = Security(require_token, scopes=[Scope.CONTROL])
ADMIN = Security(require_token, scopes=[Scope.ADMIN])


def owned_hub(hub_id: str, caller: ReadDep, store: StoreDep) -> str:
    """The path's hub when it belongs to the caller's account; else 404, as for no hub at all."""
    if store.hub_account(hub_id) != caller.account:
        raise NotFound("hub", hub_id)
    return hub_id


async def owned_device(device_id: str, request: Request, store: StoreDep,
                       credentials: Bearer) -> DeviceRecord:
    """The path's device when its hub belongs to the caller's account; else 404. The token (with
    the read scope, as ``ReadDep``) is checked in the same thread hop as the device is read: a
    command waits for one hop, not two."""

    def check() -> DeviceRecord:
        if admitted(request) is not None:
            return device_of(store, caller_of(request, store, credentials, [Scope.READ]),
                             device_id)
        # The token, the device and its hub's account read together: one query, not three.
        digest = lookup_hash(presented(credentials))
        token, device, account = (store.find_token_and_device(digest, device_id) if digest
                                  else (None, None, None))
        caller = checked_caller(request, valid_token(token), [Scope.READ])
        if device is None or device.removed or account != caller.account:
            raise NotFound("device", device_id)
        return device

    return await run_in_threadpool(check)


def device_of(store: Registry, caller: TokenRecord, device_id: str) -> DeviceRecord:
    device = store.get_device(device_id)
    if device is None or device.removed or store.hub_account(device.hub_id) != caller.account:
        raise NotFound("device", device_id)
    return device


def owned_command(command_id: str, caller: ReadDep, store: StoreDep) -> str:
    command = store.get_command(command_id)
    if command is None or store.hub_account(command.hub_id) != caller.account:
        raise NotFound("command", command_id)
    return command_id


OwnedHub = Annotated[str, Depends(owned_hub)]
OwnedDevice = Annotated[DeviceRecord, Depends(owned_device)]
OwnedCommand = Annotated[str, Depends(owned_command)]
