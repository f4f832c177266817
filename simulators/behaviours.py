"""What virtual devices do: cluster commands carried out on attributes, and per-kind physics.

Cluster commands are a table keyed by (cluster id, command name), so any virtual device with the
cluster (a built-in kind or one built from a ZHA diagnostics file) obeys them the same way.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from zigpy.zcl import foundation
from zigpy.zcl.clusters.closures import DoorLock, WindowCovering
from zigpy.zcl.clusters.general import Identify, LevelControl, OnOff
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.hvac import Thermostat
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import (
    OccupancySensing,
    RelativeHumidity,
    TemperatureMeasurement,
)
from zigpy.zcl.clusters.security import IasWd, IasZone
from zigpy.zcl.clusters.smartenergy import Metering

from simulators import frames
from simulators.device import Animation, VirtualCluster, VirtualDevice, VirtualEndpoint

LOGGER = logging.getLogger(__name__)
Status = foundation.Status

# A command handler changes attributes and returns the status for the Default_Response, or
# (response command name, its fields) for a command that has a response of its own.
Handler = Callable[[VirtualDevice, VirtualEndpoint, VirtualCluster, Any, float], Any]
_HANDLERS: dict[tuple[int, str], Handler] = {}


def command(cluster: type, *names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            _HANDLERS[(cluster.cluster_id, name)] = fn
        return fn

    return register


def run_cluster_command(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster,
                        hdr: foundation.ZCLHeader, rest: bytes) -> tuple[Status, bytes | None]:
    if cluster.cls is None or hdr.command_id not in cluster.cls.server_commands:
        return Status.UNSUP_CLUSTER_COMMAND, None
    definition = cluster.cls.server_commands[hdr.command_id]
    try:
        args, _ = definition.schema.deserialize(rest)
    except (ValueError, KeyError):
        return Status.MALFORMED_COMMAND, None
    refused = device.faults.refused(cluster.cluster_id, definition.name)
    if refused is not None:
        return refused, None
    if device.faults.ignored(cluster.cluster_id, definition.name):
        return Status.SUCCESS, None
    handler = _HANDLERS.get((cluster.cluster_id, definition.name))
    if handler is None:
        return Status.UNSUP_CLUSTER_COMMAND, None
    name = f"{cluster.cls.ep_attribute}.{definition.name}"
    device.command_counts[name] += 1
    if device.on_command is not None:
        device.on_command(device, name)
    outcome = handler(device, ep, cluster, args, device.clock())
    if isinstance(outcome, tuple):  # a command with a response of its own: (name, fields)
        response, fields = outcome
        definition = cluster.cls.client_commands[
            next(i for i, d in cluster.cls.client_commands.items() if d.name == response)]
        body = definition.schema(**fields).serialize()
        return Status.SUCCESS, frames.zcl_reply(hdr, definition.id, body, general=False)
    return outcome, None


def _set(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, name: str,
         value: Any, now: float) -> None:
    device.set_attribute(ep.endpoint_id, cluster.cluster_id, cluster.attr_id(name), value, now=now)


def _animate(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, name: str,
             target: float, tenths: int, now: float) -> None:
    """Move an attribute to target over a ZCL transition time (tenths of a second)."""
    attrid = cluster.attr_id(name)
    device.animations = [a for a in device.animations
                         if (a.endpoint_id, a.cluster_id, a.attrid)
                         != (ep.endpoint_id, cluster.cluster_id, attrid)]
    start = cluster.values.get(attrid, target)
    if not tenths or start == target:
        device.set_attribute(ep.endpoint_id, cluster.cluster_id, attrid, round(target), now=now)
        return
    device.animations.append(Animation(ep.endpoint_id, cluster.cluster_id, attrid, start, target,
                                       now, tenths / 10))


def _switch(device: VirtualDevice, ep: VirtualEndpoint, on: bool, now: float) -> None:
    onoff = ep.in_clusters.get(OnOff.cluster_id)
    if onoff is not None:
        _set(device, ep, onoff, "on_off", on, now)


# -------------------------------------------------------------------------------- On/Off
@command(OnOff, "on", "on_with_recall_global_scene", "on_with_timed_off")
def _on(device, ep, cluster, args, now):
    _set(device, ep, cluster, "on_off", True, now)
    return Status.SUCCESS


@command(OnOff, "off", "off_with_effect")
def _off(device, ep, cluster, args, now):
    _set(device, ep, cluster, "on_off", False, now)
    return Status.SUCCESS


@command(OnOff, "toggle")
def _toggle(device, ep, cluster, args, now):
    _set(device, ep, cluster, "on_off", not cluster.get("on_off", False), now)
    return Status.SUCCESS


# -------------------------------------------------------------------------------- Level
@command(LevelControl, "move_to_level", "move_to_level_with_on_off")
def _move_to_level(device, ep, cluster, args, now):
    level = max(0, min(254, int(args.level)))
    _animate(device, ep, cluster, "current_level", level, int(args.transition_time or 0), now)
    if isinstance(args, LevelControl.ServerCommandDefs.move_to_level_with_on_off.schema):
        _switch(device, ep, level > 0, now)
    return Status.SUCCESS


@command(LevelControl, "move", "move_with_on_off")
def _move(device, ep, cluster, args, now):
    target = 254 if int(args.move_mode) == 0 else 1
    rate = max(1, int(args.rate or 50))  # units per second
    start = cluster.get("current_level", 0) or 0
    _animate(device, ep, cluster, "current_level", target, int(abs(target - start) / rate * 10),
             now)
    if isinstance(args, LevelControl.ServerCommandDefs.move_with_on_off.schema) and target > 1:
        _switch(device, ep, True, now)
    return Status.SUCCESS


@command(LevelControl, "step", "step_with_on_off")
def _step(device, ep, cluster, args, now):
    sign = 1 if int(args.step_mode) == 0 else -1
    level = max(1, min(254, (cluster.get("current_level", 0) or 0) + sign * int(args.step_size)))
    _animate(device, ep, cluster, "current_level", level, int(args.transition_time or 0), now)
    return Status.SUCCESS


@command(LevelControl, "stop", "stop_with_on_off")
def _stop_level(device, ep, cluster, args, now):
    device.animations = [a for a in device.animations if a.cluster_id != cluster.cluster_id]
    return Status.SUCCESS


# -------------------------------------------------------------------------------- Color
@command(Color, "move_to_color_temp")
def _move_to_color_temp(device, ep, cluster, args, now):
    lo = cluster.get("color_temp_physical_min", 153) or 153
    hi = cluster.get("color_temp_physical_max", 500) or 500
    mireds = max(lo, min(hi, int(args.color_temp_mireds)))
    _set(device, ep, cluster, "color_mode", Color.ColorMode.Color_temperature, now)
    _animate(device, ep, cluster, "color_temperature", mireds, int(args.transition_time or 0), now)
    return Status.SUCCESS


@command(Color, "move_to_color")
def _move_to_color(device, ep, cluster, args, now):
    _set(device, ep, cluster, "color_mode", Color.ColorMode.X_and_Y, now)
    _animate(device, ep, cluster, "current_x", int(args.color_x), int(args.transition_time or 0),
             now)
    _animate(device, ep, cluster, "current_y", int(args.color_y), int(args.transition_time or 0),
             now)
    return Status.SUCCESS


@command(Color, "move_to_hue_and_saturation")
def _move_to_hs(device, ep, cluster, args, now):
    _set(device, ep, cluster, "color_mode", Color.ColorMode.Hue_and_saturation, now)
    _set(device, ep, cluster, "current_hue", int(args.hue), now)
    _set(device, ep, cluster, "current_saturation", int(args.saturation), now)
    return Status.SUCCESS


@command(Color, "enhanced_move_to_hue_and_saturation")
def _enhanced_move_to_hs(device, ep, cluster, args, now):
    _set(device, ep, cluster, "color_mode", Color.ColorMode.Hue_and_saturation, now)
    if Color.AttributeDefs.enhanced_current_hue.id in cluster.values:
        _set(device, ep, cluster, "enhanced_current_hue", int(args.enhanced_hue), now)
    _set(device, ep, cluster, "current_hue", int(args.enhanced_hue) >> 8, now)
    _set(device, ep, cluster, "current_saturation", int(args.saturation), now)
    return Status.SUCCESS


@command(Color, "move_to_hue")
def _move_to_hue(device, ep, cluster, args, now):
    _set(device, ep, cluster, "current_hue", int(args.hue), now)
    return Status.SUCCESS


@command(Color, "move_to_saturation")
def _move_to_saturation(device, ep, cluster, args, now):
    _set(device, ep, cluster, "current_saturation", int(args.saturation), now)
    return Status.SUCCESS


# -------------------------------------------------------------------------------- HVAC
@command(Thermostat, "setpoint_raise_lower")
def _setpoint_raise_lower(device, ep, cluster, args, now):
    names = {0: ["occupied_heating_setpoint"], 1: ["occupied_cooling_setpoint"],
             2: ["occupied_heating_setpoint", "occupied_cooling_setpoint"]}
    for name in names.get(int(args.mode), []):
        _set(device, ep, cluster, name, (cluster.get(name, 2000) or 0) + int(args.amount) * 10,
             now)
    return Status.SUCCESS


# -------------------------------------------------------------------------------- Closures
@command(WindowCovering, "up_open")
def _cover_open(device, ep, cluster, args, now):
    _animate(device, ep, cluster, "current_position_lift_percentage", 0, 50, now)
    return Status.SUCCESS


@command(WindowCovering, "down_close")
def _cover_close(device, ep, cluster, args, now):
    _animate(device, ep, cluster, "current_position_lift_percentage", 100, 50, now)
    return Status.SUCCESS


@command(WindowCovering, "stop")
def _cover_stop(device, ep, cluster, args, now):
    device.animations = [a for a in device.animations if a.cluster_id != cluster.cluster_id]
    return Status.SUCCESS


@command(WindowCovering, "go_to_lift_percentage")
def _cover_goto(device, ep, cluster, args, now):
    _animate(device, ep, cluster, "current_position_lift_percentage",
             int(args.percentage_lift_value), 20, now)
    return Status.SUCCESS


@command(DoorLock, "lock_door", "unlock_door")
def _lock(device, ep, cluster, args, now):
    locked = isinstance(args, DoorLock.ServerCommandDefs.lock_door.schema)
    _set(device, ep, cluster, "lock_state",
         DoorLock.LockState.Locked if locked else DoorLock.LockState.Unlocked, now)
    return Status.SUCCESS


# -------------------------------------------------------------------------------- Misc
@command(Identify, "identify", "trigger_effect")
def _identify(device, ep, cluster, args, now):
    return Status.SUCCESS


@command(IasWd, "start_warning", "squawk")
def _warn(device, ep, cluster, args, now):
    return Status.SUCCESS  # a siren sounds: it has no attribute that says so


@command(IasZone, "enroll_response")
def _enroll(device, ep, cluster, args, now):
    _set(device, ep, cluster, "zone_state", IasZone.ZoneState.Enrolled, now)
    _set(device, ep, cluster, "zone_id", int(args.zone_id), now)
    return Status.SUCCESS


# ================================================================================ physics
class Behaviour:
    """Per-kind dynamics of a virtual device; ``tick`` gets simulated seconds."""

    name = "static"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def tick(self, device: VirtualDevice, dt: float, now: float) -> None:
        """Advance the device's physics by dt seconds."""

    def on_write(self, device: VirtualDevice, cluster: VirtualCluster, attrid: int,
                 value: Any) -> Any:
        """A value the coordinator writes; return what the device stores."""
        return value

    def wake(self, device: VirtualDevice) -> None:
        """Do now what the device does on its own from time to time (a heartbeat report)."""


