"""The table-driven DeviceHandler: one zigpy device seen through the cluster → capability tables.

Nothing here knows a particular cluster: the tables (device_handlers/clusters/) say what each
attribute and command means, this module binds them to the clusters a device really has and runs
them against zigpy 2.x (attribute events, reads, writes, ZCL commands, binds, reporting).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zigpy.device
import zigpy.exceptions
from zigpy.zcl import (
    AttributeReportedEvent,
    AttributeUpdatedEvent,
    Cluster,
    ReportingConfig,
    foundation,
)
from zigpy.zcl.foundation import Status, ZCLAttributeDef, ZCLCommandDef

from device_handlers.assumed import AssumedStates
from device_handlers.convert import is_non_value, plain
from device_handlers.model import CommandError, ConfigureStep, Reading, ReadingsCallback
from device_handlers.tables import (
    AttributeMap,
    ClusterTable,
    CommandMap,
    LimitMap,
    ReceivedCommand,
    SendCommand,
    SetupStep,
)
from wire.capabilities import instance_name, split_instance
from wire.contract import Constraints, Limits, Value

LOGGER = logging.getLogger(__name__)

AttributeRef = int | str | ZCLAttributeDef  # how zigpy's read/write calls name an attribute

# What a failed exchange with the device means for the hub, most specific first.
_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (zigpy.exceptions.DeliveryError, "no_route"),
    (TimeoutError, "timeout"),
    (zigpy.exceptions.ZigbeeException, "no_route"),
)
_TRANSPORT_EXCEPTIONS = tuple(exc for exc, _ in _TRANSPORT_ERRORS)


def transport_error(exc: BaseException, doing: str) -> CommandError:
    """A zigpy/asyncio exception as a CommandError ("no_route" or "timeout")."""
    code = next(code for kind, code in _TRANSPORT_ERRORS if isinstance(exc, kind))
    detail = str(exc) or type(exc).__name__
    return CommandError(code, f"{doing}: {detail}")


def _status_name(status: Any) -> str:
    return str(getattr(status, "name", status))


def _defines(cluster: Cluster, attribute: ZCLAttributeDef) -> ZCLAttributeDef | None:
    """The device cluster's own definition of an attribute (quirks may replace classes)."""
    try:
        return cluster.find_attribute(attribute.name)
    except KeyError:
        return None


class CachedAttributes:
    """A cluster's attribute cache as converters see it: looked up by attribute definition,
    ZCL non-values (0xFFFF, NaN, ...) as None."""

    __slots__ = ("cluster",)

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def get(self, attribute: ZCLAttributeDef) -> Any:
        try:
            value = self.cluster.get(attribute.name)
        except KeyError:
            return None
        return None if is_non_value(attribute, value) else value


@dataclass(frozen=True, eq=False)
class Binding:
    """One AttributeMap entry bound to one cluster of the device."""

    entry: AttributeMap
    cluster: Cluster
    attribute: ZCLAttributeDef  # as the device's cluster class defines it
    depends: tuple[ZCLAttributeDef, ...]  # those of the entry's dependencies the cluster defines
    client: bool
    endpoint: int = field(init=False)
    key: tuple[int, str, str] = field(init=False)  # endpoint, capability, field

    def __post_init__(self) -> None:
        # Looked at on every report: worked out once.
        endpoint = int(self.cluster.endpoint.endpoint_id)
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "key", (endpoint, self.entry.capability, self.entry.field))

    def applies(self) -> bool:
        """Supported by the device and, by the cached attributes, meant for it now."""
        if self.cluster.is_attribute_unsupported(self.attribute):
            return False
        return self.entry.when is None or self.entry.when(CachedAttributes(self.cluster))

    def concerns(self, attribute_id: int, attribute_name: str | None) -> bool:
        return attribute_name == self.attribute.name or (
            attribute_name is None and attribute_id == self.attribute.id
        )

    def depends_on(self, attribute_id: int, attribute_name: str | None) -> bool:
        return any(
            attribute_name == dep.name or (attribute_name is None and attribute_id == dep.id)
            for dep in self.depends
        )


