"""The hub <-> cloud wire contract: MQTT topics, payload models and the contract version.

This is the only place that formats or parses a Spoke topic. Both the hub and the cloud import it;
neither imports the other. Payloads are JSON documents validated by the pydantic models below at both
ends. Readers ignore unknown fields so a newer peer can add optional fields without a version bump;
anything that changes the meaning of an existing field bumps ``WIRE_VERSION`` (and the topic root).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

WIRE_VERSION = 1
TOPIC_ROOT = f"spoke/v{WIRE_VERSION}"

# Largest payload either side accepts; bigger messages are rejected unread.
MAX_PAYLOAD_BYTES = 64 * 1024
# Most events one EventBatch may carry (the payload bound applies as well).
MAX_BATCH_EVENTS = 1000

# Hub ids appear in topics, so they are restricted to characters that are safe in MQTT topic levels.
HUB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_HUB_ID_RE = re.compile(HUB_ID_PATTERN)
_IEEE_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){7}$")

HubId = Annotated[str, Field(pattern=HUB_ID_PATTERN)]
Ieee = Annotated[str, Field(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){7}$")]

# A hub's ledger epoch: made at random when the hub's store is created. A hub that lost its store
# (new SD card, restored backup) starts a new epoch, so its new events are never taken for old ones.
Epoch = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
LEGACY_EPOCH = ""  # events of hubs that predate epochs


def _finite_from_json(value: float, info: ValidationInfo) -> float:
    """JSON has no NaN or Infinity, and its numbers are doubles (1e999 and 10**400 are not): refuse
    others from the wire, where they would be stored as values no JSON reader (nor PostgreSQL, nor
    InfluxDB) takes back, or not be stored at all."""
    if info.mode == "json" and not abs(value) <= sys.float_info.max:  # NaN compares False
        raise ValueError("not a finite number")
    return value


_NO_OFFSET = timedelta(0)


def _utc(value: datetime) -> datetime:
    """A timestamp without a zone is UTC (as storage takes it), so that every timestamp compares;
    one that cannot be expressed in UTC (year 1 at +01:00) is refused."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.utcoffset() == _NO_OFFSET:  # already UTC (what hubs send): nothing can overflow
        return value
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range in UTC") from None
    return value


