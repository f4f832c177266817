"""Home Assistant's view of the hub's Zigbee groups, as Zigbee2MQTT presents groups.

Each group with at least one light among its members (an endpoint with on/off and level) is a
device of its own under the hub (``via_device``, model "Group", named as the group) holding one
JSON-schema ``light``: brightness, and colour temperature when any member has it (in mireds, from
the warmest to the coolest any member takes). Each scene stored to a group is a ``scene`` entity
of that device whose activation recalls it. Both are available while the hub's bridge is online
(not the members: a group command is one group-addressed frame, which the members that are
reachable carry out).

A group's state is its members' (``group_state``): on while any member is on, off once every
member known is off; brightness and colour temperature the average of the members that are on.

``group_commands`` turns what Home Assistant sends on ``<base>/group/<id>/set`` into the
group requests the hub's ``GroupManager`` runs (each one group-addressed frame): a JSON light
command (state, brightness, color_temp, transition) or a scene's ``{"scene_recall": <id>}``, the
payload Zigbee2MQTT's scenes send too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.ha_discovery import (
    BRIGHTNESS_SCALE,
    ORIGIN,
    CommandRefused,
    command_json,
    hub_node_id,
    light_command,
)
from wire.capabilities import KELVIN_DEFAULT
from wire.contract import DeviceInfo, GroupAction, GroupInfo, State, Value
from wire.homeassistant import HaTopics

LIGHT = "light"


def group_node_id(hub_id: str, group_id: int) -> str:
    return f"{hub_node_id(hub_id)}_group_{group_id}"


def member_parts(info: DeviceInfo, endpoint: int) -> dict[str, str]:
    """The light parts of one member endpoint (capability -> instance): its own instance
    (``switch@2``) or, on the device's first endpoint, the plain one."""
    parts: dict[str, str] = {}
    for capability in ("switch", "level", "color_temperature"):
        for instance in (f"{capability}@{endpoint}", capability):
            if instance in info.capabilities:
                parts[capability] = instance
                break
    return parts


@dataclass(frozen=True)
class GroupRequest:
    """One request for the hub's GroupManager: ``action`` with its fields."""

    action: GroupAction
    fields: dict[str, Any]


@dataclass
class GroupLight:
    """The light of one group: what its members are, and what it takes."""

    group_id: int
    members: list[tuple[str, dict[str, str]]]  # (ieee, light parts) of the known members
    kelvin: tuple[float, float] | None  # the members' colour temperature range, if any has one

    @property
    def modes(self) -> list[str]:
        return ["color_temp"] if self.kelvin is not None else ["brightness"]

    @property
    def mireds(self) -> tuple[int, int] | None:
        if self.kelvin is None:
            return None
        return round(1e6 / self.kelvin[1]), round(1e6 / self.kelvin[0])

    def state(self, states: Mapping[str, State]) -> dict[str, Any]:
        """The group's state from its members': see the module's description."""
        on: list[tuple[str, dict[str, str]]] = []
        known = False
        for ieee, parts in self.members:
            values = states.get(ieee, {})
            flag = values.get(parts["switch"], {}).get("on") if "switch" in parts else None
            if isinstance(flag, bool):
                known = True
                if flag:
                    on.append((ieee, parts))
        out: dict[str, Any] = {"state": ("ON" if on else "OFF") if known else None}
        levels = [float(v) for ieee, parts in on if "level" in parts
                  for v in [states[ieee].get(parts["level"], {}).get("level")]
                  if isinstance(v, int | float) and not isinstance(v, bool)]
        if levels:
            out["brightness"] = round(sum(levels) / len(levels) * BRIGHTNESS_SCALE / 100)
        kelvins = [float(v) for ieee, parts in on if "color_temperature" in parts
                   for v in [states[ieee].get(parts["color_temperature"], {}).get("kelvin")]
                   if isinstance(v, int | float) and not isinstance(v, bool) and v > 0]
        mireds = self.mireds
        if kelvins and mireds is not None:
            average = sum(1e6 / k for k in kelvins) / len(kelvins)
            out["color_temp"] = min(max(round(average), mireds[0]), mireds[1])
            out["color_mode"] = "color_temp"
        elif self.modes == ["brightness"] and "brightness" in out:
            out["color_mode"] = "brightness"
        return out

    def commands(self, body: dict[str, Any], on: bool | None) -> list[GroupRequest]:
        """The group requests a JSON light command asks for; ``on``: whether the group is on as
        far as the hub knows."""
        light = light_command(body, {"state", "brightness", "color_temp", "transition"},
                              "a group light", self.kelvin,
                              "no member of this group has a colour temperature")
        if not light.on:
            return [_command("off")]
        steps: list[GroupRequest] = []
        if light.level is not None:
            steps.append(_command("set_level", level=light.level, **light.timed))
        elif "color_temp" not in body or on is not True:
            steps.append(_command("on"))  # a colour alone does not switch a group on
        if light.kelvin is not None:
            steps.append(_command("set_color_temperature", kelvin=light.kelvin, **light.timed))
        return steps


