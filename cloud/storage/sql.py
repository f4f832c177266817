"""The SQL storage adapter (SQLAlchemy 2 Core): SQLite by default (WAL), PostgreSQL by URL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    case,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from cloud.storage.base import (
    HUB_OFFLINE_REASON,
    AccountRecord,
    AckDue,
    Bucket,
    CommandRecord,
    DeviceKey,
    DeviceRecord,
    FleetCounts,
    HubRecord,
    HubRegistration,
    IdempotencyRecord,
    PairingEventRecord,
    Sample,
    StoreUnavailable,
    TokenRecord,
)
from cloud.storage.migrations import require_head, upgrade_to_head
from cloud.storage.sql_buckets import sql_buckets
from cloud.storage.sql_engine import WRITE_LOCK, make_engine, store_errors
from cloud.storage.sql_ingest import KnownRows, SqlIngestTx, command_record
from cloud.storage.sql_results import NotPlain, apply_results
from cloud.storage.sql_schema import (
    DEFAULT_ACCOUNT,
    accounts,
    api_tokens,
    commands,
    devices,
    events,
    hub_registrations,
    hubs,
    idempotency_keys,
    pairing_events,
)
from cloud.storage.sql_usage import count_usage
from cloud.storage.usage import UsageCount
from wire.contract import CommandResult, CommandStatus, Constraints, Limits

log = logging.getLogger(__name__)

__all__ = ["SqlRegistry", "SqlTelemetry", "make_engine"]


def _now() -> datetime:
    return datetime.now(UTC)

# A hub's row but its group table (up to 48 KiB; read by ``hub_groups`` alone).
_HUB_COLUMNS = tuple(c for c in hubs.c if c.name != "groups")


def _hub_record(row: Row[Any] | Mapping[str, Any]) -> HubRecord:
    m = row._mapping if isinstance(row, Row) else row
    return HubRecord(
        id=m["id"],
        online=m["online"],
        last_seen=m["last_seen"],
        events_received=m["events_received"] or 0,
        events_stored=m["events_stored"] or 0,
        duplicates=m["duplicates"] or 0,
        gaps=m["gaps"] or 0,
        last_seq=m["last_seq"],
        status=m["status"],
        epoch=m["epoch"],
    )


def _device_record(row: Row[Any]) -> DeviceRecord:
    m = row._mapping
    available, reason = m["available"], m["availability_reason"]
    changed = m["availability_changed_at"]
    if m["hub_online"] is False:
        available, reason = False, HUB_OFFLINE_REASON
        changed = max((t for t in (changed, m["hub_online_changed_at"]) if t), default=None)
    return DeviceRecord(
        id=m["id"],
        hub_id=m["hub_id"],
        ieee=m["ieee"],
        manufacturer=m["manufacturer"],
        model=m["model"],
        name=m["name"],
        quirk=m["quirk"],
        power_source=m["power_source"],
        available=available,
        availability_reason=reason,
        availability_changed_at=changed,
        capabilities=m["capabilities"] or {},
        constraints=_constraints(m["constraints"]),
        updated_at=m["updated_at"],
        removed=m["removed"],
        hub_online=m["hub_online"],
    )


def _constraints(stored: Any) -> Constraints:
    """Stored limits as the wire model; a row the cloud wrote itself, so it is not re-checked."""
    return {instance: {attr: Limits.model_construct(**limits) for attr, limits in fields.items()}
            for instance, fields in (stored or {}).items()}


def _pairing_record(row: Row[Any]) -> PairingEventRecord:
    m = row._mapping
    return PairingEventRecord(**{k: m[k] for k in PairingEventRecord.__dataclass_fields__})


def _registration(row: Row[Any]) -> HubRegistration:
    m = row._mapping
    return HubRegistration(**{k: m[k] for k in HubRegistration.__dataclass_fields__})


def _idempotency_record(row: Row[Any]) -> IdempotencyRecord:
    m = row._mapping
    return IdempotencyRecord(**{k: m[k] for k in IdempotencyRecord.__dataclass_fields__})


def _token_record(row: Row[Any]) -> TokenRecord:
    m = row._mapping
    return TokenRecord(id=m["id"], name=m["name"], created_at=m["created_at"],
                       account=m["account"], scopes=frozenset(m["scopes"].split()),
                       expires_at=m["expires_at"], revoked=m["revoked"])


_DEVICE_SELECT = select(
    devices,
    hubs.c.online.label("hub_online"),
    hubs.c.online_changed_at.label("hub_online_changed_at"),
).select_from(devices.outerjoin(hubs, hubs.c.id == devices.c.hub_id))


_ADD_COMMAND = insert(commands).values({c.name: bindparam(c.name) for c in commands.c})
# A token (by its hash) with a device (by id), the device's hub's state and its hub's account: the
# token and scope check and the account check of a device path in one query.
_TOKEN_AND_DEVICE = (
    select(
        api_tokens.c.id.label("token_id"), api_tokens.c.name.label("token_name"),
        api_tokens.c.created_at.label("token_created_at"),
        api_tokens.c.account.label("token_account"), api_tokens.c.scopes.label("token_scopes"),
        api_tokens.c.expires_at.label("token_expires_at"),
        api_tokens.c.revoked.label("token_revoked"),
        *_DEVICE_SELECT.selected_columns,
        hub_registrations.c.account.label("hub_account"),
    )
    .select_from(
        api_tokens.outerjoin(devices, devices.c.id == bindparam("p_device"))
        .outerjoin(hubs, hubs.c.id == devices.c.hub_id)
        .outerjoin(hub_registrations, hub_registrations.c.hub_id == devices.c.hub_id))
    .where(api_tokens.c.token_hash == bindparam("p_hash"))
)


class SqlRegistry:
    """Registry on a SQL database (see ``cloud.storage.base.Registry``)."""

    def __init__(self, engine: Engine, *, migrate: bool = True,
                 export_telemetry: bool = False) -> None:
        """Bring the database to this Spoke's schema (``migrate``), or refuse one that is not."""
        self.engine = engine
        self.export_telemetry = export_telemetry  # queue each stored event's point for export
        self._known = KnownRows()  # hub and ledger rows seen to exist, shared by transactions
        try:
            if migrate:
                upgrade_to_head(engine)
            else:
                require_head(engine)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True,
                 export_telemetry: bool = False) -> SqlRegistry:
        return cls(make_engine(url), migrate=migrate, export_telemetry=export_telemetry)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable(str(exc.orig or exc)) from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with store_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_LOCK: True})
            with conn.begin():
                yield conn

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
            conn.execute(select(func.count()).select_from(hubs)).scalar_one()

    @contextmanager
    def ingest(self, hub_ids: Iterable[str] = ()) -> Iterator[SqlIngestTx]:
        with self._write() as conn:
            tx = SqlIngestTx(conn, export_telemetry=self.export_telemetry, known=self._known)
            tx.lock_hubs(hub_ids)
            yield tx
            tx.flush()

    def ingest_results(self, results: Sequence[CommandResult]
                       ) -> tuple[list[CommandRecord], list[AckDue]] | None:
        """A batch of command results alone, committed in a few statements (``sql_results``);
        None when it needs the general ``ingest`` transaction (nothing was kept)."""
        try:
            with self._write() as conn:
                return apply_results(conn, results)
        except NotPlain:
            return None

    # Hubs and devices -----------------------------------------------------------------------------
    def list_hubs(self, account: str | None = None, *, after: str | None = None,
                  limit: int | None = None) -> list[HubRecord]:
        if account is None:
            stmt, hub_id = select(*_HUB_COLUMNS), hubs.c.id
        else:  # the account's hubs in id order, from its index
            hub_id = hub_registrations.c.hub_id
            stmt = (select(*_HUB_COLUMNS).select_from(hub_registrations.join(hubs, hubs.c.id == hub_id))
                    .where(hub_registrations.c.account == account))
        if after is not None:
            stmt = stmt.where(hub_id > after)
        stmt = stmt.order_by(hub_id).limit(limit)
        with self._read() as conn:
            return [_hub_record(r) for r in conn.execute(stmt)]

    def hub_account(self, hub_id: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(hub_registrations.c.account).where(  # type: ignore[no-any-return]
                hub_registrations.c.hub_id == hub_id)).scalar()

    def get_hub(self, hub_id: str) -> HubRecord | None:
        with self._read() as conn:
            row = conn.execute(select(*_HUB_COLUMNS).where(hubs.c.id == hub_id)).first()
        return _hub_record(row) if row else None

    def hub_groups(self, hub_id: str) -> list[dict[str, Any]] | None:
        with self._read() as conn:
            row = conn.execute(select(hubs.c.groups, hubs.c.status)
                               .where(hubs.c.id == hub_id)).first()
        if row is None:
            return None
        if row.groups is not None:
            return list(row.groups)
        older = (row.status or {}).get("groups")  # a status stored before the column was
        return list(older) if isinstance(older, list) else None

    def list_devices(self, hub_id: str | None = None, account: str | None = None, *,
                     after: DeviceKey | None = None, limit: int | None = None
                     ) -> list[DeviceRecord]:
        d = devices.c
        if account is None:
            stmt, hub = _DEVICE_SELECT, d.hub_id
        else:
            # The account's hubs in id order (an index), each hub's devices in id order (another):
            # a page reads about as many rows as it returns, however large the fleet or small the
            # account. Ordering by the registration's hub_id is what lets the database see that.
            hub = hub_registrations.c.hub_id
            stmt = _DEVICE_SELECT.join(hub_registrations, hub == d.hub_id).where(
                hub_registrations.c.account == account)
        stmt = stmt.where(d.removed.is_(False))
        if hub_id is not None:
            stmt = stmt.where(hub == hub_id)
        if after is not None:  # said of both tables, so that either database seeks to it
            stmt = stmt.where(hub >= after.hub_id,
                              tuple_(d.hub_id, d.id) > tuple_(after.hub_id, after.id))
        stmt = stmt.order_by(hub, d.id).limit(limit)
        with self._read() as conn:
            return [_device_record(r) for r in conn.execute(stmt)]

    def fleet_counts(self) -> FleetCounts:
        hub_state = case((hubs.c.online.is_(True), "online"), (hubs.c.online.is_(False), "offline"),
                         else_="unknown")
        device_state = case((hubs.c.online.is_(False), "hub_offline"),
                            (devices.c.available.is_(True), "available"), else_="unavailable")
        counts = FleetCounts(hubs=dict.fromkeys(("online", "offline", "unknown"), 0),
                             devices=dict.fromkeys(("available", "unavailable", "hub_offline"), 0))
        with self._read() as conn:
            for state, n in conn.execute(select(hub_state, func.count()).group_by(hub_state)):
                counts.hubs[state] += n
            rows = conn.execute(
                select(device_state, func.count())
                .select_from(devices.outerjoin(hubs, hubs.c.id == devices.c.hub_id))
                .where(devices.c.removed.is_(False)).group_by(device_state))
            for state, n in rows:
                counts.devices[state] += n
        return counts

    def get_device(self, device_id: str) -> DeviceRecord | None:
        with self._read() as conn:
            row = conn.execute(_DEVICE_SELECT.where(devices.c.id == device_id)).first()
        return _device_record(row) if row else None

    # Pairing progress -----------------------------------------------------------------------------
    def last_pairing_event_id(self, hub_id: str) -> int:
        t = pairing_events.c
        with self._read() as conn:
            newest = conn.execute(select(func.max(t.id)).where(t.hub_id == hub_id)).scalar()
        return int(newest or 0)

    def pairing_events(self, hub_id: str, after: int = 0, limit: int = 500
                       ) -> list[PairingEventRecord]:
        t = pairing_events.c
        stmt = (select(pairing_events).where(t.hub_id == hub_id).where(t.id > after)
                .order_by(t.id).limit(limit))
        with self._read() as conn:
            return [_pairing_record(r) for r in conn.execute(stmt)]

    # Commands -------------------------------------------------------------------------------------
    def add_command(self, command: CommandRecord, meter: UsageCount | None = None) -> None:
        values = {k: getattr(command, k) for k in commands.c.keys()}
        with self._write() as conn:
            conn.execute(_ADD_COMMAND, values)
            if meter is not None:
                count_usage(conn, meter)

    def get_command(self, command_id: str) -> CommandRecord | None:
        with self._read() as conn:
            row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
        return command_record(row) if row else None

    def mark_command_timeout(self, command_id: str, now: datetime) -> CommandRecord | None:
        """Mark a still-pending command whose expiry has passed as timed out; return it."""
        with self._write() as conn:
            conn.execute(
                update(commands)
                .where(commands.c.id == command_id)
                .where(commands.c.status == CommandStatus.PENDING.value)
                .where(commands.c.expires_at < now)
                .values(status=CommandStatus.TIMEOUT.value)
            )
            row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
        return command_record(row) if row else None

    # Idempotency keys -----------------------------------------------------------------------------
    def claim_idempotency_key(self, record: IdempotencyRecord, since: datetime
                              ) -> IdempotencyRecord | None:
        t = idempotency_keys.c
        where = (t.account == record.account) & (t.key == record.key)
        try:
            with self._write() as conn:  # SQLite: BEGIN IMMEDIATE; PostgreSQL: the row lock
                conn.execute(idempotency_keys.delete().where(t.created_at <= since))
                row = conn.execute(select(idempotency_keys).where(where).with_for_update()).first()
                if row is not None:
                    return _idempotency_record(row)
                conn.execute(insert(idempotency_keys).values(
                    account=record.account, key=record.key, fingerprint=record.fingerprint,
                    command_id=record.command_id, created_at=record.created_at))
        except IntegrityError:  # PostgreSQL: another process claimed it at the same moment
            with self._read() as conn:
                return _idempotency_record(conn.execute(
                    select(idempotency_keys).where(where)).one())
        return None

    def finish_idempotency_key(self, account: str, key: str, status_code: int,
                               response: str) -> None:
        t = idempotency_keys.c
        with self._write() as conn:
            conn.execute(update(idempotency_keys).where(t.account == account, t.key == key)
                         .values(status_code=status_code, response=response))

    def release_idempotency_key(self, account: str, key: str) -> None:
        t = idempotency_keys.c
        with self._write() as conn:
            conn.execute(idempotency_keys.delete().where(t.account == account, t.key == key))

    # Accounts and API tokens --------------------------------------------------------------------
    def add_account(self, account: str, now: datetime) -> bool:
        with self._write() as conn:
            if conn.execute(select(accounts.c.id).where(accounts.c.id == account)).first():
                return False
            conn.execute(insert(accounts).values(id=account, created_at=now))
        return True

    def get_account(self, account: str) -> AccountRecord | None:
        with self._read() as conn:
            row = conn.execute(select(accounts).where(accounts.c.id == account)).first()
        return AccountRecord(id=row.id, created_at=row.created_at) if row else None

    def list_accounts(self) -> list[AccountRecord]:
        with self._read() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.id))
            return [AccountRecord(id=r.id, created_at=r.created_at) for r in rows]

    def add_token(self, record: TokenRecord, token_hash: str) -> None:
        with self._write() as conn:
            conn.execute(insert(api_tokens).values(
                id=record.id, name=record.name, token_hash=token_hash,
                created_at=record.created_at, revoked=False, account=record.account,
                scopes=" ".join(sorted(record.scopes)), expires_at=record.expires_at))

    def find_token_and_device(self, token_hash: str, device_id: str
                              ) -> tuple[TokenRecord | None, DeviceRecord | None, str | None]:
        with self._read() as conn:
            row = conn.execute(_TOKEN_AND_DEVICE, {"p_hash": token_hash,
                                                   "p_device": device_id}).first()
        if row is None:
            return None, None, None
        m = row._mapping
        token = TokenRecord(id=m["token_id"], name=m["token_name"],
                            created_at=m["token_created_at"], account=m["token_account"],
                            scopes=frozenset(m["token_scopes"].split()),
                            expires_at=m["token_expires_at"], revoked=m["token_revoked"])
        if m["id"] is None:
            return token, None, None
        return token, _device_record(row), m["hub_account"]  # type: ignore[arg-type]

    def find_token(self, token_hash: str) -> TokenRecord | None:
        with self._read() as conn:
            row = conn.execute(
                select(api_tokens).where(api_tokens.c.token_hash == token_hash)
            ).first()
        return _token_record(row) if row else None

    def list_tokens(self, account: str | None = None) -> list[TokenRecord]:
        stmt = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if account is not None:
            stmt = stmt.where(api_tokens.c.account == account)
        with self._read() as conn:
            return [_token_record(r) for r in conn.execute(stmt)]

    def revoke_token(self, token_id: str, account: str | None = None) -> bool:
        stmt = (update(api_tokens).where(api_tokens.c.id == token_id)
                .where(api_tokens.c.revoked.is_(False)).values(revoked=True, revoked_at=_now()))
        if account is not None:
            stmt = stmt.where(api_tokens.c.account == account)
        with self._write() as conn:
            result = conn.execute(stmt)
        return result.rowcount == 1

    # Hub registrations (broker credentials) ------------------------------------------------------
    def register_hub(self, hub_id: str, account: str | None, now: datetime) -> HubRegistration:
        t = hub_registrations.c
        with self._write() as conn:
            row = conn.execute(select(hub_registrations).where(t.hub_id == hub_id)).first()
            if row is None:
                conn.execute(insert(hub_registrations).values(
                    hub_id=hub_id, account=account or DEFAULT_ACCOUNT, generation=1, revoked=False,
                    registered_at=now))
            else:
                conn.execute(update(hub_registrations).where(t.hub_id == hub_id).values(
                    account=account if account is not None else row.account,
                    generation=row.generation + 1, revoked=False, rotated_at=now,
                    revoked_at=None))
            return _registration(conn.execute(
                select(hub_registrations).where(t.hub_id == hub_id)).one())

    def revoke_hub(self, hub_id: str, now: datetime) -> HubRegistration | None:
        t = hub_registrations.c
        with self._write() as conn:
            conn.execute(update(hub_registrations).where(t.hub_id == hub_id)
                         .where(t.revoked.is_(False)).values(revoked=True, revoked_at=now))
            row = conn.execute(select(hub_registrations).where(t.hub_id == hub_id)).first()
        return _registration(row) if row else None

    def get_hub_registration(self, hub_id: str) -> HubRegistration | None:
        t = hub_registrations.c
        with self._read() as conn:
            row = conn.execute(select(hub_registrations).where(t.hub_id == hub_id)).first()
        return _registration(row) if row else None

    def list_hub_registrations(self) -> list[HubRegistration]:
        with self._read() as conn:
            rows = conn.execute(select(hub_registrations).order_by(hub_registrations.c.hub_id))
            return [_registration(r) for r in rows]


class SqlTelemetry:
    """Telemetry read from the SQL event ledger (the ingest writes it there)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        """The engine belongs to the registry."""

    def query(
        self,
        device_id: str,
        capability: str,
        attribute: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[Sample]:
        conditions = [
            events.c.device_id == device_id,
            events.c.capability == capability,
            events.c.attribute == attribute,
        ]
        if since is not None:
            conditions.append(events.c.ts >= since)
        if until is not None:
            conditions.append(events.c.ts <= until)
        stmt = (
            select(events.c.ts, events.c.value_json)
            .where(*conditions)
            .order_by(events.c.ts.desc(), events.c.seq.desc())
            .limit(limit)
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
        except OperationalError as exc:
            raise StoreUnavailable(str(exc.orig or exc)) from exc
        return [Sample(ts=r.ts, value=json.loads(r.value_json)) for r in reversed(rows)]

    def buckets(self, device_id: str, capability: str, attribute: str, *, since: datetime,
                until: datetime, width: int) -> list[Bucket]:
        return sql_buckets(self.engine, device_id, capability, attribute, since=since,
                           until=until, width=width)

