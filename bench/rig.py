"""Real processes for fault tests and the fault benchmark: Mosquitto with the shipped configuration,
`spoke cloud run` workers and a `spoke hub run` with simulated load generators, each its own OS
process that can be stopped, SIGKILLed and restarted; plus the accounting that compares what the
hub emitted with what the cloud stored."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.tls import Pki, make_pki
from cloud.broker_accounts import HubAccount, write_dynsec_config
from cloud.broker_credentials import ensure_broker_secret, hub_password

SPOKE = str(Path(sys.executable).with_name("spoke"))
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
REPO = Path(__file__).parents[1]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago and that this process has not handed out
    before (the kernel may offer the same one twice before anyone binds it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Service:
    """One OS process with its own log; restartable with the same command and environment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts + 1} at {time.time():.3f}\n".encode())
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== did not stop within {timeout:.0f} s; its stacks:\n".encode())
            self.proc.send_signal(signal.SIGUSR1)  # a spoke process prints its stacks
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — what a power cut or the OOM killer does."""
        self.stop(signal.SIGKILL, 10)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def dynsec_plugin() -> Path:
    """Where this machine's Mosquitto keeps its dynamic-security plugin."""
    for pattern in ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                    "/usr/local/lib/mosquitto_dynamic_security.so"):
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return found[0]
    raise FileNotFoundError("Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so)")


def render_mosquitto_conf(port: int, data_dir: Path, *, dynsec_file: Path, tls_port: int,
                          pki: Pki) -> str:
    """The mosquitto.conf Spoke ships, with this run's ports, persistence folder, dynamic-security
    file and certificates."""
    data_dir.mkdir(parents=True, exist_ok=True)
    replace = {
        "listener 1883": f"listener {port} 127.0.0.1",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "persistence_location ": f"persistence_location {data_dir}/",
        "plugin ": f"plugin {dynsec_plugin()}",
        "plugin_opt_config_file ": f"plugin_opt_config_file {dynsec_file}",
        "cafile ": f"cafile {pki.ca}",
        "certfile ": f"certfile {pki.cert}",
        "keyfile ": f"keyfile {pki.key}",
    }
    out = []
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        for start, rendered in replace.items():
            if line.startswith(start):
                line = rendered
                break
        out.append(line)
    if os.geteuid() == 0:
        # As root, mosquitto drops to user "mosquitto", which cannot write a test's private
        # folder: its persistence would silently fail on shutdown.
        out.append("user root")
    return "\n".join(out) + "\n"