def _command(command: str, **args: Value) -> GroupRequest:
    return GroupRequest("group_command", {"command": command, "args": args})


def group_commands(light: GroupLight | None, payload: bytes, on: bool | None,
                   scenes: set[int]) -> list[GroupRequest]:
    """The group requests a payload on a group's command topic asks for: a scene's recall, or
    (a group with a light) a light command."""
    body = command_json(payload)
    if not isinstance(body, dict):
        raise CommandRefused('a group takes a JSON object such as {"state": "ON", '
                             '"brightness": 128} or {"scene_recall": 1}')
    if "scene_recall" in body:
        return [_scene_request(body, scenes)]
    if light is None:
        raise CommandRefused("no member of this group is a light")
    return light.commands(body, on)


def _scene_request(body: dict[str, Any], scenes: set[int]) -> GroupRequest:
    if set(body) != {"scene_recall"}:
        raise CommandRefused("scene_recall comes alone")
    scene_id = body["scene_recall"]
    if isinstance(scene_id, bool) or not isinstance(scene_id, int) or scene_id not in scenes:
        raise CommandRefused(f"no scene {scene_id!r} in this group")
    return GroupRequest("scene_recall", {"scene_id": scene_id})


def group_light(group: GroupInfo, infos: Mapping[str, DeviceInfo]) -> GroupLight | None:
    """The group's light, when a member is one (on/off and level); None otherwise."""
    members: list[tuple[str, dict[str, str]]] = []
    kelvins: list[tuple[float, float]] = []
    lights = 0
    for member in group.members:
        info = infos.get(member.ieee)
        if info is None:
            continue
        parts = member_parts(info, member.endpoint)
        if "switch" not in parts:
            continue
        members.append((member.ieee, parts))
        lights += "level" in parts
        if "color_temperature" in parts:
            limits = info.constraints.get(parts["color_temperature"], {}).get("kelvin")
            limits = limits or KELVIN_DEFAULT
            kelvins.append((limits.min, limits.max))
    if not lights:
        return None
    kelvin = (min(k[0] for k in kelvins), max(k[1] for k in kelvins)) if kelvins else None
    return GroupLight(group.group_id, members, kelvin)


def group_configs(table: list[GroupInfo], lights: Mapping[int, GroupLight], topics: HaTopics,
                  hub_id: str, sw_version: str) -> dict[str, dict[str, Any]]:
    """Each group entity's discovery topic and complete config: a light per group that has one,
    a scene per scene stored to a group."""
    out: dict[str, dict[str, Any]] = {}
    availability = [{"topic": topics.bridge_state}]
    for group in table:
        light = lights.get(group.group_id)
        if light is None and not group.scenes:
            continue
        node = group_node_id(hub_id, group.group_id)
        device = {"identifiers": [node], "name": group.name or f"Group {group.group_id}",
                  "manufacturer": "Spoke", "model": "Group", "sw_version": sw_version,
                  "via_device": hub_node_id(hub_id)}
        common = {"device": device, "origin": ORIGIN, "availability": availability}
        if light is not None:
            config: dict[str, Any] = {
                "name": None, "unique_id": f"{node}_{LIGHT}", "schema": "json",
                "state_topic": topics.group_state(group.group_id),
                "command_topic": topics.group_command(group.group_id),
                "supported_color_modes": light.modes, "brightness": True,
                "brightness_scale": BRIGHTNESS_SCALE, **common}
            mireds = light.mireds
            if mireds is not None:
                config.update(min_mireds=mireds[0], max_mireds=mireds[1])
            out[topics.config("light", node, LIGHT)] = config
        for scene in group.scenes:
            oid = f"scene_{scene.scene_id}"
            out[topics.config("scene", node, oid)] = {
                "name": scene.name or f"Scene {scene.scene_id}", "unique_id": f"{node}_{oid}",
                "command_topic": topics.group_command(group.group_id),
                "payload_on": json.dumps({"scene_recall": scene.scene_id}), **common}
    return out
