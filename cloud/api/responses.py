"""The error answers routes declare in the OpenAPI schema, with the bodies cloud.api.errors gives
them, so a client (and a schema fuzzer) can rely on every status a route answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

Responses = dict[int | str, dict[str, Any]]


class ErrorPublic(BaseModel):
    detail: str


class HubRequestTimedOutPublic(ErrorPublic):
    request_id: str = Field(description="the request sent to the hub; its answer may still come")


class CommandErrorPublic(BaseModel):
    id: str
    status: str = Field(description="`failed` or `expired` as the hub said, `pending` if no answer")
    detail: str
    error: str | None
    error_code: str | None
    may_still_run: bool = Field(description="no answer yet, and the hub may still run it until "
                                            "`expires_at`: retry with the same Idempotency-Key")
    expires_at: datetime


UNAUTHORIZED: Responses = {
    401: {"model": ErrorPublic, "description": "missing, unknown, expired or revoked API token"},
    403: {"model": ErrorPublic, "description": "the token lacks the scope this route needs"},
    429: {"model": ErrorPublic, "description": "the token's rate limit is reached: retry after "
          "`Retry-After` seconds"},
}


def not_found(what: str) -> Responses:
    return {404: {"model": ErrorPublic, "description": f"unknown {what}"}}


BODY: Responses = {
    400: {"model": ErrorPublic, "description": "the body could not be read as JSON text (UTF-8)"},
    413: {"model": ErrorPublic, "description": "the request body is larger than `api_max_body`"},
}
HUB_REQUEST: Responses = {
    409: {"model": ErrorPublic, "description": "the hub is offline (nothing was sent), or a "
          "request with the same Idempotency-Key is still running"},
}
HUB_CONFIRMED: Responses = {
    **HUB_REQUEST,
    504: {"model": HubRequestTimedOutPublic,
          "description": "the request was sent but the hub did not confirm it in time"},
}
COMMAND: Responses = {
    502: {"model": CommandErrorPublic, "description": "the hub answered `failed` (see error, "
          "error_code)"},
    504: {"model": CommandErrorPublic, "description": "no result in time (status pending: "
          "GET /commands/{id} follows it), or expired on the hub"},
}
