"""``/api/v1/hubs/{id}/groups``: a hub's Zigbee groups, their members, group commands (one
multicast each) and the group's scenes. Lists are read from the hub's stored status; every change
is carried out by the hub, and answered with what the hub answered."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cloud.api.deps import READ, ControlDep, OwnedHub, ServicesDep, StoreDep
from cloud.api.idempotency import IdempotencyKey, request_once
from cloud.api.responses import BODY, COMMAND, HUB_REQUEST, Responses, not_found
from cloud.groups import Group, GroupService, Scene
from cloud.storage.base import CommandRecord
from wire.contract import Value

router = APIRouter(prefix="/hubs", tags=["groups"])

GroupIdPath = Annotated[int, Path(ge=0x0001, le=0xFFF7, description="the Zigbee group id")]
SceneIdPath = Annotated[int, Path(ge=0, le=0xFF, description="the scene id within the group")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Endpoint = Annotated[int, Field(ge=1, le=240)]

_READ: Responses = {**not_found("hub"), **HUB_REQUEST}
_CHANGE: Responses = {**not_found("hub, group, scene or device"), **HUB_REQUEST, **COMMAND,
                      **BODY}


def groups_of(services: ServicesDep) -> GroupService:
    return GroupService(services.settings, services.storage.registry, services.commands)


# Bodies -------------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroupCreate(_Body):
    name: Name
    group_id: int | None = Field(default=None, ge=0x0001, le=0xFFF7,
                                 description="the Zigbee group id; the hub picks a free one "
                                             "when absent")


class GroupRename(_Body):
    name: Name


class MemberBody(_Body):
    device_id: str = Field(min_length=1, max_length=200)
    endpoint: Endpoint | None = Field(default=None, description="the device's endpoint; its "
                                      "first with a Groups cluster when absent")


class GroupCommandBody(_Body):
    command: Literal["on", "off", "set_level", "set_color_temperature"]
    args: dict[str, Value] = Field(default_factory=dict, max_length=8,
                                   description="set_level: {level %, transition s}; "
                                   "set_color_temperature: {kelvin, transition s}")


class SceneStore(_Body):
    name: Name | None = None
    scene_id: int | None = Field(default=None, ge=1, le=0xFF, description="the hub picks a "
                                 "free one when absent; an existing one is stored again")


# Answers ------------------------------------------------------------------------------------------
class MemberPublic(BaseModel):
    device_id: str
    ieee: str
    endpoint: int


class ScenePublic(BaseModel):
    scene_id: int
    name: str | None

    @classmethod
    def of(cls, scene: Scene) -> ScenePublic:
        return cls(scene_id=scene.scene_id, name=scene.name)


class GroupPublic(BaseModel):
    group_id: int
    name: str | None
    members: list[MemberPublic]
    scenes: list[ScenePublic]

    @classmethod
    def of(cls, group: Group) -> GroupPublic:
        return cls(group_id=group.group_id, name=group.name,
                   members=[MemberPublic(device_id=m.device_id, ieee=m.ieee, endpoint=m.endpoint)
                            for m in group.members],
                   scenes=[ScenePublic.of(s) for s in group.scenes])


class GroupResultPublic(BaseModel):
    id: str = Field(description="the request's id (GET /api/v1/commands/{id})")
    status: str
    group_id: int
    members: int = Field(description="the group's members when the hub sent the frame")
    read_back: int = Field(description="members whose state the hub read back after it")
    scene_id: int | None = None

    @classmethod
    def of(cls, record: CommandRecord, group_id: int, key: str = "group") -> GroupResultPublic:
        answer = (record.state or {}).get(key, {})
        read = answer.get("read_back")
        members = answer.get("members")
        scene = answer.get("scene_id")
        return cls(id=record.id, status=record.status, group_id=group_id,
                   members=int(members) if isinstance(members, int) else 0,
                   read_back=int(read) if isinstance(read, int) else 0,
                   scene_id=int(scene) if isinstance(scene, int) else None)


# Routes -------------------------------------------------------------------------------------------
@router.get("/{hub_id}/groups", dependencies=[READ], responses=_READ)
async def list_groups(hub_id: OwnedHub, services: ServicesDep) -> list[GroupPublic]:
    """The hub's groups with their members and scenes, as its status last said."""
    return [GroupPublic.of(g) for g in await groups_of(services).groups(hub_id)]


@router.post("/{hub_id}/groups", status_code=201, responses=_CHANGE, response_model=GroupPublic)
async def create_group(hub_id: OwnedHub, body: GroupCreate, services: ServicesDep,
                       caller: ControlDep, store: StoreDep, request: Request,
                       key: IdempotencyKey = None) -> Any:
    """Create a group on the hub (zigpy keeps it); members are added one by one."""

    async def create() -> GroupPublic:
        return GroupPublic.of(await groups_of(services).create(hub_id, body.name, body.group_id))

    return await request_once(store, caller, key, request, body, 201, create)


@router.get("/{hub_id}/groups/{group_id}", dependencies=[READ],
            responses={**_READ, **not_found("hub or group")})
async def get_group(hub_id: OwnedHub, group_id: GroupIdPath,
                    services: ServicesDep) -> GroupPublic:
    return GroupPublic.of(await groups_of(services).group(hub_id, group_id))


