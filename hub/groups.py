"""Zigbee groups and scenes, through zigpy's own group API.

A group lives in zigpy (``app.groups``), which keeps groups and their members in its database, so
they survive a restart. Adding a member sends the Groups cluster's ``add`` to the device
(``Endpoint.add_to_group``); a group command or a scene goes out as one group-addressed frame
(zigpy's ``GroupEndpoint``), then each member's state is read back and flows as events like any
change. Scene names are the hub's own (ZCL scenes have none zigpy keeps): ``scenes.json`` in the
hub's data folder.

The table travels in the hub's retained status, which the cloud refuses whole above the wire's
``MAX_PAYLOAD_BYTES``: a request that would grow it past ``TABLE_BUDGET`` bytes, or past the wire's
counts (groups, members, scenes), is refused with ``limit`` before anything is sent to a device.

Every group request is answered by a ``CommandResult`` with the request's id, journaled like a
command (a request delivered again is answered from the journal, never run twice), after the hub's
status with its new group table has gone out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import zigpy.exceptions
import zigpy.types as t
from pydantic import TypeAdapter, ValidationError
from zigpy.zcl.clusters.general import Groups
from zigpy.zcl.foundation import Status

from hub.devices import DeviceTracker
from hub.publisher import Publisher
from hub.store import HubStore
from wire.capabilities import CommandInvalid, validate_command
from wire.contract import (
    CommandResult,
    CommandStatus,
    GroupAction,
    GroupInfo,
    GroupMember,
    HubRequest,
    HubStatus,
    SceneInfo,
    State,
    utcnow,
)

LOGGER = logging.getLogger(__name__)

# A group command: the capability command it is, by the request's ``command``.
GROUP_COMMANDS = {"on": ("switch", "on"), "off": ("switch", "off"),
                  "set_level": ("level", "set_level"),
                  "set_color_temperature": ("color_temperature", "set_color_temperature")}
# What leaves the group table as it was (the rest may change it).
UNCHANGED_BY = frozenset({"group_command", "scene_recall"})
FIRST_GROUP_ID = 0x0001
LAST_GROUP_ID = 0xFFF7
# The group table's share of the status (64 KiB at most, MAX_PAYLOAD_BYTES): the rest (counters,
# reason, ledger) takes well under 2 KiB, so the remaining 16 KiB is headroom.
TABLE_BUDGET = 48 * 1024
_TABLE = TypeAdapter(list[GroupInfo])
# What a wire count limits, by the name of the list it bounds.
_COUNTED = {"groups": "groups on a hub", "members": "members in a group",
            "scenes": "scenes in a group"}


class GroupError(Exception):
    """A group request the hub refuses or could not carry out; ``code`` goes in the result."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class SceneNames:
    """The names given to scenes, by group and scene id, in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._names: dict[int, dict[int, str]] = {}
        try:
            raw = json.loads(path.read_text())
            self._names = {int(g): {int(s): str(n) for s, n in scenes.items()}
                           for g, scenes in raw.items()}
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, TypeError) as exc:
            LOGGER.warning("scene names in %s unreadable, starting without: %s", path, exc)

    def of(self, group_id: int) -> dict[int, str]:
        return dict(self._names.get(group_id, {}))

    def set(self, group_id: int, scene_id: int, name: str) -> None:
        self._names.setdefault(group_id, {})[scene_id] = name
        self._save()

    def drop(self, group_id: int, scene_id: int | None = None) -> None:
        if scene_id is None:
            self._names.pop(group_id, None)
        else:
            self._names.get(group_id, {}).pop(scene_id, None)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(int(g)): {str(int(s)): n for s, n in scenes.items()}
                                   for g, scenes in self._names.items() if scenes}))
        os.replace(tmp, self.path)


class GroupManager:
    def __init__(self, hub_id: str, app: Callable[[], Any], tracker: DeviceTracker,
                 store: HubStore, publisher: Publisher, scenes_path: Path, *,
                 timeout: float = 10.0) -> None:
        self.hub_id = hub_id
        self._app = app
        self.tracker = tracker
        self.store = store
        self.publisher = publisher
        self.scenes = SceneNames(scenes_path)
        self.timeout = timeout
        self._oversized = False  # the table was last left out of the status (logged once)

    # ------------------------------------------------------------------ the group table
    def table(self) -> list[GroupInfo] | None:
        """Every group with its members and named scenes, for the status; None while the radio is
        not up, or when the table (grown outside this hub's requests: a restored database) would
        not fit the status: the cloud then keeps the table it last had."""
        try:
            groups = self._app().groups
        except Exception:
            return None
        table = [self._dict(g) for g in sorted(groups.values(), key=lambda g: g.group_id)]
        try:
            return self.fitting(table)
        except GroupError as exc:
            if not self._oversized:
                LOGGER.error("the group table is left out of the status: %s", exc)
            self._oversized = True
            return None

    def _dict(self, group: Any) -> dict[str, Any]:
        return self._info(group).model_dump()

    def fitting(self, table: list[dict[str, Any]]) -> list[GroupInfo]:
        """The table as the status carries it, if it keeps within the wire's counts and
        ``TABLE_BUDGET``; GroupError ``limit`` saying which limit otherwise."""
        try:
            groups = HubStatus.model_validate({"hub_id": self.hub_id, "online": True,
                                               "groups": table}).groups or []
        except ValidationError as exc:
            error = exc.errors()[0]
            bound = (error.get("ctx") or {}).get("max_length")
            what = _COUNTED.get(str(error["loc"][-1])) if error["type"] == "too_long" else None
            if what is None:
                raise GroupError(f"the group table is invalid: {error['msg']}", "invalid") from None
            raise GroupError(f"the hub holds at most {bound} {what}", "limit") from None
        size = len(_TABLE.dump_json(groups))
        if size > TABLE_BUDGET:
            raise GroupError(f"the group table would take {size} bytes of the hub's status, above "
                             f"its limit of {TABLE_BUDGET} bytes (the status travels whole, at "
                             f"most 64 KiB): remove groups, members or scenes first", "limit")
        self._oversized = False
        return groups

    def _room(self, app: Any, group_id: int, grow: Callable[[dict[str, Any]], None]) -> None:
        """Refuse (``limit``) a change that would make the table too large for the status:
        ``grow`` changes the group's entry (a new one when the group is new) as the hub would."""
        table = [self._dict(g) for g in sorted(app.groups.values(), key=lambda g: g.group_id)]
        entry = next((g for g in table if g["group_id"] == group_id), None)
        if entry is None:
            entry = {"group_id": group_id, "name": None, "members": [], "scenes": []}
            table.append(entry)
        grow(entry)
        self.fitting(table)

    def _info(self, group: Any) -> GroupInfo:
        members = [GroupMember(ieee=str(ieee), endpoint=ep_id)
                   for ieee, ep_id in sorted(group.members, key=lambda k: (str(k[0]), k[1]))]
        scenes = [SceneInfo(scene_id=s, name=n) for s, n in sorted(self.scenes.of(group.group_id)
                                                                   .items())]
        return GroupInfo(group_id=group.group_id, name=group.name, members=members,
                         scenes=scenes)

    def forget_device(self, ieee: str) -> None:
        """A device leaves the network: its endpoints leave zigpy's groups (zigpy's database
        drops them with the device, its groups in memory would keep them until a restart)."""
        try:
            device = self._app().get_device(ieee=t.EUI64.convert(ieee))
        except (KeyError, ValueError, LookupError):
            return
        left = False
        for endpoint in device.non_zdo_endpoints:
            for group in list(endpoint.member_of.values()):
                group.remove_member(endpoint)
                left = True
        if left:
            self.publisher.groups_changed()

    # ------------------------------------------------------------------ requests
    async def run(self, request: HubRequest) -> None:
        """Carry out a group request (this hub's, unexpired) and answer it."""
        first, stored = self.store.begin_command(request.id)
        if not first:
            if stored is not None:
                self.publisher.result(request.id, stored)
            return
        result = await self._execute(request)
        self.publisher.status()  # the new group table first, then the answer
        if request.action not in UNCHANGED_BY:
            self.publisher.groups_changed()
        payload = result.to_bytes()
        self.store.finish_command(request.id, payload)
        self.publisher.result(request.id, payload)

    async def run_local(self, action: GroupAction, group_id: int,
                        **fields: Any) -> CommandResult:
        """A group request from the hub's own side (Home Assistant on the local broker), carried
        out as the cloud's is, under an id of its own. Its result goes to the caller only: the
        cloud never issued it, so it is neither journaled nor sent (the members' new states reach
        the cloud as events, like any change)."""
        request = HubRequest(id=f"local-{uuid.uuid4().hex[:16]}", hub_id=self.hub_id,
                             action=action, group_id=group_id,
                             expires_at=utcnow() + timedelta(seconds=self.timeout), **fields)
        result = await self._execute(request)
        if action not in UNCHANGED_BY:
            self.publisher.status()
            self.publisher.groups_changed()
        return result

    async def _execute(self, request: HubRequest) -> CommandResult:
        started = time.perf_counter()
        fields = {"req": request.id, "hub": self.hub_id}
        status: Literal[CommandStatus.SUCCEEDED, CommandStatus.FAILED] = CommandStatus.SUCCEEDED
        state: State | None = None
        error = code = None
        try:
            async with asyncio.timeout(self.timeout):
                state = await self._run(request)
        except GroupError as exc:
            status, error, code = CommandStatus.FAILED, str(exc), exc.code
        except CommandInvalid as exc:
            status, error, code = CommandStatus.FAILED, str(exc), "invalid"
        except TimeoutError:
            status, error, code = (CommandStatus.FAILED,
                                   f"no answer within {self.timeout:.0f} s", "timeout")
        except zigpy.exceptions.DeliveryError as exc:
            status, error, code = CommandStatus.FAILED, f"not delivered: {exc}", "no_route"
        except zigpy.exceptions.ZigbeeException as exc:
            status, error, code = CommandStatus.FAILED, str(exc), "nack"
        except Exception as exc:  # answered all the same: the cloud is waiting
            LOGGER.exception("req=%s %s failed", request.id, request.action, extra=fields)
            status, error, code = CommandStatus.FAILED, f"{type(exc).__name__}: {exc}", "error"
        if status is CommandStatus.SUCCEEDED:
            LOGGER.info("req=%s %s succeeded: %s", request.id, request.action, state,
                        extra=fields)
        else:
            LOGGER.warning("req=%s %s failed: %s (%s)", request.id, request.action, error, code,
                           extra=fields)
        return CommandResult(id=request.id, hub_id=self.hub_id, status=status, state=state,
                             error=error, error_code=code, ts=utcnow(),
                             duration_ms=round((time.perf_counter() - started) * 1000, 2))

    async def _run(self, request: HubRequest) -> State:
        app = self._app()
        match request.action:
            case "group_create":
                group_id = request.group_id or self._free_id(app)
                if group_id in app.groups:
                    raise GroupError(f"group {group_id} exists", "exists")
                name = request.name or f"Group {group_id}"
                self._room(app, group_id, lambda g: g.update(name=name))
                group = app.groups.add_group(group_id, name)
                return {"group": {"group_id": group_id, "name": group.name}}
            case "group_rename":
                group = self._group(app, request)
                name = request.name or f"Group {group.group_id}"
                self._room(app, group.group_id, lambda g: g.update(name=name))
                # zigpy has no rename: its name, then zigpy's own event that stores a group's row
                # (its database replaces the name of a group it knows).
                group._name = name
                app.groups.listener_event("group_added", group)
                return {"group": {"group_id": group.group_id, "name": group.name}}
            case "group_delete":
                group = self._group(app, request)
                for endpoint in list(group.members.values()):
                    try:
                        await endpoint.remove_from_group(group.group_id)
                    except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
                        LOGGER.warning("group %d: %s kept it (unreachable: %s)", group.group_id,
                                       endpoint.device.ieee, exc)
                app.groups.pop(group.group_id)
                self.scenes.drop(group.group_id)
                return {"group": {"group_id": group.group_id}}
            case "group_add" | "group_remove":
                group = self._group(app, request)
                endpoint = self._endpoint(app, request)
                if request.action == "group_add":
                    member = {"ieee": str(endpoint.device.ieee), "endpoint": endpoint.endpoint_id}

                    def joined(entry: dict[str, Any]) -> None:
                        if member not in entry["members"]:
                            entry["members"].append(member)

                    self._room(app, group.group_id, joined)
                    # A device's group table keeps 16 characters of a name at most.
                    status = await endpoint.add_to_group(group.group_id, group.name[:16])
                    ok = (Status.SUCCESS, Status.DUPLICATE_EXISTS)
                else:
                    status = await endpoint.remove_from_group(group.group_id)
                    ok = (Status.SUCCESS, Status.NOT_FOUND)
                if status not in ok:
                    raise GroupError(f"the device answered {Status(status).name}", "nack")
                return {"member": {"group_id": group.group_id, "ieee": request.ieee,
                                   "endpoint": endpoint.endpoint_id}}
            case "group_command":
                group = self._group(app, request)
                await self._command(group, request)
                return {"group": {"group_id": group.group_id,
                                  "members": len(group.members),
                                  "read_back": await self._read_back(group)}}
            case "scene_store" | "scene_recall" | "scene_remove":
                return await self._scene(app, request)
        raise GroupError(f"unknown action {request.action}", "invalid")

    async def _command(self, group: Any, request: HubRequest) -> None:
        if request.command not in GROUP_COMMANDS:
            raise GroupError("a group command needs on, off, set_level or "
                             "set_color_temperature", "invalid")
        capability, command = GROUP_COMMANDS[request.command]
        args = validate_command(capability, command, dict(request.args))
        tenths = round(float(args.get("transition") or 0) * 10)
        clusters = group.endpoint
        if command == "on":
            await clusters.on_off.on()
        elif command == "off":
            await clusters.on_off.off()
        elif command == "set_level":
            await clusters.level.move_to_level_with_on_off(
                level=round(float(args["level"]) * 254 / 100), transition_time=tenths)
        else:
            await clusters.light_color.move_to_color_temp(
                color_temp_mireds=round(1_000_000 / float(args["kelvin"])),
                transition_time=tenths)

    async def _scene(self, app: Any, request: HubRequest) -> State:
        group = self._group(app, request)
        names = self.scenes.of(group.group_id)
        scene_id = request.scene_id
        if request.action == "scene_store":
            if scene_id is None:
                scene_id = next((s for s in range(1, 256) if s not in names), None)
                if scene_id is None:
                    raise GroupError(f"group {int(group.group_id)} has 255 scenes", "invalid")
            name = request.name or names.get(scene_id) or f"Scene {scene_id}"
            scene = {"scene_id": scene_id, "name": name}
            self._room(app, group.group_id, lambda g: g.update(
                scenes=[s for s in g["scenes"] if s["scene_id"] != scene_id] + [scene]))
            await group.endpoint.scenes.store(group_id=group.group_id, scene_id=scene_id)
            self.scenes.set(group.group_id, scene_id, name)
            return {"scene": {"group_id": group.group_id, "scene_id": scene_id, "name": name}}
        if scene_id is None or scene_id not in names:
            raise GroupError(f"group {int(group.group_id)} has no scene {scene_id}", "unknown_scene")
        if request.action == "scene_recall":
            await group.endpoint.scenes.recall(group_id=group.group_id, scene_id=scene_id)
            read = await self._read_back(group)
            return {"scene": {"group_id": group.group_id, "scene_id": scene_id,
                              "name": names[scene_id], "read_back": read}}
        await group.endpoint.scenes.remove(group_id=group.group_id, scene_id=scene_id)
        self.scenes.drop(group.group_id, scene_id)
        return {"scene": {"group_id": group.group_id, "scene_id": scene_id}}

    async def _read_back(self, group: Any) -> int:
        """Read each member's state, all at once (events flow as for any change); how many
        answered."""
        tracked = [t for t in (self.tracker.get(str(ieee)) for ieee in
                               sorted({ieee for ieee, _ in group.members}, key=str))
                   if t is not None]
        answers = await asyncio.gather(*(t.handler.read_state() for t in tracked),
                                       return_exceptions=True)
        answered = 0
        for member, readings in zip(tracked, answers, strict=True):
            if isinstance(readings, BaseException):
                if not isinstance(readings, TimeoutError | zigpy.exceptions.ZigbeeException):
                    raise readings
                LOGGER.info("group %d: %s not read back: %s", group.group_id, member.ieee,
                            readings)
                continue
            self.tracker.apply(member, readings)
            answered += 1
        return answered

    # ------------------------------------------------------------------ look-ups
    @staticmethod
    def _free_id(app: Any) -> int:
        for group_id in range(FIRST_GROUP_ID, LAST_GROUP_ID + 1):
            if group_id not in app.groups:
                return group_id
        raise GroupError("no free group id", "invalid")

    @staticmethod
    def _group(app: Any, request: HubRequest) -> Any:
        group = app.groups.get(request.group_id) if request.group_id is not None else None
        if group is None:
            raise GroupError(f"no group {request.group_id}", "unknown_group")
        return group

    def _endpoint(self, app: Any, request: HubRequest) -> Any:
        if request.ieee is None or self.tracker.get(request.ieee) is None:
            raise GroupError(f"no device {request.ieee} on hub {self.hub_id}", "unknown_device")
        device = app.get_device(ieee=t.EUI64.convert(request.ieee))
        endpoint_id = request.endpoint or _groups_endpoint(device)
        endpoint = device.endpoints.get(endpoint_id) if endpoint_id else None
        if endpoint is None or endpoint_id == 0 or Groups.cluster_id not in endpoint.in_clusters:
            raise GroupError(f"device {request.ieee} has no Groups cluster on endpoint "
                             f"{endpoint_id}", "unsupported")
        return endpoint


def _groups_endpoint(device: Any) -> int | None:
    """The device's first endpoint with a Groups server cluster."""
    return next((ep_id for ep_id, ep in sorted(device.endpoints.items())
                 if ep_id != 0 and Groups.cluster_id in getattr(ep, "in_clusters", {})), None)
