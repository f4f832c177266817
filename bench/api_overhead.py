"""What the per-token rate limit and the metering cost per API request, in one run.

The same authenticated read (GET /api/v1/hubs) goes through the app in-process (httpx's ASGI
transport: no sockets, so the gateway's share is not hidden by HTTP parsing) three ways: without
limits or metering, with metering only, with both (limits set high enough never to refuse). Rounds
alternate between the three so that drift hits all of them alike; the best round of each counts.

    .venv/bin/python -m bench.api_overhead [--n 2000] [--concurrency 4] [--rounds 3]
        [--database-url postgresql+psycopg://…]   (default: a fresh SQLite file per variant)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from cloud.api.app import create_app
from cloud.auth import create_token
from cloud.service import CloudServices
from cloud.settings import CloudSettings

VARIANTS = {
    "no limits, no metering": {"rate_limit_reads": "off", "rate_limit_commands": "off",
                               "usage_metering": False},
    "metering only": {"rate_limit_reads": "off", "rate_limit_commands": "off",
                      "usage_metering": True},
    "limits + metering": {"rate_limit_reads": "1000000000/hour",
                          "rate_limit_commands": "1000000000/hour", "usage_metering": True},
}


async def _run(client: httpx.AsyncClient, n: int, concurrency: int) -> float:
    """Requests per second for ``n`` reads from ``concurrency`` clients at once."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await client.get("/api/v1/hubs")
            assert response.status_code == 200, response.text

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


async def main(n: int, concurrency: int, rounds: int, database_url: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="spoke-bench-"))
    clients: dict[str, httpx.AsyncClient] = {}
    services: list[CloudServices] = []
    for i, (name, values) in enumerate(VARIANTS.items()):
        url = database_url or f"sqlite:///{workdir / f'cloud-{i}.db'}"
        settings = CloudSettings(database_url=url, **values)  # type: ignore[arg-type]
        svc = CloudServices.build(settings)  # nothing connects: the read needs only the database
        services.append(svc)
        app = create_app(settings, svc)
        app.state.services = svc
        _, token = create_token(svc.storage.registry, f"bench-{i}")
        clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://cloud",
                                          headers={"Authorization": f"Bearer {token}"})
    best = dict.fromkeys(clients, 0.0)
    try:
        for client in clients.values():
            await _run(client, 200, concurrency)  # warm up
        for _ in range(rounds):
            for name, client in clients.items():
                best[name] = max(best[name], await _run(client, n, concurrency))
    finally:
        for client in clients.values():
            await client.aclose()
        for svc in services:
            svc.storage.close()
    backend = database_url.split(":", 1)[0] if database_url else "sqlite (file, WAL)"
    print(f"GET /api/v1/hubs in-process, {backend}, {n} requests x {rounds} rounds, "
          f"{concurrency} at once (best round)")
    base = best["no limits, no metering"]
    for name, rate in best.items():
        extra = (1 / rate - 1 / base) * 1e6
        print(f"  {name:24} {rate:8.0f} requests/s   {1e6 / rate:7.0f} µs/request"
              f"   (+{extra:.0f} µs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.concurrency, args.rounds, args.database_url))
