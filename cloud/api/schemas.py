"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from cloud.management import PairingProgress, PairingStarted, pairing_until
from cloud.storage.base import (
    CommandRecord,
    DeviceRecord,
    HubRecord,
    PairingEventRecord,
    TokenRecord,
)
from wire.contract import Constraints, State, Value


class HubPublic(BaseModel):
    id: str
    online: bool | None
    last_seen: datetime | None
    events_received: int
    events_stored: int
    duplicates: int
    gaps: int
    last_seq: int | None
    epoch: str | None = Field(description="the hub's current event ledger epoch")
    pairing_open: bool
    pairing_until: datetime | None = Field(description="permit-join open until (null: closed)")
    radio_up: bool | None
    reason: str | None = Field(description="why the hub is offline or degraded, as it says")
    status: dict[str, Any] | None = Field(description="the hub's retained status as it came, "
                                          "but its group table (GET …/groups)")

    @classmethod
    def of(cls, hub: HubRecord) -> HubPublic:
        status = hub.status or {}
        until = pairing_until(hub)
        return cls(**hub.__dict__, pairing_open=until is not None, pairing_until=until,
                   radio_up=status.get("radio_up"), reason=status.get("reason"))


class DevicePublic(BaseModel):
    id: str
    hub_id: str
    ieee: str
    manufacturer: str | None
    model: str | None
    name: str | None
    quirk: str | None
    power_source: str
    available: bool
    availability_reason: str | None
    availability_changed_at: datetime | None
    capabilities: State
    constraints: Constraints = Field(
        description="ranges the device reports for capability attributes, {instance: {attribute: "
                    "{min, max}}}; commands setting them are held to these, else to the "
                    "vocabulary's defaults")
    updated_at: datetime | None

    @classmethod
    def of(cls, device: DeviceRecord) -> DevicePublic:
        return cls(**{k: v for k, v in device.__dict__.items() if k != "removed"})


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)
                    ] | None = Field(description="the new name; null clears it", examples=["Hall"])


class PairingOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration: int = Field(default=60, ge=1, le=254, description="seconds permit-join stays open")


class PairingStartedPublic(BaseModel):
    hub_id: str
    until: datetime
    request_id: str
    cursor: int = Field(description="poll GET .../pairing?after=<cursor> for the events since")

    @classmethod
    def of(cls, started: PairingStarted) -> PairingStartedPublic:
        return cls(**started.__dict__)


class PairingClosedPublic(BaseModel):
    hub_id: str
    request_id: str


class PairingEventPublic(BaseModel):
    id: int
    ts: datetime
    step: str
    ieee: str | None
    ok: bool
    detail: str | None
    until: datetime | None
    capabilities: list[str] | None
    manufacturer: str | None
    model: str | None

    @classmethod
    def of(cls, event: PairingEventRecord) -> PairingEventPublic:
        return cls(**{k: v for k, v in event.__dict__.items() if k != "hub_id"})


class PairingProgressPublic(BaseModel):
    open: bool
    until: datetime | None
    cursor: int = Field(description="the newest event id; pass it as `after` next time")
    events: list[PairingEventPublic]

    @classmethod
    def of(cls, progress: PairingProgress) -> PairingProgressPublic:
        return cls(open=progress.open, until=progress.until, cursor=progress.cursor,
                   events=[PairingEventPublic.of(e) for e in progress.events])


class SamplePublic(BaseModel):
    ts: datetime
    value: Value


class CommandPublic(BaseModel):
    id: str
    hub_id: str
    device_id: str
    capability: str
    command: str
    args: dict[str, Value]
    status: str
    state: State | None
    error: str | None
    error_code: str | None
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    duration_ms: float | None

    @classmethod
    def of(cls, command: CommandRecord) -> CommandPublic:
        return cls(**{k: v for k, v in command.__dict__.items() if k != "ieee"})


Scopes = Annotated[list[Literal["read", "control", "admin"]], Field(min_length=1, max_length=3)]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    scopes: Scopes = Field(description="control includes read; admin includes both",
                           examples=[["read"]])
    expires_at: AwareDatetime | None = Field(default=None, description="never, when null")


class TokenPublic(BaseModel):
    id: str
    name: str
    account: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked: bool

    @classmethod
    def of(cls, token: TokenRecord) -> TokenPublic:
        return cls(id=token.id, name=token.name, account=token.account,
                   scopes=sorted(token.scopes), created_at=token.created_at,
                   expires_at=token.expires_at, revoked=token.revoked)


class TokenCreated(TokenPublic):
    token: str = Field(description="the token itself: shown now, never again")
