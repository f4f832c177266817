"""The one place where domain errors become HTTP status codes."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
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

ERROR_BODY_MAX = 4096  # bytes: an error answer never echoes a large request back
_ERRORS_SHOWN = 5
_LOC_PART_MAX = 48
_TEXT_MAX = 200


def invalid(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 in the shape every 422 of the API has (FastAPI's HTTPValidationError), for checks
    made after the parameters were parsed."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": kind}])


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _public_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error without its ``input`` and ``ctx`` (the input may be megabytes, and a
    location may be a key the client made up): location, message and type, cut short."""
    loc = [p if isinstance(p, int) else _short(str(p), _LOC_PART_MAX) for p in error.get("loc", ())]
    return {"loc": loc, "msg": _short(str(error.get("msg", "")), _TEXT_MAX),
            "type": _short(str(error.get("type", "value_error")), _LOC_PART_MAX)}


def validation_body(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The body of a 422: the first few errors, then how many more there were; under
    ``ERROR_BODY_MAX`` bytes whatever the request held."""
    shown = [_public_error(e) for e in errors[:_ERRORS_SHOWN]]
    while len(shown) > 1 and len(json.dumps(shown)) > ERROR_BODY_MAX - 200:
        shown.pop()
    if len(errors) > len(shown):
        shown.append({"loc": [], "msg": f"and {len(errors) - len(shown)} more errors",
                      "type": "more_errors"})
    return {"detail": shown}


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
    offline, 422 invalid request or command, 502 hub said failed, 504 no answer (or confirmation)
    in time or expired on the hub, 503 storage down."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

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
        # the same shape as every other 422, so a client reads one kind of validation error
        error = {"loc": ("body",), "msg": str(exc), "type": "command_invalid"}
        return JSONResponse(validation_body([error]), status_code=422)

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
