"""``Idempotency-Key`` on actions: a retry under the same key, from the same account within
``IDEMPOTENCY_TTL``, gets the first request's command (waiting for it while it is pending) or the
first request's answer, and never runs it again. A key reused for a different request is a 422; a
retry while the first request is still running is a 409."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from cloud.commands import CommandService, new_command_id
from cloud.errors import CommandNotCompleted, NotFound
from cloud.storage.base import CommandRecord, IdempotencyRecord, Registry, TokenRecord

IDEMPOTENCY_TTL = timedelta(hours=24)
# A retry racing the first request waits this long for it to record its command.
_RECORDING_WAIT = 2.0

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Any unique string (a UUID): a retry with the same key within 24 h returns the "
                "first request's outcome and never runs the action twice.")]

class IdempotencyMismatch(ValueError):
    """The key was used for a different request."""


class IdempotencyInProgress(RuntimeError):
    """The first request under this key has not answered yet."""


def _fingerprint(request: Request, body: BaseModel | None) -> str:
    content = body.model_dump(mode="json") if body is not None else None
    text = json.dumps([request.method, request.url.path, content], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


async def _claim(store: Registry, caller: TokenRecord, key: str, fingerprint: str,
                 command_id: str | None) -> IdempotencyRecord | None:
    now = datetime.now(UTC)
    record = IdempotencyRecord(account=caller.account, key=key, fingerprint=fingerprint,
                               created_at=now, command_id=command_id)
    prior = await run_in_threadpool(store.claim_idempotency_key, record, now - IDEMPOTENCY_TTL)
    if prior is not None and prior.fingerprint != fingerprint:
        raise IdempotencyMismatch(f"Idempotency-Key {key!r} was used for a different request")
    return prior


async def command_once(store: Registry, commands: CommandService, caller: TokenRecord,
                       key: str | None, request: Request, body: BaseModel,
                       run: Callable[[str | None], Awaitable[CommandRecord]]) -> CommandRecord:
    """Run a command (``run`` takes the id to give it), or follow the one sent under ``key``."""
    if key is None:
        return await run(None)
    command_id = new_command_id()
    prior = await _claim(store, caller, key, _fingerprint(request, body), command_id)
    if prior is not None:
        if prior.command_id is None:
            raise IdempotencyMismatch(f"Idempotency-Key {key!r} was used for a different request")
        return await _follow(commands, prior.command_id, key)
    try:
        return await run(command_id)
    except CommandNotCompleted:
        raise  # it went out: a retry follows it
    except BaseException:
        await run_in_threadpool(store.release_idempotency_key, caller.account, key)
        raise


async def _follow(commands: CommandService, command_id: str, key: str) -> CommandRecord:
    """Follow the first request's command; it may not be recorded yet when both came at once."""
    deadline = asyncio.get_running_loop().time() + _RECORDING_WAIT
    while True:
        try:
            return await commands.follow(command_id)
        except NotFound:
            if asyncio.get_running_loop().time() > deadline:
                raise IdempotencyInProgress(f"the request with Idempotency-Key {key!r} has not "
                                            "sent its command yet; retry in a moment") from None
            await asyncio.sleep(0.02)


async def request_once[T](store: Registry, caller: TokenRecord, key: str | None,
                          request: Request, body: BaseModel | None, status_code: int,
                          run: Callable[[], Awaitable[T]]) -> T | Response:
    """Run a hub request once per key; a retry gets the stored answer. A request that failed is
    forgotten (rename, remove and pairing are safe to send again)."""
    if key is None:
        return await run()
    prior = await _claim(store, caller, key, _fingerprint(request, body), None)
    if prior is not None:
        if prior.status_code is None:
            raise IdempotencyInProgress(f"a request with Idempotency-Key {key!r} is still running; "
                                        "retry in a moment")
        return Response(content=prior.response or None, status_code=prior.status_code,
                        media_type="application/json" if prior.response else None)
    try:
        result = await run()
    except BaseException:
        await run_in_threadpool(store.release_idempotency_key, caller.account, key)
        raise
    content: Any = jsonable_encoder(result) if result is not None else None
    await run_in_threadpool(store.finish_idempotency_key, caller.account, key, status_code,
                            json.dumps(content) if content is not None else "")
    return result