def _first(device: VirtualDevice, cluster_id: int) -> tuple[VirtualEndpoint, VirtualCluster] | None:
    for ep in device.endpoints.values():
        if cluster_id in ep.in_clusters:
            return ep, ep.in_clusters[cluster_id]
    return None


class ThermostatBehaviour(Behaviour):
    """Heats the room toward the setpoint while heating; the room cools toward ambient otherwise."""

    name = "thermostat"
    heat_rate = 0.5  # °C per minute while heating
    loss_rate = 0.1  # °C per minute toward ambient
    ambient = 16.0

    def tick(self, device, dt, now):
        found = _first(device, Thermostat.cluster_id)
        if found is None:
            return
        ep, tc = found
        temp = (tc.get("local_temperature") or 2000) / 100
        setpoint = (tc.get("occupied_heating_setpoint") or 2000) / 100
        mode = int(tc.get("system_mode") or 0)
        minutes = dt / 60
        heating = mode in (Thermostat.SystemMode.Heat, Thermostat.SystemMode.Auto,
                           Thermostat.SystemMode.Emergency_Heating) and temp < setpoint - 0.1
        if heating:
            temp = min(setpoint, temp + self.heat_rate * minutes)
        else:
            temp += (self.ambient - temp) * min(1.0, self.loss_rate * minutes / 4)
        state = Thermostat.RunningState.Heat_State_On if heating else Thermostat.RunningState.Idle
        _set(device, ep, tc, "local_temperature", round(temp * 100), now)
        _set(device, ep, tc, "running_state", state, now)
        if Thermostat.AttributeDefs.pi_heating_demand.id in tc.values:
            _set(device, ep, tc, "pi_heating_demand", 100 if heating else 0, now)


