"""The storage adapters and the services over them, without MQTT: ledger, state, commands, tokens.

On SQLite, and on PostgreSQL when SPOKE_TEST_POSTGRES_URL names a server the tests may create
databases on (.ci/postgres.sh starts one; e.g. postgresql+psycopg://spoke:pw@127.0.0.1:5432/spoke_test).
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from cloud.auth import (
    AccessError,
    create_account,
    create_token,
    ensure_token,
    hash_token,
    list_tokens,
    parse_duration,
    revoke_token,
    verify_token,
)
from cloud.commands import CommandService
from cloud.errors import CommandTimedOut, HubOffline, HubRequestTimedOut, NotFound
from cloud.management import ManagementService
from cloud.settings import CloudSettings
from cloud.storage import open_storage
from cloud.storage.base import CommandRecord, EventOutcome, device_id_for
from cloud.storage.sql import SqlRegistry, SqlTelemetry
from cloud.storage.sql_schema import hubs
from tests.common import T0, device, event, status
from wire.capabilities import CommandInvalid
from wire.contract import (
    Command,
    CommandResult,
    CommandStatus,
    GroupInfo,
    HubRequest,
    PairingEvent,
)

HUB = "hub-s"
IEEE = "aa:bb:cc:dd:ee:ff:00:11"
DEV = "hub-s-aabbccddeeff0011"


def ingest_events(registry: SqlRegistry, *events) -> list[EventOutcome]:
    with registry.ingest() as tx:
        return [tx.event(e).outcome for e in events]


def test_device_ids_are_readable_and_unique_per_hub():
    assert device_id_for("hub-1", "00:12:4B:00:01:02:03:04") == "hub-1-00124b0001020304"
    assert device_id_for("hub-2", "00:12:4b:00:01:02:03:04") != device_id_for(
        "hub-1", "00:12:4b:00:01:02:03:04")


def test_ledger_deduplicates_counts_gaps_and_keeps_state(registry: SqlRegistry):
    with registry.ingest() as tx:
        tx.hub_status(status(HUB))
        tx.device_info(device(HUB, IEEE, {"switch": {"on": False}}))
    S, D, U = EventOutcome.STORED, EventOutcome.DUPLICATE, EventOutcome.UNKNOWN_DEVICE
    assert ingest_events(registry, event(HUB, 1, IEEE, value=True)) == [S]
    assert ingest_events(registry, event(HUB, 1, IEEE), event(HUB, 3, IEEE, value=False)) == [D, S]
    hub = registry.get_hub(HUB)
    assert hub is not None
    assert (hub.events_received, hub.events_stored, hub.duplicates, hub.gaps, hub.last_seq) == (
        3, 2, 1, 1, 3)
    # an unknown device's event is kept as a dead letter: its seq is not a gap either
    assert ingest_events(registry, event(HUB, 4, "00:00:00:00:00:00:00:01")) == [U]
    assert ingest_events(registry, event(HUB, 5, IEEE, value=True)) == [S]
    assert ingest_events(registry, event(HUB, 2, IEEE, value=False)) == [S]  # late: fills the gap
    hub = registry.get_hub(HUB)
    assert hub is not None and (hub.gaps, hub.last_seq) == (0, 5)
    dev = registry.get_device(DEV)
    assert dev is not None and dev.capabilities == {"switch": {"on": True}}


def test_a_replayed_older_device_snapshot_does_not_roll_state_back(registry: SqlRegistry):
    snapshot = device(HUB, IEEE, {"switch": {"on": False}, "level": {"level": 1.0}}, ts=T0)
    with registry.ingest() as tx:
        tx.device_info(snapshot)
    ingest_events(registry, event(HUB, 1, IEEE, value=True))  # at T0 + 1 s
    with registry.ingest() as tx:
        tx.device_info(snapshot)  # the retained message again, after a resubscribe
    dev = registry.get_device(DEV)
    assert dev is not None and dev.capabilities == {"switch": {"on": True}, "level": {"level": 1.0}}
    with registry.ingest() as tx:  # a newer snapshot wins, and drops what the device lost
        tx.device_info(device(HUB, IEEE, {"switch": {"on": False}}, ts=T0 + timedelta(seconds=5)))
    dev = registry.get_device(DEV)
    assert dev is not None and dev.capabilities == {"switch": {"on": False}}


def test_one_failed_transaction_changes_nothing(registry: SqlRegistry):
    with pytest.raises(RuntimeError), registry.ingest() as tx:
        tx.hub_status(status(HUB))
        tx.device_info(device(HUB, IEEE))
        raise RuntimeError("crash before commit")
    assert registry.get_hub(HUB) is None and registry.list_devices() == []


def test_telemetry_keeps_value_types_order_and_window(registry: SqlRegistry):
    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE, {}))
    values = [True, 3, 2.5, "heat", None]
    ingest_events(registry, *(event(HUB, i + 1, IEEE, "x", "y", v) for i, v in enumerate(values)))
    telemetry = SqlTelemetry(registry.engine)
    samples = telemetry.query(DEV, "x", "y")
    assert [s.value for s in samples] == values
    assert [type(s.value) for s in samples] == [type(v) for v in values]
    assert all(s.ts.tzinfo is not None for s in samples)
    assert samples[0].ts == T0 + timedelta(seconds=1)
    assert [s.value for s in telemetry.query(DEV, "x", "y", limit=2)] == ["heat", None]
    window = telemetry.query(DEV, "x", "y", since=T0 + timedelta(seconds=2),
                             until=T0 + timedelta(seconds=3))
    assert [s.value for s in window] == [3, 2.5]
    assert telemetry.query(DEV, "x", "other") == []


def test_hub_offline_overlays_device_availability(registry: SqlRegistry):
    with registry.ingest() as tx:
        tx.hub_status(status(HUB, online=False))
        tx.device_info(device(HUB, IEEE))  # a retained "available" read after the will
    dev = registry.get_device(DEV)
    assert dev is not None and (dev.available, dev.availability_reason) == (False, "hub offline")
    with registry.ingest() as tx:
        tx.hub_status(status(HUB, online=True))
    dev = registry.get_device(DEV)
    assert dev is not None and (dev.available, dev.availability_reason) == (True, None)


def test_a_hubs_group_table_outlives_its_last_will(registry: SqlRegistry):
    hall = GroupInfo.model_validate({"group_id": 7, "name": "Hall",
                                     "members": [{"ieee": IEEE, "endpoint": 1}],
                                     "scenes": [{"scene_id": 1, "name": "Evening"}]})
    assert registry.hub_groups(HUB) is None  # no such hub
    with registry.ingest() as tx:
        tx.hub_status(status(HUB))  # a hub before groups (or its radio down): nothing said
    assert registry.hub_groups(HUB) is None
    with registry.ingest() as tx:
        tx.hub_status(status(HUB, groups=[hall]))
    assert registry.hub_groups(HUB) == [hall.model_dump(mode="json")]
    hub = registry.get_hub(HUB)
    assert hub is not None and "groups" not in (hub.status or {})  # kept once, in its column
    with registry.ingest() as tx:  # the last will, and a status whose radio is down
        tx.hub_status(status(HUB, online=False, reason="connection lost"))
        tx.hub_status(status(HUB, online=False))
    hub = registry.get_hub(HUB)
    assert hub is not None and hub.online is False
    assert registry.hub_groups(HUB) == [hall.model_dump(mode="json")]
    with registry.ingest() as tx:  # a table said in the same batch as the will that follows it
        tx.hub_status(status(HUB, groups=[]))
        tx.hub_status(status(HUB, online=False))
    assert registry.hub_groups(HUB) == []
    # A status stored before the column was: its table is read from the status.
    with registry.engine.begin() as conn:
        conn.execute(update(hubs).where(hubs.c.id == HUB).values(
            groups=None, status={"hub_id": HUB, "online": True,
                                 "groups": [hall.model_dump(mode="json")]}))
    assert registry.hub_groups(HUB) == [hall.model_dump(mode="json")]


def test_device_removal_and_return(registry: SqlRegistry):
    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE, name="Lamp"))
    with registry.ingest() as tx:
        tx.device_removed(HUB, IEEE)
    assert registry.list_devices() == []
    removed = registry.get_device(DEV)
    assert removed is not None and removed.removed
    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE, name="Lamp 2"))
    assert [d.name for d in registry.list_devices()] == ["Lamp 2"]


def _command(expires_in: float = 30) -> CommandRecord:
    now = datetime.now(UTC)
    return CommandRecord(id="c1", hub_id=HUB, device_id=DEV, ieee=IEEE, capability="switch",
                         command="on", args={}, status="pending", created_at=now,
                         expires_at=now + timedelta(seconds=expires_in))


def test_command_results_apply_once_and_only_from_the_right_hub(registry: SqlRegistry):
    registry.add_command(_command())
    with registry.ingest() as tx:
        assert tx.command_result(CommandResult(id="c1", hub_id="other", status="failed")) is None
        assert tx.command_result(CommandResult(id="nope", hub_id=HUB, status="failed")) is None
        done = tx.command_result(CommandResult(id="c1", hub_id=HUB, status="succeeded",
                                               state={"switch": {"on": True}}))
    assert done is not None and done.status == "succeeded"
    with registry.ingest() as tx:  # a redelivered or contradicting answer changes nothing
        again = tx.command_result(CommandResult(id="c1", hub_id=HUB, status="failed"))
    assert again is not None and again.status == "succeeded"
    stored = registry.get_command("c1")
    assert stored is not None and stored.state == {"switch": {"on": True}}


async def test_command_service_validates_and_reports_timeouts(registry: SqlRegistry):
    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE, {"switch": {"on": False}}))
    sent: list[tuple[str, bytes]] = []
    settings = CloudSettings(command_timeout=0.05, command_ttl=0.01)
    service = CommandService(settings, registry, lambda topic, payload: sent.append(
        (topic, payload)) is None)
    with pytest.raises(NotFound):
        await service.execute("hub-s-0000000000000000", "switch", "on")
    with pytest.raises(CommandInvalid):
        await service.execute(DEV, "switch", "on", {"unexpected": 1})
    assert sent == []
    with pytest.raises(CommandTimedOut) as caught:
        await service.execute(DEV, "switch", "on")
    (topic, payload), = sent
    assert topic == "spoke/v1/hubs/hub-s/commands"
    assert Command.model_validate_json(payload).id == caught.value.command.id
    record = await service.get(caught.value.command.id)
    assert record.status == CommandStatus.PENDING  # expiry passed, but within the grace period
    registry.mark_command_timeout(record.id, datetime.now(UTC) + timedelta(seconds=1))
    assert (await service.get(record.id)).status == CommandStatus.TIMEOUT
    with registry.ingest() as tx:  # a result still lands after the timeout
        tx.command_result(CommandResult(id=record.id, hub_id=HUB, status="succeeded"))
    assert (await service.get(record.id)).status == CommandStatus.SUCCEEDED


def _pairing(step: str, hub_id: str = HUB, seconds: float = 0, **kw) -> PairingEvent:
    return PairingEvent(hub_id=hub_id, step=step, ts=T0 + timedelta(seconds=seconds), **kw)


def test_pairing_events_are_stored_once_in_order_and_pruned(registry: SqlRegistry,
                                                            monkeypatch: pytest.MonkeyPatch):
    assert registry.last_pairing_event_id(HUB) == 0 and registry.pairing_events(HUB) == []
    until = T0 + timedelta(seconds=60)
    with registry.ingest() as tx:
        assert tx.pairing_event(_pairing("permit_open", until=until, detail="open for 60 s"))
        assert tx.pairing_event(_pairing("joined", seconds=1, ieee=IEEE))
        assert tx.pairing_event(_pairing("joined", hub_id="hub-other", seconds=1, ieee=IEEE))
        assert tx.pairing_event(_pairing("adopted", seconds=2, ieee=IEEE, capabilities=["switch"],
                                         manufacturer="Acme", model="Plug 1"))
    with registry.ingest() as tx:  # redelivered, or ingested by a second cloud process too
        assert not tx.pairing_event(_pairing("joined", seconds=1, ieee=IEEE))
    opened, joined, adopted = registry.pairing_events(HUB)
    assert [e.step for e in (opened, joined, adopted)] == ["permit_open", "joined", "adopted"]
    assert opened.id < joined.id < adopted.id == registry.last_pairing_event_id(HUB)
    assert opened.until == until and opened.detail == "open for 60 s" and opened.ieee is None
    assert (adopted.capabilities, adopted.model, adopted.ts) == (["switch"], "Plug 1",
                                                                 T0 + timedelta(seconds=2))
    assert [e.step for e in registry.pairing_events(HUB, after=opened.id)] == ["joined",
                                                                               "adopted"]
    assert registry.pairing_events(HUB, after=opened.id, limit=1) == [joined]
    assert [e.step for e in registry.pairing_events("hub-other")] == ["joined"]

    monkeypatch.setattr("cloud.storage.sql_ingest.PAIRING_EVENTS_KEPT", 4)
    with registry.ingest() as tx:
        for i in range(3):
            tx.pairing_event(_pairing("configure_reporting", seconds=10 + i, ieee=IEEE))
    kept = registry.pairing_events(HUB)
    assert [e.step for e in kept] == ["adopted"] + ["configure_reporting"] * 3
    assert kept[0] == adopted and kept[-1].id == registry.last_pairing_event_id(HUB)
    assert len(registry.pairing_events("hub-other")) == 1  # other hubs keep theirs


async def test_rename_and_remove_wait_for_a_confirmation_stored_elsewhere(registry: SqlRegistry):
    """The hub's confirmation may be ingested by another cloud process: the wait reads storage."""
    with registry.ingest() as tx:
        tx.hub_status(status(HUB))
        tx.device_info(device(HUB, IEEE, name="Lamp"))
    sent: list[HubRequest] = []
    timers: list[threading.Timer] = []

    def hub_answers(topic: str, payload: bytes) -> bool:
        request = HubRequest.model_validate_json(payload)
        sent.append(request)

        def confirm() -> None:  # what another process's ingest stores, without waking us
            with registry.ingest() as tx:
                if request.action == "rename":
                    tx.device_info(device(HUB, IEEE, name=request.name))
                elif request.action == "remove":
                    tx.device_removed(HUB, IEEE)

        timers.append(threading.Timer(0.25, confirm))
        timers[-1].start()
        return True

    settings = CloudSettings(command_timeout=3.0)
    management = ManagementService(settings, registry,
                                   CommandService(settings, registry, hub_answers))
    try:
        renamed = await management.rename(DEV, "Hall")
        assert renamed.name == "Hall" and (sent[-1].action, sent[-1].ieee) == ("rename", IEEE)
        await management.remove(DEV)
        assert sent[-1].action == "remove" and registry.list_devices() == []
        with pytest.raises(NotFound):
            await management.remove(DEV)
    finally:
        for timer in timers:
            timer.join()

    with registry.ingest() as tx:
        tx.device_info(device(HUB, IEEE))
    silent = ManagementService(CloudSettings(command_timeout=0.3), registry, CommandService(
        settings, registry, lambda _topic, _payload: True))
    with pytest.raises(HubRequestTimedOut, match="did not confirm the new name") as caught:
        await silent.rename(DEV, "Never")
    assert caught.value.request_id
    with registry.ingest() as tx:
        tx.hub_status(status(HUB, online=False))
    with pytest.raises(HubOffline, match="hub 'hub-s' is offline"):
        await silent.rename(DEV, "Offline")
    with pytest.raises(HubOffline):
        await silent.open_pairing(HUB, 60)
    with pytest.raises(NotFound):
        await silent.open_pairing("hub-unknown", 60)


