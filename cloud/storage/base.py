"""Storage interfaces: the registry (hubs, devices, commands, tokens, event ledger) and telemetry.

Records are plain frozen dataclasses so that services and routes never see an engine's types.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from cloud.storage.usage import UsageCount
from wire.contract import (
    CommandResult,
    Constraints,
    DeviceInfo,
    Event,
    HubStatus,
    PairingEvent,
    State,
    Value,
)

HUB_OFFLINE_REASON = "hub offline"


def device_id_for(hub_id: str, ieee: str) -> str:
    """The cloud's device id: readable and unique across hubs (``hub-1-00124b0001abcdef``)."""
    return f"{hub_id}-{ieee.replace(':', '').lower()}"


class SchemaOutdated(RuntimeError):
    """The database was created by an earlier Spoke whose schema this one cannot use as it is."""


class StoreUnavailable(RuntimeError):
    """The storage engine cannot be reached (retry later); other errors are bugs or bad data."""


@dataclass(frozen=True, kw_only=True)
class HubRecord:
    id: str
    online: bool | None
    last_seen: datetime | None
    events_received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    gaps: int = 0
    last_seq: int | None = None
    status: dict[str, Any] | None = None
    epoch: str | None = None  # the hub's current ledger epoch


@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    id: str
    hub_id: str
    ieee: str
    manufacturer: str | None = None
    model: str | None = None
    name: str | None = None
    quirk: str | None = None
    power_source: str = "unknown"
    available: bool = True
    availability_reason: str | None = None
    availability_changed_at: datetime | None = None
    capabilities: State = field(default_factory=dict)
    constraints: Constraints = field(default_factory=dict)  # limits the device reports
    updated_at: datetime | None = None
    removed: bool = False
    hub_online: bool | None = None  # its hub's last status (None: never heard from)


@dataclass(frozen=True)
class DeviceKey:
    """Where a device sorts in lists (by hub, then id): a page resumes after the last one's key."""

    hub_id: str
    id: str


@dataclass(frozen=True, kw_only=True)
class FleetCounts:
    """Hubs by their last status and devices by availability, across all accounts (metrics)."""

    hubs: dict[str, int]  # "online", "offline", "unknown" (no status yet)
    devices: dict[str, int]  # "available", "unavailable", "hub_offline"


@dataclass(frozen=True, kw_only=True)
class CommandRecord:
    id: str
    hub_id: str
    device_id: str
    ieee: str
    capability: str
    command: str
    args: dict[str, Value]
    status: str
    created_at: datetime
    expires_at: datetime
    state: State | None = None
    error: str | None = None
    error_code: str | None = None
    completed_at: datetime | None = None
    duration_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class PairingEventRecord:
    """One stored pairing step of a hub; ``id`` grows with every stored event (the poll cursor)."""

    id: int
    hub_id: str
    ts: datetime
    step: str
    ieee: str | None = None
    ok: bool = True
    detail: str | None = None
    until: datetime | None = None
    capabilities: list[str] | None = None
    manufacturer: str | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    id: str
    name: str
    created_at: datetime
    account: str
    scopes: frozenset[str]
    expires_at: datetime | None = None
    revoked: bool = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, kw_only=True)
class IdempotencyRecord:
    """The first request made under an account's idempotency key."""

    account: str
    key: str
    fingerprint: str
    created_at: datetime
    command_id: str | None = None
    status_code: int | None = None  # the stored answer, once final
    response: str | None = None


@dataclass(frozen=True, kw_only=True)
class AccountRecord:
    id: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class HubRegistration:
    """A hub the cloud gave broker credentials to. Only the credential generation is kept: the
    password is derived from it and the cloud's broker secret (``cloud.broker_credentials``)."""

    hub_id: str
    account: str
    generation: int  # grows by one with every rotation
    revoked: bool
    registered_at: datetime
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class TelemetryPoint:
    """One stored capability value, as written to a telemetry backend."""

    hub_id: str
    seq: int
    device_id: str
    capability: str
    attribute: str
    ts: datetime
    value: Value
    unit: str | None = None