@router.patch("/{hub_id}/groups/{group_id}", responses=_CHANGE, response_model=GroupPublic)
async def rename_group(hub_id: OwnedHub, group_id: GroupIdPath, body: GroupRename,
                       services: ServicesDep, caller: ControlDep, store: StoreDep,
                       request: Request, key: IdempotencyKey = None) -> Any:
    async def rename() -> GroupPublic:
        return GroupPublic.of(await groups_of(services).rename(hub_id, group_id, body.name))

    return await request_once(store, caller, key, request, body, 200, rename)


@router.delete("/{hub_id}/groups/{group_id}", status_code=204, response_class=Response,
               responses=_CHANGE, response_model=None)
async def delete_group(hub_id: OwnedHub, group_id: GroupIdPath, services: ServicesDep,
                       caller: ControlDep, store: StoreDep, request: Request,
                       key: IdempotencyKey = None) -> Any:
    """Delete the group: each member is told to leave it, then the hub forgets it."""

    async def delete() -> None:
        await groups_of(services).delete(hub_id, group_id)

    return await request_once(store, caller, key, request, None, 204, delete)


@router.post("/{hub_id}/groups/{group_id}/members", responses=_CHANGE,
             response_model=GroupPublic)
async def add_member(hub_id: OwnedHub, group_id: GroupIdPath, body: MemberBody,
                     services: ServicesDep, caller: ControlDep, store: StoreDep,
                     request: Request, key: IdempotencyKey = None) -> Any:
    """Add a device's endpoint to the group (the device's Groups cluster is told)."""

    async def add() -> GroupPublic:
        return GroupPublic.of(await groups_of(services).add_member(
            hub_id, group_id, body.device_id, body.endpoint))

    return await request_once(store, caller, key, request, body, 200, add)


@router.delete("/{hub_id}/groups/{group_id}/members/{member_id}", responses=_CHANGE,
               response_model=GroupPublic)
async def remove_member(hub_id: OwnedHub, group_id: GroupIdPath,
                        member_id: Annotated[str, Path(max_length=200,
                                                       description="the member's device id")],
                        services: ServicesDep,
                        caller: ControlDep, store: StoreDep, request: Request,
                        endpoint: Annotated[int | None, Query(ge=1, le=240)] = None,
                        key: IdempotencyKey = None) -> Any:
    async def remove() -> GroupPublic:
        return GroupPublic.of(await groups_of(services).remove_member(
            hub_id, group_id, member_id, endpoint))

    return await request_once(store, caller, key, request, None, 200, remove)


@router.post("/{hub_id}/groups/{group_id}/commands", responses=_CHANGE,
             response_model=GroupResultPublic)
async def group_command(hub_id: OwnedHub, group_id: GroupIdPath, body: GroupCommandBody,
                        services: ServicesDep, caller: ControlDep, store: StoreDep,
                        request: Request, key: IdempotencyKey = None) -> Any:
    """One multicast to the group (on, off, set_level, set_color_temperature); the members'
    new states follow as events, read back by the hub."""

    async def run() -> GroupResultPublic:
        record = await groups_of(services).command(hub_id, group_id, body.command, body.args)
        return GroupResultPublic.of(record, group_id)

    return await request_once(store, caller, key, request, body, 200, run)


@router.get("/{hub_id}/groups/{group_id}/scenes", dependencies=[READ],
            responses={**_READ, **not_found("hub or group")})
async def list_scenes(hub_id: OwnedHub, group_id: GroupIdPath,
                      services: ServicesDep) -> list[ScenePublic]:
    return [ScenePublic.of(s) for s in (await groups_of(services).group(hub_id, group_id)).scenes]


@router.post("/{hub_id}/groups/{group_id}/scenes", status_code=201, responses=_CHANGE,
             response_model=ScenePublic)
async def store_scene(hub_id: OwnedHub, group_id: GroupIdPath, body: SceneStore,
                      services: ServicesDep, caller: ControlDep, store: StoreDep,
                      request: Request, key: IdempotencyKey = None) -> Any:
    """Each member stores its current on/off, level and colour temperature as the scene."""

    async def store_() -> ScenePublic:
        return ScenePublic.of(await groups_of(services).store_scene(
            hub_id, group_id, body.name, body.scene_id))

    return await request_once(store, caller, key, request, body, 201, store_)


@router.post("/{hub_id}/groups/{group_id}/scenes/{scene_id}/recall", responses=_CHANGE,
             response_model=GroupResultPublic)
async def recall_scene(hub_id: OwnedHub, group_id: GroupIdPath, scene_id: SceneIdPath,
                       services: ServicesDep, caller: ControlDep, store: StoreDep,
                       request: Request, key: IdempotencyKey = None) -> Any:
    """One multicast: each member restores what it stored for the scene."""

    async def recall() -> GroupResultPublic:
        record = await groups_of(services).recall_scene(hub_id, group_id, scene_id)
        return GroupResultPublic.of(record, group_id, "scene")

    return await request_once(store, caller, key, request, None, 200, recall)


@router.delete("/{hub_id}/groups/{group_id}/scenes/{scene_id}", status_code=204,
               response_class=Response, responses=_CHANGE, response_model=None)
async def remove_scene(hub_id: OwnedHub, group_id: GroupIdPath, scene_id: SceneIdPath,
                       services: ServicesDep, caller: ControlDep, store: StoreDep,
                       request: Request, key: IdempotencyKey = None) -> Any:
    async def remove() -> None:
        await groups_of(services).remove_scene(hub_id, group_id, scene_id)

    return await request_once(store, caller, key, request, None, 204, remove)
