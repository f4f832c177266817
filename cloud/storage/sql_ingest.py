"""The SQL ingest transaction: the event ledger (dedup, gaps), hub counters, device state and
pairing progress."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.storage.base import (
    CommandRecord,
    EventOutcome,
    EventResult,
    TelemetryPoint,
    device_id_for,
)
from cloud.storage.sql_schema import (
    PAIRING_EVENTS_KEPT,
    commands,
    devices,
    events,
    hubs,
    pairing_events,
)
from wire.contract import (
    CommandResult,
    CommandStatus,
    DeviceInfo,
    Event,
    HubStatus,
    PairingEvent,
    Value,
)

_OPEN_STATUSES = (CommandStatus.PENDING.value, CommandStatus.TIMEOUT.value)


def command_record(row: Row[Any]) -> CommandRecord:
    m = row._mapping
    return CommandRecord(**{k: m[k] for k in commands.c.keys()})


def _value_columns(value: Value) -> dict[str, Any]:
    number = float(value) if isinstance(value, bool | int | float) else None
    return {"value_num": number, "value_json": json.dumps(value)}


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _merge_state(info: DeviceInfo, row: dict[str, Any] | None) -> dict[str, dict[str, Value]]:
    """The device's state from a DeviceInfo, unless what we hold is newer than its snapshot.

    Retained device messages are replayed on every (re)subscription and may predate events the
    cloud already applied; then the newer values we hold win and the snapshot only adds names.
    """
    state = {cap: dict(attrs) for cap, attrs in info.capabilities.items()}
    if row is None or row["state_at"] is None or info.ts >= row["state_at"]:
        return state
    for cap, attrs in (row["capabilities"] or {}).items():
        if cap in state:
            state[cap].update(attrs)
    return state


class SqlIngestTx:
    """One ingest transaction on one connection; hub and device rows are cached and written once."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._now = datetime.now(UTC)
        self._hubs: dict[str, dict[str, Any]] = {}
        self._devices: dict[str, dict[str, Any] | None] = {}
        self._dirty_hubs: set[str] = set()
        self._dirty_devices: set[str] = set()
        self._pairing_hubs: set[str] = set()  # hubs with new pairing events, pruned at flush

    # Ingest operations ---------------------------------------------------------------------------
    def hub_status(self, status: HubStatus) -> None:
        hub = self._hub(status.hub_id)
        if hub["online"] is not status.online:
            hub["online_changed_at"] = self._now
        hub["online"] = status.online
        hub["status"] = status.model_dump(mode="json")

    def device_info(self, info: DeviceInfo) -> None:
        self._hub(info.hub_id)
        device_id = device_id_for(info.hub_id, info.ieee)
        row = self._device(device_id)
        changed_at = info.availability_changed_at
        if changed_at is None:
            unchanged = row is not None and row["available"] == info.available
            changed_at = row["availability_changed_at"] if unchanged and row else self._now
        self._devices[device_id] = {
            "id": device_id,
            "hub_id": info.hub_id,
            "ieee": info.ieee,
            "nwk": info.nwk,
            "manufacturer": info.manufacturer,
            "model": info.model,
            "name": info.name,
            "quirk": info.quirk,
            "power_source": info.power_source,
            "available": info.available,
            "availability_reason": info.availability_reason,
            "availability_changed_at": changed_at,
            "capabilities": _merge_state(info, row),
            "state_at": max(info.ts, row["state_at"]) if row and row["state_at"] else info.ts,
            "updated_at": self._now,
            "removed": False,
            "_new": row is None,
        }
        self._dirty_devices.add(device_id)

    def device_removed(self, hub_id: str, ieee: str) -> None:
        self._hub(hub_id)
        device_id = device_id_for(hub_id, ieee)
        row = self._device(device_id)
        if row is not None and not row["removed"]:
            row["removed"] = True
            row["updated_at"] = self._now
            self._dirty_devices.add(device_id)

    def event(self, ev: Event) -> EventResult:
        hub = self._hub(ev.hub_id)
        hub["events_received"] += 1
        device_id = device_id_for(ev.hub_id, ev.ieee)
        device = self._device(device_id)
        last = hub["last_seq"]
        if device is None or device["removed"]:
            return EventResult(outcome=EventOutcome.UNKNOWN_DEVICE, gap=self._advance(hub, ev.seq))
        point = TelemetryPoint(
            hub_id=ev.hub_id,
            seq=ev.seq,
            device_id=device_id,
            capability=ev.capability,
            attribute=ev.attribute,
            ts=ev.ts,
            value=ev.value,
            unit=ev.unit,
        )
        row = {
            "hub_id": ev.hub_id,
            "seq": ev.seq,
            "device_id": device_id,
            "capability": ev.capability,
            "attribute": ev.attribute,
            "ts": ev.ts,
            "unit": ev.unit,
            "received_at": self._now,
            **_value_columns(ev.value),
        }
        if not _insert_ignore(self._conn, events, row, ("hub_id", "seq")):
            hub["duplicates"] += 1
            return EventResult(outcome=EventOutcome.DUPLICATE)
        hub["events_stored"] += 1
        gap = 0
        if last is None or ev.seq > last:
            gap = self._advance(hub, ev.seq)
            device["capabilities"].setdefault(ev.capability, {})[ev.attribute] = ev.value
            device["state_at"] = _later(device["state_at"], ev.ts)
            self._dirty_devices.add(device_id)
        elif hub["gaps"] > 0:
            hub["gaps"] -= 1  # a late event fills a hole counted earlier; it is not current state
        return EventResult(outcome=EventOutcome.STORED, gap=gap, point=point)

    def command_result(self, result: CommandResult) -> CommandRecord | None:
        self._hub(result.hub_id)
        row = self._conn.execute(
            select(commands).where(commands.c.id == result.id).with_for_update()
        ).first()
        if row is None or row.hub_id != result.hub_id:
            return None
        if row.status in _OPEN_STATUSES:
            self._conn.execute(
                update(commands)
                .where(commands.c.id == result.id)
                .values(
                    status=result.status.value,
                    state=result.state,
                    error=result.error,
                    error_code=result.error_code,
                    completed_at=result.ts,
                    duration_ms=result.duration_ms,
                )
            )
            if result.state:
                device = self._device(row.device_id)
                if device is not None:
                    for cap, attrs in result.state.items():
                        device["capabilities"].setdefault(cap, {}).update(attrs)
                    device["state_at"] = _later(device["state_at"], result.ts)
                    self._dirty_devices.add(row.device_id)
            row = self._conn.execute(select(commands).where(commands.c.id == result.id)).one()
        return command_record(row)

    def pairing_event(self, event: PairingEvent) -> bool:
        self._hub(event.hub_id)
        digest = hashlib.sha256(event.model_dump_json().encode()).hexdigest()[:32]
        row = {
            "hub_id": event.hub_id,
            "digest": digest,
            "ts": event.ts,
            "step": event.step,
            "ieee": event.ieee,
            "ok": event.ok,
            "detail": event.detail,
            "until": event.until,
            "capabilities": event.capabilities,
            "manufacturer": event.manufacturer,
            "model": event.model,
            "received_at": self._now,
        }
        if not _insert_ignore(self._conn, pairing_events, row, ("hub_id", "digest")):
            return False
        self._pairing_hubs.add(event.hub_id)
        return True

    # Caching and flushing -------------------------------------------------------------------------
    def _hub(self, hub_id: str) -> dict[str, Any]:
        hub = self._hubs.get(hub_id)
        if hub is None:
            _insert_ignore(
                self._conn,
                hubs,
                {"id": hub_id, "events_received": 0, "events_stored": 0, "duplicates": 0,
                 "gaps": 0},
                ("id",),
            )
            row = self._conn.execute(
                select(hubs).where(hubs.c.id == hub_id).with_for_update()
            ).one()
            hub = dict(row._mapping)
            self._hubs[hub_id] = hub
        hub["last_seen"] = self._now
        self._dirty_hubs.add(hub_id)
        return hub

    def _device(self, device_id: str) -> dict[str, Any] | None:
        if device_id not in self._devices:
            row = self._conn.execute(
                select(devices).where(devices.c.id == device_id).with_for_update()
            ).first()
            self._devices[device_id] = dict(row._mapping) if row else None
        return self._devices[device_id]

    @staticmethod
    def _advance(hub: dict[str, Any], seq: int) -> int:
        last = hub["last_seq"]
        if last is not None and seq <= last:
            return 0
        gap = seq - last - 1 if last is not None else 0  # the first seq seen is the baseline
        hub["gaps"] += gap
        hub["last_seq"] = seq
        return gap

    def flush(self) -> None:
        for hub_id in self._dirty_hubs:
            values = {k: v for k, v in self._hubs[hub_id].items() if k != "id"}
            self._conn.execute(update(hubs).where(hubs.c.id == hub_id).values(**values))
        for device_id in self._dirty_devices:
            row = self._devices[device_id]
            if row is None:
                continue
            values = {k: v for k, v in row.items() if not k.startswith("_")}
            if row.get("_new"):
                if _insert_ignore(self._conn, devices, values, ("id",)):
                    continue
            self._conn.execute(update(devices).where(devices.c.id == device_id).values(**values))
        for hub_id in self._pairing_hubs:
            self._prune_pairing(hub_id)

    def _prune_pairing(self, hub_id: str) -> None:
        """Keep only the hub's newest ``PAIRING_EVENTS_KEPT`` pairing events."""
        t = pairing_events.c
        oldest_kept = self._conn.execute(
            select(t.id).where(t.hub_id == hub_id).order_by(t.id.desc())
            .offset(PAIRING_EVENTS_KEPT - 1).limit(1)
        ).scalar()
        if oldest_kept is not None:
            self._conn.execute(delete(pairing_events).where(t.hub_id == hub_id)
                               .where(t.id < oldest_kept))


def _insert_ignore(
    conn: Connection, table: Table, values: dict[str, Any], keys: tuple[str, ...]
) -> bool:
    """Insert a row unless one with the same ``keys`` exists; True when inserted."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        dml = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = (
            dml(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(table.c[keys[0]])  # rowcount is not reliable with every driver
        )
        return conn.execute(stmt).first() is not None
    where = and_(*(table.c[k] == values[k] for k in keys))
    if conn.execute(select(func.count()).select_from(table).where(where)).scalar():
        return False
    conn.execute(insert(table).values(**values))
    return True