@dataclass(frozen=True, kw_only=True)
class Request:
    """A capability command planned as ZCL, before anything is sent: what execute() will do."""

    instance: str
    command_name: str
    endpoint: int
    cluster_id: int
    command: ZCLCommandDef | None = None  # a cluster command with ``fields`` ...
    fields: dict[str, Any] = field(default_factory=dict)
    writes: dict[AttributeRef, Any] = field(default_factory=dict)  # ... or attribute writes
    read_back: tuple[str, ...] = ()
    assumes: Value | None = None  # the assumed state the command sets (a siren sounding)
    assumed_for: float | None = None
    cluster: Cluster = field(repr=False, compare=False)

    def payload(self) -> bytes:
        """The ZCL payload (after the ZCL header) this request puts on the air."""
        if self.command is not None:
            return bytes(self.command.schema(**self.fields).serialize())
        records = []
        for name, value in self.writes.items():
            attr = self.cluster.find_attribute(name)
            records.append(
                foundation.Attribute(
                    attrid=attr.id,
                    value=foundation.TypeValue(type=attr.zcl_type, value=attr.type(value)),
                )
            )
        schema = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Write_Attributes].schema
        return bytes(schema(attributes=records).serialize())


class _CommandListener:
    """zigpy's legacy listener for the cluster commands a device sends (IAS, remotes)."""

    def __init__(self, cluster: Cluster, received: tuple[ReceivedCommand, ...]) -> None:
        self.cluster = cluster
        self.received = received
        self._reverts: dict[int, asyncio.TimerHandle] = {}  # attribute id → pending revert

    def cluster_command(self, tsn: int, command_id: int, args: Any) -> None:
        for rule in self.received:
            if rule.command.id != command_id:
                continue
            if rule.attribute is not None and rule.value is not None:
                value = rule.value(args, CachedAttributes(self.cluster))
                if value is not None:
                    self._set(rule.attribute.id, value)
                    if rule.revert_after is not None and (delay := rule.revert_after(args)) > 0:
                        self._reverts[rule.attribute.id] = asyncio.get_running_loop().call_later(
                            delay, self._set, rule.attribute.id, rule.revert_value)
            if rule.reply is not None:
                self.cluster.create_catching_task(rule.reply(self.cluster))

    def _set(self, attribute_id: int, value: Any) -> None:
        """Mirror into zigpy's cache; the attribute_updated event gives the readings."""
        pending = self._reverts.pop(attribute_id, None)
        if pending is not None:
            pending.cancel()
        self.cluster.update_attribute(attribute_id, value)

    def close(self) -> None:
        self.cluster.remove_listener(self)
        for pending in self._reverts.values():
            pending.cancel()
        self._reverts.clear()


