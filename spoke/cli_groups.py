"""`spoke group …` and `spoke scene …`: a hub's Zigbee groups and their scenes, through the
cloud's REST API (`/api/v1/hubs/{id}/groups`). Like the other API commands, these import only the
standard library's HTTP client (and rich to print a table) when they run."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from spoke.console import command_group, console, fail
from spoke.listing import print_json, print_list

group_app = command_group("A hub's Zigbee groups: members, and one multicast per command.")
scene_app = command_group("The scenes of a hub's Zigbee group: store, recall, remove.")

ApiUrl = Annotated[str, typer.Option("--api-url", envvar="SPOKE_API_URL",
                                     help="Cloud API base URL.")]
Token = Annotated[str | None, typer.Option("--token", envvar="SPOKE_API_TOKEN",
                                           help="API bearer token.")]
Hub = Annotated[str | None, typer.Option("--hub", envvar="SPOKE_HUB",
                                         help="Hub id (default: the account's only online hub).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for programs).")]
GroupId = Annotated[int, typer.Argument(help="The Zigbee group id.", min=1, max=0xFFF7)]
SceneId = Annotated[int, typer.Argument(help="The scene id within the group.", min=0, max=255)]
Transition = Annotated[float, typer.Option("--transition", min=0, max=6553,
                                           help="Seconds to get there.")]
Endpoint = Annotated[int | None, typer.Option("--endpoint", min=1, max=240,
                                              help="The device's endpoint (default: its first "
                                                   "with a Groups cluster).")]
DEFAULT_API = "http://127.0.0.1:8000"


def register(app: typer.Typer) -> None:
    app.add_typer(group_app, name="group")
    app.add_typer(scene_app, name="scene")


def _api(api_url: str, token: str | None, hub: str | None) -> tuple[Any, str]:
    """The API client and the groups path of the hub."""
    from spoke.api_client import ApiClient

    api = ApiClient(api_url, token)
    if hub is None:
        online = [h["id"] for h in api.get_all("/api/v1/hubs") if h.get("online")]
        if len(online) != 1:
            fail("pass --hub ID (online hubs: " + (", ".join(online) or "none") + ")")
        hub = online[0]
    return api, f"/api/v1/hubs/{hub}/groups"


def _members(group: dict[str, Any]) -> str:
    return "\n".join(f"{m['device_id']}" + (f" @{m['endpoint']}" if m.get("endpoint") != 1
                                             else "") for m in group.get("members", []))


def _scenes(group: dict[str, Any]) -> str:
    return ", ".join(f"{s['scene_id']} {s.get('name') or ''}".strip()
                     for s in group.get("scenes", []))


def _said(group: dict[str, Any]) -> None:
    members = len(group.get("members", []))
    console.print(f"group {group['group_id']} {group.get('name')!r}: {members} member"
                  f"{'' if members == 1 else 's'}", highlight=False)


# ------------------------------------------------------------------------------------- groups
@group_app.command("list")
def group_list(hub: Hub = None, api_url: ApiUrl = DEFAULT_API, token: Token = None,
               as_json: AsJson = False) -> None:
    """The hub's groups: id, name, member devices, scenes."""
    api, path = _api(api_url, token, hub)
    groups = api.get(path)
    if as_json:
        print_json(groups)
        return
    print_list(("id", "name", "members", "scenes"),
               [(str(g["group_id"]), g.get("name") or "", _members(g), _scenes(g))
                for g in groups], whole=(0, 2))


