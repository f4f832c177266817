"""Scale-out: two `spoke cloud run` processes on one database and one Mosquitto (the shipped
configuration, dynamic security), sharing the hubs' events through an MQTT shared subscription,
serve a hub running zigpy on the simulated radio as one cloud: a command posted to either resolves
with the hub's result, pairing opened through one is followed through the other, and one rate limit
and one Idempotency-Key ledger span both. The two start together on an empty database, as a
deployment's workers do. SQLite (WAL) by default; PostgreSQL when SPOKE_TEST_POSTGRES_URL names a
database the test may wipe. The tests share one set-up (it takes seconds) and count what they do
from what was there before."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, func, select

from bench.rig import SPOKE, Service, free_port
from bench.tls import Pki
from cloud.auth import create_token
from cloud.settings import CloudSettings
from cloud.storage.sql import SqlRegistry
from cloud.storage.sql_schema import commands
from hub.app import Hub
from tests.common import eventually, register_hub
from tests.conftest import (
    POSTGRES_URL,
    BrokerAddress,
    create_database,
    drop_database,
    running_mosquitto,
)
from tests.stack import hub_settings

HUB_ID = "hub-scale"
COMMANDS_PER_MINUTE = 5
SWITCH_ON = {"capability": "switch", "command": "on"}

in_module_loop = pytest.mark.asyncio(loop_scope="module")  # the shared hub runs in that loop


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scale-out")


@pytest.fixture(scope="module")
def broker(workdir: Path, pki: Pki) -> Iterator[BrokerAddress]:
    with running_mosquitto(workdir, pki) as address:
        yield address


@pytest.fixture(scope="module")
def empty_database(request: pytest.FixtureRequest, workdir: Path) -> Iterator[Callable[[str], str]]:
    """``new(name)``: the URL of a new, empty database: a SQLite file, or a new database on the
    PostgreSQL server the environment names (dropped after the module)."""
    if not POSTGRES_URL:
        yield lambda name: f"sqlite:///{workdir / name}.db"
        return
    server: Engine = request.getfixturevalue("postgres_server")
    made: list[str] = []

    def new(_name: str) -> str:
        made.append(create_database(server, "template0"))
        return server.url.set(database=made[-1]).render_as_string(hide_password=False)

    yield new
    for name in made:
        drop_database(server, name)


@pytest.fixture(scope="module")
def database_url(empty_database: Callable[[str], str]) -> str:
    return empty_database("cloud")


def test_workers_set_up_an_empty_database_together(empty_database: Callable[[str], str]) -> None:
    """Workers started at once on an empty database (a deployment's first start) each create or
    find the schema; none fails on another's half-made tables. (Runs before the workers below.)"""
    database_url = empty_database("fresh")
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_registry() -> None:
        start.wait()
        try:
            SqlRegistry.from_url(database_url).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_registry) for _ in range(start.parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures


@dataclass
class Clouds:
    """Two cloud processes (A and B), the hub, and the database both clouds use."""

    urls: list[str]
    workers: list[Service]
    hub: Hub
    registry: SqlRegistry
    bulb: dict[str, Any]

    @contextlib.asynccontextmanager
    async def apis(self, name: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
        """Clients of A and B with a new token of their own (each its own rate-limit budget)."""
        _, token = await asyncio.to_thread(create_token, self.registry, name)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=self.urls[0], headers=headers, timeout=20) as a, \
                httpx.AsyncClient(base_url=self.urls[1], headers=headers, timeout=20) as b:
            yield a, b

    async def executions(self, ieee: str) -> dict[str, int]:
        """What the virtual device carried out, by command."""
        found = await self.hub.dispatch.control({"op": "sim_device", "ieee": ieee})
        return found["commands"]  # type: ignore[no-any-return]

    def command_rows(self) -> int:
        with self.registry.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(commands)).scalar_one())


def _worker(name: str, port: int, database_url: str, broker: BrokerAddress, workdir: Path
            ) -> Service:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    env.update(
        SPOKE_CONFIG=str(workdir / "none.toml"), SPOKE_DATABASE_URL=database_url,
        SPOKE_MQTT_HOST=broker.host, SPOKE_MQTT_PORT=str(broker.port), SPOKE_MQTT_PROTOCOL="5",
        SPOKE_BROKER_SECRET_FILE=str(broker.secret_file), SPOKE_MQTT_SHARED_GROUP="spoke-cloud",
        SPOKE_MQTT_CLIENT_ID=f"spoke-cloud-{name}", SPOKE_CLOUD_PORT=str(port),
        SPOKE_COMMAND_TIMEOUT="5", SPOKE_COMMAND_TTL="10",
        SPOKE_RATE_LIMIT_READS="100000/minute",
        SPOKE_RATE_LIMIT_COMMANDS=f"{COMMANDS_PER_MINUTE}/minute")
    return Service(f"cloud-{name}", [SPOKE, "cloud", "run"], env, workdir / f"cloud-{name}.log")


