"""/readyz says 503, naming why, when the cloud cannot do its work: the ingest stalled on a real
database lock while messages wait, its worker not running, the broker stopped. /healthz (liveness)
stays 200 through all of it, and the cloud is ready again once the cause is gone."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cloud.broker import SpokeBroker, start_broker, stop_broker
from tests.common import device, event, eventually, status
from tests.conftest import BrokerAddress, broker_files
from tests.stack import Stack, running_stack

PLUG = "00:00:00:00:00:00:00:01"
EVENTS = 20


async def probe(stack: Stack, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        return await anonymous.get(path)


async def readiness(stack: Stack) -> tuple[int, dict[str, Any]]:
    response = await probe(stack, "/readyz")
    return response.status_code, response.json()


@contextlib.contextmanager
def write_locked(database: Path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as a long transaction elsewhere would."""
    lock = sqlite3.connect(database, isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        yield
        lock.execute("ROLLBACK")
    finally:
        lock.close()


async def test_readyz_is_503_while_a_database_lock_stalls_the_ingest(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, start_hub=False,
                             cloud={"ingest_stall_after": 0.5}) as stack:
        hub_id = stack.hub_settings.hub_id
        ingest = stack.services.ingest
        database = stack.cloud_settings.sqlite_path()
        assert database is not None
        hub = await asyncio.to_thread(stack.as_hub)
        try:
            for message in (status(hub_id), device(hub_id, PLUG)):
                await asyncio.to_thread(hub.publish, message)
            await eventually(lambda: ingest.metrics.snapshot()["batches"] >= 1, what="device stored")
            assert (await readiness(stack))[0] == 200

            with write_locked(database):
                now = datetime.now(UTC)
                for seq in range(1, EVENTS + 1):
                    await asyncio.to_thread(hub.publish, event(hub_id, seq, PLUG, ts=now))

                async def stalled() -> bool:
                    code, body = await readiness(stack)
                    return code == 503 and any("ingest stalled" in r for r in body["reasons"])

                await eventually(stalled, what="/readyz saying the ingest is stalled")
                code, body = await readiness(stack)
                assert code == 503
                assert (body["status"], body["db"], body["mqtt"]) == ("not ready", "ok", "ok")
                assert body["ingest"].startswith("ingest stalled: ")
                assert body["ingest_waiting"] >= 1
                live = await probe(stack, "/healthz")
                assert live.status_code == 200
                assert live.json()["ingest_stall"] == body["ingest"]
                assert ingest.metrics.snapshot()["stored"] == 0  # nothing got past the lock
        finally:
            hub.close()

        async def ready() -> bool:
            return (await readiness(stack))[0] == 200

        await eventually(ready, what="ready again once the lock is gone")
        await eventually(lambda: ingest.metrics.snapshot()["stored"] == EVENTS,
                         what="every event stored after the stall")
        assert (await readiness(stack))[1]["ingest_waiting"] == 0

        # A stopped ingest (its worker and its link) is not ready either.
        await asyncio.to_thread(ingest.stop)
        code, body = await readiness(stack)
        assert code == 503 and body["ingest"] == "the ingest worker is not running"
        assert body["reasons"] == ["broker down: not connected", body["ingest"]]


async def test_readyz_is_503_while_the_broker_is_stopped(tmp_path: Path, free_port) -> None:
    secret_file, dynsec_file = broker_files(tmp_path / "broker")
    address = BrokerAddress("amqtt", "127.0.0.1", free_port(), secret_file)
    broker: SpokeBroker | None = await start_broker(address.host, address.port,
                                                    dynsec_file=dynsec_file)
    try:
        async with running_stack(tmp_path, address, start_hub=False,
                                 cloud={"mqtt_protocol": "3.1.1"}) as stack:
            await eventually(lambda: stack.services.ingest.connected, what="cloud connected")
            assert (await readiness(stack))[0] == 200
            assert broker is not None
            await stop_broker(broker)
            broker = None

            async def broker_down() -> bool:
                code, body = await readiness(stack)
                return code == 503 and body["mqtt"].startswith("down")

            await eventually(broker_down, what="/readyz saying the broker is down")
            code, body = await readiness(stack)
            assert code == 503 and body["reasons"] == [f"broker {body['mqtt']}"]
            assert (body["db"], body["ingest"]) == ("ok", "ok")
            assert (await probe(stack, "/healthz")).status_code == 200

            broker = await start_broker(address.host, address.port, dynsec_file=dynsec_file)

            async def ready() -> bool:
                return (await readiness(stack))[0] == 200

            await eventually(ready, within=15, what="ready again with the broker back")
    finally:
        if broker is not None:
            await stop_broker(broker)