@group_app.command("create")
def group_create(name: str, group_id: Annotated[int | None, typer.Option(
                     "--id", min=1, max=0xFFF7, help="The Zigbee group id (default: a free one).")
                 ] = None,
                 hub: Hub = None, api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Create a group on the hub."""
    api, path = _api(api_url, token, hub)
    body: dict[str, Any] = {"name": name} | ({"group_id": group_id} if group_id else {})
    _said(api.post(path, body))


@group_app.command("rename")
def group_rename(group_id: GroupId, name: str, hub: Hub = None, api_url: ApiUrl = DEFAULT_API,
                 token: Token = None) -> None:
    """Rename a group."""
    api, path = _api(api_url, token, hub)
    _said(api.request("PATCH", f"{path}/{group_id}", json={"name": name}))


@group_app.command("delete")
def group_delete(group_id: GroupId, hub: Hub = None, api_url: ApiUrl = DEFAULT_API,
                 token: Token = None) -> None:
    """Delete a group: its members leave it, the hub forgets it."""
    api, path = _api(api_url, token, hub)
    api.request("DELETE", f"{path}/{group_id}")
    console.print(f"group {group_id} deleted", highlight=False)


@group_app.command("add")
def group_add(group_id: GroupId, device_id: str, endpoint: Endpoint = None, hub: Hub = None,
              api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Add a device (one of its endpoints) to a group."""
    api, path = _api(api_url, token, hub)
    body: dict[str, Any] = {"device_id": device_id} | ({"endpoint": endpoint} if endpoint else {})
    _said(api.post(f"{path}/{group_id}/members", body))


@group_app.command("remove")
def group_remove(group_id: GroupId, device_id: str, endpoint: Endpoint = None, hub: Hub = None,
                 api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Take a device out of a group."""
    api, path = _api(api_url, token, hub)
    query = f"?endpoint={endpoint}" if endpoint else ""
    _said(api.request("DELETE", f"{path}/{group_id}/members/{device_id}{query}"))


def _command(api_url: str, token: str | None, hub: str | None, group_id: int, command: str,
             **args: Any) -> None:
    api, path = _api(api_url, token, hub)
    result = api.post(f"{path}/{group_id}/commands", {"command": command, "args": args})
    console.print(f"group {group_id} {command}: one multicast to {result.get('members')} "
                  f"members, {result.get('read_back')} read back", highlight=False)


@group_app.command("on")
def group_on(group_id: GroupId, hub: Hub = None, api_url: ApiUrl = DEFAULT_API,
             token: Token = None) -> None:
    """Switch every member on (one multicast)."""
    _command(api_url, token, hub, group_id, "on")


@group_app.command("off")
def group_off(group_id: GroupId, hub: Hub = None, api_url: ApiUrl = DEFAULT_API,
              token: Token = None) -> None:
    """Switch every member off (one multicast)."""
    _command(api_url, token, hub, group_id, "off")


@group_app.command("level")
def group_level(group_id: GroupId,
                level: Annotated[float, typer.Argument(min=0, max=100, help="Percent.")],
                transition: Transition = 0.0, hub: Hub = None, api_url: ApiUrl = DEFAULT_API,
                token: Token = None) -> None:
    """Set every member's level (one multicast)."""
    _command(api_url, token, hub, group_id, "set_level", level=level, transition=transition)


@group_app.command("color-temp")
def group_color_temp(group_id: GroupId, kelvin: Annotated[int, typer.Argument(help="Kelvin.")],
                     transition: Transition = 0.0, hub: Hub = None,
                     api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Set every member's colour temperature (one multicast)."""
    _command(api_url, token, hub, group_id, "set_color_temperature", kelvin=kelvin,
             transition=transition)


# ------------------------------------------------------------------------------------- scenes
@scene_app.command("list")
def scene_list(group_id: GroupId, hub: Hub = None, api_url: ApiUrl = DEFAULT_API,
               token: Token = None, as_json: AsJson = False) -> None:
    """The group's scenes."""
    api, path = _api(api_url, token, hub)
    scenes = api.get(f"{path}/{group_id}/scenes")
    if as_json:
        print_json(scenes)
        return
    print_list(("id", "name"), [(str(s["scene_id"]), s.get("name") or "") for s in scenes])


@scene_app.command("store")
def scene_store(group_id: GroupId, name: Annotated[str | None, typer.Argument()] = None,
                scene_id: Annotated[int | None, typer.Option(
                    "--id", min=1, max=255, help="The scene id (default: a free one).")] = None,
                hub: Hub = None, api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Every member stores its current on/off, level and colour temperature as the scene."""
    api, path = _api(api_url, token, hub)
    body = {k: v for k, v in (("name", name), ("scene_id", scene_id)) if v is not None}
    scene = api.post(f"{path}/{group_id}/scenes", body)
    console.print(f"scene {scene['scene_id']} {scene.get('name')!r} stored in group {group_id}",
                  highlight=False)


@scene_app.command("recall")
def scene_recall(group_id: GroupId, scene_id: SceneId, hub: Hub = None,
                 api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Every member restores what it stored for the scene (one multicast)."""
    api, path = _api(api_url, token, hub)
    result = api.post(f"{path}/{group_id}/scenes/{scene_id}/recall", {})
    console.print(f"scene {scene_id} recalled in group {group_id}: {result.get('read_back')} "
                  "members read back", highlight=False)


@scene_app.command("remove")
def scene_remove(group_id: GroupId, scene_id: SceneId, hub: Hub = None,
                 api_url: ApiUrl = DEFAULT_API, token: Token = None) -> None:
    """Remove a scene from every member."""
    api, path = _api(api_url, token, hub)
    api.request("DELETE", f"{path}/{group_id}/scenes/{scene_id}")
    console.print(f"scene {scene_id} removed from group {group_id}", highlight=False)