async def _healthy(worker: Service, url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=1) as client:
        async def up() -> bool:
            assert worker.alive, f"{worker.name} exited\n{worker.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get("/healthz")).status_code == 200
            return False

        await eventually(up, within=30, what=f"{worker.name} healthy")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clouds(workdir: Path, broker: BrokerAddress, database_url: str) -> AsyncIterator[Clouds]:
    ports = [free_port(), free_port()]
    workers = [_worker(name, port, database_url, broker, workdir)
               for name, port in zip("ab", ports, strict=True)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    hub: Hub | None = None
    registry: SqlRegistry | None = None
    try:
        for worker in workers:  # together, on the empty database
            worker.start()
        await asyncio.gather(*(_healthy(w, u) for w, u in zip(workers, urls, strict=True)))
        settings = CloudSettings(database_url=database_url, mqtt_host=broker.host,
                                 mqtt_port=broker.port, broker_secret_file=broker.secret_file)
        credentials = await asyncio.to_thread(register_hub, settings, HUB_ID)
        registry = await asyncio.to_thread(SqlRegistry.from_url, database_url)
        hub = Hub(hub_settings(workdir, broker, HUB_ID, credentials, sim_devices=["bulb"]))
        await hub.start()
        _, token = await asyncio.to_thread(create_token, registry, "setup")
        async with httpx.AsyncClient(base_url=urls[1], timeout=5,
                                     headers={"Authorization": f"Bearer {token}"}) as api:
            found: list[dict[str, Any]] = []

            async def bulb_adopted() -> bool:
                found[:] = (await api.get("/api/v1/devices")).json()
                return bool(found) and "switch" in found[0]["capabilities"]

            await eventually(bulb_adopted, within=30, what="the bulb in the cloud")
        yield Clouds(urls, workers, hub, registry, found[0])
    finally:
        if hub is not None:
            await hub.stop()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        if registry is not None:
            registry.close()
    for worker in workers:
        assert worker.proc is not None and worker.proc.returncode == 0, worker.tail()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("spoke-")]


async def _command(api: httpx.AsyncClient, device_id: str, body: dict[str, Any],
                   key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await api.post(f"/api/v1/devices/{device_id}/commands", json=body, headers=headers)


@in_module_loop
async def test_a_command_posted_to_either_process_resolves_with_the_hubs_result(
        clouds: Clouds) -> None:
    bulb = clouds.bulb
    async with clouds.apis("commands") as (a, b):
        before = await clouds.executions(bulb["ieee"])
        for here, there, turn in ((a, b, "on"), (b, a, "off"), (a, b, "on"), (b, a, "off")):
            response = await _command(here, bulb["id"], {"capability": "switch", "command": turn})
            assert response.status_code == 200, response.text
            sent = response.json()
            assert sent["status"] == "succeeded"
            seen = (await there.get(f"/api/v1/commands/{sent['id']}")).json()
            assert (seen["id"], seen["status"]) == (sent["id"], "succeeded")

            async def reported(api: httpx.AsyncClient = there, on: bool = turn == "on") -> bool:
                device = (await api.get(f"/api/v1/devices/{bulb['id']}")).json()
                return device["capabilities"]["switch"]["on"] is on

            # The device's report comes back as an event, stored by whichever process got it.
            await eventually(reported, what=f"the bulb {turn} as the other process reads it")
        done = await clouds.executions(bulb["ieee"])
        assert [done.get(c, 0) - before.get(c, 0) for c in ("on_off.on", "on_off.off")] == [2, 2]
        ingest = [(await api.get("/healthz")).json()["ingest"] for api in (a, b)]
    # Events are split between the two, not delivered to both (the second copy would count as a
    # duplicate); results reach both, and each stores the hub's result once.
    assert sum(i["duplicates"] for i in ingest) == 0, ingest
    assert all(i["rejected_total"] == 0 for i in ingest), [i["rejected"] for i in ingest]


@in_module_loop
async def test_pairing_opened_through_one_process_is_followed_through_the_other(
        clouds: Clouds) -> None:
    async with clouds.apis("pairing") as (a, b):
        response = await a.post(f"/api/v1/hubs/{HUB_ID}/pairing", json={"duration": 60})
        assert response.status_code == 202, response.text
        cursor = response.json()["cursor"]

        async def open_in_b() -> bool:
            return bool((await b.get(f"/api/v1/hubs/{HUB_ID}/pairing")).json()["open"])

        await eventually(open_in_b, what="pairing open as B reads it")
        ieee = (await clouds.hub.dispatch.control({"op": "join", "source": "plug"}))["ieee"]
        events: list[dict[str, Any]] = []

        async def adopted() -> bool:
            nonlocal cursor
            page = (await b.get(f"/api/v1/hubs/{HUB_ID}/pairing",
                                params={"after": cursor})).json()
            events.extend(page["events"])
            cursor = page["cursor"]
            return any(e["step"] == "adopted" and e["ieee"] == ieee for e in events)

        await eventually(adopted, within=20, what="the plug adopted, as B reads it")
        # Both processes store every pairing event: each still appears once, in order.
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids)), ids
        steps = [e["step"] for e in events if e["ieee"] == ieee]
        assert steps.count("joined") == 1 and steps.count("adopted") == 1, steps
        assert steps.index("joined") < steps.index("adopted")
        for api in (a, b):
            devices = (await api.get("/api/v1/devices")).json()
            assert [d["ieee"] for d in devices].count(ieee) == 1

        assert (await b.delete(f"/api/v1/hubs/{HUB_ID}/pairing")).status_code == 202

        async def closed_in_a() -> bool:
            return (await a.get(f"/api/v1/hubs/{HUB_ID}/pairing")).json()["open"] is False

        await eventually(closed_in_a, what="pairing closed as A reads it")