@dataclass
class Rig:
    """Broker + cloud worker(s) + hub as separate processes, on loopback."""

    workdir: Path
    workers: int = 1
    loadgens: int = 2
    devices: tuple[str, ...] = ("bulb",)  # the hub's virtual devices beside the load generators
    tick: float = 0.05  # seconds between load generator steps (one event per step per device)
    command_ttl: float = 30.0
    command_timeout: float = 5.0  # how long a REST command call waits for the hub's result
    broker_kind: str = "mosquitto"  # or "amqtt" (the embedded broker, as a process)
    resend_after: float = 3.0  # the hub's ledger_resend_after
    hub_id: str = "fault-hub"
    env: dict[str, str] = field(default_factory=dict)  # for every spoke process (SPOKE_LOG_FORMAT)
    database: str | None = None  # the cloud's database URL; None: a SQLite file in workdir
    mqtt_port: int = field(default_factory=free_port)
    mqtt_tls_port: int = field(default_factory=free_port)
    api_ports: list[int] = field(default_factory=list)
    broker: Service | None = None
    clouds: list[Service] = field(default_factory=list)
    hub: Service | None = None
    token: str = ""
    past_epochs: dict[str, int] = field(default_factory=dict)  # hub stores replaced: epoch -> last

    # ------------------------------------------------------------------ set-up
    @property
    def cloud_db(self) -> Path:
        return self.workdir / "cloud.db"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.cloud_db}"

    @property
    def hub_dir(self) -> Path:
        return self.workdir / "hub"

    @property
    def broker_secret(self) -> Path:
        return self.workdir / "broker-secret"

    def start(self, *, hub: bool = True) -> None:
        """Broker, cloud worker(s) and, unless ``hub`` is False, the hub with its load."""
        dynsec = self.workdir / "broker-dynsec.json"  # as `spoke cloud broker init` writes it
        write_dynsec_config(dynsec, ensure_broker_secret(self.broker_secret), [])
        if self.broker_kind == "amqtt":
            self.broker = Service("amqtt", [SPOKE, "broker", "--port", str(self.mqtt_port),
                                            "--dynsec", str(dynsec)],
                                  self._env(SPOKE_BROKER_SECRET_FILE=str(self.broker_secret)),
                                  self.workdir / "amqtt.log")
        else:
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(render_mosquitto_conf(
                self.mqtt_port, self.workdir / "mosquitto-data", dynsec_file=dynsec,
                tls_port=self.mqtt_tls_port, pki=make_pki(self.workdir / "pki")))
            self.broker = Service("mosquitto", [MOSQUITTO, "-c", str(conf)], dict(os.environ),
                                  self.workdir / "mosquitto.log")
        self.start_broker()
        self.token = self._make_token()
        login = self._register_hub() if hub else None
        for i in range(self.workers):
            port = free_port()
            self.api_ports.append(port)
            env = self._env(SPOKE_DATABASE_URL=self.database_url,
                            SPOKE_BROKER_SECRET_FILE=str(self.broker_secret),
                            SPOKE_METRICS_TOKEN_FILE=str(self.workdir / "metrics-token"),
                            SPOKE_CLOUD_PORT=str(port),
                            SPOKE_MQTT_PROTOCOL="3.1.1" if self.broker_kind == "amqtt" else "5",
                            SPOKE_MQTT_CLIENT_ID=f"spoke-cloud-{i}",
                            SPOKE_MQTT_SESSION_EXPIRY="3600",
                            SPOKE_COMMAND_TIMEOUT=str(self.command_timeout),
                            SPOKE_COMMAND_TTL=str(self.command_ttl),
                            # the rig polls and commands as fast as it measures, not as an app does
                            SPOKE_RATE_LIMIT_READS="off", SPOKE_RATE_LIMIT_COMMANDS="off")
            if self.workers > 1:
                env["SPOKE_MQTT_SHARED_GROUP"] = "spoke-ingest"
            self.clouds.append(Service(f"cloud-{i}", [SPOKE, "cloud", "run"], env,
                                       self.workdir / f"cloud-{i}.log"))
        for i in range(self.workers):
            self.start_cloud(i)
        if login is not None:
            self._start_hub(*login)

    def _start_hub(self, username: str, password: str) -> None:
        devices = ",".join(["loadgen"] * self.loadgens + list(self.devices))
        self.hub = Service("hub", [SPOKE, "hub", "run", "--radio", "sim"], self._env(
            SPOKE_HUB_ID=self.hub_id, SPOKE_HUB_DATA_DIR=str(self.hub_dir),
            SPOKE_SIM_DEVICES=devices, SPOKE_SIM_SPEED=str(5.0 / self.tick),
            SPOKE_SIM_TICK=str(self.tick), SPOKE_DEVICE_INFO_DEBOUNCE="1",
            SPOKE_LEDGER_RESEND_AFTER=str(self.resend_after),
            SPOKE_STATE_REFRESH_ON_START="false", SPOKE_MQTT_USERNAME=username,
            SPOKE_MQTT_PASSWORD=password), self.workdir / "hub.log")
        self.hub.start()

    def _env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
        env.update(SPOKE_MQTT_HOST="127.0.0.1", SPOKE_MQTT_PORT=str(self.mqtt_port),
                   SPOKE_CONFIG=str(self.workdir / "none.toml"), COLUMNS="200",
                   **{**self.env, **values})
        return env

    def _make_token(self) -> str:
        from cloud.auth import create_token
        from cloud.settings import CloudSettings
        from cloud.storage import open_registry

        with open_registry(CloudSettings(database_url=self.database_url)) as registry:
            return create_token(registry, "faults")[1]

    def _register_hub(self) -> tuple[str, str]:
        """The hub's login, registered as `spoke cloud hub register` does (the broker is up)."""
        from cloud.hub_registration import register_hub
        from cloud.settings import CloudSettings
        from cloud.storage import open_registry

        settings = CloudSettings(database_url=self.database_url, mqtt_host="127.0.0.1",
                                 mqtt_port=self.mqtt_port, broker_secret_file=self.broker_secret)
        with open_registry(settings) as registry:
            credentials = register_hub(settings, registry, self.hub_id)
        return credentials.username, credentials.password

    def start_broker(self) -> None:
        assert self.broker is not None
        self.broker.start()
        wait_port(self.mqtt_port)

    def start_cloud(self, i: int = 0) -> None:
        self.clouds[i].start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api(i)}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"cloud-{i} did not become ready\n{self.clouds[i].tail()}")

    def stop(self) -> None:
        for service in [self.hub, *self.clouds, self.broker]:
            if service is not None:
                service.stop()

    def api(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.api_ports[i]}"

    def http(self, i: int = 0) -> httpx.Client:
        return httpx.Client(base_url=self.api(i), timeout=20,
                            headers={"Authorization": f"Bearer {self.token}"})

    # ------------------------------------------------------------------ hub control channel
    def control(self, op: str, **fields: Any) -> dict[str, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(10)
            sock.connect(str(self.hub_dir / "control.sock"))
            sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        answer = json.loads(data)
        if not answer.get("ok"):
            raise RuntimeError(f"hub control {op}: {answer.get('error')}")
        return answer  # type: ignore[no-any-return]

    def wait_hub_answers(self, timeout: float = 60.0) -> None:
        """Until the hub's control channel answers (radio up, devices loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self.control("status")
                return
            time.sleep(0.1)
        raise TimeoutError(f"hub did not come back\n{self.hub.tail() if self.hub else ''}")

    def wait_hub_ready(self, devices: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.http() as api:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    found = api.get("/api/v1/devices").json()
                    if len(found) >= devices and all(d["capabilities"] for d in found):
                        return found  # type: ignore[no-any-return]
                time.sleep(0.2)
        raise TimeoutError(f"devices did not reach the cloud\n{self.hub.tail() if self.hub else ''}")

    # ------------------------------------------------------------------ accounting
    def ledger(self) -> tuple[str, int]:
        """The hub's current ledger: (epoch, last sequence number it assigned)."""
        db = self.hub_dir / "outbox.db"
        if not db.exists():
            return "", 0
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
            epoch = c.execute("SELECT epoch FROM ledger WHERE id = 1").fetchone()
            row = c.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
            return (epoch[0] if epoch else ""), (int(row[0]) if row else 0)

    def emitted(self) -> dict[str, int]:
        """Every event the hub ever emitted, per epoch: seqs 1..last of each."""
        epoch, last = self.ledger()
        return {**self.past_epochs, **({epoch: last} if last else {})}

    def replace_hub_store(self) -> None:
        """The hub's store is lost (a new SD card): remember its ledger, then delete the files."""
        epoch, last = self.ledger()
        self.past_epochs[epoch] = last
        for suffix in ("", "-wal", "-shm"):
            (self.hub_dir / f"outbox.db{suffix}").unlink(missing_ok=True)

    def outbox_pending(self) -> int:
        db = self.hub_dir / "outbox.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
            return int(c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def stored(self) -> tuple[int, set[tuple[str, int]]]:
        """(rows, the distinct (epoch, seq)) stored by the cloud for the hub."""
        with contextlib.closing(sqlite3.connect(f"file:{self.cloud_db}?mode=ro", uri=True,
                                                timeout=5)) as c:
            keys = [(r[0], r[1]) for r in c.execute(
                "SELECT epoch, seq FROM events WHERE hub_id = ?", (self.hub_id,))]
        return len(keys), set(keys)

    def missing(self, emitted: dict[str, int]) -> int:
        _, keys = self.stored()
        return sum(1 for epoch, last in emitted.items() for seq in range(1, last + 1)
                   if (epoch, seq) not in keys)

    def wait_caught_up(self, target: dict[str, int], timeout: float) -> float:
        """Seconds until the cloud has stored every event of ``target`` (epoch -> last seq)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.missing(target):
                return time.monotonic() - start
            time.sleep(0.1)
        raise TimeoutError(f"cloud did not catch up to {target} in {timeout:.0f} s "
                           f"({self.missing(target)} missing)")

    def quiesce(self, timeout: float = 60.0) -> None:
        """Stop the load, then wait until the outbox is empty and the cloud has every event."""
        self.control("sim_pause")
        time.sleep(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.outbox_pending():
            time.sleep(0.1)
        self.wait_caught_up(self.emitted(), max(1.0, deadline - time.monotonic()))

    def report(self) -> dict[str, int]:
        emitted = self.emitted()
        rows, keys = self.stored()
        return {"emitted": sum(emitted.values()), "stored": len(keys),
                "lost": self.missing(emitted), "duplicates": rows - len(keys),
                "epochs": len(emitted)}


@dataclass
class CommandLog:
    """Commands sent during a scenario and how each ended."""

    sent: list[str] = field(default_factory=list)
    refused: int = 0  # nothing was sent: the API was down, or the hub known offline (409)

    def send(self, rig: Rig, device_id: str, worker: int = 0) -> None:
        try:
            with rig.http(worker) as api:
                r = api.post(f"/api/v1/devices/{device_id}/commands",
                             json={"capability": "switch", "command": "toggle"})
        except httpx.HTTPError:
            self.refused += 1
            return
        if r.status_code in (200, 502, 504):
            self.sent.append(r.json()["id"])
        else:
            self.refused += 1

    def outcomes(self, rig: Rig) -> dict[str, int]:
        counts: dict[str, int] = {}
        with rig.http() as api:
            for command_id in self.sent:
                status = api.get(f"/api/v1/commands/{command_id}").json()["status"]
                counts[status] = counts.get(status, 0) + 1
        return counts


def executions(rig: Rig, ieee: str, command: str = "on_off.toggle") -> int:
    """How many times the virtual device really carried the command out (from the devices' own
    log, which survives a SIGKILLed hub)."""
    path = rig.hub_dir / "sim-executions.log"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line == f"{ieee} {command}")


def hub_accounts_broker(workdir: Path, port: int, hub_ids: list[str]
                        ) -> tuple[bytes, dict[str, str], Service]:
    """Mosquitto with the shipped configuration whose dynamic security holds an account
    (generation 1) for each hub, as `spoke cloud broker init` writes them for registered hubs.
    Returns the broker secret, each hub's password and the started broker."""
    secret = ensure_broker_secret(workdir / "broker-secret")
    passwords = {h: hub_password(secret, h, 1) for h in hub_ids}
    dynsec = workdir / "broker-dynsec.json"
    write_dynsec_config(dynsec, secret, [HubAccount(h, 1) for h in hub_ids])
    conf = workdir / "mosquitto.conf"
    conf.write_text(render_mosquitto_conf(port, workdir / "mosquitto-data", dynsec_file=dynsec,
                                          tls_port=free_port(), pki=make_pki(workdir / "pki")))
    broker = Service("mosquitto", [MOSQUITTO, "-c", str(conf)], dict(os.environ),
                     workdir / "mosquitto.log")
    broker.start()
    return secret, passwords, broker
