"""The FastAPI application factory; its lifespan starts and stops the cloud services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from cloud.api.body_limit import BodyLimit
from cloud.api.errors import install_error_handlers
from cloud.api.limits import install_limits
from cloud.api.responses import UNAUTHORIZED
from cloud.api.routes import (
    commands,
    devices,
    groups,
    health,
    history,
    hubs,
    metrics,
    pairing,
    stream,
    tokens,
    usage,
)
from cloud.api.schemas import DevicePublic, HubPublic
from cloud.live import TooManyStreams
from cloud.service import CloudServices
from cloud.settings import CloudSettings
from cloud.web import install_dashboard

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: CloudSettings, services: CloudServices | None = None) -> FastAPI:
    """Build the app; its lifespan builds (unless given), starts and stops the services."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc: CloudServices = (
            services if services is not None
            else await asyncio.to_thread(CloudServices.build, settings)
        )
        app.state.services = svc
        svc.live.device_view = lambda d: DevicePublic.of(d).model_dump(mode="json")
        svc.live.hub_view = lambda h: HubPublic.of(h).model_dump(mode="json")
        await asyncio.to_thread(svc.start)
        if not await asyncio.to_thread(svc.ingest.wait_ready, settings.mqtt_startup_wait):
            log.warning("MQTT broker %s:%s not reachable yet; serving anyway, retrying",
                        settings.mqtt_host, settings.mqtt_port)
        try:
            yield
        finally:
            await asyncio.to_thread(svc.stop)

    app = FastAPI(title="Spoke cloud", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body)
    install_limits(app)
    api = APIRouter(prefix=API_PREFIX)  # every route declares the scope it needs
    for module in (hubs, pairing, groups, devices, history, commands, tokens, usage, stream):
        api.include_router(module.router, responses=UNAUTHORIZED)
    app.include_router(api)
    install_dashboard(app)

    @app.exception_handler(TooManyStreams)
    async def _too_many_streams(_request: Request, exc: TooManyStreams) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": "5"})

    app.include_router(health.router)
    app.include_router(metrics.router)  # the operator's metrics token, not an account's
    return app
