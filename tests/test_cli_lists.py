"""The CLI's lists as they render in a real terminal width: an id is never cut, folded or wrapped
(a person copies it into the next command), whatever COLUMNS says; `--json` prints the API's objects.
Every command runs as the `spoke` script against a real cloud, broker and simulated hub."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from cloud.api.routes.usage import UsagePublic
from cloud.api.schemas import DevicePublic, HubPublic, TokenPublic
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack

SPOKE = str(Path(sys.executable).with_name("spoke"))
# Long enough that a device id (hub id, '-', 16 hex digits) is wider than a 40-column terminal.
HUB_ID = "demo-hub-0eef160cd3a4f1b2"
WIDTHS = ("200", "80", "40")


async def _spoke(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        SPOKE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _api_env(stack: Stack, columns: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    return env | {"SPOKE_API_URL": stack.base_url, "SPOKE_API_TOKEN": stack.token,
                  "COLUMNS": columns}


def _db_env(stack: Stack, columns: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOKE_")}
    return env | {"SPOKE_DATABASE_URL": stack.cloud_settings.database_url,
                  "SPOKE_CONFIG": "none.toml", "COLUMNS": columns}


def _whole_on_a_line(text: str, *ids: str) -> None:
    lines = text.splitlines()
    for one in ids:
        assert any(one in line for line in lines), f"{one} is not whole on any line of:\n{text}"
    assert "…" not in text  # nothing was cut short either


def _fields(items: list[dict[str, Any]]) -> set[str]:
    (keys,) = {frozenset(item) for item in items}
    return set(keys)


async def test_device_and_hub_ids_are_whole_at_any_width_and_json_is_the_apis(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    hub = {"sim_devices": ["bulb", "thermostat"],
           "hub_data_dir": tmp_path / "hub"}  # its control socket's path stays short enough
    async with running_stack(tmp_path, mosquitto, hub_id=HUB_ID, hub=hub) as stack:
        devices = await stack.wait_for_devices(2)
        ids = [d["id"] for d in devices]
        assert all(len(i) > 40 for i in ids)
        for columns in WIDTHS:
            env = _api_env(stack, columns)
            listing = await _spoke("devices", "list", env=env)
            _whole_on_a_line(listing, *ids)
            _whole_on_a_line(await _spoke("hubs", "list", env=env), HUB_ID)
            shown = await _spoke("device", "show", ids[0], env=env)
            _whole_on_a_line(shown, ids[0], HUB_ID)
            assert re.search(r"^  available: +yes", shown, re.M), shown

        env = _api_env(stack, "40")
        listed = json.loads(await _spoke("devices", "list", "--json", env=env))
        assert sorted(d["id"] for d in listed) == sorted(ids)
        assert _fields(listed) == set(DevicePublic.model_fields)
        shown_json = json.loads(await _spoke("device", "show", ids[0], "--json", env=env))
        assert shown_json["id"] == ids[0] and set(shown_json) == set(DevicePublic.model_fields)
        hubs = json.loads(await _spoke("hubs", "list", "--json", env=env))
        assert [h["id"] for h in hubs] == [HUB_ID] and hubs[0]["online"] is True
        assert _fields(hubs) == set(HubPublic.model_fields)


async def test_the_clouds_own_lists_keep_ids_whole_and_print_json(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto, hub_id=HUB_ID, start_hub=False) as stack:
        assert (await stack.api.get("/api/v1/hubs")).status_code == 200  # one request to meter
        env = _db_env(stack, "40")
        tokens = json.loads(await _spoke("cloud", "token", "list", "--json", env=env))
        assert _fields(tokens) == set(TokenPublic.model_fields)
        api_tokens = (await stack.api.get("/api/v1/tokens")).json()
        assert [t for t in tokens if t["account"] == "default"] == api_tokens  # the same objects
        token_ids = [t["id"] for t in tokens]
        usage = json.loads(await _spoke("cloud", "usage", "--json", env=env))
        assert _fields(usage) == set(UsagePublic.model_fields)
        assert {u["token_id"] for u in usage} <= set(token_ids)
        accounts = json.loads(await _spoke("cloud", "account", "list", "--json", env=env))
        assert [a["id"] for a in accounts] == ["default"]
        registered = json.loads(await _spoke("cloud", "hub", "list", "--json", env=env))
        assert [(h["hub_id"], h["generation"], h["revoked"]) for h in registered] == [
            (HUB_ID, 1, False)]

        for columns in WIDTHS:
            env = _db_env(stack, columns)
            _whole_on_a_line(await _spoke("cloud", "token", "list", env=env), *token_ids)
            _whole_on_a_line(await _spoke("cloud", "hub", "list", env=env), HUB_ID)
            _whole_on_a_line(await _spoke("cloud", "usage", env=env), *token_ids)
            _whole_on_a_line(await _spoke("cloud", "account", "list", env=env), "default")
