"""`spoke cloud hub register|revoke|list` and `spoke cloud broker init|sync` as an operator runs them,
against the shipped Mosquitto: settings a hub can use, secrets in 0600 files and never in the log,
one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.common import MqttRefused, MqttTestClient
from tests.conftest import BrokerAddress, _free_port
from wire.contract import hub_client_id

SPOKE = str(Path(sys.executable).with_name("spoke"))


def _spoke(tmp_path: Path, broker: BrokerAddress, *args: str, port: int | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    env.update(SPOKE_DATABASE_URL=f"sqlite:///{tmp_path / 'cloud.db'}", SPOKE_MQTT_HOST=broker.host,
               SPOKE_MQTT_PORT=str(port or broker.port), SPOKE_CONFIG=str(tmp_path / "none.toml"),
               SPOKE_BROKER_SECRET_FILE=str(broker.secret_file), COLUMNS="200")
    return subprocess.run([SPOKE, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def _settings(snippet: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in snippet.splitlines()
                if line and not line.startswith("#"))


def _logs_in(broker: BrokerAddress, values: dict[str, str]) -> bool:
    try:
        MqttTestClient(broker.host, broker.port, hub_client_id(values["SPOKE_HUB_ID"]),
                       username=values["SPOKE_MQTT_USERNAME"],
                       password=values["SPOKE_MQTT_PASSWORD"]).close()
    except MqttRefused:
        return False
    return True


def test_register_rotate_list_and_revoke_a_hub(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    out = tmp_path / "hub.env"
    assert _spoke(tmp_path, mosquitto, "cloud", "account", "create", "acme").returncode == 0
    first = _spoke(tmp_path, mosquitto, "cloud", "hub", "register", "hub-cli", "--account", "acme",
                   "--out", str(out), "--mqtt-host", "broker.example.com")
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    values = _settings(out.read_text())
    assert values["SPOKE_HUB_ID"] == "hub-cli"
    assert values["SPOKE_MQTT_HOST"] == "broker.example.com"
    assert values["SPOKE_MQTT_PORT"] == str(mosquitto.port)
    assert values["SPOKE_MQTT_USERNAME"] == hub_client_id("hub-cli")
    assert _logs_in(mosquitto, {**values, "SPOKE_MQTT_HOST": mosquitto.host})
    assert values["SPOKE_MQTT_PASSWORD"] not in first.stdout + first.stderr

    again = _spoke(tmp_path, mosquitto, "cloud", "hub", "register", "hub-cli")
    assert again.returncode == 0, again.stderr
    assert "rotated (generation 2)" in again.stderr
    rotated = _settings(again.stdout)
    assert rotated["SPOKE_MQTT_PASSWORD"] != values["SPOKE_MQTT_PASSWORD"]
    assert rotated["SPOKE_MQTT_PASSWORD"] not in again.stderr
    assert not _logs_in(mosquitto, values)
    assert _logs_in(mosquitto, rotated)

    listing = _spoke(tmp_path, mosquitto, "cloud", "hub", "list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "hub-cli" in line)
    assert "acme" in row and " 2 " in row and "active" in row

    revoked = _spoke(tmp_path, mosquitto, "cloud", "hub", "revoke", "hub-cli")
    assert revoked.returncode == 0, revoked.stderr
    assert not _logs_in(mosquitto, rotated)
    assert "revoked" in _spoke(tmp_path, mosquitto, "cloud", "hub", "list").stdout


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path: Path,
                                                   mosquitto: BrokerAddress) -> None:
    for args, port, expected in (
        (("cloud", "hub", "register", "bad id!"), None, "invalid hub id 'bad id!'"),
        (("cloud", "hub", "revoke", "nobody"), None, "no hub 'nobody' is registered"),
        (("cloud", "hub", "register", "hub-x"), _free_port(), "cannot reach the MQTT broker"),
    ):
        result = _spoke(tmp_path, mosquitto, *args, port=port)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_broker_init_writes_the_first_dynamic_security_file(tmp_path: Path,
                                                            mosquitto: BrokerAddress) -> None:
    for hub_id in ("hub-1", "hub-2"):
        assert _spoke(tmp_path, mosquitto, "cloud", "hub", "register", hub_id).returncode == 0
    assert _spoke(tmp_path, mosquitto, "cloud", "hub", "revoke", "hub-2").returncode == 0
    path = tmp_path / "dynamic-security.json"
    result = _spoke(tmp_path, mosquitto, "cloud", "broker", "init", "--mosquitto-dynsec",
                    str(path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(mosquitto.secret_file.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    assert config["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                          "subscribe": False, "unsubscribe": False}
    clients = {c["username"]: c for c in config["clients"]}
    assert set(clients) == {"spoke-cloud", hub_client_id("hub-1")}  # the revoked hub is left out
    assert clients[hub_client_id("hub-1")]["clientid"] == hub_client_id("hub-1")
    assert {"password", "salt", "iterations"} <= set(clients["spoke-cloud"])
    refused = _spoke(tmp_path, mosquitto, "cloud", "broker", "init", "--mosquitto-dynsec",
                     str(path))
    assert refused.returncode == 1 and "--force" in refused.stderr

    synced = _spoke(tmp_path, mosquitto, "cloud", "broker", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "up to date" in synced.stdout


def test_accounts_and_scoped_tokens_from_the_cli(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    missing = _spoke(tmp_path, mosquitto, "cloud", "token", "create", "app", "--account", "acme")
    assert missing.returncode == 1 and "no account 'acme'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert _spoke(tmp_path, mosquitto, "cloud", "account", "create", "acme").returncode == 0
    again = _spoke(tmp_path, mosquitto, "cloud", "account", "create", "acme")
    assert again.returncode == 1 and "exists already" in again.stderr
    made = _spoke(tmp_path, mosquitto, "cloud", "token", "create", "phone", "--account", "acme",
                  "--scope", "control", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    assert "account acme, scope control, expires" in made.stdout
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("spk_")
    bad = _spoke(tmp_path, mosquitto, "cloud", "token", "create", "x", "--expires", "soon")
    assert bad.returncode == 1 and "invalid duration" in bad.stderr
    bad = _spoke(tmp_path, mosquitto, "cloud", "token", "create", "x", "--scope", "root")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    listed = _spoke(tmp_path, mosquitto, "cloud", "token", "list", "--account", "acme")
    assert "phone" in listed.stdout and "control" in listed.stdout and token not in listed.stdout
    token_id = made.stdout.split("token id ", 1)[1].split()[0]
    assert _spoke(tmp_path, mosquitto, "cloud", "token", "revoke", token_id).returncode == 0
    assert "revoked" in _spoke(tmp_path, mosquitto, "cloud", "token", "list").stdout
    gone = _spoke(tmp_path, mosquitto, "cloud", "token", "revoke", token_id)
    assert gone.returncode == 1 and "no active token" in gone.stderr
    assert "acme" in _spoke(tmp_path, mosquitto, "cloud", "account", "list").stdout
