"""The simulated Zigbee network: the air between the coordinator and the virtual devices.

A SimNetwork holds the virtual devices, the coordinator's network settings (what a real stick keeps
in its NVRAM), permit-join state and simulated time. It persists all of that to a JSON file so a
restarted hub finds its devices where a real stick would: at once when the radio detaches or a
backup is set, and at most ``save_delay`` seconds after a device joined, left or was configured
(writing the whole file on every change made pairing N devices cost O(N²)). A process killed in
that second loses those changes of the air, as a stick loses what it had not written yet. The
radio (simulators.radio) attaches to a network by name; nothing here knows the hub or the cloud.

Faults of the air: ``fail``/``recover`` (the stick stops answering), ``power_off`` (a device no
longer answers: sends to it fail without a MAC ack), ``fail_sends`` (the radio reports a send as
failed, e.g. with a timeout); a device's own misbehaviour is ``VirtualDevice.faults``. ``sniff``
records what the coordinator puts on the air and ``settle`` waits until nothing is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zigpy.backups
import zigpy.exceptions
import zigpy.types as t

from simulators import kinds
from simulators.device import VirtualDevice

LOGGER = logging.getLogger(__name__)
STATE_VERSION = 1

# Loop turns without a frame in flight after which the air counts as settled: enough for zigpy
# to turn a frame it received into the frames it sends back.
_SETTLED_TURNS = 10

# Networks by name, so a radio configured with path "sim://NAME" finds its network.
_NETWORKS: dict[str, SimNetwork] = {}

# Builders for device sources other than built-in kinds, e.g. "file:" (ZHA diagnostics).
DeviceBuilder = Callable[..., VirtualDevice]
SOURCE_BUILDERS: dict[str, DeviceBuilder] = {}


class JoinRefused(RuntimeError):
    """A device tried to join while permit-join was closed."""


class RadioFailure(RuntimeError):
    """The simulated radio was told to fail (for watchdog tests)."""


def find_network(name: str) -> SimNetwork | None:
    return _NETWORKS.get(name)


def get_network(name: str) -> SimNetwork:
    try:
        return _NETWORKS[name]
    except KeyError:
        raise zigpy.exceptions.ControllerException(
            f"no simulated network named {name!r} is running") from None


class SimNetwork:
    """Virtual devices plus the coordinator's persisted network settings."""

    def __init__(
        self,
        name: str = "default",
        *,
        state_path: Path | None = None,
        stick_path: Path | None = None,
        speed: float = 1.0,
        tick: float = 1.0,
        latency: float = 0.002,
        seed: int | None = None,
        save_delay: float = 1.0,
    ) -> None:
        self.name = name
        self.state_path = state_path  # the air: virtual devices and their state
        # The stick: the coordinator's network settings, as a real stick keeps them in NVRAM. A
        # separate file, so a test can "replace the stick" and restore a backup onto it.
        self.stick_path = stick_path
        self.speed = speed
        self.tick_interval = tick
        self.latency = latency
        self.rng = random.Random(seed)
        self.devices: dict[t.EUI64, VirtualDevice] = {}
        self.backup: dict[str, Any] | None = None  # open coordinator backup JSON
        self.app: Any = None  # the attached zigpy ControllerApplication
        self.permit_until = 0.0
        self.failed: str | None = None
        self.paused = False  # time stands still: no physics, no periodic reports
        self.refused_joins = 0
        self.group_sends: Counter[int] = Counter()  # group-addressed frames sent, by group id
        self._tick_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: set[asyncio.TimerHandle] = set()  # device frames on their way
        self._send_failure: tuple[BaseException, int] | None = None  # (error, frames let through)
        self.sniffer: list[t.ZigbeePacket] | None = None
        self._dirty = False
        self.save_delay = save_delay
        self._save_timer: asyncio.TimerHandle | None = None
        self.last_traffic = time.monotonic()  # when a frame last went over the air
        if state_path is not None and state_path.exists():
            self._load()
        if stick_path is not None and stick_path.exists():
            self.backup = json.loads(stick_path.read_text()) or None
        _NETWORKS[name] = self

    def clock(self) -> float:
        """Simulated seconds: real monotonic time scaled by the network's speed."""
        return time.monotonic() * self.speed

    @property
    def path(self) -> str:
        """The radio path that reaches this network."""
        return f"sim://{self.name}"

    @property
    def is_new(self) -> bool:
        return self.backup is None and not self.devices

    # ------------------------------------------------------------------ radio side
    def attach(self, app: Any) -> None:
        if self.failed:
            raise RadioFailure(self.failed)
        self.app = app
        if self._tick_task is None:
            self._tick_task = asyncio.get_running_loop().create_task(self._ticker())

    async def detach(self) -> None:
        self.app = None
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        for task in list(self._tasks):
            task.cancel()
        for handle in self._in_flight:
            handle.cancel()
        self._in_flight.clear()
        self.save()

    def close(self) -> None:
        if self._save_timer is not None:
            self.save()
        _NETWORKS.pop(self.name, None)

    def permit(self, seconds: float) -> None:
        self.permit_until = time.monotonic() + seconds if seconds > 0 else 0.0
        LOGGER.info("sim network %s: permit join %s", self.name,
                    f"open for {seconds:.0f} s" if seconds > 0 else "closed")

    @property
    def permit_open(self) -> bool:
        return time.monotonic() < self.permit_until

    def fail(self, reason: str = "simulated radio failure", *, silent: bool = False) -> None:
        """Make the radio stop answering, as a crashed stick would. A loud failure reports the
        lost connection at once (a USB unplug); a silent one is found by zigpy's watchdog."""
        self.failed = reason
        if self.app is not None and not silent:
            self.app.connection_lost(RadioFailure(reason))

    def recover(self) -> None:
        self.failed = None

    def fail_sends(self, error: BaseException | None, *, after: int = 0) -> None:
        """Make the radio report the coordinator's sends as failed, as a radio library does: each
        send raises ``error`` (a DeliveryError for a frame nobody acknowledged, TimeoutError for a
        stick that did not confirm in time) once ``after`` more frames have gone through. None
        ends it. zigpy retries a failed send twice, so one exchange costs three frames."""
        self._send_failure = None if error is None else (error, after)

    def sniff(self) -> list[t.ZigbeePacket]:
        """Record from now on every frame the coordinator puts on the air (as a sniffer next to
        the stick would); returns the list they are appended to. ``sniffer = None`` stops it."""
        self.sniffer = []
        return self.sniffer

    async def deliver(self, packet: t.ZigbeePacket) -> None:
        """Carry a frame from the coordinator to its destination; raise if it cannot arrive."""
        if self.failed:
            raise zigpy.exceptions.DeliveryError(f"radio failed: {self.failed}")
        if self._send_failure is not None:
            error, through = self._send_failure
            if through <= 0:
                raise error.with_traceback(None)  # raised again and again: no growing traceback
            self._send_failure = (error, through - 1)
        if self.sniffer is not None:
            self.sniffer.append(packet)
        if packet.dst.addr_mode == t.AddrMode.Broadcast:
            return
        if packet.dst.addr_mode == t.AddrMode.Group:
            # One multicast on the air, carried out by every member endpoint in range.
            group = int(packet.dst.address)  # type: ignore[arg-type]
            self.group_sends[group] += 1
            self.last_traffic = time.monotonic()
            for member in list(self.devices.values()):
                if member.powered and member.joined and any(
                        group in ep.groups for ep in member.endpoints.values()):
                    self._spawn(self._process_group(member, packet))
            return
        self.last_traffic = time.monotonic()
        device = self._resolve(packet.dst)
        if device is None or not device.powered or not device.joined:
            raise zigpy.exceptions.DeliveryError(
                f"no route to {packet.dst!r}", status=t.MACStatus.MAC_NO_ACK)
        self._spawn(self._process(device, packet))

    async def _process(self, device: VirtualDevice, packet: t.ZigbeePacket) -> None:
        await asyncio.sleep(self.latency)
        try:
            replies = device.handle(packet)
        except Exception:
            LOGGER.exception("virtual device %s failed on %r", device.ieee, packet)
            return
        for reply in replies:
            self._to_coordinator(reply)
        if not device.joined:  # told to leave
            self._left(device)
        elif device.config_changed:
            device.config_changed = False
            self.changed()

    async def _process_group(self, device: VirtualDevice, packet: t.ZigbeePacket) -> None:
        await asyncio.sleep(self.latency)
        try:
            device.handle_group(packet)
        except Exception:
            LOGGER.exception("virtual device %s failed on %r", device.ieee, packet)
            return
        if device.config_changed:
            device.config_changed = False
            self.changed()

    def _to_coordinator(self, packet: t.ZigbeePacket) -> None:
        self.last_traffic = time.monotonic()
        if self.app is not None and not self.failed:
            self.app.packet_received(packet)

    async def quiet(self, seconds: float, *, within: float) -> bool:
        """Wait until no frame has gone over the air for ``seconds`` (at most ``within``
        seconds); True when the air went quiet."""
        deadline = time.monotonic() + within
        while True:
            idle = time.monotonic() - self.last_traffic
            if idle >= seconds and not self._tasks and not self._in_flight:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(max(0.005, seconds - idle))

    async def settle(self, *, within: float = 5.0) -> None:
        """Wait until no frame is in flight either way, and the coordinator has had the turns it
        needs to send what a frame set off (an answer, a default response); raise TimeoutError
        if the air is still busy after ``within`` seconds."""
        deadline = time.monotonic() + within
        idle_turns = 0
        while idle_turns < _SETTLED_TURNS:
            busy = bool(self._tasks or self._in_flight)
            idle_turns = 0 if busy else idle_turns + 1
            if busy and time.monotonic() > deadline:
                raise TimeoutError(f"sim network {self.name}: still busy after {within} s")
            await asyncio.sleep(self.latency / 4 if busy else 0)

    def _resolve(self, addr: t.AddrModeAddress) -> VirtualDevice | None:
        if addr.addr_mode == t.AddrMode.IEEE:
            return self.devices.get(t.EUI64(addr.address))
        return next((d for d in self.devices.values() if d.nwk == addr.address), None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ticker(self) -> None:
        last = self.clock()
        saved = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_interval)
            now = self.clock()
            if self.failed or self.app is None or self.paused:
                last = now
                continue
            for device in list(self.devices.values()):
                if device.joined and device.powered:
                    try:
                        device.tick(now, now - last)
                    except Exception:
                        LOGGER.exception("virtual device %s tick failed", device.ieee)
            last = now
            if time.monotonic() - saved > 30:
                self.save()
                saved = time.monotonic()

    # ------------------------------------------------------------------ device side
    def new_ieee(self) -> t.EUI64:
        # Locally administered EUI-64 (bit 1 of the first octet), so it never clashes with a
        # manufacturer's address space.
        raw = bytearray(self.rng.getrandbits(8) for _ in range(8))
        raw[0] = (raw[0] | 0x02) & 0xFE
        return t.EUI64(reversed(raw))

    def new_nwk(self) -> int:
        used = {d.nwk for d in self.devices.values()}
        while True:
            nwk = self.rng.randint(0x0001, 0xFFF7)
            if nwk not in used:
                return nwk

    def create(self, source: str | kinds.KindSpec, *, ieee: t.EUI64 | None = None,
               nwk: int | None = None) -> VirtualDevice:
        """Build a virtual device from a source: "kind:NAME", a kind name, "file:PATH", or a
        kind declared in code (``kinds.declare``; such a device is not restored after a restart:
        its declaration lives in the code that made it)."""
        ieee = ieee or self.new_ieee()
        nwk = self.new_nwk() if nwk is None else nwk
        if isinstance(source, kinds.KindSpec):
            device = kinds.build(source, ieee=ieee, nwk=nwk)
            known = kinds.KINDS.get(source.name) is source
            return self._wire(device, f"kind:{source.name}" if known else f"declared:{source.name}")
        if ":" not in source:
            source = f"kind:{source}"
        scheme, _, ref = source.partition(":")
        if scheme == "file" and scheme not in SOURCE_BUILDERS:
            import simulators.diagnostics  # noqa: F401  (registers the "file" builder)
        if scheme == "kind":
            if ref not in kinds.KINDS:
                raise ValueError(
                    f"unknown device kind {ref!r} (kinds: {', '.join(sorted(kinds.KINDS))})")
            device = kinds.build(ref, ieee=ieee, nwk=nwk)
        elif scheme in SOURCE_BUILDERS:
            device = SOURCE_BUILDERS[scheme](ref, ieee=ieee, nwk=nwk)
        else:
            raise ValueError(f"unknown device source {source!r}")
        return self._wire(device, source)

    def _wire(self, device: VirtualDevice, source: str) -> VirtualDevice:
        device.source = source
        device.clock = self.clock
        device.on_command = self._executed
        return device

    @property
    def executions_path(self) -> Path | None:
        """A log of every cluster command the devices carried out (the devices' own memory:
        it survives the hub process, so tests can count executions across a crash)."""
        return None if self.state_path is None else self.state_path.with_name("sim-executions.log")

    def _executed(self, device: VirtualDevice, command: str) -> None:
        path = self.executions_path
        if path is not None:
            with path.open("a") as log:
                log.write(f"{device.ieee} {command}\n")

    def power_on(self, device: VirtualDevice) -> None:
        """Switch a device on: it is on the network if it was before, else it asks to join."""
        self.devices[device.ieee] = device
        device.powered = True
        device.send = self._from_device
        if device.joined:
            return
        if not self.permit_open or self.app is None:
            self.refused_joins += 1
            del self.devices[device.ieee]
            raise JoinRefused(f"{device.kind} {device.ieee}: permit join is closed")
        device.joined = True
        self._dirty = True
        LOGGER.info("sim network %s: %s (%s) joins as 0x%04x", self.name, device.kind,
                    device.ieee, device.nwk)
        self.app.handle_join(nwk=device.nwk, ieee=device.ieee, parent_nwk=t.NWK(0x0000))
        self.changed()

    def wake(self, ieee: t.EUI64) -> None:
        """Let a device send now what it sends on its own now and then (its heartbeat), as if
        simulated time had run to that moment."""
        device = self.devices.get(ieee)
        if device is not None and device.joined and device.powered and device.behaviour:
            device.behaviour.wake(device)

    def burst(self, count: int) -> int:
        """Step every load generator ``count`` times at once; returns the reports that sends."""
        sent = 0
        for device in list(self.devices.values()):
            burst = getattr(device.behaviour, "burst", None)
            if device.joined and device.powered and burst is not None:
                sent += burst(device, count, self.clock())
        return sent

    def power_off(self, ieee: t.EUI64) -> None:
        device = self.devices.get(ieee)
        if device is not None:
            device.powered = False

    def _from_device(self, packet: t.ZigbeePacket) -> None:
        """A device transmits (a report or notification) to the coordinator."""
        self.last_traffic = time.monotonic()

        def arrive() -> None:
            self._in_flight.discard(handle)
            self._to_coordinator(packet)

        handle = asyncio.get_running_loop().call_later(self.latency, arrive)
        self._in_flight.add(handle)

    def _left(self, device: VirtualDevice) -> None:
        self.devices.pop(device.ieee, None)
        self.changed()
        if self.app is not None:
            self.app.handle_leave(device.nwk, device.ieee)

    def remove(self, ieee: t.EUI64) -> None:
        device = self.devices.pop(ieee, None)
        if device is not None:
            device.joined = False
            self.changed()

    # ------------------------------------------------------------------ persistence
    def set_backup(self, backup: zigpy.backups.NetworkBackup | None) -> None:
        self.backup = None if backup is None else backup.as_open_coordinator_json()
        if self.stick_path is not None:
            _write_json(self.stick_path, self.backup)
        self.save()

    def get_backup(self) -> zigpy.backups.NetworkBackup | None:
        if self.backup is None:
            return None
        return zigpy.backups.NetworkBackup.from_open_coordinator_json(self.backup)

    def changed(self) -> None:
        """The air changed: save within ``save_delay`` (at once without an event loop)."""
        if self.state_path is None or self._save_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        self._save_timer = loop.call_later(self.save_delay, self.save)

    def save(self) -> None:
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        if self.state_path is None:
            return
        state = {
            "version": STATE_VERSION,
            "backup": None if self.stick_path is not None else self.backup,
            "devices": [_device_state(d) for d in self.devices.values() if d.joined],
        }
        _write_json(self.state_path, state)

    def _load(self) -> None:
        assert self.state_path is not None
        state = json.loads(self.state_path.read_text())
        self.backup = state.get("backup")
        for entry in state.get("devices", []):
            try:
                device = self.create(entry["source"], ieee=t.EUI64.convert(entry["ieee"]),
                                     nwk=int(entry["nwk"]))
            except (ValueError, KeyError, OSError) as exc:
                LOGGER.warning("sim network %s: cannot restore %s: %s", self.name,
                               entry.get("ieee"), exc)
                continue
            _restore_device_state(device, entry)
            device.joined = True
            device.send = self._from_device
            self.devices[device.ieee] = device