def event_point(ev: Event, device_id: str) -> TelemetryPoint:
    """The telemetry point of a stored event."""
    return TelemetryPoint(hub_id=ev.hub_id, seq=ev.seq, device_id=device_id,
                          capability=ev.capability, attribute=ev.attribute, ts=ev.ts,
                          value=ev.value, unit=ev.unit)


@dataclass(frozen=True, kw_only=True)
class Sample:
    ts: datetime
    value: Value


@dataclass(frozen=True, kw_only=True)
class Bucket:
    """The numeric samples (booleans as 0/1) of one time bucket: [start, start + width)."""

    start: datetime
    count: int
    min: float
    max: float
    avg: float


class EventOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    UNKNOWN_DEVICE = "unknown_device"  # kept as a dead letter; committed in its ledger
    IMPLAUSIBLE = "implausible_seq"  # a sequence number far beyond the ledger's mark: refused


@dataclass(frozen=True, kw_only=True)
class EventResult:
    outcome: EventOutcome
    gap: int = 0  # sequence numbers found missing before this event
    point: TelemetryPoint | None = None  # set when stored and queued for a telemetry export


@dataclass(frozen=True, kw_only=True)
class AckDue:
    """An acknowledgement to send to a hub once the transaction is committed."""

    hub_id: str
    epoch: str | None  # None: the hub has no epoch (it predates ledger epochs)
    seq: int
    results: list[str] = field(default_factory=list)
    asked: bool = False  # the hub's status asked where its ledger stands: answered without delay


class IngestTx(Protocol):
    """One ingest transaction: every call is applied together, or none is."""

    def hub_status(self, status: HubStatus) -> None: ...

    def statuses_ahead(self, statuses: Sequence[HubStatus]) -> None:
        """Read together what these statuses, applied later in this transaction, will need."""
        ...

    def device_info(self, info: DeviceInfo) -> list[TelemetryPoint]:
        """Describe a device; events kept for it while it was unknown are stored now (returned)."""
        ...

    def device_infos(self, infos: Sequence[DeviceInfo]) -> list[TelemetryPoint]:
        """``device_info`` of each, in order (the rows read together)."""
        ...

    def device_removed(self, hub_id: str, ieee: str) -> None: ...

    def event(self, event: Event) -> EventResult: ...

    def events(self, events: Sequence[Event]) -> list[EventResult]:
        """``event`` of each, in order (stored together): one result per event."""
        ...

    def invalid_event(self, hub_id: str, epoch: str | None, seq: int, raw: str) -> bool:
        """Keep an event of a batch that broke the contract, but says its place in the hub's
        ledger, as a dead letter: committed, so the ledger's mark moves past it and the hub stops
        sending it again. False when it was kept before, or its seq is implausible."""
        ...

    def command_result(self, result: CommandResult) -> CommandRecord | None: ...

    def pairing_event(self, event: PairingEvent) -> bool:
        """Store a pairing step; False when the same event was stored before."""
        ...

    def acks_due(self) -> list[AckDue]:
        """What to acknowledge to each hub after the commit: ledgers that moved, hubs that asked
        (their status), results committed. Called after the transaction's last operation."""
        ...


