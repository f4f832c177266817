"""The SQL ingest transaction: the event ledger (per hub and epoch: dedup, gaps, the committed mark),
hub counters, device state, pairing progress, dead letters, and the telemetry export queue."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    Column,
    Connection,
    Row,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.storage.base import (
    AckDue,
    CommandRecord,
    EventOutcome,
    EventResult,
    TelemetryPoint,
    device_id_for,
    event_point,
)
from cloud.storage.sql_schema import (
    PAIRING_EVENTS_KEPT,
    commands,
    dead_letters,
    devices,
    events,
    hubs,
    ledgers,
    pairing_events,
    telemetry_outbox,
)
from wire.contract import (
    LEGACY_EPOCH,
    CommandResult,
    CommandStatus,
    DeviceInfo,
    Event,
    HubStatus,
    PairingEvent,
    Value,
)

# A sequence number this far beyond what a ledger has committed is not from the hub (whose outbox
# holds at most a million events): it is refused rather than allowed to become "current state".
MAX_AHEAD = 2_000_000
_MARK_STEP = 1000  # sequence numbers read per query while advancing a mark

_OPEN_STATUSES = (CommandStatus.PENDING.value, CommandStatus.TIMEOUT.value)
_IN_CHUNK = 500  # ids per IN (...) list: far below every database's limit on bound parameters
_EVENT_KEY = ("hub_id", "epoch", "seq")
_LEDGER_KEY = ("hub_id", "epoch")
# The columns an ingest reads: a hub's status and group table are only ever replaced whole, and a
# device's description only by a new one (written whole), so none is decoded for every event.
_HUB_READ = tuple(c for c in hubs.c if c.name not in ("status", "groups"))
_DEVICE_READ = tuple(devices.c[name] for name in (
    "id", "hub_id", "available", "availability_changed_at", "capabilities", "state_at", "removed"))


def _next_seqs() -> Any:
    """The committed sequence numbers of one ledger above its mark (stored or dead letters), in
    order: built once, so each use only binds its values."""
    parts = [select(t.c.seq.label("seq")).where(t.c.hub_id == bindparam("hub"),
                                                t.c.epoch == bindparam("epoch"),
                                                t.c.seq > bindparam("mark"))
             for t in (events, dead_letters)]
    both = union_all(*parts).subquery()
    return select(both.c.seq).order_by(both.c.seq).limit(_MARK_STEP)


_NEXT_SEQS = _next_seqs()
# The rows a transaction reads and locks, by a list of ids (an expanding parameter): built once.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_LOCK_HUBS = (select(*_HUB_READ).where(hubs.c.id.in_(_IDS)).order_by(hubs.c.id)
              .with_for_update())
_LOCK_DEVICES = (select(*_DEVICE_READ).where(devices.c.id.in_(_IDS)).order_by(devices.c.id)
                 .with_for_update())
_LOCK_LEDGERS = (select(ledgers).where(ledgers.c.hub_id.in_(_IDS))
                 .order_by(ledgers.c.hub_id, ledgers.c.epoch).with_for_update())


def command_record(row: Row[Any]) -> CommandRecord:
    m = row._mapping
    return CommandRecord(**{k: m[k] for k in commands.c.keys()})


def _value_columns(value: Value) -> dict[str, Any]:
    kind = type(value)
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return {"value_num": value, "value_json": float.__repr__(value)}  # what json.dumps says
    number = float(value) if isinstance(value, bool | int | float) else None
    return {"value_num": number, "value_json": json.dumps(value)}


def _event_row(ev: Event, epoch: str, device_id: str, received_at: datetime) -> dict[str, Any]:
    return {"hub_id": ev.hub_id, "epoch": epoch, "seq": ev.seq, "device_id": device_id,
            "capability": ev.capability, "attribute": ev.attribute, "ts": ev.ts, "unit": ev.unit,
            "received_at": received_at, **_value_columns(ev.value)}


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


def _outbox_row(point: TelemetryPoint, queued_at: datetime) -> dict[str, Any]:
    return {"hub_id": point.hub_id, "seq": point.seq, "device_id": point.device_id,
            "capability": point.capability, "attribute": point.attribute, "ts": point.ts,
            "value_json": json.dumps(point.value), "unit": point.unit, "queued_at": queued_at}


class KnownRows:
    """Keys of hub and ledger rows seen to exist: their transactions skip inserting them. Only a
    hint (rows are never deleted, but a transaction that made one may roll back, and other
    processes share the database): every row is still read, and one that is missing is made then.
    """

    def __init__(self) -> None:
        self.hubs: set[str] = set()
        self.ledgers: set[tuple[str, str]] = set()


def _changed(row: dict[str, Any], read: dict[str, Any] | None, keys: tuple[str, ...]
             ) -> dict[str, Any] | None:
    """The row's keys and the columns that differ from what was read (all of them when nothing
    was), None when none differ."""
    if read is None:
        return {k: v for k, v in row.items() if not k.startswith("_")}
    changed = {k: v for k, v in row.items()
               if not k.startswith("_") and k not in keys and read.get(k) != v}
    if not changed:
        return None
    changed.update((k, row[k]) for k in keys)
    return changed


class SqlIngestTx:
    """One ingest transaction on one connection; hub and device rows are cached and written once.

    With ``export_telemetry`` every event stored also queues its point in ``telemetry_outbox`` (one
    insert of all the batch's points at flush), committed or lost with the event itself.
    """

    def __init__(self, conn: Connection, *, max_ahead: int = MAX_AHEAD,
                 export_telemetry: bool = False, known: KnownRows | None = None) -> None:
        self._conn = conn
        self._known = known if known is not None else KnownRows()
        # The hub and ledger rows as read, so that flush writes only the columns that changed.
        self._hubs_read: dict[str, dict[str, Any]] = {}
        self._ledgers_read: dict[tuple[str, str], dict[str, Any]] = {}
        self._outbox: list[dict[str, Any]] | None = [] if export_telemetry else None
        self._now = datetime.now(UTC)
        self._max_ahead = max_ahead
        self._hubs: dict[str, dict[str, Any]] = {}
        self._devices: dict[str, dict[str, Any] | None] = {}
        self._ledgers: dict[tuple[str, str], dict[str, Any]] = {}
        self._dirty_hubs: set[str] = set()
        self._dirty_devices: set[str] = set()
        # Devices whose state alone (capabilities, state_at) changed: only those columns are written.
        self._state_devices: set[str] = set()
        self._pairing_hubs: set[str] = set()  # hubs with new pairing events, pruned at flush
        self._asked: set[str] = set()  # hubs whose status asked where their ledger stands
        self._acked_results: dict[str, list[str]] = {}
        self._marks_before: dict[tuple[str, str], int] = {}
        # Ledgers read (and whether this transaction made them) that no message has used yet.
        self._loaded: dict[tuple[str, str], tuple[dict[str, Any], bool]] = {}
        self._letters: dict[str, set[str]] = {}  # hub -> devices with events as dead letters

    def lock_hubs(self, hub_ids: Iterable[str]) -> None:
        """Lock the rows of the hubs this transaction will touch, in one order: on PostgreSQL,
        concurrent batches with the same hubs in other orders then wait for each other instead of
        deadlocking (SQLite's write lock already lets one writer in at a time). New hubs get their
        row first; all of it in one insert and one select, whatever the number of hubs."""
        wanted = sorted(set(hub_ids))
        missing = [h for h in wanted if h not in self._hubs]
        if missing:
            self._read_hubs(missing, [h for h in missing if h not in self._known.hubs])
            if lost := [h for h in missing if h not in self._hubs]:  # known, yet not there
                self._read_hubs(lost, lost)
        for hub_id in wanted:
            self._hub(hub_id)

    def _read_hubs(self, hub_ids: Sequence[str], new: Sequence[str]) -> None:
        """Make the rows of the ``new`` hubs where they are missing, then read (and lock) all."""
        if new:
            _insert_ignore_many(self._conn, hubs, [
                {"id": h, "events_received": 0, "events_stored": 0, "duplicates": 0, "gaps": 0}
                for h in new], ("id",))
        for chunk in _chunks(hub_ids):
            for row in _dicts(self._conn.execute(_LOCK_HUBS, {"ids": list(chunk)})):
                self._hubs[row["id"]] = row
                self._hubs_read[row["id"]] = dict(row)
                self._known.hubs.add(row["id"])

    # Ingest operations ---------------------------------------------------------------------------
    def hub_status(self, status: HubStatus) -> None:
        hub = self._hub(status.hub_id)
        if hub["online"] is not status.online:
            hub["online_changed_at"] = self._now
        hub["online"] = status.online
        hub["status"] = status.model_dump(mode="json", exclude={"groups"})
        if status.groups is not None:  # the last will says nothing of them: the table is kept
            hub["groups"] = [g.model_dump(mode="json") for g in status.groups]
        if status.epoch is not None:
            hub["epoch"] = status.epoch  # the hub says which ledger is current
            ledger = self._ledger(status.hub_id, status.epoch)
            if status.dropped_upto and status.dropped_upto > ledger["mark"]:
                # The hub's outbox bound dropped these before we had them: stop waiting.
                ledger["mark"] = min(status.dropped_upto, status.last_seq or status.dropped_upto)
            if status.online:
                self._asked.add(status.hub_id)  # every status is answered with an ack

    def statuses_ahead(self, statuses: Sequence[HubStatus]) -> None:
        """The ledgers the statuses name, read in one select (a thousand hubs send a few hundred
        statuses a second: one query each was a tenth of the ingest's time)."""
        self._load_ledgers(dict.fromkeys((s.hub_id, s.epoch) for s in statuses
                                         if s.epoch is not None))

    def device_info(self, info: DeviceInfo) -> list[TelemetryPoint]:
        self._hub(info.hub_id)
        device_id = device_id_for(info.hub_id, info.ieee)
        row = self._device(device_id)
        known = row is not None and not row["removed"]
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
            "constraints": {instance: {attr: limits.model_dump() for attr, limits in fields.items()}
                            for instance, fields in info.constraints.items()},
            "state_at": max(info.ts, row["state_at"]) if row and row["state_at"] else info.ts,
            "updated_at": self._now,
            "removed": False,
            "_new": row is None,
        }
        self._dirty_devices.add(device_id)
        return [] if known else self._promote(info.hub_id, info.ieee, device_id)

    def device_infos(self, infos: Sequence[DeviceInfo]) -> list[TelemetryPoint]:
        """``device_info`` of each, in order, with the devices' rows read in one select."""
        self.lock_hubs(info.hub_id for info in infos)
        self._load_devices(device_id_for(info.hub_id, info.ieee) for info in infos)
        return [point for info in infos for point in self.device_info(info)]

    def _promote(self, hub_id: str, ieee: str, device_id: str) -> list[TelemetryPoint]:
        """Events kept because their device was not known yet become events now."""
        if ieee not in self._lettered(hub_id):
            return []
        self._letters[hub_id].discard(ieee)
        letters = self._conn.execute(
            select(dead_letters.c.id, dead_letters.c.payload).where(
                dead_letters.c.hub_id == hub_id, dead_letters.c.ieee == ieee,
                dead_letters.c.kind == "event").order_by(dead_letters.c.id)).all()
        points: list[TelemetryPoint] = []
        device = self._devices[device_id]
        assert device is not None
        hub = self._hub(hub_id)
        for letter_id, payload in letters:
            ev = Event.model_validate_json(payload)
            epoch = ev.epoch or LEGACY_EPOCH
            ledger = self._ledger(hub_id, epoch)
            if _insert_ignore(self._conn, events, _event_row(ev, epoch, device_id, self._now),
                              ("hub_id", "epoch", "seq")):
                hub["events_stored"] += 1
                ledger["stored"] += 1
                points.append(self._stored(ev, device_id))
                if epoch == hub["epoch"] and (device["state_at"] is None
                                              or ev.ts >= device["state_at"]):
                    device["capabilities"].setdefault(ev.capability, {})[ev.attribute] = ev.value
                    device["state_at"] = ev.ts
            self._conn.execute(delete(dead_letters).where(dead_letters.c.id == letter_id))
        return points

    def device_removed(self, hub_id: str, ieee: str) -> None:
        self._hub(hub_id)
        device_id = device_id_for(hub_id, ieee)
        row = self._device(device_id)
        if row is not None and not row["removed"]:
            row["removed"] = True
            row["updated_at"] = self._now
            self._dirty_devices.add(device_id)

    def event(self, ev: Event) -> EventResult:
        return self.events([ev])[0]

    def events(self, evs: Sequence[Event]) -> list[EventResult]:
        """Apply events in order, as ``event`` one by one would, with one insert for all of them.

        What decides each event's fate before the insert (its ledger's mark, its device) does not
        change within the run, so the rows to insert are known first; the unique (hub, epoch, seq)
        then tells which of them were new, and the ledgers are kept in the events' order."""
        self.lock_hubs(ev.hub_id for ev in evs)
        self._load_ledgers(dict.fromkeys((ev.hub_id, ev.epoch or LEGACY_EPOCH) for ev in evs))
        self._load_devices(device_id_for(ev.hub_id, ev.ieee) for ev in evs)
        rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        plan: list[tuple[Event, str, str, bool]] = []  # event, epoch, device id, first of its key
        for ev in evs:
            epoch = ev.epoch or LEGACY_EPOCH
            device_id = device_id_for(ev.hub_id, ev.ieee)
            key = (ev.hub_id, epoch, ev.seq)
            first = key not in rows
            device = self._devices[device_id]
            if (first and device is not None and not device["removed"]
                    and ev.seq <= self._ledger_row(ev.hub_id, epoch)["mark"] + self._max_ahead):
                rows[key] = _event_row(ev, epoch, device_id, self._now)
            plan.append((ev, epoch, device_id, first))
        inserted = _insert_ignore_many(self._conn, events, list(rows.values()), _EVENT_KEY)
        return [self._account(ev, epoch, device_id,
                              first and (ev.hub_id, epoch, ev.seq) in inserted)
                for ev, epoch, device_id, first in plan]

    def _account(self, ev: Event, epoch: str, device_id: str, inserted: bool) -> EventResult:
        """The ledger, hub and device after one event (``inserted``: its row was new)."""
        # A hub already touched in this transaction needs nothing more than its row.
        hub = self._hubs[ev.hub_id] if ev.hub_id in self._dirty_hubs else self._hub(ev.hub_id)
        hub["events_received"] += 1
        ledger = self._ledger(ev.hub_id, epoch)
        if ev.seq > ledger["mark"] + self._max_ahead:
            ledger["refused"] += 1
            return EventResult(outcome=EventOutcome.IMPLAUSIBLE)
        device = self._devices[device_id]
        if device is None or device["removed"]:
            if self._dead_letter(ev.hub_id, epoch, ev.seq, "event", "unknown_device",
                                 ev.model_dump_json(), ieee=ev.ieee):
                return EventResult(outcome=EventOutcome.UNKNOWN_DEVICE,
                                   gap=self._advance(hub, ledger, ev.seq))
            return self._duplicate(hub, ledger)
        if not inserted:
            return self._duplicate(hub, ledger)
        last = ledger["last_seq"]
        hub["events_stored"] += 1
        ledger["stored"] += 1
        gap = self._advance(hub, ledger, ev.seq)
        if last is not None and ev.seq < last and ledger["gaps"] > 0:
            ledger["gaps"] -= 1  # a late event fills a hole counted earlier
            hub["gaps"] = max(0, hub["gaps"] - 1)
        if epoch == hub["epoch"] and (last is None or ev.seq > last):
            device["capabilities"].setdefault(ev.capability, {})[ev.attribute] = ev.value
            device["state_at"] = _later(device["state_at"], ev.ts)
            self._state_devices.add(device_id)
        point = self._stored(ev, device_id) if self._outbox is not None else None
        return EventResult(outcome=EventOutcome.STORED, gap=gap, point=point)

    def invalid_event(self, hub_id: str, epoch: str | None, seq: int, raw: str) -> bool:
        self.lock_hubs((hub_id,))
        epoch = epoch or LEGACY_EPOCH
        hub = self._hub(hub_id)
        ledger = self._ledger(hub_id, epoch)
        if seq > ledger["mark"] + self._max_ahead:
            ledger["refused"] += 1
            return False
        if not self._dead_letter(hub_id, epoch, seq, "event", "invalid_event", raw):
            return False  # no ieee: never taken for a device's event when one is described
        last = ledger["last_seq"]
        self._advance(hub, ledger, seq)
        if last is not None and seq < last and ledger["gaps"] > 0:
            ledger["gaps"] -= 1  # it fills a hole counted when the events after it were stored
            hub["gaps"] = max(0, hub["gaps"] - 1)
        return True

    def _stored(self, ev: Event, device_id: str) -> TelemetryPoint:
        """The point of an event just stored, queued for export when the export is on."""
        point = event_point(ev, device_id)
        if self._outbox is not None:
            self._outbox.append(_outbox_row(point, self._now))
        return point

    def _duplicate(self, hub: dict[str, Any], ledger: dict[str, Any]) -> EventResult:
        hub["duplicates"] += 1
        ledger["duplicates"] += 1
        return EventResult(outcome=EventOutcome.DUPLICATE)

    def command_result(self, result: CommandResult) -> CommandRecord | None:
        self._hub(result.hub_id)
        # Committed either way (applied or kept as a dead letter): the hub may let it go.
        self._acked_results.setdefault(result.hub_id, []).append(result.id)
        row = self._conn.execute(
            select(commands).where(commands.c.id == result.id).with_for_update()
        ).first()
        if row is None or row.hub_id != result.hub_id:
            self._dead_letter(result.hub_id, None, None, "result", "unknown_command",
                              result.model_dump_json())
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
                    self._state_devices.add(row.device_id)
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
            self.lock_hubs((hub_id,))
            return self._hubs[hub_id]
        hub["last_seen"] = self._now
        self._dirty_hubs.add(hub_id)
        return hub

    def _device(self, device_id: str) -> dict[str, Any] | None:
        if device_id not in self._devices:
            self._load_devices((device_id,))
        return self._devices[device_id]

    def _load_devices(self, device_ids: Iterable[str]) -> None:
        """Read (and lock) the rows of the devices not read yet, in one select."""
        missing = sorted(set(device_ids) - self._devices.keys())
        for chunk in _chunks(missing):
            for row in _dicts(self._conn.execute(_LOCK_DEVICES, {"ids": list(chunk)})):
                self._devices[row["id"]] = row
        for device_id in missing:
            self._devices.setdefault(device_id, None)

    def _lettered(self, hub_id: str) -> set[str]:
        """The devices of the hub with events kept as dead letters (read once per transaction,
        then kept up to date by ``_dead_letter`` and ``_promote``)."""
        found = self._letters.get(hub_id)
        if found is None:
            t = dead_letters.c
            found = self._letters[hub_id] = set(self._conn.execute(
                select(t.ieee).distinct().where(t.hub_id == hub_id, t.kind == "event",
                                                t.ieee.is_not(None))).scalars())
        return found

    def _ledger_row(self, hub_id: str, epoch: str) -> dict[str, Any]:
        """The ledger's row as read (or as this transaction changed it), not yet put to use."""
        key = (hub_id, epoch)
        ledger = self._ledgers.get(key)
        if ledger is not None:
            return ledger
        if key not in self._loaded:
            self._load_ledgers((key,))
        return self._loaded[key][0]

    def _load_ledgers(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read (and lock) the ledgers not read yet, making those never seen before, in one insert
        and one select per hub; ``_ledger`` puts each to use when its first message comes."""
        missing = sorted(k for k in keys if k not in self._ledgers and k not in self._loaded)
        if not missing:
            return
        self._read_ledgers(missing, [k for k in missing if k not in self._known.ledgers])
        if lost := [k for k in missing if k not in self._loaded]:  # known, yet not there
            self._read_ledgers(lost, lost)

    def _read_ledgers(self, keys: Sequence[tuple[str, str]],
                      new: Sequence[tuple[str, str]]) -> None:
        """Make the ``new`` ledgers where they are missing, then read (and lock) all the keys."""
        made = _insert_ignore_many(self._conn, ledgers, [
            {"hub_id": hub_id, "epoch": epoch, "mark": 0, "first_seen": self._now, "stored": 0,
             "duplicates": 0, "gaps": 0, "refused": 0} for hub_id, epoch in new],
            ("hub_id", "epoch")) if new else set()
        wanted = set(keys)
        # By hub (the primary key's first column): SQLite scans the table for (hub, epoch) IN.
        for chunk in _chunks(sorted({hub_id for hub_id, _ in keys})):
            for row in _dicts(self._conn.execute(_LOCK_LEDGERS, {"ids": list(chunk)})):
                key = (row["hub_id"], row["epoch"])
                if key not in wanted:
                    continue
                self._loaded[key] = (row, key in made)
                self._ledgers_read[key] = dict(row)
                self._known.ledgers.add(key)

    def _ledger(self, hub_id: str, epoch: str) -> dict[str, Any]:
        key = (hub_id, epoch)
        ledger = self._ledgers.get(key)
        if ledger is None:
            if key not in self._loaded:
                self._load_ledgers((key,))
            ledger, new = self._loaded.pop(key)
            # Nothing committed past the mark yet (no holes): then what lies past it is exactly
            # what this transaction commits, and the mark moves without reading the ledger back.
            clean = new or (ledger["last_seq"] is not None and ledger["last_seq"] <= ledger["mark"])
            ledger["_above"] = set() if clean else None
            self._ledgers[key] = ledger
            self._marks_before[key] = ledger["mark"]
            hub = self._hub(hub_id)
            if hub["epoch"] is None or new:
                hub["epoch"] = epoch  # a ledger never seen before is the newest
        return ledger

    def _advance(self, hub: dict[str, Any], ledger: dict[str, Any], seq: int) -> int:
        """Note a newly committed sequence number; returns the numbers it shows missing."""
        above = ledger.get("_above")
        if above is not None:
            above.add(seq)
        last = ledger["last_seq"]
        if last is not None and seq <= last:
            return 0
        gap = seq - last - 1 if last is not None else seq - ledger["mark"] - 1
        gap = max(0, gap)
        ledger["gaps"] += gap
        ledger["last_seq"] = seq
        if ledger["epoch"] == hub["epoch"]:
            hub["gaps"] += gap
            hub["last_seq"] = seq
        return gap

    def _dead_letter(self, hub_id: str, epoch: str | None, seq: int | None, kind: str,
                     reason: str, payload: str, ieee: str | None = None) -> bool:
        """Keep a message that could not be applied; False when it was kept before."""
        values = {"hub_id": hub_id, "epoch": epoch, "seq": seq, "kind": kind, "reason": reason,
                  "ieee": ieee, "payload": payload, "received_at": self._now}
        if seq is None:
            return bool(self._conn.execute(insert(dead_letters).values(**values)).rowcount)
        kept = _insert_ignore(self._conn, dead_letters, values, ("hub_id", "epoch", "seq"))
        if kept and kind == "event" and ieee is not None:
            self._lettered(hub_id).add(ieee)
        return kept

    def _move_mark(self, ledger: dict[str, Any]) -> None:
        """Advance the mark over every sequence number committed right after it."""
        above = ledger.get("_above")
        if above is not None:  # all of them are known here: no query per ledger and batch
            mark = ledger["mark"]
            while mark + 1 in above:
                mark += 1
            ledger["mark"] = mark
            return
        while True:
            mark = ledger["mark"]
            found = set(self._conn.execute(_NEXT_SEQS, {
                "hub": ledger["hub_id"], "epoch": ledger["epoch"], "mark": mark}).scalars())
            moved = mark
            while moved + 1 in found:
                moved += 1
            ledger["mark"] = moved
            if moved - mark < _MARK_STEP:
                return

    def _move_marks(self) -> None:
        for ledger in self._ledgers.values():
            if not ledger.get("_moved"):
                self._move_mark(ledger)
                ledger["_moved"] = True

    def acks_due(self) -> list[AckDue]:
        self._move_marks()
        due: list[AckDue] = []
        hubs_due = self._asked | set(self._acked_results)
        hubs_due.update(h for (h, e), led in self._ledgers.items()
                        if led["mark"] != self._marks_before.get((h, e)))
        for hub_id in sorted(hubs_due):
            hub = self._hubs[hub_id]
            epoch = hub["epoch"]
            ledger = self._ledgers.get((hub_id, epoch)) if epoch is not None else None
            if ledger is None and epoch is not None:
                ledger = self._ledger(hub_id, epoch)
                self._move_mark(ledger)
                ledger["_moved"] = True
            due.append(AckDue(hub_id=hub_id, epoch=epoch or None,
                              seq=ledger["mark"] if ledger is not None else 0,
                              results=self._acked_results.get(hub_id, []),
                              asked=hub_id in self._asked))
        return due

    def flush(self) -> None:
        """Write every ledger, hub and device this transaction changed: one statement per table
        (executemany), whatever the number of rows."""
        self._move_marks()
        _update_many(self._conn, ledgers, ("hub_id", "epoch"), [
            row for key, ledger in self._ledgers.items()
            if (row := _changed(ledger, self._ledgers_read.get(key), _LEDGER_KEY)) is not None])
        _update_many(self._conn, hubs, ("id",), [
            row for h in sorted(self._dirty_hubs)
            if (row := _changed(self._hubs[h], self._hubs_read.get(h), ("id",))) is not None])
        changed = [row for d in self._dirty_devices if (row := self._devices[d]) is not None]
        new = [{k: v for k, v in row.items() if not k.startswith("_")}
               for row in changed if row.get("_new")]
        made = {key[0] for key in _insert_ignore_many(self._conn, devices, new, ("id",))}
        _update_many(self._conn, devices, ("id",), [
            {k: v for k, v in row.items() if not k.startswith("_")}
            for row in changed if row["id"] not in made])
        _update_many(self._conn, devices, ("id",), [
            {"id": d, "capabilities": row["capabilities"], "state_at": row["state_at"]}
            for d in self._state_devices - self._dirty_devices
            if (row := self._devices[d]) is not None])
        for hub_id in self._pairing_hubs:
            self._prune_pairing(hub_id)
        if self._outbox:
            self._conn.execute(insert(telemetry_outbox), self._outbox)  # one executemany
            self._outbox.clear()

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


def _dicts(result: Any) -> list[dict[str, Any]]:
    """The rows as dicts (the result's keys read once, not once per row)."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    return (items[i:i + size] for i in range(0, len(items), size))


def _insert_ignore_many(conn: Connection, table: Table, rows: Collection[dict[str, Any]],
                        keys: tuple[str, ...]) -> set[tuple[Any, ...]]:
    """Insert the rows whose ``keys`` are not taken yet, in one statement whatever their number;
    returns the keys of the rows inserted."""
    if not rows:
        return set()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        inserted = _pg_insert_ignore_arrays(conn, table, rows, keys)
        if inserted is not None:
            return inserted
    if dialect == "sqlite":
        inserted = _sqlite_insert_new(conn, table, rows, keys)
        if inserted is not None:
            return inserted
    if dialect not in ("sqlite", "postgresql"):
        return {tuple(row[k] for k in keys) for row in rows if _insert_ignore(conn, table, row, keys)}
    return {tuple(r) for r in conn.execute(_insert_ignore_stmt(dialect, table, keys), list(rows))}


@functools.cache
def _insert_ignore_stmt(dialect: str, table: Table, keys: tuple[str, ...]) -> Any:
    """Built once per table: each use only binds its rows."""
    dml = sqlite_insert if dialect == "sqlite" else pg_insert
    return (dml(table).on_conflict_do_nothing(index_elements=keys)
            .returning(*(table.c[k] for k in keys)))  # the rows inserted, skipped ones not


def _uniform_columns(table: Table, rows: Collection[dict[str, Any]]
                     ) -> tuple[list[str], list[Column[Any]]] | None:
    """The columns every row names and the table's scalar defaults for the others; None where
    the rows name different columns or a default is computed in Python (the general way then)."""
    names = list(next(iter(rows)))
    if any(list(row) != names for row in rows):
        return None
    defaults = [c for c in table.c if c.name not in names and c.default is not None]
    if any(not c.default.is_scalar for c in defaults):  # type: ignore[union-attr]
        return None
    return names, defaults


def _bound_columns(conn: Connection, table: Table, rows: Collection[dict[str, Any]]
                   ) -> tuple[list[str], list[list[Any]]] | None:
    """The rows' values column by column as the driver takes them (each column's bind processing
    applied, and its scalar default where the rows leave it out), with the column names; None
    where this does not apply (rows naming different columns, defaults computed in Python)."""
    uniform = _uniform_columns(table, rows)
    if uniform is None:
        return None
    names, defaults = uniform
    dialect = conn.dialect
    columns: list[list[Any]] = []
    for name in names:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        values = [row[name] for row in rows]
        if process is None:
            columns.append(values)
        elif all(v is values[0] for v in values):  # one value for all (the time of receipt)
            columns.append([process(values[0])] * len(values))
        else:
            columns.append([process(v) for v in values])
    for column in defaults:
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        value = column.default.arg  # type: ignore[union-attr]
        columns.append([process(value) if process else value] * len(rows))
    return names + [c.name for c in defaults], columns


def _sqlite_insert_new(conn: Connection, table: Table, rows: Collection[dict[str, Any]],
                       keys: tuple[str, ...]) -> set[tuple[Any, ...]] | None:
    """SQLite: read which of the rows' keys are taken (an indexed look-up per few hundred keys),
    then insert the others with one prepared statement run by the driver for every row
    (executemany, no RETURNING). Exact because a writing transaction holds SQLite's write lock
    from its start (``WRITE_LOCK``); SQLAlchemy's per-row statement building and RETURNING were
    most of the ingest's time. None where ``_bound_columns`` does not apply."""
    bound = _bound_columns(conn, table, rows)
    if bound is None:
        return None
    names, columns = bound
    tuples = list(zip(*columns, strict=True))
    at = [names.index(k) for k in keys]
    quote = conn.dialect.identifier_preparer.quote
    key_sql = ", ".join(quote(k) for k in keys)
    taken: set[tuple[Any, ...]] = set()
    wanted = list(dict.fromkeys(tuple(t[i] for i in at) for t in tuples))
    per_query = max(1, 900 // len(keys))  # SQLite's oldest limit on bound parameters is 999
    for chunk in _chunks(wanted, per_query):
        marks = ", ".join(["(" + ", ".join("?" * len(keys)) + ")"] * len(chunk))
        found = conn.exec_driver_sql(
            f"SELECT {key_sql} FROM {quote(table.name)} WHERE ({key_sql}) IN (VALUES {marks})",
            tuple(v for key in chunk for v in key))
        taken.update(tuple(r) for r in found)
    new: list[tuple[Any, ...]] = []
    made: dict[tuple[Any, ...], int] = {}  # bound key -> position among the rows
    for position, t in enumerate(tuples):
        key = tuple(t[i] for i in at)
        if key not in taken and key not in made:
            made[key] = position
            new.append(t)
    if new:
        conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' * len(names))})", new)
    listed = list(rows)
    return {tuple(listed[p][k] for k in keys) for p in made.values()}


def _pg_insert_ignore_arrays(conn: Connection, table: Table, rows: Collection[dict[str, Any]],
                             keys: tuple[str, ...]) -> set[tuple[Any, ...]] | None:
    """PostgreSQL: the rows as one array per column, unnested by the server. The statement's text
    is the same for any number of rows, so the driver neither rebuilds nor re-parses it per batch
    (a multi-row VALUES list is re-parsed by psycopg on every execution: most of the ingest's time).
    The arrays travel in binary (``%b``): psycopg's text form escapes every element in Python, at
    three times the cost. None where this does not apply (rows naming different columns, defaults
    computed in Python): the caller then inserts them the general way."""
    uniform = _uniform_columns(table, rows)
    if uniform is None:
        return None
    names, defaults = uniform
    dialect = conn.dialect
    to_json = getattr(dialect, "_json_serializer", None) or json.dumps
    arrays: dict[str, list[Any]] = {}
    selected: list[str] = []
    casts: list[str] = []
    for i, name in enumerate(names + [c.name for c in defaults]):
        column = table.c[name]
        param = f"c{i}"
        if i < len(names):
            values = [row[name] for row in rows]
        else:
            values = [column.default.arg] * len(rows)  # type: ignore[union-attr]
        sql_type = column.type.compile(dialect=dialect)
        if isinstance(column.type, JSON):  # arrays of JSON text, each element cast after unnest
            arrays[param] = [to_json(v) for v in values]
            casts.append(f"%({param})b::TEXT[]")
            selected.append(f"u.{param}::{sql_type}")
            continue
        process = column.type.bind_processor(dialect)
        arrays[param] = [process(v) for v in values] if process else values
        casts.append(f"%({param})b::{sql_type}[]")
        selected.append(f"u.{param}")
    quote = dialect.identifier_preparer.quote
    all_names = names + [c.name for c in defaults]
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in all_names)}) "
           f"SELECT {', '.join(selected)} FROM unnest({', '.join(casts)}) "
           f"AS u({', '.join(arrays)}) "
           f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO NOTHING "
           f"RETURNING {', '.join(quote(k) for k in keys)}")
    return {tuple(r) for r in conn.exec_driver_sql(sql, arrays)}


def _update_many(conn: Connection, table: Table, keys: tuple[str, ...],
                 rows: Sequence[dict[str, Any]]) -> None:
    """Set every other column of each row where its ``keys`` match: one executemany."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:  # rows read from the table and rows made here may name their columns apart
        by_columns.setdefault(tuple(sorted(c for c in row if c not in keys)), []).append(row)
    for columns, group in by_columns.items():
        if not columns:
            continue  # nothing to set
        if conn.dialect.name == "sqlite":
            _sqlite_update(conn, table, keys, columns, group)
            continue
        conn.execute(_update_stmt(table, keys, columns), [{**{f"key_{k}": row[k] for k in keys},
                             **{f"set_{c}": row[c] for c in columns}} for row in group])


@functools.lru_cache(maxsize=64)
def _update_stmt(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    """Built once per table and set of columns: each use only binds its rows."""
    return (update(table).where(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
            .values({c: bindparam(f"set_{c}") for c in columns}))


def _sqlite_update(conn: Connection, table: Table, keys: tuple[str, ...], columns: tuple[str, ...],
                   rows: Sequence[dict[str, Any]]) -> None:
    """SQLite: one prepared UPDATE run by the driver for every row, the values bound column by
    column as ``_bound_columns`` does (SQLAlchemy's per-row parameter processing was most of the
    time of writing a thousand hubs' counters)."""
    dialect = conn.dialect
    names = (*columns, *keys)
    bound: list[list[Any]] = []
    for name in names:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        values = [row[name] for row in rows]
        bound.append([process(v) for v in values] if process is not None else values)
    quote = dialect.identifier_preparer.quote
    conn.exec_driver_sql(
        f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = ?' for c in columns)} "
        f"WHERE {' AND '.join(f'{quote(k)} = ?' for k in keys)}", list(zip(*bound, strict=True)))
