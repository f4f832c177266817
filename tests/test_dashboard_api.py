"""What the dashboard stands on: the page and its headers, the session and live stream routes (auth,
account scoping, per-token limit, slow clients dropped, ended when the cloud stops), and downsampled
history on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.auth import create_account, create_token
from cloud.hub_registration import register_hub
from cloud.live import DROPPED, Committed, LiveFeed
from cloud.storage.base import TelemetryPoint
from cloud.storage.sql import SqlRegistry, SqlTelemetry
from cloud.web import STATIC
from tests.common import T0, MqttTestClient, device, event, eventually, status
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack
from tests.test_cloud_storage import ingest_events

IEEE = "00:00:00:00:00:00:00:0a"
OTHER_IEEE = "00:00:00:00:00:00:00:0b"


# The page -----------------------------------------------------------------------------------------


async def test_page_and_assets_are_served_with_a_strict_policy(tmp_path: Path,
                                                               amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker, start_hub=False) as stack, \
            httpx.AsyncClient(base_url=stack.base_url) as http:  # no token: the page is public
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
        assert "connect-src 'self'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        # Every asset the page names comes from this cloud, with the same headers.
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(a.startswith("/static/") or a.startswith("data:") or a.startswith("#")
                              for a in assets), assets
        for asset in (a for a in assets if a.startswith("/static/")):
            response = await http.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["content-security-policy"] == csp
        # Modules import only their neighbours; nothing loads from another origin.
        for script in STATIC.glob("*.js"):
            source = script.read_text()
            assert "<script" not in source and "eval(" not in source
            for imported in re.findall(r'from "([^"]+)"', source):
                assert imported.startswith("./"), (script.name, imported)
            assert not re.search(r"https?://", source), script.name
        assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
        assert (STATIC / "vendor" / "uPlot.LICENSE").read_text().startswith("The MIT License")
        assert (await http.get("/static/../cloud.db")).status_code == 404
        # The API's docs keep their own (CDN) page, without the dashboard's policy.
        assert "content-security-policy" not in (await http.get("/docs")).headers


# Session and stream: auth -------------------------------------------------------------------------


async def test_session_and_stream_need_a_valid_token(tmp_path: Path,
                                                     amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker, start_hub=False) as stack:
        for path in ("/api/v1/session", "/api/v1/stream",
                     f"/api/v1/devices/{stack.hub_settings.hub_id}-x/telemetry/buckets"
                     "?capability=temperature"):
            for header in ("", "Bearer wrong", "Basic dTpw"):
                response = await stack.api.get(path, headers={"Authorization": header})
                assert response.status_code == 401, (path, header)
        _, read = await asyncio.to_thread(create_token, stack.services.storage.registry, "r",
                                          scopes=["read"])
        me = (await stack.api.get("/api/v1/session",
                                  headers={"Authorization": f"Bearer {read}"})).json()
        assert me["scopes"] == ["read"] and me["account"] == "default"
        assert read not in json.dumps(me)
        admin = (await stack.api.get("/api/v1/session")).json()
        assert set(admin["scopes"]) >= {"admin"}


# Session and stream: what streams carry -----------------------------------------------------------


class SseReader:
    """The messages of one open stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.messages: list[tuple[str, Any]] = []
        self._lines = response.aiter_lines()

    async def next(self) -> tuple[str, Any]:
        kind, data = "message", []
        async for line in self._lines:
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                message = (kind, json.loads("\n".join(data)))
                self.messages.append(message)
                return message
        raise EOFError("the stream ended")

    async def until(self, predicate: Any, within: float = 15.0) -> tuple[str, Any]:
        """The first message so far, or to come, that ``predicate`` accepts."""
        for message in self.messages:
            if predicate(*message):
                return message

        async def find() -> tuple[str, Any]:
            while True:
                message = await self.next()
                if predicate(*message):
                    return message

        return await asyncio.wait_for(find(), within)


