"""Device and hub lists page by page, over real HTTP to a running cloud (SQLite and PostgreSQL):
every item exactly once across pages in a stable order while devices join, the account's own only,
filters kept from page to page, the next page in Link and X-Next-Cursor, and a 422 for any cursor
or limit the API did not offer. The CLI's client follows the pages to the end. And a page on a
kept-alive connection does not wait for the client's delayed ACK (nor does any answer)."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cloud.auth import create_token
from cloud.service import bind_api_socket
from cloud.settings import CloudSettings
from cloud.storage.base import Registry
from spoke.api_client import ApiClient
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack
from wire.contract import DeviceInfo

MINE = {"hub-a": 7, "hub-b": 7, "hub-c": 7}  # the stack token's account (default)
THEIRS = {"hub-b2": 5}  # another account's hub, sorting between two of mine


def ieee(n: int) -> str:
    return ":".join(f"{b:02x}" for b in n.to_bytes(8, "big"))


def describe(registry: Registry, hub_id: str, numbers: range | list[int]) -> None:
    """Devices a hub described, stored as the ingest stores them."""
    with registry.ingest([hub_id]) as tx:
        for n in numbers:
            tx.device_info(DeviceInfo(hub_id=hub_id, ieee=ieee(n),
                                      capabilities={"switch": {"on": False}}))


@pytest.fixture
async def stack(tmp_path: Path, mosquitto: BrokerAddress, database: str) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, mosquitto, start_hub=False,
                             cloud={"database_url": database}) as stack:
        registry = stack.services.storage.registry
        now = datetime.now(UTC)

        def seed() -> None:
            registry.add_account("other", now)
            for account, hubs in (("default", MINE), ("other", THEIRS)):
                for hub_id, n in hubs.items():
                    registry.register_hub(hub_id, account, now)
                    describe(registry, hub_id, range(1, n + 1))

        await asyncio.to_thread(seed)
        yield stack


async def walk(api: httpx.AsyncClient, path: str, **params: Any
               ) -> tuple[list[list[dict[str, Any]]], list[httpx.Response]]:
    """Every page of a list, following its Link header as a client would."""
    pages, responses = [], []
    url: str | None = path
    if params:
        url = api.build_request("GET", path, params=params).url.raw_path.decode()
    while url is not None:
        response = await api.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        responses.append(response)
        url = response.links["next"]["url"] if "next" in response.links else None
    return pages, responses


ON_BOTH = pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@ON_BOTH
async def test_every_device_once_in_a_stable_order_while_devices_join(stack: Stack):
    registry = stack.services.storage.registry
    mine = sorted((hub, f"{hub}-{ieee(n).replace(':', '')}")
                  for hub, count in MINE.items() for n in range(1, count + 1))
    first = await stack.api.get("/api/v1/devices", params={"limit": 4})
    assert first.status_code == 200
    assert [(d["hub_id"], d["id"]) for d in first.json()] == mine[:4]
    cursor = first.headers["X-Next-Cursor"]
    assert first.links["next"]["url"] == f"/api/v1/devices?limit=4&cursor={cursor}"

    # Devices join while the client is between pages: one sorting before where it is (seen only
    # by a new walk), one after (met on a later page); nothing already seen comes again.
    await asyncio.to_thread(describe, registry, "hub-a", [0])
    await asyncio.to_thread(describe, registry, "hub-c", [99])
    pages, responses = await walk(stack.api, first.links["next"]["url"])
    seen = [(d["hub_id"], d["id"]) for d in first.json() + [d for p in pages for d in p]]
    late = ("hub-c", f"hub-c-{ieee(99).replace(':', '')}")
    assert seen == [*mine, late]
    assert all(len(p) == 4 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 4
    assert "link" not in responses[-1].headers and "x-next-cursor" not in responses[-1].headers

    # A page ends exactly at the last device: no next page announced for an empty one.
    everything, _ = await walk(stack.api, "/api/v1/devices", limit=len(mine) + 2)
    assert [len(p) for p in everything] == [len(mine) + 2]


@ON_BOTH
async def test_pages_keep_to_the_account_and_to_the_filter(stack: Stack):
    registry = stack.services.storage.registry
    _, token = await asyncio.to_thread(create_token, registry, "theirs", account="other")
    pages, _ = await walk(stack.api, "/api/v1/devices", limit=3)
    assert {d["hub_id"] for p in pages for d in p} == set(MINE)
    async with httpx.AsyncClient(base_url=stack.base_url,
                                 headers={"Authorization": f"Bearer {token}"}) as theirs:
        pages, _ = await walk(theirs, "/api/v1/devices", limit=2)
        assert [len(p) for p in pages] == [2, 2, 1]
        assert {d["hub_id"] for p in pages for d in p} == set(THEIRS)
        hubs, _ = await walk(theirs, "/api/v1/hubs", limit=1)
        assert [[h["id"] for h in p] for p in hubs] == [["hub-b2"]]
        # My cursor is only a position: in their list it shows nothing of mine.
        mine = await stack.api.get("/api/v1/devices", params={"limit": 1})
        page = await theirs.get("/api/v1/devices", params={"cursor": mine.headers["x-next-cursor"]})
        assert {d["hub_id"] for d in page.json()} == set(THEIRS)

    pages, responses = await walk(stack.api, "/api/v1/devices", hub_id="hub-b", limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert {d["hub_id"] for p in pages for d in p} == {"hub-b"}
    assert "hub_id=hub-b" in responses[0].links["next"]["url"]
    assert (await stack.api.get("/api/v1/devices", params={"hub_id": "hub-b2"})).json() == []

    hubs, _ = await walk(stack.api, "/api/v1/hubs", limit=2)
    assert [[h["id"] for h in p] for p in hubs] == [["hub-a", "hub-b"], ["hub-c"]]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_cursors_and_limits_the_api_did_not_offer_are_422(stack: Stack):
    hub_cursor = (await stack.api.get("/api/v1/hubs", params={"limit": 1})).headers["x-next-cursor"]
    device_cursor = (await stack.api.get("/api/v1/devices", params={"limit": 1})
                     ).headers["x-next-cursor"]
    for path, cursor in (
        ("/api/v1/devices", "not base64!"), ("/api/v1/devices", "x"), ("/api/v1/devices", "A" * 401),
        ("/api/v1/devices", _b64(b"\xff\xfe")), ("/api/v1/devices", _b64(b"devices\nhub-a")),
        ("/api/v1/devices", _b64(b"devices\nhub-a\nhub-a-1\x00")),
        ("/api/v1/devices", _b64(b"devices\nhub-a\n\n")), ("/api/v1/devices", hub_cursor),
        ("/api/v1/hubs", device_cursor), ("/api/v1/hubs", _b64(b"hubs\n' OR 1=1 --")),
        ("/api/v1/devices", ""),
    ):
        response = await stack.api.get(path, params={"cursor": cursor})
        assert response.status_code == 422, (path, cursor, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    for path in ("/api/v1/devices", "/api/v1/hubs"):
        for limit in (0, -1, 1001, "x"):
            response = await stack.api.get(path, params={"limit": limit})
            assert response.status_code == 422, (path, limit)
            assert response.json()["detail"][0]["loc"] == ["query", "limit"]
        full = await stack.api.get(path, params={"limit": 1000})
        assert full.status_code == 200 and "x-next-cursor" not in full.headers
        default = await stack.api.get(path)  # a client that knows nothing of pages: the first 100
        assert default.status_code == 200 and default.json() == full.json()


async def test_the_cli_client_follows_every_page(stack: Stack):
    client = ApiClient(stack.base_url, stack.token)  # a connection per request: nothing to close
    devices = await asyncio.to_thread(client.get_all, "/api/v1/devices", page=4)
    assert len(devices) == sum(MINE.values())
    assert len({d["id"] for d in devices}) == len(devices)
    hub_b = await asyncio.to_thread(client.get_all, "/api/v1/devices", page=2, hub_id="hub-b")
    assert [d["hub_id"] for d in hub_b] == ["hub-b"] * MINE["hub-b"]
    hubs = await asyncio.to_thread(client.get_all, "/api/v1/hubs", page=1)
    assert [h["id"] for h in hubs] == sorted(MINE)


def test_connections_the_api_accepts_do_not_wait_for_a_delayed_ack():
    # With Nagle's algorithm on the cloud's connections, the second part of every answer waited
    # for the client's delayed ACK: 40 ms or more per kept-alive request, however fast the cloud.
    # The accepted connections must carry TCP_NODELAY, inherited from the listening socket.
    settings = CloudSettings(cloud_host="127.0.0.1", cloud_port=0)
    config = uvicorn.Config(app=None, host=settings.cloud_host, port=settings.cloud_port)
    listener = bind_api_socket(config, settings)
    try:
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