def test_tokens_store_only_hashes_and_can_be_revoked(registry: SqlRegistry):
    record, token = create_token(registry, "ci")
    assert token.startswith("spk_") and len(token) > 40
    assert verify_token(registry, token) == record
    assert verify_token(registry, token + "x") is None and verify_token(registry, "") is None
    with registry.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert stored == [hash_token(token)] and token not in stored
    chosen = "demo-Token-2026-kept-in-a-password-manager"
    demo = ensure_token(registry, chosen, name="demo")
    assert ensure_token(registry, chosen) == demo
    assert [t.name for t in list_tokens(registry)] == ["ci", "demo"]
    assert revoke_token(registry, record.id) and not revoke_token(registry, record.id)
    assert verify_token(registry, token) is None
    revoke_token(registry, demo.id)
    with pytest.raises(ValueError, match="revoked"):
        ensure_token(registry, chosen)


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)  # checked before it is stored
@pytest.mark.parametrize("weak", ["secret", "demo-token", "passwordpasswordpassword",
                                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "12121212121212121212121"])
def test_a_token_chosen_by_hand_must_be_strong(registry: SqlRegistry, weak: str):
    with pytest.raises(AccessError):
        ensure_token(registry, weak)
    assert list_tokens(registry) == []


def test_tokens_belong_to_an_account_have_scopes_and_expire(registry: SqlRegistry):
    with pytest.raises(AccessError, match="no account 'home'"):
        create_token(registry, "app", account="home", scopes=["read"])
    create_account(registry, "home")
    with pytest.raises(AccessError, match="exists already"):
        create_account(registry, "home")
    with pytest.raises(AccessError, match="invalid account name"):
        create_account(registry, "no spaces/slashes")
    viewer, _ = create_token(registry, "viewer", account="home", scopes=["read"])
    operator, _ = create_token(registry, "operator", account="home", scopes=["control"])
    owner, _ = create_token(registry, "owner", scopes=["admin"])
    assert viewer.scopes == {"read"} and operator.scopes == {"read", "control"}
    assert owner.scopes == {"read", "control", "admin"} and owner.account == "default"
    with pytest.raises(AccessError, match="unknown scope"):
        create_token(registry, "x", scopes=["root"])
    assert [t.name for t in list_tokens(registry, "home")] == ["viewer", "operator"]
    assert not revoke_token(registry, owner.id, account="home")  # not home's to revoke

    now = datetime.now(UTC)
    with pytest.raises(AccessError, match="future"):
        create_token(registry, "past", expires_at=now - timedelta(seconds=1))
    brief, token = create_token(registry, "brief", account="home", scopes=["read"],
                                expires_at=now + parse_duration("1h"))
    assert verify_token(registry, token, now) == brief
    assert verify_token(registry, token, now + timedelta(hours=1)) is None
    assert parse_duration("30d") == timedelta(days=30) and parse_duration("2w").days == 14
    for bad in ("30", "0d", "d", "1y", "-1d"):
        with pytest.raises(AccessError):
            parse_duration(bad)


