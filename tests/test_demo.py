"""`spoke demo` as a user runs it: one process, free ports, devices served, clean stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _free_port

SPOKE = Path(sys.executable).with_name("spoke")


def _read(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=3) as response:
        return response.read()  # type: ignore[no-any-return]


def _get(url: str, token: str) -> object:
    return json.loads(_read(url, token))


TOKEN = "demo-token"  # chosen by hand and weak: the demo takes it as its own


def test_demo_serves_devices_and_stops_cleanly(tmp_path: Path) -> None:
    api, mqtt, metrics = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, SPOKE_CLOUD_PORT=str(api), SPOKE_MQTT_PORT=str(mqtt),
               SPOKE_METRICS_PORT=str(metrics), SPOKE_DEMO_TOKEN=TOKEN)
    log = (tmp_path / "demo.log").open("w+")
    proc = subprocess.Popen([str(SPOKE), "demo", "--data-dir", str(tmp_path / "demo")],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    devices: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = _get(f"http://127.0.0.1:{api}/api/v1/devices", TOKEN)
                devices = body if isinstance(body, list) else []
                if len(devices) == 5 and all(d["capabilities"] for d in devices):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert len(devices) == 5, _tail(log)
        health = _get(f"http://127.0.0.1:{api}/healthz", "")
        assert b"<title>Spoke</title>" in _read(f"http://127.0.0.1:{api}/", "")  # the dashboard
        assert isinstance(health, dict) and health["status"] == "ok"
        # The hub's metrics, for whoever holds the token in the hub's data folder.
        metrics_token = (tmp_path / "demo" / "hub" / "metrics-token").read_text().strip()
        with pytest.raises(urllib.error.HTTPError) as refused:
            _read(f"http://127.0.0.1:{metrics}/metrics", TOKEN)
        assert refused.value.code == 401
        scraped = _read(f"http://127.0.0.1:{metrics}/metrics", metrics_token).decode()
        assert 'spoke_hub_devices{availability="available"} 5.0' in scraped
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("demo did not stop within 20 s of Ctrl-C\n" + _tail(log)) from None
    assert code == 0, _tail(log)
    log.seek(0)
    output = log.read()  # the banner, wherever the log has put it
    assert f"http://127.0.0.1:{api}/docs" in output
    assert f"Dashboard    http://127.0.0.1:{api}/ " in output
    assert TOKEN in output and "SPOKE_DEMO_TOKEN is weak" in output
    # Where the hub's metrics are and where their token is, never the token itself.
    assert f"http://127.0.0.1:{metrics}/metrics" in output and "metrics-token" in output
    assert metrics_token not in output
    assert "Spoke demo stopped" in output


def _tail(log: object) -> str:
    log.seek(0)  # type: ignore[attr-defined]
    return "".join(log.readlines()[-60:])  # type: ignore[attr-defined]
