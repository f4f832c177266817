"""The API gateway's per-token rate limits and metering, over real HTTP on the real stack: reads and
commands are limited apart, the limit holds across two cloud processes on one database, a window's
end lifts it; usage is counted per route template and day, and only the caller's account sees its
own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cloud.auth import create_account, create_token
from cloud.rate_limits import Rate, parse_rate
from cloud.service import run_cloud
from cloud.settings import CloudSettings
from cloud.storage.sql import SqlRegistry
from cloud.storage.sql_usage import SqlUsage
from tests.conftest import BrokerAddress, _free_port
from tests.stack import Stack, running_stack

SPOKE = str(Path(sys.executable).with_name("spoke"))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def second_cloud(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Another cloud process's API (its own services and port) on the stack's database."""
    port = _free_port()
    settings = stack.cloud_settings.model_copy(update={
        "cloud_port": port, "mqtt_client_id": f"{stack.cloud_settings.mqtt_client_id}-2"})
    started = asyncio.Event()
    task = asyncio.create_task(run_cloud(settings, started=started))
    try:
        await asyncio.wait_for(started.wait(), 15)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20,
                                     headers=_bearer(stack.token)) as api:
            yield api
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fresh_window(seconds: int, margin: float) -> None:
    """Wait for the next fixed window when less than ``margin`` seconds are left of this one."""
    left = seconds - time.time() % seconds
    if left < margin:
        await asyncio.sleep(left + 0.05)


def _limited(response: httpx.Response, kind: str, window: int) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert kind in response.json()["detail"]


def test_rates_are_read_from_settings() -> None:
    assert parse_rate("120/minute") == Rate(120, 60)
    assert parse_rate("5/10s") == Rate(5, 10)
    assert parse_rate("1000/h") == Rate(1000, 3600)
    assert parse_rate("30 60") == Rate(30, 60)
    assert parse_rate("off") is None
    for bad in ("fast", "0/minute", "10/fortnight", "10/0s", "-1 60"):
        with pytest.raises(ValueError, match="rate limit"):
            parse_rate(bad)
    settings = CloudSettings(rate_limit_reads="300/minute", rate_limit_commands="2/second")
    assert settings.rate_limits() == (Rate(300, 60), Rate(2, 1))
    with pytest.raises(ValueError, match="rate limit"):
        CloudSettings(rate_limit_commands="many")


