"""What the CLI imports to start: `spoke --help` loads typer and the CLI's own modules; the commands
that only call the REST API add urllib, and rich when they print a table; none loads the hub, the
cloud, zigpy, FastAPI, SQLAlchemy, pydantic-settings or httpx (each command imports those when it
runs). Checked on the modules loaded, not on a clock."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BrokerAddress
from tests.stack import running_stack

# Top-level packages the hub or the cloud need and a REST client or a help text does not.
HEAVY = frozenset({
    "cloud", "hub", "simulators", "device_handlers", "wire", "zigpy", "zhaquirks", "zha",
    "bellows", "zigpy_znp", "zigpy_deconz", "fastapi", "starlette", "uvicorn", "sqlalchemy",
    "alembic", "psycopg", "pydantic_settings", "aiomqtt", "paho", "amqtt", "influxdb_client"})
# ...and an async HTTP client and event loop: the CLI calls the API with the standard library.
NOT_FOR_A_COMMAND = HEAVY | {"httpx", "httpcore", "anyio", "asyncio", "h11"}
# Help is plain text: no rich.
NOT_FOR_HELP = NOT_FOR_A_COMMAND | {"rich"}
# typer checks the value of every option it parses with pydantic; the top-level help parses none.
TYPER_VALIDATION = {"pydantic", "pydantic_core"}

# Runs the CLI as `python -m spoke ARGS` does, then writes the names of the loaded top-level
# packages to the file named by argv[1].
PROBE = """
import json, runpy, sys
out, sys.argv = sys.argv[1], ["spoke", *sys.argv[2:]]
try:
    runpy.run_module("spoke", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted({m.partition(".")[0] for m in sys.modules})}, f)
"""


def _loaded(tmp_path: Path, *args: str, env: dict[str, str] | None = None
            ) -> tuple[set[str], str]:
    out = tmp_path / "modules.json"
    run = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "100", **(env or {})})
    assert run.returncode == 0, run.stderr
    found = json.loads(out.read_text())
    assert found["code"] in (0, None), run.stdout + run.stderr
    return set(found["modules"]), run.stdout


@pytest.mark.parametrize("args", [
    ("--help",), ("devices", "list", "--help"), ("device", "command", "--help"),
    ("hub", "run", "--help"), ("cloud", "run", "--help"), ("cloud", "token", "list", "--help"),
    ("simulate", "--help"), ("demo", "--help")])
def test_help_loads_typer_and_the_cli_only(tmp_path: Path, args: tuple[str, ...]) -> None:
    modules, text = _loaded(tmp_path, *args)
    assert "Usage:" in text
    assert {"typer", "spoke"} <= modules  # the probe saw the CLI itself
    assert not modules & NOT_FOR_HELP, sorted(modules & NOT_FOR_HELP)
    if args == ("--help",):
        assert not modules & TYPER_VALIDATION


async def test_rest_commands_load_neither_hub_nor_cloud_nor_an_async_client(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, start_hub=False) as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")} | {
            "SPOKE_API_URL": stack.base_url, "SPOKE_API_TOKEN": stack.token}
        for args in (("devices", "list"), ("devices", "list", "--json"), ("hubs", "list")):
            modules, text = await asyncio.to_thread(_loaded, tmp_path, *args, env=env)
            assert "urllib" in modules  # it did call the API...
            assert not modules & NOT_FOR_A_COMMAND, (args, sorted(modules & NOT_FOR_A_COMMAND))
            if "--json" in args:
                assert json.loads(text) == []
                assert "rich" not in modules  # JSON needs no terminal styling
            else:
                assert "id" in text
