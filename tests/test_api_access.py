"""Who may do what, checked on every route the app has (taken from the app, not listed by hand):
each route declares one scope; a token without it gets 403, a token with it gets through, another
account's token gets 404 for this account's hub, device, command or token and never sees its data,
and no token (or a bad one) gets 401."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI

from cloud.api.app import create_app
from cloud.auth import create_account, create_token
from tests.common import eventually
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack

SCOPES = ("read", "control", "admin")


def api_routes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, the scope it needs) for every operation under /api/v1, from the app's own
    OpenAPI document; destructive ones last, so the others still find what they name."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            requirements = operation.get("security") or []
            assert len(requirements) == 1, f"{method} {path} needs no token: {requirements}"
            (scopes,) = requirements[0].values()
            assert scopes and set(scopes) <= set(SCOPES), (method, path, scopes)
            found.append((method.upper(), path, max(scopes, key=SCOPES.index)))
    return sorted(found, key=lambda x: (x[0] == "DELETE", x[1]))


def test_every_api_route_declares_one_scope() -> None:
    from cloud.settings import CloudSettings

    routes = api_routes(create_app(CloudSettings()))
    assert len(routes) >= 15
    declared = {(m, p): s for m, p, s in routes}
    assert declared[("GET", "/api/v1/devices")] == "read"
    assert declared[("POST", "/api/v1/devices/{device_id}/commands")] == "control"
    assert declared[("DELETE", "/api/v1/devices/{device_id}")] == "admin"
    assert declared[("POST", "/api/v1/tokens")] == "admin"


def _allowed(token_scope: str, needed: str) -> bool:
    return SCOPES.index(token_scope) >= SCOPES.index(needed)


async def _tokens(stack: Stack) -> dict[str, str]:
    registry = stack.services.storage.registry
    tokens = {}
    for scope in SCOPES:
        tokens[scope] = (await asyncio.to_thread(create_token, registry, f"a-{scope}",
                                                 scopes=[scope]))[1]
    await asyncio.to_thread(create_account, registry, "neighbour")
    tokens["other"] = (await asyncio.to_thread(create_token, registry, "b-admin",
                                               account="neighbour", scopes=["admin"]))[1]
    return tokens


async def _request(api: httpx.AsyncClient, method: str, path: str, token: str | None
                   ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": ""}
    if path.endswith("/stream"):  # a live stream never ends: its status and first message
        async with api.stream(method, path, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return response
            first = await anext(response.aiter_text())
            return httpx.Response(200, text=first, request=response.request)
    body = {} if method in ("POST", "PATCH") else None  # valid JSON, not a valid request
    params = ({"capability": "temperature"} if path.endswith(("/telemetry", "/telemetry/buckets"))
              else None)
    return await api.request(method, path, headers=headers, json=body, params=params)


async def test_each_route_against_each_scope_and_another_account(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        devices = await stack.wait_for_devices(3)
        tokens = await _tokens(stack)
        hub_id = stack.hub_settings.hub_id
        sensor = next(d for d in devices if "temperature" in d["capabilities"])
        switch = next(d for d in devices if "switch" in d["capabilities"])
        command = await stack.api.post(f"/api/v1/devices/{switch['id']}/commands",
                                       json={"capability": "switch", "command": "on"})
        assert command.status_code == 200, command.text
        ours = {hub_id, sensor["id"], switch["id"], command.json()["id"]}
        registry = stack.services.storage.registry

        async def values(path: str) -> dict[str, str]:
            spare, _ = await asyncio.to_thread(create_token, registry, "spare", scopes=["read"])
            ours.add(spare.id)
            return {"hub_id": hub_id, "device_id": sensor["id"],
                    "command_id": command.json()["id"], "token_id": spare.id,
                    "group_id": "1", "scene_id": "1", "member_id": switch["id"]}

        async def group_and_scene() -> None:
            """Group 1 with scene 1, again before each request (a DELETE took them)."""
            groups = f"/api/v1/hubs/{hub_id}/groups"
            made = await stack.api.post(groups, json={"name": "access", "group_id": 1})
            assert made.status_code in (201, 422), made.text  # 422: it exists
            stored = await stack.api.post(f"{groups}/1/scenes", json={"scene_id": 1})
            assert stored.status_code == 201, stored.text

        checked = 0
        for method, template, needed in api_routes(create_app(stack.cloud_settings)):
            path = template.format(**await values(template))
            # No token, a wrong token: 401 before anything else.
            for token in (None, "spk_not-a-token"):
                response = await _request(stack.api, method, path, token)
                assert response.status_code == 401, (method, path, response.text)
            # Another account: never this account's things.
            response = await _request(stack.api, method, path, tokens["other"])
            assert response.status_code < 500, (method, path, response.text)
            if "{" in template:
                assert response.status_code == 404, (method, path, response.text)
            said = response.text  # a 404 may repeat the ids the caller named
            for asked in sorted(path.split("/"), key=len, reverse=True):
                said = said.replace(asked, "") if asked else said
            assert not any(i in said for i in ours), (method, path, response.text)
            # This account: 403 without the scope, through with it.
            for scope in SCOPES:
                if "{group_id}" in template:
                    await group_and_scene()
                response = await _request(stack.api, method, path, tokens[scope])
                if _allowed(scope, needed):
                    assert response.status_code not in (401, 403, 404), (
                        scope, method, path, response.text)
                    assert response.status_code < 500, (scope, method, path, response.text)
                else:
                    assert response.status_code == 403, (scope, method, path, response.text)
                    assert needed in response.json()["detail"]
            checked += 1
        assert checked >= 15


async def test_a_read_token_looks_and_cannot_act(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        devices = await stack.wait_for_devices(3)
        tokens = await _tokens(stack)
        bulb = next(d for d in devices if "level" in d["capabilities"])
        executed_before = _executions(stack)
        viewer = {"Authorization": f"Bearer {tokens['read']}"}
        assert (await stack.api.get("/api/v1/devices", headers=viewer)).status_code == 200
        response = await stack.api.post(f"/api/v1/devices/{bulb['id']}/commands", headers=viewer,
                                         json={"capability": "level", "command": "set_level",
                                               "args": {"level": 10}})
        assert response.status_code == 403 and "control" in response.json()["detail"]
        response = await stack.api.post(f"/api/v1/hubs/{stack.hub_settings.hub_id}/pairing",
                                        headers=viewer)
        assert response.status_code == 403
        await asyncio.sleep(0.5)
        assert _executions(stack) == executed_before
        assert stack.hub is not None and not stack.hub.pairing_open


async def test_tokens_over_rest_are_shown_once_and_stay_in_their_account(
        tmp_path: Path, mosquitto: BrokerAddress) -> None:
    async with running_stack(tmp_path, mosquitto) as stack:
        tokens = await _tokens(stack)
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        made = await stack.api.post("/api/v1/tokens", headers=admin,
                                    json={"name": "kitchen tablet", "scopes": ["control"],
                                          "expires_at": "2099-01-01T00:00:00Z"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["scopes"] == ["control", "read"] and body["account"] == "default"
        tablet = {"Authorization": f"Bearer {body['token']}"}
        assert (await stack.api.get("/api/v1/devices", headers=tablet)).status_code == 200
        listed = await stack.api.get("/api/v1/tokens", headers=admin)
        assert body["id"] in listed.text and body["token"] not in listed.text
        assert "b-admin" not in listed.text  # the neighbour's
        neighbour = {"Authorization": f"Bearer {tokens['other']}"}
        assert (await stack.api.delete(f"/api/v1/tokens/{body['id']}",
                                       headers=neighbour)).status_code == 404
        for bad in ({"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]},
                    {"name": "", "scopes": ["read"]},
                    {"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
                    {"name": "x", "scopes": ["read"], "expires_at": "2099-01-01T00:00:00"}):
            response = await stack.api.post("/api/v1/tokens", headers=admin, json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert isinstance(response.json()["detail"], list)
        assert (await stack.api.delete(f"/api/v1/tokens/{body['id']}",
                                       headers=admin)).status_code == 204
        assert (await stack.api.get("/api/v1/devices", headers=tablet)).status_code == 401
        # A control token cannot make tokens, an expired one is refused.
        operator = {"Authorization": f"Bearer {tokens['control']}"}
        response = await stack.api.post("/api/v1/tokens", headers=operator,
                                        json={"name": "x", "scopes": ["admin"]})
        assert response.status_code == 403
        registry = stack.services.storage.registry
        _, brief = await asyncio.to_thread(
            create_token, registry, "brief", scopes=["read"],
            expires_at=datetime.now(UTC) + timedelta(seconds=1))
        await eventually(lambda: _refused(stack, brief), within=5, what="expired token refused")


async def _refused(stack: Stack, token: str) -> bool:
    response = await stack.api.get("/api/v1/hubs", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 401


def _executions(stack: Stack) -> int:
    """How many cluster commands the simulated devices carried out."""
    path = stack.sim.executions_path
    return len(path.read_text().splitlines()) if path is not None and path.exists() else 0
