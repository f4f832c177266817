"""The cloud's HTTP API (FastAPI): one router per resource under /api/v1, plus /healthz, /readyz
and /metrics."""
