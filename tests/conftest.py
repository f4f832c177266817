"""Shared fixtures: free ports, real MQTT brokers (mosquitto subprocess, embedded amqtt), each
enforcing Spoke's broker rules (it starts with the cloud's account only, as `spoke cloud broker
init` makes it, and tests register their hubs through the cloud as `spoke cloud hub register`
does), the SQL registry, and a simulated Zigbee network with zigpy on its radio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from bench import rig
from bench.rig import dynsec_plugin, render_mosquitto_conf
from bench.tls import Pki, make_pki
from cloud.broker_accounts import write_dynsec_config
from cloud.broker_credentials import ensure_broker_secret
from cloud.storage.sql import SqlRegistry
from tests.sim_devices import SimZigbee, running_sim
from tests.victoria import VICTORIA_METRICS, VictoriaMetrics

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class BrokerAddress:
    name: str  # "mosquitto" | "amqtt"
    host: str
    port: int
    secret_file: Path  # the cloud's broker secret: the broker holds the cloud's account for it
    tls_port: int | None = None  # mosquitto: the TLS listener, with a certificate signed by pki.ca
    pki: Pki | None = None


def _free_port() -> int:
    return rig.free_port()


def _wait_listening(
    port: int, timeout: float = 10.0, alive: Callable[[], bool] = lambda: True
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def missing(service: str, reason: str) -> NoReturn:
    """Skip a test whose service is not here, or fail it when SPOKE_TEST_REQUIRE (a comma list,
    as CI sets it) names the service."""
    required = {name.strip() for name in os.environ.get("SPOKE_TEST_REQUIRE", "").split(",")}
    if service in required:
        pytest.fail(f"{reason}, and SPOKE_TEST_REQUIRE names {service}")
    pytest.skip(reason)


POSTGRES_URL = os.environ.get("SPOKE_TEST_POSTGRES_URL")
# Services whose tests must run, not skip (CI sets "postgresql"): a comma list.
REQUIRED = {name.strip() for name in os.environ.get("SPOKE_TEST_REQUIRE", "").split(",")
            if name.strip()}


def skip_unless_required(service: str, reason: str) -> NoReturn:
    """Skip a test for want of ``service``, or fail it when SPOKE_TEST_REQUIRE names the service."""
    if service in REQUIRED:
        pytest.fail(f"{reason} (SPOKE_TEST_REQUIRE names {service}, so this test may not skip)",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    """The PostgreSQL server of SPOKE_TEST_POSTGRES_URL (a role that may create databases), in
    autocommit for creating and dropping the tests' databases."""
    if not POSTGRES_URL:
        skip_unless_required("postgresql", "set SPOKE_TEST_POSTGRES_URL to run this test on "
                             "PostgreSQL (.ci/postgres.sh starts a throwaway server)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_unless_required("postgresql", "psycopg is not installed (pip install -e '.[dev]')")
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    yield engine
    engine.dispose()


def create_database(server: Engine, template: str) -> str:
    name = f"spoke_test_{os.getpid()}_{secrets.token_hex(4)}"
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return name


def drop_database(server: Engine, name: str) -> None:
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_at_head(postgres_server: Engine) -> Iterator[str]:
    """A database migrated to head once, the template of the tests' databases."""
    name = create_database(postgres_server, "template0")
    SqlRegistry.from_url(postgres_server.url.set(database=name).render_as_string(False)).close()
    yield name
    drop_database(postgres_server, name)


@pytest.fixture
def postgres_database(postgres_server: Engine, postgres_at_head: str
                      ) -> Iterator[Callable[..., str]]:
    """``new(empty=False)``: the URL of a new PostgreSQL database, at head (a copy of a migrated
    template, tens of milliseconds) or empty; each is dropped after the test."""
    names: list[str] = []

    def new(*, empty: bool = False) -> str:
        names.append(create_database(postgres_server,
                                      "template0" if empty else postgres_at_head))
        return postgres_server.url.set(database=names[-1]).render_as_string(hide_password=False)

    yield new
    for name in names:
        drop_database(postgres_server, name)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The cloud's database URL: SQLite in the test's folder, or a new PostgreSQL database for a
    test parametrized with ``database="postgresql"`` (see ``tests.common.ON_POSTGRESQL_TOO``)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgres_database")()  # type: ignore[no-any-return]
    return f"sqlite:///{tmp_path / 'cloud.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRegistry]:
    """The SQL registry on SQLite, and on a new PostgreSQL database."""
    if request.param == "sqlite":
        reg = SqlRegistry.from_url(f"sqlite:///{tmp_path / 'db' / 'cloud.db'}")
    else:
        reg = SqlRegistry.from_url(request.getfixturevalue("postgres_database")())
    yield reg
    reg.close()


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port that was free a moment ago."""
    return _free_port


def broker_files(folder: Path) -> tuple[Path, Path]:
    """(secret file, dynamic-security file) for a new broker holding the cloud's account only."""
    secret_file = folder / "broker-secret"
    dynsec_file = folder / "broker-dynsec.json"
    write_dynsec_config(dynsec_file, ensure_broker_secret(secret_file), [])
    return secret_file, dynsec_file


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a broker certificate (localhost, 127.0.0.1) and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def running_mosquitto(folder: Path, pki: Pki) -> Iterator[BrokerAddress]:
    """A real mosquitto with the shipped config: free ports (plain and TLS), its files in
    ``folder``."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    try:
        dynsec_plugin()
    except FileNotFoundError:
        pytest.skip("Mosquitto's dynamic-security plugin is not installed")
    port, tls_port = _free_port(), _free_port()
    secret_file, dynsec_file = broker_files(folder / "broker")
    conf = folder / "mosquitto.conf"
    conf.write_text(render_mosquitto_conf(port, folder / "mosquitto-data",
                                          dynsec_file=dynsec_file, tls_port=tls_port, pki=pki))
    log = (folder / "mosquitto.log").open("w")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, alive=lambda: proc.poll() is None)
        _wait_listening(tls_port, alive=lambda: proc.poll() is None)
        yield BrokerAddress("mosquitto", "127.0.0.1", port, secret_file, tls_port, pki)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def mosquitto(tmp_path: Path, pki: Pki) -> Iterator[BrokerAddress]:
    """A real mosquitto with the shipped config: free ports (plain and TLS), its own files."""
    with running_mosquitto(tmp_path, pki) as broker:
        yield broker


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A real victoria-metrics taking InfluxDB writes, on a free port with its own storage folder
    (a test may stop and start it again: same folder, same port)."""
    if not Path(VICTORIA_METRICS).exists():
        missing("influxdb", "victoria-metrics is not installed (apt-get install victoria-metrics)")
    vm = VictoriaMetrics(tmp_path / "victoria-metrics", _free_port(),
                         tmp_path / "victoria-metrics.log")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[BrokerAddress]:
    """The embedded amqtt broker on a free port, in its own thread and event loop."""
    from cloud.broker import start_broker, stop_broker

    port = _free_port()
    secret_file, dynsec_file = broker_files(tmp_path / "broker")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    async def serve(stop: asyncio.Event) -> None:
        try:
            broker = await start_broker("127.0.0.1", port, dynsec_file=dynsec_file)
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        await stop.wait()
        await stop_broker(broker)

    stop_event = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(stop_event),),
                              name="amqtt-broker", daemon=True)
    thread.start()
    started.wait(10)
    if failure:
        raise failure[0]
    try:
        yield BrokerAddress("amqtt", "127.0.0.1", port, secret_file)
    finally:
        loop.call_soon_threadsafe(stop_event.set)
        thread.join(10)
        loop.close()


@pytest.fixture(params=["mosquitto", "amqtt"])
def mqtt_broker(request: pytest.FixtureRequest) -> BrokerAddress:
    """Each real broker in turn."""
    name = "amqtt_broker" if request.param == "amqtt" else "mosquitto"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
async def sim() -> AsyncIterator[SimZigbee]:
    """The simulator's network with zigpy on its radio; devices join it (tests/sim_devices.py)."""
    async with running_sim() as zigbee:
        yield zigbee
