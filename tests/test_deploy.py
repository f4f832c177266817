"""The deployment files in deploy/: the Compose file validated by docker-compose, Prometheus's
configuration by promtool, the systemd units by systemd-analyze (each skipped where its tool is not
installed; CI installs them), the set-up script run for real (secrets handed to the right users; the
broker's first files let the cloud log in to a real Mosquitto over TLS), and the secrets kept out
of the Compose file and the image."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bench.rig import MOSQUITTO, dynsec_plugin, free_port, render_mosquitto_conf, wait_port
from bench.tls import Pki
from tests.common import MqttRefused, MqttTestClient
from tests.conftest import BrokerAddress

DEPLOY = Path(__file__).parents[1] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SETUP = DEPLOY / "compose-setup.sh"
WORKERS = ("cloud-a", "cloud-b")
# The users the images run as (deploy/compose-setup.sh).
SPOKE_UID, POSTGRES_UID, INFLUXDB_UID, PROMETHEUS_UID, MOSQUITTO_UID = 10001, 999, 1000, 65534, 1883


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_the_compose_file_is_valid() -> None:
    docker_compose = _tool("docker-compose")
    result = subprocess.run([docker_compose, "-f", str(COMPOSE), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_files_it_mounts_exist_and_hold_no_secret(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and key != "SPOKE_MQTT_SHARED_GROUP":
                # Only where a secret is, never the secret itself.
                assert key.endswith("_FILE") and str(value).startswith("/secrets/"), (name, key)
        url = (service.get("environment") or {}).get("SPOKE_DATABASE_URL")
        if url is not None:  # its password comes from PGPASSFILE
            assert make_url(url).password is None, f"{name}: a password in the database URL"


def test_the_workers_share_the_events_and_prometheus_scrapes_each(compose: dict[str, Any]) -> None:
    envs = [compose["services"][w]["environment"] for w in WORKERS]
    assert len({e["SPOKE_MQTT_CLIENT_ID"] for e in envs}) == len(WORKERS)  # own sessions
    assert {e["SPOKE_MQTT_SHARED_GROUP"] for e in envs} == {"spoke-cloud"}
    assert {e["SPOKE_DATABASE_URL"] for e in envs} == {
        compose["services"]["setup-broker"]["environment"]["SPOKE_DATABASE_URL"]}
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "spoke-cloud"]
    assert job["static_configs"][0]["targets"] == [f"{w}:{e['SPOKE_CLOUD_PORT']}"
                                                   for w, e in zip(WORKERS, envs, strict=True)]
    # Prometheus's copy of the token the workers check (both made from one by the set-up).
    assert job["authorization"]["credentials_file"] == "/secrets/prometheus/metrics-token"
    assert {e["SPOKE_METRICS_TOKEN_FILE"] for e in envs} == {"/secrets/spoke/metrics-token"}
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert all(f"{w}:{e['SPOKE_CLOUD_PORT']}" in caddy for w, e in zip(WORKERS, envs, strict=True))


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    token = tmp_path / "metrics-token"
    token.write_text("x" * 43)
    config = tmp_path / "prometheus.yml"  # promtool checks the token file exists: point it here
    config.write_text((DEPLOY / "prometheus.yml").read_text()
                      .replace("/secrets/prometheus/metrics-token", str(token)))
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["spoke-cloud@.service", "spoke-hub.service"])
def test_systemd_units_are_valid(unit: str, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    # The unit as installed, with this machine's spoke (verify checks that ExecStart runs).
    text = (DEPLOY / unit).read_text().replace("/opt/spoke/.venv/bin/spoke",
                                                str(Path(sys.executable).with_name("spoke")))
    path = tmp_path / unit.replace("@.", "@8001.")
    path.write_text(text)
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                            timeout=60)
    complaints = [line for line in result.stderr.splitlines() if path.name in line]
    assert result.returncode == 0 and not complaints, result.stderr


def _settings(conf: Path) -> set[str]:
    return {line.strip() for line in conf.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def test_the_compose_broker_is_configured_as_the_shipped_one() -> None:
    """Only the paths, the plain listener's address and the log destination differ."""
    local = {"plugin", "plugin_opt_config_file", "listener", "cafile", "certfile", "keyfile",
             "persistence_location", "log_dest"}
    shipped, compose = (_settings(DEPLOY / f) for f in ("mosquitto.conf", "compose-mosquitto.conf"))
    assert {s for s in shipped if s.split()[0] not in local} == \
        {s for s in compose if s.split()[0] not in local}
    assert {s.split()[0] for s in shipped} == {s.split()[0] for s in compose} - {"log_dest"}


