"""``/api/v1/tokens``: an admin manages its account's API tokens."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from cloud.api.deps import AdminDep, StoreDep
from cloud.api.responses import BODY, ErrorPublic, Responses
from cloud.api.schemas import TokenCreate, TokenCreated, TokenPublic
from cloud.auth import AccessError, create_token, list_tokens, revoke_token
from cloud.errors import NotFound

router = APIRouter(prefix="/tokens", tags=["tokens"])

_UNKNOWN: Responses = {404: {"model": ErrorPublic, "description": "no such active token"}}


@router.post("", status_code=201, responses=BODY)
async def create(body: TokenCreate, caller: AdminDep, store: StoreDep) -> TokenCreated:
    """A new token of the caller's account; the answer is the only time it is shown."""
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise AccessError("expires_at must be in the future")
    record, token = await run_in_threadpool(create_token, store, body.name,
                                            account=caller.account, scopes=body.scopes,
                                            expires_at=body.expires_at)
    return TokenCreated(**TokenPublic.of(record).model_dump(), token=token)


@router.get("")
def list_all(caller: AdminDep, store: StoreDep) -> list[TokenPublic]:
    """The account's tokens (their secrets are not stored)."""
    return [TokenPublic.of(t) for t in list_tokens(store, caller.account)]


@router.delete("/{token_id}", status_code=204, response_class=Response, responses=_UNKNOWN)
def revoke(token_id: str, caller: AdminDep, store: StoreDep) -> None:
    """Revoke one of the account's tokens; it stops working at once."""
    if not revoke_token(store, token_id, caller.account):
        raise NotFound("token", token_id)