class TableDeviceHandler:
    """A DeviceHandler (device_handlers.model) driven by the cluster tables."""

    def __init__(
        self, device: zigpy.device.Device, tables: Iterable[tuple[ClusterTable, Cluster]]
    ) -> None:
        self.device = device
        self._tables = list(tables)
        model = getattr(device, "model", None)
        self._bindings: list[Binding] = []
        for table, cluster in self._tables:
            for entry in table.attributes:
                if entry.models is not None and model not in entry.models:
                    continue
                attr = _defines(cluster, entry.attribute)
                if attr is None:
                    continue
                deps = tuple(d for dep in entry.depends if (d := _defines(cluster, dep)))
                self._bindings.append(Binding(entry, cluster, attr, deps, table.client))
        self._assumed = AssumedStates(self._tables)
        self._notify: ReadingsCallback | None = None
        self._route()

    def _route(self) -> None:
        """What ``readings_for_update`` looks at for one attribute, worked out once (it runs for
        every report): per cluster, the bindings an attribute concerns or feeds, in binding
        order; per binding, the bindings that win over it when they apply; per capability, the
        endpoints it may have, lowest first."""
        self._by_name: dict[int, dict[str, list[Binding]]] = {}
        self._by_id: dict[int, dict[int, list[Binding]]] = {}
        for b in self._bindings:
            names = self._by_name.setdefault(id(b.cluster), {})
            ids = self._by_id.setdefault(id(b.cluster), {})
            for attr in (b.attribute, *b.depends):
                if b not in names.setdefault(attr.name, []):
                    names[attr.name].append(b)
                if b not in ids.setdefault(attr.id, []):
                    ids[attr.id].append(b)
        self._rivals: dict[Binding, tuple[Binding, ...]] = {
            b: tuple(r for r in self._bindings
                     if r.key == b.key and r.entry.priority > b.entry.priority)
            for b in self._bindings}
        self._by_capability: dict[str, list[Binding]] = {}
        for b in sorted(self._bindings, key=lambda b: b.endpoint):
            self._by_capability.setdefault(b.entry.capability, []).append(b)
        self._assumed_endpoints: dict[str, int] = {}
        for cap, endpoint in self._assumed.endpoints():
            self._assumed_endpoints[cap] = min(self._assumed_endpoints.get(cap, endpoint), endpoint)

    # --- what the device is ----------------------------------------------------------------

    def _active(self) -> list[Binding]:
        """Bindings that apply now; of several for one endpoint/capability/field, the highest
        priority ones (e.g. ElectricalMeasurement power over Metering demand)."""
        candidates = [b for b in self._bindings if b.applies()]
        best: dict[tuple[int, str, str], int] = {}
        for b in candidates:
            best[b.key] = max(best.get(b.key, b.entry.priority), b.entry.priority)
        return [b for b in candidates if b.entry.priority == best[b.key]]

    def _primaries(self, active: Iterable[Binding]) -> dict[str, int]:
        primaries: dict[str, int] = {}
        for cap, endpoint in [*((b.entry.capability, b.endpoint) for b in active),
                              *self._assumed.endpoints()]:
            primaries[cap] = min(primaries.get(cap, endpoint), endpoint)
        return primaries

    @property
    def capabilities(self) -> dict[str, str]:
        """{instance: capability}; re-evaluated from the cache (an IAS zone type read at
        configure turns "alarm" into "contact")."""
        active = self._active()
        primaries = self._primaries(active)
        found = {
            instance_name(b.entry.capability, b.endpoint, primaries[b.entry.capability]):
                b.entry.capability
            for b in sorted(active, key=lambda b: b.key)
        }
        found.update({r.instance: r.capability for r in self._assumed.readings(primaries)})
        return found

    def _limited(self) -> list[tuple[LimitMap, Cluster, str]]:
        """(limit entry, its cluster, the capability instance it bounds) for the capabilities
        the device has now."""
        primaries = self._primaries(self._active())
        found = []
        for table, cluster in self._tables:
            for limit in table.limits:
                if limit.capability not in primaries:
                    continue
                instance = instance_name(limit.capability, int(cluster.endpoint.endpoint_id),
                                         primaries[limit.capability])
                if instance in self.capabilities:
                    found.append((limit, cluster, instance))
        return found

    @property
    def constraints(self) -> Constraints:
        """{instance: {field: limits}} as the device reports them (from the attribute cache)."""
        found: Constraints = {}
        for limit, cluster, instance in self._limited():
            ends = [self._limit_end(limit, cluster, attrs) for attrs in limit.ends]
            if ends[0] is not None and ends[1] is not None:
                low, high = sorted((ends[0], ends[1]))
                found.setdefault(instance, {})[limit.field] = Limits(min=low, max=high)
        return found

    @staticmethod
    def _limit_end(limit: LimitMap, cluster: Cluster,
                   attributes: tuple[ZCLAttributeDef, ...]) -> float | None:
        cached = CachedAttributes(cluster)
        for attribute in attributes:
            defined = _defines(cluster, attribute)
            raw = cached.get(defined) if defined is not None else None
            if raw is None:
                continue
            try:
                value = plain(limit.convert(raw, cached))
            except (ArithmeticError, TypeError, ValueError, KeyError):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None

    def _limit_attributes(self, cluster: Cluster) -> list[ZCLAttributeDef]:
        """The limit attributes of one cluster worth reading: defined, not known unsupported."""
        return [defined for limit, c, _ in self._limited() if c is cluster
                for attr in limit.attributes
                if (defined := _defines(cluster, attr)) is not None
                and not cluster.is_attribute_unsupported(defined)]

    # --- readings ----------------------------------------------------------------------------

    def _reading(self, b: Binding, raw: Any, primary: int) -> Reading | None:
        if raw is None or (is_non_value(b.attribute, raw) and not b.entry.non_value_is_value):
            return None
        try:
            value: Value = plain(b.entry.convert(raw, CachedAttributes(b.cluster)))
        except (ArithmeticError, TypeError, ValueError, KeyError):
            LOGGER.warning("%s: cannot convert %s=%r for %s.%s", self.device.ieee,
                           b.attribute.name, raw, b.entry.capability, b.entry.field,
                           exc_info=True)
            return None
        if value is None:
            return None
        cap = b.entry.capability
        return Reading(
            endpoint=b.endpoint,
            cluster=int(b.cluster.cluster_id),
            capability=cap,
            instance=instance_name(cap, b.endpoint, primary),
            attribute=b.entry.field,
            value=value,
            unit=b.entry.unit,
        )

    def _from_cache(self, wanted: Callable[[Binding], bool]) -> list[Reading]:
        active = self._active()
        primaries = self._primaries(active)
        readings = []
        for b in active:
            if wanted(b):
                reading = self._reading(b, b.cluster.get(b.attribute.name),
                                        primaries[b.entry.capability])
                if reading is not None:
                    readings.append(reading)
        return readings

    def cached_readings(self) -> list[Reading]:
        return self._from_cache(lambda b: True) + self._assumed_readings()

    def _assumed_readings(self, **only: Any) -> list[Reading]:
        return self._assumed.readings(self._primaries(self._active()), **only)

    def readings_for_update(
        self, cluster: Cluster, attribute_id: int, attribute_name: str | None, value: Any
    ) -> list[Reading]:
        """Readings derived from one attribute change of one cluster: the entries for that
        attribute, and those whose conversion depends on it (re-derived from the cache); the
        same as ``_active`` and ``_primaries`` give, looking only at the bindings concerned."""
        if attribute_name is not None:
            routed = self._by_name.get(id(cluster), {}).get(attribute_name, ())
        else:
            routed = self._by_id.get(id(cluster), {}).get(attribute_id, ())
        readings = []
        for b in routed:
            if b.cluster is not cluster or not self._is_active(b):
                continue
            if b.concerns(attribute_id, attribute_name):
                raw = value
            else:
                raw = cluster.get(b.attribute.name)
            reading = self._reading(b, raw, self._primary(b))
            if reading is not None:
                readings.append(reading)
        return readings

    def _is_active(self, b: Binding) -> bool:
        """As ``_active`` decides: it applies, and no binding of its key with a higher priority
        applies."""
        return b.applies() and not any(r.applies() for r in self._rivals[b])

    def _primary(self, b: Binding) -> int:
        """The primary endpoint of an active binding's capability, as ``_primaries`` gives it."""
        cap = b.entry.capability
        lowest = self._assumed_endpoints.get(cap, b.endpoint)
        for other in self._by_capability[cap]:
            if other.endpoint >= min(lowest, b.endpoint):
                break
            if self._is_active(other):
                return other.endpoint
        return min(lowest, b.endpoint)

    def attach(self, on_readings: ReadingsCallback) -> Callable[[], None]:
        undo: list[Callable[[], None]] = [self._assumed.close]
        self._notify = on_readings

        for table, cluster in self._tables:

            def on_event(
                event: AttributeReportedEvent | AttributeUpdatedEvent, cluster: Cluster = cluster
            ) -> None:
                readings = self.readings_for_update(
                    cluster, event.attribute_id, event.attribute_name, event.value
                )
                if not readings:
                    return
                try:
                    on_readings(readings)
                except Exception:  # zigpy calls us inside its frame handling: never break it
                    LOGGER.exception("%s: readings callback failed", self.device.ieee)

            undo.append(cluster.on_event(AttributeReportedEvent.event_type, on_event))
            undo.append(cluster.on_event(AttributeUpdatedEvent.event_type, on_event))
            if table.received:
                listener = _CommandListener(cluster, table.received)
                cluster.add_listener(listener)
                undo.append(listener.close)

        def detach() -> None:
            while undo:
                undo.pop()()

        return detach

    # --- reading from the device ---------------------------------------------------------------

    @staticmethod
    def _read_plan(bindings: Iterable[Binding]) -> dict[Cluster, list[AttributeRef]]:
        """Attribute names to read per cluster: the mapped ones, and the dependencies (scale,
        multiplier, zone type) not cached yet. Known-unsupported attributes are skipped."""
        plan: dict[Cluster, dict[AttributeRef, None]] = {}
        for b in bindings:
            if b.client or b.cluster.is_attribute_unsupported(b.attribute):
                continue
            names = plan.setdefault(b.cluster, {})
            names[b.attribute.name] = None
            for dep in b.depends:
                if b.cluster.get(dep.name) is None and not b.cluster.is_attribute_unsupported(dep):
                    names[dep.name] = None
        return {cluster: list(names) for cluster, names in plan.items()}

    async def _read(
        self, plan: Mapping[Cluster, list[AttributeRef]], doing: str
    ) -> tuple[dict[Cluster, set[str]], list[CommandError]]:
        done: dict[Cluster, set[str]] = {}
        errors: list[CommandError] = []
        for cluster, names in plan.items():
            try:
                success, _failure = await cluster.read_attributes(names, allow_cache=False)
            except _TRANSPORT_EXCEPTIONS as exc:
                errors.append(transport_error(exc, f"{doing} {cluster.name}"))
                continue
            done[cluster] = set(success)
        return done, errors

    def _after_read(self, done: Mapping[Cluster, set[str]]) -> list[Reading]:
        def was_read(b: Binding) -> bool:
            names = done.get(b.cluster, set())
            return b.attribute.name in names or any(d.name in names for d in b.depends)

        return self._from_cache(was_read)

    async def read_state(self) -> list[Reading]:
        """Read every mapped attribute (allow_cache=False), and the limits not known yet.
        Clusters that fail are skipped; only when nothing at all could be read is the failure
        raised (as a CommandError)."""
        plan = self._read_plan(self._bindings)
        for cluster in {c for _, c, _ in self._limited()}:
            missing = [a.name for a in self._limit_attributes(cluster) if cluster.get(a.name) is None]
            if missing:
                plan[cluster] = [*plan.get(cluster, []), *missing]
        done, errors = await self._read(plan, "reading")
        if errors and not done:
            raise errors[0]
        return self._after_read(done) + self._assumed_readings()

    # --- commands ------------------------------------------------------------------------------

    def plan(self, instance: str, command: str, args: Mapping[str, Value]) -> Request:
        """The ZCL request a capability command becomes on this device (no radio traffic).
        Raises CommandError "unsupported" or "invalid"."""
        capability, endpoint = split_instance(instance)
        primary = self._primaries(self._active()).get(capability)
        if primary is None:
            raise CommandError("unsupported", f"device has no {instance!r} capability")
        endpoint = primary if endpoint is None else endpoint
        if instance_name(capability, endpoint, primary) not in self.capabilities:
            raise CommandError("unsupported", f"device has no {instance!r} capability")
        for table, cluster in self._tables:
            if table.client or cluster.endpoint.endpoint_id != endpoint:
                continue
            for cmd in table.commands:
                if (cmd.capability, cmd.command) != (capability, command):
                    continue
                if cmd.when is None or cmd.when(CachedAttributes(cluster)):
                    return self._build(instance, endpoint, cluster, cmd, args)
        raise CommandError("unsupported", f"{instance!r} cannot {command!r} on this device")

    def _build(
        self, instance: str, endpoint: int, cluster: Cluster, cmd: CommandMap,
        args: Mapping[str, Value],
    ) -> Request:
        common: dict[str, Any] = dict(
            instance=instance, command_name=cmd.command, endpoint=endpoint,
            cluster_id=int(cluster.cluster_id), read_back=cmd.read_back, cluster=cluster,
            assumes=cmd.assumes,
            assumed_for=cmd.assumed_for(args) if cmd.assumed_for is not None else None,
        )
        action = cmd.action
        try:
            if isinstance(action, SendCommand):
                zcl_cmd = cluster.server_commands.get(action.command.id)
                if zcl_cmd is None or zcl_cmd.name != action.command.name:
                    raise CommandError(
                        "unsupported", f"{cluster.name} has no {action.command.name} command"
                    )
                fields = action.fields(args)
                zcl_cmd.schema(**fields).serialize()  # out-of-range values fail here
                return Request(command=zcl_cmd, fields=fields, **common)
            attr = _defines(cluster, action.attribute)
            if attr is None:
                raise CommandError(
                    "unsupported", f"{cluster.name} has no {action.attribute.name} attribute"
                )
            value = action.build(args)
            attr.type(value).serialize()
            return Request(writes={attr.name: value}, **common)
        except CommandError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CommandError("invalid", f"{instance}.{cmd.command}: {exc}") from exc

    async def _send(self, request: Request) -> None:
        doing = f"{request.instance}.{request.command_name}"
        cluster = request.cluster
        try:
            if request.command is not None:
                rsp = await cluster.command(request.command.id, **request.fields)
                status = getattr(rsp, "status", None)
                if status is not None and status != Status.SUCCESS:
                    raise CommandError("nack", f"{doing}: device answered {_status_name(status)}")
                return
            [records] = await cluster.write_attributes(request.writes)
        except _TRANSPORT_EXCEPTIONS as exc:
            raise transport_error(exc, doing) from exc
        failed = [r for r in records if r.status != Status.SUCCESS]
        if failed:
            attrs = ", ".join(
                f"{cluster.find_attribute(r.attrid).name}={_status_name(r.status)}"
                if r.attrid is not None else _status_name(r.status)
                for r in failed
            )
            raise CommandError("nack", f"{doing}: device refused the write ({attrs})")

    async def execute(self, instance: str, command: str, args: dict[str, Value]) -> list[Reading]:
        request = self.plan(instance, command, args)
        await self._send(request)
        assumed: list[Reading] = []
        if request.assumes is not None:
            capability = split_instance(instance)[0]
            self._assumed.assume(request.endpoint, capability, request.assumes,
                                 lasts=request.assumed_for,
                                 on_return=lambda: self._returned(request.endpoint, capability))
            assumed = self._assumed_readings(endpoint=request.endpoint, capability=capability)
        bindings = [
            b for b in self._bindings
            if not b.client and b.endpoint == request.endpoint
            and b.entry.capability in request.read_back
        ]
        done, errors = await self._read(
            self._read_plan(bindings), f"{instance}.{command} was acknowledged; reading back"
        )
        if errors:
            raise errors[0]
        return self._after_read(done) + assumed

    def _returned(self, endpoint: int, capability: str) -> None:
        """A timed assumed state (a siren's warning) ran out: tell the hub."""
        if self._notify is not None:
            self._notify(self._assumed_readings(endpoint=endpoint, capability=capability))

    # --- pairing -------------------------------------------------------------------------------

    async def configure(self) -> list[ConfigureStep]:
        steps: list[ConfigureStep] = []
        for table, cluster in self._tables:
            if table.bind:
                steps.append(await self._bind(cluster))
            if table.client:
                continue
            mine = [b for b in self._bindings if b.cluster is cluster]
            reports: dict[ZCLAttributeDef, ReportingConfig] = {}
            for b in mine:
                if b.entry.report is not None and not cluster.is_attribute_unsupported(b.attribute):
                    reports.setdefault(b.attribute, b.entry.report.zigpy())
            if reports:
                steps.append(await self._configure_reporting(cluster, reports))
            for setup in table.setup:
                steps.append(await self._setup(cluster, setup))
            deps: dict[AttributeRef, None] = {
                dep.name: None for b in mine for dep in b.depends
                if not cluster.is_attribute_unsupported(dep)
            }
            deps.update({attr.name: None for attr in self._limit_attributes(cluster)})
            if deps:
                steps.append(await self._read_dependencies(cluster, list(deps)))
        return steps

    @staticmethod
    def _step(cluster: Cluster, action: str, ok: bool, detail: str) -> ConfigureStep:
        return ConfigureStep(endpoint=int(cluster.endpoint.endpoint_id),
                             cluster=int(cluster.cluster_id), action=action, ok=ok, detail=detail)

    async def _bind(self, cluster: Cluster) -> ConfigureStep:
        try:
            result = await cluster.bind()
        except Exception as exc:  # one failed step never stops the others
            return self._step(cluster, "bind", False, f"{type(exc).__name__}: {exc}")
        status = result[0] if isinstance(result, list | tuple) and result else result
        ok = status == Status.SUCCESS
        return self._step(cluster, "bind", ok, _status_name(status))

    async def _configure_reporting(
        self, cluster: Cluster, reports: dict[ZCLAttributeDef, ReportingConfig]
    ) -> ConfigureStep:
        try:
            result = await cluster.configure_reporting_multiple(reports)
        except Exception as exc:
            return self._step(cluster, "configure_reporting", False,
                              f"{type(exc).__name__}: {exc}")
        unsupported = [a.name for a, s in result.items() if s == Status.UNSUPPORTED_ATTRIBUTE]
        failed = [f"{a.name}={_status_name(s)}" for a, s in result.items()
                  if s not in (Status.SUCCESS, Status.UNSUPPORTED_ATTRIBUTE)]
        configured = [a.name for a, s in result.items() if s == Status.SUCCESS]
        detail = "; ".join(
            part for part in (
                f"configured: {', '.join(configured)}" if configured else "",
                f"unsupported: {', '.join(unsupported)}" if unsupported else "",
                f"failed: {', '.join(failed)}" if failed else "",
            ) if part
        )
        return self._step(cluster, "configure_reporting", not failed, detail)

    async def _setup(self, cluster: Cluster, setup: SetupStep) -> ConfigureStep:
        try:
            detail = await setup.run(cluster)
        except Exception as exc:
            return self._step(cluster, setup.action, False, f"{type(exc).__name__}: {exc}")
        return self._step(cluster, setup.action, True, detail)

    async def _read_dependencies(
        self, cluster: Cluster, names: list[AttributeRef]
    ) -> ConfigureStep:
        """Read the attributes conversions depend on (multipliers, zone type, color
        capabilities), so that reports arriving later convert correctly, and the limits the
        device reports (setpoint limits, color temperature range)."""
        try:
            success, failure = await cluster.read_attributes(names, allow_cache=False)
        except Exception as exc:
            return self._step(cluster, "read_attributes", False, f"{type(exc).__name__}: {exc}")
        detail = ", ".join(
            [f"{name}={plain(value)}" for name, value in success.items()]
            + [f"{name}: {_status_name(status)}" for name, status in failure.items()]
        )
        return self._step(cluster, "read_attributes", True, detail)