def _write_json(path: Path, data: Any) -> None:
    """Replace a file atomically, so a crash never leaves half a state file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _key(ep: int, cluster: int, attr: int) -> str:
    return f"{ep}/{cluster}/{attr}"


def _device_state(device: VirtualDevice) -> dict[str, Any]:
    values, reporting, bound = {}, {}, []
    for ep in device.endpoints.values():
        for cluster in ep.in_clusters.values():
            if cluster.bound:
                bound.append(f"{ep.endpoint_id}/{cluster.cluster_id}")
            for attrid, value in cluster.values.items():
                if isinstance(value, bool | int | float | str) or value is None:
                    values[_key(ep.endpoint_id, cluster.cluster_id, attrid)] = (
                        value if isinstance(value, bool | str) or value is None
                        else (int(value) if isinstance(value, int) else float(value)))
            for attrid, cfg in cluster.reporting.items():
                reporting[_key(ep.endpoint_id, cluster.cluster_id, attrid)] = [
                    cfg.min_interval, cfg.max_interval, cfg.reportable_change]
    groups = {str(ep.endpoint_id): {str(g): name for g, name in ep.groups.items()}
              for ep in device.endpoints.values() if ep.groups}
    scenes = {str(ep.endpoint_id): [[g, s, stored] for (g, s), stored in ep.scenes.items()]
              for ep in device.endpoints.values() if ep.scenes}
    return {"source": device.source, "ieee": str(device.ieee), "nwk": int(device.nwk),
            "values": values, "reporting": reporting, "bound": bound, "groups": groups,
            "scenes": scenes}


def _restore_device_state(device: VirtualDevice, entry: dict[str, Any]) -> None:
    from simulators.device import Reporting

    for key, value in entry.get("values", {}).items():
        ep, cluster_id, attrid = (int(x) for x in key.split("/"))
        cluster = device.cluster(cluster_id, ep)
        if cluster is not None and (attrid not in cluster.values
                                    or isinstance(cluster.values[attrid], int | float | str)):
            old = cluster.values.get(attrid)
            if old is not None and not isinstance(old, bool) and isinstance(value, int | float):
                with contextlib.suppress(TypeError, ValueError):
                    value = type(old)(value)
            cluster.values[attrid] = value
    for key, (mn, mx, change) in entry.get("reporting", {}).items():
        ep, cluster_id, attrid = (int(x) for x in key.split("/"))
        cluster = device.cluster(cluster_id, ep)
        if cluster is not None:
            cluster.reporting[attrid] = Reporting(min_interval=mn, max_interval=mx,
                                                  reportable_change=change)
    for key in entry.get("bound", []):
        ep, cluster_id = (int(x) for x in key.split("/"))
        cluster = device.cluster(cluster_id, ep)
        if cluster is not None:
            cluster.bound = True
    for ep_id, table in entry.get("groups", {}).items():
        endpoint = device.endpoints.get(int(ep_id))
        if endpoint is not None:
            endpoint.groups = {int(g): str(name) for g, name in table.items()}
    for ep_id, stored in entry.get("scenes", {}).items():
        endpoint = device.endpoints.get(int(ep_id))
        if endpoint is not None:
            endpoint.scenes = {(int(g), int(s)): dict(state) for g, s, state in stored}