Number = Annotated[float, AfterValidator(_finite_from_json)]
Integer = Annotated[int, AfterValidator(_finite_from_json)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
# A capability attribute's value as it travels: numbers, booleans, enum strings, or null (unknown).
Value = bool | Integer | Number | str | None
State = dict[str, dict[str, Value]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class WireError(ValueError):
    """A topic or payload that does not follow the contract."""


# --------------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------------


class TopicKind(StrEnum):
    STATUS = "status"  # hub status, retained, last will "offline"
    DEVICE = "device"  # device description + current state, retained; empty payload = removed
    EVENTS = "events"  # capability changes, QoS 1, carry the hub's sequence number
    COMMANDS = "commands"  # cloud -> hub, QoS 1, never retained
    RESULTS = "results"  # hub -> cloud command results, QoS 1
    REQUESTS = "requests"  # cloud -> hub management requests (pairing, rename, remove), QoS 1
    PAIRING = "pairing"  # hub -> cloud pairing progress (joins, interview steps), QoS 1
    ACKS = "acks"  # cloud -> hub, retained: how far the cloud has committed the hub's ledger


def ieee_to_topic(ieee: str) -> str:
    return ieee.replace(":", "").lower()


def ieee_from_topic(level: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{16}", level):
        raise WireError(f"not an IEEE address in topic: {level!r}")
    return ":".join(level[i : i + 2] for i in range(0, 16, 2))


def hub_client_id(hub_id: str) -> str:
    """The MQTT client id a hub connects with; the broker binds it to the hub's credentials."""
    return f"spoke-hub-{hub_id}"


def is_hub_id(value: str) -> bool:
    return bool(_HUB_ID_RE.fullmatch(value))  # not match: "$" also matches before a final "\n"


def is_ieee(value: str) -> bool:
    return bool(_IEEE_RE.fullmatch(value))


class Topics:
    """Topic builders and the parser. Nothing else formats a Spoke topic string."""

    @staticmethod
    def hub(hub_id: str) -> str:
        if not is_hub_id(hub_id):
            raise WireError(f"invalid hub id {hub_id!r}")
        return f"{TOPIC_ROOT}/hubs/{hub_id}"

    @classmethod
    def status(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/status"

    @classmethod
    def device(cls, hub_id: str, ieee: str) -> str:
        return f"{cls.hub(hub_id)}/devices/{ieee_to_topic(ieee)}"

    @classmethod
    def events(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/events"

    @classmethod
    def commands(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/commands"

    @classmethod
    def results(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/results"

    @classmethod
    def requests(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/requests"

    @classmethod
    def pairing(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/pairing"

    @classmethod
    def acks(cls, hub_id: str) -> str:
        return f"{cls.hub(hub_id)}/acks"

    # Subscriptions -------------------------------------------------------------------------------
    @staticmethod
    def cloud_ingest_filters() -> list[str]:
        """What the cloud's ingest worker subscribes to (all hubs)."""
        base = f"{TOPIC_ROOT}/hubs/+"
        return [f"{base}/status", f"{base}/devices/+", f"{base}/events", f"{base}/results",
                f"{base}/pairing"]

    @classmethod
    def hub_filters(cls, hub_id: str) -> list[str]:
        """What a hub subscribes to: only its own commands, requests and acknowledgements. The
        broker's access rules allow a hub exactly these (and nothing else) to read."""
        return [cls.commands(hub_id), cls.requests(hub_id), cls.acks(hub_id)]

    @classmethod
    def hub_publications(cls, hub_id: str) -> list[str]:
        """The topics (and filters) a hub may publish on: its own hub -> cloud kinds only. The
        broker's access rules are derived from this list."""
        return [cls.status(hub_id), f"{cls.hub(hub_id)}/devices/+", cls.events(hub_id),
                cls.results(hub_id), cls.pairing(hub_id)]

    @staticmethod
    def cloud_publications() -> list[str]:
        """What only the cloud publishes: commands, requests and acknowledgements to any hub."""
        base = f"{TOPIC_ROOT}/hubs/+"
        return [f"{base}/commands", f"{base}/requests", f"{base}/acks"]

    @staticmethod
    def everything() -> str:
        """The filter covering every Spoke topic (what the cloud may read)."""
        return f"{TOPIC_ROOT}/#"

    @staticmethod
    def parse(topic: str) -> tuple[TopicKind, str, str | None]:
        """Split a Spoke topic into (kind, hub_id, ieee or None); raise WireError otherwise."""
        parts = topic.split("/")
        root = TOPIC_ROOT.split("/")
        if parts[: len(root)] != root or len(parts) < len(root) + 3 or parts[len(root)] != "hubs":
            raise WireError(f"not a Spoke {TOPIC_ROOT} topic: {topic!r}")
        hub_id, rest = parts[len(root) + 1], parts[len(root) + 2 :]
        if not is_hub_id(hub_id):
            raise WireError(f"invalid hub id in topic: {hub_id!r}")
        if len(rest) == 2 and rest[0] == "devices":
            return TopicKind.DEVICE, hub_id, ieee_from_topic(rest[1])
        if len(rest) == 1 and rest[0] in {
            TopicKind.STATUS,
            TopicKind.EVENTS,
            TopicKind.COMMANDS,
            TopicKind.RESULTS,
            TopicKind.REQUESTS,
            TopicKind.PAIRING,
            TopicKind.ACKS,
        }:
            return TopicKind(rest[0]), hub_id, None
        raise WireError(f"unknown Spoke topic: {topic!r}")


# --------------------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------------------


class Message(BaseModel):
    """Base of every payload: versioned, immutable, tolerant of fields added by newer peers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1  # WIRE_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Any:
        """Parse and validate a payload; raise WireError with a readable reason otherwise."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise WireError(f"payload too large ({len(payload)} bytes > {MAX_PAYLOAD_BYTES})")
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
            raise WireError(f"invalid {cls.__name__}: {where}: {first.get('msg')}") from None


# Zigbee group ids a hub may use (0x0000 and 0xFFF8-0xFFFF are reserved), scene ids, endpoints.
GroupId = Annotated[int, Field(ge=0x0001, le=0xFFF7)]
SceneId = Annotated[int, Field(ge=0, le=0xFF)]
EndpointId = Annotated[int, Field(ge=1, le=240)]


class GroupMember(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ieee: Ieee
    endpoint: EndpointId


class SceneInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    scene_id: SceneId
    name: str | None = Field(default=None, max_length=128)


class GroupInfo(BaseModel):
    """One Zigbee group of a hub: its members (device endpoints) and the scenes stored to it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    group_id: GroupId
    name: str | None = Field(default=None, max_length=128)
    members: list[GroupMember] = Field(default_factory=list, max_length=512)
    scenes: list[SceneInfo] = Field(default_factory=list, max_length=256)


class HubStatus(Message):
    """Retained on the hub's status topic; the broker publishes the offline form as the last will."""

    hub_id: HubId
    online: bool
    ts: Timestamp = Field(default_factory=utcnow)
    version: str | None = None
    radio: str | None = None
    devices: int | None = None
    reason: str | None = None  # why offline / degraded ("connection lost", "radio down: ...")
    pairing_until: Timestamp | None = None  # permit-join open until this instant
    radio_up: bool | None = None
    # The hub's counters (integers: events_emitted, last_seq, commands_succeeded, ...) and
    # measurements (radio_downtime_s); a peer that reads every value as a float still reads them.
    metrics: dict[str, Integer | Number] = Field(default_factory=dict)
    # The hub's event ledger: its epoch, the last sequence number it assigned, and the highest one
    # its outbox bound dropped (those will never arrive; the cloud stops waiting for them).
    epoch: Epoch | None = None
    last_seq: int | None = Field(default=None, ge=0, le=2**63 - 1)
    dropped_upto: int | None = Field(default=None, ge=0, le=2**63 - 1)
    # The hub's Zigbee groups (None: a hub before groups, or one whose radio is not up).
    groups: list[GroupInfo] | None = Field(default=None, max_length=1024)


class Limits(BaseModel):
    """The range a capability attribute takes on one device, in the vocabulary's unit, as the
    device itself reports it (a thermostat's setpoint limits, a bulb's color temperature range)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    min: Number
    max: Number

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


# {capability instance: {attribute: limits}}
Constraints = dict[str, dict[str, Limits]]


class DeviceInfo(Message):
    """Retained description of one device and its current capability state."""

    hub_id: HubId
    ieee: Ieee
    nwk: int | None = Field(default=None, ge=0, le=0xFFFF)  # a 16-bit network address
    manufacturer: str | None = None
    model: str | None = None
    name: str | None = None
    quirk: str | None = None
    power_source: Literal["mains", "battery", "unknown"] = "unknown"
    available: bool = True
    availability_reason: str | None = None
    availability_changed_at: Timestamp | None = None
    # Required: what makes a payload a description (any payload with hub_id and ieee would be one).
    capabilities: State
    # Optional (hubs before it send none): where the device reports the range an attribute takes,
    # commands setting it are checked against that range instead of the vocabulary's default.
    constraints: Constraints = Field(default_factory=dict)
    ts: Timestamp = Field(default_factory=utcnow)


class Event(Message):
    """One capability attribute change. ``seq`` is per hub and epoch, starts at 1, only grows."""

    hub_id: HubId
    epoch: Epoch | None = None  # None: a hub older than ledger epochs (one epoch per hub)
    seq: int = Field(ge=1, le=2**63 - 1)  # storage keeps it as a signed 64-bit integer
    ts: Timestamp
    ieee: Ieee
    capability: str = Field(min_length=1, max_length=64)
    attribute: str = Field(min_length=1, max_length=64)
    value: Value
    unit: str | None = Field(default=None, max_length=16)


class RefusedEvent(NamedTuple):
    """An event of a batch that broke the contract, left out of it."""

    position: int  # in the batch's events
    seq: int | None  # its sequence number, when that much of it is readable
    reason: str
    raw: str  # the event as JSON text


class BatchedEvent(BaseModel):
    """One event inside an ``EventBatch``: an ``Event`` whose hub and epoch are the batch's."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    seq: int = Field(ge=1, le=2**63 - 1)
    ts: Timestamp
    ieee: Ieee
    capability: str = Field(min_length=1, max_length=64)
    attribute: str = Field(min_length=1, max_length=64)
    value: Value
    unit: str | None = Field(default=None, max_length=16)


class EventBatch(Message):
    """Several events of one hub and epoch in one message, on the same events topic as ``Event``.

    A hub sends batches only to a cloud that advertised it takes them (``LedgerAck.batch_max``).
    An event of the batch that breaks the contract does not spoil the others: ``decode`` keeps the
    valid ones and lists the refused ones in ``refused``.
    """

    hub_id: HubId
    epoch: Epoch | None = None
    events: list[BatchedEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)
    # A plain default: a default_factory costs pydantic a look at its signature per batch.
    _refused: tuple[RefusedEvent, ...] = PrivateAttr(default=())

    @property
    def refused(self) -> tuple[RefusedEvent, ...]:
        """Events of the payload left out as invalid."""
        return self._refused

    def expand(self) -> list[Event]:
        """The batch's events as single events, not checked again (they were, as batch items).

        Built as ``Event.model_construct`` builds a model, without its per-field look-ups for
        defaults (every field is given): that look-up was the largest part of storing a batch."""
        envelope = {"v": self.v, "hub_id": self.hub_id, "epoch": self.epoch}
        new, put = Event.__new__, object.__setattr__
        out: list[Event] = []
        for item in self.events:
            ev = new(Event)
            put(ev, "__dict__", envelope | item.__dict__)
            put(ev, "__pydantic_fields_set__", _EVENT_FIELDS)
            put(ev, "__pydantic_extra__", None)
            put(ev, "__pydantic_private__", None)
            out.append(ev)
        return out


_EVENT_FIELDS = frozenset(Event.model_fields)


class _LooseBatch(Message):
    """A batch's envelope, its events not looked at yet (to keep the valid ones of a bad batch)."""

    hub_id: HubId
    epoch: Epoch | None = None
    events: list[Any] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
    return f"{where}: {first.get('msg')}"


def decode_events(payload: bytes) -> Event | EventBatch:
    """An events-topic payload: one ``Event``, or an ``EventBatch`` of the valid events it holds
    (those refused are in its ``refused``). Raises WireError for a payload that is neither."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload too large ({len(payload)} bytes > {MAX_PAYLOAD_BYTES})")
    # Parsed once, as what it looks like. The look is a hint only: a string value cannot hold
    # '"events"' (its quotes are escaped), an unknown field named so would fail and go on below.
    looks_batched = b'"events"' in payload
    for model in (EventBatch, Event) if looks_batched else (Event,):
        try:
            return model.model_validate_json(payload)
        except ValidationError:
            pass  # invalid: below, say why in the terms of what it meant to be
    try:
        loose = _LooseBatch.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["loc"] in ((), ("events",)) and e["type"] in ("missing", "json_invalid",
                                                               "model_type") for e in errors):
            return Event.from_bytes(payload)  # type: ignore[no-any-return]  # no batch: why
        raise WireError(f"invalid EventBatch: {_first_error(exc)}") from None
    kept: list[BatchedEvent] = []
    refused: list[RefusedEvent] = []
    for position, item in enumerate(loose.events):
        raw = json.dumps(item)
        try:
            # Through JSON again, so that what only JSON refuses (NaN, 1e999) is refused here too.
            kept.append(BatchedEvent.model_validate_json(raw))
        except (ValidationError, ValueError, RecursionError) as exc:
            seq = item.get("seq") if isinstance(item, dict) else None
            reason = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
            readable = type(seq) is int and 1 <= seq <= 2**63 - 1
            refused.append(RefusedEvent(position, seq if readable else None, reason, raw))
    batch = EventBatch.model_construct(hub_id=loose.hub_id, epoch=loose.epoch, events=kept)
    batch._refused = tuple(refused)
    return batch


def _event_prefix(hub_id: str, epoch: str | None) -> bytes:
    """How ``Event.to_bytes`` starts for this hub and epoch, up to the first field of its own."""
    sample = Event(hub_id=hub_id, epoch=epoch, seq=1, ts=datetime(2000, 1, 1, tzinfo=UTC),
                   ieee="00:00:00:00:00:00:00:00", capability="c", attribute="a",
                   value=None).to_bytes()
    return sample[:sample.index(b'"seq":')]


class EventBatcher:
    """Joins ``Event`` payloads of one hub and epoch (as ``Event.to_bytes`` made them) into
    ``EventBatch`` payloads without parsing them: each event loses the fields the batch holds."""

    def __init__(self, hub_id: str, epoch: str | None) -> None:
        self._prefix = _event_prefix(hub_id, epoch)
        self.head = self._prefix + b'"events":['
        self.tail = b"]}"

    def item(self, payload: bytes) -> bytes | None:
        """The payload as an item of a batch; None when it is not an event of this hub and epoch
        (it then travels alone)."""
        if not payload.startswith(self._prefix):
            return None
        return b"{" + payload[len(self._prefix):]

    def overhead(self, count: int) -> int:
        """Bytes of a batch of ``count`` events that are not the events' own."""
        return len(self.head) + len(self.tail) + max(0, count - 1)

    def join(self, items: Sequence[bytes]) -> bytes:
        return self.head + b",".join(items) + self.tail


class CommandStatus(StrEnum):
    PENDING = "pending"  # accepted by the cloud, not yet answered by the hub
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # device NACK, no route, timeout, unsupported ...
    EXPIRED = "expired"  # reached the hub after its expiry; not executed
    TIMEOUT = "timeout"  # cloud-side only: no result before the REST call gave up


class Command(Message):
    """A capability command for one device. Executed at most once per id by the hub."""

    id: str = Field(min_length=1, max_length=64)
    hub_id: HubId
    ieee: Ieee
    capability: str = Field(min_length=1, max_length=64)
    command: str = Field(min_length=1, max_length=64)
    args: dict[str, Value] = Field(default_factory=dict)
    issued_at: Timestamp = Field(default_factory=utcnow)
    expires_at: Timestamp


class CommandResult(Message):
    """The hub's answer to a command: the state read back from the device, or why it failed."""

    id: str = Field(min_length=1, max_length=64)
    hub_id: HubId
    ieee: Ieee | None = None
    status: Literal[CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.EXPIRED]
    state: State | None = None
    error: str | None = None
    error_code: str | None = None  # nack | no_route | timeout | unsupported | unknown_device | ...
    ts: Timestamp = Field(default_factory=utcnow)
    duration_ms: Number | None = None


# Group management and group commands: hub requests answered by a ``CommandResult`` with the
# request's id (``state``: {"group": {...}}, {"member": {...}} or {"scene": {...}}), the hub's group
# table following in its status (``HubStatus.groups``).
GroupAction = Literal["group_create", "group_rename", "group_delete", "group_add", "group_remove",
                      "group_command", "scene_store", "scene_recall", "scene_remove"]
GROUP_ACTIONS: frozenset[str] = frozenset(GroupAction.__args__)  # type: ignore[attr-defined]
GroupCommandName = Literal["on", "off", "set_level", "set_color_temperature"]


class HubRequest(Message):
    """A management request from the cloud to a hub (pairing, rename, remove; groups and scenes).

    The group fields are optional: hubs before groups ignore them and refuse the group actions."""

    id: str = Field(min_length=1, max_length=64)
    hub_id: HubId
    action: Literal["permit_join", "close_join", "rename", "remove"] | GroupAction
    ieee: Ieee | None = None
    duration: int | None = Field(default=None, ge=0, le=254)
    name: str | None = Field(default=None, max_length=128)
    expires_at: Timestamp
    group_id: GroupId | None = None
    endpoint: EndpointId | None = None  # a member: (ieee, endpoint)
    scene_id: SceneId | None = None
    command: GroupCommandName | None = None  # group_command
    args: dict[str, Value] = Field(default_factory=dict)  # group_command: level, kelvin, transition


class LedgerAck(Message):
    """The cloud's end-to-end acknowledgement to one hub, retained on the hub's acks topic.

    ``seq``: every event of ``epoch`` up to it is committed in the cloud's database (the highest
    contiguous committed sequence number). ``results``: ids of command results committed since the
    previous acknowledgement. The hub keeps an event or result in its outbox until it is covered.
    """

    hub_id: HubId
    epoch: Epoch | None = None
    seq: int = Field(ge=0, le=2**63 - 1)
    results: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=1000)
    ts: Timestamp = Field(default_factory=utcnow)
    # The most events this cloud takes in one EventBatch; 0 (clouds before batches send none):
    # single events only. A hub batches only after an acknowledgement that allows it.
    batch_max: int = Field(default=0, ge=0, le=MAX_BATCH_EVENTS)


PairingStep = Literal[
    "permit_open",  # permit-join opened (until = when it closes)
    "permit_closed",
    "joined",  # a device joined; the interview starts
    "refused",  # a device tried to join while permit-join was closed
    "node_descriptor",
    "endpoints",
    "simple_descriptor",
    "basic_attributes",  # manufacturer and model read
    "interviewed",  # zigpy finished the interview (quirk applied if any)
    "bind",
    "configure_reporting",
    "state_read",
    "capabilities",  # the capabilities the device handlers derived
    "adopted",  # ready: described, configured, state known
    "failed",  # the interview or configuration failed
]


class PairingEvent(Message):
    """One step of pairing on a hub, for live progress in the CLI and apps."""

    hub_id: HubId
    ts: Timestamp = Field(default_factory=utcnow)
    step: PairingStep
    ieee: Ieee | None = None
    ok: bool = True
    detail: str | None = Field(default=None, max_length=512)
    until: Timestamp | None = None  # permit_open: when permit-join closes
    capabilities: list[str] | None = None  # capabilities / adopted
    manufacturer: str | None = None
    model: str | None = None


PAYLOAD_MODELS: dict[TopicKind, type[Message]] = {
    TopicKind.STATUS: HubStatus,
    TopicKind.DEVICE: DeviceInfo,
    TopicKind.EVENTS: Event,
    TopicKind.COMMANDS: Command,
    TopicKind.RESULTS: CommandResult,
    TopicKind.REQUESTS: HubRequest,
    TopicKind.PAIRING: PairingEvent,
    TopicKind.ACKS: LedgerAck,
}


def decode(topic: str, payload: bytes) -> tuple[TopicKind, str, str | None, Message | None]:
    """Parse a topic and its payload and check that they agree.

    Returns (kind, hub_id, ieee, message); message is None for an empty retained device payload,
    which means the device was removed; on the events topic it is an ``Event`` or an
    ``EventBatch``. Raises WireError for anything that breaks the contract.
    """
    kind, hub_id, ieee = Topics.parse(topic)
    if kind is TopicKind.DEVICE and payload == b"":
        return kind, hub_id, ieee, None
    message: Any
    if kind is TopicKind.EVENTS:
        message = decode_events(payload)
    else:
        message = PAYLOAD_MODELS[kind].from_bytes(payload)
    if getattr(message, "hub_id", hub_id) != hub_id:
        raise WireError(f"hub_id {message.hub_id!r} in payload does not match topic {topic!r}")
    if ieee is not None and getattr(message, "ieee", ieee) != ieee:
        raise WireError(f"ieee {message.ieee!r} in payload does not match topic {topic!r}")
    return kind, hub_id, ieee, message
