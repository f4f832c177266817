"""The API gateway's per-token rate limits and metering.

The token check (``deps.require_token``) calls ``admit`` once the token is known: it counts the
request against the token's limit (429 beyond it) and marks the request as the token's. The
``UsageMeter`` middleware then counts every such request per token, route template, UTC day and
status class, just before its response goes out (so a client that reads its usage next sees it);
a command counts itself as answered 2xx in the transaction that records it, and the middleware
moves that count should it answer otherwise.
Requests without a valid token (401) and unauthenticated routes (/healthz) are neither limited nor
metered.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.rate_limits import RateLimited
from cloud.storage.base import TokenRecord
from cloud.storage.usage import UsageCount

log = logging.getLogger(__name__)

_TOKEN = "spoke.token"  # the ASGI scope key of the request's token record
_COUNTED = "spoke.counted"  # the request's count, written before its answer by its route


def admitted(request: Request) -> TokenRecord | None:
    """The token this request was already admitted with (a route checks its token twice when a
    path's account check needs it too)."""
    return request.scope.get(_TOKEN)


def admit(request: Request, token: TokenRecord) -> None:
    """Count this request against ``token``'s limit; RateLimited (429) beyond it. A route whose
    dependencies check the token twice (with different scopes) is counted once."""
    if _TOKEN in request.scope:
        return
    request.scope[_TOKEN] = token
    request.app.state.services.limiter.admit(token.id, request.method)


def install_limits(app: FastAPI) -> None:
    """The 429 answer and the metering middleware."""

    @app.exception_handler(RateLimited)
    async def _rate_limited(_request: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429,
                            headers={"Retry-After": str(exc.retry_after)})

    app.add_middleware(UsageMeter)


class UsageMeter:
    """ASGI middleware: meters each request that ``admit`` marked, by the status it answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metered = False

        async def send_metered(message: Message) -> None:
            nonlocal metered
            if message["type"] == "http.response.start" and not metered:
                metered = True
                await _meter(scope, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_metered)
        except Exception:
            if not metered:
                metered = True
                await _meter(scope, 500)
            raise


def count_ahead(request: Request, status: int) -> UsageCount | None:
    """The count of this request as answering ``status``, for a route to write in a transaction
    of its own before it answers (``counted_ahead`` then); None when it is not metered."""
    scope = request.scope
    token: TokenRecord | None = scope.get(_TOKEN)
    route = scope.get("route")
    app = scope["app"]
    if token is None or route is None or not app.state.services.settings.usage_metering:
        return None
    return UsageCount(day=datetime.now(UTC).date(), account=token.account, token_id=token.id,
                      method=scope["method"], route=route_template(app, route),
                      status=f"{status // 100}xx")


def counted_ahead(request: Request, counted: UsageCount) -> None:
    """``counted`` is committed: the middleware only moves it should the answer differ."""
    request.scope[_COUNTED] = counted


async def _meter(scope: Scope, status: int) -> None:
    token: TokenRecord | None = scope.get(_TOKEN)
    route = scope.get("route")
    if token is None or route is None:
        return
    app = scope["app"]
    if not app.state.services.settings.usage_metering:
        return
    template = route_template(app, route)
    status_class = f"{status // 100}xx"
    counted: UsageCount | None = scope.get(_COUNTED)
    try:
        if counted is None:
            await run_in_threadpool(
                app.state.services.storage.usage.record, datetime.now(UTC).date(), token.account,
                token.id, scope["method"], template, status_class)
        elif counted.status != status_class:
            await run_in_threadpool(app.state.services.storage.usage.recount, counted,
                                    status_class)
    except Exception as exc:  # the answer must not fail because its metering did
        log.warning("could not meter %s %s: %s", scope["method"], template, exc)


def route_template(app: FastAPI, route: BaseRoute) -> str:
    """The full path template of the route a request matched (``/api/v1/devices/{device_id}``).
    FastAPI from 0.16x keeps the route as its router declared it (without the prefixes it was
    included under) in ``scope["route"]``; its included-route contexts know the full path."""
    templates: dict[int, str] | None = getattr(app.state, "route_templates", None)
    if templates is None:
        templates = {}
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # older FastAPI: scope["route"] has the full path
            pass
        else:
            for context in iter_route_contexts(app.routes):
                if context.path_format:
                    templates[id(context.original_route)] = context.path_format
        app.state.route_templates = templates
    return templates.get(id(route)) or str(getattr(route, "path_format", "?"))
