"""The one place where domain errors become HTTP status codes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cloud.api.idempotency import IdempotencyInProgress, IdempotencyMismatch
from cloud.auth import AccessError
from cloud.errors import (
    CommandFailed,
    CommandInvalid,
    CommandTimedOut,
    Forbidden,
    HubOffline,
    HubRequestTimedOut,
    NotFound,
    StoreUnavailable,
    Unauthorized,
)
from wire.contract import CommandStatus

log = logging.getLogger(__name__)


def _command_body(exc: CommandFailed | CommandTimedOut) -> dict[str, object]:
    c = exc.command
    # Unanswered is not undone: the hub runs a command it receives before expires_at (and
    # reports any it receives later as expired, never running them).
    may_still_run = c.status == CommandStatus.PENDING and datetime.now(UTC) < c.expires_at
    detail = str(exc)
    if may_still_run:
        detail += f"; command {c.id} may still run until it expires at {c.expires_at.isoformat()}"
    return {"id": c.id, "status": c.status, "detail": detail, "error": c.error,
            "error_code": c.error_code, "may_still_run": may_still_run,
            "expires_at": c.expires_at.isoformat()}


def install_error_handlers(app: FastAPI) -> None:
    """404 unknown (or another account's), 401 unauthenticated, 403 missing scope, 409 hub
    offline, 422 invalid command, 502 hub said failed, 504 no answer (or confirmation) in time or
    expired on the hub, 503 storage down."""

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_request: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(AccessError)
    async def _access(_request: Request, exc: AccessError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]},
                            status_code=422)

    @app.exception_handler(IdempotencyMismatch)
    async def _key_reused(_request: Request, exc: IdempotencyMismatch) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["header", "Idempotency-Key"], "msg": str(exc),
                                         "type": "value_error"}]}, status_code=422)

    @app.exception_handler(IdempotencyInProgress)
    async def _key_busy(_request: Request, exc: IdempotencyInProgress) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409, headers={"Retry-After": "1"})

    @app.exception_handler(Forbidden)
    async def _forbidden(_request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(HubOffline)
    async def _hub_offline(_request: Request, exc: HubOffline) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(HubRequestTimedOut)
    async def _request_timed_out(_request: Request, exc: HubRequestTimedOut) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "request_id": exc.request_id}, status_code=504)

    @app.exception_handler(CommandInvalid)
    async def _invalid(_request: Request, exc: CommandInvalid) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(CommandFailed)
    async def _failed(_request: Request, exc: CommandFailed) -> JSONResponse:
        expired = exc.command.status == CommandStatus.EXPIRED
        return JSONResponse(_command_body(exc), status_code=504 if expired else 502)

    @app.exception_handler(CommandTimedOut)
    async def _timed_out(_request: Request, exc: CommandTimedOut) -> JSONResponse:
        return JSONResponse(_command_body(exc), status_code=504)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("storage unavailable: %s", exc)
        return JSONResponse({"detail": "storage unavailable"}, status_code=503,
                            headers={"Retry-After": "5"})