async def test_reads_and_commands_are_limited_apart_across_two_clouds(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    limits = {"rate_limit_reads": "6/hour", "rate_limit_commands": "3/hour"}
    async with running_stack(tmp_path, mosquitto, start_hub=False, cloud=limits) as stack, \
            second_cloud(stack) as other:
        await fresh_window(3600, margin=30)
        clouds = (stack.api, other)
        # Requests without a valid token are refused first and count against nothing.
        for i in range(8):
            response = await clouds[i % 2].get("/api/v1/hubs", headers=_bearer("spk_nope"))
            assert response.status_code == 401
        for i in range(6):
            response = await clouds[i % 2].get("/api/v1/hubs")
            assert response.status_code == 200, (i, response.text)
        for api in clouds:  # the sixth read was the last one, whichever process counts it
            _limited(await api.get("/api/v1/hubs"), "reads", 3600)
            _limited(await api.get("/api/v1/devices/nope"), "reads", 3600)
        # Commands have their own count: still three of them.
        for i in range(3):
            made = await clouds[i % 2].post("/api/v1/tokens",
                                            json={"name": f"t{i}", "scopes": ["read"]})
            assert made.status_code == 201, made.text
        for api in clouds:
            _limited(await api.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"]}),
                     "commands", 3600)
        # The limit is the token's: another token of the account reads on; /healthz is open.
        fresh = made.json()["token"]
        assert (await other.get("/api/v1/hubs", headers=_bearer(fresh))).status_code == 200
        for _ in range(10):
            assert (await other.get("/healthz")).status_code in (200, 503)


async def test_the_limit_lifts_when_its_window_ends(tmp_path: Path,
                                                    mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, start_hub=False,
                             cloud={"rate_limit_reads": "3/2s"}) as stack:
        await fresh_window(2, margin=2)  # start at the beginning of a window
        # A device route checks the token twice (its scope, the device's account): counted once.
        for path in ("/api/v1/hubs", "/api/v1/devices/nope", "/api/v1/devices/nope"):
            assert (await stack.api.get(path)).status_code in (200, 404)
        response = await stack.api.get("/api/v1/hubs")
        _limited(response, "reads", 2)
        await asyncio.sleep(int(response.headers["Retry-After"]))
        assert (await stack.api.get("/api/v1/hubs")).status_code == 200


async def test_usage_is_metered_per_route_template_and_stays_in_its_account(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        devices = await stack.wait_for_devices(3)
        registry = stack.services.storage.registry
        record, token = await asyncio.to_thread(create_token, registry, "meter")
        await asyncio.to_thread(create_account, registry, "neighbour")
        _, neighbour = await asyncio.to_thread(create_token, registry, "n", account="neighbour")
        api, hers = _bearer(token), _bearer(neighbour)
        switch = next(d for d in devices if "switch" in d["capabilities"])
        made: Counter[tuple[str, str, str]] = Counter()

        async def call(method: str, path: str, template: str,
                       json: dict[str, str] | None = None) -> None:
            response = await stack.api.request(method, path, headers=api, json=json)
            made[(method, template, f"{response.status_code // 100}xx")] += 1

        for _ in range(3):
            await call("GET", "/api/v1/devices", "/api/v1/devices")
        for d in devices[:2]:
            await call("GET", f"/api/v1/devices/{d['id']}", "/api/v1/devices/{device_id}")
        await call("GET", "/api/v1/devices/nope", "/api/v1/devices/{device_id}")
        await call("POST", f"/api/v1/devices/{switch['id']}/commands",
                   "/api/v1/devices/{device_id}/commands",
                   json={"capability": "switch", "command": "on"})
        await stack.api.get("/api/v1/devices", headers=_bearer("spk_nope"))  # 401: not metered
        assert made[("GET", "/api/v1/devices/{device_id}", "2xx")] == 2
        assert made[("GET", "/api/v1/devices/{device_id}", "4xx")] == 1
        assert made[("POST", "/api/v1/devices/{device_id}/commands", "2xx")] == 1

        response = await stack.api.get("/api/v1/usage", headers=api,
                                       params={"token_id": record.id})
        assert response.status_code == 200, response.text
        today = datetime.now(UTC).date().isoformat()
        rows = response.json()
        assert {r["day"] for r in rows} == {today}
        assert {r["token_id"] for r in rows} == {record.id}
        assert {(r["method"], r["route"], r["status"]): r["requests"] for r in rows} == made
        # The account's whole usage has the stack's own token too, and now this usage request.
        rows = (await stack.api.get("/api/v1/usage", headers=api)).json()
        assert {r["token_id"] for r in rows} >= {record.id}
        assert len({r["token_id"] for r in rows}) == 2
        mine = {(r["method"], r["route"], r["status"]): r["requests"] for r in rows
                if r["token_id"] == record.id}
        assert mine == {**made, ("GET", "/api/v1/usage", "2xx"): 1}
        assert not any(d["id"] in r["route"] for r in rows for d in devices)

        # Another account's admin sees none of it, and cannot ask for this account's token.
        theirs = await stack.api.get("/api/v1/usage", headers=hers)
        assert theirs.status_code == 200 and theirs.json() == []
        asked = await stack.api.get("/api/v1/usage", headers=hers, params={"token_id": record.id})
        assert asked.status_code == 404
        theirs = (await stack.api.get("/api/v1/usage", headers=hers)).json()
        assert [(r["route"], r["status"], r["requests"]) for r in theirs] == [
            ("/api/v1/usage", "2xx", 1), ("/api/v1/usage", "4xx", 1)]
        # Days out of order, or a day that is not one: 422.
        for params in ({"since": today, "until": "2001-01-01"}, {"since": "yesterday"}):
            response = await stack.api.get("/api/v1/usage", headers=api, params=params)
            assert response.status_code == 422, response.text
        earlier = (datetime.now(UTC).date() - timedelta(days=3)).isoformat()
        response = await stack.api.get("/api/v1/usage", headers=api,
                                       params={"since": earlier, "until": earlier})
        assert response.json() == []

        # The CLI prints the same counts.
        shown = await asyncio.to_thread(_spoke_usage, stack, "--days", "1")
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines()
                    if record.id in x and "/api/v1/devices/{device_id} " in x and "2xx" in x)
        assert [c.strip() for c in line.split("│") if c.strip()][-1] == "2"
        assert "/api/v1/devices/{device_id}/commands" in shown.stdout
        assert not any(d["id"] in shown.stdout for d in devices)
        other = await asyncio.to_thread(_spoke_usage, stack, "--account", "neighbour")
        assert other.returncode == 0 and record.id not in other.stdout
        assert "/api/v1/usage" in other.stdout
        missing = await asyncio.to_thread(_spoke_usage, stack, "--account", "nobody")
        assert missing.returncode != 0 and "no account" in missing.stderr + missing.stdout


def _spoke_usage(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    env.update(SPOKE_DATABASE_URL=stack.cloud_settings.database_url, COLUMNS="250",
               SPOKE_CONFIG="none.toml")
    return subprocess.run([SPOKE, "cloud", "usage", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_window_counts_are_exact_under_concurrency(registry: SqlRegistry) -> None:
    """Many threads (as many requests in several processes would) count in one window and in
    metering: no count is lost; a token's new window drops its old ones."""
    usage = SqlUsage(registry.engine)
    counts: list[int] = []
    lock = threading.Lock()
    day = datetime.now(UTC).date()

    def hammer() -> None:
        for _ in range(25):
            count = usage.hit("tok", "reads", 600)
            usage.record(day, "default", "tok", "GET", "/api/v1/hubs", "2xx")
            with lock:
                counts.append(count)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 201))  # every request saw its own place in the window
    assert usage.hit("tok", "commands", 600) == 1  # commands count apart
    assert usage.hit("tok", "reads", 660) == 1  # the next window starts afresh
    assert usage.hit("tok", "reads", 600) == 1  # (its old window was dropped)
    (row,) = usage.usage("default", day, day)
    assert (row.token_id, row.route, row.count) == ("tok", "/api/v1/hubs", 200)
    assert usage.usage("neighbour", day, day) == []