class Registry(Protocol):
    """Hubs, devices, commands, API tokens and the per-hub event ledger."""

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def ingest(self, hub_ids: Iterable[str] = ()) -> AbstractContextManager[IngestTx]:
        """A transaction for a batch of hub messages; ``hub_ids``: the hubs the batch is from
        (locked up front, in one order, so that concurrent batches do not deadlock)."""
        ...

    def ingest_results(self, results: Sequence[CommandResult]
                       ) -> tuple[list[CommandRecord], list[AckDue]] | None:
        """A batch of command results alone, as ``ingest`` would apply it (``command_result`` of
        each, then ``acks_due``), in fewer statements; None when this batch needs ``ingest``
        (nothing of it was kept)."""
        ...

    def list_hubs(self, account: str | None = None, *, after: str | None = None,
                  limit: int | None = None) -> list[HubRecord]:
        """All hubs, or those of ``account`` (registered to it), by id: at most ``limit`` of them,
        those after the id ``after``."""
        ...

    def get_hub(self, hub_id: str) -> HubRecord | None: ...

    def hub_groups(self, hub_id: str) -> list[dict[str, Any]] | None:
        """The hub's last known Zigbee group table, as its status said it (kept while the hub is
        offline); None when no status of the hub carried one."""
        ...

    def hub_account(self, hub_id: str) -> str | None:
        """The account a hub is registered to; None for a hub never registered."""
        ...

    def list_devices(self, hub_id: str | None = None, account: str | None = None, *,
                     after: DeviceKey | None = None, limit: int | None = None
                     ) -> list[DeviceRecord]:
        """Devices not removed (of one hub, of ``account``'s hubs) ordered by hub, then id: at
        most ``limit`` of them, those after the device whose key is ``after``."""
        ...

    def get_device(self, device_id: str) -> DeviceRecord | None: ...

    def fleet_counts(self) -> FleetCounts:
        """How many hubs and devices are in each state, counted by the database."""
        ...

    def last_pairing_event_id(self, hub_id: str) -> int:
        """The id of the hub's newest stored pairing event, 0 when there is none."""
        ...

    def pairing_events(self, hub_id: str, after: int = 0, limit: int = 500
                       ) -> list[PairingEventRecord]:
        """The hub's pairing events with an id above ``after``, oldest first, at most ``limit``."""
        ...

    def add_command(self, command: CommandRecord, meter: UsageCount | None = None) -> None:
        """Record a command; ``meter``: the request that sent it, counted in the same
        transaction."""
        ...

    def get_command(self, command_id: str) -> CommandRecord | None: ...

    def mark_command_timeout(self, command_id: str, now: datetime) -> CommandRecord | None: ...

    def claim_idempotency_key(self, record: IdempotencyRecord, since: datetime
                              ) -> IdempotencyRecord | None:
        """Record the first use of a key; when it was used after ``since`` already, return that
        use instead (an older use is forgotten and replaced)."""
        ...

    def finish_idempotency_key(self, account: str, key: str, status_code: int,
                               response: str) -> None: ...

    def release_idempotency_key(self, account: str, key: str) -> None:
        """Forget a key whose request did not go out, so that a retry runs it."""
        ...

    def add_account(self, account: str, now: datetime) -> bool:
        """Create an account; False when it exists already."""
        ...

    def get_account(self, account: str) -> AccountRecord | None: ...

    def list_accounts(self) -> list[AccountRecord]: ...

    def add_token(self, record: TokenRecord, token_hash: str) -> None: ...

    def find_token(self, token_hash: str) -> TokenRecord | None: ...

    def find_token_and_device(self, token_hash: str, device_id: str
                              ) -> tuple[TokenRecord | None, DeviceRecord | None, str | None]:
        """``find_token`` and ``get_device`` in one query, with the account the device's hub is
        registered to (None for a device or hub unknown or never registered)."""
        ...

    def list_tokens(self, account: str | None = None) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str, account: str | None = None) -> bool:
        """Revoke an active token (of ``account`` when given); False when there is none."""
        ...

    def register_hub(self, hub_id: str, account: str | None, now: datetime) -> HubRegistration:
        """Register a hub (generation 1), or rotate a registered or revoked one (generation + 1,
        no longer revoked; the account is kept unless a new one is given)."""
        ...

    def revoke_hub(self, hub_id: str, now: datetime) -> HubRegistration | None:
        """Mark a registered hub revoked; None when it was never registered."""
        ...

    def get_hub_registration(self, hub_id: str) -> HubRegistration | None: ...

    def list_hub_registrations(self) -> list[HubRegistration]: ...


class TelemetryReader(Protocol):
    """Reads stored capability values of one device attribute."""

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
        """The newest ``limit`` samples in [since, until], oldest first."""
        ...

    def buckets(self, device_id: str, capability: str, attribute: str, *, since: datetime,
                until: datetime, width: int) -> list[Bucket]:
        """The numeric samples in [since, until] summed up per ``width`` seconds from ``since``,
        oldest first; buckets without samples are left out."""
        ...

    def close(self) -> None: ...


class TelemetryWriter(Protocol):
    """A backend that keeps its own copy of telemetry (the SQL ledger already holds it)."""

    def write(self, points: Sequence[TelemetryPoint]) -> None: ...

    def close(self) -> None: ...