def test_the_image_leaves_secrets_and_local_state_out() -> None:
    ignored = set((DEPLOY / "Dockerfile.dockerignore").read_text().split())
    assert {"**/.spoke", "**/.env", "**/*.db", "deploy/certs"} <= ignored
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "[postgres]" in dockerfile
    assert re.search(r"^USER spoke$", dockerfile, re.M)


def test_the_entrypoint_reads_settings_given_as_files(tmp_path: Path) -> None:
    token = tmp_path / "influx-token"
    token.write_text("s3cret-token\n")
    env = {"PATH": os.environ["PATH"], "SPOKE_INFLUX_TOKEN_FILE": str(token)}
    out = subprocess.run(["sh", str(DEPLOY / "docker-entrypoint.sh"), "env"], env=env,
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert "SPOKE_INFLUX_TOKEN=s3cret-token\n" in out
    assert "SPOKE_INFLUX_TOKEN_FILE" not in out


def _owner_mode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, stat.S_IMODE(st.st_mode)


def _setup(step: str, env: dict[str, str]) -> None:
    result = subprocess.run(["sh", str(SETUP), step], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the set-up hands files to other users (root only)")
def test_the_setup_hands_each_secret_to_its_user_and_makes_the_brokers_first_files(
        tmp_path: Path, pki: Pki) -> None:
    secrets, broker, certs = tmp_path / "secrets", tmp_path / "mosquitto", tmp_path / "certs"
    certs.mkdir()
    for source, name in ((pki.ca, "ca.crt"), (pki.cert, "server.crt"), (pki.key, "server.key")):
        shutil.copy(source, certs / name)
    (broker / "data").mkdir(parents=True)
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "SPOKE_SETUP_SECRETS": str(secrets), "SPOKE_SETUP_MOSQUITTO": str(broker),
           "SPOKE_SETUP_CERTS": str(certs), "SPOKE_CONFIG": str(tmp_path / "none.toml"),
           "SPOKE_DATABASE_URL": f"sqlite:///{tmp_path / 'cloud.db'}",
           "SPOKE_BROKER_SECRET_FILE": str(secrets / "spoke" / "broker-secret")}
    _setup("secrets", env)
    expected = {"postgres/password": POSTGRES_UID, "influxdb/password": INFLUXDB_UID,
                "influxdb/token": INFLUXDB_UID, "prometheus/metrics-token": PROMETHEUS_UID,
                "spoke/metrics-token": SPOKE_UID, "spoke/influx-token": SPOKE_UID,
                "spoke/pgpass": SPOKE_UID}
    for name, uid in expected.items():
        assert _owner_mode(secrets / name) == (uid, 0o600), name
        assert _owner_mode((secrets / name).parent) == (uid, 0o700), name
    values = {name: (secrets / name).read_text() for name in expected}
    assert values["spoke/metrics-token"] == values["prometheus/metrics-token"]
    assert values["spoke/pgpass"] == f"postgres:5432:spoke:spoke:{values['postgres/password']}"
    assert len(values["postgres/password"].strip()) >= 32
    _setup("secrets", env)  # every start: what exists is kept
    assert values == {name: (secrets / name).read_text() for name in expected}

    _setup("broker", env)
    dynsec = broker / "data" / "dynamic-security.json"
    assert _owner_mode(dynsec) == (MOSQUITTO_UID, 0o600)
    assert _owner_mode(secrets / "spoke" / "broker-secret") == (SPOKE_UID, 0o600)
    copied = Pki(ca=broker / "certs" / "ca.crt", cert=broker / "certs" / "server.crt",
                 key=broker / "certs" / "server.key", client_cert=pki.client_cert,
                 client_key=pki.client_key)
    assert _owner_mode(copied.key) == (MOSQUITTO_UID, 0o400)
    first = dynsec.read_text()
    _setup("broker", env)
    assert dynsec.read_text() == first

    # Mosquitto with those files takes the cloud's login over TLS, and no other.
    if not Path(MOSQUITTO).exists():
        return
    dynsec_plugin()
    port, tls_port = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(render_mosquitto_conf(port, tmp_path / "run", dynsec_file=dynsec,
                                          tls_port=tls_port, pki=copied))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(tls_port)
        address = BrokerAddress("mosquitto", "127.0.0.1", tls_port,
                                secrets / "spoke" / "broker-secret")
        tls = ssl.create_default_context(cafile=str(pki.ca))
        MqttTestClient.as_cloud(address, "spoke-cloud-setup", tls=tls).close()
        with pytest.raises(MqttRefused):
            MqttTestClient(address.host, tls_port, "intruder", username="spoke-cloud",
                           password="not-the-password", tls=tls)
    finally:
        proc.terminate()
        proc.wait(10)
