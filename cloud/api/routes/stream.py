"""``/api/v1/session`` and ``/api/v1/stream``: who the token is, and live updates of its account.

The stream is server-sent events read with ``fetch`` (the token goes in the Authorization header,
never in the URL). Its messages: ``hello`` (the token's account and scopes), ``event`` (a stored
capability value), ``device`` (a device's new description, availability or state), ``device_removed``,
``hub`` (a hub's new status), ``pairing`` (new pairing steps of a hub: read them with GET
``/hubs/{id}/pairing``), and ``dropped`` (the client read too slowly; reload and reconnect). A comment
line keeps the connection alive; the token is checked again each time, and the stream ends once it is
revoked or expired.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from cloud.api.deps import ReadDep, ServicesDep
from cloud.api.responses import ErrorPublic
from cloud.auth import verify_token
from cloud.live import DROPPED, END, Stream, sse
from cloud.service import CloudServices
from cloud.storage.base import TokenRecord

router = APIRouter(tags=["live"])

HEARTBEAT = 15.0  # seconds between keep-alive lines (and checks of the token)
OBSERVER_WAIT = 5.0  # seconds a first stream waits for the event observer's subscription


class SessionPublic(BaseModel):
    account: str
    token_id: str
    name: str
    scopes: list[str]
    expires_at: datetime | None


@router.get("/session")
def session(caller: ReadDep) -> SessionPublic:
    """The caller's token: its account and scopes (what a client may offer)."""
    return SessionPublic(account=caller.account, token_id=caller.id, name=caller.name,
                         scopes=sorted(caller.scopes), expires_at=caller.expires_at)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "server-sent events of the token's account"},
               429: {"model": ErrorPublic,
                     "description": "the token has its most streams open, or its rate limit"}},
)
async def stream(caller: ReadDep, request: Request, services: ServicesDep) -> StreamingResponse:
    """Live updates of the account's hubs and devices, as the cloud stores them."""
    live = services.live.open(caller.account, caller.id)
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return _LiveResponse(
        live, services, _messages(live, services, caller, token), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


class _LiveResponse(StreamingResponse):
    """Closes its stream however the response ends, even before its first message."""

    def __init__(self, live: Stream, services: CloudServices, content: AsyncIterator[str],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._live = live
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._services.live.close(self._live)


async def _messages(live: Stream, services: CloudServices, caller: TokenRecord,
                    token: str) -> AsyncIterator[str]:
    try:
        observer = services.live_observer
        if observer is not None:  # from the hello on, the stream misses no event
            await run_in_threadpool(observer.link.wait_ready, OBSERVER_WAIT)
        yield sse("hello", {"account": caller.account, "scopes": sorted(caller.scopes)})
        while True:
            try:
                item = await asyncio.wait_for(live.queue.get(), HEARTBEAT)
            except TimeoutError:
                if await run_in_threadpool(verify_token, services.storage.registry, token) is None:
                    yield sse("end", {"reason": "token revoked or expired"})
                    return
                yield ": keep-alive\n\n"
                continue
            if item is END:
                yield sse("end", {"reason": "the cloud is stopping"})
                return
            if item is DROPPED:
                services.live.dropped += 1
                yield sse("dropped", {"reason": "the client read too slowly"})
                return
            yield item
    finally:
        services.live.close(live)
