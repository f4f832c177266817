"""FastAPI dependencies and their aliases: services, storage, commands, management, the token
check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.auth import verify_token
from cloud.commands import CommandService
from cloud.errors import Unauthorized
from cloud.management import ManagementService
from cloud.service import CloudServices
from cloud.settings import CloudSettings
from cloud.storage.base import Registry, TelemetryReader, TokenRecord

_bearer = HTTPBearer(auto_error=False, description="an API token from `spoke token create`")


def get_services(request: Request) -> CloudServices:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[CloudServices, Depends(get_services)]


def get_settings(services: ServicesDep) -> CloudSettings:
    return services.settings


def get_store(services: ServicesDep) -> Registry:
    return services.storage.registry


def get_telemetry(services: ServicesDep) -> TelemetryReader:
    return services.storage.telemetry


def get_commands(services: ServicesDep) -> CommandService:
    return services.commands


def get_management(services: ServicesDep) -> ManagementService:
    return services.management


SettingsDep = Annotated[CloudSettings, Depends(get_settings)]
StoreDep = Annotated[Registry, Depends(get_store)]
TelemetryDep = Annotated[TelemetryReader, Depends(get_telemetry)]
CommandsDep = Annotated[CommandService, Depends(get_commands)]
ManagementDep = Annotated[ManagementService, Depends(get_management)]


def require_token(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenRecord:
    """The caller's token record; 401 for a missing, unknown or revoked bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    record = verify_token(store, credentials.credentials)
    if record is None:
        raise Unauthorized("invalid or revoked token")
    return record


AuthDep = Annotated[TokenRecord, Depends(require_token)]
