"""The REST API's lists with a large fleet: latency of device and hub pages against the API's floor.

Seeds ``hubs x per_hub`` devices of one account straight into the cloud's database (bulk inserts:
the benchmark's set-up, not the product's path) plus a small neighbouring account, starts a real
`spoke cloud run` (with Mosquitto), and times, interleaved so that drift hits every kind alike:
GET /healthz (no token, no database: the floor), the first and deep pages (by cursor) of
/api/v1/devices and /api/v1/hubs, one hub's devices, the small account's devices, a 1000-device page
and /api/v1/devices/{id}. Then it walks every page of the device list, and reads the cloud's
memory (resident now, and its peak).

    .venv/bin/python -m bench.api_lists [--hubs 1000] [--per-hub 100] [--requests 300]
        [--database-url postgresql+psycopg://…]   (an empty database; default: a new SQLite file)
        [--no-metering]   (the cloud without usage metering, to see its share)
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench.rig import Rig
from cloud.auth import create_token
from cloud.storage.base import device_id_for
from cloud.storage.sql import SqlRegistry
from cloud.storage.sql_schema import devices, hub_registrations, hubs

ACCOUNT, NEIGHBOUR = "default", "neighbour"
NEIGHBOUR_HUBS = 10
PAGE = 100
BATCH = 10_000  # rows per bulk insert
FLOOR = "GET /healthz"


def _ieee(n: int) -> str:
    return ":".join(f"{b:02x}" for b in (0x00124B0000000000 + n).to_bytes(8, "big"))


def seed(url: str, n_hubs: int, per_hub: int) -> str:
    """Hubs and devices of ``ACCOUNT`` and ``NEIGHBOUR`` in an empty database (migrated here);
    returns a read token of the neighbour."""
    registry = SqlRegistry.from_url(url)
    now = datetime.now(UTC)
    try:
        registry.add_account(NEIGHBOUR, now)
        owners = [(f"hub-{h:05d}", ACCOUNT) for h in range(n_hubs)]
        owners += [(f"nb-hub-{h:03d}", NEIGHBOUR) for h in range(NEIGHBOUR_HUBS)]
        with registry.engine.begin() as conn:
            conn.execute(insert(hubs), [
                {"id": hub, "online": True, "online_changed_at": now, "last_seen": now,
                 "events_received": 0, "events_stored": 0, "duplicates": 0, "gaps": 0,
                 "epoch": "e1", "status": {"online": True, "radio_up": True}}
                for hub, _ in owners])
            conn.execute(insert(hub_registrations), [
                {"hub_id": hub, "account": account, "generation": 1, "revoked": False,
                 "registered_at": now} for hub, account in owners])
        rows: list[dict[str, Any]] = []
        for hub, _ in owners:
            for n in range(per_hub):
                ieee = _ieee(n)
                rows.append({
                    "id": device_id_for(hub, ieee), "hub_id": hub, "ieee": ieee, "nwk": n,
                    "manufacturer": "IKEA of Sweden", "model": "TRADFRI bulb E27 WS opal 1000lm",
                    "name": f"lamp {n}", "power_source": "mains", "available": True,
                    "availability_changed_at": now, "updated_at": now, "state_at": now,
                    "capabilities": {"switch": {"on": n % 2 == 0}, "level": {"level": 42.0},
                                     "color_temperature": {"mireds": 370}},
                    "constraints": {"color_temperature": {"mireds": {"min": 250, "max": 454}}},
                    "removed": False})
                if len(rows) == BATCH:
                    _insert_devices(registry, rows)
        _insert_devices(registry, rows)
        if registry.engine.dialect.name == "postgresql":
            with registry.engine.begin() as conn:  # what autovacuum does soon after a bulk load
                conn.execute(text("ANALYZE"))
        return create_token(registry, "bench-neighbour", account=NEIGHBOUR, scopes=("read",))[1]
    finally:
        registry.close()


def _insert_devices(registry: SqlRegistry, rows: list[dict[str, Any]]) -> None:
    if rows:
        with registry.engine.begin() as conn:
            conn.execute(insert(devices), rows)
        rows.clear()


def memory_kb(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in kB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_ms[max(0, min(len(sorted_ms) - 1, round(p / 100 * len(sorted_ms)) - 1))]


@dataclass
class Walk:
    pages: int
    items: int
    distinct: int
    seconds: float
    cursors: list[str] = field(default_factory=list)  # each page's next-page cursor


def walk(api: httpx.Client, path: str, limit: int) -> Walk:
    """Every page of a list, following X-Next-Cursor."""
    ids: list[str] = []
    cursors: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    start = time.perf_counter()
    while True:
        response = api.get(path, params=params)
        response.raise_for_status()
        ids += [item["id"] for item in response.json()]
        cursor = response.headers.get("x-next-cursor")
        if cursor is None:
            break
        cursors.append(cursor)
        params["cursor"] = cursor
    return Walk(len(cursors) + 1, len(ids), len(set(ids)), time.perf_counter() - start, cursors)


@dataclass
class Report:
    devices: int
    backend: str
    latency_ms: dict[str, list[float]]  # ascending, per kind of request
    page_bytes: int  # the body of GET /api/v1/devices?limit=100
    walks: dict[int, Walk]  # per page size
    memory_kb: dict[str, dict[str, int]]  # "started", "end"


def run(workdir: Path, n_hubs: int, per_hub: int, requests: int,
        database_url: str | None = None, metering: bool = True) -> Report:
    rig = Rig(workdir, database=database_url,
              env={} if metering else {"SPOKE_USAGE_METERING": "false"})
    neighbour = seed(rig.database_url, n_hubs, per_hub)
    rig.start(hub=False)
    try:
        assert rig.clouds[0].proc is not None
        pid = rig.clouds[0].proc.pid
        memory = {"started": memory_kb(pid)}
        with rig.http() as api, httpx.Client(
                base_url=rig.api(), timeout=20,
                headers={"Authorization": f"Bearer {neighbour}"}) as theirs:
            walks = {size: walk(api, "/api/v1/devices", size) for size in (PAGE, 1000)}
            hub_walk = walk(api, "/api/v1/hubs", PAGE)
            latency = _measure(api, theirs, walks[PAGE], hub_walk, n_hubs, per_hub, requests)
            page_bytes = len(api.get("/api/v1/devices", params={"limit": PAGE}).content)
        memory["end"] = memory_kb(pid)
    finally:
        rig.stop()
    backend = (database_url or "sqlite").split(":", 1)[0].split("+", 1)[0]
    return Report(n_hubs * per_hub, backend, latency, page_bytes, walks, memory)


def _measure(api: httpx.Client, theirs: httpx.Client, device_walk: Walk, hub_walk: Walk,
             n_hubs: int, per_hub: int, requests: int) -> dict[str, list[float]]:
    """Each kind of request ``requests`` times, round-robin; latencies in ms, ascending."""
    rnd = random.Random(7)
    deep = device_walk.cursors or [""]
    hub_deep = hub_walk.cursors or [""]

    def device_id() -> str:
        return device_id_for(f"hub-{rnd.randrange(n_hubs):05d}", _ieee(rnd.randrange(per_hub)))

    def cursor(cursors: list[str]) -> dict[str, Any]:
        chosen = rnd.choice(cursors)
        return {"limit": PAGE, "cursor": chosen} if chosen else {"limit": PAGE}

    kinds: dict[str, Callable[[], httpx.Response]] = {
        FLOOR: lambda: api.get("/healthz"),
        "GET /api/v1/devices?limit=100 (first page)": lambda: api.get(
            "/api/v1/devices", params={"limit": PAGE}),
        "GET /api/v1/devices?limit=100&cursor= (deep)": lambda: api.get(
            "/api/v1/devices", params=cursor(deep)),
        "GET /api/v1/devices?limit=100&hub_id=": lambda: api.get(
            "/api/v1/devices", params={"limit": PAGE, "hub_id": f"hub-{rnd.randrange(n_hubs):05d}"}),
        "GET /api/v1/devices?limit=100 (small account)": lambda: theirs.get(
            "/api/v1/devices", params={"limit": PAGE}),
        "GET /api/v1/devices?limit=1000": lambda: api.get("/api/v1/devices", params={"limit": 1000}),
        "GET /api/v1/devices/{id}": lambda: api.get(f"/api/v1/devices/{device_id()}"),
        "GET /api/v1/hubs?limit=100 (first page)": lambda: api.get(
            "/api/v1/hubs", params={"limit": PAGE}),
        "GET /api/v1/hubs?limit=100&cursor= (deep)": lambda: api.get(
            "/api/v1/hubs", params=cursor(hub_deep)),
    }
    for call in kinds.values():  # warm up: connections, caches, the first compiled statements
        for _ in range(3):
            call().raise_for_status()
    latency: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(requests):
        for name, call in kinds.items():
            start = time.perf_counter()
            response = call()
            latency[name].append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return {name: sorted(values) for name, values in latency.items()}


def print_report(report: Report, command: str) -> None:
    print(f"$ {command}")
    print(f"{report.devices:,} devices in one account ({report.backend}), real `spoke cloud run`; "
          f"{len(report.latency_ms[FLOOR])} requests per kind, interleaved, one client")
    floor = percentile(report.latency_ms[FLOOR], 50)
    print(f"{'request':48} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p50/floor':>10}")
    for name, values in report.latency_ms.items():
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        print(f"{name:48} {p50:8.2f} {p95:8.2f} {p99:8.2f} {p50 / floor:9.1f}x")
    print(f"one page of 100 devices: {report.page_bytes / 1024:.1f} KiB")
    for size, w in report.walks.items():
        print(f"walking every device, limit={size}: {w.pages} pages, {w.items:,} devices "
              f"({w.distinct:,} distinct) in {w.seconds:.2f} s")
    for when, kb in report.memory_kb.items():
        print(f"cloud memory ({when}): resident {kb['VmRSS'] / 1024:.0f} MB, "
              f"peak {kb['VmHWM'] / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=1000)
    parser.add_argument("--per-hub", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300, help="per kind of request")
    parser.add_argument("--database-url", default=None, help="an empty database")
    parser.add_argument("--no-metering", action="store_true",
                        help="the cloud without usage metering (what metering costs a request)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="spoke-bench-lists-"))
    try:
        report = run(workdir, args.hubs, args.per_hub, args.requests, args.database_url,
                     metering=not args.no_metering)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    options = (" --database-url <postgresql>" if args.database_url else "") + (
        " --no-metering" if args.no_metering else "")
    print_report(report, f".venv/bin/python -m bench.api_lists --hubs {args.hubs} --per-hub "
                         f"{args.per_hub} --requests {args.requests}{options}")


if __name__ == "__main__":
    main()