class ClimateSensorBehaviour(Behaviour):
    """Temperature and humidity wander slowly, within plausible indoor bounds."""

    name = "climate"

    def tick(self, device, dt, now):
        steps = dt / 30  # one noticeable step every 30 s of simulated time
        for cluster_id, lo, hi, sigma in ((TemperatureMeasurement.cluster_id, 1500, 3000, 15),
                                          (RelativeHumidity.cluster_id, 2500, 7500, 40)):
            found = _first(device, cluster_id)
            if found is None:
                continue
            ep, cl = found
            value = cl.get("measured_value") or (lo + hi) // 2
            value += round(self.rng.gauss(0, sigma) * steps)
            _set(device, ep, cl, "measured_value", max(lo, min(hi, value)), now)


class MotionBehaviour(Behaviour):
    """Someone walks by now and then; occupancy clears after a hold time."""

    name = "motion"
    hold = 60.0
    mean_gap = 120.0

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self.until = 0.0
        self.next_motion = 0.0

    def tick(self, device, dt, now):
        sim_now = now
        occupied = sim_now < self.until
        if not occupied and sim_now >= self.next_motion:
            self.until = sim_now + self.hold
            self.next_motion = self.until + self.rng.expovariate(1 / self.mean_gap)
            occupied = True
        elif not occupied and self.next_motion == 0.0:
            self.next_motion = sim_now + self.rng.expovariate(1 / self.mean_gap)
        occ = _first(device, OccupancySensing.cluster_id)
        if occ is not None:
            _set(device, occ[0], occ[1], "occupancy", int(occupied), now)
        ias = _first(device, IasZone.cluster_id)
        if ias is not None:
            ep, zone = ias
            status = int(zone.get("zone_status") or 0)
            new = (status | 1) if occupied else (status & ~1)
            if new != status:
                _set(device, ep, zone, "zone_status", new, now)
                device.send_cluster_command(ep.endpoint_id, IasZone.cluster_id, 0x00,
                                            zone_status=new, extended_status=0, zone_id=0,
                                            delay=0)