def test_settings_from_env_toml_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SPOKE_"):
            monkeypatch.delenv(name)
    defaults = CloudSettings()
    assert (defaults.database_url, defaults.cloud_port, defaults.command_timeout) == (
        "sqlite:///.spoke/cloud.db", 8000, 10)
    assert defaults.mqtt_client_id != CloudSettings().mqtt_client_id
    (tmp_path / "other.toml").write_text(
        '[cloud]\nmqtt_port = 1884\ncommand_ttl = 12.5\n[hub]\nmqtt_port = 1\n')
    monkeypatch.setenv("SPOKE_CONFIG", str(tmp_path / "other.toml"))
    monkeypatch.setenv("SPOKE_CLOUD_PORT", "9001")
    monkeypatch.setenv("SPOKE_MQTT_PASSWORD", "pa55word-value")
    settings = CloudSettings()
    assert (settings.mqtt_port, settings.command_ttl, settings.cloud_port) == (1884, 12.5, 9001)
    assert "pa55word-value" not in repr(settings)
    monkeypatch.setenv("SPOKE_MQTT_PORT", "1999")  # the environment wins over the file
    assert CloudSettings().mqtt_port == 1999


def test_default_sqlite_database_is_created_in_wal_mode(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    storage = open_storage(CloudSettings(database_url="sqlite:///.spoke/cloud.db"))
    try:
        storage.registry.ping()
        assert (tmp_path / ".spoke" / "cloud.db").exists()
        with storage.registry.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        storage.close()
