"""Events in batches (``EventBatch``): the wire form and its limits, the cloud storing batches beside
old single-event messages exactly once, and hubs that batch only for a cloud that says it takes
batches, losing nothing when batches are lost on the way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.storage.sql_schema import dead_letters
from hub.app import Hub
from hub.link import HubLink
from hub.settings import HubSettings
from hub.store import HubStore
from tests.common import (
    ON_POSTGRESQL_TOO,
    CloudHarness,
    MqttTestClient,
    cloud_settings,
    device,
    event,
    eventually,
    register_hub,
    running_cloud,
    status,
)
from tests.conftest import BrokerAddress
from tests.stack import hub_settings
from wire.contract import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    Event,
    EventBatch,
    EventBatcher,
    LedgerAck,
    Topics,
    WireError,
    decode,
    decode_events,
)

HUB = "hub-b"
IEEE = "00:12:4b:00:01:02:03:04"
EPOCH = "e1"


def batch(*seqs: int, hub_id: str = HUB, epoch: str | None = EPOCH) -> bytes:
    """An EventBatch payload of the events ``seqs``, joined as a hub joins its outbox rows."""
    batcher = EventBatcher(hub_id, epoch)
    items = [batcher.item(event(hub_id, s, IEEE, value=s % 2 == 1, epoch=epoch).to_bytes())
             for s in seqs]
    assert all(item is not None for item in items)
    return batcher.join([i for i in items if i is not None])


# ------------------------------------------------------------------------------------ wire form
def test_a_batch_joined_from_event_payloads_decodes_to_the_same_events() -> None:
    singles = [event(HUB, s, IEEE, value=s % 2 == 1, epoch=EPOCH) for s in (1, 2, 3)]
    kind, hub_id, _, message = decode(Topics.events(HUB), batch(1, 2, 3))
    assert (kind, hub_id) == ("events", HUB)
    assert isinstance(message, EventBatch) and message.refused == ()
    expanded = message.expand()
    assert [e.seq for e in expanded] == [1, 2, 3]
    for got, sent in zip(expanded, singles, strict=True):
        assert got == sent and got.model_dump() == sent.model_dump()
        assert Event.model_validate_json(got.model_dump_json()) == got  # kept as a dead letter
    # The single-event message of hubs before batches decodes as it always did.
    assert decode(Topics.events(HUB), singles[0].to_bytes())[3] == singles[0]


def test_an_event_of_another_ledger_is_never_joined() -> None:
    batcher = EventBatcher(HUB, EPOCH)
    assert batcher.item(event(HUB, 1, IEEE, epoch="other").to_bytes()) is None
    assert batcher.item(event(HUB, 1, IEEE, epoch=None).to_bytes()) is None
    assert batcher.item(event("hub-c", 1, IEEE, epoch=EPOCH).to_bytes()) is None


def test_a_malformed_event_of_a_batch_is_left_out_with_its_reason() -> None:
    payload = json.loads(batch(1, 2, 3, 4))
    payload["events"][1]["value"] = float("nan")  # JSON has no NaN
    payload["events"][2]["ieee"] = "not-an-ieee"
    del payload["events"][3]["seq"]
    message = decode_events(json.dumps(payload).encode())
    assert isinstance(message, EventBatch)
    assert [e.seq for e in message.expand()] == [1]
    assert [(r.position, r.seq) for r in message.refused] == [(1, 2), (2, 3), (3, None)]
    assert "ieee" in message.refused[1].reason and "seq" in message.refused[2].reason
    assert json.loads(message.refused[1].raw) == payload["events"][2]


@pytest.mark.parametrize(("payload", "reason"), [
    ({"v": 1, "hub_id": HUB, "events": []}, "events: List should have at least 1 item"),
    ({"v": 1, "hub_id": HUB, "events": "x"}, "events: Input should be a valid array"),
    ({"v": 1, "hub_id": "bad hub", "events": [{}]}, "hub_id: String should match"),
    ({"v": 1, "hub_id": HUB, "events": [{}] * (MAX_BATCH_EVENTS + 1)},
     f"events: List should have at most {MAX_BATCH_EVENTS} items"),
    ({"v": 2, "hub_id": HUB, "events": [{}]}, "v: Input should be 1"),
])
def test_a_malformed_envelope_is_refused_with_a_clear_reason(payload: dict, reason: str) -> None:
    with pytest.raises(WireError, match="invalid EventBatch") as refused:
        decode_events(json.dumps(payload).encode())
    assert reason in str(refused.value)


def test_an_oversized_batch_is_refused_unread() -> None:
    seqs = range(1, MAX_PAYLOAD_BYTES // 100)
    with pytest.raises(WireError, match="payload too large"):
        decode_events(batch(*seqs))


def test_an_acknowledgement_of_a_cloud_before_batches_allows_none() -> None:
    old = b'{"v":1,"hub_id":"hub-b","epoch":"e1","seq":4,"results":[]}'
    assert LedgerAck.from_bytes(old).batch_max == 0


# ------------------------------------------------------------------------------------ the cloud
@pytest.fixture
async def cloud(tmp_path: Path, mqtt_broker: BrokerAddress, database: str
                ) -> AsyncIterator[CloudHarness]:
    async with running_cloud(cloud_settings(tmp_path, mqtt_broker, database_url=database)
                             ) as harness:
        yield harness


@pytest.fixture
def hub(tmp_path: Path, mqtt_broker: BrokerAddress, database: str) -> Iterator[MqttTestClient]:
    """A test client logged in as the hub (registered in the cloud the tests start)."""
    credentials = register_hub(cloud_settings(tmp_path, mqtt_broker, database_url=database), HUB)
    client = MqttTestClient.as_hub(mqtt_broker, credentials)
    yield client
    client.close()


def metrics(cloud: CloudHarness) -> dict:
    return cloud.services.ingest.metrics.snapshot()


def acks(hub: MqttTestClient) -> list[LedgerAck]:
    return [LedgerAck.from_bytes(p) for t, p in hub.received if t == Topics.acks(HUB)]


@ON_POSTGRESQL_TOO
async def test_batches_and_single_events_are_stored_once_and_acknowledged(
        cloud: CloudHarness, hub: MqttTestClient) -> None:
    assert await asyncio.to_thread(hub.subscribe, Topics.acks(HUB))
    for message in (status(HUB, epoch=EPOCH, last_seq=0), device(HUB, IEEE)):
        await asyncio.to_thread(hub.publish, message)
    await asyncio.to_thread(hub.publish, event(HUB, 1, IEEE, epoch=EPOCH))  # a hub before batches
    for payload in (batch(2, 3, 4, 5, 6), batch(2, 3, 4, 5, 6), batch(5, 6, 7, 8)):
        await asyncio.to_thread(hub.publish_raw, Topics.events(HUB), payload)
    await eventually(lambda: metrics(cloud)["events"] == 15, what="15 events received")
    m = metrics(cloud)
    assert (m["stored"], m["duplicates"], m["gaps"], m["event_batches"]) == (8, 7, 0, 3)
    assert m["rejected_total"] == 0
    # Every event of the batches is committed, and the cloud says it takes batches.
    await eventually(lambda: any(a.seq == 8 for a in acks(hub)), what="the ack of seq 8")
    assert all(a.batch_max == cloud.settings.event_batch_max > 1 for a in acks(hub))
    samples = await cloud.get_json(f"/api/v1/devices/{HUB}-00124b0001020304/telemetry",
                                   capability="switch")
    assert [s["value"] for s in samples] == [s % 2 == 1 for s in range(1, 9)]
    hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert (hub_row["events_stored"], hub_row["last_seq"]) == (8, 8)


async def test_a_malformed_event_of_a_batch_loses_none_of_the_others(
        cloud: CloudHarness, hub: MqttTestClient) -> None:
    assert await asyncio.to_thread(hub.subscribe, Topics.acks(HUB))
    for message in (status(HUB, epoch=EPOCH, last_seq=0), device(HUB, IEEE)):
        await asyncio.to_thread(hub.publish, message)
    broken = json.loads(batch(1, 2, 3))
    broken["events"][1]["capability"] = ""
    topic = Topics.events(HUB)
    for payload in (json.dumps(broken).encode(),
                    json.dumps({"v": 1, "hub_id": HUB, "events": "x"}).encode(),
                    batch(4, hub_id="hub-c"),  # another hub's events on this hub's topic
                    batch(*range(4, MAX_PAYLOAD_BYTES // 100)),  # too large
                    batch(4, 5)):
        await asyncio.to_thread(hub.publish_raw, topic, payload)
    await eventually(lambda: metrics(cloud)["stored"] == 4, what="the valid events stored")
    m = metrics(cloud)
    assert m["rejected"] == {"invalid_event": 1, "invalid_payload": 1, "mismatch": 1,
                             "too_large": 1}
    hub_row = await cloud.get_json(f"/api/v1/hubs/{HUB}")
    assert (hub_row["events_stored"], hub_row["gaps"]) == (4, 0)
    # The broken event said where it stood in the ledger: kept as a dead letter, as it came, so
    # the acknowledgement covers it and the hub does not send it again and again.
    with cloud.services.storage.registry.engine.connect() as conn:  # type: ignore[attr-defined]
        kept = conn.execute(select(dead_letters.c.seq, dead_letters.c.reason,
                                   dead_letters.c.payload)).all()
    assert [(seq, reason) for seq, reason, _ in kept] == [(2, "invalid_event")]
    assert json.loads(kept[0][2]) == broken["events"][1]
    await eventually(lambda: any(a.seq == 5 for a in acks(hub)), what="the ack of seq 5")


# ------------------------------------------------------------------------------------ hubs
def _payloads(watcher: MqttTestClient) -> list[Event | EventBatch]:
    return [decode_events(p) for t, p in watcher.received if t == Topics.events(HUB)]


async def _burst_until_stored(hub: Hub, registry: object, reports: int) -> None:
    """Every load generator reports ``reports`` steps at once; wait until the cloud committed
    everything the hub emitted and the hub let it go."""
    await hub.dispatch.control({"op": "sim_burst", "count": reports})

    def caught_up() -> bool:
        row = registry.get_hub(HUB)  # type: ignore[attr-defined]
        last = hub.store.last_seq
        return (row is not None and row.events_stored == last and hub.store.acked_seq == last
                and not hub.store.pending)

    await eventually(caught_up, within=30, what="every event stored and acknowledged")


@pytest.mark.parametrize("batch_max", [500, 0], ids=["cloud takes batches", "cloud before batches"])
async def test_a_hub_batches_only_for_a_cloud_that_takes_batches(
        tmp_path: Path, mosquitto: BrokerAddress, batch_max: int) -> None:
    settings = cloud_settings(tmp_path, mosquitto, event_batch_max=batch_max)
    credentials = register_hub(settings, HUB)
    watcher = MqttTestClient.as_cloud(mosquitto, "events-watcher")
    try:
        assert watcher.subscribe(Topics.events(HUB))
        async with running_cloud(settings) as cloud:
            hub = Hub(hub_settings(tmp_path, mosquitto, HUB, credentials,
                                   sim_devices=["loadgen", "loadgen"], sim_tick=3600.0,
                                   event_batch_delay=0.2))
            await hub.start()
            try:
                await eventually(lambda: hub.publisher.acks > 0, what="the cloud's first ack")
                await _burst_until_stored(hub, cloud.services.storage.registry, 60)
            finally:
                await hub.stop()
            m = metrics(cloud)
            row = cloud.services.storage.registry.get_hub(HUB)
            assert row is not None and (row.events_stored, row.duplicates, row.gaps) == (
                hub.store.last_seq, 0, 0)
        sent = _payloads(watcher)
        batches = [p for p in sent if isinstance(p, EventBatch)]
        if batch_max:
            assert batches and m["event_batches"] == len(batches)
            assert max(len(b.events) for b in batches) <= 100  # the hub's own bound
        else:
            assert batches == [] and m["event_batches"] == 0  # what an older cloud reads
        # Either way every event went out exactly once, in order.
        seqs = [e.seq for p in sent for e in (p.expand() if isinstance(p, EventBatch) else [p])]
        assert seqs == list(range(1, hub.store.last_seq + 1))
    finally:
        watcher.close()


async def test_batches_lost_on_the_way_are_sent_again(tmp_path: Path,
                                                      mosquitto: BrokerAddress) -> None:
    """The cloud is away without a session (the broker keeps nothing for it): the batches sent
    meanwhile are lost; when the cloud is back, the hub finds its mark short and sends again."""
    settings = cloud_settings(tmp_path, mosquitto, mqtt_session_expiry=0,
                              mqtt_client_id="batch-cloud")
    credentials = register_hub(settings, HUB)
    hub = Hub(hub_settings(tmp_path, mosquitto, HUB, credentials, sim_devices=["loadgen"],
                           sim_tick=3600.0, ledger_resend_after=0.5, shutdown_drain=1.0))
    await hub.start()
    try:
        async with running_cloud(settings) as cloud:
            await eventually(lambda: hub.publisher.acks > 0, what="the cloud's first ack")
            await _burst_until_stored(hub, cloud.services.storage.registry, 40)
            assert metrics(cloud)["event_batches"] >= 1
        stored_before = hub.store.last_seq
        await hub.dispatch.control({"op": "sim_burst", "count": 40})  # nobody to receive them
        await eventually(lambda: hub.store.last_seq > stored_before and hub.link.published
                         >= hub.store.last_seq, what="the burst sent into the void")
        assert hub.store.acked_seq == stored_before and hub.store.pending
        async with running_cloud(settings) as cloud:
            registry = cloud.services.storage.registry
            await _burst_until_stored(hub, registry, 1)
            assert hub.publisher.resends >= 1 and metrics(cloud)["event_batches"] >= 1
            row = registry.get_hub(HUB)
            # Stored once each; the copies a resend brings again are dropped (and counted).
            assert row is not None and (row.events_stored, row.gaps) == (hub.store.last_seq, 0)
    finally:
        await hub.stop()



def test_a_command_result_never_waits_for_a_batch(tmp_path: Path) -> None:
    """The pump holds back only a last run of events, for more to join it; a command result is
    never held, and the events before it leave with it."""
    settings = HubSettings(hub_id=HUB, hub_data_dir=tmp_path, radio="sim", event_batch_delay=1.0)
    store = HubStore(tmp_path / "outbox.db")

    async def ignore(*_args: object) -> None:
        return None

    link = HubLink(settings, store, ignore, lambda _session: None)
    link.batch_max = 3
    try:
        def add_event() -> None:
            store.add_event(Topics.events(HUB), lambda seq: event(
                HUB, seq, IEEE, epoch=store.epoch).to_bytes())

        for _ in range(4):
            add_event()
        store.add_result(Topics.results(HUB), "cmd-1", b'{"v":1}')
        add_event()
        messages = link._messages(store.pending_rows(0, 100))
        assert [(m.topic.rsplit("/", 1)[1], m.rows) for m in messages] == [
            ("events", 3), ("events", 1), ("results", 1), ("events", 1)]
        assert isinstance(decode_events(messages[0].payload), EventBatch)
        assert isinstance(decode_events(messages[1].payload), Event)  # alone: as it was written
        # Only the newest run of events may wait for more; the result and what came before not.
        assert [link._open(m) for m in messages] == [False, True, False, True]
        link.batch_max = 1  # the cloud no longer takes batches: one event per message
        assert [m.rows for m in link._messages(store.pending_rows(0, 100))] == [1] * 6
    finally:
        store.close()
