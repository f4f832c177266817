"""The shapes of the cluster → capability tables: what one zigpy cluster means in the vocabulary.

A ``ClusterTable`` says, for one zigpy cluster class (as a server, or as a client for remotes):
which attributes become which capability fields (``AttributeMap``), how capability commands become
ZCL commands or attribute writes (``CommandMap``), which commands the device sends us update which
attribute (``ReceivedCommand``), and any extra pairing step (``SetupStep``). The tables themselves
live in ``device_handlers/clusters/``; ``device_handlers/registry.py`` indexes them by cluster id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, cast

from zigpy.zcl import Cluster, ReportingConfig
from zigpy.zcl.foundation import ZCLAttributeDef, ZCLCommandDef

from device_handlers.convert import Cached, Convert, Needs, Predicate, identity, needs_of
from wire.capabilities import CAPABILITIES
from wire.contract import Value

CommandArgs = Mapping[str, Value]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportConfig:
    """Attribute reporting: at most every ``min`` s, at least every ``max`` s, on a ``change``."""

    min: int
    max: int
    change: int | float = 1

    def zigpy(self) -> ReportingConfig:
        # zigpy annotates reportable_change as int; float attributes take a float (as in ZHA).
        return ReportingConfig(
            min_interval=self.min, max_interval=self.max,
            reportable_change=cast(int, self.change),
        )


@dataclass(frozen=True, kw_only=True)
class AttributeMap:
    """One ZCL attribute → one capability field.

    ``when`` (evaluated on the cluster's cached attributes) decides whether the entry applies to
    this device now, e.g. the IAS zone type choosing between ``contact`` and ``occupancy``.
    When entries of several clusters on one endpoint give the same capability field, only those
    with the highest ``priority`` apply (ElectricalMeasurement power beats Metering demand).
    ``models`` restricts a model-specific entry to those ``device.model`` values.
    """

    attribute: ZCLAttributeDef
    capability: str
    field: str
    convert: Convert = identity
    report: ReportConfig | None = None
    needs: Needs = ()
    when: Predicate | None = None
    priority: int = 0
    models: frozenset[str] | None = None
    unit: str | None = None  # defaults to the vocabulary's unit for the field
    # The data type's "invalid" value (0xFF for a uint8, ...) is a value here, not "unknown".
    non_value_is_value: bool = False

    def __post_init__(self) -> None:
        spec = CAPABILITIES.get(self.capability)
        attr = spec.attribute(self.field) if spec else None
        if attr is None:
            raise ValueError(f"{self.capability}.{self.field} is not in the capability vocabulary")
        if self.unit is None:
            object.__setattr__(self, "unit", attr.unit)

    @property
    def depends(self) -> Needs:
        """Other attributes of the cluster that the conversion or the condition reads."""
        return (*self.needs, *needs_of(self.convert), *needs_of(self.when))


@dataclass(frozen=True, kw_only=True)
class LimitMap:
    """Attributes by which the device says the range a capability field takes (a thermostat's
    setpoint limits, a bulb's physical color temperature range), as ZHA reads them.

    Each end is the first of its attributes with a value, converted to the field's unit; the two
    ends are sorted after conversion (mireds turn round as kelvin). Both ends or no limits.
    """

    capability: str
    field: str
    ends: tuple[tuple[ZCLAttributeDef, ...], tuple[ZCLAttributeDef, ...]]
    convert: Convert = identity

    def __post_init__(self) -> None:
        spec = CAPABILITIES.get(self.capability)
        if spec is None or spec.attribute(self.field) is None:
            raise ValueError(f"{self.capability}.{self.field} is not in the capability vocabulary")

    @property
    def attributes(self) -> tuple[ZCLAttributeDef, ...]:
        return (*self.ends[0], *self.ends[1])


@dataclass(frozen=True, slots=True)
class SendCommand:
    """Send a ZCL cluster command; ``build`` turns the capability arguments into its fields."""

    command: ZCLCommandDef
    build: Callable[[CommandArgs], dict[str, Any]] | None = None

    def fields(self, args: CommandArgs) -> dict[str, Any]:
        return self.build(args) if self.build is not None else {}


@dataclass(frozen=True, slots=True)
class WriteAttribute:
    """Write one attribute; ``build`` turns the capability arguments into its raw value."""

    attribute: ZCLAttributeDef
    build: Callable[[CommandArgs], Any]


def cluster_command(
    command: ZCLCommandDef, build: Callable[[CommandArgs], dict[str, Any]] | None = None
) -> SendCommand:
    return SendCommand(command, build)


def write_attribute(
    attribute: ZCLAttributeDef, build: Callable[[CommandArgs], Any]
) -> WriteAttribute:
    return WriteAttribute(attribute, build)


@dataclass(frozen=True, kw_only=True)
class AssumedState:
    """A capability field the device cannot be asked about: the hub holds it, starting from
    ``initial`` and changed by the commands it sends (``CommandMap.assumes``). An IAS warning
    device has no "sounding" attribute; it is silent until told to sound (ZHA assumes the same)."""

    capability: str
    field: str
    initial: Value

    def __post_init__(self) -> None:
        spec = CAPABILITIES.get(self.capability)
        if spec is None or spec.attribute(self.field) is None:
            raise ValueError(f"{self.capability}.{self.field} is not in the capability vocabulary")


@dataclass(frozen=True, kw_only=True)
class CommandMap:
    """A capability command → one ZCL command or attribute write on this cluster.

    ``read_back`` names the capabilities (on the same endpoint) whose attributes are read from the
    device after the command, to return the state as it really is. ``when`` picks between
    alternatives (e.g. enhanced hue when the light supports it).
    """

    capability: str
    command: str
    action: SendCommand | WriteAttribute
    read_back: tuple[str, ...] = ()
    when: Predicate | None = None
    # For an AssumedState of this capability: the value it takes once the device acknowledged the
    # command, and (optionally) after how many seconds it returns to its initial value.
    assumes: Value | None = None
    assumed_for: Callable[[CommandArgs], float] | None = None

    def __post_init__(self) -> None:
        spec = CAPABILITIES.get(self.capability)
        if spec is None or self.command not in spec.by_name:
            raise ValueError(
                f"{self.capability}.{self.command} is not in the capability vocabulary"
            )
        if not self.read_back:
            object.__setattr__(self, "read_back", (self.capability,))


@dataclass(frozen=True, kw_only=True)
class ReceivedCommand:
    """A cluster command the device sends us (IAS status change, a remote's On/Off).

    ``value(args, cached)`` gives the new raw value of ``attribute``; the handler writes it into
    zigpy's attribute cache, so the attribute tables derive the readings (as ZHA does).
    ``reply`` (optional) answers the device, e.g. an IAS enroll response. ``revert_after(args)``
    (seconds, optional) puts ``revert_value`` back afterwards, e.g. On/Off ``on_with_timed_off``.
    """

    command: ZCLCommandDef
    attribute: ZCLAttributeDef | None = None
    value: Callable[[Any, Cached], Any] | None = None
    reply: Callable[[Cluster], Coroutine[Any, Any, Any]] | None = None
    revert_after: Callable[[Any], float] | None = None
    revert_value: Any = None


@dataclass(frozen=True, kw_only=True)
class SetupStep:
    """An extra pairing step for a cluster (e.g. IAS CIE enrollment). ``run`` returns a detail
    string and raises on failure."""

    action: str
    run: Callable[[Cluster], Awaitable[str]]


@dataclass(frozen=True, kw_only=True)
class ClusterTable:
    """Everything Spoke knows about one zigpy cluster class, on the server or the client side."""

    cluster: type[Cluster]
    client: bool = False  # True: the table applies to the device's output (client) cluster
    bind: bool = True
    attributes: tuple[AttributeMap, ...] = ()
    commands: tuple[CommandMap, ...] = ()
    received: tuple[ReceivedCommand, ...] = ()
    setup: tuple[SetupStep, ...] = ()
    assumed: tuple[AssumedState, ...] = ()
    limits: tuple[LimitMap, ...] = ()

    def __post_init__(self) -> None:
        names = self.cluster.attributes_by_name
        for attr in (*(a for e in self.attributes for a in (e.attribute, *e.depends)),
                     *(a for limit in self.limits for a in limit.attributes)):
            if names.get(attr.name) != attr:
                raise ValueError(f"{attr.name} is not an attribute of {self.cluster.__name__}")
        for cmd in self.commands:
            if isinstance(cmd.action, SendCommand):
                defs = self.cluster.server_commands
                if defs.get(cmd.action.command.id) != cmd.action.command:
                    raise ValueError(
                        f"{cmd.action.command.name} is not a command of {self.cluster.__name__}"
                    )
            elif names.get(cmd.action.attribute.name) != cmd.action.attribute:
                raise ValueError(
                    f"{cmd.action.attribute.name} is not an attribute of {self.cluster.__name__}"
                )
        # A server cluster receives the device's client commands, and the other way round.
        sent = self.cluster.server_commands if self.client else self.cluster.client_commands
        for rule in self.received:
            if sent.get(rule.command.id) != rule.command:
                raise ValueError(
                    f"{rule.command.name} is not a command {self.cluster.__name__} receives here"
                )

    @property
    def cluster_id(self) -> int:
        return int(self.cluster.cluster_id)
