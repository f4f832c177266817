"""``GET /healthz`` (liveness: 200 while the process serves) and ``GET /readyz`` (readiness: 503
naming what is wrong when the database or the broker is unreachable, or the ingest is stalled).

Neither needs a token: they show the state of the process and counts, never an account's data.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cloud.api.deps import ServicesDep
from cloud.service import CloudServices

router = APIRouter(tags=["health"])

_DB_CHECK_TIMEOUT = 3.0


class ReadinessPublic(BaseModel):
    status: str = Field(description="`ready`, or `not ready` (then the answer is a 503)")
    reasons: list[str] = Field(description="what keeps the cloud from being ready; empty when ready")
    db: str = Field(description="`ok` or `down: …`")
    mqtt: str = Field(description="`ok` or `down: …`")
    ingest: str = Field(description="`ok`, or why the ingest is stalled")
    ingest_waiting: int = Field(description="messages received and not yet stored")


@router.get("/healthz")
async def healthz(services: ServicesDep) -> dict[str, Any]:
    """Liveness: 200 while the process answers; the link's state and the ingest counters (no auth).
    What a load balancer should route by is /readyz."""
    link = services.ingest.link
    progress = services.ingest.progress()
    return {
        "status": "ok",
        "mqtt": "ok" if link.connected else f"down: {link.last_error or 'not connected'}",
        "mqtt_protocol": link.protocol,
        "ingest_waiting": progress.waiting,
        "ingest_stall": progress.stall,
        "ingest": services.ingest.metrics.snapshot(),
    }


@router.get("/readyz", response_model=ReadinessPublic,
            responses={503: {"model": ReadinessPublic, "description": "the database or the broker "
                             "is unreachable, or the ingest makes no progress"}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 when the database answers, the broker link is up and the ingest keeps up
    (no auth)."""
    db = await _database(services)
    link = services.ingest.link
    mqtt = "ok" if link.connected else f"down: {link.last_error or 'not connected'}"
    progress = services.ingest.progress()
    ingest = progress.stall or "ok"
    reasons = [f"{part} {state}" for part, state in (("database", db), ("broker", mqtt))
               if state != "ok"]
    if progress.stall is not None:
        reasons.append(progress.stall)
    body = ReadinessPublic(status="not ready" if reasons else "ready", reasons=reasons, db=db,
                           mqtt=mqtt, ingest=ingest, ingest_waiting=progress.waiting)
    return JSONResponse(body.model_dump(), status_code=503 if reasons else 200)


async def _database(services: CloudServices) -> str:
    try:
        await asyncio.wait_for(asyncio.to_thread(services.storage.registry.ping), _DB_CHECK_TIMEOUT)
    except TimeoutError:
        return f"down: no answer within {_DB_CHECK_TIMEOUT:g}s"
    except Exception as exc:
        return f"down: {exc}"
    return "ok"
