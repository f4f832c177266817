"""Zigbee groups and scenes of a hub, through the cloud.

The hub keeps its groups (zigpy's database) and says what they are in its retained status
(``HubStatus.groups``); the cloud keeps the last table a status carried with the hub (its last
will carries none), so lists are read from there, while the hub is offline too. A change
is a hub request the hub answers with a result (``CommandService.ask_hub``); the hub publishes its
new group table before the answer, and the answer here is read from that table once it shows the
change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloud.commands import CommandService
from cloud.errors import CommandFailed, NotFound
from cloud.settings import CloudSettings
from cloud.storage.base import CommandRecord, Registry, device_id_for
from wire.capabilities import CommandInvalid, validate_command
from wire.contract import GroupAction, GroupInfo

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
# A group command's capability command, by its name.
GROUP_COMMANDS = {"on": ("switch", "on"), "off": ("switch", "off"),
                  "set_level": ("level", "set_level"),
                  "set_color_temperature": ("color_temperature", "set_color_temperature")}
# What a hub's refusal means to the caller: the hub knows no such group or scene (404), or the
# request does not fit the device or the group table (422; ``limit``: the table would outgrow the
# hub's status); the rest is the device's failure.
_NOT_FOUND = {"unknown_group": "group", "unknown_scene": "scene", "unknown_device": "device"}
_INVALID = {"invalid", "unsupported", "exists", "limit"}


@dataclass(frozen=True, kw_only=True)
class Member:
    device_id: str
    ieee: str
    endpoint: int


@dataclass(frozen=True, kw_only=True)
class Scene:
    scene_id: int
    name: str | None


@dataclass(frozen=True, kw_only=True)
class Group:
    group_id: int
    name: str | None
    members: list[Member] = field(default_factory=list)
    scenes: list[Scene] = field(default_factory=list)


def _group(hub_id: str, info: GroupInfo) -> Group:
    return Group(group_id=info.group_id, name=info.name,
                 members=[Member(device_id=device_id_for(hub_id, m.ieee), ieee=m.ieee,
                                 endpoint=m.endpoint) for m in info.members],
                 scenes=[Scene(scene_id=s.scene_id, name=s.name) for s in info.scenes])


class GroupService:
    def __init__(self, settings: CloudSettings, registry: Registry,
                 commands: CommandService) -> None:
        self.settings = settings
        self.registry = registry
        self.commands = commands

    # Reading ---------------------------------------------------------------------------------
    async def groups(self, hub_id: str) -> list[Group]:
        """The hub's groups as its last status with a group table said: while the hub is offline
        too (its last will says nothing of groups, and the cloud keeps the table it had)."""
        hub = await asyncio.to_thread(self.registry.get_hub, hub_id)
        if hub is None:
            raise NotFound("hub", hub_id)
        raw = await asyncio.to_thread(self.registry.hub_groups, hub_id) or []
        out = []
        for item in raw:
            try:
                out.append(_group(hub_id, GroupInfo.model_validate(item)))
            except ValueError:  # stored by an older cloud from a payload it did not check
                log.warning("hub %s: a stored group is unreadable: %r", hub_id, item)
        return out

    async def group(self, hub_id: str, group_id: int) -> Group:
        found = next((g for g in await self.groups(hub_id) if g.group_id == group_id), None)
        if found is None:
            raise NotFound("group", str(group_id))
        return found

    # Changing --------------------------------------------------------------------------------
    async def create(self, hub_id: str, name: str, group_id: int | None = None) -> Group:
        record = await self._ask(hub_id, "group_create", name=name, group_id=group_id)
        created = int((record.state or {}).get("group", {}).get("group_id") or 0)
        return await self._shown(hub_id, created, lambda g: g is not None)

    async def rename(self, hub_id: str, group_id: int, name: str) -> Group:
        await self._ask(hub_id, "group_rename", group_id=group_id, name=name)
        return await self._shown(hub_id, group_id, lambda g: g is not None and g.name == name)

    async def delete(self, hub_id: str, group_id: int) -> None:
        await self._ask(hub_id, "group_delete", group_id=group_id)

    async def add_member(self, hub_id: str, group_id: int, device_id: str,
                         endpoint: int | None) -> Group:
        ieee = await self._device_ieee(hub_id, device_id)
        record = await self._ask(hub_id, "group_add", group_id=group_id, ieee=ieee,
                                 endpoint=endpoint)
        ep = (record.state or {}).get("member", {}).get("endpoint")
        return await self._shown(hub_id, group_id, lambda g: g is not None and any(
            m.ieee == ieee and m.endpoint == ep for m in g.members))

    async def remove_member(self, hub_id: str, group_id: int, device_id: str,
                            endpoint: int | None) -> Group:
        ieee = await self._device_ieee(hub_id, device_id)
        record = await self._ask(hub_id, "group_remove", group_id=group_id, ieee=ieee,
                                 endpoint=endpoint)
        ep = (record.state or {}).get("member", {}).get("endpoint")
        return await self._shown(hub_id, group_id, lambda g: g is not None and not any(
            m.ieee == ieee and m.endpoint == ep for m in g.members))

    async def command(self, hub_id: str, group_id: int, command: str,
                      args: dict[str, Any]) -> CommandRecord:
        capability, name = GROUP_COMMANDS[command]
        checked = validate_command(capability, name, args)  # CommandInvalid: 422
        return await self._ask(hub_id, "group_command", group_id=group_id, command=command,
                               args=checked)

    async def store_scene(self, hub_id: str, group_id: int, name: str | None,
                          scene_id: int | None) -> Scene:
        record = await self._ask(hub_id, "scene_store", group_id=group_id, name=name,
                                 scene_id=scene_id)
        scene = (record.state or {}).get("scene", {})
        scene_name = scene.get("name")
        return Scene(scene_id=int(scene.get("scene_id") or 0),
                     name=None if scene_name is None else str(scene_name))

    async def recall_scene(self, hub_id: str, group_id: int, scene_id: int) -> CommandRecord:
        return await self._ask(hub_id, "scene_recall", group_id=group_id, scene_id=scene_id)

    async def remove_scene(self, hub_id: str, group_id: int, scene_id: int) -> None:
        await self._ask(hub_id, "scene_remove", group_id=group_id, scene_id=scene_id)

    # Internals -------------------------------------------------------------------------------
    async def _ask(self, hub_id: str, action: GroupAction, **fields: Any) -> CommandRecord:
        try:
            return await self.commands.ask_hub(hub_id, action, **fields)
        except CommandFailed as exc:
            code = exc.command.error_code or ""
            if code in _NOT_FOUND:
                kind = _NOT_FOUND[code]
                ident = fields.get({"group": "group_id", "scene": "scene_id"}.get(kind, "ieee"))
                raise NotFound(kind, str(ident)) from None
            if code in _INVALID:
                raise CommandInvalid(str(exc)) from None
            raise

    async def _device_ieee(self, hub_id: str, device_id: str) -> str:
        device = await asyncio.to_thread(self.registry.get_device, device_id)
        if device is None or device.removed or device.hub_id != hub_id:
            raise NotFound("device", device_id)
        return device.ieee

    async def _shown(self, hub_id: str, group_id: int,
                     done: Callable[[Group | None], bool]) -> Group:
        """The group as the hub's stored status shows it once ``done`` holds (the status went out
        before the answer, so this is at once but for a slow ingest), else as it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.command_timeout
        while True:
            found = next((g for g in await self.groups(hub_id) if g.group_id == group_id), None)
            if done(found) or loop.time() >= deadline:
                if found is None:
                    raise NotFound("group", str(group_id))
                return found
            await asyncio.sleep(POLL_INTERVAL)
