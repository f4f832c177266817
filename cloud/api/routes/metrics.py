"""``GET /metrics``: the cloud's Prometheus metrics, for the operator's metrics token only.

The metrics count across every account, so no account's API token opens them; the token is the
one in ``metrics_token_file`` (Prometheus: ``authorization: credentials_file: <that file>``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.api.deps import ServicesDep
from cloud.api.responses import ErrorPublic
from cloud.errors import Unauthorized
from cloud.metrics import CONTENT_TYPE
from cloud.metrics_token import token_matches

router = APIRouter(tags=["metrics"])

_metrics_bearer = HTTPBearer(auto_error=False, scheme_name="MetricsToken",
                             description="the operator's metrics token (the `metrics_token_file`)")


def require_metrics_token(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)],
) -> None:
    """401 unless the request carries the metrics token (compared in constant time)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token (Authorization: Bearer <metrics token>)")
    expected = services.metrics_token
    if expected is None or not token_matches(expected, credentials.credentials):
        raise Unauthorized("invalid metrics token")


@router.get(
    "/metrics",
    dependencies=[Depends(require_metrics_token)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format 0.0.4"},
        401: {"model": ErrorPublic, "description": "missing or wrong metrics token"},
    },
)
async def metrics(services: ServicesDep) -> Response:
    """The cloud's metrics: ingest, commands, the broker link, hubs and devices by state."""
    body = await asyncio.to_thread(services.metrics.render)  # counts the fleet in the database
    return Response(body, media_type=CONTENT_TYPE)
