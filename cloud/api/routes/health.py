"""``GET /healthz``: 200 when the API, the database and the MQTT connection are all up, else 503."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cloud.api.deps import ServicesDep

router = APIRouter(tags=["health"])

_DB_CHECK_TIMEOUT = 3.0


@router.get("/healthz", responses={503: {"description": "a part is down"}})
async def healthz(services: ServicesDep) -> JSONResponse:
    """Liveness and readiness in one: which parts are up, plus the ingest counters (no auth)."""
    checks: dict[str, str] = {"api": "ok"}
    try:
        await asyncio.wait_for(asyncio.to_thread(services.storage.registry.ping), _DB_CHECK_TIMEOUT)
        checks["db"] = "ok"
    except TimeoutError:
        checks["db"] = f"down: no answer within {_DB_CHECK_TIMEOUT:g}s"
    except Exception as exc:
        checks["db"] = f"down: {exc}"
    link = services.ingest.link
    checks["mqtt"] = "ok" if link.connected else f"down: {link.last_error or 'not connected'}"
    healthy = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        **checks,
        "mqtt_protocol": link.protocol,
        "ingest": services.ingest.metrics.snapshot(),
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