@contextlib.asynccontextmanager
async def open_stream(stack: Stack, token: str) -> AsyncIterator[SseReader]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http, \
            http.stream("GET", "/api/v1/stream",
                        headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        kind, hello = await reader.next()
        assert kind == "hello" and set(hello) == {"account", "scopes"}
        yield reader


async def test_stream_carries_the_accounts_changes_and_nothing_of_another_account(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker, start_hub=False) as stack:
        registry = stack.services.storage.registry
        hub_id = stack.hub_settings.hub_id
        await asyncio.to_thread(create_account, registry, "neighbour")
        other_credentials = await asyncio.to_thread(register_hub, stack.cloud_settings, registry,
                                                    "hub-neighbour", "neighbour")
        _, neighbour = await asyncio.to_thread(create_token, registry, "n", account="neighbour",
                                               scopes=["read"])
        _, read = await asyncio.to_thread(create_token, registry, "r", scopes=["read"])
        ours = stack.as_hub()
        theirs = MqttTestClient.as_hub(stack.broker, other_credentials)
        try:
            async with open_stream(stack, read) as mine, open_stream(stack, neighbour) as other:
                for client, hub, ieee in ((ours, hub_id, IEEE), (theirs, "hub-neighbour", OTHER_IEEE)):
                    await asyncio.to_thread(client.publish, status(hub))
                    await asyncio.to_thread(client.publish, device(
                        hub, ieee, {"temperature": {"temperature": None}}))
                    await asyncio.to_thread(client.publish, event(
                        hub, 1, ieee, "temperature", "temperature", 21.5))
                _, value = await mine.until(lambda k, d: k == "event")
                assert value["device_id"] == f"{hub_id}-00000000000000{IEEE[-2:]}"
                assert (value["capability"], value["attribute"], value["value"]) == (
                    "temperature", "temperature", 21.5)
                _, theirs_value = await other.until(lambda k, d: k == "event")
                assert theirs_value["hub_id"] == "hub-neighbour"
                # A new status and a device's description came too, each of its own account.
                await mine.until(lambda k, d: k == "hub" and d["online"] is True)
                await other.until(lambda k, d: k == "hub" and d["id"] == "hub-neighbour")
                # The device's description comes in the same batch as, or before, its first event
                # (the cloud stores that event only once it knows the device).
                await asyncio.to_thread(ours.publish, device(hub_id, IEEE, {"temperature": {
                    "temperature": 21.5}}, available=False, availability_reason="ping failed"))
                _, described = await mine.until(lambda k, d: k == "device" and not d["available"])
                assert described["availability_reason"] == "ping failed"
                for seen in (mine.messages, other.messages):
                    hubs = {d.get("hub_id", d.get("id")) for k, d in seen if k != "hello"}
                    assert len(hubs) == 1, hubs
        finally:
            ours.close()
            theirs.close()


async def test_streams_per_token_are_limited_and_end_when_the_cloud_stops(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with contextlib.AsyncExitStack() as streams:
        async with running_stack(tmp_path, amqtt_broker, start_hub=False,
                                 cloud={"live_streams_per_token": 2}) as stack:
            live = stack.services.live
            async with open_stream(stack, stack.token), open_stream(stack, stack.token):
                refused = await stack.api.get("/api/v1/stream")
                assert refused.status_code == 429 and "at most 2" in refused.json()["detail"]
                _, other = await asyncio.to_thread(create_token, stack.services.storage.registry,
                                                   "o")
                async with open_stream(stack, other):  # another token has its own
                    assert live.open_streams() == 3
            await eventually(lambda: live.open_streams() == 0, what="closed streams forgotten")
            reader = await streams.enter_async_context(open_stream(stack, stack.token))
            reading = asyncio.create_task(reader.until(lambda k, d: k == "end", within=30))
        # The cloud has stopped: it ended the open stream instead of waiting on it.
        kind, body = await reading
        assert kind == "end" and "stopping" in body["reason"]


# The feed itself ----------------------------------------------------------------------------------


def _point(hub_id: str, seq: int) -> TelemetryPoint:
    return TelemetryPoint(hub_id=hub_id, seq=seq, device_id=f"{hub_id}-dev", capability="power",
                          attribute="power", ts=T0 + timedelta(seconds=seq), value=float(seq))


async def test_feed_drops_a_slow_client_and_does_nothing_without_streams() -> None:
    asked: list[str] = []

    def account(hub_id: str) -> str | None:
        asked.append(hub_id)
        return {"hub-a": "a", "hub-b": "b"}.get(hub_id)

    feed = LiveFeed(account, lambda _id: None, lambda _id: None, queue_size=5, per_token=3)
    await asyncio.to_thread(feed.committed, Committed(points=[_point("hub-a", 1)]))
    assert asked == []  # no stream open: the ingest's batch costs nothing

    slow = feed.open("a", "token-1")
    reading = feed.open("a", "token-2")
    elsewhere = feed.open("b", "token-3")
    await asyncio.to_thread(feed.committed, Committed(points=[_point("hub-a", s) for s in range(4)]))
    await eventually(lambda: reading.queue.qsize() == 4)
    while not reading.queue.empty():  # this client keeps up
        reading.queue.get_nowait()
    await asyncio.to_thread(feed.committed,
                            Committed(points=[_point("hub-a", s) for s in range(4, 8)]))
    await eventually(lambda: slow.closed)
    assert slow.queue.qsize() == 1 and slow.queue.get_nowait() is DROPPED  # nothing else kept
    assert not reading.closed and reading.queue.qsize() == 4
    assert elsewhere.queue.empty()  # another account's stream got nothing
    await asyncio.to_thread(feed.points, [_point("hub-b", 9), _point("hub-unknown", 10)])
    await eventually(lambda: elsewhere.queue.qsize() == 1)
    assert '"hub_id":"hub-b"' in elsewhere.queue.get_nowait()
    for stream in (slow, reading, elsewhere):
        feed.close(stream)
    assert feed.open_streams() == 0


# Downsampled history ------------------------------------------------------------------------------


def test_buckets_sum_up_each_window(registry: SqlRegistry) -> None:
    hub, dev = "hub-1", "hub-1-000000000000000a"
    with registry.ingest() as tx:
        tx.device_info(device(hub, IEEE, {}))
    values: list[tuple[int, Any]] = [(0, 1.0), (5, 3.0), (9, 2), (10, 10.0), (25, -4.5),
                                     (26, "text"), (59, 7.0), (60, 8.0), (61, 99.0)]
    ingest_events(registry, *(event(hub, i + 1, IEEE, "power", "power", v,
                                    ts=T0 + timedelta(seconds=s))
                              for i, (s, v) in enumerate(values)))
    ingest_events(registry, *(event(hub, 20 + i, IEEE, "occupancy", "occupied", v,
                                    ts=T0 + timedelta(seconds=s))
                              for i, (s, v) in enumerate([(1, False), (2, True), (15, False)])))
    telemetry = SqlTelemetry(registry.engine)
    found = telemetry.buckets(dev, "power", "power", since=T0, until=T0 + timedelta(seconds=60),
                              width=10)
    got = [((b.start - T0).total_seconds(), b.count, b.min, b.max, round(b.avg, 6)) for b in found]
    assert got == [(0, 3, 1.0, 3.0, 2.0), (10, 1, 10.0, 10.0, 10.0), (20, 1, -4.5, -4.5, -4.5),
                   (50, 1, 7.0, 7.0, 7.0), (60, 1, 8.0, 8.0, 8.0)]
    assert all(b.start.tzinfo is not None for b in found)
    occupied = telemetry.buckets(dev, "occupancy", "occupied", since=T0,
                                 until=T0 + timedelta(seconds=30), width=10)
    assert [(b.count, b.min, b.max) for b in occupied] == [(2, 0.0, 1.0), (1, 0.0, 0.0)]
    offset = telemetry.buckets(dev, "power", "power", since=T0 + timedelta(seconds=5),
                               until=T0 + timedelta(seconds=14), width=5)
    assert [((b.start - T0).total_seconds(), b.count) for b in offset] == [(5, 2), (10, 1)]
    assert telemetry.buckets(dev, "power", "other", since=T0, until=T0 + timedelta(seconds=60),
                             width=10) == []


async def test_buckets_route_is_scoped_checked_and_sized_from_the_range(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker, start_hub=False) as stack:
        registry = stack.services.storage.registry
        hub_id = stack.hub_settings.hub_id
        ours = stack.as_hub()
        try:
            await asyncio.to_thread(ours.publish, status(hub_id))
            await asyncio.to_thread(ours.publish, device(hub_id, IEEE, {"power": {"power": None}}))
            for seq in range(1, 7):
                await asyncio.to_thread(ours.publish, event(
                    hub_id, seq, IEEE, "power", "power", float(seq),
                    ts=T0 + timedelta(minutes=10 * seq)))
            await eventually(lambda: stack.services.ingest.metrics.snapshot()["stored"] >= 6)
        finally:
            ours.close()
        device_id = f"{hub_id}-{IEEE.replace(':', '')}"
        url = f"/api/v1/devices/{device_id}/telemetry/buckets"
        since, until = T0.isoformat(), (T0 + timedelta(hours=2)).isoformat()
        _, read = await asyncio.to_thread(create_token, registry, "r", scopes=["read"])
        body = (await stack.api.get(url, params={"capability": "power", "since": since,
                                                 "until": until, "buckets": 4},
                                    headers={"Authorization": f"Bearer {read}"})).json()
        assert body["bucket_seconds"] == 1800
        assert [(b["count"], b["min"], b["max"], b["avg"]) for b in body["buckets"]] == [
            (2, 1.0, 2.0, 1.5), (3, 3.0, 5.0, 4.0), (1, 6.0, 6.0, 6.0)]
        assert body["buckets"][0]["ts"].startswith("2025-01-01T00:00:00")
        # Without a range: the last 24 hours (these events are older).
        assert (await stack.api.get(url, params={"capability": "power"})).json()["buckets"] == []
        for bad in ({"capability": "power", "since": until, "until": since},
                    {"capability": "power", "since": "2020-01-01T00:00:00Z",
                     "until": "2025-01-01T00:00:00Z"},
                    {"capability": "power", "buckets": 0}, {"capability": "power", "buckets": 5000},
                    {"capability": "color"}, {}):
            response = await stack.api.get(url, params=bad)
            assert response.status_code == 422, (bad, response.text)
        # Another account's token: the device is not there at all.
        await asyncio.to_thread(create_account, registry, "neighbour")
        _, neighbour = await asyncio.to_thread(create_token, registry, "n", account="neighbour")
        response = await stack.api.get(url, params={"capability": "power"},
                                       headers={"Authorization": f"Bearer {neighbour}"})
        assert response.status_code == 404
        assert (await stack.api.get(f"/api/v1/devices/{hub_id}-nope/telemetry/buckets",
                                    params={"capability": "power"})).status_code == 404


@pytest.mark.parametrize("scope", ["read", "control"])
async def test_read_routes_of_the_dashboard_take_any_scope(
        tmp_path: Path, amqtt_broker: BrokerAddress, scope: str) -> None:
    """Every token has at least read (control includes it): no 403 on these routes; commands and
    pairing keep their own control scope (403 for a read token, tested with them)."""
    async with running_stack(tmp_path, amqtt_broker, start_hub=False) as stack:
        _, token = await asyncio.to_thread(create_token, stack.services.storage.registry, "t",
                                           scopes=[scope])
        hub = stack.as_hub()
        try:
            await asyncio.to_thread(hub.publish, status(stack.hub_settings.hub_id, online=False))
        finally:
            hub.close()
        await eventually(lambda: stack.services.storage.registry.get_hub(
            stack.hub_settings.hub_id) is not None, what="the hub's status stored")
        response = await stack.api.get("/api/v1/session",
                                       headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        response = await stack.api.post(f"/api/v1/hubs/{stack.hub_settings.hub_id}/pairing",
                                        json={"duration": 5},
                                        headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == (403 if scope == "read" else 409)  # 409: hub offline