@in_module_loop
async def test_the_rate_limit_holds_across_both_processes(clouds: Clouds) -> None:
    # The limit counts in fixed minute windows: start early enough in one to stay in it.
    into_window = time.time() % 60
    if into_window > 50:
        await asyncio.sleep(60 - into_window + 0.1)
    async with clouds.apis("limited") as (a, b):
        answers = [await _command(api, clouds.bulb["id"], SWITCH_ON)
                   for api in (a, b, a, b, a)]
        assert [r.status_code for r in answers] == [200] * COMMANDS_PER_MINUTE, answers[-1].text
        for api in (b, a):  # the 6th and 7th, whichever process gets them
            refused = await _command(api, clouds.bulb["id"], SWITCH_ON)
            assert refused.status_code == 429, refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert (await b.get(f"/api/v1/devices/{clouds.bulb['id']}")).status_code == 200
    async with clouds.apis("another") as (a, _):  # the limit is per token
        assert (await _command(a, clouds.bulb["id"], SWITCH_ON)).status_code == 200


@in_module_loop
async def test_an_idempotency_key_holds_across_both_processes(clouds: Clouds) -> None:
    bulb = clouds.bulb
    async with clouds.apis("retries") as (a, b):
        ran = (await clouds.executions(bulb["ieee"])).get("on_off.on", 0)
        before = await asyncio.to_thread(clouds.command_rows)
        key = str(uuid.uuid4())
        first = await _command(a, bulb["id"], SWITCH_ON, key)
        again = await _command(b, bulb["id"], SWITCH_ON, key)
        assert (first.status_code, again.status_code) == (200, 200), again.text
        assert again.json()["id"] == first.json()["id"]
        assert await asyncio.to_thread(clouds.command_rows) == before + 1
        assert (await _command(b, bulb["id"], {"capability": "switch", "command": "off"}, key)
                ).status_code == 422  # the key names the first request, not another

        # The same key posted to both at the same moment: one command, sent once.
        key = str(uuid.uuid4())
        racing = await asyncio.gather(*(_command(api, bulb["id"], SWITCH_ON, key)
                                        for api in (a, b)))
        answered = [r for r in racing if r.status_code == 200]
        assert answered and all(r.status_code in (200, 409) for r in racing), racing
        assert len({r.json()["id"] for r in answered}) == 1
        assert await asyncio.to_thread(clouds.command_rows) == before + 2
        assert (await clouds.executions(bulb["ieee"])).get("on_off.on", 0) == ran + 2



@in_module_loop
async def test_live_streams_of_either_process_carry_every_event_stored_by_both(
        clouds: Clouds) -> None:
    """Each process stores only its share of the events; each one's streams carry them all."""
    from tests.test_dashboard_api import SseReader

    bulb = clouds.bulb
    _, token = await asyncio.to_thread(create_token, clouds.registry, "live", scopes=["control"])
    headers = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        readers = []
        for url in clouds.urls:
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30,
                                                                     headers=headers))
            response = await stack.enter_async_context(http.stream("GET", "/api/v1/stream"))
            assert response.status_code == 200
            reader = SseReader(response)
            assert (await reader.next())[0] == "hello"
            readers.append(reader)
        a, b = [await stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=20,
                                                                  headers=headers))
                for u in clouds.urls]
        # From its hello on, a stream follows every hub's events: toggle the bulb through both.
        turns = ["toggle"] * 4  # each changes the state: an event each; within the rate limit
        for api, turn in zip((a, b) * 2, turns, strict=True):
            response = await _command(api, bulb["id"], {"capability": "switch", "command": turn})
            assert response.status_code == 200, response.text

        def switch_seqs(reader: SseReader) -> set[int]:
            return {d["seq"] for k, d in reader.messages
                    if k == "event" and d["device_id"] == bulb["id"] and d["capability"] == "switch"}

        for reader in readers:
            await reader.until(lambda k, d, r=reader: len(switch_seqs(r)) >= len(turns), within=20)
        first, second = (switch_seqs(r) for r in readers)
        for reader, wanted in ((readers[0], second), (readers[1], first)):
            await reader.until(lambda k, d, r=reader, w=wanted: w <= switch_seqs(r), within=20)
        ingest = [(await api.get("/healthz")).json()["ingest"]["stored"] for api in (a, b)]
    assert all(stored > 0 for stored in ingest), ingest  # both stored a share
