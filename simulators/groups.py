"""The Groups (0x0004) and Scenes (0x0005) cluster servers of a virtual device.

A device keeps its group table and its scenes per endpoint (``VirtualEndpoint.groups`` and
``.scenes``), as a real device keeps them in NVRAM; the network persists them with the device. A
scene holds the endpoint's on/off, level and colour temperature when it was stored, and recalling
it puts them back (reported like any change). Frames addressed to a group reach every endpoint in
it (``SimNetwork.deliver``).
"""

from __future__ import annotations

from typing import Any

from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Groups, LevelControl, OnOff, Scenes
from zigpy.zcl.clusters.lighting import Color

from simulators.behaviours import command
from simulators.device import VirtualCluster, VirtualDevice, VirtualEndpoint

Status = foundation.Status
GROUP_CAPACITY = 16  # group table entries per endpoint
SCENE_CAPACITY = 16  # scenes per endpoint
# What a scene stores: (cluster, attribute) of the endpoint, when it has them.
SCENE_ATTRIBUTES = ((OnOff, "on_off"), (LevelControl, "current_level"),
                    (Color, "color_temperature"))
Reply = tuple[str, dict[str, Any]]


# ------------------------------------------------------------------------------- Groups
@command(Groups, "add", "add_if_identifying")
def _add(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
         now: float) -> Reply:
    gid = int(args.group_id)
    if gid not in ep.groups and len(ep.groups) >= GROUP_CAPACITY:
        return "add_response", {"status": Status.INSUFFICIENT_SPACE, "group_id": gid}
    ep.groups[gid] = str(args.group_name or "")
    device.config_changed = True
    return "add_response", {"status": Status.SUCCESS, "group_id": gid}


@command(Groups, "view")
def _view(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
          now: float) -> Reply:
    gid = int(args.group_id)
    if gid not in ep.groups:
        return "view_response", {"status": Status.NOT_FOUND, "group_id": gid, "group_name": ""}
    return "view_response", {"status": Status.SUCCESS, "group_id": gid,
                             "group_name": ep.groups[gid]}


@command(Groups, "get_membership")
def _membership(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
                now: float) -> Reply:
    asked = {int(g) for g in args.groups}
    held = sorted(g for g in ep.groups if not asked or g in asked)
    return "get_membership_response", {"capacity": GROUP_CAPACITY - len(ep.groups),
                                       "groups": held}


@command(Groups, "remove")
def _remove(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
            now: float) -> Reply:
    gid = int(args.group_id)
    if ep.groups.pop(gid, None) is None:
        return "remove_response", {"status": Status.NOT_FOUND, "group_id": gid}
    for key in [k for k in ep.scenes if k[0] == gid]:  # a group's scenes go with it
        del ep.scenes[key]
    device.config_changed = True
    return "remove_response", {"status": Status.SUCCESS, "group_id": gid}


@command(Groups, "remove_all")
def _remove_all(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
                now: float) -> Status:
    ep.groups.clear()
    ep.scenes.clear()
    device.config_changed = True
    return Status.SUCCESS


# ------------------------------------------------------------------------------- Scenes
def _scene_state(ep: VirtualEndpoint) -> dict[str, Any]:
    state = {}
    for cls, name in SCENE_ATTRIBUTES:
        cluster = ep.in_clusters.get(cls.cluster_id)
        if cluster is not None and cluster.get(name) is not None:
            state[name] = cluster.get(name)
    return state


def _scene_refused(ep: VirtualEndpoint, gid: int, sid: int) -> Status | None:
    if gid and gid not in ep.groups:
        return Status.INVALID_FIELD
    if (gid, sid) not in ep.scenes and len(ep.scenes) >= SCENE_CAPACITY:
        return Status.INSUFFICIENT_SPACE
    return None


@command(Scenes, "store")
def _store(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
           now: float) -> Reply:
    gid, sid = int(args.group_id), int(args.scene_id)
    status = _scene_refused(ep, gid, sid)
    if status is None:
        ep.scenes[(gid, sid)] = _scene_state(ep)
        device.config_changed = True
    return "store_scene_response", {"status": status or Status.SUCCESS, "group_id": gid,
                                    "scene_id": sid}


@command(Scenes, "add")
def _add_scene(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
               now: float) -> Reply:
    # Without extension field sets (zigpy sends none): an empty scene, filled by a later store.
    gid, sid = int(args.group_id), int(args.scene_id)
    status = _scene_refused(ep, gid, sid)
    if status is None:
        ep.scenes[(gid, sid)] = {}
        device.config_changed = True
    return "add_scene_response", {"status": status or Status.SUCCESS, "group_id": gid,
                                  "scene_id": sid}


@command(Scenes, "recall")
def _recall(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
            now: float) -> Status:
    stored = ep.scenes.get((int(args.group_id), int(args.scene_id)))
    if stored is None:
        return Status.NOT_FOUND
    for cls, name in SCENE_ATTRIBUTES:
        if name in stored:
            device.set_attribute(ep.endpoint_id, cls.cluster_id, name, stored[name], now=now)
    return Status.SUCCESS


@command(Scenes, "remove")
def _remove_scene(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster, args: Any,
                  now: float) -> Reply:
    gid, sid = int(args.group_id), int(args.scene_id)
    found = ep.scenes.pop((gid, sid), None) is not None
    device.config_changed = device.config_changed or found
    return "remove_scene_response", {"status": Status.SUCCESS if found else Status.NOT_FOUND,
                                     "group_id": gid, "scene_id": sid}


@command(Scenes, "remove_all")
def _remove_all_scenes(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster,
                       args: Any, now: float) -> Reply:
    gid = int(args.group_id)
    for key in [k for k in ep.scenes if k[0] == gid]:
        del ep.scenes[key]
    device.config_changed = True
    return "remove_all_scenes_response", {"status": Status.SUCCESS, "group_id": gid}


@command(Scenes, "get_scene_membership")
def _scene_membership(device: VirtualDevice, ep: VirtualEndpoint, cluster: VirtualCluster,
                      args: Any, now: float) -> Reply:
    gid = int(args.group_id)
    return "get_scene_membership_response", {
        "status": Status.SUCCESS if gid in ep.groups or gid == 0 else Status.INVALID_FIELD,
        "capacity": SCENE_CAPACITY - len(ep.scenes), "group_id": gid,
        "scenes": sorted(sid for g, sid in ep.scenes if g == gid)}