class PlugBehaviour(Behaviour):
    """A load draws power while the plug is on; the meter integrates energy."""

    name = "plug"
    load_watts = 60.0

    def tick(self, device, dt, now):
        ep_onoff = _first(device, OnOff.cluster_id)
        on = bool(ep_onoff and ep_onoff[1].get("on_off"))
        watts = self.load_watts * (1 + self.rng.uniform(-0.05, 0.05)) if on else 0.0
        em = _first(device, ElectricalMeasurement.cluster_id)
        if em is not None:
            ep, cl = em
            divisor = cl.get("ac_power_divisor") or 1
            multiplier = cl.get("ac_power_multiplier") or 1
            _set(device, ep, cl, "active_power", round(watts * divisor / multiplier), now)
            if ElectricalMeasurement.AttributeDefs.rms_current.id in cl.values:
                cur_div = cl.get("ac_current_divisor") or 1
                _set(device, ep, cl, "rms_current", round(watts / 230 * cur_div), now)
        meter = _first(device, Metering.cluster_id)
        if meter is not None:
            ep, cl = meter
            divisor = cl.get("divisor") or 1
            multiplier = cl.get("multiplier") or 1
            summ = cl.get("current_summ_delivered") or 0
            kwh = watts * dt / 3600 / 1000
            _set(device, ep, cl, "current_summ_delivered",
                 summ + round(kwh * divisor / multiplier), now)
            if Metering.AttributeDefs.instantaneous_demand.id in cl.values:
                _set(device, ep, cl, "instantaneous_demand", round(watts), now)


class RampBehaviour(Behaviour):
    """A load generator: active power steps up by 1 W every tick, so every tick yields exactly one
    attribute report (and one event) — a known, steady rate for throughput and fault tests."""

    name = "ramp"

    def tick(self, device, dt, now):
        em = _first(device, ElectricalMeasurement.cluster_id)
        if em is None:
            return
        ep, cl = em
        divisor = cl.get("ac_power_divisor") or 1
        watts = (cl.get("active_power") or 0) // divisor
        _set(device, ep, cl, "active_power", ((watts + 1) % 30000) * divisor, now)

    def burst(self, device, count, now):
        """``count`` steps reported at once, each in its own report (the minimum reporting
        interval is the device's own choice here, as a device flushing what it logged)."""
        em = _first(device, ElectricalMeasurement.cluster_id)
        if em is None:
            return 0
        _, cl = em
        attrid = cl.attr_id("active_power")
        divisor = cl.get("ac_power_divisor") or 1
        for _ in range(count):
            cl.values[attrid] = (((cl.get("active_power") or 0) // divisor + 1) % 30000) * divisor
            device.report(cl, [attrid], now=now)
        return count


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (Behaviour, ThermostatBehaviour, ClimateSensorBehaviour, MotionBehaviour,
                PlugBehaviour, RampBehaviour)
}


# The Groups and Scenes cluster servers register their handlers in the same table.
from simulators import groups as _groups  # noqa: E402,F401
