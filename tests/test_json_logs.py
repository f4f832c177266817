"""JSON log lines (SPOKE_LOG_FORMAT=json): the formatter, and real `spoke cloud run` and `spoke hub
run` processes whose every output line is a JSON object, a command's lines carrying its id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.rig import SPOKE, Rig
from spoke_logging import REDACTED, JsonFormatter
from tests.conftest import MOSQUITTO


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("spoke.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_holds_the_message_its_fields_and_no_secret(
        json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info("cmd=%s sent to hub %s", "c-1", "hub-a",
                extra={"cmd": "c-1", "hub": "hub-a", "mqtt_password": "hunter2", "token": "t0p",
                       "when": object()})
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logger.exception("failed: %r", "ü")
    first, second = _lines(stream)
    assert first["msg"] == "cmd=c-1 sent to hub hub-a"  # the text is the plain one
    assert (first["level"], first["logger"]) == ("INFO", "spoke.test-json")
    assert (first["cmd"], first["hub"]) == ("c-1", "hub-a")
    assert first["mqtt_password"] == first["token"] == REDACTED
    assert "hunter2" not in stream.getvalue() and "t0p" not in stream.getvalue()
    assert first["when"].startswith("<object object")  # written as text, not a failure
    assert first["ts"].endswith("Z")
    assert second["msg"] == "failed: 'ü'" and second["level"] == "ERROR"
    assert "RuntimeError: boom" in second["exc"] and "cmd" not in second


def test_a_failing_command_says_so_in_one_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    done = subprocess.run([SPOKE, "--log-format", "json", "hub", "restore", "missing.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    [line] = [json.loads(x) for x in done.stderr.splitlines()]
    assert line["level"] == "ERROR" and "missing.json" in line["msg"]


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line a process wrote (stdout and stderr), each parsed as JSON; the rig's own
    '===== start' markers aside."""
    lines = []
    for text in path.read_text().splitlines():
        if text and not text.startswith("===== "):
            try:
                lines.append(json.loads(text))
            except ValueError:
                raise AssertionError(f"{path.name}: not a JSON line: {text!r}") from None
    return lines


@pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")
def test_cloud_and_hub_processes_write_json_lines_with_the_command_id(tmp_path: Path) -> None:
    rig = Rig(tmp_path, loadgens=0, env={"SPOKE_LOG_FORMAT": "json"})
    try:
        rig.start()
        [bulb] = rig.wait_hub_ready(1)
        with rig.http() as api:
            response = api.post(f"/api/v1/devices/{bulb['id']}/commands",
                                json={"capability": "switch", "command": "toggle"})
        assert response.status_code == 200, response.text
        command = response.json()["id"]
    finally:
        rig.stop()
    assert rig.hub is not None
    cloud, hub = _json_lines(rig.clouds[0].log_path), _json_lines(rig.hub.log_path)
    for line in cloud + hub:
        assert {"ts", "level", "logger", "msg"} <= line.keys(), line
    for lines in (cloud, hub):
        about = [line for line in lines if line.get("cmd") == command]
        assert about, "no line carries the command's id as a field"
        assert all(f"cmd={command}" in line["msg"] and line["hub"] == rig.hub_id
                   for line in about)
    assert any(line.get("hub") == rig.hub_id and "MQTT connected" in line["msg"] for line in hub)
    # The hub's broker password and the API token appear in no line.
    secrets = [rig.token, rig.hub.env["SPOKE_MQTT_PASSWORD"]]
    for log in (rig.clouds[0].log_path, rig.hub.log_path):
        assert not any(s in log.read_text() for s in secrets)


def test_text_lines_off_a_terminal_are_plain_and_whole(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A service whose stderr is a file or the journal writes each record on one plain line (rich
    lays lines out for a screen: wrapped, padded, ~1 ms each)."""
    from spoke import console

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in console.QUIET_LOGGERS}
    monkeypatch.setattr(console, "_chosen", "text")
    try:
        console.setup_logging()
        assert not console.err_console.is_terminal  # pytest captures stderr
        logging.getLogger("cloud.commands").info("cmd=%s %s", "c" * 32, "x" * 300)
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    [line] = [text for text in capsys.readouterr().err.splitlines() if "cloud.commands" in text]
    assert line.endswith(f"INFO    cloud.commands: cmd={'c' * 32} {'x' * 300}")
