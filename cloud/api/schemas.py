"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.storage.base import CommandRecord, DeviceRecord, HubRecord
from wire.contract import State, Value


class HubPublic(BaseModel):
    id: str
    online: bool | None
    last_seen: datetime | None
    events_received: int
    events_stored: int
    duplicates: int
    gaps: int
    last_seq: int | None
    status: dict[str, Any] | None

    @classmethod
    def of(cls, hub: HubRecord) -> HubPublic:
        return cls(**hub.__dict__)


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
    updated_at: datetime | None

    @classmethod
    def of(cls, device: DeviceRecord) -> DevicePublic:
        return cls(**{k: v for k, v in device.__dict__.items() if k != "removed"})


class SamplePublic(BaseModel):
    ts: datetime
    value: Value


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capability: str = Field(min_length=1, max_length=64, examples=["switch"])
    command: str = Field(min_length=1, max_length=64, examples=["on"])
    args: dict[str, Any] = Field(default_factory=dict)


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
